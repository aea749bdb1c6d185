//! DCS JSON shapes: what goes over the wire, and the conversions from and
//! to the domain types. The only place DCS field names live: one file per
//! resource, and here what they share (body parsing, times, percentages,
//! remarks).

mod backups;
mod instances;
mod pitr;
mod policies;
mod restores;
mod verifications;

pub use backups::*;
pub use instances::*;
pub use pitr::*;
pub use policies::*;
pub use restores::*;
pub use verifications::*;

use serde::Serialize;
use serde_json::Value;

use super::error::{ApiError, Dcs};
use crate::model::Millis;

/// A required JSON body: empty is DCS.4004, malformed DCS.4005.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::new(Dcs::EmptyBody));
    }
    serde_json::from_slice(body).map_err(|_| ApiError::new(Dcs::BadJson))
}

/// An optional JSON body: empty means the type's default.
pub fn optional_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|_| ApiError::new(Dcs::BadJson))
}

/// A backup or restore `remark`: absent, or a string of 0–128 characters
/// (DCS.4098 otherwise).
pub fn validate_remark(v: &Value) -> Result<String, ApiError> {
    match v {
        Value::Null => Ok(String::new()),
        Value::String(s) if s.chars().count() <= 128 => Ok(s.clone()),
        _ => Err(ApiError::new(Dcs::BadRemark)),
    }
}

/// A time as DCS writes it, `2019-05-10T08:31:16.166Z` (UTC, milliseconds),
/// serialized without allocating: record listings write thousands.
#[derive(Clone, Copy, Debug)]
pub struct IsoTime(pub Millis);

impl IsoTime {
    fn write(self, out: &mut [u8; 24]) -> &str {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(self.0 as i128 * 1_000_000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let year = t.year().clamp(0, 9999) as u32;
        let fields = [
            (0, 4, year),
            (5, 2, u8::from(t.month()) as u32),
            (8, 2, t.day() as u32),
            (11, 2, t.hour() as u32),
            (14, 2, t.minute() as u32),
            (17, 2, t.second() as u32),
            (20, 3, t.millisecond() as u32),
        ];
        *out = *b"0000-00-00T00:00:00.000Z";
        for (at, width, mut v) in fields {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        }
        // Only ASCII digits and separators were written.
        std::str::from_utf8(out).unwrap_or_default()
    }
}

impl Serialize for IsoTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.write(&mut [0; 24]))
    }
}

/// `2019-05-10T08:31:16.166Z`.
pub fn iso(ms: Millis) -> String {
    IsoTime(ms).write(&mut [0; 24]).to_owned()
}

/// Progress in hundredths of a percent, written `"12.34"` (`"0.00"`–`"100.00"`).
#[derive(Clone, Copy, Debug)]
pub struct Percent(pub i64);

impl Serialize for Percent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let h = self.0.clamp(0, 10_000) as u32;
        let mut out = *b"100.00";
        let int = h / 100;
        let mut at = 0;
        if int >= 100 {
            at = 3;
        } else {
            if int >= 10 {
                out[at] = b'0' + (int / 10) as u8;
                at += 1;
            }
            out[at] = b'0' + (int % 10) as u8;
            at += 1;
            out[at] = b'.';
            out[at + 1] = b'0' + (h % 100 / 10) as u8;
            out[at + 2] = b'0' + (h % 10) as u8;
        }
        s.serialize_str(std::str::from_utf8(&out[..at + 3]).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_has_milliseconds() {
        assert_eq!(iso(1_557_477_076_166), "2019-05-10T08:31:16.166Z");
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        let pct = |h| serde_json::to_string(&Percent(h)).unwrap();
        assert_eq!(pct(10_000), r#""100.00""#);
        assert_eq!(pct(20_000), r#""100.00""#);
        assert_eq!(pct(1234), r#""12.34""#);
        assert_eq!(pct(905), r#""9.05""#);
        assert_eq!(pct(7), r#""0.07""#);
        assert_eq!(pct(-3), r#""0.00""#);
    }
}

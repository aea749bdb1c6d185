//! Query-string parsing for the record listings, with the DCS error for
//! each bad value. Both API versions share the rules; they differ in
//! parameter names and in whether paging is `offset` (0-based) or `start`
//! (1-based).

use super::error::{ApiError, Dcs};
use super::Version;
use crate::model::{ListQuery, Millis};

pub const DEFAULT_LIMIT: u64 = 10;
pub const MAX_LIMIT: u64 = 1000;

/// Decoded `key=value` pairs of a query string, in order.
pub fn pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

/// Refuses a query string that names a key twice (after
/// percent-decoding): the signature covers the sorted pairs, so their
/// order could be changed under one signature to pick another value.
pub fn refuse_repeated(raw: Option<&str>) -> Result<(), ApiError> {
    let pairs = pairs(raw);
    let mut keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    match keys.windows(2).find(|w| w[0] == w[1]) {
        None => Ok(()),
        // Name the key only when it is a plain word (never echo junk).
        Some([k, _])
            if k.len() <= 32
                && !k.is_empty()
                && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            Err(ApiError::invalid(k))
        }
        Some(_) => Err(ApiError::invalid("query")),
    }
}

/// The value of the first of `names` (by their order, not the query's)
/// the query has, with that name. Choosing by name keeps the answer the
/// same whatever order the pairs come in, as the signature covers them
/// sorted; a key given twice is refused before (see [`refuse_repeated`]).
fn find<'a>(pairs: &'a [(String, String)], names: &[&str]) -> Option<(&'a str, &'a str)> {
    names.iter().find_map(|n| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == n)
            .map(|(k, v)| (k.as_str(), v.as_str()))
    })
}

fn number(name: &str, value: &str) -> Result<i64, ApiError> {
    let v = value.trim();
    if v.is_empty()
        || v.len() > 18
        || !v
            .bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_digit() || (i == 0 && b == b'-'))
    {
        return Err(ApiError::invalid(name));
    }
    v.parse().map_err(|_| ApiError::invalid(name))
}

/// Parses `yyyyMMddHHmmss` (UTC) into the first millisecond of that second.
pub fn parse_compact_time(value: &str) -> Option<Millis> {
    if value.len() != 14 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| value[r].parse::<u32>().ok();
    let year = i32::try_from(n(0..4)?).ok()?;
    let month = time::Month::try_from(u8::try_from(n(4..6)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(year, month, u8::try_from(n(6..8)?).ok()?).ok()?;
    let t = time::Time::from_hms(
        u8::try_from(n(8..10)?).ok()?,
        u8::try_from(n(10..12)?).ok()?,
        u8::try_from(n(12..14)?).ok()?,
    )
    .ok()?;
    Some(date.with_time(t).assume_utc().unix_timestamp() * 1000)
}

/// Parses a record listing's query string.
pub fn list_query(raw: Option<&str>, version: Version) -> Result<ListQuery, ApiError> {
    let pairs = pairs(raw);
    let begin_names: &[&str] = &["begin_time", "beginTime", "begin_Time"];
    let end_names: &[&str] = &["end_time", "endTime", "end_Time"];

    let limit = match find(&pairs, &["limit"]) {
        None => DEFAULT_LIMIT,
        Some((name, v)) => {
            let n = number(name, v)?;
            if !(1..=MAX_LIMIT as i64).contains(&n) {
                return Err(ApiError::invalid(name));
            }
            n as u64
        }
    };
    let offset_param = match version {
        Version::V2 => find(&pairs, &["offset"]),
        Version::V1 => None,
    };
    let offset = match (offset_param, find(&pairs, &["start"])) {
        (Some((name, v)), _) => {
            let n = number(name, v)?;
            if n < 0 {
                return Err(ApiError::invalid(name));
            }
            n as u64
        }
        (None, Some((name, v))) => {
            let n = number(name, v)?;
            if n < 1 {
                return Err(ApiError::invalid(name));
            }
            (n - 1) as u64
        }
        (None, None) => 0,
    };
    let time = |names: &[&str]| -> Result<Option<Millis>, ApiError> {
        match find(&pairs, names) {
            None => Ok(None),
            Some((name, v)) => parse_compact_time(v.trim())
                .map(Some)
                .ok_or_else(|| ApiError::invalid(name)),
        }
    };
    let begin = time(begin_names)?;
    // The end second is inclusive: everything up to its last millisecond.
    let end = time(end_names)?.map(|e| e + 999);
    if let (Some(b), Some(e)) = (begin, end) {
        if e < b {
            return Err(ApiError::new(Dcs::EndBeforeBegin));
        }
    }
    Ok(ListQuery {
        begin,
        end,
        offset,
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_are_chosen_by_name_not_by_order() {
        let a = list_query(
            Some("begin_time=20240101000000&beginTime=20230101000000"),
            Version::V2,
        );
        let b = list_query(
            Some("beginTime=20230101000000&begin_time=20240101000000"),
            Version::V2,
        );
        assert_eq!(a.ok().map(|q| q.begin), b.ok().map(|q| q.begin));
    }

    #[test]
    fn repeated_keys_are_refused_after_decoding() {
        assert!(refuse_repeated(Some("limit=1&offset=2")).is_ok());
        assert!(refuse_repeated(None).is_ok());
        let e = refuse_repeated(Some("limit=1&%6Cimit=2"))
            .err()
            .map(|e| e.msg);
        assert_eq!(e.as_deref(), Some("Invalid limit in the request."));
        let e = refuse_repeated(Some("%3Cx%3E=1&%3Cx%3E=2"))
            .err()
            .map(|e| e.msg);
        assert_eq!(e.as_deref(), Some("Invalid query in the request."));
    }

    fn code(raw: &str, v: Version) -> String {
        match list_query(Some(raw), v) {
            Ok(_) => "ok".into(),
            Err(e) => format!("{} {}", e.code(), e.msg),
        }
    }

    #[test]
    fn defaults() {
        assert_eq!(
            list_query(None, Version::V2).unwrap(),
            ListQuery {
                begin: None,
                end: None,
                offset: 0,
                limit: 10
            }
        );
    }

    #[test]
    fn bad_values_name_the_parameter() {
        let cases = [
            (
                "offset=-1",
                Version::V2,
                "DCS.4800 Invalid offset in the request.",
            ),
            (
                "offset=abc",
                Version::V2,
                "DCS.4800 Invalid offset in the request.",
            ),
            (
                "limit=0",
                Version::V2,
                "DCS.4800 Invalid limit in the request.",
            ),
            (
                "limit=1001",
                Version::V2,
                "DCS.4800 Invalid limit in the request.",
            ),
            (
                "limit=1.5",
                Version::V2,
                "DCS.4800 Invalid limit in the request.",
            ),
            (
                "start=0",
                Version::V1,
                "DCS.4800 Invalid start in the request.",
            ),
            (
                "beginTime=2017",
                Version::V1,
                "DCS.4800 Invalid beginTime in the request.",
            ),
            (
                "begin_time=20170230000000",
                Version::V2,
                "DCS.4800 Invalid begin_time in the request.",
            ),
            (
                "end_Time=20171301000000",
                Version::V2,
                "DCS.4800 Invalid end_Time in the request.",
            ),
            (
                "end_time=20170101246000",
                Version::V2,
                "DCS.4800 Invalid end_time in the request.",
            ),
            (
                "begin_time=20170102000000&end_time=20170101000000",
                Version::V2,
                "DCS.4025 The end time must be after the start time.",
            ),
        ];
        for (raw, v, want) in cases {
            assert_eq!(code(raw, v), want, "{raw}");
        }
        assert_eq!(
            code(
                "begin_time=20170101000000&end_time=20170101000000",
                Version::V2
            ),
            "ok"
        );
    }

    #[test]
    fn start_is_one_based() {
        assert_eq!(
            list_query(Some("start=3&limit=5"), Version::V1)
                .unwrap()
                .offset,
            2
        );
        assert_eq!(list_query(Some("start=3"), Version::V2).unwrap().offset, 2);
        assert_eq!(
            list_query(Some("offset=4&start=3"), Version::V2)
                .unwrap()
                .offset,
            4
        );
    }

    #[test]
    fn time_bounds_are_inclusive_seconds() {
        let q = list_query(
            Some("beginTime=20190510083116&endTime=20190510083116"),
            Version::V1,
        )
        .unwrap();
        assert_eq!(q.begin, Some(1_557_477_076_000));
        assert_eq!(q.end, Some(1_557_477_076_999));
    }
}

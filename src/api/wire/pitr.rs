//! GeminiDB v3 point-in-time recovery shapes (`huaweicloudsdkgaussdbfornosql`
//! v3 models: `SetRedisPitrPolicyRequestBody`, `ShowRedisPitrPolicyResponse`,
//! `ShowRedisPitrInfoResponse`, `ListRedisPitrRestoreTimeResponse`,
//! `RestoreRedisPitrRequestBody`, `RestoreRedisPitrResponse`,
//! `ListJobsResponse` with `JobDetail`), and their time formats.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::super::error::ApiError;
use crate::model::Millis;

/// `PUT …/pitr/policy`, fields checked by hand so a wrong type is a 400.
#[derive(Deserialize, Debug, Default, utoipa::ToSchema)]
pub struct PitrPolicyBody {
    #[serde(default)]
    #[schema(value_type = bool)]
    pub enabled: Value,
    /// Minutes between bases, 5–120 (default 20).
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    pub interval: Value,
    /// Days kept, 1–7 (default 1).
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    pub keep_days: Value,
}

/// A validated policy: (enabled, interval minutes, keep days).
pub fn validate_pitr_policy(b: &PitrPolicyBody) -> Result<(bool, i64, i64), ApiError> {
    let enabled = b
        .enabled
        .as_bool()
        .ok_or_else(|| ApiError::invalid("enabled"))?;
    let int = |v: &Value, name: &str, lo: i64, hi: i64, default: i64| match v {
        Value::Null => Ok(default),
        Value::Number(n) => n
            .as_i64()
            .filter(|x| (lo..=hi).contains(x))
            .ok_or_else(|| ApiError::invalid(name)),
        _ => Err(ApiError::invalid(name)),
    };
    let interval = int(&b.interval, "interval", 5, 120, 20)?;
    let keep_days = int(&b.keep_days, "keep_days", 1, 7, 1)?;
    Ok((enabled, interval, keep_days))
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub struct PitrPolicyJson {
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_days: Option<i64>,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub struct PitrInfoJson {
    /// Bytes the instance's PITR data occupies in the store.
    pub storage: String,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub struct PitrPeriodsJson {
    /// Restorable periods, `START/END` (ISO-8601 UTC, whole seconds).
    pub restore_time: Vec<String>,
    pub total_count: u64,
}

#[derive(Deserialize, Debug, utoipa::ToSchema)]
pub struct PitrRestoreBody {
    /// The instant, ISO-8601 with any offset (`2022-06-01T18:50:20+0800`,
    /// `2026-12-06T02:40:00.250Z`).
    #[serde(default)]
    #[schema(value_type = String)]
    pub restore_time: Value,
    /// Restore this instance's history into another instance of the
    /// project instead (an extension of dcs-backup).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub target_instance_id: Value,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub struct PitrRestoreResponse {
    pub job_id: String,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub struct JobInstanceJson {
    pub id: String,
    pub name: String,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub struct JobJson {
    pub id: String,
    pub name: String,
    /// `Running`, `Completed` or `Failed`.
    pub status: String,
    pub start_time: String,
    pub end_time: String,
    pub progress: String,
    pub instance: JobInstanceJson,
    pub fail_reason: String,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub struct JobsJson {
    pub jobs: Vec<JobJson>,
    pub total_count: u64,
}

/// Parses an ISO-8601 instant with any offset (`Z`, `+08:00`, `+0800`) and
/// optional fractional seconds, to milliseconds (rounded down).
pub fn parse_instant(s: &str) -> Option<Millis> {
    if s.len() > 64 {
        return None;
    }
    let mut text = s.to_owned();
    // `+0800` as the SDK's example writes it: RFC 3339 wants `+08:00`.
    let b = s.as_bytes();
    if b.len() > 5 {
        let tail = &b[b.len() - 5..];
        if (tail[0] == b'+' || tail[0] == b'-') && tail[1..].iter().all(u8::is_ascii_digit) {
            text.insert(s.len() - 2, ':');
        }
    }
    let t = OffsetDateTime::parse(&text, &Rfc3339).ok()?;
    Millis::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).ok()
}

/// `2026-12-06T02:40:00Z`.
pub fn format_second(ms: Millis) -> String {
    let t = OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A period as whole seconds that are all restorable: the start rounded
/// up, the end down; `None` when no whole second is left.
pub fn period_string(start: Millis, end: Millis) -> Option<String> {
    let s = start.div_euclid(1000) * 1000 + if start.rem_euclid(1000) == 0 { 0 } else { 1000 };
    let e = end.div_euclid(1000) * 1000;
    (s <= e).then(|| format!("{}/{}", format_second(s), format_second(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_in_every_spelling() {
        let z = parse_instant("2022-06-01T10:50:20Z").unwrap();
        assert_eq!(parse_instant("2022-06-01T18:50:20+0800"), Some(z));
        assert_eq!(parse_instant("2022-06-01T18:50:20+08:00"), Some(z));
        assert_eq!(parse_instant("2022-06-01T10:50:20.250Z"), Some(z + 250));
        assert_eq!(parse_instant("2022-06-01 10:50:20"), None);
        assert_eq!(parse_instant("2022-13-01T10:50:20Z"), None);
        assert_eq!(format_second(z), "2022-06-01T10:50:20Z");
        assert_eq!(
            period_string(z + 1, z + 5999).as_deref(),
            Some("2022-06-01T10:50:21Z/2022-06-01T10:50:25Z")
        );
        assert_eq!(period_string(z + 1, z + 999), None);
    }
}

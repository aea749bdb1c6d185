//! DCS JSON shapes: what goes over the wire, and the conversions from and
//! to the domain types. The only place DCS field names live.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::error::ApiError;
use crate::model::{BackupPolicy, BackupRecord, Instance, Millis, RestoreRecord, StoredPolicy};

/// A required JSON body: empty is DCS.4004, malformed DCS.4005.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::empty_body());
    }
    serde_json::from_slice(body).map_err(|_| ApiError::bad_json())
}

/// An optional JSON body: empty means the type's default.
pub fn optional_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|_| ApiError::bad_json())
}

/// A backup or restore `remark`: absent, or a string of 0–128 characters
/// (DCS.4098 otherwise).
pub fn validate_remark(v: &Value) -> Result<String, ApiError> {
    match v {
        Value::Null => Ok(String::new()),
        Value::String(s) if s.chars().count() <= 128 => Ok(s.clone()),
        _ => Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "DCS.4098",
            "The value of the remark parameter must be 0 to 128 characters in length.",
        )),
    }
}

/// `2019-05-10T08:31:16.166Z`.
pub fn iso(ms: Millis) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

fn progress(hundredths: i64) -> String {
    let h = hundredths.clamp(0, 10_000);
    format!("{}.{:02}", h / 100, h % 100)
}

/// A backup record (`backup_record_response` item, both versions).
#[derive(Serialize, ToSchema)]
pub struct BackupRecordJson {
    pub backup_id: String,
    pub instance_id: String,
    pub backup_name: String,
    pub backup_type: String,
    /// `RDB` or `AOF`.
    pub backup_format: String,
    pub status: String,
    /// `"0.00"`–`"100.00"`.
    pub progress: String,
    /// Bytes stored.
    pub size: i64,
    pub period: Option<String>,
    pub remark: String,
    pub created_at: String,
    pub execution_at: Option<String>,
    pub updated_at: String,
    pub error_code: Option<String>,
    /// `"TRUE"` only for a succeeded backup whose files are intact.
    pub is_support_restore: String,
}

impl From<&BackupRecord> for BackupRecordJson {
    fn from(b: &BackupRecord) -> Self {
        Self {
            backup_id: b.id.to_string(),
            instance_id: b.instance_id.to_string(),
            backup_name: b.name.clone(),
            backup_type: b.backup_type.as_str().to_owned(),
            backup_format: b.format.as_str().to_ascii_uppercase(),
            status: b.status.as_str().to_owned(),
            progress: progress(b.progress),
            size: b.size,
            period: b.period.clone(),
            remark: b.remark.clone(),
            created_at: iso(b.created_at),
            execution_at: b.execution_at.map(iso),
            updated_at: iso(b.updated_at),
            error_code: b.error.map(|e| e.code().to_owned()),
            is_support_restore: if b.is_restorable() { "TRUE" } else { "FALSE" }.to_owned(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct BackupListJson {
    pub backup_record_response: Vec<BackupRecordJson>,
    /// Number of records matching the filters.
    pub total_num: u64,
}

/// A restore record (`restore_record_response` item). v1.0 adds the source
/// instance, spelled both ways the reference spells it.
#[derive(Serialize, ToSchema)]
pub struct RestoreRecordJson {
    pub restore_id: String,
    pub backup_id: String,
    pub backup_name: String,
    pub backup_remark: String,
    pub restore_name: String,
    pub restore_remark: String,
    pub status: String,
    pub progress: String,
    pub created_at: String,
    pub updated_at: String,
    pub error_code: Option<String>,
    #[serde(rename = "sourceInstanceID", skip_serializing_if = "Option::is_none")]
    pub source_instance_id_upper: Option<String>,
    #[serde(rename = "sourceInstanceId", skip_serializing_if = "Option::is_none")]
    pub source_instance_id: Option<String>,
    #[serde(rename = "sourceInstanceName", skip_serializing_if = "Option::is_none")]
    pub source_instance_name: Option<String>,
}

impl RestoreRecordJson {
    pub fn new(r: &RestoreRecord, with_source: bool) -> Self {
        let src = |s: &str| with_source.then(|| s.to_owned());
        Self {
            restore_id: r.id.to_string(),
            backup_id: r.backup_id.to_string(),
            backup_name: r.backup_name.clone(),
            backup_remark: r.backup_remark.clone(),
            restore_name: r.name.clone(),
            restore_remark: r.remark.clone(),
            status: r.status.as_str().to_owned(),
            progress: progress(r.progress),
            created_at: iso(r.created_at),
            updated_at: iso(r.updated_at),
            error_code: r.error.map(|e| e.code().to_owned()),
            source_instance_id_upper: src(r.source_instance_id.as_str()),
            source_instance_id: src(r.source_instance_id.as_str()),
            source_instance_name: src(&r.source_instance_name),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct RestoreListJson {
    pub restore_record_response: Vec<RestoreRecordJson>,
    pub total_num: u64,
}

/// `periodical_backup_plan`.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, Default)]
pub struct BackupPlanJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone_offset: Option<String>,
    #[serde(default)]
    #[schema(value_type = Vec<i64>)]
    pub backup_at: Value,
    #[serde(default)]
    #[schema(value_type = String)]
    pub period_type: Value,
    #[serde(default)]
    #[schema(value_type = String)]
    pub begin_at: Value,
}

/// `instance_backup_policy` as sent (BackupPolicy) and shown (BackupPolicyResp).
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, Default)]
pub struct BackupPolicyJson {
    #[serde(default)]
    #[schema(value_type = String)]
    pub backup_type: Value,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    #[schema(value_type = Option<i64>)]
    pub save_days: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub periodical_backup_plan: Option<BackupPlanJson>,
}

/// Parses a time zone offset in the forms the reference shows: `GMT+08:00`,
/// `UTC-5`, `+0530`, `+08:00`, within −12:00..+12:00. Returns minutes east.
pub fn parse_tz_offset(s: &str) -> Option<i32> {
    let t = s.trim();
    let t = t
        .strip_prefix("GMT")
        .or_else(|| t.strip_prefix("gmt"))
        .or_else(|| t.strip_prefix("UTC"))
        .or_else(|| t.strip_prefix("utc"))
        .unwrap_or(t)
        .trim();
    if t.is_empty() || t == "Z" {
        return Some(0);
    }
    let (sign, rest) = match t.as_bytes()[0] {
        b'+' => (1, &t[1..]),
        b'-' => (-1, &t[1..]),
        _ => return None,
    };
    let rest = rest.trim();
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => rest.split_at(2),
        None => (rest, "0"),
    };
    if h.is_empty() || h.len() > 2 || m.is_empty() || m.len() > 2 {
        return None;
    }
    let h: i32 = h
        .parse()
        .ok()
        .filter(|_| h.bytes().all(|b| b.is_ascii_digit()))?;
    let m: i32 = m
        .parse()
        .ok()
        .filter(|_| m.bytes().all(|b| b.is_ascii_digit()))?;
    if m >= 60 {
        return None;
    }
    let minutes = h * 60 + m;
    (minutes <= 12 * 60).then_some(sign * minutes)
}

fn policy_error(code: &'static str, what: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::BAD_REQUEST,
        code,
        format!("Invalid {what} instance backup policy parameter in the request."),
    )
}

/// Validates `instance_backup_policy` (DCS.4072–DCS.4076).
pub fn validate_policy(p: &BackupPolicyJson) -> Result<BackupPolicy, ApiError> {
    let backup_type = match p.backup_type.as_str() {
        Some(t @ ("auto" | "manual")) => t.to_owned(),
        _ => return Err(policy_error("DCS.4073", "backupType")),
    };
    let save_days = match &p.save_days {
        Value::Null => None,
        v => match v.as_i64() {
            Some(d) if (1..=7).contains(&d) => Some(d),
            _ => return Err(policy_error("DCS.4072", "saveDays")),
        },
    };
    if backup_type == "manual" {
        return Ok(BackupPolicy {
            backup_type,
            save_days,
            period_type: None,
            backup_at: vec![],
            begin_hour: None,
            tz_offset_minutes: 0,
            timezone_offset: None,
        });
    }
    if save_days.is_none() {
        return Err(policy_error("DCS.4072", "saveDays"));
    }
    let plan = p
        .periodical_backup_plan
        .clone()
        .ok_or_else(|| policy_error("DCS.4074", "periodType"))?;
    if plan.period_type.as_str() != Some("weekly") {
        return Err(policy_error("DCS.4074", "periodType"));
    }
    let days = plan
        .backup_at
        .as_array()
        .ok_or_else(|| policy_error("DCS.4075", "backupAt"))?;
    let mut backup_at = Vec::with_capacity(days.len());
    for d in days {
        match d.as_i64() {
            Some(d @ 1..=7) if !backup_at.contains(&(d as u8)) => backup_at.push(d as u8),
            _ => return Err(policy_error("DCS.4075", "backupAt")),
        }
    }
    if backup_at.is_empty() {
        return Err(policy_error("DCS.4075", "backupAt"));
    }
    let begin_hour = plan
        .begin_at
        .as_str()
        .and_then(parse_begin_at)
        .ok_or_else(|| policy_error("DCS.4076", "beginAt"))?;
    let tz_offset_minutes = match &plan.timezone_offset {
        None => 0,
        Some(s) if s.trim().is_empty() => 0,
        Some(s) => parse_tz_offset(s).ok_or_else(|| ApiError::invalid("timezone_offset"))?,
    };
    Ok(BackupPolicy {
        backup_type,
        save_days,
        period_type: Some("weekly".into()),
        backup_at,
        begin_hour: Some(begin_hour),
        tz_offset_minutes,
        timezone_offset: plan.timezone_offset.clone(),
    })
}

/// `HH:00-HH+1:00` on the hour; returns HH.
fn parse_begin_at(s: &str) -> Option<u8> {
    let (a, b) = s.split_once('-')?;
    let hour = |x: &str| -> Option<u8> {
        let (h, m) = x.split_once(':')?;
        (h.len() == 2 && m == "00" && h.bytes().all(|c| c.is_ascii_digit()))
            .then(|| h.parse().ok())?
    };
    let (start, end) = (hour(a)?, hour(b)?);
    (start < 24 && end < 24 && end == (start + 1) % 24).then_some(start)
}

impl From<&BackupPolicy> for BackupPolicyJson {
    fn from(p: &BackupPolicy) -> Self {
        let plan = p.begin_hour.map(|h| BackupPlanJson {
            timezone_offset: p.timezone_offset.clone(),
            backup_at: Value::from(
                p.backup_at
                    .iter()
                    .map(|d| i64::from(*d))
                    .collect::<Vec<_>>(),
            ),
            period_type: Value::from(p.period_type.clone().unwrap_or_else(|| "weekly".into())),
            begin_at: Value::from(format!("{:02}:00-{:02}:00", h, (h + 1) % 24)),
        });
        Self {
            backup_type: Value::from(p.backup_type.clone()),
            save_days: p.save_days.map(Value::from).unwrap_or(Value::Null),
            periodical_backup_plan: plan,
        }
    }
}

/// `InstanceBackupPolicy` as shown by `GET /instances/{id}`.
#[derive(Serialize, ToSchema)]
pub struct InstanceBackupPolicyJson {
    pub backup_policy_id: String,
    pub created_at: String,
    pub updated_at: String,
    pub policy: BackupPolicyJson,
    pub tenant_id: String,
}

impl InstanceBackupPolicyJson {
    pub fn new(p: &StoredPolicy, tenant: &str) -> Self {
        Self {
            backup_policy_id: p.id.clone(),
            created_at: iso(p.created_at),
            updated_at: iso(p.updated_at),
            policy: BackupPolicyJson::from(&p.policy),
            tenant_id: tenant.to_owned(),
        }
    }
}

/// `POST /instances` body: the DCS CreateInstance fields that mean
/// something for an adopted server. Fields of a cloud order (capacity,
/// VPC, billing) are accepted and ignored.
#[derive(Deserialize, ToSchema, Default)]
pub struct CreateInstanceBody {
    #[serde(default)]
    #[schema(value_type = String)]
    pub name: Value,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub description: Value,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub engine: Value,
    /// Address or host name of the Redis server (a master, or any cluster node).
    #[serde(default)]
    #[schema(value_type = String)]
    pub private_ip: Value,
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    pub port: Value,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub password: Value,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub access_user: Value,
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub enable_ssl: Value,
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub no_password_access: Value,
    #[serde(default)]
    pub instance_backup_policy: Option<BackupPolicyJson>,
}

/// `PUT /instances/{id}` body (ModifyInstanceBody, plus the connection
/// fields of an adopted server).
#[derive(Deserialize, ToSchema, Default)]
pub struct ModifyInstanceBody {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub name: Value,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub description: Value,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub private_ip: Value,
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    pub port: Value,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub password: Value,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub access_user: Value,
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub enable_ssl: Value,
    #[serde(default)]
    pub instance_backup_policy: Option<BackupPolicyJson>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedInstanceJson {
    pub instance_id: String,
    pub instance_name: String,
}

#[derive(Serialize, ToSchema)]
pub struct CreateInstanceResponse {
    pub instances: Vec<CreatedInstanceJson>,
}

/// One node of the discovered topology (an extension to the DCS shape).
#[derive(Serialize, ToSchema)]
pub struct ShardJson {
    pub master: String,
    pub replicas: Vec<String>,
    pub slots: Vec<String>,
}

/// An instance (ShowInstance / InstanceListInfo fields that apply).
#[derive(Serialize, ToSchema)]
pub struct InstanceJson {
    pub instance_id: String,
    pub name: String,
    pub engine: String,
    pub engine_version: String,
    pub status: String,
    pub ip: String,
    pub port: u16,
    pub domain_name: String,
    pub cache_mode: String,
    pub description: String,
    pub created_at: String,
    pub update_at: String,
    pub enable_ssl: bool,
    pub access_user: Option<String>,
    pub no_password_access: String,
    pub replica_count: i64,
    pub sharding_count: i64,
    pub project_id: String,
    pub instance_backup_policy: Option<InstanceBackupPolicyJson>,
    pub shards: Vec<ShardJson>,
}

impl InstanceJson {
    pub fn new(i: &Instance, status: &str) -> Self {
        let t = &i.topology;
        Self {
            instance_id: i.id.to_string(),
            name: i.name.clone(),
            engine: if t.engine == "valkey" {
                "Valkey"
            } else {
                "Redis"
            }
            .to_owned(),
            engine_version: t.version.clone(),
            status: status.to_owned(),
            ip: i.connection.host.clone(),
            port: i.connection.port,
            domain_name: i.connection.host.clone(),
            cache_mode: t.cache_mode().as_str().to_owned(),
            description: i.description.clone(),
            created_at: iso(i.created_at),
            update_at: iso(i.updated_at),
            enable_ssl: i.connection.tls,
            access_user: i.connection.username.clone(),
            no_password_access: (i.connection.password.is_none()).to_string(),
            replica_count: t.replica_count() as i64,
            sharding_count: t.shards.len() as i64,
            project_id: i.project_id.to_string(),
            instance_backup_policy: i
                .policy
                .as_ref()
                .map(|p| InstanceBackupPolicyJson::new(p, i.project_id.as_str())),
            shards: t
                .shards
                .iter()
                .map(|s| ShardJson {
                    master: s.master.to_string(),
                    replicas: s.replicas.iter().map(|r| r.to_string()).collect(),
                    slots: s.slots.iter().map(|(a, b)| format!("{a}-{b}")).collect(),
                })
                .collect(),
        }
    }
}

/// `POST /instances/{id}/backups` body.
#[derive(Deserialize, ToSchema, Default)]
pub struct CreateBackupBody {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub remark: Value,
    /// `rdb` (default) or `aof`, any case.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub backup_format: Value,
}

#[derive(Serialize, ToSchema)]
pub struct CreateBackupResponse {
    pub backup_id: String,
}

/// `POST /instances/{id}/restores` body.
#[derive(Deserialize, ToSchema, Default)]
pub struct CreateRestoreBody {
    #[serde(default)]
    #[schema(value_type = String)]
    pub backup_id: Value,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub remark: Value,
}

#[derive(Serialize, ToSchema)]
pub struct CreateRestoreResponse {
    pub restore_id: String,
}

/// `POST .../backups/{backup_id}/links` body.
#[derive(Deserialize, ToSchema, Default)]
pub struct LinksBody {
    /// Seconds the links stay valid: 300–86400.
    #[serde(default)]
    #[schema(value_type = i64)]
    pub expiration: Value,
}

#[derive(Serialize, ToSchema)]
pub struct LinkJson {
    pub file_name: String,
    pub link: String,
}

#[derive(Serialize, ToSchema)]
pub struct LinksResponse {
    /// Where the files are in the store.
    pub file_path: String,
    /// The S3 bucket, or empty for the local store.
    pub bucket_name: String,
    pub links: Vec<LinkJson>,
}

#[derive(Serialize, ToSchema)]
pub struct InstanceListJson {
    pub instance_num: u64,
    pub instances: Vec<InstanceJson>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn iso_has_milliseconds() {
        assert_eq!(iso(1_557_477_076_166), "2019-05-10T08:31:16.166Z");
        assert_eq!(progress(10_000), "100.00");
        assert_eq!(progress(1234), "12.34");
    }

    #[test]
    fn timezone_forms() {
        assert_eq!(parse_tz_offset("GMT+08:00"), Some(480));
        assert_eq!(parse_tz_offset("GMT -12:00"), Some(-720));
        assert_eq!(parse_tz_offset("+0530"), Some(330));
        assert_eq!(parse_tz_offset("UTC-5"), Some(-300));
        assert_eq!(parse_tz_offset("+12:30"), None);
        assert_eq!(parse_tz_offset("08:00"), None);
        assert_eq!(parse_tz_offset("+8:75"), None);
    }

    fn policy(v: serde_json::Value) -> Result<BackupPolicy, &'static str> {
        let p: BackupPolicyJson = serde_json::from_value(v).unwrap();
        validate_policy(&p).map_err(|e| e.code)
    }

    #[test]
    fn policy_validation_codes() {
        let plan = |at: serde_json::Value, begin: &str| {
            json!({"backup_type": "auto", "save_days": 3,
                   "periodical_backup_plan": {"period_type": "weekly", "backup_at": at, "begin_at": begin}})
        };
        assert!(policy(plan(json!([1, 7]), "23:00-00:00")).is_ok());
        assert_eq!(policy(json!({"backup_type": "daily"})), Err("DCS.4073"));
        assert_eq!(policy(json!({"backup_type": "auto"})), Err("DCS.4072"));
        assert_eq!(
            policy(json!({"backup_type": "auto", "save_days": 8,
                           "periodical_backup_plan": {"period_type": "weekly", "backup_at": [1], "begin_at": "00:00-01:00"}})),
            Err("DCS.4072")
        );
        assert_eq!(
            policy(json!({"backup_type": "auto", "save_days": 1,
                           "periodical_backup_plan": {"period_type": "daily", "backup_at": [1], "begin_at": "00:00-01:00"}})),
            Err("DCS.4074")
        );
        assert_eq!(policy(plan(json!([]), "00:00-01:00")), Err("DCS.4075"));
        assert_eq!(policy(plan(json!([0]), "00:00-01:00")), Err("DCS.4075"));
        assert_eq!(policy(plan(json!([2, 2]), "00:00-01:00")), Err("DCS.4075"));
        assert_eq!(policy(plan(json!([1]), "00:30-01:30")), Err("DCS.4076"));
        assert_eq!(policy(plan(json!([1]), "00:00-02:00")), Err("DCS.4076"));
        assert_eq!(policy(plan(json!([1]), "24:00-01:00")), Err("DCS.4076"));
        assert!(policy(json!({"backup_type": "manual"})).is_ok());
    }
}

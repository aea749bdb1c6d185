//! DCS JSON shapes: what goes over the wire, and the conversions from and
//! to the domain types. The only place DCS field names live.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::error::ApiError;
use crate::model::{
    BackupFormat, BackupPolicy, BackupRecord, Instance, Millis, RestoreRecord, StoredPolicy,
};

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

/// A backup record (`backup_record_response` item, both versions),
/// borrowed from the record it shows.
#[derive(Serialize, ToSchema)]
pub struct BackupRecordJson<'a> {
    pub backup_id: &'a str,
    pub instance_id: &'a str,
    pub backup_name: &'a str,
    pub backup_type: &'static str,
    /// `RDB` or `AOF`.
    pub backup_format: &'static str,
    pub status: &'static str,
    /// `"0.00"`–`"100.00"`.
    #[schema(value_type = String)]
    pub progress: Percent,
    /// Bytes stored.
    pub size: i64,
    pub period: Option<&'a str>,
    pub remark: &'a str,
    #[schema(value_type = String)]
    pub created_at: IsoTime,
    #[schema(value_type = Option<String>)]
    pub execution_at: Option<IsoTime>,
    #[schema(value_type = String)]
    pub updated_at: IsoTime,
    pub error_code: Option<&'static str>,
    /// `"TRUE"` only for a succeeded backup whose files are intact.
    pub is_support_restore: &'static str,
}

impl<'a> From<&'a BackupRecord> for BackupRecordJson<'a> {
    fn from(b: &'a BackupRecord) -> Self {
        Self {
            backup_id: b.id.as_str(),
            instance_id: b.instance_id.as_str(),
            backup_name: &b.name,
            backup_type: b.backup_type.as_str(),
            backup_format: match b.format {
                BackupFormat::Rdb => "RDB",
                BackupFormat::Aof => "AOF",
            },
            status: b.status.as_str(),
            progress: Percent(b.progress),
            size: b.size,
            period: b.period.as_deref(),
            remark: &b.remark,
            created_at: IsoTime(b.created_at),
            execution_at: b.execution_at.map(IsoTime),
            updated_at: IsoTime(b.updated_at),
            error_code: b.error.map(|e| e.code()),
            is_support_restore: if b.is_restorable() { "TRUE" } else { "FALSE" },
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct BackupListJson<'a> {
    pub backup_record_response: Vec<BackupRecordJson<'a>>,
    /// Number of records matching the filters.
    pub total_num: u64,
}

/// A restore record (`restore_record_response` item). v1.0 adds the source
/// instance, spelled both ways the reference spells it.
#[derive(Serialize, ToSchema)]
pub struct RestoreRecordJson<'a> {
    pub restore_id: &'a str,
    pub backup_id: &'a str,
    pub backup_name: &'a str,
    pub backup_remark: &'a str,
    pub restore_name: &'a str,
    pub restore_remark: &'a str,
    pub status: &'static str,
    #[schema(value_type = String)]
    pub progress: Percent,
    #[schema(value_type = String)]
    pub created_at: IsoTime,
    #[schema(value_type = String)]
    pub updated_at: IsoTime,
    pub error_code: Option<&'static str>,
    /// Why the restore failed, in words (an addition to the DCS record:
    /// what the plan refused, or how far a failed restore got).
    pub reason: Option<&'a str>,
    #[serde(rename = "sourceInstanceID", skip_serializing_if = "Option::is_none")]
    pub source_instance_id_upper: Option<&'a str>,
    #[serde(rename = "sourceInstanceId", skip_serializing_if = "Option::is_none")]
    pub source_instance_id: Option<&'a str>,
    #[serde(rename = "sourceInstanceName", skip_serializing_if = "Option::is_none")]
    pub source_instance_name: Option<&'a str>,
}

impl<'a> RestoreRecordJson<'a> {
    pub fn new(r: &'a RestoreRecord, with_source: bool) -> Self {
        let src = |s: &'a str| with_source.then_some(s);
        Self {
            restore_id: r.id.as_str(),
            backup_id: r.backup_id.as_str(),
            backup_name: &r.backup_name,
            backup_remark: &r.backup_remark,
            restore_name: &r.name,
            restore_remark: &r.remark,
            status: r.status.as_str(),
            progress: Percent(r.progress),
            created_at: IsoTime(r.created_at),
            updated_at: IsoTime(r.updated_at),
            error_code: r.error.map(|e| e.code()),
            reason: r.reason.as_deref(),
            source_instance_id_upper: src(r.source_instance_id.as_str()),
            source_instance_id: src(r.source_instance_id.as_str()),
            source_instance_name: src(&r.source_instance_name),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct RestoreListJson<'a> {
    pub restore_record_response: Vec<RestoreRecordJson<'a>>,
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
            begin_at: Value::from(crate::model::window_label(h)),
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
    /// `true`: verify and plan only; answer the plan, write nothing.
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub dry_run: Value,
}

/// One database in a dry run's plan.
#[derive(Serialize, ToSchema)]
pub struct DryRunDbJson {
    pub db: u64,
    pub keys: u64,
    /// Value bytes in the backup.
    pub bytes: u64,
}

/// One master of the target as a dry run saw it.
#[derive(Serialize, ToSchema)]
pub struct DryRunTargetJson {
    pub address: String,
    pub engine: String,
    pub version: String,
    pub rdb_version: u32,
    pub maxmemory: u64,
    pub used_memory: u64,
}

/// The answer to `"dry_run": true`: what the restore would do, or why it
/// would be refused. Nothing was written anywhere.
#[derive(Serialize, ToSchema)]
pub struct DryRunJson {
    pub dry_run: bool,
    /// Whether the restore would run.
    pub accepted: bool,
    /// `feed` or `slicing`; null when refused.
    pub path: Option<&'static str>,
    /// Why it would be refused, in words.
    pub refusal: Option<String>,
    /// The code a refused restore records.
    pub error_code: Option<&'static str>,
    /// Every choice the plan made, in words.
    pub decisions: Vec<String>,
    pub keys: u64,
    pub databases: Vec<DryRunDbJson>,
    /// Estimated memory of the dataset once loaded, in bytes.
    pub memory_estimate: u64,
    /// Estimated duration of the writing phase, from measured rates.
    pub estimated_seconds: f64,
    pub targets: Vec<DryRunTargetJson>,
}

impl From<crate::jobs::restore::DryRun> for DryRunJson {
    fn from(d: crate::jobs::restore::DryRun) -> Self {
        Self {
            dry_run: true,
            accepted: d.refusal.is_none(),
            path: d.path,
            refusal: d.refusal,
            error_code: d.error.map(|e| e.code()),
            decisions: d.decisions,
            keys: d.keys,
            databases: d
                .databases
                .into_iter()
                .map(|(db, keys, bytes)| DryRunDbJson { db, keys, bytes })
                .collect(),
            memory_estimate: d.memory_estimate,
            estimated_seconds: (d.estimated_seconds * 10.0).round() / 10.0,
            targets: d
                .targets
                .into_iter()
                .map(
                    |(address, engine, version, rdb_version, maxmemory, used_memory)| {
                        DryRunTargetJson {
                            address,
                            engine,
                            version,
                            rdb_version,
                            maxmemory,
                            used_memory,
                        }
                    },
                )
                .collect(),
        }
    }
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

//! Test restores: the request that starts one, its record, the sandbox
//! mark and the test-restore policy.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{IsoTime, Percent};
use crate::model::{Mismatch, VerificationRecord};

/// `POST …/backups/{backup_id}/verifications` body (optional).
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateVerificationBody {
    /// `scratch` (default) or the id of an instance marked as a sandbox.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub sandbox: Value,
    /// Keys compared value for value, 0–100000 (default 1000).
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    pub sample: Value,
}

#[derive(Serialize, ToSchema)]
pub struct CreateVerificationResponse {
    pub verification_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct MismatchJson<'a> {
    pub key: &'a str,
    pub db: u64,
    pub what: &'a str,
}

/// One test restore.
#[derive(Serialize, ToSchema)]
pub struct VerificationJson<'a> {
    pub verification_id: &'a str,
    pub backup_id: &'a str,
    pub instance_id: &'a str,
    /// `waiting`, `testing`, `passed`, `failed` or `skipped`.
    pub status: &'static str,
    /// `scratch` or the sandbox instance's id.
    pub sandbox: &'a str,
    /// The server the backup was loaded into.
    pub server: Option<&'a str>,
    /// `manual`, `schedule` or `after_backup`.
    pub origin: &'static str,
    pub sample: u64,
    #[schema(value_type = String)]
    pub progress: Percent,
    #[schema(value_type = String)]
    pub created_at: IsoTime,
    #[schema(value_type = Option<String>)]
    pub started_at: Option<IsoTime>,
    #[schema(value_type = Option<String>)]
    pub finished_at: Option<IsoTime>,
    /// How long the load took: the recovery time.
    pub load_seconds: Option<f64>,
    pub keys_checked: Option<u64>,
    pub mismatches: Option<u64>,
    /// The first few differences found.
    pub mismatch_sample: Vec<MismatchJson<'a>>,
    /// `DEBUG DIGEST` of the sandbox after the load, where allowed.
    pub digest: Option<&'a str>,
    pub error_code: Option<&'static str>,
    /// Why it failed or was skipped, and notes on a pass.
    pub reason: Option<&'a str>,
}

impl<'a> From<&'a VerificationRecord> for VerificationJson<'a> {
    fn from(v: &'a VerificationRecord) -> Self {
        Self {
            verification_id: v.id.as_str(),
            backup_id: v.backup_id.as_str(),
            instance_id: v.instance_id.as_str(),
            status: v.status.as_str(),
            sandbox: &v.sandbox,
            server: v.server.as_deref(),
            origin: v.origin.as_str(),
            sample: v.sample,
            progress: Percent(v.progress),
            created_at: IsoTime(v.created_at),
            started_at: v.started_at.map(IsoTime),
            finished_at: v.finished_at.map(IsoTime),
            load_seconds: v.load_ms.map(|ms| ms as f64 / 1000.0),
            keys_checked: v.keys_checked,
            mismatches: v.mismatches,
            mismatch_sample: v.mismatch_sample.iter().map(MismatchJson::from).collect(),
            digest: v.digest.as_deref(),
            error_code: v.error.map(|e| e.code()),
            reason: v.reason.as_deref(),
        }
    }
}

impl<'a> From<&'a Mismatch> for MismatchJson<'a> {
    fn from(m: &'a Mismatch) -> Self {
        Self {
            key: &m.key,
            db: m.db,
            what: &m.what,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct VerificationListJson<'a> {
    pub verifications: Vec<VerificationJson<'a>>,
    pub total_num: u64,
}

/// `PUT …/instances/{id}/sandbox`.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct SandboxBody {
    /// true marks the instance as a sandbox (its data may be replaced by
    /// test restores); false unmarks it.
    #[serde(default)]
    #[schema(value_type = bool)]
    pub sandbox: Value,
}

/// The test-restore policy, as sent and shown.
#[derive(Serialize, Deserialize, ToSchema, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct VerificationPolicyJson {
    #[serde(default)]
    #[schema(value_type = bool)]
    pub enabled: Value,
    /// ISO weekdays 1–7, as a backup policy's `backup_at`.
    #[serde(default)]
    #[schema(value_type = Vec<i64>)]
    pub backup_at: Value,
    /// `HH:00-HH+1:00`, as a backup policy's `begin_at`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub begin_at: Value,
    /// `GMT+08:00`, `UTC-5`, `+0530` …
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub timezone: Value,
    /// `scratch` (default) or a sandbox instance's id.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub sandbox: Value,
    /// Test every automatic backup right after it succeeds.
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub after_backup: Value,
}

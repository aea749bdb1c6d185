//! Restores: their records, the body that starts one, and the answer to a
//! dry run.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{IsoTime, Percent};
use crate::model::RestoreRecord;

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
                .map(|(addr, s)| DryRunTargetJson {
                    address: addr.to_string(),
                    engine: s.engine,
                    version: s.version,
                    rdb_version: s.rdb_version,
                    maxmemory: s.maxmemory,
                    used_memory: s.used_memory,
                })
                .collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CreateRestoreResponse {
    pub restore_id: String,
}

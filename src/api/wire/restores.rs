//! Restores: their records, the body that starts one, and the answer to a
//! dry run.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::super::error::{ApiError, ApiResult};
use super::{IsoTime, Percent};
use crate::model::{KeyType, RestoreFilter, RestoreRecord};

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
    /// Whether only some keys were restored (an addition to the DCS
    /// record), and which.
    pub partial: bool,
    #[schema(value_type = Option<Object>)]
    pub filter: Option<&'a RestoreFilter>,
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
            partial: r.filter.is_some(),
            filter: r.filter.as_ref(),
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
    /// Restore only the matching keys, over their namesakes, without
    /// flushing: `{"dbs": [0], "key_patterns": ["user:*"], "types": ["hash"]}`
    /// (each optional, at least one given).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub filter: Value,
}

/// The `filter` of a restore body, checked: lists of at most
/// [`RestoreFilter::MAX_ENTRIES`] entries, databases as non-negative
/// integers, patterns of 1 to [`RestoreFilter::MAX_PATTERN`] bytes, and
/// `TYPE` names. Unknown fields are refused, so a typo cannot widen a
/// partial restore into a whole one.
pub fn parse_filter(v: &Value) -> ApiResult<Option<RestoreFilter>> {
    let obj = match v {
        Value::Null => return Ok(None),
        Value::Object(o) => o,
        _ => {
            return Err(ApiError::invalid("filter")
                .with_ext("an object {dbs, key_patterns, types} is expected"))
        }
    };
    let bad = |name: &str, why: &str| ApiError::invalid(name).with_ext(why.to_owned());
    let list = |name: &str| -> ApiResult<Vec<Value>> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) if a.len() <= RestoreFilter::MAX_ENTRIES => Ok(a.clone()),
            Some(Value::Array(_)) => Err(bad(
                &format!("filter.{name}"),
                &format!("at most {} entries", RestoreFilter::MAX_ENTRIES),
            )),
            Some(_) => Err(bad(&format!("filter.{name}"), "a list is expected")),
        }
    };
    if let Some(k) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "dbs" | "key_patterns" | "types"))
    {
        return Err(bad(
            "filter",
            &format!("unknown field {k:?}: dbs, key_patterns and types are known"),
        ));
    }
    let mut f = RestoreFilter::default();
    for v in list("dbs")? {
        let db = v
            .as_u64()
            .filter(|d| *d <= i32::MAX as u64)
            .ok_or_else(|| bad("filter.dbs", "database numbers are integers from 0"))?;
        if !f.dbs.contains(&db) {
            f.dbs.push(db);
        }
    }
    for v in list("key_patterns")? {
        let p = v
            .as_str()
            .filter(|p| !p.is_empty() && p.len() <= RestoreFilter::MAX_PATTERN)
            .ok_or_else(|| {
                bad(
                    "filter.key_patterns",
                    &format!(
                        "patterns are strings of 1 to {} bytes",
                        RestoreFilter::MAX_PATTERN
                    ),
                )
            })?;
        f.key_patterns.push(p.to_owned());
    }
    for v in list("types")? {
        let t = v.as_str().and_then(KeyType::parse).ok_or_else(|| {
            bad(
                "filter.types",
                "types are string, list, set, zset, hash, stream or module",
            )
        })?;
        if !f.types.contains(&t) {
            f.types.push(t);
        }
    }
    if f == RestoreFilter::default() {
        return Err(bad(
            "filter",
            "give dbs, key_patterns or types (key_patterns [\"*\"] restores every key without flushing)",
        ));
    }
    Ok(Some(f))
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
    /// A filter chose the keys: nothing is flushed.
    pub partial: bool,
    /// Partial: keys taken that the target holds now (they would be
    /// replaced), keys it lacks (they would be added), and the first few
    /// replaced names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys_replaced: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys_added: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_sample: Option<Vec<String>>,
}

impl From<crate::jobs::restore::DryRun> for DryRunJson {
    fn from(d: crate::jobs::restore::DryRun) -> Self {
        let keys_replaced = d.replaced.as_ref().map(|r| r.keys);
        let keys_added = keys_replaced.map(|r| d.keys.saturating_sub(r));
        Self {
            partial: d.partial,
            keys_replaced,
            keys_added,
            replaced_sample: d.replaced.map(|r| r.sample),
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

//! Backups: their records, the body that starts one, and download links.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{IsoTime, Percent};
use crate::model::{BackupFormat, BackupRecord};

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
    /// `"TRUE"` only for a succeeded backup whose files are intact and
    /// that no test restore found wanting.
    pub is_support_restore: &'static str,
    /// Why `is_support_restore` is `"FALSE"` for a succeeded backup: the
    /// failed test restore, in words. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<&'a str>,
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
            verification: b.verification_failure.as_deref(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct BackupListJson<'a> {
    pub backup_record_response: Vec<BackupRecordJson<'a>>,
    /// Number of records matching the filters.
    pub total_num: u64,
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
    /// The file's size in bytes, from the manifest (an addition to the
    /// DCS shape, so a client can check what it downloads).
    pub size: u64,
    /// Hex BLAKE3 of the file's bytes, from the manifest (an addition).
    pub blake3: String,
}

#[derive(Serialize, ToSchema)]
pub struct LinksResponse {
    /// Where the files are in the store.
    pub file_path: String,
    /// The S3 bucket, or empty for the local store.
    pub bucket_name: String,
    pub links: Vec<LinkJson>,
}

//! Starting, deleting and downloading backups (v2 and v1.0).

use std::time::Duration;

use axum::body::Bytes;
use axum::http::header;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::Value;

use super::error::{ApiError, ApiResult, Dcs};
use super::wire::{
    optional_body, validate_remark, CreateBackupBody, CreateBackupResponse, LinkJson, LinksBody,
    LinksResponse,
};
use super::{downloads, Call, Shared};
use crate::catalog::NewBackup;
use crate::jobs::RetireError;
use crate::model::{
    now_millis, BackupFormat, BackupId, BackupRecord, BackupStatus, BackupType, Instance,
};
use crate::storage::{BackupLocation, Manifest};

pub fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/v2/{project_id}/instances/{instance_id}/backups",
            post(create_backup),
        )
        .route(
            "/v2/{project_id}/instances/{instance_id}/backups/{backup_id}",
            delete(delete_backup),
        )
        .route(
            "/v2/{project_id}/instances/{instance_id}/backups/{backup_id}/links",
            post(create_links),
        )
        .route(
            "/v2/{project_id}/instances/{instance_id}/backups/{backup_id}/manifest",
            get(show_manifest),
        )
        .route(
            "/v1.0/{project_id}/instances/{instance_id}/backups",
            post(create_backup_v1),
        )
        .route(
            "/v1.0/{project_id}/instances/{instance_id}/backups/{backup_id}",
            delete(delete_backup_v1),
        )
}

/// Both versions' `POST …/backups`: the instance, then the body.
async fn start_backup(call: &Call, body: &Bytes) -> ApiResult<Json<CreateBackupResponse>> {
    let state = &call.state;
    let inst = call.instance().await?;
    let body: CreateBackupBody = optional_body(body)?;
    let remark = validate_remark(&body.remark)?;
    let format = match &body.backup_format {
        Value::Null => BackupFormat::Rdb,
        Value::String(s) => {
            BackupFormat::parse(s).ok_or_else(|| ApiError::invalid("backup_format"))?
        }
        _ => return Err(ApiError::invalid("backup_format")),
    };
    let rec = state
        .catalog
        .enqueue_backup(&NewBackup {
            id: BackupId::generate(),
            instance_id: inst.id.clone(),
            project_id: inst.project_id.clone(),
            backup_type: BackupType::Manual,
            format,
            status: BackupStatus::Waiting,
            period: None,
            remark,
            created_at: now_millis(),
            error: None,
            keep_for: None,
        })
        .await?;
    state.jobs.wake();
    tracing::info!(instance = %inst.id, backup = %rec.id, format = %format, "backup queued");
    Ok(Json(CreateBackupResponse {
        backup_id: rec.id.to_string(),
    }))
}

/// Start a manual backup.
#[utoipa::path(
    post,
    path = "/v2/{project_id}/instances/{instance_id}/backups",
    params(("project_id" = String, Path), ("instance_id" = String, Path)),
    request_body = CreateBackupBody,
    responses(
        (status = 200, body = CreateBackupResponse),
        (status = 400, description = "DCS.4096 a backup runs, DCS.4097 a restore runs, DCS.4098 remark, DCS.4800 format"),
        (status = 404, description = "DCS.3022"),
    )
)]
pub async fn create_backup(call: Call, body: Bytes) -> ApiResult<Json<CreateBackupResponse>> {
    start_backup(&call, &body).await
}

/// v1.0: start a manual backup (`{remark}`).
#[utoipa::path(
    post,
    path = "/v1.0/{project_id}/instances/{instance_id}/backups",
    params(("project_id" = String, Path), ("instance_id" = String, Path)),
    request_body = CreateBackupBody,
    responses((status = 200, body = CreateBackupResponse), (status = 400), (status = 404))
)]
pub async fn create_backup_v1(call: Call, body: Bytes) -> ApiResult<Json<CreateBackupResponse>> {
    start_backup(&call, &body).await.map_err(ApiError::v1)
}

/// The caller's backup of this instance.
async fn load_backup(state: &Shared, inst: &Instance, raw: &str) -> ApiResult<BackupRecord> {
    let id = BackupId::parse(raw).ok_or_else(|| ApiError::invalid("backup_id"))?;
    match state.catalog.backup(&id).await? {
        Some(b) if b.instance_id == inst.id && b.project_id == inst.project_id => Ok(b),
        _ => Err(ApiError::invalid("backup_id")),
    }
}

/// Both versions' `DELETE …/backups/{backup_id}`.
async fn remove_backup(call: &Call) -> ApiResult<()> {
    let state = &call.state;
    // A deleted instance's backups can still be deleted by its project.
    let inst = call.instance_including_deleted().await?;
    let rec = load_backup(state, &inst, call.raw_backup_id()).await?;
    match rec.status {
        BackupStatus::Waiting | BackupStatus::Backuping => {
            return Err(ApiError::busy(crate::model::JobKind::Backup)
                .with_ext("the backup is still running"))
        }
        BackupStatus::Deleted => return Ok(()),
        _ => {}
    }
    if state.catalog.backup_in_use(&rec.id).await? {
        return Err(ApiError::busy(crate::model::JobKind::Restore)
            .with_ext("a restore is reading this backup"));
    }
    if state.catalog.backup_under_test(&rec.id).await? {
        return Err(ApiError::busy(crate::model::JobKind::Verification)
            .with_ext("a test restore is reading this backup"));
    }
    match crate::jobs::retire_backup(&state.jobs, &rec, BackupStatus::Deleted, now_millis()).await {
        Ok(_) => {}
        Err(RetireError::Files(e)) => {
            tracing::error!(backup = %rec.id, error = %e, "cannot delete backup files");
            return Err(ApiError::new(Dcs::DeleteFailed));
        }
        Err(RetireError::Catalog(e)) => return Err(e.into()),
    }
    tracing::info!(backup = %rec.id, "backup deleted; record kept");
    Ok(())
}

/// Delete a backup's files; the record stays, with status `deleted`.
#[utoipa::path(
    delete,
    path = "/v2/{project_id}/instances/{instance_id}/backups/{backup_id}",
    params(("project_id" = String, Path), ("instance_id" = String, Path), ("backup_id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 400, description = "Running backup or unknown id"), (status = 404))
)]
pub async fn delete_backup(call: Call) -> ApiResult<StatusCode> {
    remove_backup(&call).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// v1.0: delete a backup's files.
#[utoipa::path(
    delete,
    path = "/v1.0/{project_id}/instances/{instance_id}/backups/{backup_id}",
    params(("project_id" = String, Path), ("instance_id" = String, Path), ("backup_id" = String, Path)),
    responses((status = 200, description = "`{\"message\": \"\"}`"), (status = 400), (status = 404))
)]
pub async fn delete_backup_v1(call: Call) -> ApiResult<Json<Value>> {
    remove_backup(&call).await.map_err(ApiError::v1)?;
    Ok(Json(serde_json::json!({"message": ""})))
}

/// Download links for every file of a succeeded backup.
#[utoipa::path(
    post,
    path = "/v2/{project_id}/instances/{instance_id}/backups/{backup_id}/links",
    params(("project_id" = String, Path), ("instance_id" = String, Path), ("backup_id" = String, Path)),
    request_body = LinksBody,
    responses((status = 200, body = LinksResponse), (status = 400, description = "DCS.4800 expiration or backup"), (status = 404))
)]
pub async fn create_links(call: Call, body: Bytes) -> ApiResult<Json<LinksResponse>> {
    let state = &call.state;
    let inst = call.instance().await?;
    let body: LinksBody = optional_body(&body)?;
    let ttl = body
        .expiration
        .as_i64()
        .filter(|s| (300..=86_400).contains(s))
        .ok_or_else(|| ApiError::invalid("expiration"))?;
    let rec = load_backup(state, &inst, call.raw_backup_id()).await?;
    if rec.status != BackupStatus::Succeed {
        return Err(ApiError::invalid("backup_id")
            .with_ext(format!("the backup is {}, it has no files", rec.status)));
    }
    let manifest: Manifest = state
        .catalog
        .backup_manifest(&rec.id)
        .await?
        .and_then(|m| serde_json::from_str(&m).ok())
        .ok_or_else(|| {
            tracing::error!(backup = %rec.id, "succeeded backup without a manifest");
            ApiError::internal()
        })?;
    let at = BackupLocation::of(&rec);
    let expires = now_millis() / 1000 + ttl;
    let mut links = Vec::with_capacity(manifest.files.len());
    for f in &manifest.files {
        let link = match state
            .store
            .presign_read(&at.file(&f.name), Duration::from_secs(ttl as u64))
            .await
        {
            Ok(Some(url)) => url,
            Ok(None) => downloads::signed_link(state, &rec.id, &f.name, expires).await?,
            Err(e) => {
                tracing::error!(backup = %rec.id, error = %e, "cannot presign a download link");
                return Err(ApiError::internal());
            }
        };
        links.push(LinkJson {
            file_name: f.name.clone(),
            link,
            size: f.size,
            blake3: f.blake3.clone(),
        });
    }
    let (bucket_name, file_path) = state.store.bucket_path(&at);
    Ok(Json(LinksResponse {
        file_path,
        bucket_name,
        links,
    }))
}

/// The backup's manifest exactly as stored beside its files: every file
/// with its size and BLAKE3, RDB and server versions, keys per database and
/// type, slots, source nodes, and the replication id and offset the
/// snapshot stands at.
#[utoipa::path(
    get,
    path = "/v2/{project_id}/instances/{instance_id}/backups/{backup_id}/manifest",
    params(("project_id" = String, Path), ("instance_id" = String, Path), ("backup_id" = String, Path)),
    responses(
        (status = 200, description = "The stored manifest.json, byte for byte", content_type = "application/json"),
        (status = 400, description = "DCS.4800 unknown backup, or a backup that has no files"),
        (status = 404, description = "DCS.3022"),
    )
)]
pub async fn show_manifest(call: Call) -> ApiResult<axum::response::Response> {
    let state = &call.state;
    let inst = call.instance_including_deleted().await?;
    let rec = load_backup(state, &inst, call.raw_backup_id()).await?;
    if rec.status != BackupStatus::Succeed {
        return Err(ApiError::invalid("backup_id")
            .with_ext(format!("the backup is {}, it has no manifest", rec.status)));
    }
    let at = BackupLocation::of(&rec);
    match state.store.manifest_bytes(at.prefix()).await {
        Ok(Some(raw)) => Ok(([(header::CONTENT_TYPE, "application/json")], raw).into_response()),
        Ok(None) => {
            tracing::error!(backup = %rec.id, "succeeded backup without a stored manifest");
            Err(ApiError::internal().with_ext("the backup's manifest is missing from the store"))
        }
        Err(e) => {
            tracing::error!(backup = %rec.id, error = %e, "cannot read a manifest");
            Err(ApiError::internal().with_ext("the store could not be read"))
        }
    }
}

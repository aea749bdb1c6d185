//! Starting restores (v2 and v1.0).

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

use super::error::{ApiError, ApiResult, Dcs};
use super::wire::{
    parse_body, parse_filter, validate_remark, CreateRestoreBody, CreateRestoreResponse, DryRunJson,
};
use super::{Call, Shared};
use crate::catalog::NewRestore;
use crate::model::{now_millis, BackupId, BackupStatus, RestoreId, RestoreStatus};

pub fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/v2/{project_id}/instances/{instance_id}/restores",
            post(create_restore),
        )
        .route(
            "/v1.0/{project_id}/instances/{instance_id}/restores",
            post(create_restore_v1),
        )
}

/// Both versions' `POST …/restores`: queues a restore and answers its id,
/// or with `"dry_run": true` answers the plan and writes nothing.
async fn start_restore(call: &Call, body: &Bytes) -> ApiResult<Response> {
    let Call { state, caller, .. } = call;
    let inst = call.instance().await?;
    let body: CreateRestoreBody = parse_body(body)?;
    let remark = validate_remark(&body.remark)?;
    let dry_run = match &body.dry_run {
        serde_json::Value::Null => false,
        serde_json::Value::Bool(b) => *b,
        _ => return Err(ApiError::invalid("dry_run")),
    };
    let filter = parse_filter(&body.filter)?;
    let backup_id = body
        .backup_id
        .as_str()
        .and_then(BackupId::parse)
        .ok_or_else(|| ApiError::invalid("backup_id"))?;
    // Any backup of the caller's project may be restored here.
    let backup = state
        .catalog
        .backup(&backup_id)
        .await?
        .filter(|b| b.project_id == caller.0)
        .ok_or_else(|| ApiError::invalid("backup_id"))?;
    if backup.status != BackupStatus::Succeed {
        return Err(ApiError::new(Dcs::BackupNotSucceeded)
            .with_ext(format!("the backup is {}", backup.status)));
    }
    if dry_run {
        let plan =
            crate::jobs::restore::dry_run(&state.jobs, &inst, &backup, filter.as_ref()).await;
        tracing::info!(instance = %inst.id, backup = %backup.id, accepted = plan.refusal.is_none(), "restore dry run");
        return Ok(Json(DryRunJson::from(plan)).into_response());
    }
    let source = state
        .catalog
        .instance_any(&backup.instance_id)
        .await?
        .map(|i| i.name)
        .unwrap_or_default();
    let rec = state
        .catalog
        .enqueue_restore(&NewRestore {
            id: RestoreId::generate(),
            instance_id: inst.id.clone(),
            project_id: inst.project_id.clone(),
            backup_id: backup.id.clone(),
            backup_name: backup.name.clone(),
            backup_remark: backup.remark.clone(),
            source_instance_id: backup.instance_id.clone(),
            source_instance_name: source,
            remark,
            status: RestoreStatus::Waiting,
            created_at: now_millis(),
            error: None,
            filter,
        })
        .await?;
    state.jobs.wake();
    tracing::info!(instance = %inst.id, restore = %rec.id, backup = %backup.id, "restore queued");
    let queued = CreateRestoreResponse {
        restore_id: rec.id.to_string(),
    };
    Ok(Json(queued).into_response())
}

/// Restore a backup (of this or another instance of the project) into this instance.
#[utoipa::path(
    post,
    path = "/v2/{project_id}/instances/{instance_id}/restores",
    params(("project_id" = String, Path), ("instance_id" = String, Path)),
    request_body = CreateRestoreBody,
    responses(
        (status = 200, body = CreateRestoreResponse, description = "Queued; with \"dry_run\": true, a DryRunJson plan instead and nothing written"),
        (status = 400, description = "DCS.4087 backup not succeeded, DCS.4096/4097 busy, DCS.4800 backup_id"),
        (status = 404, description = "DCS.3022"),
    )
)]
pub async fn create_restore(call: Call, body: Bytes) -> ApiResult<Response> {
    start_restore(&call, &body).await
}

/// v1.0: restore a backup into this instance.
#[utoipa::path(
    post,
    path = "/v1.0/{project_id}/instances/{instance_id}/restores",
    params(("project_id" = String, Path), ("instance_id" = String, Path)),
    request_body = CreateRestoreBody,
    responses((status = 200, body = CreateRestoreResponse), (status = 400), (status = 404))
)]
pub async fn create_restore_v1(call: Call, body: Bytes) -> ApiResult<Response> {
    start_restore(&call, &body).await.map_err(ApiError::v1)
}

//! Backup and restore record listings, v2 and v1.0 (the seed APIs).

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};

use super::error::{ApiError, ApiResult};
use super::params::{list_query, Version};
use super::wire::{BackupListJson, BackupRecordJson, RestoreListJson, RestoreRecordJson};
use super::{Caller, Shared};
use crate::model::{BackupRecord, InstanceId, ListQuery, Page, RestoreRecord};

pub fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/v2/{project_id}/instances/{instance_id}/backups",
            get(list_backups_v2),
        )
        .route(
            "/v2/{project_id}/instances/{instance_id}/restores",
            get(list_restores_v2),
        )
        .route(
            "/v1.0/{project_id}/instances/{instance_id}/backups",
            get(list_backups_v1),
        )
        .route(
            "/v1.0/{project_id}/instances/{instance_id}/restores",
            get(list_restores_v1),
        )
}

/// Validates the instance id, then the query; the catalog then checks
/// that the instance is the caller's in the same statement that reads the
/// page: the order in which a user would fix their request.
fn prepare(id: &str, raw: Option<&str>, version: Version) -> ApiResult<(InstanceId, ListQuery)> {
    let id = InstanceId::parse(id).ok_or_else(ApiError::bad_instance_id)?;
    let q = list_query(raw, version)?;
    Ok((id, q))
}

async fn backups(
    state: &Shared,
    caller: &Caller,
    id: &str,
    raw: Option<&str>,
    v: Version,
) -> ApiResult<Page<BackupRecord>> {
    let (id, q) = prepare(id, raw, v)?;
    state
        .catalog
        .list_backups(&caller.0, &id, &q)
        .await?
        .ok_or_else(ApiError::no_instance)
}

async fn restores(
    state: &Shared,
    caller: &Caller,
    id: &str,
    raw: Option<&str>,
    v: Version,
) -> ApiResult<Page<RestoreRecord>> {
    let (id, q) = prepare(id, raw, v)?;
    state
        .catalog
        .list_restores(&caller.0, &id, &q)
        .await?
        .ok_or_else(ApiError::no_instance)
}

/// A listing's JSON, written into a buffer sized for its records at once
/// (a record is about 450 bytes) rather than grown from a few bytes.
fn listing_json<T: serde::Serialize>(body: &T, records: usize) -> Response {
    let mut buf = Vec::with_capacity(64 + 512 * records);
    match serde_json::to_writer(&mut buf, body) {
        Ok(()) => ([(header::CONTENT_TYPE, "application/json")], buf).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "listing: cannot write JSON");
            ApiError::internal().into_response()
        }
    }
}

fn backup_list(page: &Page<BackupRecord>) -> Response {
    let body = BackupListJson {
        backup_record_response: page.items.iter().map(BackupRecordJson::from).collect(),
        total_num: page.total,
    };
    listing_json(&body, page.items.len())
}

fn restore_list(page: &Page<RestoreRecord>, v: Version) -> Response {
    let body = RestoreListJson {
        restore_record_response: page
            .items
            .iter()
            .map(|r| RestoreRecordJson::new(r, v == Version::V1))
            .collect(),
        total_num: page.total,
    };
    listing_json(&body, page.items.len())
}

/// List backup records, newest first.
#[utoipa::path(
    get,
    path = "/v2/{project_id}/instances/{instance_id}/backups",
    params(
        ("project_id" = String, Path), ("instance_id" = String, Path),
        ("offset" = Option<i64>, Query, description = "0-based; `start` (1-based) also accepted"),
        ("limit" = Option<i64>, Query, description = "1–1000, default 10"),
        ("begin_time" = Option<String>, Query, description = "yyyyMMddHHmmss UTC, inclusive; also beginTime, begin_Time"),
        ("end_time" = Option<String>, Query, description = "yyyyMMddHHmmss UTC, inclusive; also endTime, end_Time"),
    ),
    responses(
        (status = 200, body = BackupListJson),
        (status = 400, description = "DCS.4800 / DCS.4025 / DCS.4061"),
        (status = 404, description = "DCS.3022"),
    )
)]
pub async fn list_backups_v2(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(path): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let id = path.1;
    let page = backups(&state, &caller, &id, raw.as_deref(), Version::V2).await?;
    Ok(backup_list(&page))
}

/// List restore records, newest first; 204 when none match.
#[utoipa::path(
    get,
    path = "/v2/{project_id}/instances/{instance_id}/restores",
    params(
        ("project_id" = String, Path), ("instance_id" = String, Path),
        ("offset" = Option<i64>, Query), ("limit" = Option<i64>, Query),
        ("begin_time" = Option<String>, Query), ("end_time" = Option<String>, Query),
    ),
    responses(
        (status = 200, body = RestoreListJson),
        (status = 204, description = "No restore record matches"),
        (status = 400), (status = 404),
    )
)]
pub async fn list_restores_v2(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(path): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let id = path.1;
    let page = restores(&state, &caller, &id, raw.as_deref(), Version::V2).await?;
    if page.total == 0 {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(restore_list(&page, Version::V2))
}

/// v1.0: list backup records (`start` 1-based, `beginTime`/`endTime`).
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/instances/{instance_id}/backups",
    params(
        ("project_id" = String, Path), ("instance_id" = String, Path),
        ("start" = Option<i64>, Query, description = "1-based, default 1"),
        ("limit" = Option<i64>, Query), ("beginTime" = Option<String>, Query), ("endTime" = Option<String>, Query),
    ),
    responses((status = 200, body = BackupListJson), (status = 400), (status = 404))
)]
pub async fn list_backups_v1(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(path): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let id = path.1;
    let page = backups(&state, &caller, &id, raw.as_deref(), Version::V1)
        .await
        .map_err(ApiError::v1)?;
    Ok(backup_list(&page))
}

/// v1.0: list restore records, with the source instance of each.
#[utoipa::path(
    get,
    path = "/v1.0/{project_id}/instances/{instance_id}/restores",
    params(
        ("project_id" = String, Path), ("instance_id" = String, Path),
        ("start" = Option<i64>, Query), ("limit" = Option<i64>, Query),
        ("beginTime" = Option<String>, Query), ("endTime" = Option<String>, Query),
    ),
    responses((status = 200, body = RestoreListJson), (status = 400), (status = 404))
)]
pub async fn list_restores_v1(
    State(state): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(path): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let id = path.1;
    let page = restores(&state, &caller, &id, raw.as_deref(), Version::V1)
        .await
        .map_err(ApiError::v1)?;
    Ok(restore_list(&page, Version::V1))
}

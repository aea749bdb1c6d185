//! Backup and restore record listings, v2 and v1.0 (the seed APIs).

use axum::extract::RawQuery;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::error::{ApiError, ApiResult, Dcs};
use super::params::list_query;
use super::wire::{BackupListJson, BackupRecordJson, RestoreListJson, RestoreRecordJson};
use super::{Call, Shared, Version};
use crate::model::{InstanceId, ListQuery};

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
fn prepare(call: &Call, raw: Option<&str>, v: Version) -> ApiResult<(InstanceId, ListQuery)> {
    let id = call.instance_id()?;
    let q = list_query(raw, v)?;
    Ok((id, q))
}

/// Both versions' backup listing.
async fn backup_listing(call: &Call, raw: Option<&str>, v: Version) -> ApiResult<Response> {
    let (id, q) = prepare(call, raw, v)?;
    let found = call.state.catalog.list_backups(&call.caller.0, &id, &q);
    let page = found.await?.ok_or(Dcs::NoInstance)?;
    let body = BackupListJson {
        backup_record_response: page.items.iter().map(BackupRecordJson::from).collect(),
        total_num: page.total,
    };
    Ok(listing_json(&body, page.items.len()))
}

/// Both versions' restore listing; v2 answers 204 when none match, v1.0
/// adds each record's source instance.
async fn restore_listing(call: &Call, raw: Option<&str>, v: Version) -> ApiResult<Response> {
    let (id, q) = prepare(call, raw, v)?;
    let found = call.state.catalog.list_restores(&call.caller.0, &id, &q);
    let page = found.await?.ok_or(Dcs::NoInstance)?;
    if page.total == 0 && v == Version::V2 {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let with_source = v == Version::V1;
    let body = RestoreListJson {
        restore_record_response: page
            .items
            .iter()
            .map(|r| RestoreRecordJson::new(r, with_source))
            .collect(),
        total_num: page.total,
    };
    Ok(listing_json(&body, page.items.len()))
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
pub async fn list_backups_v2(call: Call, RawQuery(raw): RawQuery) -> ApiResult<Response> {
    backup_listing(&call, raw.as_deref(), Version::V2).await
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
pub async fn list_restores_v2(call: Call, RawQuery(raw): RawQuery) -> ApiResult<Response> {
    restore_listing(&call, raw.as_deref(), Version::V2).await
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
pub async fn list_backups_v1(call: Call, RawQuery(raw): RawQuery) -> ApiResult<Response> {
    backup_listing(&call, raw.as_deref(), Version::V1)
        .await
        .map_err(ApiError::v1)
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
pub async fn list_restores_v1(call: Call, RawQuery(raw): RawQuery) -> ApiResult<Response> {
    restore_listing(&call, raw.as_deref(), Version::V1)
        .await
        .map_err(ApiError::v1)
}

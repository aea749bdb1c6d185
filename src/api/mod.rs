//! HTTP only: routing, AK/SK authentication, DCS request and response
//! shapes, error-code mapping and the OpenAPI document.

pub mod auth;
mod backups;
mod downloads;
pub mod error;
mod instances;
pub mod params;
mod records;
mod restores;
pub mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;

use self::error::ApiError;
use crate::catalog::Catalog;
use crate::jobs::Jobs;
use crate::model::{InstanceId, ProjectId, Secret};
use crate::redis::ConnectOptions;
use crate::storage::Store;

/// Largest request body accepted (every DCS body is small).
const MAX_BODY: usize = 1024 * 1024;

/// What every handler can reach.
#[derive(Debug)]
pub struct AppState {
    pub catalog: Catalog,
    pub store: Store,
    pub redis: ConnectOptions,
    pub jobs: Arc<Jobs>,
    pub credentials: auth::CredentialCache,
    /// Signs download links of the local store; shared by every replica.
    pub link_key: Secret,
    /// Base URL of download links; set at start-up once the address is known.
    pub public_url: std::sync::OnceLock<String>,
    status_cache: Mutex<HashMap<InstanceId, (&'static str, Instant)>>,
}

impl AppState {
    pub fn new(jobs: Arc<Jobs>, link_key: Secret) -> Self {
        Self {
            catalog: jobs.catalog.clone(),
            store: jobs.store.clone(),
            redis: jobs.redis.clone(),
            jobs,
            credentials: auth::CredentialCache::default(),
            link_key,
            public_url: std::sync::OnceLock::new(),
            status_cache: Mutex::new(HashMap::new()),
        }
    }
}

pub type Shared = Arc<AppState>;

/// The project the request's credential belongs to, set by [`authenticate`].
#[derive(Clone, Debug)]
pub struct Caller(pub ProjectId);

/// Verifies the signature and that the path's project is the caller's own.
async fn authenticate(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let body: Bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return ApiError::invalid("body").into_response(),
    };
    let project = match auth::verify(
        &state.catalog,
        &state.credentials,
        &parts.method,
        parts.uri.path(),
        parts.uri.query(),
        &parts.headers,
        &body,
        time::OffsetDateTime::now_utc(),
    )
    .await
    {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(path = parts.uri.path(), code = e.code, "request refused");
            return e.into_response();
        }
    };
    let path_project = parts.uri.path().split('/').nth(2).unwrap_or("");
    if path_project != project.as_str() {
        return ApiError::unauthorized("DCS.1004", "Project ID does not match the token.")
            .into_response();
    }
    let mut req = Request::from_parts(parts, Body::from(body));
    req.extensions_mut().insert(Caller(project));
    next.run(req).await
}

#[utoipa::path(get, path = "/health", responses((status = 200, description = "The service can serve")))]
async fn health(State(state): State<Shared>) -> Response {
    match state.catalog.ping().await {
        Ok(()) => (StatusCode::OK, Json(serde_json::json!({"status": "ok"}))).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: catalog unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"status": "unavailable"})),
            )
                .into_response()
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "dcs-backup",
        description = "Backup and restore of Redis and Valkey, speaking the Huawei Cloud DCS backup/restore API. \
                       Every call under /v2 and /v1.0 is signed with SDK-HMAC-SHA256 (AK/SK)."
    ),
    paths(
        health,
        instances::create_instance,
        instances::list_instances,
        instances::show_instance,
        instances::modify_instance,
        instances::delete_instance,
        records::list_backups_v2,
        records::list_restores_v2,
        records::list_backups_v1,
        records::list_restores_v1,
        backups::create_backup,
        backups::delete_backup,
        backups::create_links,
        backups::create_backup_v1,
        backups::delete_backup_v1,
        restores::create_restore,
        restores::create_restore_v1,
        downloads::download,
    ),
    components(schemas(
        wire::BackupRecordJson,
        wire::BackupListJson,
        wire::RestoreRecordJson,
        wire::RestoreListJson,
        wire::CreateInstanceBody,
        wire::ModifyInstanceBody,
        wire::CreateInstanceResponse,
        wire::InstanceJson,
        wire::InstanceListJson,
        wire::BackupPolicyJson,
        wire::BackupPlanJson,
        wire::InstanceBackupPolicyJson,
        wire::CreateBackupBody,
        wire::CreateBackupResponse,
        wire::LinksBody,
        wire::LinksResponse,
        wire::LinkJson,
        wire::CreateRestoreBody,
        wire::CreateRestoreResponse,
    ))
)]
pub struct ApiDoc;

async fn openapi() -> Response {
    Json(ApiDoc::openapi()).into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found_url()
}

/// The whole HTTP surface.
pub fn router(state: Shared) -> Router {
    let signed = Router::new()
        .merge(instances::routes())
        .merge(records::routes())
        .merge(backups::routes())
        .merge(restores::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi))
        .merge(downloads::routes())
        .merge(signed)
        .fallback(not_found)
        .with_state(state)
}

/// Parses the instance id in a path and loads the caller's instance.
pub(crate) async fn load_instance(
    state: &AppState,
    caller: &Caller,
    raw_id: &str,
) -> Result<crate::model::Instance, ApiError> {
    let id = InstanceId::parse(raw_id).ok_or_else(ApiError::bad_instance_id)?;
    state
        .catalog
        .instance(&caller.0, &id)
        .await?
        .ok_or_else(ApiError::no_instance)
}

/// Reachability of an instance as `RUNNING` or `ERROR`, checked at most
/// every two seconds.
pub(crate) async fn instance_status(
    state: &AppState,
    inst: &crate::model::Instance,
) -> &'static str {
    const FRESH: Duration = Duration::from_secs(2);
    if let Ok(cache) = state.status_cache.lock() {
        if let Some((s, at)) = cache.get(&inst.id) {
            if at.elapsed() < FRESH {
                return s;
            }
        }
    }
    let opts = ConnectOptions {
        connect_timeout: Duration::from_secs(1),
        io_timeout: Duration::from_secs(1),
        tls: state.redis.tls.clone(),
        targets: state.redis.targets.clone(),
    };
    let c = &inst.connection;
    let alive = match crate::redis::Conn::open(c, &c.host, c.port, &opts).await {
        Ok(mut conn) => matches!(
            conn.cmd(&["PING"]).await,
            Ok(crate::redis::Reply::Simple(_))
        ),
        Err(_) => false,
    };
    let status = if alive { "RUNNING" } else { "ERROR" };
    if let Ok(mut cache) = state.status_cache.lock() {
        if cache.len() > 100_000 {
            cache.clear();
        }
        cache.insert(inst.id.clone(), (status, Instant::now()));
    }
    status
}

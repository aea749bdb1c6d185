//! HTTP only: routing, AK/SK authentication, DCS request and response
//! shapes, error-code mapping and the OpenAPI document.

pub mod auth;
mod backups;
pub mod console;
mod downloads;
pub mod error;
mod instances;
mod metrics;
pub mod params;
mod pitr;
mod reachability;
mod records;
mod restores;
mod verifications;
pub mod wire;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;

use self::error::{ApiError, ApiResult, Dcs};
use crate::catalog::Catalog;
use crate::config::HttpSettings;
use crate::jobs::Jobs;
use crate::model::{Instance, InstanceId, ProjectId};
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
    /// Signatures of mutating requests are accepted once.
    pub replays: auth::ReplayGuard,
    /// Signs download links of the local store; shared by every replica.
    link_key: downloads::LinkKey,
    /// Base URL of download links; set at start-up once the address is known.
    pub public_url: std::sync::OnceLock<String>,
    /// The listener's timeouts and connection limit.
    pub http: HttpSettings,
    /// Set when the API is served over TLS.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// Whether instances answer: their `status` and `dcs_backup_instance_up`.
    reachability: reachability::Reachability,
}

impl AppState {
    pub fn new(
        jobs: Arc<Jobs>,
        http: HttpSettings,
        tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    ) -> Self {
        Self {
            catalog: jobs.catalog.clone(),
            store: jobs.store.clone(),
            redis: jobs.redis.clone(),
            jobs,
            credentials: auth::CredentialCache::default(),
            replays: auth::ReplayGuard::default(),
            link_key: downloads::LinkKey::default(),
            public_url: std::sync::OnceLock::new(),
            http,
            tls,
            reachability: reachability::Reachability::default(),
        }
    }
}

pub type Shared = Arc<AppState>;

/// The project the request's credential belongs to, set by [`authenticate`].
#[derive(Clone, Debug)]
pub struct Caller(pub ProjectId);

/// The API version a route belongs to: it decides the query's parameter
/// names and paging (`params`) and the shape of an error body (`error`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V2,
    V1,
}

/// The ids a signed route's path may carry, as sent.
#[derive(serde::Deserialize, Debug, Default)]
struct PathIds {
    instance_id: Option<String>,
    backup_id: Option<String>,
}

/// What every signed handler starts from: the shared state, the caller
/// [`authenticate`] found, and the ids in the path. Parsing and loading
/// them is left to the handler, so that it validates in the order a user
/// fixes a request.
pub(crate) struct Call {
    pub state: Shared,
    pub caller: Caller,
    ids: PathIds,
}

impl FromRequestParts<Shared> for Call {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Response> {
        let Some(caller) = parts.extensions.get::<Caller>().cloned() else {
            tracing::error!("a signed route was reached without authentication");
            return Err(ApiError::internal().into_response());
        };
        let Path(ids) = Path::<PathIds>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Self {
            state: state.clone(),
            caller,
            ids,
        })
    }
}

impl Call {
    /// The `{instance_id}` of the path, parsed (DCS.4061 if malformed).
    pub fn instance_id(&self) -> ApiResult<InstanceId> {
        let raw = self.ids.instance_id.as_deref().unwrap_or("");
        Ok(InstanceId::parse(raw).ok_or(Dcs::BadInstanceId)?)
    }

    /// The `{backup_id}` of the path, as sent.
    pub fn raw_backup_id(&self) -> &str {
        self.ids.backup_id.as_deref().unwrap_or("")
    }

    /// The caller's instance named by the path.
    pub async fn instance(&self) -> ApiResult<Instance> {
        let id = self.instance_id()?;
        let found = self.state.catalog.instance(&self.caller.0, &id).await?;
        Ok(found.ok_or(Dcs::NoInstance)?)
    }

    /// Like [`Call::instance`], but finds a deleted instance too: only for
    /// the routes that list and delete its backups.
    pub async fn instance_including_deleted(&self) -> ApiResult<Instance> {
        let id = self.instance_id()?;
        let catalog = &self.state.catalog;
        let found = catalog
            .instance_including_deleted(&self.caller.0, &id)
            .await?;
        Ok(found.map(|(inst, _deleted)| inst).ok_or(Dcs::NoInstance)?)
    }
}

/// Guards every signed route, cheapest check first: repeated query keys
/// (400), then the signature's presence and date from the headers alone
/// (401 before a byte of the body is read), then the body within the body
/// deadline, the signature over it, the path's project, and for a mutating
/// request its first use (401 `Request already used.` on a replay, on any
/// replica sharing the catalog).
async fn authenticate(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    if let Err(e) = params::refuse_repeated(parts.uri.query()) {
        let version = if path.starts_with("/v1.0/") {
            Version::V1
        } else {
            Version::V2
        };
        return e.in_version(version).into_response();
    }
    let now = time::OffsetDateTime::now_utc();
    let refused = |e: ApiError| {
        tracing::info!(path, code = e.code(), "request refused");
        e.into_response()
    };
    let presented = match auth::precheck(&parts.headers, now) {
        Ok(p) => p,
        Err(e) => return refused(e),
    };
    let body = axum::body::to_bytes(body, MAX_BODY);
    let body: Bytes = match tokio::time::timeout(state.http.body_timeout, body).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => return ApiError::invalid("body").into_response(),
        Err(_) => {
            let mut r = ApiError::new(Dcs::BodyTimeout).into_response();
            r.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            return r;
        }
    };
    let project = match auth::check_signature(
        &state.catalog,
        &state.credentials,
        &presented,
        &parts.method,
        path,
        parts.uri.query(),
        &body,
    )
    .await
    {
        Ok(p) => p,
        Err(e) => return refused(e),
    };
    let path_project = path.split('/').nth(2).unwrap_or("");
    if path_project != project.as_str() {
        return ApiError::new(Dcs::ProjectMismatch).into_response();
    }
    if auth::is_mutating(&parts.method) {
        match state
            .replays
            .first_use(&state.catalog, &presented, now)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    path,
                    ak = presented.access(),
                    "replayed signed request refused"
                );
                return ApiError::new(Dcs::SignatureReused).into_response();
            }
            Err(e) => return e.into_response(),
        }
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
        backups::show_manifest,
        backups::create_backup_v1,
        backups::delete_backup_v1,
        restores::create_restore,
        restores::create_restore_v1,
        pitr::set_pitr_policy,
        pitr::show_pitr_policy,
        pitr::show_pitr_info,
        pitr::list_pitr_periods,
        pitr::restore_pitr,
        pitr::list_jobs,
        verifications::create_verification,
        verifications::list_verifications,
        verifications::set_sandbox,
        verifications::show_policy,
        verifications::set_policy,
        downloads::download,
    ),
    components(schemas(
        wire::BackupRecordJson,
        wire::BackupListJson,
        wire::RestoreRecordJson,
        wire::RestoreListJson,
        wire::InstanceBody,
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
        wire::DryRunJson,
        wire::DryRunDbJson,
        wire::DryRunTargetJson,
        wire::PitrPolicyBody,
        wire::PitrPolicyJson,
        wire::PitrInfoJson,
        wire::PitrPeriodsJson,
        wire::PitrRestoreBody,
        wire::PitrRestoreResponse,
        wire::JobsJson,
        wire::JobJson,
        wire::JobInstanceJson,
        wire::CreateVerificationBody,
        wire::CreateVerificationResponse,
        wire::VerificationJson,
        wire::VerificationListJson,
        wire::MismatchJson,
        wire::SandboxBody,
        wire::VerificationPolicyJson,
    ))
)]
pub struct ApiDoc;

async fn openapi() -> Response {
    Json(ApiDoc::openapi()).into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(Dcs::NoUrl)
}

/// The whole HTTP surface.
pub fn router(state: Shared) -> Router {
    let signed = Router::new()
        .merge(instances::routes())
        .merge(records::routes())
        .merge(backups::routes())
        .merge(restores::routes())
        .merge(pitr::routes())
        .merge(verifications::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi))
        .merge(metrics::routes())
        .merge(downloads::routes())
        .merge(console::routes())
        .merge(signed)
        .fallback(not_found)
        .with_state(state)
}

/// Reachability of an instance as `RUNNING` or `ERROR`, checked at most
/// every two seconds.
pub(crate) async fn instance_status(
    state: &AppState,
    inst: &crate::model::Instance,
) -> &'static str {
    if state.reachability.status(&state.redis, inst).await {
        "RUNNING"
    } else {
        "ERROR"
    }
}

//! Download links of the local store: `GET /downloads/{backup_id}/{file}
//! ?expires=UNIX&signature=HEX`, signed with the server's link key, no other
//! authentication. (S3 stores hand out presigned URLs instead.)

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use subtle::ConstantTimeEq;

use super::auth::sign;
use super::error::{ApiError, Dcs};
use super::params::pairs;
use super::{AppState, Shared};
use crate::catalog::Catalog;
use crate::model::{now_millis, BackupId, BackupStatus, Secret};
use crate::storage::{BackupLocation, Manifest};

pub fn routes() -> Router<Shared> {
    Router::new().route("/downloads/{backup_id}/{file}", get(download))
}

/// The link-signing key, re-read from the catalog when older than
/// [`LINK_KEY_FRESH`], so that `rotate_link_key` anywhere invalidates old
/// links on every replica within seconds.
#[derive(Debug, Default)]
pub struct LinkKey {
    cached: Mutex<Option<(Secret, Instant)>>,
}

const LINK_KEY_FRESH: Duration = Duration::from_secs(2);

impl LinkKey {
    async fn current(&self, catalog: &Catalog) -> Result<Secret, ApiError> {
        if let Ok(c) = self.cached.lock() {
            if let Some((k, at)) = c.as_ref() {
                if at.elapsed() < LINK_KEY_FRESH {
                    return Ok(k.clone());
                }
            }
        }
        let key = Secret::new(catalog.link_key().await?);
        if let Ok(mut c) = self.cached.lock() {
            *c = Some((key.clone(), Instant::now()));
        }
        Ok(key)
    }
}

fn link_signature(key: &Secret, backup: &str, file: &str, expires: i64) -> String {
    sign(key.expose(), &format!("{backup}/{file}\n{expires}"))
}

/// A link to one file of a backup, valid until `expires` (Unix seconds)
/// while the link key stays and the backup's instance is not deleted.
pub async fn signed_link(
    state: &AppState,
    backup: &BackupId,
    file: &str,
    expires: i64,
) -> Result<String, ApiError> {
    let key = state.link_key.current(&state.catalog).await?;
    let base = state.public_url.get().map(String::as_str).unwrap_or("");
    let sig = link_signature(&key, backup.as_str(), file, expires);
    let file_enc = percent_encoding::utf8_percent_encode(file, percent_encoding::NON_ALPHANUMERIC);
    Ok(format!(
        "{base}/downloads/{backup}/{file_enc}?expires={expires}&signature={sig}"
    ))
}

fn denied() -> Response {
    ApiError::new(Dcs::LinkDenied).into_response()
}

/// Download one backup file through a signed, expiring link.
#[utoipa::path(
    get,
    path = "/downloads/{backup_id}/{file}",
    params(
        ("backup_id" = String, Path), ("file" = String, Path),
        ("expires" = i64, Query), ("signature" = String, Query),
    ),
    responses(
        (status = 200, description = "The file's bytes", content_type = "application/octet-stream"),
        (status = 403, description = "Bad signature or expired"),
        (status = 404, description = "The backup has no files any more"),
    )
)]
pub async fn download(
    State(state): State<Shared>,
    Path((backup, file)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = pairs(raw.as_deref());
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let (Some(expires), Some(signature)) = (
        get("expires").and_then(|e| e.parse::<i64>().ok()),
        get("signature"),
    ) else {
        return denied();
    };
    let key = match state.link_key.current(&state.catalog).await {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let expected = link_signature(&key, &backup, &file, expires);
    let valid: bool = expected.as_bytes().ct_eq(signature.as_bytes()).into();
    if !valid || expires < now_millis() / 1000 {
        return denied();
    }
    let Some(id) = BackupId::parse(&backup) else {
        return denied();
    };
    let rec = match state.catalog.backup(&id).await {
        Ok(Some(r)) => r,
        Ok(None) => return denied(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    // A link dies with its instance: answered like an expired one.
    match state
        .catalog
        .instance(&rec.project_id, &rec.instance_id)
        .await
    {
        Ok(Some(_)) => {}
        Ok(None) => return denied(),
        Err(e) => return ApiError::from(e).into_response(),
    }
    let gone = || ApiError::new(Dcs::FileGone).into_response();
    if rec.status != BackupStatus::Succeed {
        return gone();
    }
    let size = match state.catalog.backup_manifest(&id).await {
        Ok(Some(m)) => serde_json::from_str::<Manifest>(&m)
            .ok()
            .and_then(|m| m.files.into_iter().find(|f| f.name == file).map(|f| f.size)),
        _ => None,
    };
    let Some(size) = size else { return gone() };
    let path = BackupLocation::of(&rec).file(&file);
    match state.store.read_stream(&path).await {
        Ok(stream) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (header::CONTENT_LENGTH, size.to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{file}\""),
                ),
            ],
            Body::from_stream(stream),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(backup = %rec.id, file = %file, error = %e, "cannot read backup file");
            gone()
        }
    }
}

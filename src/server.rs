//! Start-up and the server loop: `run(listener, app, shutdown)` so tests
//! start the real server in-process on port 0.

use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::api::{self, AppState, Shared};
use crate::catalog::{Catalog, CatalogError, Credential};
use crate::config::Config;
use crate::model::ProjectId;
use crate::redis::{ConnectOptions, TlsSettings};
use crate::storage::{StorageError, Store};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data dir {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error("metadata store {url}: {source}")]
    Catalog { url: String, source: CatalogError },
    #[error("backup store {url:?} is not usable: {source}")]
    Store {
        url: crate::storage::StorageUrl,
        source: StorageError,
    },
    #[error("cannot write credentials file {0}: {1}")]
    Credentials(String, std::io::Error),
    #[error("redis TLS settings: {0}")]
    Tls(#[from] crate::redis::RedisError),
}

/// Strips the password from a database URL for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Opens the catalog and the store, creates the first credential on an
/// empty catalog, and returns the shared state.
pub async fn prepare(config: &Config) -> Result<Shared, StartError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| StartError::DataDir(config.data_dir.display().to_string(), e))?;
    let catalog = Catalog::connect(&config.database_url)
        .await
        .map_err(|source| StartError::Catalog {
            url: redact_url(&config.database_url),
            source,
        })?;
    let store = Store::open(&config.storage)
        .await
        .map_err(|source| StartError::Store {
            url: config.storage.clone(),
            source,
        })?;
    bootstrap_credentials(&catalog, &config.data_dir).await?;
    let tls = match &config.redis_ca_file {
        Some(path) => Some(TlsSettings::new(Some(path))?),
        None => None,
    };
    let redis = ConnectOptions {
        tls,
        ..ConnectOptions::default()
    };
    Ok(Arc::new(AppState::new(catalog, store, redis)))
}

/// On a catalog with no credential, creates a project and a credential and
/// writes them to `DATA_DIR/credentials.json` (mode 0600).
async fn bootstrap_credentials(catalog: &Catalog, data_dir: &Path) -> Result<(), StartError> {
    let err = |source| StartError::Catalog {
        url: catalog.engine().into(),
        source,
    };
    if catalog.credential_count().await.map_err(err)? > 0 {
        return Ok(());
    }
    let project = ProjectId::generate();
    let cred = catalog.create_credential(&project).await.map_err(err)?;
    let path = data_dir.join("credentials.json");
    write_credentials_file(&path, &cred)
        .map_err(|e| StartError::Credentials(path.display().to_string(), e))?;
    tracing::info!(path = %path.display(), project = %project, "first start: created a project and its credential");
    Ok(())
}

/// The JSON `credential create` prints and `credentials.json` holds.
pub fn credential_json(c: &Credential) -> String {
    serde_json::json!({"project_id": c.project_id.as_str(), "ak": c.ak, "sk": c.sk.expose()})
        .to_string()
}

fn write_credentials_file(path: &Path, cred: &Credential) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{}", credential_json(cred))?;
    f.sync_all()
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    app: Shared,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = api::router(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("sqlite:///x/y.db"), "sqlite:///x/y.db");
    }
}

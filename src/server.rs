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
use crate::jobs::Jobs;
use crate::model::Secret;
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
    #[error("cannot open the replication port {0}: {1}")]
    Replication(String, std::io::Error),
    #[error("redis TLS settings: {0}")]
    Tls(#[from] crate::redis::RedisError),
    #[error("instance password key: {0}")]
    Secrets(#[from] crate::secrets::SecretError),
}

/// Makes `path` owner-only (`mode`) if it exists: files created by older
/// versions, or before the umask was set, were world-readable.
pub fn owner_only(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o777 != mode => {
            if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
                tracing::warn!(path = %path.display(), error = %e, "cannot make owner-only");
            }
        }
        _ => {}
    }
}

/// Opens the key for instance passwords (`DCS_BACKUP_SECRET_KEY`, else
/// `DATA_DIR/secret.key`, created on first use).
pub fn secret_keys(
    config_key: Option<&Secret>,
    data_dir: &Path,
) -> Result<crate::secrets::SecretKeys, crate::secrets::SecretError> {
    crate::secrets::SecretKeys::open(data_dir, config_key.map(Secret::expose))
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
    owner_only(&config.data_dir, 0o700);
    let keys = Arc::new(secret_keys(config.secret_key.as_ref(), &config.data_dir)?);
    let catalog_err = |source| StartError::Catalog {
        url: redact_url(&config.database_url),
        source,
    };
    let catalog = Catalog::connect(&config.database_url)
        .await
        .map_err(catalog_err)?
        .with_secrets(Arc::clone(&keys));
    let (sealed, unknown) = catalog
        .seal_plaintext_passwords()
        .await
        .map_err(catalog_err)?;
    if sealed > 0 {
        tracing::info!(
            count = sealed,
            "encrypted instance passwords stored in plain text by an older version"
        );
    }
    if unknown > 0 {
        tracing::error!(
            count = unknown,
            keys = ?keys.key_ids(),
            "instance passwords are encrypted with a key this service does not hold; those instances are unusable until every replica is given the same key (DCS_BACKUP_SECRET_KEY or DATA_DIR/secret.key)"
        );
    }
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
        targets: crate::redis::TargetPolicy::new(
            config.allow_targets.clone(),
            config.deny_targets.clone(),
        ),
        ..ConnectOptions::default()
    };
    let node_id = node_id(&config.data_dir)
        .map_err(|e| StartError::DataDir(config.data_dir.display().to_string(), e))?;
    tighten_files(config, &catalog);
    let link_key = catalog
        .setting_or_init("link_signing_key", || {
            crate::catalog::random_token(48, LINK_KEY_ALPHABET)
        })
        .await
        .map_err(|source| StartError::Catalog {
            url: redact_url(&config.database_url),
            source,
        })?;
    let (shutdown, stop_rx) = tokio::sync::watch::channel(false);
    let feed = start_feed(config, stop_rx).await?;
    redis.targets.add_own(feed.local_addr());
    let jobs = Arc::new(Jobs::new(
        catalog,
        store,
        redis,
        node_id,
        config.jobs.clone(),
        Some(feed),
        shutdown,
    ));
    let state = AppState::new(jobs, Secret::new(link_key));
    if let Some(url) = &config.public_url {
        let _ = state.public_url.set(url.trim_end_matches('/').to_owned());
    }
    Ok(Arc::new(state))
}

/// The replication listener restores feed targets from: on the listen
/// host, at `--replication-port` or a free port, advertised as
/// `--advertise-addr` or the listen host.
async fn start_feed(
    config: &Config,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Arc<crate::redis::feed::FeedServer>, StartError> {
    let host = config
        .listen
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(['[', ']']).to_owned())
        .unwrap_or_else(|| "127.0.0.1".into());
    let ip: std::net::IpAddr = match host.parse() {
        Ok(ip) => ip,
        Err(_) => tokio::net::lookup_host((host.as_str(), 0))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .map(|a| a.ip())
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1])),
    };
    let advertise = match &config.advertise_addr {
        Some(a) => a.clone(),
        None if ip.is_unspecified() => {
            tracing::warn!("listening on all addresses without --advertise-addr: restore targets are told 127.0.0.1");
            "127.0.0.1".into()
        }
        None => host.clone(),
    };
    let bind = std::net::SocketAddr::new(ip, config.replication_port.unwrap_or(0));
    let feed = crate::redis::feed::FeedServer::start(bind, advertise, stop)
        .await
        .map_err(|e| StartError::Replication(bind.to_string(), e))?;
    let (h, p) = feed.advertised();
    tracing::info!(listen = %feed.local_addr(), advertised = %format!("{h}:{p}"), "replication listener for restores");
    Ok(feed)
}

/// Everything the service keeps under the data dir, and the local store's
/// root, made owner-only (for data dirs written by older versions).
fn tighten_files(config: &Config, catalog: &Catalog) {
    let d = &config.data_dir;
    for f in ["credentials.json", "node-id", crate::secrets::KEY_FILE] {
        owner_only(&d.join(f), 0o600);
    }
    if let Some(db) = catalog.sqlite_file() {
        for suffix in ["", "-wal", "-shm", "-journal", "-migrations.lock"] {
            let mut p = db.clone().into_os_string();
            p.push(suffix);
            owner_only(Path::new(&p), 0o600);
        }
    }
    if let crate::storage::StorageUrl::Fs { root } = &config.storage {
        owner_only(root, 0o700);
    }
}

const LINK_KEY_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// This node's identity in job leases, kept in `DATA_DIR/node-id` so a
/// restarted service recognizes the jobs it was running.
fn node_id(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        _ => {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "node".into());
            let id = format!("{host}-{}", uuid::Uuid::new_v4().simple());
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)?;
            f.write_all(id.as_bytes())?;
            Ok(id)
        }
    }
}

/// On a catalog that never had a credential, creates a project and a credential and
/// writes them to `DATA_DIR/credentials.json` (mode 0600).
async fn bootstrap_credentials(catalog: &Catalog, data_dir: &Path) -> Result<(), StartError> {
    let err = |source| StartError::Catalog {
        url: catalog.engine().into(),
        source,
    };
    let Some(cred) = catalog.bootstrap_credential().await.map_err(err)? else {
        return Ok(());
    };
    let project = &cred.project_id;
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
    // The API's own port is no Redis target (nor is the replication
    // port, registered at prepare).
    app.redis.targets.add_own(listener.local_addr()?);
    if app.public_url.get().is_none() {
        let _ = app
            .public_url
            .set(format!("http://{}", listener.local_addr()?));
    }
    let stop_rx = app.jobs.shutdown.subscribe();
    let runner = tokio::spawn(Arc::clone(&app.jobs).run(stop_rx));
    let jobs = Arc::clone(&app.jobs);
    let router = api::router(app);
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = jobs.shutdown.send(true);
        })
        .await;
    let _ = runner.await;
    served
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

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
    let node_id = node_id(&config.data_dir)
        .map_err(|e| StartError::DataDir(config.data_dir.display().to_string(), e))?;
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

/// The replication listener restores feed targets from: bound to
/// `--replication-listen` (loopback by default, never the API's host),
/// at `--replication-port` or a free port, advertised as
/// `--advertise-addr` or the bind host.
async fn start_feed(
    config: &Config,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Arc<crate::redis::feed::FeedServer>, StartError> {
    let listen = config
        .replication_listen
        .clone()
        .unwrap_or_else(|| "127.0.0.1".into());
    let (host, port) = split_host_port(&listen);
    let port = port.or(config.replication_port).unwrap_or(0);
    let ip: std::net::IpAddr = match host.parse() {
        Ok(ip) => ip,
        Err(_) => tokio::net::lookup_host((host.as_str(), 0))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .map(|a| a.ip())
            .ok_or_else(|| {
                StartError::Replication(
                    listen.clone(),
                    std::io::Error::new(std::io::ErrorKind::NotFound, "cannot resolve the host"),
                )
            })?,
    };
    let advertise = match &config.advertise_addr {
        Some(a) => a.clone(),
        None if ip.is_unspecified() => {
            tracing::warn!("the replication listener is on all addresses without --advertise-addr: restore targets are told 127.0.0.1");
            "127.0.0.1".into()
        }
        None => host.clone(),
    };
    let bind = std::net::SocketAddr::new(ip, port);
    let feed =
        crate::redis::feed::FeedServer::start(bind, advertise, config.feed_limits.clone(), stop)
            .await
            .map_err(|e| StartError::Replication(bind.to_string(), e))?;
    let (h, p) = feed.advertised();
    tracing::info!(listen = %feed.local_addr(), advertised = %format!("{h}:{p}"), "replication listener for restores");
    Ok(feed)
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(s: &str) -> (String, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((h, tail)) = rest.split_once(']') {
            let port = tail.strip_prefix(':').and_then(|p| p.parse().ok());
            return (h.to_owned(), port);
        }
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h.to_owned(), Some(port)),
            Err(_) => (s.to_owned(), None),
        },
        _ => (s.to_owned(), None),
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
            std::fs::write(&path, &id)?;
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
    fn splits_listen_addresses() {
        assert_eq!(split_host_port("127.0.0.1"), ("127.0.0.1".into(), None));
        assert_eq!(
            split_host_port("0.0.0.0:7000"),
            ("0.0.0.0".into(), Some(7000))
        );
        assert_eq!(split_host_port("[::1]:7000"), ("::1".into(), Some(7000)));
        assert_eq!(split_host_port("::1"), ("::1".into(), None));
        assert_eq!(split_host_port("feed.local"), ("feed.local".into(), None));
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("sqlite:///x/y.db"), "sqlite:///x/y.db");
    }
}

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
    #[error("API TLS: {0}")]
    ApiTls(String),
    #[error("redis TLS settings: {0}")]
    Tls(#[from] crate::redis::RedisError),
    #[error("instance password key: {0}")]
    Secrets(#[from] crate::secrets::SecretError),
    #[error("{0}")]
    Sandbox(String),
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
    let store = Store::open(&config.storage, &config.s3_keys)
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
    // The link key is created now if new; the API re-reads it as it
    // changes (see `Catalog::rotate_link_key`).
    catalog
        .link_key()
        .await
        .map_err(|source| StartError::Catalog {
            url: redact_url(&config.database_url),
            source,
        })?;
    let tls = match &config.http.tls {
        Some((cert, key)) => Some(api_tls(cert, key).map_err(StartError::ApiTls)?),
        None => None,
    };
    let mut job_settings = config.jobs.clone();
    job_settings.sandbox_root = crate::jobs::sandbox::root(&config.data_dir);
    for (name, path) in &config.sandbox_servers {
        let server = crate::jobs::sandbox::probe(name, path)
            .await
            .map_err(StartError::Sandbox)?;
        tracing::info!(sandbox = %server, path = %path.display(), "sandbox server for test restores");
        job_settings.sandbox_servers.push(server);
    }
    let (shutdown, stop_rx) = tokio::sync::watch::channel(false);
    let feed = start_feed(config, stop_rx).await?;
    redis.targets.add_own(feed.local_addr());
    let jobs = Arc::new(Jobs::new(
        catalog,
        store,
        redis,
        node_id,
        job_settings,
        Some(feed),
        shutdown,
    ));
    let state = AppState::new(jobs, config.http.clone(), tls);
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

/// The API's TLS acceptor from PEM files (ring, as the Redis client uses).
fn api_tls(cert: &Path, key: &Path) -> Result<Arc<tokio_rustls::rustls::ServerConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &Path, e: &dyn std::fmt::Display| format!("{}: {e}", what.display());
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, &e))?;
    if chain.is_empty() {
        return Err(bad(cert, &"no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| bad(cert, &e))?;
    Ok(Arc::new(config))
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

/// Serves the API on `listener` until `shutdown` completes: HTTP/1.1,
/// over TLS when configured, with the header, body and idle timeouts and
/// the connection limit of [`crate::config::HttpSettings`].
pub async fn run(
    listener: TcpListener,
    app: Shared,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The API's own port is no Redis target (nor is the replication
    // port, registered at prepare).
    app.redis.targets.add_own(listener.local_addr()?);
    if app.public_url.get().is_none() {
        let scheme = if app.tls.is_some() { "https" } else { "http" };
        let _ = app
            .public_url
            .set(format!("{scheme}://{}", listener.local_addr()?));
    }
    let stop_rx = app.jobs.shutdown.subscribe();
    let runner = tokio::spawn(Arc::clone(&app.jobs).run(stop_rx));
    let capture = tokio::spawn(crate::pitr::capture::run(
        Arc::clone(&app.jobs),
        app.jobs.shutdown.subscribe(),
    ));
    let settings = app.http.clone();
    let tls = app.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let jobs = Arc::clone(&app.jobs);
    let router = api::router(app);
    let slots = Arc::new(tokio::sync::Semaphore::new(settings.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // Past the limit, connections wait in the kernel's accept backlog.
        let slot = tokio::select! {
            s = Arc::clone(&slots).acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let tcp = tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // e.g. out of file descriptors: wait instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let conn = http::Conn {
            router: router.clone(),
            settings: settings.clone(),
            watcher: graceful.watcher(),
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                None => conn.serve(tcp).await,
                Some(acceptor) => {
                    match tokio::time::timeout(conn.settings.header_timeout, acceptor.accept(tcp))
                        .await
                    {
                        Ok(Ok(stream)) => conn.serve(stream).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = jobs.shutdown.send(true);
    // Requests in flight finish; a connection that will not is dropped.
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {}
    }
    let _ = runner.await;
    let _ = capture.await;
    Ok(())
}

/// How long a stopping server waits for requests in flight.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// One HTTP/1.1 connection with its deadlines.
mod http {
    use std::pin::Pin;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio::time::Instant;

    use crate::config::HttpSettings;

    pub(super) struct Conn {
        pub router: axum::Router,
        pub settings: HttpSettings,
        pub watcher: hyper_util::server::graceful::Watcher,
    }

    impl Conn {
        /// Serves requests until the client leaves, a deadline passes or
        /// the server stops. Unfinished headers (and the wait for the next
        /// request on a kept-alive connection) are bounded by hyper's
        /// header timeout; bodies by the API's body deadline; and a
        /// connection on which no byte moves either way for the idle
        /// timeout (a client that stopped reading a response, say) is
        /// dropped here.
        pub async fn serve<S>(self, stream: S)
        where
            S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        {
            let activity = Arc::new(Activity::new());
            let io = TokioIo::new(Tracked {
                inner: stream,
                activity: Arc::clone(&activity),
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(self.settings.header_timeout);
            let conn = builder.serve_connection(io, TowerToHyperService::new(self.router));
            let conn = self.watcher.watch(conn);
            tokio::select! {
                r = conn => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "connection ended");
                    }
                }
                () = activity.idle_for(self.settings.idle_timeout) => {
                    tracing::debug!("idle connection closed");
                }
            }
        }
    }

    /// When a byte last moved on a connection.
    struct Activity {
        start: Instant,
        last_ms: AtomicU64,
    }

    impl Activity {
        fn new() -> Self {
            Self {
                start: Instant::now(),
                last_ms: AtomicU64::new(0),
            }
        }

        fn touch(&self) {
            let ms = self.start.elapsed().as_millis() as u64;
            self.last_ms.store(ms, Ordering::Relaxed);
        }

        /// Completes once nothing moved for `limit`.
        async fn idle_for(&self, limit: Duration) {
            loop {
                let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
                let deadline = last + limit;
                if Instant::now() >= deadline {
                    return;
                }
                tokio::time::sleep_until(deadline).await;
            }
        }
    }

    /// A stream that notes each byte moved in [`Activity`].
    struct Tracked<S> {
        inner: S,
        activity: Arc<Activity>,
    }

    impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let before = buf.filled().len();
            let r = Pin::new(&mut self.inner).poll_read(cx, buf);
            if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
                self.activity.touch();
            }
            r
        }
    }

    impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let r = Pin::new(&mut self.inner).poll_write(cx, buf);
            if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
                self.activity.touch();
            }
            r
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[std::io::IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
            if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
                self.activity.touch();
            }
            r
        }

        fn is_write_vectored(&self) -> bool {
            self.inner.is_write_vectored()
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }
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

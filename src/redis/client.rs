//! A Redis connection: TCP or TLS, authenticated, with pipelining.
//!
//! The service talks to Redis in three ways: plain commands (INFO, CLUSTER
//! NODES), pipelines (RESTORE streams) and raw replication transfers. One
//! buffered connection type serves all three; the replication code takes
//! its buffer and stream apart with [`Conn::into_parts`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::resp::{encode_command, parse_reply_within, Limits, ProtocolError, Reply};
use super::targets::{Refusal, TargetPolicy};
use crate::model::Connection;

/// Errors talking to Redis. Text a server sent is shown through
/// [`super::peer_text`] (bounded, control characters escaped); the API
/// shows none of it.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("cannot reach {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr} is not an allowed target ({reason:?})")]
    Refused { addr: String, reason: Refusal },
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("protocol error: {}", super::peer_text(&.0.0))]
    Protocol(#[from] ProtocolError),
    #[error("authentication failed: {}", super::peer_text(.0))]
    Auth(String),
    #[error("TLS error: {0}")]
    Tls(String),
    #[error("server error: {}", super::peer_text(.0))]
    Server(String),
    #[error("connection closed by the server")]
    Closed,
    #[error(transparent)]
    BadPeer(#[from] crate::model::BadNodeAddr),
    #[error("{0}")]
    Busy(String),
}

/// Anything a connection can run over.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

/// How TLS connections to Redis verify the server.
#[derive(Clone)]
pub struct TlsSettings {
    config: Arc<tokio_rustls::rustls::ClientConfig>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsSettings")
    }
}

impl TlsSettings {
    /// Trusts the public web roots plus the PEM certificates in `ca_file`.
    pub fn new(ca_file: Option<&Path>) -> Result<Self, RedisError> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::CertificateDer;
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = ca_file {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| RedisError::Tls(format!("{}: {e}", path.display())))?;
            for cert in certs {
                let cert = cert.map_err(|e| RedisError::Tls(format!("{}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| RedisError::Tls(format!("{}: {e}", path.display())))?;
            }
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| RedisError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
        })
    }
}

/// Settings every connection shares.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub connect_timeout: Duration,
    pub io_timeout: Duration,
    pub tls: Option<TlsSettings>,
    /// Which addresses may be connected to at all.
    pub targets: TargetPolicy,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(30),
            tls: None,
            targets: TargetPolicy::default(),
        }
    }
}

/// An authenticated connection to one Redis node.
pub struct Conn {
    stream: Box<dyn Stream>,
    buf: BytesMut,
    out: Vec<u8>,
    io_timeout: Duration,
    addr: String,
    /// Bounds on one reply; [`Limits::CONTROL`] unless a bulk data path
    /// asks for more.
    limits: Limits,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Conn({})", self.addr)
    }
}

async fn timed<T>(
    d: Duration,
    fut: impl std::future::Future<Output = Result<T, RedisError>>,
) -> Result<T, RedisError> {
    tokio::time::timeout(d, fut)
        .await
        .map_err(|_| RedisError::Timeout(d))?
}

impl Conn {
    /// Connects to `host:port` of `conn` (TLS if it says so) and logs in.
    ///
    /// This is the one place the service opens a Redis connection, so the
    /// target policy is checked here: the host is resolved once, every
    /// address it resolves to must be allowed, and the connection goes to
    /// those checked addresses (no second lookup a rebinding DNS server
    /// could answer differently); TLS still verifies the host name.
    #[tracing::instrument(skip_all, fields(addr = %format_addr(host, port)))]
    pub async fn open(
        conn: &Connection,
        host: &str,
        port: u16,
        opts: &ConnectOptions,
    ) -> Result<Self, RedisError> {
        let addr = format_addr(host, port);
        let resolved = resolve_checked(host, port, opts).await?;
        let tcp = timed(opts.connect_timeout, async {
            let mut last = None;
            for a in &resolved {
                match TcpStream::connect(a).await {
                    Ok(s) => return Ok(s),
                    Err(e) => last = Some(e),
                }
            }
            Err(RedisError::Connect {
                addr: addr.clone(),
                source: last.unwrap_or_else(|| std::io::ErrorKind::NotFound.into()),
            })
        })
        .await?;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Stream> = if conn.tls {
            let tls = match &opts.tls {
                Some(t) => t.clone(),
                None => TlsSettings::new(None)?,
            };
            let name = rustls_pki_types::ServerName::try_from(host.to_owned())
                .map_err(|e| RedisError::Tls(format!("server name {host}: {e}")))?;
            let connector = tokio_rustls::TlsConnector::from(tls.config);
            let s = timed(opts.connect_timeout, async {
                connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| RedisError::Tls(e.to_string()))
            })
            .await?;
            Box::new(s)
        } else {
            Box::new(tcp)
        };
        let mut c = Conn {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
            out: Vec::with_capacity(1024),
            io_timeout: opts.io_timeout,
            addr,
            limits: Limits::CONTROL,
        };
        if let Some(password) = &conn.password {
            let reply = match &conn.username {
                Some(user) => {
                    c.cmd(&[
                        b"AUTH".as_slice(),
                        user.as_bytes(),
                        password.expose().as_bytes(),
                    ])
                    .await?
                }
                None => {
                    c.cmd(&[b"AUTH".as_slice(), password.expose().as_bytes()])
                        .await?
                }
            };
            if let Reply::Error(e) = reply {
                return Err(RedisError::Auth(e));
            }
        }
        Ok(c)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Lets this connection read replies up to `limits` (bulk data paths
    /// only; control replies keep [`Limits::CONTROL`]).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Queues a command without sending it.
    pub fn send<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        encode_command(&mut self.out, args);
    }

    /// Bytes queued and not yet flushed.
    pub fn pending_bytes(&self) -> usize {
        self.out.len()
    }

    /// Sends every queued command.
    pub async fn flush(&mut self) -> Result<(), RedisError> {
        let d = self.io_timeout;
        let Self { stream, out, .. } = self;
        timed(d, async {
            stream.write_all(out).await?;
            stream.flush().await?;
            Ok(())
        })
        .await?;
        self.out.clear();
        Ok(())
    }

    /// Reads the next reply.
    pub async fn read_reply(&mut self) -> Result<Reply, RedisError> {
        loop {
            if let Some((reply, used)) = parse_reply_within(&self.buf, &self.limits)? {
                self.buf.advance(used);
                return Ok(reply);
            }
            if self.buf.len() > self.limits.max_total {
                return Err(RedisError::Protocol(ProtocolError(format!(
                    "reply longer than {} bytes",
                    self.limits.max_total
                ))));
            }
            self.fill().await?;
        }
    }

    /// Reads more bytes into the buffer; errors on EOF.
    async fn fill(&mut self) -> Result<(), RedisError> {
        let d = self.io_timeout;
        let Self { stream, buf, .. } = self;
        buf.reserve(16 * 1024);
        let n = timed(d, async { Ok(stream.read_buf(buf).await?) }).await?;
        if n == 0 {
            return Err(RedisError::Closed);
        }
        Ok(())
    }

    /// Sends one command and reads its reply (error replies are values).
    pub async fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Reply, RedisError> {
        self.send(args);
        self.flush().await?;
        self.read_reply().await
    }

    /// Like [`Self::cmd`], but an error reply is an `Err`.
    pub async fn cmd_ok<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Reply, RedisError> {
        match self.cmd(args).await? {
            Reply::Error(e) => Err(RedisError::Server(e)),
            r => Ok(r),
        }
    }

    /// Runs `INFO section` and returns its `key:value` lines.
    pub async fn info(&mut self, section: &str) -> Result<Info, RedisError> {
        let reply = self.cmd_ok(&["INFO", section]).await?;
        let text = reply
            .as_text()
            .ok_or_else(|| RedisError::Server("INFO did not answer with text".into()))?;
        Ok(Info::parse(&text))
    }

    /// Gives up the connection as its read-ahead buffer and raw stream.
    pub fn into_parts(self) -> (BytesMut, Box<dyn Stream>) {
        (self.buf, self.stream)
    }
}

/// The addresses `host` resolves to, each allowed by the target policy;
/// refused if any is not.
async fn resolve_checked(
    host: &str,
    port: u16,
    opts: &ConnectOptions,
) -> Result<Vec<std::net::SocketAddr>, RedisError> {
    let literal = host.trim_matches(['[', ']']);
    let addrs: Vec<std::net::SocketAddr> = match literal.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![std::net::SocketAddr::new(ip, port)],
        Err(_) => {
            timed(opts.connect_timeout, async {
                tokio::net::lookup_host((host, port))
                    .await
                    .map(|a| a.collect::<Vec<_>>())
                    .map_err(|_| RedisError::Resolve(host.to_owned()))
            })
            .await?
        }
    };
    if addrs.is_empty() {
        return Err(RedisError::Resolve(host.to_owned()));
    }
    for a in &addrs {
        if let Err(reason) = opts.targets.check(*a) {
            tracing::warn!(target_addr = %a, ?reason, "refused a Redis target");
            return Err(RedisError::Refused {
                addr: format_addr(host, port),
                reason,
            });
        }
    }
    Ok(addrs)
}

/// `host:port`, with brackets for IPv6 literals.
pub fn format_addr(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The fields of an `INFO` reply.
#[derive(Clone, Debug, Default)]
pub struct Info(Vec<(String, String)>);

impl Info {
    pub fn parse(text: &str) -> Self {
        Self(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All fields whose key starts with `prefix` (e.g. `slave` lines).
    pub fn with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

//! Playing a master so a target loads a backup at its native speed.
//!
//! The feed serves one restore, to one target, once. A restore registers a
//! random secret and the addresses its target may connect from, sets the
//! secret as the target's `masterauth`, and tells it `REPLICAOF <advertise>
//! <port>`. The listener then:
//!
//! - closes at once any connection from an address no waiting restore
//!   expects (nothing is read from it);
//! - answers `PING` with `-NOAUTH` until the peer has sent `AUTH` with a
//!   waiting restore's secret from one of that restore's addresses (a
//!   replica accepts `-NOAUTH` to its `PING`, see `syncWithMaster` in
//!   `replication.c`), and closes the connection on a wrong secret or any
//!   command a replica does not send;
//! - hands the first authenticated `PSYNC`/`SYNC` to the restore; a later
//!   one with the same secret is refused and reported to the restore (the
//!   target failed to load and is asking again);
//! - drops a handshake that has not reached `PSYNC` within a deadline, and
//!   serves a bounded number of handshakes at once.
//!
//! Every refusal is logged with the peer's address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};

use super::resp::{parse_reply, Reply};

/// A target that connected, authenticated and asked for a full sync.
pub struct Replica {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    /// Bytes it sent after PSYNC (normally none).
    pub leftover: BytesMut,
}

impl Replica {
    /// Answers the replica's `PSYNC` with a full resync (`+FULLRESYNC
    /// <random replid> 0`, as `replicationSetupSlaveForFullResync` in
    /// `replication.c`) and the `$<size>` header of the payload.
    pub async fn begin_full_sync(&mut self, size: u64) -> std::io::Result<()> {
        let replid: String = {
            use rand::Rng;
            let mut rng = rand::thread_rng();
            (0..40)
                .map(|_| char::from(b"0123456789abcdef"[rng.gen_range(0..16)]))
                .collect()
        };
        self.stream
            .write_all(format!("+FULLRESYNC {replid} 0\r\n${size}\r\n").as_bytes())
            .await
    }

    /// Sends payload bytes (a remote store's chunks).
    pub async fn send(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(chunk).await
    }

    /// Sends a whole local file from a blocking thread with `sendfile(2)`:
    /// the payload goes from the page cache to the replica without being
    /// copied through the service. `sent(n)` is told every piece; a
    /// replica that stops reading fails the send after a minute.
    pub async fn send_file(
        self,
        file: std::fs::File,
        sent: impl Fn(u64) + Send + 'static,
    ) -> std::io::Result<(Self, u64)> {
        /// Progress is told per piece of this size.
        const PIECE: usize = 8 << 20;
        let Replica {
            stream,
            peer,
            leftover,
        } = self;
        let link = stream.into_std()?;
        link.set_nonblocking(false)?;
        link.set_write_timeout(Some(Duration::from_secs(60)))?;
        let (link, total) = tokio::task::spawn_blocking(move || {
            let mut offset = 0u64;
            let total = loop {
                match rustix::fs::sendfile(&link, &file, Some(&mut offset), PIECE) {
                    Ok(0) => break Ok(offset),
                    Ok(n) => sent(n as u64),
                    Err(e) => break Err(std::io::Error::from(e)),
                }
            };
            (link, total)
        })
        .await
        .map_err(|e| std::io::Error::other(format!("sender crashed: {e}")))?;
        let total = total?;
        link.set_nonblocking(true)?;
        let stream = TcpStream::from_std(link)?;
        Ok((
            Replica {
                stream,
                peer,
                leftover,
            },
            total,
        ))
    }

    /// Keeps the link alive once the payload is sent, as a master does: a
    /// `PING` every second, and the replica's acks read and dropped, until
    /// the returned guard is dropped.
    pub fn keep_alive(self) -> KeepAlive {
        let (mut rd, mut wr) = self.stream.into_split();
        KeepAlive(tokio::spawn(async move {
            let mut sink = vec![0u8; 4096];
            loop {
                tokio::select! {
                    r = rd.read(&mut sink) => if matches!(r, Ok(0) | Err(_)) { break },
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {
                        if wr.write_all(b"*1\r\n$4\r\nPING\r\n").await.is_err() { break }
                    }
                }
            }
        }))
    }
}

/// A fed replica's link kept alive; dropping it closes the link.
pub struct KeepAlive(tokio::task::JoinHandle<()>);

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a registered restore hears from the feed server.
pub enum FeedEvent {
    /// The target connected and asked for the snapshot.
    Connected(Replica),
    /// The target asked again after it was handed off: its load failed.
    AskedAgain,
}

/// Limits of the replication listener.
#[derive(Clone, Debug)]
pub struct FeedLimits {
    /// From accept to `PSYNC`: a peer slower than this is dropped.
    pub handshake_timeout: Duration,
    /// Handshakes served at once; further connections are closed.
    pub max_handshakes: usize,
}

impl Default for FeedLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            max_handshakes: 64,
        }
    }
}

struct Waiting {
    secret: String,
    allowed: Vec<IpAddr>,
    events: mpsc::Sender<FeedEvent>,
    handed_off: bool,
}

#[derive(Default)]
struct Sessions {
    next: u64,
    waiting: HashMap<u64, Waiting>,
}

impl Sessions {
    fn expects(&self, ip: IpAddr) -> bool {
        self.waiting.values().any(|w| w.allowed.contains(&ip))
    }

    /// The registration whose secret is `password` and which expects `ip`.
    fn find(&self, password: &[u8], ip: IpAddr) -> Option<u64> {
        // Every secret is compared, so the time taken does not tell which
        // registration came closest.
        let mut found = None;
        for (id, w) in &self.waiting {
            let same: bool = w.secret.as_bytes().ct_eq(password).into();
            if same && w.allowed.contains(&ip) {
                found = Some(*id);
            }
        }
        found
    }
}

/// The replication listener of this node, shared by every restore.
pub struct FeedServer {
    local: SocketAddr,
    advertise_host: String,
    sessions: Arc<Mutex<Sessions>>,
}

impl std::fmt::Debug for FeedServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FeedServer({} as {}:{})",
            self.local,
            self.advertise_host,
            self.local.port()
        )
    }
}

/// A restore's claim on the feed: its secret and its target's addresses.
/// Dropping it closes the door.
pub struct Registration {
    id: u64,
    sessions: Arc<Mutex<Sessions>>,
    pub events: mpsc::Receiver<FeedEvent>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut s) = self.sessions.lock() {
            s.waiting.remove(&self.id);
        }
    }
}

impl FeedServer {
    /// Binds `bind` and serves handshakes until `shutdown` turns true.
    pub async fn start(
        bind: SocketAddr,
        advertise_host: String,
        limits: FeedLimits,
        mut shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<Arc<Self>> {
        let listener = TcpListener::bind(bind).await?;
        let local = listener.local_addr()?;
        let server = Arc::new(Self {
            local,
            advertise_host,
            sessions: Arc::new(Mutex::new(Sessions::default())),
        });
        let sessions = Arc::clone(&server.sessions);
        let slots = Arc::new(Semaphore::new(limits.max_handshakes.max(1)));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, peer)) => {
                            admit(stream, peer, &sessions, &slots, limits.handshake_timeout);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "replication listener accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    },
                    _ = shutdown.changed() => break,
                }
            }
        });
        Ok(server)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// `host:port` as targets must be told (`REPLICAOF host port`).
    pub fn advertised(&self) -> (String, u16) {
        (self.advertise_host.clone(), self.local.port())
    }

    /// Opens the door for one target: connections from `allowed` that
    /// authenticate with `secret`. Its `events` say when the target asks
    /// for the snapshot.
    pub fn register(&self, secret: &str, allowed: Vec<IpAddr>) -> Option<Registration> {
        let (tx, rx) = mpsc::channel(4);
        let mut s = self.sessions.lock().ok()?;
        s.next += 1;
        let id = s.next;
        s.waiting.insert(
            id,
            Waiting {
                secret: secret.to_owned(),
                allowed,
                events: tx,
                handed_off: false,
            },
        );
        Some(Registration {
            id,
            sessions: Arc::clone(&self.sessions),
            events: rx,
        })
    }
}

/// Decides at accept time whether a connection may speak at all.
fn admit(
    stream: TcpStream,
    peer: SocketAddr,
    sessions: &Arc<Mutex<Sessions>>,
    slots: &Arc<Semaphore>,
    deadline: Duration,
) {
    let ip = canonical(peer.ip());
    let expected = sessions.lock().map(|s| s.expects(ip)).unwrap_or(false);
    if !expected {
        tracing::warn!(%peer, "replication connection from an address no restore expects; closed");
        return;
    }
    let Ok(permit) = Arc::clone(slots).try_acquire_owned() else {
        tracing::warn!(%peer, "too many replication handshakes at once; closed");
        return;
    };
    let sessions = Arc::clone(sessions);
    tokio::spawn(async move {
        match tokio::time::timeout(deadline, handshake(stream, peer, &sessions)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(%peer, error = %e, "replication handshake refused"),
            Err(_) => tracing::warn!(%peer, "replication handshake too slow; closed"),
        }
        drop(permit);
    });
}

/// IPv4 peers on a dual-stack socket arrive as `::ffff:a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn refused(why: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::PermissionDenied, why.to_owned())
}

/// Reads the next command (multi-bulk or inline) as its arguments.
async fn next_command(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<Vec<Vec<u8>>> {
    loop {
        match parse_reply(buf) {
            Ok(Some((r, used))) => {
                buf.advance(used);
                return Ok(match r {
                    Reply::Array(Some(items)) => items
                        .into_iter()
                        .filter_map(|i| match i {
                            Reply::Bulk(Some(b)) => Some(b),
                            Reply::Simple(s) => Some(s.into_bytes()),
                            _ => None,
                        })
                        .collect(),
                    other => other
                        .as_text()
                        .map(|t| {
                            t.split_whitespace()
                                .map(|w| w.as_bytes().to_vec())
                                .collect()
                        })
                        .unwrap_or_default(),
                });
            }
            Ok(None) => {}
            Err(e) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    e.to_string(),
                ))
            }
        }
        if buf.len() > 16 * 1024 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "handshake too long",
            ));
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed during the handshake",
            ));
        }
    }
}

/// Answers a replica's handshake; on an authenticated PSYNC/SYNC hands the
/// connection to the restore it authenticated for.
async fn handshake(
    mut stream: TcpStream,
    peer: SocketAddr,
    sessions: &Mutex<Sessions>,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let ip = canonical(peer.ip());
    let mut buf = BytesMut::with_capacity(1024);
    let mut authed: Option<u64> = None;
    loop {
        let args = next_command(&mut stream, &mut buf).await?;
        let name = args
            .first()
            .map(|a| a.to_ascii_uppercase())
            .unwrap_or_default();
        match (name.as_slice(), authed) {
            (b"PING", None) => {
                stream
                    .write_all(b"-NOAUTH Authentication required.\r\n")
                    .await?
            }
            (b"PING", Some(_)) => stream.write_all(b"+PONG\r\n").await?,
            (b"AUTH", None) if (2..=3).contains(&args.len()) => {
                let password = &args[args.len() - 1];
                let found = sessions.lock().ok().and_then(|s| s.find(password, ip));
                match found {
                    Some(id) => {
                        authed = Some(id);
                        stream.write_all(b"+OK\r\n").await?;
                    }
                    None => {
                        let _ = stream
                            .write_all(b"-WRONGPASS invalid username-password pair\r\n")
                            .await;
                        return Err(refused("wrong secret"));
                    }
                }
            }
            (b"REPLCONF", Some(_)) => stream.write_all(b"+OK\r\n").await?,
            (b"PSYNC" | b"SYNC", Some(id)) => {
                let target = sessions.lock().ok().and_then(|mut s| {
                    let w = s.waiting.get_mut(&id)?;
                    let first = !w.handed_off;
                    w.handed_off = true;
                    Some((w.events.clone(), first))
                });
                let Some((events, first)) = target else {
                    let _ = stream
                        .write_all(b"-ERR no restore is waiting for this replica\r\n")
                        .await;
                    return Err(refused("restore no longer waiting"));
                };
                if !first {
                    let _ = events.try_send(FeedEvent::AskedAgain);
                    let _ = stream
                        .write_all(b"-ERR the snapshot was already sent\r\n")
                        .await;
                    return Err(refused("second sync request"));
                }
                let event = FeedEvent::Connected(Replica {
                    stream,
                    peer,
                    leftover: buf,
                });
                if let Err(mpsc::error::SendError(FeedEvent::Connected(mut r))) =
                    events.send(event).await
                {
                    let _ = r
                        .stream
                        .write_all(b"-ERR restore no longer waiting\r\n")
                        .await;
                }
                return Ok(());
            }
            (_, None) => {
                let _ = stream
                    .write_all(b"-NOAUTH Authentication required.\r\n")
                    .await;
                return Err(refused("command before AUTH"));
            }
            (_, Some(_)) => {
                let _ = stream.write_all(b"-ERR unknown command\r\n").await;
                return Err(refused("not a replica's command"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::resp::encode_command;

    async fn server(limits: FeedLimits) -> (Arc<FeedServer>, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(false);
        let s = FeedServer::start(
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1".into(),
            limits,
            rx,
        )
        .await
        .unwrap();
        (s, tx)
    }

    async fn connect_from(s: &FeedServer, from: &str) -> TcpStream {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
        sock.connect(s.local_addr()).await.unwrap()
    }

    /// Sends commands and returns everything the server wrote until it
    /// closed the connection or went quiet.
    async fn talk(c: &mut TcpStream, cmds: &[&[&str]]) -> String {
        let mut out = Vec::new();
        for cmd in cmds {
            encode_command(&mut out, cmd);
        }
        let _ = c.write_all(&out).await;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_millis(300), c.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    const HANDSHAKE: [&[&str]; 3] = [
        &["PING"],
        &["REPLCONF", "listening-port", "6379"],
        &["PSYNC", "?", "-1"],
    ];

    #[tokio::test]
    async fn only_the_target_with_the_secret_is_fed_once() {
        let (s, _stop) = server(FeedLimits::default()).await;
        let mut reg = s
            .register("s3cret", vec!["127.0.0.1".parse().unwrap()])
            .unwrap();

        // No AUTH: every step is refused and nothing is handed over.
        let mut thief = connect_from(&s, "127.0.0.1").await;
        let said = talk(&mut thief, &HANDSHAKE).await;
        assert!(said.starts_with("-NOAUTH"), "{said}");
        assert!(!said.contains("FULLRESYNC"));

        // A wrong secret closes the connection.
        let mut thief = connect_from(&s, "127.0.0.1").await;
        let said = talk(&mut thief, &[&["AUTH", "guess"], &["PSYNC", "?", "-1"]]).await;
        assert!(said.starts_with("-WRONGPASS"), "{said}");

        // The right secret from an address the restore does not expect:
        // the connection is closed before anything is read.
        let mut elsewhere = connect_from(&s, "127.0.0.2").await;
        let said = talk(
            &mut elsewhere,
            &[&["AUTH", "s3cret"], &["PSYNC", "?", "-1"]],
        )
        .await;
        assert_eq!(said, "");
        assert!(reg.events.try_recv().is_err());

        // The target: AUTH with the secret, then the handshake.
        let mut target = connect_from(&s, "127.0.0.1").await;
        let mut cmds: Vec<&[&str]> = vec![&["AUTH", "s3cret"]];
        cmds.extend(HANDSHAKE);
        let said = talk(&mut target, &cmds).await;
        assert_eq!(said, "+OK\r\n+PONG\r\n+OK\r\n");
        assert!(matches!(
            reg.events.recv().await,
            Some(FeedEvent::Connected(_))
        ));

        // Once: the same secret again is refused and reported.
        let mut again = connect_from(&s, "127.0.0.1").await;
        let said = talk(
            &mut again,
            &[&["AUTH", "default", "s3cret"], &["PSYNC", "?", "-1"]],
        )
        .await;
        assert!(said.contains("already sent"), "{said}");
        assert!(matches!(
            reg.events.recv().await,
            Some(FeedEvent::AskedAgain)
        ));

        // After the restore ends, nobody is expected at all.
        drop(reg);
        let mut late = connect_from(&s, "127.0.0.1").await;
        assert_eq!(talk(&mut late, &[&["AUTH", "s3cret"]]).await, "");
    }

    #[tokio::test]
    async fn a_slow_handshake_is_dropped() {
        let limits = FeedLimits {
            handshake_timeout: Duration::from_millis(500),
            max_handshakes: 2,
        };
        let (s, _stop) = server(limits).await;
        let _reg = s.register("x", vec!["127.0.0.1".parse().unwrap()]).unwrap();
        let mut slow = connect_from(&s, "127.0.0.1").await;
        slow.write_all(b"*1\r\n$4\r\nPI").await.unwrap();
        let started = std::time::Instant::now();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf))
            .await
            .expect("the server should close a stalled handshake")
            .unwrap_or(0);
        assert_eq!(n, 0);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

//! Playing a master so a target loads a backup at its native speed.
//!
//! A restore registers the replica it expects (by the port the replica will
//! announce with `REPLCONF listening-port`), tells the target `REPLICAOF
//! <advertise> <port>`, and receives the target's connection once it has
//! said `PSYNC`/`SYNC`. The handshake answers follow `replication.c`
//! (`syncWithMaster` on the replica side): `+PONG`, `+OK` to AUTH and
//! REPLCONF, then the restore writes `+FULLRESYNC <replid> <offset>` and the
//! RDB as a `$<len>` bulk, and keeps the link alive with PINGs until it
//! sends the target `REPLICAOF NO ONE`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::resp::{parse_reply, Reply};

/// A target that connected and asked for a full sync.
pub struct Replica {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    /// Bytes it sent after PSYNC (normally none).
    pub leftover: BytesMut,
}

/// What a registered restore hears from the feed server: the target
/// connected and asked for the snapshot. A second one after the target was
/// fed means its load failed and it is trying again.
pub enum FeedEvent {
    Connected(Replica),
}

#[derive(Default)]
struct Sessions {
    /// Expected `listening-port` → the restore waiting for that replica.
    waiting: HashMap<u16, mpsc::Sender<FeedEvent>>,
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

/// A restore's claim on the replica that will connect from `port`.
pub struct Registration {
    port: u16,
    sessions: Arc<Mutex<Sessions>>,
    pub events: mpsc::Receiver<FeedEvent>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut s) = self.sessions.lock() {
            s.waiting.remove(&self.port);
        }
    }
}

impl FeedServer {
    /// Binds `bind` and serves handshakes until `shutdown` turns true.
    pub async fn start(
        bind: SocketAddr,
        advertise_host: String,
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
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, peer)) => {
                            let sessions = Arc::clone(&sessions);
                            tokio::spawn(async move {
                                if let Err(e) = handshake(stream, peer, sessions).await {
                                    tracing::debug!(%peer, error = %e, "replication handshake ended");
                                }
                            });
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

    /// Waits for the replica that will announce `listening_port`. Fails if
    /// another restore already waits for that port.
    pub fn register(&self, listening_port: u16) -> Option<Registration> {
        let (tx, rx) = mpsc::channel(4);
        let mut s = self.sessions.lock().ok()?;
        if s.waiting.contains_key(&listening_port) {
            return None;
        }
        s.waiting.insert(listening_port, tx);
        Some(Registration {
            port: listening_port,
            sessions: Arc::clone(&self.sessions),
            events: rx,
        })
    }
}

async fn reply(stream: &mut TcpStream, text: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    stream.write_all(text).await
}

/// Answers a replica's handshake; on PSYNC/SYNC hands the connection to the
/// restore waiting for it.
async fn handshake(
    mut stream: TcpStream,
    peer: SocketAddr,
    sessions: Arc<Mutex<Sessions>>,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(4096);
    let mut port: Option<u16> = None;
    loop {
        let cmd = loop {
            match parse_reply(&buf) {
                Ok(Some((r, used))) => {
                    buf.advance(used);
                    break r;
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        e.to_string(),
                    ))
                }
            }
            if buf.len() > 64 * 1024 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "handshake too long",
                ));
            }
            let read =
                tokio::time::timeout(Duration::from_secs(30), stream.read_buf(&mut buf)).await;
            match read {
                Ok(Ok(0)) | Err(_) => return Ok(()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
            }
        };
        let args: Vec<String> = match cmd {
            Reply::Array(Some(items)) => items.iter().filter_map(Reply::as_text).collect(),
            other => other
                .as_text()
                .map(|t| t.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
        };
        let name = args
            .first()
            .map(|a| a.to_ascii_uppercase())
            .unwrap_or_default();
        match name.as_str() {
            "PING" => reply(&mut stream, b"+PONG\r\n").await?,
            "REPLCONF" => {
                if args
                    .get(1)
                    .is_some_and(|a| a.eq_ignore_ascii_case("listening-port"))
                {
                    port = args.get(2).and_then(|p| p.parse().ok());
                }
                reply(&mut stream, b"+OK\r\n").await?
            }
            "PSYNC" | "SYNC" => {
                let tx = port.and_then(|p| {
                    sessions
                        .lock()
                        .ok()
                        .and_then(|s| s.waiting.get(&p).cloned())
                });
                let Some(tx) = tx else {
                    tracing::info!(%peer, ?port, "a replica asked for a sync no restore is waiting for; refused");
                    reply(
                        &mut stream,
                        b"-ERR no restore is waiting for this replica\r\n",
                    )
                    .await?;
                    return Ok(());
                };
                let event = FeedEvent::Connected(Replica {
                    stream,
                    peer,
                    leftover: buf,
                });
                if let Err(mpsc::error::SendError(FeedEvent::Connected(mut r))) =
                    tx.send(event).await
                {
                    let _ = reply(&mut r.stream, b"-ERR restore no longer waiting\r\n").await;
                }
                return Ok(());
            }
            // AUTH (from the target's masterauth) and anything else: accepted.
            _ => reply(&mut stream, b"+OK\r\n").await?,
        }
    }
}

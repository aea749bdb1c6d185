//! Taking a snapshot the way a replica does.
//!
//! Handshake as in Redis's `replication.c` (`syncWithMaster`,
//! `slaveTryPartialResynchronization`) and `redis-cli.c` (`sendSync`):
//! `REPLCONF capa eof capa psync2`, `REPLCONF rdb-only 1` (the master ends
//! after the snapshot instead of streaming commands), then `PSYNC ? -1`,
//! answered by `+FULLRESYNC <replid> <offset>`; `SYNC` when PSYNC is refused.
//! The master may send bare `\n` keepalives while its fork works, then
//! either `$<len>\r\n` and exactly that many bytes (disk-based transfer) or
//! `$EOF:<40 bytes>\r\n`, the RDB, and the same 40 bytes again (diskless).
//! [`Snapshot::next_chunk`] yields the RDB bytes only.
//!
//! The master is untrusted: the `$<len>` it declares only counts down what
//! is still expected (the caller may check it against `--max-backup-size`)
//! and never sizes a buffer; reads go into a buffer of at most about
//! 1.5 × `READ_CHUNK`, for sized and `$EOF:` transfers alike, and preamble
//! lines are capped at `MAX_LINE`.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::client::{Conn, ConnectOptions, RedisError, Stream};
use super::resp::Reply;
use crate::model::{Connection, NodeAddr};

/// Length of the diskless end-of-file mark (`CONFIG_RUN_ID_SIZE`).
const EOF_MARK_LEN: usize = 40;
const READ_CHUNK: usize = 256 * 1024;
/// Longest line accepted in the preamble (`+FULLRESYNC ...`, `$...`).
const MAX_LINE: usize = 1024;

/// How the master sends the snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transfer {
    /// `$<len>`: the size is known up front.
    Sized(u64),
    /// `$EOF:<mark>`: streamed as the fork writes it; size unknown.
    Eof,
}

/// An RDB snapshot arriving from a master.
pub struct Snapshot {
    stream: Box<dyn Stream>,
    buf: BytesMut,
    transfer: Transfer,
    /// Bytes still expected (sized transfers).
    remaining: u64,
    mark: [u8; EOF_MARK_LEN],
    received: u64,
    done: bool,
    io_timeout: Duration,
    /// The replication id the master announced (empty for SYNC).
    pub replid: String,
    /// The replication offset the snapshot stands at (`None` for SYNC):
    /// the stream after it starts at `offset + 1`.
    pub offset: Option<u64>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Snapshot({:?}, {} bytes)", self.transfer, self.received)
    }
}

/// Reads one `\r\n`- or `\n`-terminated line, skipping bare-newline
/// keepalives before it.
async fn read_line(
    stream: &mut Box<dyn Stream>,
    buf: &mut BytesMut,
    timeout: Duration,
) -> Result<String, RedisError> {
    loop {
        while buf.first() == Some(&b'\n') {
            buf.advance(1);
        }
        if let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line = buf.split_to(pos + 1);
            let text = String::from_utf8_lossy(&line)
                .trim_end_matches(['\r', '\n'])
                .to_owned();
            return Ok(text);
        }
        if buf.len() > MAX_LINE {
            return Err(RedisError::Protocol(super::resp::ProtocolError(
                "replication preamble too long".into(),
            )));
        }
        buf.reserve(4096);
        let n = tokio::time::timeout(timeout, stream.read_buf(buf))
            .await
            .map_err(|_| RedisError::Timeout(timeout))??;
        if n == 0 {
            return Err(RedisError::Closed);
        }
    }
}

/// Asks `node` for a full snapshot as a replica would.
#[tracing::instrument(skip_all, fields(node = %node))]
pub async fn start_snapshot(
    conn: &Connection,
    node: &NodeAddr,
    opts: &ConnectOptions,
) -> Result<Snapshot, RedisError> {
    match handshake(conn, node, opts, None, true).await? {
        Sync::Full(snap) => Ok(snap),
        Sync::Continue { .. } => Err(RedisError::Server(
            "unexpected answer to PSYNC: +CONTINUE".into(),
        )),
    }
}

/// What a capture link's `PSYNC` was answered with.
pub enum Sync {
    /// `+FULLRESYNC`: a snapshot, then (see [`Snapshot::into_stream`]) the
    /// command stream after it.
    Full(Snapshot),
    /// `+CONTINUE [<replid>]`: the stream goes on from the offset asked
    /// for; `replid` is the history's id from now on (a promoted replica
    /// announces its new one).
    Continue { replid: String, stream: ReplStream },
}

/// Opens a capture link: a replica that stays. Sends `REPLCONF capa eof
/// capa psync2` and `PSYNC <replid> <offset+1>` to resume (`PSYNC ? -1`
/// without history). No `rdb-only`: the master keeps streaming its writes
/// after the snapshot. No `listening-port` either: the link is nothing a
/// backup could take a snapshot from, and topology discovery skips
/// replicas listed with port 0 (see `topology::replicas_of`).
#[tracing::instrument(skip_all, fields(node = %node))]
pub async fn start_capture(
    conn: &Connection,
    node: &NodeAddr,
    opts: &ConnectOptions,
    resume: Option<(&str, u64)>,
) -> Result<Sync, RedisError> {
    handshake(conn, node, opts, resume, false).await
}

/// Whether `id` looks like a replication id (40 hex characters).
fn is_replid(id: &str) -> bool {
    id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn handshake(
    conn: &Connection,
    node: &NodeAddr,
    opts: &ConnectOptions,
    resume: Option<(&str, u64)>,
    rdb_only: bool,
) -> Result<Sync, RedisError> {
    let mut c = Conn::open(conn, &node.host, node.port, opts).await?;
    // Unknown capabilities are ignored by old servers; an error here means
    // the user may not replicate at all (ACL), which PSYNC will say again.
    if let Reply::Error(e) = c
        .cmd(&["REPLCONF", "capa", "eof", "capa", "psync2"])
        .await?
    {
        tracing::debug!(error = %e, "REPLCONF capa refused");
    }
    // Valkey 9 sends replicas that do not say their version an RDB in the
    // older Redis format; announcing the server's own version gets its
    // native format (`VALKEY080`), the bytes as the server writes them.
    if let Ok(info) = c.info("server").await {
        if let Some(v) = info.get("valkey_version").map(str::to_owned) {
            if let Reply::Error(e) = c.cmd(&["REPLCONF", "version", &v]).await? {
                tracing::debug!(error = %e, "REPLCONF version refused");
            }
        }
    }
    if rdb_only {
        if let Reply::Error(e) = c.cmd(&["REPLCONF", "rdb-only", "1"]).await? {
            tracing::debug!(error = %e, "REPLCONF rdb-only refused; the connection is closed after the payload");
        }
    }
    let io_timeout = opts.io_timeout.max(Duration::from_secs(60));
    match resume {
        Some((id, offset)) => {
            let next = offset.saturating_add(1).to_string();
            c.send(&["PSYNC", id, next.as_str()]);
        }
        None => c.send(&["PSYNC", "?", "-1"]),
    }
    c.flush().await?;
    let (mut buf, mut stream) = c.into_parts();
    let first = read_line(&mut stream, &mut buf, io_timeout).await?;
    let replid;
    let offset;
    if let Some(rest) = first.strip_prefix("+CONTINUE") {
        let announced = rest.trim();
        let id = match (announced, resume) {
            ("", Some((id, _))) => id.to_owned(),
            (id, _) if is_replid(id) => id.to_ascii_lowercase(),
            _ => {
                return Err(RedisError::Server(format!(
                    "unexpected answer to PSYNC: {}",
                    super::peer_text(&first)
                )))
            }
        };
        return Ok(Sync::Continue {
            replid: id,
            stream: ReplStream { stream, buf },
        });
    }
    let header = if let Some(rest) = first.strip_prefix("+FULLRESYNC ") {
        let mut words = rest.split_whitespace();
        replid = words
            .next()
            .filter(|id| is_replid(id))
            .unwrap_or("")
            .to_ascii_lowercase();
        offset = words.next().and_then(|o| o.parse::<u64>().ok());
        read_line(&mut stream, &mut buf, io_timeout).await?
    } else if rdb_only
        && (first.starts_with("-ERR unknown command") || first.starts_with("-ERR Unknown"))
    {
        tracing::info!("PSYNC not supported; falling back to SYNC");
        replid = String::new();
        offset = None;
        stream.write_all(b"SYNC\r\n").await?;
        read_line(&mut stream, &mut buf, io_timeout).await?
    } else if let Some(err) = first.strip_prefix('-') {
        return Err(RedisError::Server(err.to_owned()));
    } else {
        return Err(RedisError::Server(format!(
            "unexpected answer to PSYNC: {first:?}"
        )));
    };
    if let Some(err) = header.strip_prefix('-') {
        return Err(RedisError::Server(err.to_owned()));
    }
    let Some(spec) = header.strip_prefix('$') else {
        return Err(RedisError::Server(format!(
            "unexpected snapshot header {header:?}"
        )));
    };
    let mut snap = Snapshot {
        stream,
        buf,
        transfer: Transfer::Eof,
        remaining: 0,
        mark: [0; EOF_MARK_LEN],
        received: 0,
        done: false,
        io_timeout,
        replid,
        offset,
    };
    if let Some(mark) = spec.strip_prefix("EOF:") {
        let bytes = mark.as_bytes();
        if bytes.len() != EOF_MARK_LEN {
            return Err(RedisError::Server(format!(
                "bad EOF mark length {}",
                bytes.len()
            )));
        }
        snap.mark.copy_from_slice(bytes);
    } else {
        let len: u64 = spec
            .parse()
            .map_err(|_| RedisError::Server(format!("bad snapshot length {spec:?}")))?;
        snap.transfer = Transfer::Sized(len);
        snap.remaining = len;
    }
    tracing::debug!(transfer = ?snap.transfer, "snapshot transfer started");
    Ok(Sync::Full(snap))
}

/// The command stream of a capture link, after its snapshot or
/// `+CONTINUE`: bytes as the master sends them, and the link to answer on.
pub struct ReplStream {
    pub stream: Box<dyn Stream>,
    /// Bytes already read past the snapshot (the stream's first bytes).
    pub buf: BytesMut,
}

impl std::fmt::Debug for ReplStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReplStream({} bytes buffered)", self.buf.len())
    }
}

impl Snapshot {
    /// The command stream after a complete snapshot. Bytes the master sent
    /// after the payload stay buffered for the stream's reader.
    pub fn into_stream(self) -> ReplStream {
        ReplStream {
            stream: self.stream,
            buf: self.buf,
        }
    }

    pub fn transfer(&self) -> Transfer {
        self.transfer
    }

    /// RDB bytes handed out so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    async fn fill(&mut self) -> Result<usize, RedisError> {
        self.buf.reserve(READ_CHUNK);
        let n = tokio::time::timeout(self.io_timeout, self.stream.read_buf(&mut self.buf))
            .await
            .map_err(|_| RedisError::Timeout(self.io_timeout))??;
        Ok(n)
    }

    /// The next piece of the RDB, or `None` once it is complete. A
    /// connection that ends early is an error, never a short snapshot.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, RedisError> {
        if self.done {
            return Ok(None);
        }
        match self.transfer {
            Transfer::Sized(_) => {
                if self.remaining == 0 {
                    self.done = true;
                    return Ok(None);
                }
                if self.buf.is_empty() && self.fill().await? == 0 {
                    return Err(RedisError::Closed);
                }
                let take = (self.buf.len() as u64).min(self.remaining) as usize;
                let chunk = self.buf.split_to(take).freeze();
                self.remaining -= take as u64;
                self.received += take as u64;
                Ok(Some(chunk))
            }
            Transfer::Eof => loop {
                // Everything but the last 40 bytes buffered is payload; the
                // snapshot ends when those 40 bytes are the mark.
                // A capture link's stream may follow the mark in the same
                // read, so the mark is looked for, not only at the end.
                if let Some(at) = self.buf.windows(EOF_MARK_LEN).position(|w| w == self.mark) {
                    let chunk = self.buf.split_to(at).freeze();
                    self.buf.advance(EOF_MARK_LEN);
                    self.done = true;
                    self.received += chunk.len() as u64;
                    return Ok(if chunk.is_empty() { None } else { Some(chunk) });
                }
                if self.buf.len() > EOF_MARK_LEN + READ_CHUNK / 2 {
                    let chunk = self.buf.split_to(self.buf.len() - EOF_MARK_LEN).freeze();
                    self.received += chunk.len() as u64;
                    return Ok(Some(chunk));
                }
                if self.fill().await? == 0 {
                    return Err(RedisError::Closed);
                }
            },
        }
    }
}

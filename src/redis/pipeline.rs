//! Streaming many commands to one node: a writer and a reader run at once
//! over the two halves of the connection, as `redis-cli --pipe` does, with
//! a bounded window of bytes in flight so memory stays flat.
//!
//! Each [`Op`] is one or more already-encoded commands. Replies are read in
//! order; `MOVED`/`ASK` replies hand the op back for the caller to resend
//! (`cluster.c`, `clusterRedirectClient`), any other error is counted.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::client::{Conn, RedisError};
use super::resp::{parse_reply, Reply};
use crate::model::NodeAddr;

/// One unit of work: `replies` commands encoded in `bytes`.
#[derive(Clone, Debug)]
pub struct Op {
    pub bytes: Bytes,
    pub replies: u32,
}

/// Where the cluster says an op belongs instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    pub ask: bool,
    pub to: NodeAddr,
}

/// What a finished pipeline saw.
#[derive(Debug, Default)]
pub struct PipelineStats {
    pub ops: u64,
    pub replies: u64,
    /// Ops to send again elsewhere, in the order they were refused.
    pub redirects: Vec<(Op, Redirect)>,
    pub error_count: u64,
    /// The first few error replies, for the log and the record.
    pub errors: Vec<String>,
}

/// A pipeline on one connection.
pub struct Pipeline {
    tx: mpsc::Sender<(Op, OwnedSemaphorePermit)>,
    budget: Arc<Semaphore>,
    window: usize,
    writer: JoinHandle<Result<(), RedisError>>,
    reader: JoinHandle<Result<PipelineStats, RedisError>>,
}

fn parse_redirect(e: &str) -> Option<Redirect> {
    let mut parts = e.split_whitespace();
    let ask = match parts.next()? {
        "MOVED" => false,
        "ASK" => true,
        _ => return None,
    };
    let _slot = parts.next()?;
    let addr = parts.next()?;
    let (host, port) = addr.rsplit_once(':')?;
    // A redirect names a node the service will connect to: validated like
    // every address a peer reports. An invalid one is not a redirect, so
    // it is counted as an error reply.
    let to = NodeAddr::from_reported(host.trim_matches(['[', ']']), port).ok()?;
    Some(Redirect { ask, to })
}

/// Sends ops a cluster redirected (`MOVED`/`ASK`) to where it said, one
/// command at a time on plain connections (ASKING applies to the next
/// command only), following further redirects up to five hops.
pub async fn resend_redirected(
    conn: &crate::model::Connection,
    opts: &super::ConnectOptions,
    redirects: Vec<(Op, Redirect)>,
) -> Result<(), RedisError> {
    let mut conns: std::collections::HashMap<String, Conn> = std::collections::HashMap::new();
    for (op, mut redirect) in redirects {
        let mut hops = 0;
        loop {
            hops += 1;
            if hops > 5 {
                return Err(RedisError::Server("too many cluster redirects".into()));
            }
            let key = redirect.to.to_string();
            let c = match conns.entry(key) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(Conn::open(conn, &redirect.to.host, redirect.to.port, opts).await?)
                }
            };
            let mut again = None;
            for reply in send_commands(c, &op, redirect.ask).await? {
                if let Reply::Error(e) = reply {
                    match parse_redirect(&e) {
                        Some(r) => again = Some(r),
                        None if e.starts_with("MOVED") || e.starts_with("ASK") => {
                            return Err(RedisError::Server(
                                "a redirect named an invalid node address".into(),
                            ))
                        }
                        None => {
                            return Err(RedisError::Server(format!(
                                "refused after redirect: {}",
                                super::peer_text(&e)
                            )))
                        }
                    }
                }
            }
            match again {
                Some(r) => redirect = r,
                None => break,
            }
        }
    }
    Ok(())
}

/// Sends an op's commands on a plain connection, each preceded by ASKING
/// when `ask`; returns the commands' own replies.
async fn send_commands(c: &mut Conn, op: &Op, ask: bool) -> Result<Vec<Reply>, RedisError> {
    let mut rest = &op.bytes[..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        let Some((Reply::Array(Some(items)), used)) = parse_reply(rest)? else {
            return Err(RedisError::Server("malformed op".into()));
        };
        let args: Vec<Vec<u8>> = items
            .into_iter()
            .map(|r| match r {
                Reply::Bulk(Some(b)) => b,
                other => other.as_text().unwrap_or_default().into_bytes(),
            })
            .collect();
        rest = &rest[used..];
        if ask {
            c.cmd(&["ASKING"]).await?;
        }
        out.push(c.cmd(&args).await?);
    }
    Ok(out)
}

impl Pipeline {
    /// Starts pipelining on `conn` with at most `window` bytes unanswered.
    pub fn start(conn: Conn, window: usize) -> Self {
        let (buf, stream) = conn.into_parts();
        let (mut rd, wr) = tokio::io::split(stream);
        let (tx, mut rx) = mpsc::channel::<(Op, OwnedSemaphorePermit)>(1024);
        let (inflight_tx, mut inflight_rx) =
            mpsc::unbounded_channel::<(Op, OwnedSemaphorePermit)>();
        let budget = Arc::new(Semaphore::new(window));
        // Whichever side stops first closes the budget, so a sender waiting
        // for room fails at once instead of waiting for replies that will
        // never come.
        let closer_w = Arc::clone(&budget);
        let closer_r = Arc::clone(&budget);
        let writer = tokio::spawn(async move {
            let _close = CloseOnDrop(closer_w);
            let mut w = BufWriter::with_capacity(256 * 1024, wr);
            while let Some((op, permit)) = rx.recv().await {
                w.write_all(&op.bytes).await?;
                // The reader must know of the op before its reply can come.
                if inflight_tx.send((op, permit)).is_err() {
                    return Err(RedisError::Closed);
                }
                if rx.is_empty() {
                    w.flush().await?;
                }
            }
            w.flush().await?;
            Ok(())
        });
        let reader = tokio::spawn(async move {
            let _close = CloseOnDrop(closer_r);
            let mut buf: BytesMut = buf;
            let mut stats = PipelineStats::default();
            while let Some((op, permit)) = inflight_rx.recv().await {
                stats.ops += 1;
                let mut redirect = None;
                // Which of the op's commands were redirected: only those are
                // handed back, so a resend never repeats one that applied.
                let mut redirected = Vec::new();
                for i in 0..op.replies {
                    let reply = loop {
                        // `+OK` and `:1`, nearly every reply, are skipped
                        // without building a value.
                        if let Some(used) = skip_plain(&buf) {
                            buf.advance(used);
                            break None;
                        }
                        if let Some((r, used)) = parse_reply(&buf)? {
                            buf.advance(used);
                            break Some(r);
                        }
                        buf.reserve(64 * 1024);
                        if rd.read_buf(&mut buf).await? == 0 {
                            return Err(RedisError::Closed);
                        }
                    };
                    stats.replies += 1;
                    if let Some(Reply::Error(e)) = reply {
                        match parse_redirect(&e) {
                            Some(r) => {
                                redirected.push(i);
                                if redirect.is_none() {
                                    redirect = Some(r);
                                }
                            }
                            None => {
                                stats.error_count += 1;
                                if stats.errors.len() < 5 {
                                    stats.errors.push(e);
                                }
                            }
                        }
                    }
                }
                if let Some(r) = redirect {
                    let op = if redirected.len() as u32 == op.replies {
                        op
                    } else {
                        only(&op, &redirected)?
                    };
                    stats.redirects.push((op, r));
                }
                drop(permit);
            }
            Ok(stats)
        });
        Self {
            tx,
            budget,
            window,
            writer,
            reader,
        }
    }

    /// Queues an op, waiting while the window is full.
    pub async fn send(&self, op: Op) -> Result<(), RedisError> {
        let cost = op.bytes.len().clamp(1, self.window) as u32;
        let permit = Arc::clone(&self.budget)
            .acquire_many_owned(cost)
            .await
            .map_err(|_| RedisError::Closed)?;
        self.tx
            .send((op, permit))
            .await
            .map_err(|_| RedisError::Closed)
    }

    /// Waits for every reply.
    pub async fn finish(self) -> Result<PipelineStats, RedisError> {
        drop(self.tx);
        let wrote = self
            .writer
            .await
            .map_err(|e| RedisError::Server(format!("pipeline writer: {e}")))?;
        let read = self
            .reader
            .await
            .map_err(|e| RedisError::Server(format!("pipeline reader: {e}")))?;
        // A reader failure explains a writer failure (the peer went away).
        let stats = read?;
        wrote?;
        Ok(stats)
    }
}

/// The length of a whole simple-string or integer reply line at the
/// start of `buf` (never an error), else `None`.
fn skip_plain(buf: &[u8]) -> Option<usize> {
    if !matches!(buf.first(), Some(b'+' | b':')) {
        return None;
    }
    let nl = buf.iter().take(128).position(|&b| b == b'\n')?;
    (nl >= 1 && buf[nl - 1] == b'\r').then_some(nl + 1)
}

/// The commands of `op` at the given indices, as a new op.
fn only(op: &Op, indices: &[u32]) -> Result<Op, RedisError> {
    let mut rest = &op.bytes[..];
    let mut at = 0;
    let mut out = Vec::new();
    for i in 0..op.replies {
        let Some((_, used)) = parse_reply(rest)? else {
            return Err(RedisError::Server("malformed op".into()));
        };
        if indices.contains(&i) {
            out.extend_from_slice(&op.bytes[at..at + used]);
        }
        rest = &rest[used..];
        at += used;
    }
    Ok(Op {
        bytes: Bytes::from(out),
        replies: indices.len() as u32,
    })
}

struct CloseOnDrop(Arc<Semaphore>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Encodes one command as an op.
pub fn op<A: AsRef<[u8]>>(args: &[A]) -> Op {
    let mut out = Vec::new();
    super::resp::encode_command(&mut out, args);
    Op {
        bytes: Bytes::from(out),
        replies: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partly_redirected_op_keeps_only_the_redirected_commands() {
        let mut b = Vec::new();
        for k in ["a", "b", "c"] {
            crate::redis::resp::encode_command(&mut b, &["INCR", k]);
        }
        let o = only(
            &Op {
                bytes: Bytes::from(b),
                replies: 3,
            },
            &[0, 2],
        )
        .unwrap();
        let mut want = Vec::new();
        crate::redis::resp::encode_command(&mut want, &["INCR", "a"]);
        crate::redis::resp::encode_command(&mut want, &["INCR", "c"]);
        assert_eq!((o.bytes.to_vec(), o.replies), (want, 2));
    }

    #[test]
    fn plain_replies_are_skipped_whole() {
        assert_eq!(skip_plain(b"+OK\r\n+OK"), Some(5));
        assert_eq!(skip_plain(b":12\r\n"), Some(5));
        assert_eq!(skip_plain(b"+OK\r"), None);
        assert_eq!(skip_plain(b"-ERR x\r\n"), None);
        assert_eq!(skip_plain(b"$2\r\nab\r\n"), None);
    }

    #[test]
    fn parses_redirects() {
        assert_eq!(
            parse_redirect("MOVED 3999 127.0.0.1:6381"),
            Some(Redirect {
                ask: false,
                to: NodeAddr {
                    host: "127.0.0.1".into(),
                    port: 6381
                }
            })
        );
        assert_eq!(
            parse_redirect("ASK 3999 [::1]:6381"),
            Some(Redirect {
                ask: true,
                to: NodeAddr {
                    host: "::1".into(),
                    port: 6381
                }
            })
        );
        assert_eq!(
            parse_redirect("ERR DUMP payload version or checksum are wrong"),
            None
        );
    }
}

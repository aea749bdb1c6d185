//! A restore to an instant T: which base and segments it takes per shard,
//! their verification, and the replay of the log after the base.
//!
//! The replay sends the stream's own bytes, command by command, from the
//! base's offset up to the last index point at or before T (never inside
//! `MULTI` … `EXEC`: the capture puts points only outside transactions),
//! on one connection per target master, pipelined through
//! `redis::pipeline`. The database is the one selected at the base's
//! offset (tracked from the segment's first byte), then the stream's own
//! `SELECT`s. The link's `PING`s and `REPLCONF`s are not replayed.

use bytes::Bytes;

use super::periods::{chains, shards};
use super::segment::{decode, stop_within};
use crate::catalog::{BaseRow, SegmentRow};
use crate::jobs::{JobFailure, Jobs};
use crate::model::{InstanceId, JobError, Millis, NodeAddr};
use crate::redis::pipeline::{Op, Pipeline};
use crate::redis::resp::encode_command;
use crate::redis::stream::{select_db, Scanner};
use crate::redis::Conn;

/// What a restore to T takes from one shard's history.
#[derive(Clone, Debug)]
pub struct ShardPick {
    pub shard: String,
    pub base: BaseRow,
    /// Segments from the one holding the base's offset to the last one
    /// with a byte received at or before T.
    pub segments: Vec<SegmentRow>,
}

/// Picks, per shard, the chain covering `t` with the newest base; `Err`
/// with the reason when `t` is outside every restorable period.
pub async fn pick(
    jobs: &Jobs,
    source: &InstanceId,
    t: Millis,
) -> Result<Vec<ShardPick>, PickError> {
    let bases = jobs.catalog.pitr_bases(source).await?;
    let segments = jobs.catalog.pitr_segments(source).await?;
    let links = jobs.catalog.pitr_links(source).await?;
    let all = shards(&bases, &links);
    if all.is_empty() {
        return Err(PickError::Outside);
    }
    let mut out = Vec::new();
    for shard in all {
        let chosen = chains(&shard, &bases, &segments, &links)
            .into_iter()
            .filter(|c| c.covers(t))
            .max_by_key(|c| c.base.ready_at)
            .ok_or(PickError::Outside)?;
        out.push(ShardPick {
            shard,
            base: chosen.base.clone(),
            segments: chosen
                .segments
                .iter()
                .filter(|s| s.first_at <= t)
                .map(|s| (*s).clone())
                .collect(),
        });
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum PickError {
    #[error("the time is outside every restorable period")]
    Outside,
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
}

/// Reads a segment back, checks its size and BLAKE3 against its row, and
/// splits it into data and index.
async fn load(
    jobs: &Jobs,
    s: &SegmentRow,
) -> Result<(Bytes, Vec<super::segment::Point>), JobFailure> {
    let bad = |why: String| {
        JobFailure::new(
            JobError::SizeQuery,
            format!("log segment {}: {why}", s.object_key),
        )
    };
    let raw = super::capture::read_object(jobs, &s.object_key, s.size.max(0) as u64)
        .await
        .map_err(|e| bad(e.to_string()))?;
    if raw.len() as i64 != s.size {
        return Err(bad(format!(
            "{} bytes, its record says {}",
            raw.len(),
            s.size
        )));
    }
    let hash = blake3::hash(&raw).to_hex().to_string();
    if hash != s.blake3 {
        return Err(bad("BLAKE3 does not match its record".into()));
    }
    let (data, points) = decode(&raw, s.data_len.max(0) as u64).map_err(bad)?;
    let data_len = data.len();
    let raw = Bytes::from(raw);
    Ok((raw.slice(..data_len), points))
}

/// Verifies every segment a pick replays (read back, size, BLAKE3,
/// trailer, RESP framing), before anything is written anywhere. Returns
/// the commands to replay per shard.
pub async fn verify(jobs: &Jobs, picks: &[ShardPick], t: Millis) -> Result<u64, JobFailure> {
    let mut commands = 0;
    for p in picks {
        for (i, s) in p.segments.iter().enumerate() {
            let (data, points) = load(jobs, s).await?;
            let last = i + 1 == p.segments.len();
            let stop = if last {
                stop_within(&points, t)
            } else {
                data.len() as u64
            };
            let mut sc = Scanner::new(s.start_offset as u64);
            sc.feed(&data[..stop as usize], |_| commands += 1)
                .map_err(|e| {
                    JobFailure::new(
                        JobError::SizeQuery,
                        format!("log segment {}: {}", s.object_key, e.0),
                    )
                })?;
            if !sc.at_boundary() {
                return Err(JobFailure::new(
                    JobError::SizeQuery,
                    format!("log segment {} ends inside a command", s.object_key),
                ));
            }
        }
    }
    Ok(commands)
}

/// Commands batched into one pipeline op.
const BATCH: usize = 64 * 1024;

/// Replays one shard's log after its base into `node`; returns the
/// commands sent.
pub async fn replay(
    jobs: &Jobs,
    conn: &crate::model::Connection,
    node: &NodeAddr,
    pick: &ShardPick,
    t: Millis,
) -> Result<u64, JobFailure> {
    let c = Conn::open(conn, &node.host, node.port, &jobs.redis).await?;
    let pipe = Pipeline::start(c, 32 * 1024 * 1024);
    let from = pick.base.repl_offset as u64;
    let mut sent = 0u64;
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH);
    let mut replies = 0u32;
    let mut started = false;
    for (i, s) in pick.segments.iter().enumerate() {
        let (data, points) = load(jobs, s).await?;
        let last = i + 1 == pick.segments.len();
        let stop = if last {
            stop_within(&points, t)
        } else {
            data.len() as u64
        };
        let base = s.start_offset as u64;
        let mut db = s.start_db;
        let mut cmds = Vec::new();
        let mut sc = Scanner::new(base);
        sc.feed(&data[..stop as usize], |c| cmds.push(c))
            .map_err(|e| JobFailure::new(JobError::SizeQuery, e.0))?;
        for c in cmds {
            if c.start < from {
                if c.is("SELECT") {
                    if let Some(d) = select_db(&c.arg1) {
                        db = d;
                    }
                }
                continue;
            }
            if !started {
                started = true;
                if db > 0 {
                    encode_command(&mut batch, &["SELECT", &db.to_string()]);
                    replies += 1;
                }
            }
            if c.is("PING") || c.is("REPLCONF") {
                continue;
            }
            let (a, b) = ((c.start - base) as usize, (c.end - base) as usize);
            batch.extend_from_slice(&data[a..b]);
            replies += 1;
            sent += 1;
            if batch.len() >= BATCH {
                let op = Op {
                    bytes: Bytes::from(std::mem::take(&mut batch)),
                    replies: std::mem::take(&mut replies),
                };
                pipe.send(op).await?;
            }
        }
    }
    if replies > 0 {
        pipe.send(Op {
            bytes: Bytes::from(batch),
            replies,
        })
        .await?;
    }
    let stats = pipe.finish().await?;
    if stats.error_count > 0 || !stats.redirects.is_empty() {
        return Err(JobFailure::new(
            JobError::RestoreSync,
            format!(
                "{} replayed commands were refused by the target: {}",
                stats.error_count + stats.redirects.len() as u64,
                stats
                    .errors
                    .first()
                    .map(|e| crate::redis::peer_text(e))
                    .unwrap_or_default()
            ),
        ));
    }
    Ok(sent)
}

//! A restore to an instant T: which base and segments it takes per shard,
//! their verification, and the replay of the log after the base.
//!
//! The replay sends the stream's own bytes, command by command, from the
//! base's offset up to the last index point at or before T (never inside
//! `MULTI` … `EXEC`: the capture puts points only outside transactions),
//! on one connection per target master, pipelined through
//! `redis::pipeline`. The database is the one selected at the base's
//! offset (tracked from the segment's first byte), then the stream's own
//! `SELECT`s. The link's `PING`s and `REPLCONF`s are not replayed, nor
//! `PUBLISH`/`SPUBLISH`: a message was delivered once, to the subscribers
//! of the time; a restore sends it to nobody who asked for it again.
//!
//! Expiries: Redis 7+ and Valkey propagate them absolute (`PXAT`,
//! `PEXPIREAT`: the rewrites in `t_string.c` and
//! `expire.c`), so a replay gives the master's own instants. Redis 6.2
//! propagates them relative (`SET … PX n`, `EXPIRE`, `PEXPIRE`; `SETEX`,
//! `PSETEX` as sent): replayed as is they would start counting at the
//! replay. Those forms are rewritten to their absolute twins from the
//! time the command was received ([`absolute`]), so the restored expiry is
//! the master's to within the link's latency (milliseconds). A 7+ stream
//! never holds them, so the rewrite changes nothing there.
//!
//! A `MOVED`/`ASK` reply (the target's slots moved during the replay) is
//! not an error: the redirected commands alone are sent again where the
//! cluster says (`pipeline::resend_redirected`), after the rest.

use bytes::Bytes;

use super::periods::{chains, shards};
use super::segment::{decode, stop_within};
use crate::catalog::{BaseRow, SegmentRow};
use crate::jobs::{JobFailure, Jobs};
use crate::model::{InstanceId, JobError, Millis, NodeAddr};
use crate::redis::pipeline::{resend_redirected, Op, Pipeline};
use crate::redis::resp::{encode_command, parse_reply, Reply};
use crate::redis::stream::{select_db, Scanner};
use crate::redis::Conn;

/// What a restore to T takes from one shard's history.
#[derive(Clone, Debug)]
pub struct ShardPick {
    pub shard: String,
    pub base: BaseRow,
    /// Segments from the one holding the base's offset to the last one
    /// whose first byte was received at or before T.
    pub segments: Vec<SegmentRow>,
}

/// Picks, per shard, the chain covering `t` with the newest base (a
/// capture base or a backup: `bases::all`); `Err` with the reason when
/// `t` is outside every restorable period.
pub async fn pick(
    jobs: &Jobs,
    source: &InstanceId,
    t: Millis,
) -> Result<Vec<ShardPick>, PickError> {
    let bases = super::bases::all(&jobs.catalog, source).await?;
    let runs = jobs.catalog.pitr_runs(source).await?;
    let links = jobs.catalog.pitr_links(source).await?;
    let mut chosen = choose(&bases, &runs, &links, t)?;
    let first = chosen.first().map(super::bases::format);
    if !chosen
        .iter()
        .all(|b| Some(super::bases::format(b)) == first)
    {
        // One restore loads one format: where a backup kept as AOF and an
        // RDB base would mix across shards, RDB bases alone (the
        // capture's are).
        let rdb: Vec<BaseRow> = bases
            .into_iter()
            .filter(|b| super::bases::format(b) == "rdb")
            .collect();
        chosen = choose(&rdb, &runs, &links, t)?;
    }
    // The chosen chains' own segments, from their bases up to T.
    let mut out = Vec::with_capacity(chosen.len());
    for base in chosen {
        let segments = chain_to(jobs, source, &base, &links, t).await?;
        out.push(ShardPick {
            shard: base.shard.clone(),
            base,
            segments,
        });
    }
    Ok(out)
}

/// The segments of `base`'s chain from the one holding its offset to the
/// last whose first byte was received at or before `t`, read through the
/// time index (never the whole log).
pub async fn chain_to(
    jobs: &Jobs,
    source: &InstanceId,
    base: &BaseRow,
    links: &[crate::catalog::LinkRow],
    t: Millis,
) -> Result<Vec<SegmentRow>, PickError> {
    let segments = jobs
        .catalog
        .pitr_segments_between(source, &base.shard, base.taken_at, t)
        .await?;
    let chain = chains(&base.shard, std::slice::from_ref(base), &segments, links)
        .into_iter()
        .next()
        .ok_or(PickError::Outside)?;
    // Every segment read from the chain's first on must be the chain's:
    // one missing in between (removed since the runs were read) would end
    // the replay short of T.
    if let Some(first) = chain.segments.first() {
        let from = segments
            .iter()
            .position(|s| s.start_offset == first.start_offset && s.repl_id == first.repl_id)
            .unwrap_or(0);
        if segments.len() - from != chain.segments.len() {
            return Err(PickError::Outside);
        }
    }
    Ok(chain.segments.iter().map(|s| (*s).clone()).collect())
}

/// The backups a pick starts shards from (a capture base is not one):
/// what deleting or expiring a backup must wait for.
pub fn backups_read(picks: &[ShardPick]) -> Vec<&str> {
    let mut ids: Vec<&str> = picks
        .iter()
        .filter(|p| p.base.from_backup)
        .map(|p| p.base.id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Per shard, the base of the chain covering `t` with the newest base (a
/// capture base on a tie), over segments or runs.
pub fn choose(
    bases: &[BaseRow],
    segments: &[SegmentRow],
    links: &[crate::catalog::LinkRow],
    t: Millis,
) -> Result<Vec<BaseRow>, PickError> {
    let all = shards(bases, links);
    if all.is_empty() {
        return Err(PickError::Outside);
    }
    all.iter()
        .map(|shard| {
            chains(shard, bases, segments, links)
                .into_iter()
                .filter(|c| c.covers(t))
                .max_by_key(|c| (c.base.ready_at, !c.base.from_backup))
                .map(|c| c.base.clone())
                .ok_or(PickError::Outside)
        })
        .collect()
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

/// What the log a restore replays holds.
#[derive(Debug, Default)]
pub struct Verified {
    pub commands: u64,
    /// Bytes of log the replay goes through.
    pub bytes: u64,
    /// The names of the commands the replay sends (rewrites included),
    /// upper-cased: what the target must know.
    pub names: std::collections::BTreeSet<String>,
}

/// Whether the replay leaves a command out (the link's own traffic and
/// pub/sub messages).
fn skipped(c: &crate::redis::stream::Command) -> bool {
    c.is("PING") || c.is("REPLCONF") || c.is("PUBLISH") || c.is("SPUBLISH")
}

/// Verifies every segment a pick replays (read back, size, BLAKE3,
/// trailer, RESP framing), before anything is written anywhere, and
/// gathers the command names it will send.
pub async fn verify(jobs: &Jobs, picks: &[ShardPick], t: Millis) -> Result<Verified, JobFailure> {
    let mut out = Verified::default();
    for p in picks {
        for (i, s) in p.segments.iter().enumerate() {
            let (data, points) = load(jobs, s).await?;
            let last = i + 1 == p.segments.len();
            let stop = if last {
                stop_within(&points, t)
            } else {
                data.len() as u64
            };
            out.bytes += stop;
            let mut sc = Scanner::new(s.start_offset as u64);
            sc.feed(&data[..stop as usize], |c| {
                out.commands += 1;
                if skipped(c) {
                    return;
                }
                let name = if c.is("SETEX") || c.is("PSETEX") {
                    "SET".to_owned()
                } else if c.is("EXPIRE") || c.is("PEXPIRE") {
                    "PEXPIREAT".to_owned()
                } else {
                    String::from_utf8_lossy(&c.name).into_owned()
                };
                out.names.insert(name);
            })
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
    Ok(out)
}

/// What the replay needs of one command of the log (the scanner lends
/// its commands; this keeps no bytes of them).
#[derive(Clone, Copy)]
struct Cmd {
    start: u64,
    end: u64,
    /// The database a `SELECT` names.
    select: Option<i64>,
    /// Left out of the replay (`skipped`).
    skip: bool,
    /// Carries a relative expiry (Redis 6.2's propagation) to rewrite.
    relative: bool,
}

/// Commands batched into one pipeline op.
const BATCH: usize = 64 * 1024;

/// Replays one shard's log after its base into `node`; returns the
/// commands sent.
pub(crate) async fn replay(
    jobs: &Jobs,
    conn: &crate::model::Connection,
    node: &NodeAddr,
    pick: &ShardPick,
    t: Millis,
    progress: &crate::jobs::restore::Progress,
) -> Result<u64, JobFailure> {
    let c = Conn::open(conn, &node.host, node.port, &jobs.redis).await?;
    let pipe = Pipeline::start(c, 32 * 1024 * 1024);
    let from = pick.base.repl_offset as u64;
    let mut sent = 0u64;
    // Commands the replay writes itself (the first SELECT, rewrites).
    let mut own: Vec<u8> = Vec::new();
    let mut own_replies = 0u32;
    let mut started = false;
    let mut cmds = Vec::new();
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
        cmds.clear();
        let mut sc = Scanner::new(base);
        sc.feed(&data[..stop as usize], |c| {
            cmds.push(Cmd {
                start: c.start,
                end: c.end,
                select: if c.is("SELECT") {
                    select_db(&c.arg1)
                } else {
                    None
                },
                skip: skipped(c),
                relative: c.args >= 3
                    && RELATIVE.iter().any(|n| c.is(n))
                    && !(c.is("SET") && c.args < 5),
            })
        })
        .map_err(|e| JobFailure::new(JobError::SizeQuery, e.0))?;
        // Runs of commands sent as the master sent them go out as slices
        // of the segment itself (no copy); a run ends at a command left
        // out or rewritten, or at BATCH bytes.
        let mut run: Option<(usize, usize, u32)> = None;
        for c in cmds.drain(..) {
            if c.start < from {
                if let Some(d) = c.select {
                    db = d;
                }
                continue;
            }
            if !started {
                started = true;
                if db > 0 {
                    encode_command(&mut own, &["SELECT", &db.to_string()]);
                    own_replies += 1;
                }
            }
            let (a, b) = ((c.start - base) as usize, (c.end - base) as usize);
            let rewritten = if c.relative && !c.skip {
                let at = received_at(&points, b as u64).unwrap_or(s.last_at);
                absolute(&data[a..b], at)
            } else {
                None
            };
            if c.skip || rewritten.is_some() {
                if let Some((ra, rb, n)) = run.take() {
                    pipe.send(Op {
                        bytes: data.slice(ra..rb),
                        replies: n,
                    })
                    .await?;
                }
                if let Some(args) = rewritten {
                    encode_command(&mut own, &args);
                    own_replies += 1;
                    sent += 1;
                }
                continue;
            }
            if own_replies > 0 {
                pipe.send(Op {
                    bytes: Bytes::from(std::mem::take(&mut own)),
                    replies: std::mem::take(&mut own_replies),
                })
                .await?;
            }
            sent += 1;
            run = match run {
                Some((ra, rb, n)) if rb == a && b - ra <= BATCH => Some((ra, b, n + 1)),
                Some((ra, rb, n)) => {
                    pipe.send(Op {
                        bytes: data.slice(ra..rb),
                        replies: n,
                    })
                    .await?;
                    Some((a, b, 1))
                }
                None => Some((a, b, 1)),
            };
        }
        if let Some((ra, rb, n)) = run.take() {
            pipe.send(Op {
                bytes: data.slice(ra..rb),
                replies: n,
            })
            .await?;
        }
        progress
            .done
            .fetch_add(stop, std::sync::atomic::Ordering::Relaxed);
    }
    if own_replies > 0 {
        pipe.send(Op {
            bytes: Bytes::from(own),
            replies: own_replies,
        })
        .await?;
    }
    let stats = pipe.finish().await?;
    if stats.error_count > 0 {
        return Err(JobFailure::new(
            JobError::RestoreSync,
            format!(
                "{} replayed commands were refused by the target: {}",
                stats.error_count,
                stats
                    .errors
                    .first()
                    .map(|e| crate::redis::peer_text(e))
                    .unwrap_or_default()
            ),
        ));
    }
    if !stats.redirects.is_empty() {
        tracing::info!(
            ops = stats.redirects.len(),
            "pitr replay: commands redirected by the cluster sent again"
        );
        resend_redirected(conn, &jobs.redis, stats.redirects)
            .await
            .map_err(|e| JobFailure::new(JobError::RestoreSync, e.to_string()))?;
    }
    Ok(sent)
}

/// Commands a Redis 6.2 master propagates with a relative expiry.
const RELATIVE: &[&str] = &["SET", "SETEX", "PSETEX", "EXPIRE", "PEXPIRE"];

/// When the command ending at `end` (relative to the segment's data) was
/// received: the first index point at or past it.
fn received_at(points: &[super::segment::Point], end: u64) -> Option<Millis> {
    let i = points.partition_point(|p| p.end < end);
    points.get(i).map(|p| p.at)
}

/// The absolute form of a command with a relative expiry received at
/// `at`, or `None` when it has none (or is not well formed: then it is
/// sent as the master sent it).
fn absolute(cmd: &[u8], at: Millis) -> Option<Vec<Vec<u8>>> {
    let Ok(Some((Reply::Array(Some(items)), _))) = parse_reply(cmd) else {
        return None;
    };
    let mut args = Vec::with_capacity(items.len());
    for i in items {
        match i {
            Reply::Bulk(Some(b)) => args.push(b),
            _ => return None,
        }
    }
    let num = |b: &[u8]| std::str::from_utf8(b).ok()?.parse::<i64>().ok();
    let when = |n: i64, unit: i64| at.checked_add(n.checked_mul(unit)?);
    let name = args.first()?.to_ascii_uppercase();
    match name.as_slice() {
        b"SET" => {
            let i = (3..args.len().saturating_sub(1)).find(|&i| {
                args[i].eq_ignore_ascii_case(b"EX") || args[i].eq_ignore_ascii_case(b"PX")
            })?;
            let unit = if args[i].eq_ignore_ascii_case(b"EX") {
                1000
            } else {
                1
            };
            let t = when(num(&args[i + 1])?, unit)?;
            args[i] = b"PXAT".to_vec();
            args[i + 1] = t.to_string().into_bytes();
            Some(args)
        }
        b"SETEX" | b"PSETEX" if args.len() == 4 => {
            let unit = if name == b"SETEX" { 1000 } else { 1 };
            let t = when(num(&args[2])?, unit)?;
            Some(vec![
                b"SET".to_vec(),
                args[1].clone(),
                args[3].clone(),
                b"PXAT".to_vec(),
                t.to_string().into_bytes(),
            ])
        }
        b"EXPIRE" | b"PEXPIRE" if args.len() >= 3 => {
            let unit = if name == b"EXPIRE" { 1000 } else { 1 };
            let t = when(num(&args[2])?, unit)?;
            args[0] = b"PEXPIREAT".to_vec();
            args[2] = t.to_string().into_bytes();
            Some(args)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_command(&mut out, args);
        out
    }

    fn text(args: Option<Vec<Vec<u8>>>) -> Option<Vec<String>> {
        args.map(|a| {
            a.into_iter()
                .map(|b| String::from_utf8(b).unwrap())
                .collect()
        })
    }

    #[test]
    fn relative_expiries_become_absolute_at_their_receipt() {
        let at = 1_000_000;
        let cases: &[(&[&str], Option<&[&str]>)] = &[
            (
                &["SET", "k", "v", "PX", "5000"],
                Some(&["SET", "k", "v", "PXAT", "1005000"]),
            ),
            (
                &["set", "k", "v", "NX", "ex", "2"],
                Some(&["set", "k", "v", "NX", "PXAT", "1002000"]),
            ),
            (
                &["SETEX", "k", "3", "v"],
                Some(&["SET", "k", "v", "PXAT", "1003000"]),
            ),
            (
                &["PSETEX", "k", "30", "v"],
                Some(&["SET", "k", "v", "PXAT", "1000030"]),
            ),
            (
                &["expire", "k", "200"],
                Some(&["PEXPIREAT", "k", "1200000"]),
            ),
            (
                &["PEXPIRE", "k", "30000", "GT"],
                Some(&["PEXPIREAT", "k", "1030000", "GT"]),
            ),
            // Already absolute (Redis 7+), no expiry, or not a number: as sent.
            (&["SET", "k", "v", "PXAT", "99"], None),
            (&["SET", "k", "v"], None),
            (&["SET", "k", "v", "EX", "soon"], None),
            // A value that reads "EX" is not an option.
            (&["SET", "k", "EX"], None),
        ];
        for (input, want) in cases {
            let got = text(absolute(&cmd(input), at));
            let want = want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(got, want, "{input:?}");
        }
    }

    #[test]
    fn a_command_is_received_at_the_first_point_past_it() {
        use super::super::segment::Point;
        let points = [Point { at: 10, end: 100 }, Point { at: 20, end: 250 }];
        assert_eq!(received_at(&points, 100), Some(10));
        assert_eq!(received_at(&points, 101), Some(20));
        assert_eq!(received_at(&points, 300), None);
    }
}

//! One capture link to one master: the replication handshake, the
//! stream read, stamped and kept as the open segment, segments cut and
//! stored, and the acknowledgements that make `WAIT` mean "stored".
//!
//! 1. `PSYNC <replid> <end+1>` from the newest stored segment of the shard
//!    (`PSYNC ? -1` without one). `+CONTINUE` resumes with no gap;
//!    `+FULLRESYNC` stores the snapshot as a new base (a new period).
//! 2. Reads the stream, stamps each read with its receipt time, and keeps
//!    the bytes of the open segment in memory; answers `REPLCONF GETACK`
//!    and sends `REPLCONF ACK <offset>` every second and after every
//!    stored segment, `<offset>` being the end of the last *stored*
//!    segment (so `WAIT` counting this link means the write is stored).
//! 3. Cuts a segment at the last whole command outside `MULTI` … `EXEC`
//!    once its oldest byte is [`CUT_AFTER`] old or it holds [`CUT_BYTES`]:
//!    writes the object (data, index, trailer), then inserts its row.
//!    A crash loses only the open segment, which the master's backlog
//!    sends again on resume.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::capture::{pitr_prefix, store_base};
use super::segment::{encode_index, Point};
use crate::catalog::SegmentRow;
use crate::jobs::backup::Source;
use crate::jobs::{JobFailure, Jobs};
use crate::model::{now_millis, Instance, Millis, NodeAddr};
use crate::redis::replication::{start_capture, ReplStream, Sync};
use crate::redis::resp::encode_command;
use crate::redis::stream::{select_db, Command, Scanner};
use crate::redis::RedisError;

/// A segment is cut once its first byte is this old...
pub const CUT_AFTER: Duration = Duration::from_millis(250);
/// ...or once it holds this many bytes.
pub const CUT_BYTES: usize = 4 * 1024 * 1024;
/// Longest a single command may make an open segment.
const MAX_OPEN: usize = 1024 * 1024 * 1024;
/// How often an idle, caught-up link says so in the catalog (how close to
/// a kill of the service the restorable time before it reaches).
const TOUCH_EVERY_MS: Millis = 500;
/// How often the link's position is acknowledged.
const ACK_EVERY: Duration = Duration::from_secs(1);
/// No byte for this long (the master pings every 10 s) ends the link.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// A capture base's writes made during its transfer arrive once the
/// master has it online; this margin after the first ACK is when the
/// period it starts is counted from.
const READY_MARGIN: Millis = 1000;

/// One capture link to one master.
pub(super) struct Link {
    pub(super) jobs: Arc<Jobs>,
    pub(super) inst: Arc<Instance>,
    pub(super) shard: String,
    pub(super) master: NodeAddr,
    pub(super) slots: Vec<(u16, u16)>,
    pub(super) cluster: bool,
    /// Capture of the instance stops.
    pub(super) stop: Arc<AtomicBool>,
    /// This round of links stops (another link of the instance ended).
    pub(super) round: Arc<AtomicBool>,
}

/// The segment being filled.
struct Open {
    start: u64,
    start_db: i64,
    first_at: Millis,
    last_at: Millis,
    data: BytesMut,
    points: Vec<Point>,
}

/// Where the stream stands.
struct Position {
    replid: String,
    /// Offset of the next byte to arrive.
    offset: u64,
    /// The end of the last stored segment: what is acknowledged.
    durable: u64,
    /// Database selected at `offset` and at the last whole command.
    db: i64,
    in_multi: bool,
    /// End of the last whole command outside a transaction, and the
    /// database selected there.
    boundary: u64,
    boundary_db: i64,
    /// The link resumed and no segment was stored since.
    resumed: bool,
}

impl Link {
    #[tracing::instrument(skip_all, fields(shard = %self.shard, node = %self.master))]
    pub(super) async fn run(&self) -> Result<(), JobFailure> {
        let last = self
            .jobs
            .catalog
            .last_pitr_segment(&self.inst.id, &self.shard)
            .await?;
        let resume = last
            .as_ref()
            .map(|s| (s.repl_id.as_str(), s.end_offset as u64));
        let asked_at = now_millis();
        let sync = start_capture(
            &self.inst.connection,
            &self.master,
            &self.jobs.redis,
            resume,
        )
        .await?;
        let (stream, pos) = match sync {
            Sync::Continue { replid, stream } => {
                let Some(last) = last else {
                    return Err(JobFailure::new(
                        crate::model::JobError::RestoreSync,
                        "the master continued a history this service does not have",
                    ));
                };
                tracing::info!(offset = last.end_offset, "pitr: link resumed with no gap");
                let end = last.end_offset as u64;
                (
                    stream,
                    Position {
                        replid,
                        offset: end,
                        durable: end,
                        db: last.end_db,
                        in_multi: false,
                        boundary: end,
                        boundary_db: last.end_db,
                        resumed: true,
                    },
                )
            }
            Sync::Full(snap) => {
                if last.is_some() {
                    tracing::warn!(
                        "pitr: the master answered with a full sync; a new period starts"
                    );
                }
                let src = Source {
                    node: self.master.clone(),
                    shard_master: self.master.clone(),
                    slots: self.slots.clone(),
                };
                // The base's writes made during the transfer arrive after
                // its first ACK; its period starts after them.
                let (snap, base) = store_base(
                    &self.jobs,
                    &self.inst,
                    &self.shard,
                    src,
                    self.cluster,
                    snap,
                    asked_at,
                    Some(now_millis() + READY_MARGIN),
                )
                .await?;
                let offset = base.repl_offset as u64;
                (
                    snap.into_stream(),
                    Position {
                        replid: base.repl_id.clone(),
                        offset,
                        durable: offset,
                        db: -1,
                        in_multi: false,
                        boundary: offset,
                        boundary_db: -1,
                        resumed: false,
                    },
                )
            }
        };
        self.stream(stream, pos).await
    }

    async fn stream(&self, s: ReplStream, mut pos: Position) -> Result<(), JobFailure> {
        let ReplStream { mut stream, buf } = s;
        let mut pending = buf;
        let mut scanner = Scanner::new(pos.offset);
        let mut open: Option<Open> = None;
        let mut out = Vec::with_capacity(64);
        let mut last_ack = tokio::time::Instant::now() - ACK_EVERY;
        let mut acked = pos.durable;
        let mut last_touch = 0;
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let mut read_buf = BytesMut::with_capacity(64 * 1024);
        let mut last_read = tokio::time::Instant::now();
        let mut idle_since_read = false;
        loop {
            // Bytes that arrived (the first round: what followed the snapshot).
            if !pending.is_empty() {
                let now = now_millis();
                let mut getack = false;
                self.absorb(
                    &mut scanner,
                    &mut pos,
                    &mut open,
                    &pending,
                    now,
                    &mut getack,
                )?;
                pending.clear();
                if getack {
                    last_ack = tokio::time::Instant::now() - ACK_EVERY;
                }
                if open.as_ref().is_some_and(|o| o.data.len() >= CUT_BYTES) {
                    self.cut(&mut open, &mut pos, now).await?;
                }
            }
            if self.stop.load(Ordering::SeqCst) || self.round.load(Ordering::SeqCst) {
                // Stopping on purpose: store what is whole.
                self.cut(&mut open, &mut pos, now_millis()).await?;
                return Ok(());
            }
            // Every second, and at once when a segment was stored: `WAIT`
            // counting this link returns as soon as a write is durable.
            if last_ack.elapsed() >= ACK_EVERY || pos.durable != acked {
                acked = pos.durable;
                out.clear();
                let off = pos.durable.to_string();
                encode_command(&mut out, &["REPLCONF", "ACK", off.as_str()]);
                tokio::time::timeout(Duration::from_secs(10), stream.write_all(&out))
                    .await
                    .map_err(|_| RedisError::Timeout(Duration::from_secs(10)))?
                    .map_err(RedisError::from)?;
                last_ack = tokio::time::Instant::now();
            }
            tokio::select! {
                r = stream.read_buf(&mut read_buf) => {
                    let n = r.map_err(RedisError::from)?;
                    if n == 0 {
                        self.cut(&mut open, &mut pos, now_millis()).await?;
                        return Err(RedisError::Closed.into());
                    }
                    std::mem::swap(&mut pending, &mut read_buf);
                    last_read = tokio::time::Instant::now();
                    idle_since_read = false;
                }
                _ = tick.tick() => {
                    let now = now_millis();
                    if let Some(o) = &open {
                        if now - o.first_at >= CUT_AFTER.as_millis() as i64 {
                            self.cut(&mut open, &mut pos, now).await?;
                        }
                    }
                    if last_read.elapsed() >= READ_TIMEOUT {
                        self.cut(&mut open, &mut pos, now).await?;
                        return Err(RedisError::Timeout(READ_TIMEOUT).into());
                    }
                    // Nothing arrived for a tick and nothing is unstored:
                    // every write received until now is stored.
                    if idle_since_read && open.is_none() && pos.offset == pos.durable
                        && now - last_touch >= TOUCH_EVERY_MS
                    {
                        self.jobs
                            .catalog
                            .touch_pitr_link(&self.inst.id, &self.shard, &pos.replid, pos.durable as i64, now)
                            .await?;
                        last_touch = now;
                    }
                    idle_since_read = true;
                }
            }
        }
    }

    /// Scans newly arrived bytes and appends them to the open segment.
    fn absorb(
        &self,
        scanner: &mut Scanner,
        pos: &mut Position,
        open: &mut Option<Open>,
        bytes: &[u8],
        now: Millis,
        getack: &mut bool,
    ) -> Result<(), JobFailure> {
        let o = open.get_or_insert_with(|| Open {
            start: pos.offset,
            start_db: pos.db,
            first_at: now,
            last_at: now,
            data: BytesMut::new(),
            points: Vec::new(),
        });
        if o.data.len() + bytes.len() > MAX_OPEN {
            return Err(JobFailure::new(
                crate::model::JobError::Storage,
                "a command in the stream is larger than a segment may grow",
            ));
        }
        o.data.extend_from_slice(bytes);
        o.last_at = now;
        let before = pos.boundary;
        let mut on_command = |c: &Command| {
            if c.is("SELECT") {
                if let Some(db) = select_db(&c.arg1) {
                    pos.db = db;
                }
            } else if c.is("MULTI") {
                pos.in_multi = true;
            } else if c.is("EXEC") || c.is("DISCARD") {
                pos.in_multi = false;
            } else if c.is("REPLCONF") && c.arg1.eq_ignore_ascii_case(b"GETACK") {
                *getack = true;
            }
            if !pos.in_multi {
                pos.boundary = c.end;
                pos.boundary_db = pos.db;
            }
        };
        scanner
            .feed(bytes, &mut on_command)
            .map_err(|e| JobFailure::from(RedisError::Protocol(e)))?;
        pos.offset = scanner.pos();
        if pos.boundary > before && pos.boundary > o.start {
            let end = pos.boundary - o.start;
            match o.points.last_mut() {
                Some(p) if p.at == now => p.end = end,
                _ => o.points.push(Point { at: now, end }),
            }
        }
        Ok(())
    }

    /// Stores the open segment up to its last whole command outside a
    /// transaction; bytes after it open the next segment.
    async fn cut(
        &self,
        open: &mut Option<Open>,
        pos: &mut Position,
        now: Millis,
    ) -> Result<(), JobFailure> {
        let Some(o) = open.as_mut() else {
            return Ok(());
        };
        if pos.boundary <= o.start {
            return Ok(()); // not one whole command yet
        }
        let len = (pos.boundary - o.start) as usize;
        let mut data = o.data.split_to(len);
        let points: Vec<Point> = o
            .points
            .iter()
            .copied()
            .filter(|p| p.end <= len as u64)
            .collect();
        let last_at = points.last().map(|p| p.at).unwrap_or(o.last_at);
        let row = SegmentRow {
            instance_id: self.inst.id.clone(),
            shard: self.shard.clone(),
            repl_id: pos.replid.clone(),
            start_offset: o.start as i64,
            end_offset: pos.boundary as i64,
            first_at: o.first_at,
            last_at,
            start_db: o.start_db,
            end_db: pos.boundary_db,
            data_len: len as i64,
            size: 0,
            blake3: String::new(),
            object_key: format!(
                "{}log/{}/{}-{:020}.seg",
                pitr_prefix(&self.inst),
                self.shard,
                pos.replid,
                o.start
            ),
            resumed: pos.resumed,
            covered_until: last_at,
        };
        let mut trailer = Vec::with_capacity(points.len() * 16 + 24);
        encode_index(&mut trailer, &points, len as u64);
        let began = std::time::Instant::now();
        let mut w = self.jobs.store.writer(&row.object_key).await?;
        w.write(data.split().freeze()).await?;
        w.write(trailer.into()).await?;
        let (size, blake3) = w.finish().await?;
        let stored = began.elapsed();
        let row = SegmentRow {
            size: size as i64,
            blake3,
            ..row
        };
        if !self
            .jobs
            .catalog
            .insert_pitr_segment(&row, now, &self.jobs.node_id)
            .await?
        {
            // Another node holds the capture now: this link's object is
            // an orphan the sweep removes, and the link stops.
            return Err(JobFailure::new(
                crate::model::JobError::Timeout,
                "the capture lease went to another node; this link stops",
            ));
        }
        tracing::debug!(
            start = row.start_offset,
            end = row.end_offset,
            age_ms = now_millis() - row.first_at,
            store_ms = began.elapsed().as_millis() as u64,
            "pitr: segment stored"
        );
        if began.elapsed() > Duration::from_millis(300) {
            tracing::warn!(
                object_ms = stored.as_millis() as u64,
                row_ms = (began.elapsed() - stored).as_millis() as u64,
                bytes = size,
                "pitr: storing a segment was slow"
            );
        }
        pos.durable = pos.boundary;
        pos.resumed = false;
        // What is left (a partial command) opens the next segment.
        let rest = o.data.split();
        let rest_points: Vec<Point> = o
            .points
            .iter()
            .filter(|p| p.end > len as u64)
            .map(|p| Point {
                at: p.at,
                end: p.end - len as u64,
            })
            .collect();
        *open = if rest.is_empty() {
            None
        } else {
            Some(Open {
                start: pos.boundary,
                start_db: pos.boundary_db,
                first_at: o.last_at,
                last_at: o.last_at,
                data: rest,
                points: rest_points,
            })
        };
        Ok(())
    }
}

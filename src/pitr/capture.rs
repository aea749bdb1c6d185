//! Capture: one replica link per master of every instance with PITR
//! enabled, its stream cut into segments in the store.
//!
//! Which `serve` replica captures an instance is decided by a lease row
//! (`pitr_leases`), taken when free or lapsed and renewed every
//! [`TICK`]; a holder that dies is replaced within [`LEASE`]. A link:
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
//!
//! Every [`TICK`] the holder also takes a base when the newest one is
//! older than the policy's interval (over a second link, from a replica
//! when the shard has a healthy one, else from the master: a fork), and
//! removes data older than `keep_days` that no restorable instant in the
//! window needs ([`super::retention`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::segment::{encode_index, Point};
use crate::catalog::{BaseRow, PitrPolicy, SegmentRow};
use crate::jobs::backup::{choose_sources, file_name, store_snapshot, Progress, Source};
use crate::jobs::{JobFailure, Jobs, Meter};
use crate::model::{
    compact_utc, now_millis, BackupFormat, BackupId, Instance, Millis, NodeAddr, Topology,
};
use crate::redis::replication::{start_capture, ReplStream, Sync};
use crate::redis::resp::encode_command;
use crate::redis::stream::{select_db, Command, Scanner};
use crate::redis::{discover, RedisError};
use crate::storage::Manifest;

/// How often leases are renewed and policies read.
pub const TICK: Duration = Duration::from_secs(2);
/// How long a capture lease lasts without renewal.
pub const LEASE: Duration = Duration::from_secs(8);
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

/// The name of a shard in the catalog: its slots in a cluster, else `main`.
pub fn shard_key(topology: &Topology, slots: &[(u16, u16)]) -> String {
    shard_key_of(
        topology.cache_mode() == crate::model::CacheMode::Cluster,
        slots,
    )
}

/// [`shard_key`] from whether the instance is a cluster.
pub fn shard_key_of(cluster: bool, slots: &[(u16, u16)]) -> String {
    if cluster {
        let parts: Vec<String> = slots.iter().map(|(a, b)| format!("{a}-{b}")).collect();
        format!("slots-{}", parts.join("_"))
    } else {
        "main".to_owned()
    }
}

/// Where an instance's PITR data lives in the store.
pub fn pitr_prefix(inst: &Instance) -> String {
    format!("{}/{}/pitr/", inst.project_id.as_str(), inst.id.as_str())
}

/// Runs capture for every instance whose lease this node holds, until
/// `shutdown`.
pub async fn run(jobs: Arc<Jobs>, mut shutdown: watch::Receiver<bool>) {
    let mut running: HashMap<String, (tokio::task::JoinHandle<()>, Arc<AtomicBool>)> =
        HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    // Orphans are looked for every five minutes (of the test scale).
    let sweep_every = Duration::from_millis(5 * super::scale::minute() as u64);
    let mut last_sweep = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
        let policies = match jobs.catalog.pitr_policies().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "pitr: cannot read policies");
                continue;
            }
        };
        let now = now_millis();
        let mut wanted = std::collections::HashSet::new();
        for p in policies.iter().filter(|p| p.enabled) {
            let id = p.instance_id.to_string();
            let held = jobs
                .catalog
                .claim_pitr_lease(
                    &p.instance_id,
                    &jobs.node_id,
                    now,
                    now + LEASE.as_millis() as i64,
                )
                .await
                .unwrap_or(false);
            if !held {
                continue;
            }
            wanted.insert(id.clone());
            if let Some((h, _)) = running.get(&id) {
                if !h.is_finished() {
                    continue;
                }
            }
            let stop = Arc::new(AtomicBool::new(false));
            let task = tokio::spawn(capture_instance(
                Arc::clone(&jobs),
                p.clone(),
                Arc::clone(&stop),
            ));
            running.insert(id, (task, stop));
        }
        running.retain(|id, (task, stop)| {
            if wanted.contains(id) {
                return true;
            }
            // Disabled, deleted, or the lease went to another node.
            stop.store(true, Ordering::SeqCst);
            task.abort();
            false
        });
        for p in policies.iter().filter(|p| !p.enabled) {
            let _ = jobs
                .catalog
                .release_pitr_lease(&p.instance_id, &jobs.node_id)
                .await;
        }
        let sweep = last_sweep.is_none_or(|t: tokio::time::Instant| t.elapsed() >= sweep_every);
        if sweep {
            last_sweep = Some(tokio::time::Instant::now());
        }
        for p in policies
            .iter()
            .filter(|p| wanted.contains(p.instance_id.as_str()))
        {
            if let Err(e) = super::retention::apply(&jobs, p, now).await {
                tracing::warn!(instance = %p.instance_id, error = %e.detail, "pitr retention failed");
            }
            if sweep {
                if let Ok(Some(inst)) = jobs.catalog.instance_any(&p.instance_id).await {
                    if let Err(e) = super::retention::sweep_orphans(&jobs, &inst).await {
                        tracing::warn!(instance = %p.instance_id, error = %e.detail, "pitr orphan sweep failed");
                    }
                }
            }
        }
    }
    for (_, (task, stop)) in running {
        stop.store(true, Ordering::SeqCst);
        // Give links a moment to store their open segments.
        let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
    }
}

/// Captures one instance: a link per master, rediscovered when one ends.
#[tracing::instrument(skip_all, fields(instance = %policy.instance_id))]
async fn capture_instance(jobs: Arc<Jobs>, policy: PitrPolicy, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        let inst = match jobs.catalog.instance_any(&policy.instance_id).await {
            Ok(Some(i)) => i,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "pitr: cannot read the instance");
                tokio::time::sleep(TICK).await;
                continue;
            }
        };
        let topology = match discover(&inst.connection, &jobs.redis).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "pitr: cannot reach the instance");
                tokio::time::sleep(TICK).await;
                continue;
            }
        };
        let inst = Arc::new(inst);
        let round = Arc::new(AtomicBool::new(false));
        let mut links = Vec::new();
        for shard in &topology.shards {
            let key = shard_key(&topology, &shard.slots);
            let link = Link {
                jobs: Arc::clone(&jobs),
                inst: Arc::clone(&inst),
                shard: key,
                master: shard.master.clone(),
                slots: shard.slots.clone(),
                cluster: topology.cache_mode() == crate::model::CacheMode::Cluster,
                stop: Arc::clone(&stop),
                round: Arc::clone(&round),
            };
            links.push(tokio::spawn(async move {
                let r = link.run().await;
                (link.shard, r)
            }));
        }
        let bases = tokio::spawn(periodic_bases(
            Arc::clone(&jobs),
            Arc::clone(&inst),
            topology.clone(),
            policy.interval_min,
            Arc::clone(&stop),
        ));
        // The first link to end (error or stop) ends this round: a failover
        // or resharding shows in the next discovery.
        let (first, _, rest) = futures::future::select_all(links).await;
        if let Ok((shard, Err(e))) = first {
            tracing::warn!(%shard, error = %e.detail, "pitr: capture link ended");
        }
        if !rest.is_empty() {
            // Let the other links store what they hold before they stop.
            round.store(true, Ordering::SeqCst);
            for l in rest {
                let _ = tokio::time::timeout(Duration::from_secs(3), l).await;
            }
        }
        bases.abort();
        if !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Takes a base of every shard whose newest base is older than the
/// policy's interval, over a second link.
async fn periodic_bases(
    jobs: Arc<Jobs>,
    inst: Arc<Instance>,
    topology: Topology,
    interval_min: i64,
    stop: Arc<AtomicBool>,
) {
    let every = interval_min.max(1) * super::scale::minute();
    // Checked every tick: a base is at most a tick (and its transfer)
    // later than due, so a restore replays little more than an interval.
    let poll = Duration::from_millis((every as u64 / 4).clamp(250, TICK.as_millis() as u64));
    loop {
        tokio::time::sleep(poll).await;
        if stop.load(Ordering::SeqCst) {
            return;
        }
        // A backup of the history the link now follows counts as a base:
        // while one is recent, the source is spared a fork.
        let (Ok(bases), Ok(links)) = (
            super::bases::all(&jobs.catalog, &inst.id).await,
            jobs.catalog.pitr_links(&inst.id).await,
        ) else {
            continue;
        };
        let now = now_millis();
        let sources = choose_sources(&inst.connection, &topology, &jobs.redis).await;
        for src in sources {
            let key = shard_key(&topology, &src.slots);
            let link = links.iter().find(|l| l.shard == key);
            let newest = bases
                .iter()
                .filter(|b| b.shard == key)
                .filter(|b| {
                    !b.from_backup
                        || link.is_some_and(|l| {
                            l.repl_id == b.repl_id && b.repl_offset <= l.end_offset
                        })
                })
                .map(|b| b.taken_at)
                .max();
            if newest.is_some_and(|t| now - t < every) || newest.is_none() {
                // No base yet: the capture link's own full sync makes it.
                continue;
            }
            let cluster = topology.cache_mode() == crate::model::CacheMode::Cluster;
            // A shard with no healthy replica would fork its master: where
            // sandbox servers are configured, the base is derived from the
            // previous one and the log instead, and the source is not asked.
            if src.node == src.shard_master && !jobs.settings.sandbox_servers.is_empty() {
                match super::derive::derive_base(
                    &jobs,
                    &inst,
                    &key,
                    &src.slots,
                    &src.shard_master,
                    cluster,
                )
                .await
                {
                    Ok(_) => continue,
                    Err(e) => tracing::warn!(
                        shard = %key,
                        error = %e.detail,
                        "pitr: could not derive a base in a scratch server; taking it from the master"
                    ),
                }
            }
            match take_base(&jobs, &inst, &key, src, cluster).await {
                Ok(()) => tracing::info!(shard = %key, "pitr: periodic base stored"),
                Err(e) => {
                    tracing::warn!(shard = %key, error = %e.detail, "pitr: periodic base failed")
                }
            }
        }
    }
}

async fn take_base(
    jobs: &Arc<Jobs>,
    inst: &Instance,
    shard: &str,
    src: Source,
    cluster: bool,
) -> Result<(), JobFailure> {
    // Before the sync: every byte past the base's offset arrives later.
    let taken_at = now_millis();
    let snap =
        crate::redis::replication::start_snapshot(&inst.connection, &src.node, &jobs.redis).await?;
    store_base(jobs, inst, shard, src, cluster, snap, taken_at, None)
        .await
        .map(|_| ())
}

/// Stores a snapshot as a base (a backup-shaped directory with its
/// manifest, then its row) and hands back the snapshot for its stream.
/// `taken_at` is when the sync was asked for (no byte past the base's
/// offset arrives before it: retention relies on that); `ready_at`
/// defaults to the time the base is complete.
#[allow(clippy::too_many_arguments)]
pub(super) async fn store_base(
    jobs: &Arc<Jobs>,
    inst: &Instance,
    shard: &str,
    src: Source,
    cluster: bool,
    mut snap: crate::redis::replication::Snapshot,
    taken_at: Millis,
    ready_at: Option<Millis>,
) -> Result<(crate::redis::replication::Snapshot, BaseRow), JobFailure> {
    let (Some(offset), false) = (snap.offset, snap.replid.is_empty()) else {
        return Err(JobFailure::new(
            crate::model::JobError::ToolStart,
            "the master did not say the snapshot's replication offset",
        ));
    };
    let id = BackupId::generate().to_string();
    let prefix = format!("{}bases/{id}/", pitr_prefix(inst));
    let name = file_name(&src, cluster, &compact_utc(taken_at), BackupFormat::Rdb);
    let path = format!("{prefix}{name}");
    let file = store_snapshot(
        jobs,
        &mut snap,
        None,
        src,
        name.clone(),
        path,
        BackupFormat::Rdb,
        Arc::new(Progress::default()),
        Arc::new(Meter::default()),
    )
    .await;
    let file = match file {
        Ok(f) => f,
        Err(e) => {
            let _ = jobs.store.delete_prefix(&prefix).await;
            return Err(e);
        }
    };
    let manifest = Manifest {
        manifest_version: 2,
        backup_id: id.clone(),
        instance_id: inst.id.to_string(),
        project_id: inst.project_id.to_string(),
        format: "rdb".into(),
        cache_mode: if cluster { "cluster" } else { "single" }.into(),
        engine: String::new(),
        server_version: String::new(),
        started_at: taken_at,
        completed_at: now_millis(),
        files: vec![file],
    };
    jobs.store.put_manifest(&prefix, &manifest).await?;
    let json = serde_json::to_string(&manifest)
        .map_err(|e| JobFailure::new(crate::model::JobError::Storage, e.to_string()))?;
    let row = BaseRow {
        id,
        instance_id: inst.id.clone(),
        shard: shard.to_owned(),
        prefix,
        file_name: name,
        repl_id: snap.replid.clone(),
        repl_offset: offset as i64,
        taken_at,
        ready_at: ready_at.unwrap_or_else(now_millis),
        size: manifest.total_size() as i64,
        manifest: json,
        from_backup: false,
    };
    jobs.catalog.insert_pitr_base(&row).await?;
    Ok((snap, row))
}

/// One capture link to one master.
struct Link {
    jobs: Arc<Jobs>,
    inst: Arc<Instance>,
    shard: String,
    master: NodeAddr,
    slots: Vec<(u16, u16)>,
    cluster: bool,
    /// Capture of the instance stops.
    stop: Arc<AtomicBool>,
    /// This round of links stops (another link of the instance ended).
    round: Arc<AtomicBool>,
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
    async fn run(&self) -> Result<(), JobFailure> {
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
        self.jobs.catalog.insert_pitr_segment(&row, now).await?;
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

/// Reads a whole object of the store (segments are small).
pub(crate) async fn read_object(
    jobs: &Jobs,
    key: &str,
    limit: u64,
) -> Result<Vec<u8>, crate::storage::StorageError> {
    use futures::StreamExt;
    let mut s = jobs.store.read_stream(key).await?;
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| crate::storage::StorageError::Manifest {
            path: key.to_owned(),
            why: e.to_string(),
        })?;
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(crate::storage::StorageError::Manifest {
                path: key.to_owned(),
                why: "object larger than its record says".into(),
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

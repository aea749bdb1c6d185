//! A backup: one replication snapshot per shard, streamed into the store
//! while it is verified, then a manifest, then `succeed`.
//!
//! Per shard the bytes flow Redis → (BLAKE3, store writer) and, on a
//! blocking thread, → RDB reader (CRC64 trailer, structure, key counts).
//! For the AOF format the reader's keys are turned into commands on that
//! thread and the commands are what the store receives. Memory stays
//! bounded by the channel depths and the store's write buffer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::pipe::{ChannelReader, ChannelWriter, DEPTH};
use super::{JobFailure, Jobs, Lease, Meter, RecordJob, MAX_ATTEMPTS};
use crate::catalog::{BackupOutcome, ClaimedJob, Result as CatalogResult};
use crate::metrics::Direction;
use crate::model::{
    compact_utc, now_millis, BackupFormat, BackupRecord, BackupStatus, Connection, Instance,
    JobError, NodeAddr, Topology,
};
use crate::redis::replication::{start_snapshot, Transfer};
use crate::redis::{discover, Conn, ConnectOptions};
use crate::storage::{BackupLocation, Manifest, ManifestFile};
use dcs_rdb::{AofOptions, AofWriter, ChecksumStatus, Item, RdbReader, ReadMode};

/// Where one file of the backup comes from.
#[derive(Clone, Debug)]
pub(crate) struct Source {
    pub node: NodeAddr,
    pub shard_master: NodeAddr,
    pub slots: Vec<(u16, u16)>,
}

/// Bytes received and expected for one source, for the progress figure.
#[derive(Default)]
pub(crate) struct Progress {
    received: AtomicU64,
    expected: AtomicU64,
}

/// A backup job as [`super::run_record`] runs it. A backup has no crash
/// recovery: a new attempt starts over, removing what an earlier one left.
pub(super) struct BackupJob;

impl RecordJob for BackupJob {
    const WHAT: &'static str = "backup";
    /// The record and where its files go.
    type Record = (BackupRecord, BackupLocation);
    type Done = (Manifest, String);
    type Outcome = BackupOutcome;

    async fn load(jobs: &Jobs, job: &ClaimedJob) -> CatalogResult<Option<Self::Record>> {
        Ok(jobs.catalog.backup_of_job(job).await?.map(|rec| {
            let at = BackupLocation::of(&rec);
            (rec, at)
        }))
    }

    async fn perform(
        jobs: &Arc<Jobs>,
        job: &ClaimedJob,
        lease: &Lease,
        (rec, at): &Self::Record,
    ) -> Result<Self::Done, JobFailure> {
        perform(jobs, job, lease, rec, at).await
    }

    async fn outcome(
        jobs: &Jobs,
        (_, at): &Self::Record,
        result: Result<Self::Done, JobFailure>,
    ) -> BackupOutcome {
        match result {
            Ok((manifest, json)) => {
                tracing::info!(
                    files = manifest.files.len(),
                    size = manifest.total_size(),
                    "backup succeeded"
                );
                BackupOutcome {
                    status: BackupStatus::Succeed,
                    size: manifest.total_size() as i64,
                    error: None,
                    manifest: Some(json),
                }
            }
            Err(f) => {
                // Nothing partial stays behind a failed record.
                if let Err(e) = jobs.store.delete_prefix(at.prefix()).await {
                    tracing::warn!(error = %e, "cannot remove the failed backup's partial files");
                }
                BackupOutcome {
                    status: BackupStatus::Failed,
                    size: 0,
                    error: Some(f.code),
                    manifest: None,
                }
            }
        }
    }

    fn bytes((manifest, _): &Self::Done) -> (Direction, u64) {
        (Direction::Stored, manifest.total_size())
    }

    async fn record(jobs: &Jobs, job: &ClaimedJob, out: &BackupOutcome) -> CatalogResult<bool> {
        let done = jobs
            .catalog
            .finish_backup(job, &jobs.node_id, out, now_millis())
            .await?;
        if done && out.status == crate::model::BackupStatus::Succeed {
            // Only the replica whose record landed gets here: one test.
            jobs.test_after_backup(job).await;
        }
        Ok(done)
    }
}

async fn perform(
    jobs: &Arc<Jobs>,
    job: &ClaimedJob,
    lease: &Lease,
    rec: &BackupRecord,
    at: &BackupLocation,
) -> Result<(Manifest, String), JobFailure> {
    if job.attempts > MAX_ATTEMPTS {
        return Err(JobFailure::new(
            JobError::ToolStart,
            format!(
                "gave up after {} attempts whose runner stopped",
                job.attempts - 1
            ),
        ));
    }
    if job.attempts > 1 {
        // Whatever an earlier attempt left is incomplete by definition.
        jobs.store.delete_prefix(at.prefix()).await?;
    }
    let inst = jobs
        .catalog
        .instance_any(&rec.instance_id)
        .await?
        .ok_or_else(|| JobFailure::new(JobError::ToolStart, "instance no longer exists"))?;
    let started = now_millis();
    if !jobs
        .catalog
        .start_backup(job, &jobs.node_id, started)
        .await?
    {
        return Err(JobFailure::lost());
    }
    let topology = discover(&inst.connection, &jobs.redis).await?;
    let sources = choose_sources(&inst.connection, &topology, &jobs.redis).await;
    let stamp = compact_utc(rec.created_at);
    let progress: Vec<Arc<Progress>> = sources
        .iter()
        .map(|_| Arc::new(Progress::default()))
        .collect();

    let cluster = topology.cache_mode() == crate::model::CacheMode::Cluster;
    let meter = lease.meter();
    let transfers = sources.iter().zip(&progress).map(|(src, prog)| {
        let name = file_name(src, cluster, &stamp, rec.format);
        let path = at.file(&name);
        snapshot_to_store(
            jobs,
            &inst,
            src.clone(),
            name,
            path,
            rec.format,
            Arc::clone(prog),
            Arc::clone(&meter),
        )
    });
    let all = futures::future::try_join_all(transfers);
    tokio::pin!(all);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let files = loop {
        tokio::select! {
            res = &mut all => break res?,
            _ = tick.tick() => {
                if lease.lost() {
                    return Err(JobFailure::lost());
                }
                let (got, want) = progress.iter().fold((0u64, 0u64), |(g, w), p| {
                    (g + p.received.load(Ordering::Relaxed), w + p.expected.load(Ordering::Relaxed).max(1))
                });
                let pct = (got.saturating_mul(10_000) / want.max(1)).min(9_999) as i64;
                jobs.catalog.backup_progress(job, &jobs.node_id, pct, got as i64, now_millis()).await?;
            }
        }
    };
    let manifest = Manifest {
        manifest_version: 2,
        backup_id: rec.id.to_string(),
        instance_id: rec.instance_id.to_string(),
        project_id: rec.project_id.to_string(),
        format: rec.format.as_str().to_owned(),
        cache_mode: topology.mode.clone(),
        engine: topology.engine.clone(),
        server_version: topology.version.clone(),
        started_at: started,
        completed_at: now_millis(),
        files,
    };
    let json = serde_json::to_string(&manifest)
        .map_err(|e| JobFailure::new(JobError::Storage, e.to_string()))?;
    if lease.lost() {
        return Err(JobFailure::lost());
    }
    jobs.store.put_manifest(at.prefix(), &manifest).await?;
    Ok((manifest, json))
}

/// `redis_{ip}_{port}[_{lo}-{hi}]_{yyyyMMddHHmmss}.{rdb|aof}`. Built only
/// from a validated address, mapped to `[A-Za-z0-9.-]` (IPv6 colons become
/// `-`), numbers and the stamp: no peer byte can make it a path.
pub(crate) fn file_name(src: &Source, cluster: bool, stamp: &str, format: BackupFormat) -> String {
    let ext = format.as_str();
    let host = src.shard_master.host_for_name();
    let port = src.shard_master.port;
    match (cluster, src.slots.first(), src.slots.last()) {
        (true, Some(first), Some(last)) => {
            format!("redis_{host}_{port}_{}-{}_{stamp}.{ext}", first.0, last.1)
        }
        _ => format!("redis_{host}_{port}_{stamp}.{ext}"),
    }
}

/// Per shard, a replica whose link to its master is up (sparing the
/// master's fork), else the master itself.
pub(crate) async fn choose_sources(
    conn: &Connection,
    topology: &Topology,
    opts: &ConnectOptions,
) -> Vec<Source> {
    let mut out = Vec::with_capacity(topology.shards.len());
    for shard in &topology.shards {
        let mut chosen = None;
        for r in &shard.replicas {
            if replica_is_healthy(conn, r, opts).await {
                chosen = Some(r.clone());
                break;
            }
        }
        let node = chosen.unwrap_or_else(|| {
            if !shard.replicas.is_empty() {
                tracing::warn!(master = %crate::redis::peer_text(&shard.master.to_string()), "no healthy replica; taking the snapshot from the master");
            }
            shard.master.clone()
        });
        out.push(Source {
            node,
            shard_master: shard.master.clone(),
            slots: shard.slots.clone(),
        });
    }
    out
}

async fn replica_is_healthy(conn: &Connection, node: &NodeAddr, opts: &ConnectOptions) -> bool {
    let Ok(mut c) = Conn::open(conn, &node.host, node.port, opts).await else {
        return false;
    };
    let Ok(info) = c.info("replication").await else {
        return false;
    };
    info.get("role") == Some("slave")
        && info.get("master_link_status") == Some("up")
        && info.get("master_sync_in_progress") != Some("1")
}

/// What the RDB reader found in one snapshot.
#[derive(Default)]
struct Seen {
    magic: String,
    version: u32,
    checksum: String,
    keys: u64,
    keys_per_db: std::collections::BTreeMap<u64, u64>,
    expiring: u64,
    functions: u64,
    /// Keys per database and type name (names are static: no allocation
    /// per key on the reader's thread).
    keys_per_type: std::collections::BTreeMap<u64, std::collections::BTreeMap<&'static str, u64>>,
}

impl Seen {
    fn item(&mut self, item: &Item) {
        match item {
            Item::Header { magic, version } => {
                self.magic = format!("{magic:?}").to_ascii_uppercase();
                self.version = *version;
            }
            Item::Key(k) => {
                self.keys += 1;
                *self.keys_per_db.entry(k.db).or_insert(0) += 1;
                *self
                    .keys_per_type
                    .entry(k.db)
                    .or_default()
                    .entry(dcs_rdb::types::type_name(k.rdb_type))
                    .or_insert(0) += 1;
                if k.expire_ms.is_some() {
                    self.expiring += 1;
                }
            }
            Item::Function { .. } | Item::FunctionPreGa { .. } => self.functions += 1,
            Item::End { checksum } => {
                self.checksum = match checksum {
                    ChecksumStatus::Verified(_) => "ok".into(),
                    ChecksumStatus::Disabled | ChecksumStatus::Absent => "absent".into(),
                }
            }
            _ => {}
        }
    }
}

fn rdb_failure(e: dcs_rdb::RdbError) -> JobFailure {
    JobFailure::new(
        JobError::ToolStart,
        format!("snapshot is not a valid RDB: {e}"),
    )
}

/// Reads the whole RDB from `input` (verifying it); for AOF, writes its
/// commands to `aof`.
/// A string declaring more than `max_string` bytes fails the backup before
/// any of it is buffered.
fn read_rdb(
    input: ChannelReader,
    aof: Option<ChannelWriter>,
    max_string: u64,
) -> Result<Seen, JobFailure> {
    let mode = if aof.is_some() {
        ReadMode::Decode
    } else {
        ReadMode::Skip
    };
    let mut reader = RdbReader::new(input, mode)
        .require_eof_after_trailer(true)
        .max_string(max_string);
    let mut seen = Seen::default();
    let mut writer = aof.map(|w| AofWriter::new(w, AofOptions::default()));
    while let Some(item) = reader.next_item().map_err(rdb_failure)? {
        seen.item(&item);
        if let Some(w) = writer.as_mut() {
            w.write_item(&item).map_err(rdb_failure)?;
        }
    }
    if let Some(w) = writer {
        let mut out = w.finish().map_err(rdb_failure)?;
        std::io::Write::flush(&mut out)
            .map_err(|e| JobFailure::new(JobError::Storage, e.to_string()))?;
    }
    Ok(seen)
}

#[allow(clippy::too_many_arguments)]
#[tracing::instrument(skip_all, fields(node = %src.node, file = %name))]
async fn snapshot_to_store(
    jobs: &Jobs,
    inst: &Instance,
    src: Source,
    name: String,
    path: String,
    format: BackupFormat,
    progress: Arc<Progress>,
    meter: Arc<Meter>,
) -> Result<ManifestFile, JobFailure> {
    // Until the payload starts the master may be forking and writing its
    // snapshot: the watchdog's rate check waits (its deadline does not).
    let waiting = meter.waiting();
    let estimate = used_memory(&inst.connection, &src.node, &jobs.redis).await;
    let mut snap = start_snapshot(&inst.connection, &src.node, &jobs.redis).await?;
    drop(waiting);
    store_snapshot(
        jobs, &mut snap, estimate, src, name, path, format, progress, meter,
    )
    .await
}

/// Streams a started snapshot into the store at `path` while a blocking
/// thread verifies it: the second half of a backup's file, and a PITR
/// capture link's base (which goes on reading the stream after it).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn store_snapshot(
    jobs: &Jobs,
    snap: &mut crate::redis::replication::Snapshot,
    estimate: Option<u64>,
    src: Source,
    name: String,
    path: String,
    format: BackupFormat,
    progress: Arc<Progress>,
    meter: Arc<Meter>,
) -> Result<ManifestFile, JobFailure> {
    let limit = jobs.settings.max_backup_size;
    let too_big = |n: u64| {
        JobFailure::new(
            JobError::Storage,
            format!(
                "the backup is larger than its limit of {} bytes (--max-backup-size): {n} bytes",
                limit.unwrap_or(0)
            ),
        )
    };
    let (repl_id, repl_offset) = (snap.replid.clone(), snap.offset);
    let expected = match snap.transfer() {
        // The declared size only feeds the progress figure (and this
        // check); nothing is allocated by it.
        Transfer::Sized(n) if limit.is_some_and(|l| n > l) => return Err(too_big(n)),
        Transfer::Sized(n) => n,
        Transfer::Eof => estimate.unwrap_or(1 << 20),
    };
    progress.expected.store(expected, Ordering::Relaxed);
    let writer = jobs.store.writer(&path).await?;

    let (in_tx, in_rx) = mpsc::channel::<Bytes>(DEPTH);
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(DEPTH);
    let rdb = format == BackupFormat::Rdb;
    let aof = (!rdb).then(|| ChannelWriter::new(out_tx.clone(), 256 * 1024));
    let max_string = jobs.settings.max_rdb_string;
    let reader =
        tokio::task::spawn_blocking(move || read_rdb(ChannelReader::new(in_rx), aof, max_string));

    // Three stages run at once, joined by bounded channels: the network
    // read (this task), the RDB reader (a blocking thread) and the store
    // writer with its hashing (a task of its own, so it overlaps with the
    // network on another core). RDB: the snapshot bytes go to the store as
    // they arrive. AOF: the reader's output goes to the store instead.
    // Each stage owns its channel ends, so one failing ends the others.
    let store = super::spawn_traced(async move {
        let mut out_rx = out_rx;
        let mut writer = writer;
        while let Some(piece) = out_rx.recv().await {
            if let Err(e) = writer.write(piece).await {
                writer.abort().await;
                return Err(JobFailure::from(e));
            }
        }
        Ok(writer)
    });
    let store_tx = rdb.then_some(out_tx);
    let fed = async move {
        while let Some(chunk) = snap.next_chunk().await? {
            progress
                .received
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            // Every source of the backup adds to one count: the watchdog's
            // rate and the size limit both read it.
            let n = chunk.len() as u64;
            let total = meter.add(n);
            if limit.is_some_and(|l| total > l) {
                return Err(too_big(total));
            }
            if in_tx.send(chunk.clone()).await.is_err() {
                break; // the reader stopped early; its error says why
            }
            if let Some(tx) = &store_tx {
                if tx.send(chunk).await.is_err() {
                    break; // the store failed; its error says why
                }
            }
        }
        Ok::<_, JobFailure>(())
    }
    .await;
    let seen = reader
        .await
        .map_err(|e| JobFailure::new(JobError::ToolStart, format!("reader crashed: {e}")))
        .and_then(|r| r);
    let stored = store
        .await
        .map_err(|e| JobFailure::new(JobError::Storage, format!("store writer crashed: {e}")))
        .and_then(|r| r);
    // The first failure in flow order is the cause; later ones are echoes.
    let (seen, writer) = match (fed, stored, seen) {
        (Ok(()), Ok(w), Ok(s)) => (s, w),
        (fed, stored, seen) => {
            let cause = match (fed, &stored, seen) {
                (Err(e), _, _) => e,
                (_, Err(e), _) => JobFailure::new(e.code, e.detail.clone()),
                (_, _, Err(e)) => e,
                _ => JobFailure::new(JobError::ToolStart, "backup stage failed"),
            };
            if let Ok(w) = stored {
                w.abort().await;
            }
            return Err(cause);
        }
    };
    let (size, blake3) = writer.finish().await?;
    Ok(ManifestFile {
        name,
        size,
        blake3,
        rdb_magic: seen.magic,
        rdb_version: seen.version,
        rdb_checksum: seen.checksum,
        keys: seen.keys,
        keys_per_db: seen.keys_per_db,
        expiring_keys: seen.expiring,
        functions: seen.functions,
        slots: src.slots.clone(),
        source_node: src.node.to_string(),
        shard_master: src.shard_master.to_string(),
        keys_per_type: seen
            .keys_per_type
            .into_iter()
            .map(|(db, types)| {
                let types = types.into_iter().map(|(t, n)| (t.to_owned(), n)).collect();
                (db, types)
            })
            .collect(),
        repl_id: (!repl_id.is_empty()).then_some(repl_id),
        repl_offset,
    })
}

async fn used_memory(conn: &Connection, node: &NodeAddr, opts: &ConnectOptions) -> Option<u64> {
    let mut c = Conn::open(conn, &node.host, node.port, opts).await.ok()?;
    let info = c.info("memory").await.ok()?;
    info.get("used_memory_dataset")
        .or_else(|| info.get("used_memory"))?
        .parse()
        .ok()
}

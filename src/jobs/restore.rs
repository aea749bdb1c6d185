//! A restore: verify the whole backup, then make the target's dataset the
//! backup's by the fastest path it accepts.
//!
//! - Replication feed (standalone and master/standby targets, one RDB file
//!   the target's Redis can load): the service plays a master and the
//!   target loads the RDB at its own native speed.
//! - Slicing (clusters, AOF backups, RDB versions the target cannot load,
//!   or when the feed is refused): each key's serialized value is cut from
//!   the RDB and sent as `RESTORE key ttl payload ABSTTL REPLACE`, pipelined
//!   to the master owning its slot; a key whose encoding the target does not
//!   know (or whose payload is too big) is sent as decoded commands.
//!
//! Invariant: nothing is written to the target before every file of the
//! backup has been read back and matched its manifest (size, BLAKE3, RDB
//! CRC64 and structure, AOF framing).

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::pipe::{ChannelReader, DEPTH};
use super::{JobFailure, Jobs, Lease};
use crate::catalog::{ClaimedJob, RestoreOutcome};
use crate::model::{
    now_millis, BackupStatus, CacheMode, Instance, JobError, NodeAddr, RestoreId, RestoreStatus,
    Topology,
};
use crate::redis::cluster::SlotMap;
use crate::redis::feed::FeedEvent;
use crate::redis::pipeline::{Op, Pipeline};
use crate::redis::resp::{encode_command, parse_reply, Reply};
use crate::redis::{discover, Conn, RedisError};
use crate::storage::{backup_prefix, Manifest, ManifestFile};
use dcs_rdb::{
    decode_value, min_rdb_version_for_type, write_key_commands, AofOptions, Flavor, Item,
    RdbReader, ReadMode,
};

/// Which restore paths the service may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreMode {
    /// The feed where possible, else slicing.
    Auto,
    /// Only the feed (fails where it is not possible).
    Feed,
    /// Only slicing (benchmarks, or targets where REPLICAOF is unwelcome).
    Slice,
}

impl RestoreMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(Self::Auto),
            "feed" => Some(Self::Feed),
            "slice" => Some(Self::Slice),
            _ => None,
        }
    }
}

/// Bytes in flight per target node.
const WINDOW: usize = 32 * 1024 * 1024;
/// Commands are grouped into ops of about this many bytes.
const OP_BYTES: usize = 256 * 1024;

/// What a restore remembers across a crash of the service.
#[derive(Serialize, Deserialize, Debug, Default, Clone)]
struct Detail {
    path: String,
    /// `host:port` the target was told to replicate from (feed).
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    target: Option<String>,
    /// Configuration changed on the target, with the values to put back.
    #[serde(default)]
    saved_config: Vec<(String, String)>,
}

fn fail(code: JobError, detail: impl Into<String>) -> JobFailure {
    JobFailure::new(code, detail)
}

fn sync_failure(e: impl std::fmt::Display) -> JobFailure {
    fail(JobError::RestoreSync, e.to_string())
}

pub(super) async fn run(jobs: &Arc<Jobs>, job: &ClaimedJob, lease: &Lease) {
    let id = RestoreId::from_stored(job.record_id.clone());
    let rec = match jobs.catalog.restore(&id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            tracing::warn!("restore record missing; dropping the job");
            let _ = jobs
                .catalog
                .finish_job(&job.id, &jobs.node_id, now_millis())
                .await;
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read the restore record");
            return;
        }
    };
    let result = if job.attempts > 1 {
        recover(jobs, job).await
    } else {
        perform(jobs, job, lease, &rec).await
    };
    let outcome = match result {
        Ok(path) => {
            tracing::info!(%path, "restore succeeded");
            RestoreOutcome {
                status: RestoreStatus::Succeed,
                error: None,
                detail: Some(path),
            }
        }
        Err(f) => {
            tracing::warn!(code = f.code.code(), detail = %f.detail, "restore failed");
            if lease.lost() {
                return;
            }
            RestoreOutcome {
                status: RestoreStatus::Failed,
                error: Some(f.code),
                detail: Some(f.detail),
            }
        }
    };
    match jobs
        .catalog
        .finish_restore(job, &jobs.node_id, &outcome, now_millis())
        .await
    {
        Ok(true) => {}
        Ok(false) => tracing::warn!("job no longer ours; its new owner records the outcome"),
        Err(e) => tracing::error!(error = %e, "cannot record the restore's end"),
    }
}

/// A restore whose runner died: free a target left replicating from the
/// service, put back configuration, and report the restore failed.
pub(super) async fn recover(jobs: &Arc<Jobs>, job: &ClaimedJob) -> Result<String, JobFailure> {
    let detail: Detail = jobs
        .catalog
        .restore_detail(&job.record_id)
        .await?
        .and_then(|d| serde_json::from_str(&d).ok())
        .unwrap_or_default();
    let inst = jobs.catalog.instance_any(&job.instance_id).await?;
    if let (Some(inst), Some(endpoint), Some(target)) = (inst, &detail.endpoint, &detail.target) {
        if let Some(addr) = parse_addr(target) {
            match Conn::open(&inst.connection, &addr.host, addr.port, &jobs.redis).await {
                Ok(mut c) => {
                    let repl = c.info("replication").await.ok();
                    let master = repl.as_ref().and_then(|r| {
                        Some(format!(
                            "{}:{}",
                            r.get("master_host")?,
                            r.get("master_port")?
                        ))
                    });
                    if master.as_deref() == Some(endpoint.as_str()) {
                        tracing::warn!(target = %target, "freeing a target left replicating from this service");
                        release(&mut c).await;
                    }
                    for (k, v) in &detail.saved_config {
                        let _ = c.cmd(&["CONFIG", "SET", k, v]).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot reach the target to clean up"),
            }
        }
    }
    Err(fail(
        JobError::RestoreSync,
        "the service stopped during the restore; the target was released",
    ))
}

/// `REPLICAOF NO ONE`, retried while the target is still loading (it
/// answers `-LOADING` until then), for up to ten minutes.
async fn release(c: &mut Conn) -> bool {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        match c.cmd(&["REPLICAOF", "NO", "ONE"]).await {
            Ok(Reply::Simple(_)) => return true,
            Ok(Reply::Error(e)) if e.starts_with("LOADING") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(other) => {
                tracing::warn!(reply = ?other, "the target refused REPLICAOF NO ONE");
                return false;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot release the target");
                return false;
            }
        }
    }
}

fn parse_addr(s: &str) -> Option<NodeAddr> {
    let (h, p) = s.rsplit_once(':')?;
    NodeAddr::from_reported(h.trim_matches(['[', ']']), p).ok()
}

/// Bytes of backup processed, for the progress figure.
#[derive(Default)]
struct Progress {
    done: AtomicU64,
    total: AtomicU64,
}

async fn perform(
    jobs: &Arc<Jobs>,
    job: &ClaimedJob,
    lease: &Lease,
    rec: &crate::model::RestoreRecord,
) -> Result<String, JobFailure> {
    let backup = jobs
        .catalog
        .backup(&rec.backup_id)
        .await?
        .filter(|b| b.status == BackupStatus::Succeed)
        .ok_or_else(|| fail(JobError::SizeQuery, "the backup is no longer available"))?;
    let prefix = backup_prefix(
        backup.project_id.as_str(),
        backup.instance_id.as_str(),
        backup.id.as_str(),
    );
    let manifest = jobs
        .store
        .manifest(&prefix)
        .await
        .map_err(|e| fail(JobError::SizeQuery, format!("manifest: {e}")))?
        .ok_or_else(|| fail(JobError::SizeQuery, "the backup's manifest is missing"))?;
    if !jobs
        .catalog
        .start_restore(job, &jobs.node_id, now_millis())
        .await?
    {
        return Err(JobFailure::lost());
    }
    let progress = Arc::new(Progress::default());
    progress
        .total
        .store(manifest.total_size() * 2, Ordering::Relaxed);
    let reporter = {
        let jobs = Arc::clone(jobs);
        let job = job.clone();
        let progress = Arc::clone(&progress);
        let meter = lease.meter(); // read by the runner's watchdog
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let done = progress.done.load(Ordering::Relaxed);
                meter.set(done);
                let total = progress.total.load(Ordering::Relaxed).max(1);
                let pct = (done.saturating_mul(10_000) / total).min(9_999) as i64;
                let _ = jobs
                    .catalog
                    .restore_progress(&job, &jobs.node_id, pct, now_millis())
                    .await;
            }
        })
    };
    let result = async {
        verify_backup(jobs, &prefix, &manifest, &progress).await?;
        if lease.lost() {
            return Err(JobFailure::lost());
        }
        let target = jobs
            .catalog
            .instance_any(&rec.instance_id)
            .await?
            .ok_or_else(|| fail(JobError::ToolStart, "the target instance no longer exists"))?;
        let topology = discover(&target.connection, &jobs.redis).await?;
        restore_into(jobs, job, &target, &topology, &manifest, &prefix, &progress).await
    }
    .await;
    reporter.abort();
    result
}

fn bad_file(f: &ManifestFile, why: impl std::fmt::Display) -> JobFailure {
    fail(
        JobError::SizeQuery,
        format!("backup file {}: {why}", f.name),
    )
}

/// Why a file did not pass its check.
enum CheckError {
    /// Reading it failed (the store's fault, not the backup's).
    Read(std::io::Error),
    /// Its content is wrong.
    Bad(String),
}

impl CheckError {
    fn into_failure(self, f: &ManifestFile) -> JobFailure {
        match self {
            CheckError::Read(e) => fail(JobError::Storage, format!("reading {}: {e}", f.name)),
            CheckError::Bad(why) => bad_file(f, why),
        }
    }
}

/// Parses a whole file: the RDB structure and CRC64, or the AOF framing.
fn check_content(input: impl Read, is_aof: bool) -> Result<(), CheckError> {
    if is_aof {
        return check_resp(input);
    }
    match dcs_rdb::verify(input) {
        Ok(_) => Ok(()),
        Err(dcs_rdb::RdbError::Io(e)) => Err(CheckError::Read(e)),
        Err(e) => Err(CheckError::Bad(e.to_string())),
    }
}

/// Counts the bytes read into the restore's progress.
struct Counted<R> {
    inner: R,
    progress: Arc<Progress>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.done.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Reads every file back: size, BLAKE3, and a full parse.
#[tracing::instrument(skip_all, fields(files = manifest.files.len()))]
async fn verify_backup(
    jobs: &Jobs,
    prefix: &str,
    manifest: &Manifest,
    progress: &Arc<Progress>,
) -> Result<(), JobFailure> {
    let is_aof = manifest.format == "aof";
    for f in &manifest.files {
        let path = format!("{prefix}{}", f.name);
        match jobs.store.size_of(&path).await? {
            Some(n) if n == f.size => {}
            Some(n) => {
                return Err(bad_file(
                    f,
                    format!("{n} bytes stored, {} expected", f.size),
                ))
            }
            None => return Err(bad_file(f, "missing")),
        }
        match jobs.store.local_path(&path) {
            Some(local) => verify_local(local, f, is_aof, progress).await?,
            None => verify_streamed(jobs, &path, f, is_aof, progress).await?,
        }
    }
    Ok(())
}

/// A local file is read twice at once from the page cache, by a thread
/// that hashes it and one that parses it, so the check costs the time of
/// the slower of the two.
async fn verify_local(
    local: PathBuf,
    f: &ManifestFile,
    is_aof: bool,
    progress: &Arc<Progress>,
) -> Result<(), JobFailure> {
    let hashing = tokio::task::spawn_blocking({
        let local = local.clone();
        move || -> std::io::Result<String> {
            let mut file = File::open(&local)?;
            let mut hasher = blake3::Hasher::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    return Ok(hasher.finalize().to_hex().to_string());
                }
                hasher.update(&buf[..n]);
            }
        }
    });
    let progress = Arc::clone(progress);
    let parsing = tokio::task::spawn_blocking(move || {
        let file = File::open(&local).map_err(CheckError::Read)?;
        check_content(
            Counted {
                inner: file,
                progress,
            },
            is_aof,
        )
    });
    let (hashed, parsed) = tokio::join!(hashing, parsing);
    let crashed = |e: tokio::task::JoinError| bad_file(f, format!("checker crashed: {e}"));
    let digest = hashed
        .map_err(crashed)?
        .map_err(|e| CheckError::Read(e).into_failure(f))?;
    parsed.map_err(crashed)?.map_err(|e| e.into_failure(f))?;
    if digest != f.blake3 {
        return Err(bad_file(f, "content does not match its checksum"));
    }
    Ok(())
}

/// A remote file is downloaded once: hashed as it streams in and parsed
/// in a blocking thread at the same time.
async fn verify_streamed(
    jobs: &Jobs,
    path: &str,
    f: &ManifestFile,
    is_aof: bool,
    progress: &Progress,
) -> Result<(), JobFailure> {
    let mut stream = jobs.store.read_stream(path).await?;
    let (tx, rx) = mpsc::channel::<Bytes>(DEPTH);
    let checker =
        tokio::task::spawn_blocking(move || check_content(ChannelReader::new(rx), is_aof));
    let mut hasher = blake3::Hasher::new();
    let mut read_err = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => {
                hasher.update(&c);
                progress.done.fetch_add(c.len() as u64, Ordering::Relaxed);
                if tx.send(c).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                read_err = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let parsed = checker
        .await
        .map_err(|e| bad_file(f, format!("checker crashed: {e}")))?;
    if let Some(e) = read_err {
        return Err(fail(JobError::Storage, format!("reading {}: {e}", f.name)));
    }
    let digest = hasher.finalize().to_hex().to_string();
    if digest != f.blake3 {
        return Err(bad_file(f, "content does not match its checksum"));
    }
    parsed.map_err(|e| e.into_failure(f))?;
    Ok(())
}

/// Checks that an AOF is a sequence of complete RESP commands.
fn check_resp(mut input: impl Read) -> Result<(), CheckError> {
    let mut buf = BytesMut::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 256 * 1024];
    loop {
        loop {
            match parse_reply(&buf).map_err(|e| CheckError::Bad(e.to_string()))? {
                Some((Reply::Array(Some(_)), used)) => {
                    let _ = buf.split_to(used);
                }
                Some((other, _)) => {
                    return Err(CheckError::Bad(format!("not a command: {other:?}")))
                }
                None => break,
            }
        }
        let n = input.read(&mut chunk).map_err(CheckError::Read)?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(())
            } else {
                Err(CheckError::Bad("truncated command at the end".into()))
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// What a target's server is.
#[derive(Clone, Debug)]
struct TargetInfo {
    rdb_version: u32,
    flavor: Flavor,
    functions: bool,
    /// Redis < 7 does not know the 7.0 stream counters.
    legacy_streams: bool,
}

async fn target_info(conn: &mut Conn) -> Result<TargetInfo, RedisError> {
    let info = conn.info("server").await?;
    let redis_v = info.get("redis_version").unwrap_or("0").to_owned();
    let valkey_v = info.get("valkey_version").map(str::to_owned);
    let rdb_version =
        dcs_rdb::rdb_version_for_server(&redis_v, valkey_v.as_deref()).unwrap_or(9) as u32;
    let major: u32 = redis_v
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    Ok(TargetInfo {
        rdb_version,
        flavor: if rdb_version >= 80 {
            Flavor::Valkey
        } else {
            Flavor::Redis
        },
        functions: major >= 7,
        legacy_streams: major < 7,
    })
}

/// Can a target with `t` load an RDB of (`magic`, `version`) as a whole?
fn loadable(t: &TargetInfo, magic: &str, version: u32) -> bool {
    let backup_valkey = magic == "VALKEY" || version >= 80;
    match (backup_valkey, t.flavor) {
        (true, Flavor::Redis) => false,
        (true, Flavor::Valkey) => version <= t.rdb_version,
        // Valkey reads Redis RDBs up to the last version they share (11).
        (false, Flavor::Valkey) => version <= 11,
        (false, Flavor::Redis) => version <= t.rdb_version,
    }
}

#[allow(clippy::too_many_arguments)]
async fn restore_into(
    jobs: &Arc<Jobs>,
    job: &ClaimedJob,
    target: &Instance,
    topology: &Topology,
    manifest: &Manifest,
    prefix: &str,
    progress: &Arc<Progress>,
) -> Result<String, JobFailure> {
    let cluster = topology.cache_mode() == CacheMode::Cluster;
    let master = &topology.shards[0].master;
    let mut conn = Conn::open(&target.connection, &master.host, master.port, &jobs.redis).await?;
    let tinfo = target_info(&mut conn).await?;
    let single_rdb = manifest.format == "rdb" && manifest.files.len() == 1;
    let why_not_feed = if cluster {
        Some("the target is a cluster (REPLICAOF is refused in cluster mode)".to_owned())
    } else if !single_rdb {
        Some(format!(
            "the backup is {} {} file(s)",
            manifest.files.len(),
            manifest.format
        ))
    } else if !loadable(
        &tinfo,
        &manifest.files[0].rdb_magic,
        manifest.files[0].rdb_version,
    ) {
        Some(format!(
            "the target cannot load RDB {} {} (it writes {})",
            manifest.files[0].rdb_magic, manifest.files[0].rdb_version, tinfo.rdb_version
        ))
    } else if jobs.settings.restore_mode == RestoreMode::Slice {
        Some("slicing was forced by configuration".to_owned())
    } else if jobs.feed.is_none() {
        Some("the replication listener is not running".to_owned())
    } else {
        None
    };
    match why_not_feed {
        None => {
            tracing::info!(target = %master, "restore path: replication feed");
            match feed(
                jobs,
                job,
                target,
                master,
                &manifest.files[0],
                prefix,
                progress,
            )
            .await
            {
                Ok(()) => return Ok("replication feed".into()),
                Err(FeedError::NotPossible(why))
                    if jobs.settings.restore_mode == RestoreMode::Auto =>
                {
                    tracing::info!(reason = %why, "restore path: slicing, the feed was not possible");
                }
                Err(FeedError::NotPossible(why)) => {
                    return Err(sync_failure(format!("feed not possible: {why}")))
                }
                Err(FeedError::Failed(f)) => return Err(f),
            }
        }
        Some(why) if jobs.settings.restore_mode == RestoreMode::Feed => {
            return Err(sync_failure(format!(
                "feed required but not possible: {why}"
            )))
        }
        Some(why) => tracing::info!(reason = %why, "restore path: slicing"),
    }
    drop(conn);
    slice(jobs, target, topology, manifest, prefix, progress, &tinfo).await?;
    Ok("slicing (RESTORE pipelines)".into())
}

/// Puts back configuration the restore changed on the target.
async fn put_back(c: &mut Conn, saved: &[(String, String)]) {
    for (k, v) in saved {
        if let Err(e) = c.cmd(&["CONFIG", "SET", k.as_str(), v.as_str()]).await {
            tracing::warn!(key = %k, error = %e, "could not put back the target's configuration");
        }
    }
}

enum FeedError {
    /// Refused before the target was touched: another path may be taken.
    NotPossible(String),
    Failed(JobFailure),
}

impl From<RedisError> for FeedError {
    fn from(e: RedisError) -> Self {
        FeedError::Failed(sync_failure(e))
    }
}

#[allow(clippy::too_many_arguments)]
async fn feed(
    jobs: &Arc<Jobs>,
    job: &ClaimedJob,
    target: &Instance,
    node: &NodeAddr,
    file: &ManifestFile,
    prefix: &str,
    progress: &Arc<Progress>,
) -> Result<(), FeedError> {
    let Some(server) = jobs.feed.as_ref() else {
        return Err(FeedError::NotPossible("no replication listener".into()));
    };
    let mut c = Conn::open(&target.connection, &node.host, node.port, &jobs.redis).await?;
    let config_get = |reply: Reply| -> Option<String> {
        match reply {
            Reply::Array(Some(items)) => items.get(1).and_then(Reply::as_text),
            _ => None,
        }
    };
    // The port the target will announce with REPLCONF listening-port.
    let announce = match c.cmd(&["CONFIG", "GET", "replica-announce-port"]).await? {
        Reply::Error(e) => return Err(FeedError::NotPossible(format!("CONFIG refused: {e}"))),
        r => config_get(r)
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or(0),
    };
    let listening_port = if announce > 0 { announce } else { node.port };
    let Some(mut registration) = server.register(listening_port) else {
        return Err(FeedError::NotPossible(
            "another restore is feeding a replica with the same port".into(),
        ));
    };
    // A target with no keys can load straight from the socket; one with
    // data keeps its own setting, so a failed transfer leaves its data.
    let mut saved = Vec::new();
    let empty = c
        .info("keyspace")
        .await
        .map(|i| i.with_prefix("db").next().is_none())
        .unwrap_or(false);
    if empty {
        if let Some(old) = config_get(c.cmd(&["CONFIG", "GET", "repl-diskless-load"]).await?) {
            if old != "on-empty-db" {
                if let Reply::Simple(_) = c
                    .cmd(&["CONFIG", "SET", "repl-diskless-load", "on-empty-db"])
                    .await?
                {
                    saved.push(("repl-diskless-load".to_owned(), old));
                }
            }
        }
    }
    let (host, port) = server.advertised();
    let endpoint = format!("{host}:{port}");
    let detail = Detail {
        path: "feed".into(),
        endpoint: Some(endpoint.clone()),
        target: Some(node.to_string()),
        saved_config: saved.clone(),
    };
    let detail_json = serde_json::to_string(&detail).unwrap_or_default();
    if !jobs
        .catalog
        .set_restore_detail(job, &jobs.node_id, &detail_json)
        .await
        .map_err(|e| FeedError::Failed(e.into()))?
    {
        put_back(&mut c, &saved).await;
        return Err(FeedError::Failed(JobFailure::lost()));
    }
    match c
        .cmd(&["REPLICAOF", host.as_str(), &port.to_string()])
        .await?
    {
        Reply::Error(e) => {
            put_back(&mut c, &saved).await;
            return Err(FeedError::NotPossible(format!("REPLICAOF refused: {e}")));
        }
        _ => {
            tracing::info!(target = %node, master = %endpoint, "target now replicates from the service")
        }
    }
    // From here on the target is ours to give back, whatever happens.
    let fed = feed_and_wait(jobs, &mut registration, &mut c, file, prefix, progress).await;
    let freed = release(&mut c).await;
    put_back(&mut c, &saved).await;
    if !freed {
        return Err(FeedError::Failed(sync_failure(
            "could not release the target from replicating",
        )));
    }
    fed.map_err(FeedError::Failed)
}

async fn feed_and_wait(
    jobs: &Arc<Jobs>,
    registration: &mut crate::redis::feed::Registration,
    control: &mut Conn,
    file: &ManifestFile,
    prefix: &str,
    progress: &Arc<Progress>,
) -> Result<(), JobFailure> {
    let connected = tokio::time::timeout(Duration::from_secs(30), registration.events.recv()).await;
    let Ok(Some(FeedEvent::Connected(replica))) = connected else {
        return Err(sync_failure(
            "the target never connected to the service's replication port (check --advertise-addr)",
        ));
    };
    tracing::info!(peer = %replica.peer, "target connected; sending the snapshot");
    let mut link = replica.stream;
    let replid = crate::catalog::random_token(40, b"0123456789abcdef");
    link.write_all(format!("+FULLRESYNC {replid} 0\r\n${}\r\n", file.size).as_bytes())
        .await
        .map_err(sync_failure)?;
    let path = format!("{prefix}{}", file.name);
    let (link, sent) = match jobs.store.local_path(&path) {
        Some(local) => send_local(link, local, progress).await?,
        None => {
            let mut stream = jobs.store.read_stream(&path).await?;
            let mut sent = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| fail(JobError::Storage, e.to_string()))?;
                sent += chunk.len() as u64;
                progress
                    .done
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                link.write_all(&chunk)
                    .await
                    .map_err(|e| sync_failure(format!("sending the snapshot: {e}")))?;
            }
            link.flush().await.map_err(sync_failure)?;
            (link, sent)
        }
    };
    if sent != file.size {
        return Err(fail(
            JobError::Storage,
            format!("read {sent} bytes of {}", file.size),
        ));
    }
    let (mut rd, mut wr) = link.into_split();
    // Keep the link alive (and the target's acks drained) until released.
    let keepalive = tokio::spawn(async move {
        let mut sink = vec![0u8; 4096];
        loop {
            tokio::select! {
                r = rd.read(&mut sink) => if matches!(r, Ok(0) | Err(_)) { break },
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    if wr.write_all(b"*1\r\n$4\r\nPING\r\n").await.is_err() { break }
                }
            }
        }
    });
    let deadline =
        Instant::now() + Duration::from_secs(120) + Duration::from_secs(file.size / (20 << 20));
    let result = loop {
        tokio::select! {
            ev = registration.events.recv() => {
                if let Some(FeedEvent::Connected(_)) = ev {
                    break Err(sync_failure("the target could not load the snapshot and asked for it again"));
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        match control.info("replication").await {
            Ok(i) if i.get("master_link_status") == Some("up") => break Ok(()),
            Ok(_) | Err(RedisError::Server(_)) => {}
            Err(e) => break Err(sync_failure(format!("target lost while loading: {e}"))),
        }
        if Instant::now() > deadline {
            break Err(fail(
                JobError::Timeout,
                "the target did not finish loading in time",
            ));
        }
    };
    keepalive.abort();
    result
}

/// Sends a local file down the replication link from a blocking thread
/// with `sendfile(2)`: the snapshot goes from the page cache to the target
/// without being copied through the service. Returns the link and the
/// bytes sent.
async fn send_local(
    link: tokio::net::TcpStream,
    local: PathBuf,
    progress: &Arc<Progress>,
) -> Result<(tokio::net::TcpStream, u64), JobFailure> {
    /// Progress is counted per piece of this size.
    const PIECE: usize = 8 << 20;
    let link = link.into_std().map_err(sync_failure)?;
    link.set_nonblocking(false).map_err(sync_failure)?;
    // A target that stops reading fails the send instead of hanging it.
    link.set_write_timeout(Some(Duration::from_secs(60)))
        .map_err(sync_failure)?;
    let progress = Arc::clone(progress);
    let (link, sent) = tokio::task::spawn_blocking(move || {
        let copy = || -> Result<u64, JobFailure> {
            let file = File::open(&local)
                .map_err(|e| fail(JobError::Storage, format!("opening the snapshot: {e}")))?;
            let mut offset = 0u64;
            loop {
                let n = rustix::fs::sendfile(&link, &file, Some(&mut offset), PIECE)
                    .map_err(|e| sync_failure(format!("sending the snapshot: {e}")))?;
                if n == 0 {
                    return Ok(offset);
                }
                progress.done.fetch_add(n as u64, Ordering::Relaxed);
            }
        };
        let sent = copy();
        (link, sent)
    })
    .await
    .map_err(|e| sync_failure(format!("sender crashed: {e}")))?;
    let sent = sent?;
    link.set_nonblocking(true).map_err(sync_failure)?;
    let link = tokio::net::TcpStream::from_std(link).map_err(sync_failure)?;
    Ok((link, sent))
}

/// One unit for the pipelines: to one master, or to every master.
enum Dest {
    One(usize),
    All,
}

/// Where one backup file's bytes come from for the slicing thread.
enum SliceInput {
    /// A local file, read by the slicing thread itself.
    Local(PathBuf),
    /// Chunks a task on the main runtime streams in from a remote store.
    Remote(mpsc::Receiver<Bytes>),
}

#[allow(clippy::too_many_arguments)]
async fn slice(
    jobs: &Arc<Jobs>,
    target: &Instance,
    topology: &Topology,
    manifest: &Manifest,
    prefix: &str,
    progress: &Arc<Progress>,
    tinfo: &TargetInfo,
) -> Result<(), JobFailure> {
    let cluster = topology.cache_mode() == CacheMode::Cluster;
    let map = SlotMap::new(topology).map_err(sync_failure)?;
    if cluster {
        if let Some(f) = manifest
            .files
            .iter()
            .find(|f| f.keys_per_db.iter().any(|(db, n)| *db != 0 && *n > 0))
        {
            return Err(sync_failure(format!(
                "the backup has keys in databases other than 0 ({}), which a cluster cannot hold; nothing was written",
                f.name
            )));
        }
    }
    let mut inputs = Vec::with_capacity(manifest.files.len());
    let mut remote = Vec::new();
    for f in &manifest.files {
        let path = format!("{prefix}{}", f.name);
        match jobs.store.local_path(&path) {
            Some(local) => inputs.push(SliceInput::Local(local)),
            None => {
                let (tx, rx) = mpsc::channel::<Bytes>(DEPTH);
                inputs.push(SliceInput::Remote(rx));
                remote.push((path, tx));
            }
        }
    }
    // Remote files stream in order, each into its channel, as the slicing
    // thread reads them.
    let feeder = {
        let jobs = Arc::clone(jobs);
        let progress = Arc::clone(progress);
        tokio::spawn(async move {
            for (path, tx) in remote {
                let mut stream = jobs.store.read_stream(&path).await?;
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| fail(JobError::Storage, e.to_string()))?;
                    progress
                        .done
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    if tx.send(chunk).await.is_err() {
                        return Ok(());
                    }
                }
            }
            Ok::<_, JobFailure>(())
        })
    };
    // Parsing, encoding, writing to the masters and reading their replies
    // take turns on one thread with a runtime of its own, as `redis-cli
    // --pipe` does: on a machine shared with the target, every other
    // runnable thread of the service would take CPU time from the Redis
    // doing the loading.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let work = SliceWork {
        jobs: Arc::clone(jobs),
        target: target.clone(),
        map,
        cluster,
        tinfo: tinfo.clone(),
        format_aof: manifest.format == "aof",
        progress: Arc::clone(progress),
        now: now_millis(),
    };
    std::thread::Builder::new()
        .name("restore-slicer".into())
        .spawn(move || {
            let result = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(work.run(inputs)),
                Err(e) => Err(sync_failure(format!("slicer runtime: {e}"))),
            };
            let _ = done_tx.send(result);
        })
        .map_err(|e| sync_failure(format!("slicer thread: {e}")))?;
    let sliced = done_rx
        .await
        .map_err(|_| sync_failure("the slicer thread crashed"))?;
    let fed = feeder
        .await
        .map_err(|e| sync_failure(format!("feeder crashed: {e}")))?;
    // A read failure explains whatever the slicer saw after it.
    fed?;
    sliced
}

/// What the slicing thread needs, owned.
struct SliceWork {
    jobs: Arc<Jobs>,
    target: Instance,
    map: SlotMap,
    cluster: bool,
    tinfo: TargetInfo,
    format_aof: bool,
    progress: Arc<Progress>,
    now: i64,
}

impl SliceWork {
    /// Empties every master, then streams every file's commands to them.
    async fn run(self, inputs: Vec<SliceInput>) -> Result<(), JobFailure> {
        let mut pipes = Vec::with_capacity(self.map.masters.len());
        for m in &self.map.masters {
            let mut c =
                Conn::open(&self.target.connection, &m.host, m.port, &self.jobs.redis).await?;
            c.cmd_ok(&["FLUSHALL"]).await.map_err(sync_failure)?;
            if self.tinfo.functions {
                let _ = c.cmd(&["FUNCTION", "FLUSH"]).await;
            }
            pipes.push(Pipeline::start(c, WINDOW));
        }
        let max_payload = self.jobs.settings.restore_max_payload;
        for input in inputs {
            let input: Box<dyn Read + Send> = match input {
                SliceInput::Local(path) => {
                    let file = File::open(&path).map_err(|e| {
                        fail(
                            JobError::Storage,
                            format!("opening {}: {e}", path.display()),
                        )
                    })?;
                    Box::new(Counted {
                        inner: file,
                        progress: Arc::clone(&self.progress),
                    })
                }
                SliceInput::Remote(rx) => Box::new(ChannelReader::new(rx)),
            };
            let batch = Batcher::new(self.map.masters.len());
            let result = if self.format_aof {
                let mut source = AofReplayer::new(input, &self.map, self.cluster, batch);
                send_all(&mut source, &pipes).await
            } else {
                let mut source = RdbSlicer::new(
                    input,
                    &self.map,
                    self.cluster,
                    &self.tinfo,
                    self.now,
                    max_payload,
                    batch,
                );
                send_all(&mut source, &pipes).await
            };
            result?;
        }
        let mut redirects = Vec::new();
        for p in pipes {
            let stats = p.finish().await.map_err(sync_failure)?;
            if stats.error_count > 0 {
                return Err(sync_failure(format!(
                    "{} commands refused by the target, e.g. {}",
                    stats.error_count,
                    stats.errors.join("; ")
                )));
            }
            redirects.extend(stats.redirects);
        }
        resend_redirected(&self.jobs, &self.target, redirects).await
    }
}

/// Something that turns a backup file into ops, a few at a time.
trait OpSource {
    /// Turns the next piece of input into commands in the batch; false once
    /// the input is done (and the batch finished).
    fn step(&mut self) -> Result<bool, String>;

    fn batch(&mut self) -> &mut Batcher;

    /// Works until `out` holds an op or the input is done; false once done
    /// (every op handed out).
    fn fill(&mut self, out: &mut VecDeque<(Dest, Op)>) -> Result<bool, String> {
        loop {
            if self.batch().hand_out(out) {
                return Ok(true);
            }
            if !self.step()? {
                self.batch().hand_out(out);
                return Ok(false);
            }
        }
    }
}

/// Hands a source's ops to the pipelines, yielding after each batch so the
/// pipelines' writers and readers run on this same thread.
async fn send_all(source: &mut dyn OpSource, pipes: &[Pipeline]) -> Result<(), JobFailure> {
    let mut ready = VecDeque::new();
    loop {
        let more = source.fill(&mut ready).map_err(sync_failure)?;
        while let Some((dest, op)) = ready.pop_front() {
            match dest {
                Dest::One(i) => pipes[i].send(op).await.map_err(sync_failure)?,
                Dest::All => {
                    for p in pipes {
                        p.send(op.clone()).await.map_err(sync_failure)?;
                    }
                }
            }
        }
        if !more {
            return Ok(());
        }
        tokio::task::yield_now().await;
    }
}

/// Sends ops a cluster redirected (`MOVED`/`ASK`) to where it said.
async fn resend_redirected(
    jobs: &Jobs,
    target: &Instance,
    redirects: Vec<(Op, crate::redis::pipeline::Redirect)>,
) -> Result<(), JobFailure> {
    let mut conns: HashMap<String, Conn> = HashMap::new();
    for (op, mut redirect) in redirects {
        let mut hops = 0;
        loop {
            hops += 1;
            if hops > 5 {
                return Err(sync_failure("too many cluster redirects"));
            }
            let key = redirect.to.to_string();
            if !conns.contains_key(&key) {
                let c = Conn::open(
                    &target.connection,
                    &redirect.to.host,
                    redirect.to.port,
                    &jobs.redis,
                )
                .await?;
                conns.insert(key.clone(), c);
            }
            let Some(c) = conns.get_mut(&key) else {
                continue;
            };
            let mut again = None;
            // ASKING applies to the next command only, so send one by one.
            let replies = send_raw(c, &op, redirect.ask).await?;
            for r in replies {
                if let Reply::Error(e) = r {
                    match e.split_whitespace().collect::<Vec<_>>().as_slice() {
                        ["MOVED" | "ASK", _, addr] => {
                            let to = parse_addr(addr).ok_or_else(|| {
                                sync_failure("a redirect named an invalid node address")
                            })?;
                            again = Some(crate::redis::pipeline::Redirect {
                                ask: e.starts_with("ASK"),
                                to,
                            })
                        }
                        _ => return Err(sync_failure(format!("refused after redirect: {e}"))),
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
async fn send_raw(c: &mut Conn, op: &Op, ask: bool) -> Result<Vec<Reply>, JobFailure> {
    // Split the op back into commands.
    let mut rest = &op.bytes[..];
    let mut cmds = Vec::new();
    while !rest.is_empty() {
        let Some((Reply::Array(Some(items)), used)) = parse_reply(rest).map_err(sync_failure)?
        else {
            return Err(sync_failure("malformed op"));
        };
        let args: Vec<Vec<u8>> = items
            .into_iter()
            .map(|r| match r {
                Reply::Bulk(Some(b)) => b,
                other => other.as_text().unwrap_or_default().into_bytes(),
            })
            .collect();
        cmds.push(args);
        rest = &rest[used..];
    }
    let mut out = Vec::with_capacity(cmds.len());
    for args in cmds {
        if ask {
            c.cmd(&["ASKING"]).await?;
        }
        out.push(c.cmd(&args).await?);
    }
    Ok(out)
}

/// Per-destination buffers of encoded commands, cut into ops of about
/// [`OP_BYTES`].
struct Batcher {
    bufs: Vec<(Vec<u8>, u32)>,
    /// Ops cut and not yet handed out, in order.
    ready: VecDeque<(Dest, Op)>,
}

impl Batcher {
    fn new(n: usize) -> Self {
        Self {
            bufs: (0..n).map(|_| (Vec::with_capacity(OP_BYTES), 0)).collect(),
            ready: VecDeque::new(),
        }
    }

    fn push(&mut self, dest: usize, bytes: &[u8], commands: u32) {
        self.push_with(dest, commands, |buf| buf.extend_from_slice(bytes));
    }

    /// Like [`Self::push`], but the command is written straight into the
    /// destination's buffer (no intermediate copy of big values).
    fn push_with(&mut self, dest: usize, commands: u32, write: impl FnOnce(&mut Vec<u8>)) {
        let (buf, n) = &mut self.bufs[dest];
        write(buf);
        *n += commands;
        if buf.len() >= OP_BYTES {
            self.cut(dest);
        }
    }

    /// A command for every master, after what each already has queued.
    fn push_all(&mut self, bytes: &[u8]) {
        for i in 0..self.bufs.len() {
            self.cut(i);
        }
        self.ready.push_back((
            Dest::All,
            Op {
                bytes: Bytes::copy_from_slice(bytes),
                replies: 1,
            },
        ));
    }

    fn cut(&mut self, dest: usize) {
        let (buf, n) = &mut self.bufs[dest];
        if *n == 0 {
            return;
        }
        let op = Op {
            bytes: Bytes::from(std::mem::replace(buf, Vec::with_capacity(OP_BYTES))),
            replies: std::mem::take(n),
        };
        self.ready.push_back((Dest::One(dest), op));
    }

    fn finish(&mut self) {
        for i in 0..self.bufs.len() {
            self.cut(i);
        }
    }

    /// Moves the cut ops to `out`; true if there were any.
    fn hand_out(&mut self, out: &mut VecDeque<(Dest, Op)>) -> bool {
        let any = !self.ready.is_empty();
        out.append(&mut self.ready);
        any
    }
}

/// Appends `RESTORE key ttl <payload> ABSTTL REPLACE`, building the DUMP
/// payload (`type | value | version LE16 | CRC64 LE64`, as `createDumpPayload`
/// in `cluster.c`) in place.
fn encode_restore(
    out: &mut Vec<u8>,
    key: &[u8],
    expire_ms: Option<i64>,
    rdb_type: u8,
    raw: &[u8],
    version: u16,
) {
    use std::io::Write;
    let ttl = expire_ms.unwrap_or(0).to_string();
    let payload_len = 1 + raw.len() + 2 + 8;
    let _ = write!(out, "*6\r\n$7\r\nRESTORE\r\n${}\r\n", key.len());
    out.extend_from_slice(key);
    let _ = write!(out, "\r\n${}\r\n{ttl}\r\n${payload_len}\r\n", ttl.len());
    let start = out.len();
    out.push(rdb_type);
    out.extend_from_slice(raw);
    out.extend_from_slice(&version.to_le_bytes());
    let crc = dcs_rdb::crc64(0, &out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(b"\r\n$6\r\nABSTTL\r\n$7\r\nREPLACE\r\n");
}

/// Cuts each key's value out of the RDB and turns it into RESTORE (or,
/// where the target cannot take the encoding, decoded commands).
struct RdbSlicer<'a, R: Read> {
    reader: RdbReader<R>,
    map: &'a SlotMap,
    cluster: bool,
    t: &'a TargetInfo,
    now: i64,
    max_payload: usize,
    batch: Batcher,
    version: u32,
    flavor: Flavor,
    db: u64,
    cmd: Vec<u8>,
    aof: AofOptions,
    restored: u64,
    decoded: u64,
    expired: u64,
    done: bool,
}

impl<'a, R: Read> RdbSlicer<'a, R> {
    fn new(
        input: R,
        map: &'a SlotMap,
        cluster: bool,
        t: &'a TargetInfo,
        now: i64,
        max_payload: usize,
        batch: Batcher,
    ) -> Self {
        Self {
            reader: RdbReader::new(input, ReadMode::Raw).require_eof_after_trailer(true),
            map,
            cluster,
            t,
            now,
            max_payload,
            batch,
            version: 0,
            flavor: Flavor::Redis,
            db: 0,
            cmd: Vec::with_capacity(1024),
            aof: AofOptions {
                now_ms: Some(now),
                legacy_streams: t.legacy_streams,
                ..AofOptions::default()
            },
            restored: 0,
            decoded: 0,
            expired: 0,
            done: false,
        }
    }

    fn item(&mut self, item: Item) -> Result<(), String> {
        match item {
            Item::Header { magic, version: v } => {
                self.version = v;
                self.flavor = Flavor::of_header(magic, v);
            }
            Item::SelectDb(n) => {
                self.db = n;
                if !self.cluster {
                    self.cmd.clear();
                    encode_command(
                        &mut self.cmd,
                        &[b"SELECT".as_slice(), n.to_string().as_bytes()],
                    );
                    self.batch.push(0, &self.cmd, 1);
                }
            }
            Item::Function { code } if self.t.functions => {
                self.cmd.clear();
                encode_command(
                    &mut self.cmd,
                    &[b"FUNCTION".as_slice(), b"LOAD", b"REPLACE", &code],
                );
                self.batch.push_all(&self.cmd);
            }
            Item::Key(k) => {
                if k.expire_ms.is_some_and(|e| e <= self.now) {
                    self.expired += 1;
                    return Ok(());
                }
                if self.cluster && self.db != 0 {
                    return Err(format!(
                        "key in database {}: a cluster has only database 0",
                        self.db
                    ));
                }
                let (t, flavor, version) = (self.t, self.flavor, self.version);
                let dest = if self.cluster {
                    self.map.node_of(&k.key)
                } else {
                    0
                };
                let raw = k.raw.as_deref().ok_or("reader kept no raw value")?;
                let native = min_rdb_version_for_type(k.rdb_type, flavor)
                    .is_some_and(|min| min <= t.rdb_version && (flavor == t.flavor || min <= 11));
                if native && raw.len() <= self.max_payload {
                    // Stamp the lowest version that describes the encoding
                    // the target knows: its own if the file's is newer.
                    // Valkey refuses the version numbers only Redis used (12–79).
                    let cap = if flavor == t.flavor {
                        t.rdb_version
                    } else {
                        t.rdb_version.min(11)
                    };
                    let stamp = version.min(cap) as u16;
                    self.batch.push_with(dest, 1, |out| {
                        encode_restore(out, &k.key, k.expire_ms, k.rdb_type, raw, stamp)
                    });
                    self.restored += 1;
                } else {
                    let value = decode_value(k.rdb_type, raw, flavor).map_err(|e| e.to_string())?;
                    self.cmd.clear();
                    let n =
                        write_key_commands(&mut self.cmd, &k.key, &value, k.expire_ms, &self.aof)
                            .map_err(|e| e.to_string())?;
                    if n > 0 {
                        self.batch.push(dest, &self.cmd, n as u32);
                    }
                    self.decoded += 1;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl<R: Read> OpSource for RdbSlicer<'_, R> {
    fn step(&mut self) -> Result<bool, String> {
        if self.done {
            return Ok(false);
        }
        match self.reader.next_item().map_err(|e| e.to_string())? {
            Some(item) => self.item(item)?,
            None => {
                self.batch.finish();
                self.done = true;
                tracing::info!(
                    restored = self.restored,
                    decoded = self.decoded,
                    expired = self.expired,
                    "RDB sliced"
                );
            }
        }
        Ok(!self.done)
    }

    fn batch(&mut self) -> &mut Batcher {
        &mut self.batch
    }
}

/// Replays an AOF's commands, routing each by its key in a cluster.
struct AofReplayer<'a, R: Read> {
    input: R,
    map: &'a SlotMap,
    cluster: bool,
    batch: Batcher,
    buf: BytesMut,
    chunk: Vec<u8>,
    done: bool,
}

impl<'a, R: Read> AofReplayer<'a, R> {
    fn new(input: R, map: &'a SlotMap, cluster: bool, batch: Batcher) -> Self {
        Self {
            input,
            map,
            cluster,
            batch,
            buf: BytesMut::with_capacity(1 << 20),
            chunk: vec![0u8; 256 * 1024],
            done: false,
        }
    }

    /// Batches every complete command in the buffer.
    fn drain(&mut self) -> Result<(), String> {
        while let Some((reply, used)) = parse_reply(&self.buf).map_err(|e| e.to_string())? {
            let raw = self.buf.split_to(used);
            let Reply::Array(Some(args)) = reply else {
                return Err("AOF holds a non-command".into());
            };
            let name = args
                .first()
                .and_then(Reply::as_text)
                .unwrap_or_default()
                .to_ascii_uppercase();
            let key = match args.get(1) {
                Some(Reply::Bulk(Some(k))) => Some(k.as_slice()),
                _ => None,
            };
            match name.as_str() {
                "SELECT" if self.cluster => {}
                "SELECT" => self.batch.push(0, &raw, 1),
                "FUNCTION" | "MULTI" | "EXEC" => self.batch.push_all(&raw),
                _ => {
                    let dest = match (self.cluster, key) {
                        (true, Some(k)) => self.map.node_of(k),
                        _ => 0,
                    };
                    self.batch.push(dest, &raw, 1);
                }
            }
        }
        Ok(())
    }
}

impl<R: Read> OpSource for AofReplayer<'_, R> {
    fn step(&mut self) -> Result<bool, String> {
        if self.done {
            return Ok(false);
        }
        let n = self
            .input
            .read(&mut self.chunk)
            .map_err(|e| e.to_string())?;
        if n == 0 {
            if !self.buf.is_empty() {
                return Err("truncated AOF".into());
            }
            self.batch.finish();
            self.done = true;
        } else {
            self.buf.extend_from_slice(&self.chunk[..n]);
            self.drain()?;
        }
        Ok(!self.done)
    }

    fn batch(&mut self) -> &mut Batcher {
        &mut self.batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_rdbs_a_target_loads() {
        let redis7 = TargetInfo {
            rdb_version: 10,
            flavor: Flavor::Redis,
            functions: true,
            legacy_streams: false,
        };
        let redis62 = TargetInfo {
            rdb_version: 9,
            flavor: Flavor::Redis,
            functions: false,
            legacy_streams: true,
        };
        let valkey9 = TargetInfo {
            rdb_version: 80,
            flavor: Flavor::Valkey,
            functions: true,
            legacy_streams: false,
        };
        assert!(loadable(&redis7, "REDIS", 9));
        assert!(loadable(&redis7, "REDIS", 10));
        assert!(!loadable(&redis62, "REDIS", 10));
        assert!(!loadable(&redis7, "VALKEY", 80));
        assert!(loadable(&valkey9, "REDIS", 9));
        assert!(loadable(&valkey9, "VALKEY", 80));
        assert!(!loadable(&valkey9, "REDIS", 12));
    }

    #[test]
    fn restore_commands_carry_dump_payloads() {
        let mut fast = Vec::new();
        encode_restore(&mut fast, b"k\x00ey", Some(1234), 0, b"\x05hello", 10);
        let mut slow = Vec::new();
        let payload = dcs_rdb::dump_payload(0, b"\x05hello", 10);
        encode_command(
            &mut slow,
            &[
                b"RESTORE".as_slice(),
                b"k\x00ey",
                b"1234",
                &payload,
                b"ABSTTL",
                b"REPLACE",
            ],
        );
        assert_eq!(fast, slow);
    }

    #[test]
    fn resp_check_accepts_commands_only() {
        assert!(check_resp(&b"*1\r\n$4\r\nPING\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n"[..]).is_ok());
        assert!(check_resp(&b"*1\r\n$4\r\nPIN"[..]).is_err());
        assert!(check_resp(&b"+OK\r\n"[..]).is_err());
        assert!(check_resp(&b""[..]).is_ok());
    }
}

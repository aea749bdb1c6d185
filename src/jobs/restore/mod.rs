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

mod feed;
mod partial;
pub(crate) mod plan;
mod slice;
pub(crate) mod verify;

pub use partial::Replaced;

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{JobFailure, Jobs, Lease, RecordJob};
use crate::catalog::{ClaimedJob, Lane, RestoreOutcome, Result as CatalogResult};
use crate::model::{
    now_millis, BackupRecord, BackupStatus, CacheMode, Instance, JobError, NodeAddr, RestoreFilter,
    RestoreId, RestoreRecord, RestoreStatus, Topology,
};
use crate::redis::resp::Reply;
use crate::redis::{discover, Conn};
use crate::storage::{BackupLocation, Manifest};

pub use crate::model::RestoreMode;

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

/// A restore job as [`super::run_record`] runs it. A new attempt after a
/// runner died does not restore again: it [`recover`]s the target and
/// records the restore failed.
pub(super) struct RestoreJob;

impl RecordJob for RestoreJob {
    const WHAT: &'static str = "restore";
    type Record = RestoreRecord;
    /// The path the data went in by, and the backup's bytes put in.
    type Done = (String, u64);
    type Outcome = RestoreOutcome;

    async fn load(jobs: &Jobs, job: &ClaimedJob) -> CatalogResult<Option<RestoreRecord>> {
        let id = RestoreId::from_stored(job.record_id.clone());
        jobs.catalog.restore(&id).await
    }

    async fn perform(
        jobs: &Arc<Jobs>,
        job: &ClaimedJob,
        lease: &Lease,
        rec: &RestoreRecord,
    ) -> Result<(String, u64), JobFailure> {
        if job.attempts > 1 {
            recover(jobs, job).await.map(|path| (path, 0))
        } else {
            perform(jobs, job, lease, rec).await
        }
    }

    async fn outcome(
        _: &Jobs,
        _: &RestoreRecord,
        result: Result<(String, u64), JobFailure>,
    ) -> RestoreOutcome {
        match result {
            Ok((path, _)) => {
                tracing::info!(%path, "restore succeeded");
                RestoreOutcome {
                    status: RestoreStatus::Succeed,
                    error: None,
                    path: Some(path),
                    reason: None,
                }
            }
            Err(f) => RestoreOutcome {
                status: RestoreStatus::Failed,
                error: Some(f.code),
                path: None,
                reason: Some(f.detail),
            },
        }
    }

    fn bytes((_, n): &Self::Done) -> (crate::metrics::Direction, u64) {
        (crate::metrics::Direction::Restored, *n)
    }

    async fn record(jobs: &Jobs, job: &ClaimedJob, out: &RestoreOutcome) -> CatalogResult<bool> {
        jobs.catalog
            .finish_restore(job, &jobs.node_id, out, now_millis())
            .await
    }
}

/// A restore whose runner died: free a target left replicating from the
/// service, put back configuration, and report the restore failed.
pub(super) async fn recover(jobs: &Arc<Jobs>, job: &ClaimedJob) -> Result<String, JobFailure> {
    let stored = match job.kind {
        crate::model::JobKind::Verification => {
            jobs.catalog.verification_detail(&job.record_id).await?
        }
        _ => jobs.catalog.restore_detail(&job.record_id).await?,
    };
    let detail: Detail = stored
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
pub(crate) struct Progress {
    pub done: AtomicU64,
    pub total: AtomicU64,
    /// Set at the first write to the target (FLUSHALL, REPLICAOF).
    pub touched: std::sync::atomic::AtomicBool,
    /// Keys sent to the target by slicing.
    pub keys_written: AtomicU64,
}

/// Counts the bytes read into the restore's progress.
pub(crate) struct Counted<R> {
    pub inner: R,
    pub progress: Arc<Progress>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.done.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// One restore under way: what every phase reads.
pub(crate) struct Restore<'a> {
    pub jobs: &'a Arc<Jobs>,
    pub job: &'a ClaimedJob,
    /// Says when the job must stop (lease lost, or its watchdog), and
    /// carries the meter the watchdog reads.
    pub lease: Lease,
    pub target: Instance,
    pub topology: Topology,
    pub manifest: Manifest,
    /// Where the backup's files are in the store.
    pub backup: BackupLocation,
    pub progress: Arc<Progress>,
    /// Only these keys, over their namesakes, nothing flushed.
    pub filter: Option<RestoreFilter>,
}

impl Restore<'_> {
    /// Saves what a crash must undo on the target, in the job's own record
    /// (a restore's, or a test restore's); false if the job is no longer
    /// this runner's.
    pub(crate) async fn save_detail(&self, detail: &str) -> CatalogResult<bool> {
        let (jobs, job) = (self.jobs, self.job);
        match job.kind {
            crate::model::JobKind::Verification => {
                jobs.catalog
                    .set_verification_detail(job, &jobs.node_id, detail)
                    .await
            }
            _ => {
                jobs.catalog
                    .set_restore_detail(job, &jobs.node_id, detail)
                    .await
            }
        }
    }
}

/// The manifest of the backup at `at`; a backup without one cannot be
/// restored.
pub(crate) async fn read_manifest(
    jobs: &Jobs,
    at: &BackupLocation,
) -> Result<Manifest, JobFailure> {
    jobs.store
        .manifest(at.prefix())
        .await
        .map_err(|e| fail(JobError::SizeQuery, format!("manifest: {e}")))?
        .ok_or_else(|| fail(JobError::SizeQuery, "the backup's manifest is missing"))
}

async fn perform(
    jobs: &Arc<Jobs>,
    job: &ClaimedJob,
    lease: &Lease,
    rec: &crate::model::RestoreRecord,
) -> Result<(String, u64), JobFailure> {
    if let Some((source, at)) = jobs.catalog.pitr_restore(rec.id.as_str()).await? {
        return perform_pitr(jobs, job, lease, rec, &source, at).await;
    }
    let backup = jobs
        .catalog
        .backup(&rec.backup_id)
        .await?
        .filter(|b| b.status == BackupStatus::Succeed)
        .ok_or_else(|| fail(JobError::SizeQuery, "the backup is no longer available"))?;
    let at = BackupLocation::of(&backup);
    let manifest = read_manifest(jobs, &at).await?;
    let (progress, _reporter) =
        start_reporting(jobs, job, lease, manifest.total_size() * 2).await?;
    let result = async {
        let facts =
            verify::verify_backup(jobs, &at, &manifest, &progress, rec.filter.as_ref()).await?;
        if lease.lost() {
            return Err(JobFailure::lost());
        }
        let target = jobs
            .catalog
            .instance_any(&rec.instance_id)
            .await?
            .ok_or_else(|| fail(JobError::ToolStart, "the target instance no longer exists"))?;
        let topology = discover(&target.connection, &jobs.redis).await?;
        let r = Restore {
            jobs,
            job,
            lease: lease.share(),
            target,
            topology,
            manifest,
            backup: at,
            progress: Arc::clone(&progress),
            filter: rec.filter.clone(),
        };
        let masters = plan::gather(jobs, &r.target, &r.topology, &facts).await?;
        let input = plan::input(jobs, &r.target, &r.topology, &masters, &facts)
            .with_filter(r.filter.as_ref());
        let plan = plan::decide(&input).map_err(|why| {
            fail(
                JobError::ToolStart,
                format!("refused before any write: {why}"),
            )
        })?;
        for d in &plan.decisions {
            tracing::info!(decision = %d, "restore plan");
        }
        execute(&r, &plan)
            .await
            .map(|path| (path, r.manifest.total_size()))
            .map_err(|f| honest(f, &r.progress, facts.keys))
    }
    .await;
    result
}

/// Marks the restore started and, until the guard is dropped, reports
/// its progress every second: the record's percent and the meter the
/// runner's watchdog reads. Every restore (of a backup, or to an instant)
/// starts through here, so none can run without moving the meter.
async fn start_reporting(
    jobs: &Arc<Jobs>,
    job: &ClaimedJob,
    lease: &Lease,
    total: u64,
) -> Result<(Arc<Progress>, AbortOnDrop), JobFailure> {
    if !jobs
        .catalog
        .start_restore(job, &jobs.node_id, now_millis())
        .await?
    {
        return Err(JobFailure::lost());
    }
    let progress = Arc::new(Progress::default());
    progress.total.store(total, Ordering::Relaxed);
    let reporter = report_progress(jobs, job, lease, &progress, Lane::Restores);
    Ok((progress, reporter))
}

/// Until the guard is dropped, writes `progress` to the job's record
/// every second (restore or test restore) and moves the meter the
/// runner's watchdog reads.
pub(crate) fn report_progress(
    jobs: &Arc<Jobs>,
    job: &ClaimedJob,
    lease: &Lease,
    progress: &Arc<Progress>,
    lane: Lane,
) -> AbortOnDrop {
    let jobs = Arc::clone(jobs);
    let job = job.clone();
    let progress = Arc::clone(progress);
    let meter = lease.meter();
    AbortOnDrop(crate::jobs::spawn_traced(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let done = progress.done.load(Ordering::Relaxed);
            meter.set(done);
            let total = progress.total.load(Ordering::Relaxed).max(1);
            let pct = (done.saturating_mul(10_000) / total).min(9_999) as i64;
            let _ = jobs
                .catalog
                .lane_progress(lane, &job, &jobs.node_id, pct, now_millis())
                .await;
        }
    }))
}

/// Aborts a background task when dropped, however the restore ends (a
/// watchdog dropping the job's future included).
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a dry run found: the plan, or why the restore would not run.
#[derive(Debug)]
pub struct DryRun {
    /// `None` when the restore would be refused.
    pub path: Option<&'static str>,
    /// Why it would be refused, in words.
    pub refusal: Option<String>,
    /// The `dcs.08.000x` code the refusal would record.
    pub error: Option<JobError>,
    pub decisions: Vec<String>,
    pub keys: u64,
    /// Keys and value bytes per database.
    pub databases: Vec<(u64, u64, u64)>,
    pub memory_estimate: u64,
    pub estimated_seconds: f64,
    /// Each master and its facts as the plan saw them.
    pub targets: Vec<(NodeAddr, crate::redis::topology::ServerFacts)>,
    /// Whether a filter chose the keys.
    pub partial: bool,
    /// A partial restore: the keys taken that the target holds now.
    pub replaced: Option<Replaced>,
}

impl DryRun {
    fn refused(f: JobFailure) -> Self {
        Self {
            path: None,
            refusal: Some(f.detail),
            error: Some(f.code),
            decisions: Vec::new(),
            keys: 0,
            databases: Vec::new(),
            memory_estimate: 0,
            estimated_seconds: 0.0,
            targets: Vec::new(),
            partial: false,
            replaced: None,
        }
    }
}

/// Verify and plan a restore of `backup` into `target`, writing nothing
/// anywhere: not to the target, not to the catalog. With a filter, also
/// count the keys it takes that the target holds now.
pub async fn dry_run(
    jobs: &Arc<Jobs>,
    target: &Instance,
    backup: &BackupRecord,
    filter: Option<&RestoreFilter>,
) -> DryRun {
    let mut d = match dry_run_inner(jobs, target, backup, filter).await {
        Ok(d) => d,
        Err(f) => DryRun::refused(f),
    };
    d.partial = filter.is_some();
    d
}

async fn dry_run_inner(
    jobs: &Arc<Jobs>,
    target: &Instance,
    backup: &BackupRecord,
    filter: Option<&RestoreFilter>,
) -> Result<DryRun, JobFailure> {
    let at = BackupLocation::of(backup);
    let manifest = read_manifest(jobs, &at).await?;
    let progress = Arc::new(Progress::default());
    let facts = verify::verify_backup(jobs, &at, &manifest, &progress, filter).await?;
    let topology = discover(&target.connection, &jobs.redis).await?;
    let masters = plan::gather(jobs, target, &topology, &facts).await?;
    let input = plan::input(jobs, target, &topology, &masters, &facts).with_filter(filter);
    let mut out = match plan::decide(&input) {
        Ok(p) => DryRun {
            path: Some(p.path.as_str()),
            refusal: None,
            error: None,
            databases: p
                .keys_per_db
                .iter()
                .map(|(db, n)| (*db, *n, p.bytes_per_db.get(db).copied().unwrap_or(0)))
                .collect(),
            decisions: p.decisions,
            keys: p.keys,
            memory_estimate: p.memory_estimate,
            estimated_seconds: p.estimated_seconds,
            targets: Vec::new(),
            partial: false,
            replaced: None,
        },
        Err(why) => DryRun::refused(fail(JobError::ToolStart, why)),
    };
    if let (Some(f), None) = (filter, &out.refusal) {
        out.replaced =
            Some(partial::count_replaced(jobs, target, &topology, &at, &manifest, f).await?);
    }
    out.targets = masters.into_iter().map(|m| (m.addr, m.server)).collect();
    Ok(out)
}

/// A failure after the first write says what the target holds now.
fn honest(mut f: JobFailure, progress: &Progress, planned: u64) -> JobFailure {
    if progress.touched.load(Ordering::SeqCst) {
        let written = progress.keys_written.load(Ordering::Relaxed);
        let held = if written > 0 {
            format!("{written} of {planned} keys were written")
        } else {
            "it may hold part of the backup or nothing".to_owned()
        };
        f.detail = format!(
            "{}. The target holds a partial dataset ({held}); restoring again is the remedy",
            f.detail
        );
    }
    f
}

/// Execute: the planned path; a feed the target turns down before it is
/// touched falls back to slicing when the mode allows.
pub(crate) async fn execute(r: &Restore<'_>, plan: &plan::Plan) -> Result<String, JobFailure> {
    if plan.path == plan::RestorePath::Feed {
        tracing::info!("restore path: replication feed");
        match feed::feed(r).await {
            Ok(()) => return Ok("replication feed".into()),
            Err(feed::FeedError::NotPossible(why))
                if r.jobs.settings.restore_mode == RestoreMode::Auto =>
            {
                tracing::info!(reason = %why, "restore path: slicing, the feed was not possible");
            }
            Err(feed::FeedError::NotPossible(why)) => {
                return Err(sync_failure(format!("feed not possible: {why}")))
            }
            Err(feed::FeedError::Failed(f)) => return Err(f),
        }
    }
    if plan.path == plan::RestorePath::Slice {
        tracing::info!("restore path: slicing");
    }
    slice::slice(r, &plan.target).await?;
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

/// A restore to an instant: the bases a point-in-time pick chose, loaded
/// as any backup is (verify, plan, feed or slicing), then every shard's
/// log replayed up to the instant, shards in parallel. Every base file and
/// every segment is verified, and the shards matched to the target's,
/// before the first write.
async fn perform_pitr(
    jobs: &Arc<Jobs>,
    job: &ClaimedJob,
    lease: &Lease,
    rec: &RestoreRecord,
    source: &crate::model::InstanceId,
    at: crate::model::Millis,
) -> Result<(String, u64), JobFailure> {
    use crate::pitr::replay;
    let picks = replay::pick(jobs, source, at).await.map_err(|e| match e {
        replay::PickError::Outside => fail(
            JobError::ToolStart,
            "refused before any write: the time is outside every restorable period",
        ),
        replay::PickError::Catalog(e) => JobFailure::from(e),
    })?;
    // A newer base may have come since the API's pick: every backup this
    // one reads is guarded against deletion before its files are read.
    jobs.catalog
        .add_pitr_restore_bases(rec.id.as_str(), &replay::backups_read(&picks))
        .await?;
    // One manifest over every shard's base, each file named from the
    // instance's directory: a capture base lives under `pitr/bases/<id>/`,
    // a backup serving as one under `<backup_id>/`.
    let at_loc = BackupLocation::instance_root(rec.project_id.as_str(), source.as_str());
    let mut files = Vec::new();
    let mut cache_mode = "single".to_owned();
    let mut format = "rdb".to_owned();
    for p in &picks {
        let m: Manifest = serde_json::from_str(&p.base.manifest)
            .map_err(|e| fail(JobError::SizeQuery, format!("base manifest: {e}")))?;
        let dir = p.base.prefix.strip_prefix(at_loc.prefix()).ok_or_else(|| {
            fail(
                JobError::SizeQuery,
                format!("base {} lies outside the instance's directory", p.base.id),
            )
        })?;
        cache_mode = m.cache_mode.clone();
        format = m.format.clone();
        for mut f in m.files {
            f.name = format!("{dir}{}", f.name);
            files.push(f);
        }
    }
    tracing::info!(
        bases = %picks.iter().map(|p| format!("{}{}", if p.base.from_backup { "backup " } else { "" }, p.base.id)).collect::<Vec<_>>().join(", "),
        "pitr restore: bases chosen"
    );
    let manifest = Manifest {
        manifest_version: 2,
        backup_id: rec.backup_id.to_string(),
        instance_id: source.to_string(),
        project_id: rec.project_id.to_string(),
        format,
        cache_mode,
        engine: String::new(),
        server_version: String::new(),
        started_at: at,
        completed_at: at,
        files,
    };
    let (progress, _reporter) =
        start_reporting(jobs, job, lease, manifest.total_size() * 2).await?;
    let facts = verify::verify_backup(jobs, &at_loc, &manifest, &progress, None).await?;
    let log = replay::verify(jobs, &picks, at).await?;
    // The replay moves the figure (and the watchdog's meter) too.
    progress.total.fetch_add(log.bytes, Ordering::Relaxed);
    tracing::info!(
        commands = log.commands,
        shards = picks.len(),
        "pitr restore: base and log verified"
    );
    if lease.lost() {
        return Err(JobFailure::lost());
    }
    let target = jobs
        .catalog
        .instance_any(&rec.instance_id)
        .await?
        .ok_or_else(|| fail(JobError::ToolStart, "the target instance no longer exists"))?;
    let topology = discover(&target.connection, &jobs.redis).await?;
    // Each shard's log goes to the target master holding the same slots.
    let mut nodes = Vec::with_capacity(picks.len());
    for p in &picks {
        let node = topology
            .shards
            .iter()
            .find(|s| crate::pitr::capture::shard_key(&topology, &s.slots) == p.shard)
            .map(|s| s.master.clone())
            .ok_or_else(|| {
                fail(
                    JobError::ToolStart,
                    format!(
                        "refused before any write: the target has no shard matching {} of the source",
                        p.shard
                    ),
                )
            })?;
        nodes.push(node);
    }
    if nodes.len() != topology.shards.len() {
        return Err(fail(
            JobError::ToolStart,
            "refused before any write: the target's shards differ from the source's",
        ));
    }
    // Every command the log holds must exist in the target under its name
    // (`COMMAND INFO`, as the plan asks for a backup's commands).
    let names: Vec<&str> = log.names.iter().map(String::as_str).collect();
    for node in &nodes {
        let mut c = Conn::open(&target.connection, &node.host, node.port, &jobs.redis).await?;
        if let Some(missing) = crate::redis::topology::missing_commands(&mut c, &names).await? {
            if !missing.is_empty() {
                return Err(fail(
                    JobError::ToolStart,
                    format!(
                        "refused before any write: the log holds commands {node} does not know: {}",
                        missing.join(", ")
                    ),
                ));
            }
        }
    }
    let r = Restore {
        jobs,
        job,
        lease: lease.share(),
        target,
        topology,
        manifest,
        backup: at_loc,
        progress: Arc::clone(&progress),
        filter: None,
    };
    let masters = plan::gather(jobs, &r.target, &r.topology, &facts).await?;
    let input = plan::input(jobs, &r.target, &r.topology, &masters, &facts);
    let plan = plan::decide(&input).map_err(|why| {
        fail(
            JobError::ToolStart,
            format!("refused before any write: {why}"),
        )
    })?;
    for d in &plan.decisions {
        tracing::info!(decision = %d, "restore plan");
    }
    let path = execute(&r, &plan)
        .await
        .map_err(|f| honest(f, &r.progress, facts.keys))?;
    let replays = picks
        .iter()
        .zip(&nodes)
        .map(|(p, node)| replay::replay(jobs, &r.target.connection, node, p, at, &r.progress));
    let sent: u64 = futures::future::try_join_all(replays)
        .await
        .map_err(|f| honest(f, &r.progress, facts.keys))?
        .into_iter()
        .sum();
    tracing::info!(commands = sent, "pitr restore: log replayed");
    Ok((format!("{path} + log replay"), r.manifest.total_size()))
}

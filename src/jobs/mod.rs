//! The job runner: takes backup and restore jobs from the catalog and
//! performs them with `redis` and `storage`, writing progress back.
//!
//! Several `serve` replicas may share one catalog: each claims jobs under
//! its own node id with a lease it renews while it works. A runner that
//! loses its lease stops writing (every record update checks ownership).
//! A job claimed again after its runner died starts over from a clean slate.

pub(crate) mod backup;
pub mod pipe;
pub mod restore;
pub mod sandbox;
pub mod scheduler;
pub mod verification;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify, Semaphore};
use tracing::Instrument;

use crate::catalog::{Catalog, ClaimedJob};
use crate::clock::{Clock, SystemClock};
use crate::model::{now_millis, BackupRecord, BackupStatus, JobError, JobKind, Millis};
use crate::redis::feed::FeedServer;
use crate::redis::{ConnectOptions, RedisError};
use crate::storage::{StorageError, Store};

/// How long a claim lasts without renewal.
const LEASE: Duration = Duration::from_secs(30);
const RENEW_EVERY: Duration = Duration::from_secs(10);
const IDLE_POLL: Duration = Duration::from_millis(500);
/// A job is tried this many times (its runner dying counts) before it fails.
pub const MAX_ATTEMPTS: i64 = 3;
/// Jobs one node runs at once.
const CONCURRENCY: usize = 4;
/// How long a job stopped by its watchdog may take to wind down (free a
/// restore target, close its files) before its task is dropped.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// Why a job failed, with the `dcs.08.000x` code it records.
#[derive(Debug)]
pub struct JobFailure {
    pub code: JobError,
    pub detail: String,
}

impl JobFailure {
    pub fn new(code: JobError, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }

    /// The runner lost its lease: someone else owns the job now.
    pub(crate) fn lost() -> Self {
        Self::new(JobError::Timeout, "lease lost")
    }
}

impl From<RedisError> for JobFailure {
    fn from(e: RedisError) -> Self {
        let code = match e {
            RedisError::Timeout(_) => JobError::Timeout,
            _ => JobError::ToolStart,
        };
        Self::new(code, e.to_string())
    }
}

impl From<StorageError> for JobFailure {
    fn from(e: StorageError) -> Self {
        Self::new(JobError::Storage, e.to_string())
    }
}

impl From<crate::catalog::CatalogError> for JobFailure {
    fn from(e: crate::catalog::CatalogError) -> Self {
        Self::new(JobError::ToolStart, format!("catalog: {e}"))
    }
}

/// One kind of job as [`run_record`] runs it: how its record is read, the
/// work, and the outcome a result becomes.
pub(crate) trait RecordJob {
    /// `backup` or `restore`, for the log.
    const WHAT: &'static str;
    type Record: Send + Sync;
    type Done: Send;
    type Outcome: Send + Sync;

    /// The job's record; `None` if it is gone.
    fn load(
        jobs: &Jobs,
        job: &ClaimedJob,
    ) -> impl Future<Output = crate::catalog::Result<Option<Self::Record>>> + Send;

    fn perform(
        jobs: &Arc<Jobs>,
        job: &ClaimedJob,
        lease: &Lease,
        rec: &Self::Record,
    ) -> impl Future<Output = Result<Self::Done, JobFailure>> + Send;

    /// The outcome to record; never asked for a failure after the lease
    /// was lost.
    fn outcome(
        jobs: &Jobs,
        rec: &Self::Record,
        result: Result<Self::Done, JobFailure>,
    ) -> impl Future<Output = Self::Outcome> + Send;

    /// The bytes a succeeded job moved, for `dcs_backup_bytes_total`.
    fn bytes(done: &Self::Done) -> (crate::metrics::Direction, u64);

    /// Writes the outcome and releases the job; false if no longer ours.
    fn record(
        jobs: &Jobs,
        job: &ClaimedJob,
        out: &Self::Outcome,
    ) -> impl Future<Output = crate::catalog::Result<bool>> + Send;
}

/// What a run recorded, for the metrics: whether the job succeeded, and
/// the bytes it moved.
pub(crate) struct Recorded {
    succeeded: bool,
    bytes: Option<(crate::metrics::Direction, u64)>,
}

/// The shape every job run shares: read the record (a job whose record is
/// gone is dropped), perform, turn the result into an outcome and record
/// it, unless the lease was lost: then the job's new owner records it.
/// Returns what it recorded, if it did.
async fn run_record<K: RecordJob>(
    jobs: &Arc<Jobs>,
    job: &ClaimedJob,
    lease: &Lease,
) -> Option<Recorded> {
    let rec = match K::load(jobs, job).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            tracing::warn!("{} record missing; dropping the job", K::WHAT);
            let _ = jobs
                .catalog
                .finish_job(&job.id, &jobs.node_id, now_millis())
                .await;
            return None;
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read the {} record", K::WHAT);
            return None;
        }
    };
    let result = K::perform(jobs, job, lease, &rec).await;
    if let Err(f) = &result {
        tracing::warn!(code = f.code.code(), detail = %f.detail, "{} failed", K::WHAT);
        if lease.lost() {
            return None;
        }
    }
    let recorded = Recorded {
        succeeded: result.is_ok(),
        bytes: result.as_ref().ok().map(K::bytes),
    };
    let outcome = K::outcome(jobs, &rec, result).await;
    match K::record(jobs, job, &outcome).await {
        Ok(true) => return Some(recorded),
        Ok(false) => tracing::warn!("job no longer ours; its new owner records the outcome"),
        Err(e) => {
            tracing::error!(error = %e, "cannot record the {}'s end; it will be retried", K::WHAT)
        }
    }
    None
}

/// Why a backup could not be retired.
#[derive(Debug, thiserror::Error)]
pub enum RetireError {
    /// Its files could not be removed; the record was left as it was.
    #[error("cannot delete the backup's files: {0}")]
    Files(#[source] StorageError),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
}

/// Retires a finished backup, for a deletion and for an expiry alike:
/// removes the files under its prefix, then moves its record to `status`
/// (`deleted` or `expired`). The record changes only once the files are
/// gone, so a failure leaves it to be retired again. `Ok(false)`: the record
/// was not in a final state.
pub async fn retire_backup(
    jobs: &Jobs,
    rec: &BackupRecord,
    status: BackupStatus,
    now: Millis,
) -> Result<bool, RetireError> {
    let at = crate::storage::BackupLocation::of(rec);
    jobs.store
        .delete_prefix(at.prefix())
        .await
        .map_err(RetireError::Files)?;
    Ok(jobs.catalog.retire_backup(&rec.id, status, now).await?)
}

/// Tunables of the job runner.
#[derive(Clone, Debug)]
pub struct JobSettings {
    pub restore_mode: restore::RestoreMode,
    /// Values whose serialized size exceeds this are restored as commands.
    pub restore_max_payload: usize,
    /// Where the scheduler and expiry read the time.
    pub clock: Arc<dyn Clock>,
    /// How often the scheduler looks at the plan.
    pub scheduler_interval: Duration,
    // --- bounds on jobs (issue 13: fair and bounded jobs, untrusted masters)
    /// Jobs of one project running at once, across every replica sharing
    /// the catalog (`--max-jobs-per-project`).
    pub max_jobs_per_project: u32,
    /// A job running longer than this fails with dcs.08.0002 (`--job-deadline`).
    pub job_deadline: Duration,
    /// Bytes per second a job must move, averaged over `rate_window`, once
    /// `rate_grace` has passed (`--min-rate`; 0 turns the check off).
    pub min_rate: u64,
    pub rate_window: Duration,
    pub rate_grace: Duration,
    /// Longest RDB string a master may declare (`--max-rdb-string`).
    pub max_rdb_string: u64,
    /// Largest backup, in snapshot bytes received (`--max-backup-size`).
    pub max_backup_size: Option<u64>,
    // --- test restores (issue 17)
    /// Server binaries scratch sandboxes are started from, probed at start-up.
    pub sandbox_servers: Vec<sandbox::SandboxServer>,
    /// `maxmemory` of a scratch sandbox, and the largest dataset one takes
    /// (`--sandbox-max-memory`).
    pub sandbox_max_memory: u64,
    /// Where scratch sandboxes get their directories (`DATA_DIR/sandboxes`).
    pub sandbox_root: std::path::PathBuf,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            restore_mode: restore::RestoreMode::Auto,
            restore_max_payload: 64 * 1024 * 1024,
            clock: Arc::new(SystemClock),
            scheduler_interval: Duration::from_secs(5),
            max_jobs_per_project: 2,
            job_deadline: Duration::from_secs(6 * 3600),
            min_rate: 16 * 1024,
            rate_window: Duration::from_secs(60),
            rate_grace: Duration::from_secs(120),
            max_rdb_string: dcs_rdb::DEFAULT_MAX_STRING,
            max_backup_size: None,
            sandbox_servers: Vec::new(),
            sandbox_max_memory: 1 << 30,
            sandbox_root: std::env::temp_dir().join("dcs-backup-sandboxes"),
        }
    }
}

/// Everything a job needs.
#[derive(Debug)]
pub struct Jobs {
    pub catalog: Catalog,
    pub store: Store,
    pub redis: ConnectOptions,
    /// This node's identity in job leases; stable across restarts.
    pub node_id: String,
    pub settings: JobSettings,
    /// The replication listener restores feed targets from.
    pub feed: Option<Arc<FeedServer>>,
    /// Turned true to stop the runner and the replication listener.
    pub shutdown: watch::Sender<bool>,
    /// What this process counts for `/metrics`.
    pub metrics: crate::metrics::Metrics,
    wake: Notify,
    slots: Arc<Semaphore>,
}

impl Jobs {
    pub fn new(
        catalog: Catalog,
        store: Store,
        redis: ConnectOptions,
        node_id: String,
        settings: JobSettings,
        feed: Option<Arc<FeedServer>>,
        shutdown: watch::Sender<bool>,
    ) -> Self {
        Self {
            catalog,
            store,
            redis,
            node_id,
            settings,
            feed,
            shutdown,
            metrics: crate::metrics::Metrics::default(),
            wake: Notify::new(),
            slots: Arc::new(Semaphore::new(CONCURRENCY)),
        }
    }

    /// Tells the runner a job was queued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Claims and runs jobs until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(node = %self.node_id, "job runner started");
        // Scratch sandboxes an earlier life of this node left behind.
        let root = self.settings.sandbox_root.clone();
        if let Ok(n) = tokio::task::spawn_blocking(move || sandbox::sweep(&root)).await {
            if n > 0 {
                tracing::warn!(n, "removed scratch sandboxes an earlier run left behind");
            }
        }
        match self.catalog.expire_leases_of(&self.node_id).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(n, "taking up jobs this node was running when it stopped"),
            Err(e) => tracing::warn!(error = %e, "cannot release this node's old leases"),
        }
        let scheduler = tokio::spawn(Arc::clone(&self).scheduler_loop(shutdown.clone()));
        if let Ok(n) = self.catalog.sweep_held_jobs(now_millis() - 60_000).await {
            if n > 0 {
                tracing::warn!(
                    n,
                    "settled jobs an earlier crash left between their two inserts"
                );
            }
        }
        loop {
            if *shutdown.borrow() {
                break;
            }
            let permit = tokio::select! {
                p = Arc::clone(&self.slots).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = shutdown.changed() => break,
            };
            let now = now_millis();
            match self
                .catalog
                .claim_job(
                    &self.node_id,
                    now,
                    now + LEASE.as_millis() as i64,
                    self.settings.max_jobs_per_project,
                )
                .await
            {
                Ok(Some(job)) => {
                    let me = Arc::clone(&self);
                    tokio::spawn(async move {
                        me.run_job(job).await;
                        drop(permit);
                    });
                }
                Ok(None) => {
                    drop(permit);
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = shutdown.changed() => break,
                    }
                }
                Err(e) => {
                    drop(permit);
                    tracing::warn!(error = %e, "cannot claim jobs; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        scheduler.abort();
        tracing::info!("job runner stopped");
    }

    /// Runs the scheduler every `scheduler_interval` until shutdown.
    async fn scheduler_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut first = true;
        loop {
            let now = self.settings.clock.now();
            if let Err(e) = self.schedule_tick(now, first).await {
                tracing::warn!(error = %e, "scheduler pass failed; retrying");
            } else {
                first = false;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.scheduler_interval) => {}
                _ = shutdown.changed() => break,
            }
        }
    }

    #[tracing::instrument(skip_all, fields(job_id = %job.id, kind = %job.kind, record_id = %job.record_id, instance_id = %job.instance_id, attempt = job.attempts))]
    async fn run_job(self: &Arc<Self>, job: ClaimedJob) {
        let started = Instant::now();
        let _running = self.metrics.running(job.kind);
        let lease = Lease::start(Arc::clone(self), job.clone());
        if job.attempts > 1 {
            tracing::warn!("job taken up again after its runner stopped");
        }
        // The job runs in a task of its own so that a panic in it is caught
        // here and recorded, never leaving the record waiting forever.
        let me = Arc::clone(self);
        let claimed = job.clone();
        let shared = lease.share();
        let mut task = spawn_traced(async move {
            match claimed.kind {
                JobKind::Backup => run_record::<backup::BackupJob>(&me, &claimed, &shared).await,
                JobKind::Restore => run_record::<restore::RestoreJob>(&me, &claimed, &shared).await,
                JobKind::Verification => {
                    run_record::<verification::VerificationJob>(&me, &claimed, &shared).await
                }
            }
        });
        // The watchdog: a job past its deadline or moving too few bytes is
        // told to stop (it sees `lease.lost()` and ends without recording
        // anything), then recorded here as timed out.
        let watchdog = watchdog(&self.settings, lease.meter());
        tokio::pin!(watchdog);
        let (outcome, timed_out) = tokio::select! {
            r = &mut task => (r, None),
            why = &mut watchdog => {
                tracing::warn!(reason = %why, "stopping the job");
                lease.stop.store(true, Ordering::SeqCst);
                match tokio::time::timeout(STOP_GRACE, &mut task).await {
                    Ok(r) => (r, Some((why, false))),
                    Err(_) => {
                        tracing::warn!("the job did not stop in time; dropping it");
                        task.abort();
                        ((&mut task).await, Some((why, true)))
                    }
                }
            }
        };
        let recorded = match (outcome, timed_out) {
            (_, Some((why, dropped))) => {
                self.fail_timed_out(&job, &why, dropped)
                    .await
                    .then_some(Recorded {
                        succeeded: false,
                        bytes: None,
                    })
            }
            (Err(e), None) if !e.is_cancelled() => {
                tracing::error!(error = %e, "job crashed; recording it as failed");
                self.fail_crashed(&job, &e.to_string())
                    .await
                    .then_some(Recorded {
                        succeeded: false,
                        bytes: None,
                    })
            }
            (Ok(recorded), None) => recorded,
            _ => None,
        };
        drop(lease);
        if let Some(r) = recorded {
            self.metrics
                .job_finished(job.kind, r.succeeded, started.elapsed());
            if let Some((direction, n)) = r.bytes {
                self.metrics.bytes(direction, n);
            }
        }
    }

    /// Records a job its watchdog stopped as failed with dcs.08.0002 and
    /// frees its slot; a backup's files are removed, and a restore whose
    /// task had to be dropped gets the crash clean-up (a target left
    /// replicating from the service is released, its configuration put
    /// back), so dropping its future never leaves the target ours. True
    /// if it recorded the failure.
    async fn fail_timed_out(self: &Arc<Self>, job: &ClaimedJob, why: &str, dropped: bool) -> bool {
        // Still ours and unfinished? (The job may have ended on its own
        // just as the watchdog fired; then its outcome stands.)
        let until = now_millis() + LEASE.as_millis() as i64;
        match self
            .catalog
            .renew_lease(&job.id, &self.node_id, until)
            .await
        {
            Ok(true) => {}
            Ok(false) => return false,
            Err(e) => {
                tracing::error!(error = %e, "cannot record the timed-out job");
                return false;
            }
        }
        let now = now_millis();
        let res = match job.kind {
            JobKind::Backup => {
                if let Ok(Some(rec)) = self.catalog.backup_of_job(job).await {
                    let at = crate::storage::BackupLocation::of(&rec);
                    if let Err(e) = self.store.delete_prefix(at.prefix()).await {
                        tracing::warn!(error = %e, "cannot remove the timed-out backup's files");
                    }
                }
                let out = crate::catalog::BackupOutcome {
                    status: crate::model::BackupStatus::Failed,
                    size: 0,
                    error: Some(JobError::Timeout),
                    manifest: None,
                };
                self.catalog
                    .finish_backup(job, &self.node_id, &out, now)
                    .await
            }
            JobKind::Restore => {
                if dropped {
                    let _ = restore::recover(self, job).await;
                }
                let out = crate::catalog::RestoreOutcome {
                    status: crate::model::RestoreStatus::Failed,
                    error: Some(JobError::Timeout),
                    path: None,
                    reason: Some(why.to_owned()),
                };
                self.catalog
                    .finish_restore(job, &self.node_id, &out, now_millis())
                    .await
            }
            JobKind::Verification => {
                // A scratch sandbox went with the dropped task (its guard
                // kills it); an adopted one is given back.
                if dropped {
                    let _ = restore::recover(self, job).await;
                }
                let out = verification::stopped(why, JobError::Timeout);
                self.record_verification(job, &out, now).await
            }
        };
        match res {
            Ok(recorded) => recorded,
            Err(e) => {
                tracing::error!(error = %e, "cannot record the timed-out job");
                false
            }
        }
    }

    /// Records a job whose task panicked as failed and releases it; true
    /// if it recorded the failure.
    async fn fail_crashed(&self, job: &ClaimedJob, why: &str) -> bool {
        let now = now_millis();
        let res = match job.kind {
            JobKind::Backup => {
                let out = crate::catalog::BackupOutcome {
                    status: crate::model::BackupStatus::Failed,
                    size: 0,
                    error: Some(JobError::ToolStart),
                    manifest: None,
                };
                if let Ok(Some(rec)) = self.catalog.backup_of_job(job).await {
                    let at = crate::storage::BackupLocation::of(&rec);
                    let _ = self.store.delete_prefix(at.prefix()).await;
                }
                self.catalog
                    .finish_backup(job, &self.node_id, &out, now)
                    .await
            }
            JobKind::Restore => {
                let out = crate::catalog::RestoreOutcome {
                    status: crate::model::RestoreStatus::Failed,
                    error: Some(JobError::ToolStart),
                    path: None,
                    reason: Some(format!("internal error: {why}")),
                };
                self.catalog
                    .finish_restore(job, &self.node_id, &out, now)
                    .await
            }
            JobKind::Verification => {
                let out =
                    verification::stopped(&format!("internal error: {why}"), JobError::ToolStart);
                self.record_verification(job, &out, now).await
            }
        };
        match res {
            Ok(recorded) => recorded,
            Err(e) => {
                tracing::error!(error = %e, "cannot record the crashed job");
                false
            }
        }
    }
}

impl Jobs {
    async fn record_verification(
        &self,
        job: &ClaimedJob,
        out: &crate::catalog::VerificationOutcome,
        now: Millis,
    ) -> crate::catalog::Result<bool> {
        let done = self
            .catalog
            .finish_verification(job, &self.node_id, out, now)
            .await?;
        if done {
            if let Some(s) = out.status {
                self.metrics.verification(s);
            }
        }
        Ok(done)
    }
}

/// Waits until a job must stop and says why: it ran past
/// `job_deadline`, or, after `rate_grace`, moved fewer than `min_rate`
/// bytes per second over the last `rate_window` in which it was not
/// waiting on a peer (see [`Meter`]).
async fn watchdog(settings: &JobSettings, meter: Arc<Meter>) -> String {
    let start = Instant::now();
    let step = (settings.rate_window / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut samples: std::collections::VecDeque<(Instant, u64)> = Default::default();
    loop {
        tokio::time::sleep(step).await;
        let now = Instant::now();
        let bytes = meter.moved();
        if now - start >= settings.job_deadline {
            return format!(
                "the job ran longer than its deadline of {} s (--job-deadline)",
                settings.job_deadline.as_secs()
            );
        }
        if meter.is_waiting() {
            // A master forking its snapshot sends nothing for a while:
            // the window starts again once it sends.
            samples.clear();
            continue;
        }
        samples.push_back((now, bytes));
        // Keep the newest sample at least one window old as the base.
        while samples.len() > 1 && now - samples[1].0 >= settings.rate_window {
            samples.pop_front();
        }
        if settings.min_rate == 0 || now - start < settings.rate_grace {
            continue;
        }
        let Some(&(then, base)) = samples.front() else {
            continue;
        };
        let span = now - then;
        if span < settings.rate_window {
            continue;
        }
        let want = settings.min_rate as f64 * span.as_secs_f64();
        let got = bytes.saturating_sub(base);
        if (got as f64) < want {
            return format!(
                "the job moved {got} bytes in the last {} s, below the minimum rate of {} bytes/s (--min-rate)",
                span.as_secs(),
                settings.min_rate
            );
        }
    }
}

/// Renews a job's lease in the background; [`Lease::lost`] turns true if
/// another node took the job over, or the job's watchdog stopped it.
pub struct Lease {
    lost: Arc<AtomicBool>,
    /// Set by the watchdog: the job must stop; the runner records why.
    stop: Arc<AtomicBool>,
    /// What the job tells its watchdog.
    meter: Arc<Meter>,
    /// The renewal task; aborted when the lease is dropped, however the
    /// job ended (a panic included).
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// `tokio::spawn` in the caller's span: what a job's tasks log carries the
/// job's and the instance's ids (fields of `run_job`'s span), in text and
/// JSON logs alike.
pub(crate) fn spawn_traced<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(fut.in_current_span())
}

impl Lease {
    fn start(jobs: Arc<Jobs>, job: ClaimedJob) -> Self {
        let lost = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&lost);
        let task = spawn_traced(async move {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                let until = now_millis() + LEASE.as_millis() as i64;
                match jobs
                    .catalog
                    .renew_lease(&job.id, &jobs.node_id, until)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(job = %job.id, "lease lost; stopping");
                        flag.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(e) => tracing::warn!(job = %job.id, error = %e, "cannot renew lease"),
                }
            }
        });
        Self {
            lost,
            stop: Arc::new(AtomicBool::new(false)),
            meter: Arc::default(),
            task: Some(task),
        }
    }

    /// The same flags and counter, for the job's own task (no renewal).
    pub(crate) fn share(&self) -> Lease {
        Lease {
            lost: Arc::clone(&self.lost),
            stop: Arc::clone(&self.stop),
            meter: Arc::clone(&self.meter),
            task: None,
        }
    }

    /// True when the job must stop without recording an outcome: another
    /// node owns it, or its watchdog stopped it (the runner records that).
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst) || self.stop.load(Ordering::SeqCst)
    }

    /// The job's meter, which it keeps up to date as it works.
    pub fn meter(&self) -> Arc<Meter> {
        Arc::clone(&self.meter)
    }
}

/// What a job tells its watchdog: the bytes it moved so far (snapshot
/// bytes received; backup bytes read and sent by a restore), and how many
/// of its parts are waiting on a peer that is preparing (a master forking
/// its snapshot), while which the rate is not measured. The deadline
/// always is, so a peer that keeps a job waiting for ever still ends.
#[derive(Debug, Default)]
pub struct Meter {
    moved: AtomicU64,
    waiting: AtomicUsize,
}

impl Meter {
    /// Adds `n` bytes; returns the new total.
    pub fn add(&self, n: u64) -> u64 {
        self.moved.fetch_add(n, Ordering::Relaxed) + n
    }

    /// Sets the total (for jobs that count elsewhere).
    pub fn set(&self, n: u64) {
        self.moved.store(n, Ordering::Relaxed);
    }

    pub fn moved(&self) -> u64 {
        self.moved.load(Ordering::Relaxed)
    }

    /// Marks a part of the job as waiting on its peer until the guard drops.
    pub fn waiting(self: &Arc<Self>) -> WaitGuard {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        WaitGuard(Arc::clone(self))
    }

    fn is_waiting(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }
}

/// See [`Meter::waiting`].
pub struct WaitGuard(Arc<Meter>);

impl Drop for WaitGuard {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

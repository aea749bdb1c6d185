//! Test restores: a backup loaded into a sandbox through the restore
//! pipeline (verify → plan → execute, the same code a restore runs), then
//! checked against the manifest and the backup's own content.
//!
//! Invariant: a test restore never writes to the instance the backup came
//! from. Its target is a scratch server this service started, or an
//! adopted instance marked as a sandbox (never one with a backup policy or
//! a backup of its own, see `Catalog::set_sandbox`).
//!
//! The checks:
//! - key counts per database (the sandbox's `INFO keyspace`) and per type
//!   (`SCAN … TYPE` in databases that hold several types) against the
//!   manifest, allowing for keys whose expiry passes before the check
//!   (counted while the backup is read for the sample): a master does not
//!   load such keys and expires them as it goes, so the sandbox holds
//!   between the manifest's count less those keys and the manifest's count;
//! - a random sample of keys (reservoir sampling while the RDB is read
//!   again, concurrently with the load), each compared type for type,
//!   value for value and expiry for expiry with the value decoded from the
//!   file. An AOF backup is not sampled: it holds commands, not values,
//!   and rebuilding values from them would be a second server; its counts
//!   and digest are still checked;
//! - `DEBUG DIGEST`, recorded where the sandbox allows it.
//!
//! Outcomes: `failed` only when the backup itself is at fault (a file that
//! does not match its manifest, a value the sandbox refused, a count or a
//! sampled key that differs); anything that kept the backup from being
//! tested (no server loads it, it is too big for the sandbox, the sandbox
//! would not start) is `skipped` with the reason, and says nothing against
//! the backup.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::restore::{self, plan, verify, Progress, Restore};
use super::sandbox::{self, Scratch};
use super::{JobFailure, Jobs, Lease, RecordJob};
use crate::catalog::{ClaimedJob, Lane, Result as CatalogResult, VerificationOutcome};
use crate::model::{
    now_millis, BackupStatus, Instance, JobError, VerificationId, VerificationRecord,
    VerificationStatus,
};
use crate::redis::discover;
use crate::storage::{BackupLocation, Manifest};

mod checks;
use checks::{check, sample_backup};

/// Most mismatches a record names.
const NAMED_MISMATCHES: usize = 10;
/// A sampled value larger than this is compared by its length only (the
/// service reads control replies up to 4 MiB).
const FULL_COMPARE_BYTES: u64 = 1024 * 1024;
/// Largest dataset (keys) whose `DEBUG DIGEST` is taken.
const DIGEST_MAX_KEYS: u64 = 1_000_000;
/// Largest sample a request may ask for.
pub const MAX_SAMPLE: u64 = 100_000;
/// The sample when none is asked for.
pub const DEFAULT_SAMPLE: u64 = 1_000;

pub(super) struct VerificationJob;

impl RecordJob for VerificationJob {
    const WHAT: &'static str = "test restore";
    type Record = VerificationRecord;
    type Done = VerificationOutcome;
    type Outcome = VerificationOutcome;

    async fn load(jobs: &Jobs, job: &ClaimedJob) -> CatalogResult<Option<VerificationRecord>> {
        jobs.catalog
            .verification(&VerificationId::from_stored(job.record_id.clone()))
            .await
    }

    async fn perform(
        jobs: &Arc<Jobs>,
        job: &ClaimedJob,
        lease: &Lease,
        rec: &VerificationRecord,
    ) -> Result<VerificationOutcome, JobFailure> {
        if job.attempts > 1 {
            // A scratch sandbox of the earlier attempt died with its
            // process (or is killed by its node's next start); an adopted
            // one is given back.
            if rec.sandbox != "scratch" {
                let _ = restore::recover(jobs, job).await;
            }
            return Err(JobFailure::new(
                JobError::RestoreSync,
                "the service stopped during the test restore",
            ));
        }
        perform(jobs, job, lease, rec).await
    }

    async fn outcome(
        _: &Jobs,
        _: &VerificationRecord,
        result: Result<VerificationOutcome, JobFailure>,
    ) -> VerificationOutcome {
        match result {
            Ok(o) => o,
            Err(f) => skipped(f.code, format!("not tested: {}", f.detail)),
        }
    }

    fn bytes(_: &VerificationOutcome) -> (crate::metrics::Direction, u64) {
        (crate::metrics::Direction::Restored, 0)
    }

    async fn record(
        jobs: &Jobs,
        job: &ClaimedJob,
        out: &VerificationOutcome,
    ) -> CatalogResult<bool> {
        let done = jobs
            .catalog
            .finish_verification(job, &jobs.node_id, out, now_millis())
            .await?;
        if done {
            let status = out.status.unwrap_or(VerificationStatus::Skipped);
            jobs.metrics.verification(status);
            tracing::info!(status = %status, reason = out.reason.as_deref().unwrap_or(""), "test restore recorded");
        }
        Ok(done)
    }
}

fn skipped(code: JobError, reason: String) -> VerificationOutcome {
    VerificationOutcome {
        status: Some(VerificationStatus::Skipped),
        error: Some(code),
        reason: Some(reason),
        ..Default::default()
    }
}

fn failed(f: JobFailure) -> VerificationOutcome {
    VerificationOutcome {
        status: Some(VerificationStatus::Failed),
        error: Some(f.code),
        reason: Some(f.detail),
        ..Default::default()
    }
}

/// A runner whose job was stopped by its watchdog or died: what the
/// record says. Not the backup's fault, so `skipped`.
pub(super) fn stopped(why: &str, code: JobError) -> VerificationOutcome {
    skipped(code, format!("not tested: {why}"))
}

/// Where the backup is loaded.
enum Sandbox {
    Scratch(sandbox::SandboxServer),
    Adopted(Box<Instance>),
}

async fn perform(
    jobs: &Arc<Jobs>,
    job: &ClaimedJob,
    lease: &Lease,
    rec: &VerificationRecord,
) -> Result<VerificationOutcome, JobFailure> {
    let backup = jobs
        .catalog
        .backup(&rec.backup_id)
        .await?
        .filter(|b| b.status == BackupStatus::Succeed)
        .ok_or_else(|| JobFailure::new(JobError::SizeQuery, "the backup is no longer available"))?;
    if !jobs
        .catalog
        .start_verification(job, &jobs.node_id, now_millis())
        .await?
    {
        return Err(JobFailure::lost());
    }
    let at = BackupLocation::of(&backup);
    let manifest = match restore::read_manifest(jobs, &at).await {
        Ok(m) => m,
        Err(f) if f.code == JobError::SizeQuery => return Ok(failed(f)),
        Err(f) => return Err(f),
    };
    let sandbox = if rec.sandbox == "scratch" {
        match sandbox::choose(&jobs.settings.sandbox_servers, &manifest) {
            Ok(s) => Sandbox::Scratch(s.clone()),
            Err(why) => return Ok(skipped(JobError::ToolStart, format!("not tested: {why}"))),
        }
    } else {
        let inst = crate::model::InstanceId::parse(&rec.sandbox);
        let found = match inst {
            Some(id) if jobs.catalog.is_sandbox(&id).await? => {
                jobs.catalog.instance_any(&id).await?
            }
            _ => None,
        };
        match found {
            Some(i) if i.project_id == rec.project_id && i.id != rec.instance_id => {
                Sandbox::Adopted(Box::new(i))
            }
            _ => {
                return Ok(skipped(
                    JobError::ToolStart,
                    "not tested: the sandbox instance is gone or no longer marked as a sandbox"
                        .into(),
                ))
            }
        }
    };
    let progress = Arc::new(Progress::default());
    // Verify, load (reading the file for the sample at the same time),
    // then check: about three passes over the backup's bytes.
    progress
        .total
        .store(manifest.total_size() * 3, Ordering::Relaxed);
    let _reporter = restore::report_progress(jobs, job, lease, &progress, Lane::Verifications);

    let facts = match verify::verify_backup(jobs, &at, &manifest, &progress, None).await {
        Ok(f) => f,
        Err(f) if f.code == JobError::SizeQuery => return Ok(failed(f)),
        Err(f) => return Err(f),
    };
    if lease.lost() {
        return Err(JobFailure::lost());
    }
    let outcome = match sandbox {
        Sandbox::Scratch(server) => {
            let bound = jobs.settings.sandbox_max_memory;
            let estimate = plan::memory_estimate(&facts);
            let need = estimate + estimate / 10;
            if need > bound {
                return Ok(skipped(
                    JobError::ToolStart,
                    format!(
                        "not tested: too big for the sandbox: the dataset needs about {} MiB \
                         (estimate plus 10 %), the sandbox bound is {} MiB (--sandbox-max-memory)",
                        need >> 20,
                        bound >> 20
                    ),
                ));
            }
            let databases = facts.keys_per_db.keys().max().map_or(16, |d| d + 1);
            let scratch = Scratch::start(
                &server,
                &jobs.settings.sandbox_root,
                bound,
                databases,
                &jobs.redis,
            )
            .await
            .map_err(|why| JobFailure::new(JobError::ToolStart, why))?;
            let target = scratch.instance(&rec.project_id);
            let result = test_in(
                jobs, job, lease, rec, &target, manifest, at, facts, &progress,
            )
            .await
            .map(|mut o| {
                o.server = Some(server.to_string());
                o
            });
            scratch.stop(&jobs.redis).await;
            result?
        }
        Sandbox::Adopted(target) => {
            let mut o = test_in(
                jobs, job, lease, rec, &target, manifest, at, facts, &progress,
            )
            .await?;
            o.server = Some(format!("instance {}", target.id));
            o
        }
    };
    Ok(outcome)
}

/// Plan, load and check, in a sandbox that is up.
#[allow(clippy::too_many_arguments)]
async fn test_in(
    jobs: &Arc<Jobs>,
    job: &ClaimedJob,
    lease: &Lease,
    rec: &VerificationRecord,
    target: &Instance,
    manifest: Manifest,
    at: BackupLocation,
    facts: verify::BackupFacts,
    progress: &Arc<Progress>,
) -> Result<VerificationOutcome, JobFailure> {
    let topology = discover(&target.connection, &jobs.redis).await?;
    let masters = plan::gather(jobs, target, &topology, &facts).await?;
    let input = plan::input(jobs, target, &topology, &masters, &facts);
    if let Some(why) = plan::memory_refusal(&input) {
        return Ok(skipped(
            JobError::ToolStart,
            format!("not tested: too big for the sandbox: {why}"),
        ));
    }
    let plan = match plan::decide(&input) {
        Ok(p) => p,
        Err(why) => {
            return Ok(skipped(
                JobError::ToolStart,
                format!("not tested: the sandbox cannot take this backup: {why}"),
            ))
        }
    };
    // The sample is drawn while the sandbox loads.
    let horizon = now_millis() + jobs.settings.job_deadline.as_millis() as i64;
    let sampler = sample_backup(jobs, &at, &manifest, rec.sample, horizon, progress);
    let r = Restore {
        jobs,
        job,
        lease: lease.share(),
        target: target.clone(),
        topology,
        manifest: manifest.clone(),
        backup: at.clone(),
        progress: Arc::clone(progress),
        filter: None,
    };
    let started = Instant::now();
    let (loaded, sampled) = tokio::join!(restore::execute(&r, &plan), sampler);
    let load_ms = started.elapsed().as_millis() as i64;
    if lease.lost() {
        return Err(JobFailure::lost());
    }
    let path = match loaded {
        Ok(p) => p,
        Err(f) if matches!(f.code, JobError::ToolStart | JobError::Timeout) => return Err(f),
        Err(f) => {
            let mut o = failed(JobFailure::new(
                f.code,
                format!("the sandbox did not take the backup: {}", f.detail),
            ));
            o.load_ms = Some(load_ms);
            return Ok(o);
        }
    };
    tracing::info!(%path, load_ms, "test restore loaded");
    let sampled = sampled?;
    let mut o = check(jobs, &r, &sampled).await?;
    o.load_ms = Some(load_ms);
    let mut notes = vec![format!(
        "loaded by {path} in {:.1} s",
        load_ms as f64 / 1000.0
    )];
    notes.extend(o.reason.take());
    o.reason = Some(notes.join("; "));
    Ok(o)
}

impl Jobs {
    /// Records a test restore of `backup` into `sandbox` (`scratch` or an
    /// adopted sandbox's id, already checked by the caller) and wakes the
    /// runner. A scratch test takes the backup instance's test lane, an
    /// adopted one the sandbox's: `Busy` if a test restore holds it.
    pub async fn queue_verification(
        &self,
        backup: &crate::model::BackupRecord,
        sandbox: &str,
        sample: u64,
        origin: crate::model::VerificationOrigin,
    ) -> CatalogResult<VerificationRecord> {
        let lane = if sandbox == "scratch" {
            backup.instance_id.clone()
        } else {
            crate::model::InstanceId::from_stored(sandbox.to_owned())
        };
        let rec = self
            .catalog
            .enqueue_verification(
                &crate::catalog::NewVerification {
                    id: VerificationId::generate(),
                    backup_id: backup.id.clone(),
                    instance_id: backup.instance_id.clone(),
                    project_id: backup.project_id.clone(),
                    sandbox: sandbox.to_owned(),
                    sample: sample.min(MAX_SAMPLE),
                    origin,
                    created_at: now_millis(),
                },
                &lane,
            )
            .await?;
        tracing::info!(verification = %rec.id, backup = %backup.id, sandbox, %origin, "test restore queued");
        self.wake();
        Ok(rec)
    }
}

impl Jobs {
    /// The scheduler's part for test restores: in each planned window of
    /// an enabled policy, the instance's newest succeeded backup is tested
    /// once. The window is claimed by inserting its row (the primary key
    /// makes that exactly once across replicas and restarts); the node
    /// whose insert landed queues the test, or records why it did not
    /// (`none`: no succeeded backup yet; `busy`: a test of the instance
    /// was already running; it is not retried in that window).
    pub(super) async fn verification_tick(
        &self,
        now: crate::model::Millis,
    ) -> Result<(), crate::catalog::CatalogError> {
        use crate::catalog::CatalogError;
        for (inst, policy) in self.catalog.verification_policies().await? {
            let Some(plan) = &policy.plan else { continue };
            let Some(w) = super::scheduler::window_at(plan, now) else {
                continue;
            };
            if !self
                .catalog
                .claim_verification_window(&inst, w.start, w.end, now)
                .await?
            {
                continue;
            }
            let newest = match self
                .catalog
                .newest_succeeded_backup(&inst, i64::MAX)
                .await?
            {
                Some(id) => self.catalog.backup(&id).await?,
                None => None,
            };
            let Some(backup) = newest else {
                self.catalog
                    .settle_verification_window(&inst, w.start, "none", None, now)
                    .await?;
                tracing::info!(instance = %inst, window = %w.label, "no succeeded backup to test in this window");
                continue;
            };
            match self
                .queue_verification(
                    &backup,
                    &policy.sandbox,
                    DEFAULT_SAMPLE,
                    crate::model::VerificationOrigin::Schedule,
                )
                .await
            {
                Ok(v) => {
                    self.catalog
                        .settle_verification_window(&inst, w.start, "started", Some(&v.id), now)
                        .await?
                }
                Err(CatalogError::Busy(_)) => {
                    self.catalog
                        .settle_verification_window(&inst, w.start, "busy", None, now)
                        .await?
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// With an enabled policy that says `after_backup`, tests an
    /// automatic backup that just succeeded. Called by the replica whose
    /// record of the backup landed, so once per backup.
    pub(super) async fn test_after_backup(&self, job: &ClaimedJob) {
        let run = async {
            let Some(backup) = self.catalog.backup_of_job(job).await? else {
                return Ok(());
            };
            if backup.backup_type != crate::model::BackupType::Auto {
                return Ok(());
            }
            let Some(policy) = self
                .catalog
                .verification_policy(&backup.instance_id)
                .await?
                .filter(|p| p.enabled && p.after_backup)
            else {
                return Ok(());
            };
            self.queue_verification(
                &backup,
                &policy.sandbox,
                DEFAULT_SAMPLE,
                crate::model::VerificationOrigin::AfterBackup,
            )
            .await
            .map(|_| ())
        };
        if let Err(e) = run.await {
            tracing::warn!(error = %e, "cannot queue the test restore after the backup");
        }
    }
}

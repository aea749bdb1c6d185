//! The job queue: backup and restore jobs claimed with leases.
//!
//! A job row exists for every backup or restore the service must perform.
//! The partial unique index `jobs_one_active_per_instance` admits one
//! unfinished job per instance, which is what refuses a second backup while
//! one runs (DCS.4096) on every replica at once. A runner claims a job by
//! writing its owner id and a lease deadline; it renews the lease while it
//! works. A job whose lease lapsed (its runner died) is claimed again, and
//! a restarted service reclaims its own jobs at once.

use super::records::NewBackup;
use super::records::NewRestore;
use super::{bind_args, is_unique_violation, on_db, Arg, Catalog, CatalogError, Db, Result};
use crate::model::{
    BackupId, BackupRecord, InstanceId, JobError, JobId, JobKind, Millis, RestoreRecord,
};

/// A job this runner now owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedJob {
    pub id: JobId,
    pub kind: JobKind,
    pub instance_id: InstanceId,
    pub record_id: String,
    /// 1 on the first claim; more when a previous runner died holding it.
    pub attempts: i64,
}

/// Marks a running job done if `owner` ($2) still holds it ($1 job, $3 now).
pub(super) const RELEASE_JOB: &str =
    "UPDATE jobs SET state = 'done', lease_until = NULL, updated_at = $3 \
    WHERE id = $1 AND owner = $2 AND state = 'running'";

/// The claimable job to take next, fairly: a queued job or one whose
/// lease lapsed, of a project with fewer than `$4` jobs holding a live
/// lease, preferring the project running the fewest, then the oldest job.
/// Counting and claiming are one statement (SQLite writes one at a time;
/// PostgreSQL runs it under [`CLAIM_LOCK`]), so replicas sharing the
/// catalog never run more than `$4` jobs of a project together.
macro_rules! claim_sql {
    ($lock:literal) => {
        concat!(
            "UPDATE jobs SET state = 'running', owner = $1, lease_until = $2, \
             attempts = attempts + 1, updated_at = $3 \
             WHERE id = (WITH running AS ( \
                 SELECT i.project_id AS project_id, COUNT(*) AS n FROM jobs r \
                 JOIN instances i ON i.id = r.instance_id \
                 WHERE r.state = 'running' AND r.lease_until >= $3 GROUP BY i.project_id) \
               SELECT j.id FROM jobs j JOIN instances i ON i.id = j.instance_id \
               LEFT JOIN running ON running.project_id = i.project_id \
               WHERE (j.state = 'queued' OR (j.state = 'running' AND j.lease_until < $3)) \
                 AND COALESCE(running.n, 0) < $4 \
               ORDER BY COALESCE(running.n, 0), j.created_at LIMIT 1 ",
            $lock,
            ") RETURNING id, kind, instance_id, record_id, attempts"
        )
    };
}

const CLAIM_SQLITE: &str = claim_sql!("");
const CLAIM_POSTGRES: &str = claim_sql!("FOR UPDATE OF j SKIP LOCKED");
/// PostgreSQL advisory lock key taken (per transaction) around a claim, so
/// that two replicas' claims count each other's running jobs.
const CLAIM_LOCK: i64 = 0x6463_735f_636c_6169; // "dcs_clai"

impl Catalog {
    /// The kind of the unfinished job of an instance, if any.
    pub async fn active_job_kind(&self, instance: &InstanceId) -> Result<Option<JobKind>> {
        let kind: Option<String> = on_db!(&self.db, pool =>
            sqlx::query_scalar("SELECT kind FROM jobs WHERE instance_id = $1 AND state <> 'done'")
                .bind(instance.as_str())
                .fetch_optional(pool)
                .await)?;
        Ok(kind.as_deref().and_then(JobKind::parse))
    }

    async fn busy_error(&self, instance: &InstanceId) -> CatalogError {
        match self.active_job_kind(instance).await {
            Ok(Some(kind)) => CatalogError::Busy(kind),
            // The other job finished between our insert and this look-up.
            Ok(None) => CatalogError::Busy(JobKind::Backup),
            Err(e) => e,
        }
    }

    /// Records a new backup and queues its job, or refuses with
    /// [`CatalogError::Busy`] when the instance already has an unfinished job.
    #[tracing::instrument(skip_all, fields(backup = %b.id, instance = %b.instance_id))]
    pub async fn enqueue_backup(&self, b: &NewBackup) -> Result<BackupRecord> {
        self.enqueue(JobKind::Backup, &b.instance_id, b.id.as_str(), || {
            self.insert_backup(b)
        })
        .await
    }

    /// Records a new restore and queues its job, or refuses when busy.
    #[tracing::instrument(skip_all, fields(restore = %r.id, instance = %r.instance_id))]
    pub async fn enqueue_restore(&self, r: &NewRestore) -> Result<RestoreRecord> {
        self.enqueue(JobKind::Restore, &r.instance_id, r.id.as_str(), || {
            self.insert_restore(r)
        })
        .await
    }

    /// Takes the instance's job slot, runs `insert` (the record's insert),
    /// then makes the job claimable; if the insert fails the slot is freed.
    pub(super) async fn enqueue<T, F, Fut>(
        &self,
        kind: JobKind,
        instance: &InstanceId,
        record_id: &str,
        insert: F,
    ) -> Result<T>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let job = JobId::generate();
        self.insert_job(&job, kind, instance, record_id).await?;
        match insert().await {
            Ok(rec) => {
                self.release_job_hold(&job).await?;
                Ok(rec)
            }
            Err(e) => {
                self.delete_job(&job).await?;
                Err(e)
            }
        }
    }

    /// Takes the instance's job slot in state `held`: not claimable until
    /// its record exists ([`Self::release_job_hold`]). A crash in between
    /// leaves a held job that [`Self::sweep_held_jobs`] settles. The job's
    /// time is the machine's, not the record's (a scheduler's clock may be
    /// another): the sweep compares it with real time.
    async fn insert_job(
        &self,
        id: &JobId,
        kind: JobKind,
        instance: &InstanceId,
        record_id: &str,
    ) -> Result<()> {
        let now = crate::model::now_millis();
        let res = on_db!(&self.db, pool => sqlx::query(
            "INSERT INTO jobs (id, kind, instance_id, record_id, state, owner, lease_until, attempts, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'held', NULL, NULL, 0, $5, $5)")
            .bind(id.as_str())
            .bind(kind.as_str())
            .bind(instance.as_str())
            .bind(record_id)
            .bind(now)
            .execute(pool).await.map(|r| r.rows_affected()));
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(self.busy_error(instance).await),
            Err(e) => Err(e.into()),
        }
    }

    async fn release_job_hold(&self, id: &JobId) -> Result<()> {
        on_db!(&self.db, pool => sqlx::query("UPDATE jobs SET state = 'queued' WHERE id = $1 AND state = 'held'")
            .bind(id.as_str())
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    async fn delete_job(&self, id: &JobId) -> Result<()> {
        on_db!(&self.db, pool => sqlx::query("DELETE FROM jobs WHERE id = $1").bind(id.as_str()).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Settles held jobs older than `before`, left by a service that died
    /// between its inserts: one whose record was never written is removed,
    /// freeing its instance; one whose record was written is queued, so the
    /// record does not stay `waiting` for ever.
    pub async fn sweep_held_jobs(&self, before: Millis) -> Result<u64> {
        let removed = on_db!(&self.db, pool => sqlx::query(
            "DELETE FROM jobs WHERE state = 'held' AND created_at < $1 \
             AND record_id NOT IN (SELECT id FROM backups) AND record_id NOT IN (SELECT id FROM restores) \
             AND record_id NOT IN (SELECT id FROM verifications)")
            .bind(before)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        let queued = on_db!(&self.db, pool => sqlx::query(
            "UPDATE jobs SET state = 'queued' WHERE state = 'held' AND created_at < $1")
            .bind(before)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(removed + queued)
    }

    /// Ends the leases `owner` holds: called when a node starts, since any
    /// job still running under its name belongs to a previous life of it.
    pub async fn expire_leases_of(&self, owner: &str) -> Result<u64> {
        let n = on_db!(&self.db, pool => sqlx::query(
            "UPDATE jobs SET lease_until = 0 WHERE owner = $1 AND state = 'running'")
            .bind(owner)
            .execute(pool)
            .await.map(|r| r.rows_affected()))?;
        Ok(n)
    }

    /// Claims a job for `owner` until `lease_until`: a queued one, or a
    /// running one whose lease has lapsed, of a project running fewer than
    /// `per_project` jobs (see [`claim_sql`]: fewest running first, then
    /// oldest).
    pub async fn claim_job(
        &self,
        owner: &str,
        now: Millis,
        lease_until: Millis,
        per_project: u32,
    ) -> Result<Option<ClaimedJob>> {
        let limit = i64::from(per_project.max(1));
        let row: Option<(String, String, String, String, i64)> = match &self.db {
            Db::Sqlite(pool, _) => {
                sqlx::query_as(CLAIM_SQLITE)
                    .bind(owner)
                    .bind(lease_until)
                    .bind(now)
                    .bind(limit)
                    .fetch_optional(pool)
                    .await?
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(CLAIM_LOCK)
                    .execute(&mut *tx)
                    .await?;
                let row = sqlx::query_as(CLAIM_POSTGRES)
                    .bind(owner)
                    .bind(lease_until)
                    .bind(now)
                    .bind(limit)
                    .fetch_optional(&mut *tx)
                    .await?;
                tx.commit().await?;
                row
            }
        };
        row.map(|(id, kind, instance, record, attempts)| {
            Ok(ClaimedJob {
                id: JobId::from_stored(id),
                kind: JobKind::parse(&kind)
                    .ok_or_else(|| CatalogError::Corrupt(format!("job kind {kind}")))?,
                instance_id: InstanceId::from_stored(instance),
                record_id: record,
                attempts,
            })
        })
        .transpose()
    }

    /// Extends the lease; false means this runner no longer owns the job.
    pub async fn renew_lease(&self, job: &JobId, owner: &str, lease_until: Millis) -> Result<bool> {
        let done = on_db!(&self.db, pool => sqlx::query(
            "UPDATE jobs SET lease_until = $3 WHERE id = $1 AND owner = $2 AND state = 'running'")
            .bind(job.as_str())
            .bind(owner)
            .bind(lease_until)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Marks the job finished, freeing its instance; false if not the owner.
    pub async fn finish_job(&self, job: &JobId, owner: &str, now: Millis) -> Result<bool> {
        let done = on_db!(&self.db, pool => sqlx::query(RELEASE_JOB)
            .bind(job.as_str())
            .bind(owner)
            .bind(now)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// The backup job's record, for a runner.
    pub async fn backup_of_job(&self, job: &ClaimedJob) -> Result<Option<BackupRecord>> {
        self.backup(&BackupId::from_stored(job.record_id.clone()))
            .await
    }
}

/// The final state a runner writes for its backup.
#[derive(Clone, Debug)]
pub struct BackupOutcome {
    pub status: crate::model::BackupStatus,
    pub size: i64,
    pub error: Option<crate::model::JobError>,
    pub manifest: Option<String>,
}

/// The final state a runner writes for its restore.
#[derive(Clone, Debug)]
pub struct RestoreOutcome {
    pub status: crate::model::RestoreStatus,
    pub error: Option<crate::model::JobError>,
    /// How the data went in (`replication feed`, `slicing …`).
    pub path: Option<String>,
    /// Why it failed, in words.
    pub reason: Option<String>,
}

// Record updates made by a runner only land while it still owns the job:
// a runner whose lease was taken over can no longer write the record.
pub(super) const OWNED: &str =
    "EXISTS (SELECT 1 FROM jobs WHERE jobs.id = $2 AND jobs.owner = $3 AND jobs.state = 'running')";

impl Catalog {
    /// `waiting` → `backuping`; false if this runner no longer owns the job.
    pub async fn start_backup(&self, job: &ClaimedJob, owner: &str, now: Millis) -> Result<bool> {
        let sql = format!(
            "UPDATE backups SET status = 'backuping', progress = 0, size = 0, error_code = NULL, \
             execution_at = $4, updated_at = $4 WHERE id = $1 AND {OWNED}"
        );
        self.update_owned(job, owner, &sql, &[Arg::Int(Some(now))])
            .await
    }

    /// Writes progress (hundredths of a percent) of a running backup.
    pub async fn backup_progress(
        &self,
        job: &ClaimedJob,
        owner: &str,
        progress: i64,
        size: i64,
        now: Millis,
    ) -> Result<bool> {
        let sql = format!(
            "UPDATE backups SET progress = $4, size = $5, updated_at = $6 \
             WHERE id = $1 AND status = 'backuping' AND {OWNED}"
        );
        self.update_owned(
            job,
            owner,
            &sql,
            &[
                Arg::Int(Some(progress)),
                Arg::Int(Some(size)),
                Arg::Int(Some(now)),
            ],
        )
        .await
    }

    /// Writes a backup's final state and releases its job, atomically.
    pub async fn finish_backup(
        &self,
        job: &ClaimedJob,
        owner: &str,
        out: &BackupOutcome,
        now: Millis,
    ) -> Result<bool> {
        let sql = format!(
            "UPDATE backups SET status = $5, size = $6, error_code = $7, manifest = $8, \
             progress = CASE WHEN $5 = 'succeed' THEN 10000 ELSE progress END, updated_at = $4 \
             WHERE id = $1 AND {OWNED}"
        );
        let args = [
            Arg::Text(Some(out.status.as_str())),
            Arg::Int(Some(out.size)),
            Arg::Text(out.error.map(JobError::code)),
            Arg::Text(out.manifest.as_deref()),
        ];
        self.finish_owned(job, owner, now, &sql, &args).await
    }

    /// `waiting` → `restoring`.
    pub async fn start_restore(&self, job: &ClaimedJob, owner: &str, now: Millis) -> Result<bool> {
        let sql = format!(
            "UPDATE restores SET status = 'restoring', progress = 0, error_code = NULL, updated_at = $4 \
             WHERE id = $1 AND {OWNED}"
        );
        self.update_owned(job, owner, &sql, &[Arg::Int(Some(now))])
            .await
    }

    pub async fn restore_progress(
        &self,
        job: &ClaimedJob,
        owner: &str,
        progress: i64,
        now: Millis,
    ) -> Result<bool> {
        let sql = format!(
            "UPDATE restores SET progress = $4, updated_at = $5 WHERE id = $1 AND status = 'restoring' AND {OWNED}"
        );
        self.update_owned(
            job,
            owner,
            &sql,
            &[Arg::Int(Some(progress)), Arg::Int(Some(now))],
        )
        .await
    }

    /// Writes a restore's final state and releases its job, atomically.
    pub async fn finish_restore(
        &self,
        job: &ClaimedJob,
        owner: &str,
        out: &RestoreOutcome,
        now: Millis,
    ) -> Result<bool> {
        let sql = format!(
            "UPDATE restores SET status = $5, error_code = $6, path = $7, reason = $8, \
             detail = NULL, \
             progress = CASE WHEN $5 = 'succeed' THEN 10000 ELSE progress END, updated_at = $4 \
             WHERE id = $1 AND {OWNED}"
        );
        let args = [
            Arg::Text(Some(out.status.as_str())),
            Arg::Text(out.error.map(JobError::code)),
            Arg::Text(out.path.as_deref()),
            Arg::Text(out.reason.as_deref()),
        ];
        self.finish_owned(job, owner, now, &sql, &args).await
    }

    /// Runs a runner's record update (`$1` the record, `$2` the job, `$3`
    /// the owner, then `args` from `$4`, guarded by `OWNED`); false if the
    /// job is no longer `owner`'s.
    pub(super) async fn update_owned(
        &self,
        job: &ClaimedJob,
        owner: &str,
        update: &str,
        args: &[Arg<'_>],
    ) -> Result<bool> {
        let n = on_db!(&self.db, pool => bind_args!(sqlx::query(update)
            .bind(&job.record_id)
            .bind(job.id.as_str())
            .bind(owner), args)
            .execute(pool)
            .await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Runs a runner's final record update and, if it landed (the job is
    /// still `owner`'s), releases the job, in one transaction: a record
    /// never says finished while its job still holds the instance.
    /// `update` takes $1 the record, $2 the job, $3 the owner, $4 `now`,
    /// then `args` from $5.
    async fn finish_owned(
        &self,
        job: &ClaimedJob,
        owner: &str,
        now: Millis,
        update: &str,
        args: &[Arg<'_>],
    ) -> Result<bool> {
        let done = on_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            let mut query = sqlx::query(update)
                .bind(&job.record_id)
                .bind(job.id.as_str())
                .bind(owner)
                .bind(now);
            query = bind_args!(query, args);
            let n = query.execute(&mut *tx).await?.rows_affected();
            if n == 1 {
                sqlx::query(RELEASE_JOB)
                    .bind(job.id.as_str())
                    .bind(owner)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            n == 1
        });
        Ok(done)
    }

    /// The stored manifest JSON of a backup.
    pub async fn backup_manifest(&self, id: &BackupId) -> Result<Option<String>> {
        let m: Option<Option<String>> = on_db!(&self.db, pool =>
            sqlx::query_scalar("SELECT manifest FROM backups WHERE id = $1").bind(id.as_str()).fetch_optional(pool).await)?;
        Ok(m.flatten())
    }

    /// Moves a finished backup to `deleted` or `expired` (files already
    /// removed by the caller); false if it was not in a final state.
    pub async fn retire_backup(
        &self,
        id: &BackupId,
        status: crate::model::BackupStatus,
        now: Millis,
    ) -> Result<bool> {
        let n = on_db!(&self.db, pool => sqlx::query(
            "UPDATE backups SET status = $2, updated_at = $3 WHERE id = $1 AND status IN ('succeed', 'failed', 'expired')")
            .bind(id.as_str())
            .bind(status.as_str())
            .bind(now)
            .execute(pool)
            .await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }
}

impl Catalog {
    /// Saves what a running restore must remember across a crash (the feed
    /// endpoint a target was pointed at, configuration changed on it). It
    /// holds the target's own `masterauth`, so it is sealed like an
    /// instance password, bound to the restore's id.
    pub async fn set_restore_detail(
        &self,
        job: &ClaimedJob,
        owner: &str,
        detail: &str,
    ) -> Result<bool> {
        self.set_sealed_detail(Lane::Restores, job, owner, detail)
            .await
    }

    /// How a finished restore put the data in (`replication feed`, …).
    pub async fn restore_path(&self, id: &str) -> Result<Option<String>> {
        let d: Option<Option<String>> = on_db!(&self.db, pool =>
            sqlx::query_scalar("SELECT path FROM restores WHERE id = $1").bind(id).fetch_optional(pool).await)?;
        Ok(d.flatten())
    }

    /// The crash-recovery state an unfinished restore wrote, opened.
    pub async fn restore_detail(&self, id: &str) -> Result<Option<String>> {
        self.sealed_detail(Lane::Restores, id).await
    }

    /// True while an unfinished restore reads this backup: an ordinary
    /// restore of it, or a restore to a point in time starting a shard
    /// from it.
    pub async fn backup_in_use(&self, backup: &BackupId) -> Result<bool> {
        if self.backup_read_by(Lane::Restores, backup).await? {
            return Ok(true);
        }
        let n: i64 = on_db!(&self.db, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM pitr_restore_bases b JOIN jobs j ON j.record_id = b.restore_id \
             WHERE b.backup_id = $1 AND j.state <> 'done'")
            .bind(backup.as_str())
            .fetch_one(pool)
            .await)?;
        Ok(n > 0)
    }

    /// A running restore's or test restore's progress, hundredths of a
    /// percent; false if `owner` no longer holds the job.
    pub async fn lane_progress(
        &self,
        lane: Lane,
        job: &ClaimedJob,
        owner: &str,
        progress: i64,
        now: Millis,
    ) -> Result<bool> {
        match lane {
            Lane::Restores => self.restore_progress(job, owner, progress, now).await,
            Lane::Verifications => self.verification_progress(job, owner, progress, now).await,
        }
    }

    /// Stores a job record's crash-recovery state, sealed (when the
    /// catalog has keys) and bound to the record's id, if `owner` still
    /// holds the job.
    pub(super) async fn set_sealed_detail(
        &self,
        lane: Lane,
        job: &ClaimedJob,
        owner: &str,
        detail: &str,
    ) -> Result<bool> {
        let sealed = match self.keys() {
            Some(keys) => keys.seal(detail, &lane.aad(&job.record_id))?,
            None => detail.to_owned(),
        };
        let sql = format!(
            "UPDATE {} SET detail = $4 WHERE id = $1 AND {OWNED}",
            lane.table()
        );
        self.update_owned(job, owner, &sql, &[Arg::Text(Some(&sealed))])
            .await
    }

    /// A job record's crash-recovery state, opened.
    pub(super) async fn sealed_detail(&self, lane: Lane, id: &str) -> Result<Option<String>> {
        let sql = format!("SELECT detail FROM {} WHERE id = $1", lane.table());
        let d: Option<Option<String>> = on_db!(&self.db, pool =>
            sqlx::query_scalar(&sql).bind(id).fetch_optional(pool).await)?;
        match (d.flatten(), self.keys()) {
            (Some(stored), Some(keys))
                if crate::secrets::SecretKeys::sealed_key_id(&stored).is_some() =>
            {
                Ok(Some(keys.open_value(&stored, &lane.aad(id))?))
            }
            (d, _) => Ok(d),
        }
    }

    /// True while an unfinished job of the lane reads this backup.
    pub(super) async fn backup_read_by(&self, lane: Lane, backup: &BackupId) -> Result<bool> {
        let sql = format!(
            "SELECT COUNT(*) FROM {} r JOIN jobs j ON j.record_id = r.id \
             WHERE r.backup_id = $1 AND j.state <> 'done'",
            lane.table()
        );
        let n: i64 = on_db!(&self.db, pool => sqlx::query_scalar(&sql)
            .bind(backup.as_str())
            .fetch_one(pool)
            .await)?;
        Ok(n > 0)
    }
}

/// The job records that read a backup and keep a sealed crash-recovery
/// detail: restores and test restores.
#[derive(Clone, Copy, Debug)]
pub enum Lane {
    Restores,
    Verifications,
}

impl Lane {
    fn table(self) -> &'static str {
        match self {
            Lane::Restores => "restores",
            Lane::Verifications => "verifications",
        }
    }

    /// What a sealed detail is bound to (never an instance's id).
    fn aad(self, id: &str) -> String {
        match self {
            Lane::Restores => restore_aad(id),
            Lane::Verifications => format!("verification:{id}"),
        }
    }
}

/// What a sealed restore detail is bound to (never an instance's id).
pub(super) fn restore_aad(restore: &str) -> String {
    format!("restore:{restore}")
}

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
use super::{is_unique_violation, on_db, Catalog, CatalogError, Db, Result};
use crate::model::{BackupId, BackupRecord, InstanceId, JobId, JobKind, Millis, RestoreRecord};

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

/// How a job ended, written atomically with the job's release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    Done,
}

const CLAIM_SQLITE: &str = "UPDATE jobs SET state = 'running', owner = $1, lease_until = $2, \
    attempts = attempts + 1, updated_at = $3 \
    WHERE id = (SELECT id FROM jobs WHERE state = 'queued' \
                OR (state = 'running' AND (lease_until < $3 OR owner = $4)) \
                ORDER BY created_at LIMIT 1) \
    RETURNING id, kind, instance_id, record_id, attempts";

const CLAIM_POSTGRES: &str = "UPDATE jobs SET state = 'running', owner = $1, lease_until = $2, \
    attempts = attempts + 1, updated_at = $3 \
    WHERE id = (SELECT id FROM jobs WHERE state = 'queued' \
                OR (state = 'running' AND (lease_until < $3 OR owner = $4)) \
                ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED) \
    RETURNING id, kind, instance_id, record_id, attempts";

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
        let job = JobId::generate();
        self.insert_job(
            &job,
            JobKind::Backup,
            &b.instance_id,
            b.id.as_str(),
            b.created_at,
        )
        .await?;
        match self.insert_backup(b).await {
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

    /// Records a new restore and queues its job, or refuses when busy.
    #[tracing::instrument(skip_all, fields(restore = %r.id, instance = %r.instance_id))]
    pub async fn enqueue_restore(&self, r: &NewRestore) -> Result<RestoreRecord> {
        let job = JobId::generate();
        self.insert_job(
            &job,
            JobKind::Restore,
            &r.instance_id,
            r.id.as_str(),
            r.created_at,
        )
        .await?;
        match self.insert_restore(r).await {
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
    /// leaves a held job that [`Self::sweep_held_jobs`] removes.
    async fn insert_job(
        &self,
        id: &JobId,
        kind: JobKind,
        instance: &InstanceId,
        record_id: &str,
        now: Millis,
    ) -> Result<()> {
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

    /// Removes held jobs older than `before` whose record was never written
    /// (the service died between the two inserts), freeing their instance.
    pub async fn sweep_held_jobs(&self, before: Millis) -> Result<u64> {
        let done = on_db!(&self.db, pool => sqlx::query(
            "DELETE FROM jobs WHERE state = 'held' AND created_at < $1 \
             AND record_id NOT IN (SELECT id FROM backups) AND record_id NOT IN (SELECT id FROM restores)")
            .bind(before)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(done)
    }

    /// Claims the oldest claimable job for `owner` until `lease_until`.
    /// Jobs still marked as running under `owner` itself (a previous life of
    /// this same node) are claimable at once.
    pub async fn claim_job(
        &self,
        owner: &str,
        now: Millis,
        lease_until: Millis,
    ) -> Result<Option<ClaimedJob>> {
        let row: Option<(String, String, String, String, i64)> = match &self.db {
            Db::Sqlite(pool) => {
                sqlx::query_as(CLAIM_SQLITE)
                    .bind(owner)
                    .bind(lease_until)
                    .bind(now)
                    .bind(owner)
                    .fetch_optional(pool)
                    .await?
            }
            Db::Postgres(pool) => {
                sqlx::query_as(CLAIM_POSTGRES)
                    .bind(owner)
                    .bind(lease_until)
                    .bind(now)
                    .bind(owner)
                    .fetch_optional(pool)
                    .await?
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
        let done = on_db!(&self.db, pool => sqlx::query(
            "UPDATE jobs SET state = 'done', lease_until = NULL, updated_at = $3 \
             WHERE id = $1 AND owner = $2 AND state = 'running'")
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

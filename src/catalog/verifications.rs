//! Test restores: their records, their job (a lane of its own per
//! instance, see migration 0009), adopted sandboxes, the test-restore
//! policy and its planned windows.
//!
//! A failed test restore and the backup's `verification_failure` are
//! written in one transaction with the job's release, so a backup is never
//! said restorable after its test failed, nor untrusted by a test that
//! did not finish.

use super::jobs::{ClaimedJob, Lane};
use super::{is_unique_violation, on_db, Arg, Catalog, Result};
use crate::model::{
    BackupId, InstanceId, JobError, JobKind, Millis, Mismatch, ProjectId, VerificationId,
    VerificationOrigin, VerificationPolicy, VerificationRecord, VerificationStatus,
};

/// What a caller decides about a new test restore.
#[derive(Clone, Debug)]
pub struct NewVerification {
    pub id: VerificationId,
    pub backup_id: BackupId,
    pub instance_id: InstanceId,
    pub project_id: ProjectId,
    /// `scratch`, or an adopted sandbox's id.
    pub sandbox: String,
    pub sample: u64,
    pub origin: VerificationOrigin,
    pub created_at: Millis,
}

/// The final state a runner writes for a test restore.
#[derive(Clone, Debug, Default)]
pub struct VerificationOutcome {
    pub status: Option<VerificationStatus>,
    pub server: Option<String>,
    pub load_ms: Option<i64>,
    pub keys_checked: Option<u64>,
    pub mismatches: Option<u64>,
    pub mismatch_sample: Vec<Mismatch>,
    pub digest: Option<String>,
    pub error: Option<JobError>,
    pub reason: Option<String>,
}

const COLUMNS: &str = "id, backup_id, instance_id, project_id, sandbox, sample, origin, status, \
     progress, created_at, started_at, finished_at, updated_at, server, load_ms, keys_checked, \
     mismatches, mismatch_sample, digest, error_code, reason";

type Row = (
    (String, String, String, String, String, i64, String, String),
    (
        i64,
        i64,
        Option<i64>,
        Option<i64>,
        i64,
        Option<String>,
        Option<i64>,
    ),
    (
        Option<i64>,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ),
);

fn decode(r: Row) -> Result<VerificationRecord> {
    let ((id, backup, instance, project, sandbox, sample, origin, status), b, c) = r;
    let bad = |what: &str| super::CatalogError::Corrupt(format!("verification {id}: {what}"));
    Ok(VerificationRecord {
        backup_id: BackupId::from_stored(backup),
        instance_id: InstanceId::from_stored(instance),
        project_id: ProjectId::parse(&project).ok_or_else(|| bad("project"))?,
        sandbox,
        sample: sample.max(0) as u64,
        origin: VerificationOrigin::parse(&origin).ok_or_else(|| bad("origin"))?,
        status: VerificationStatus::parse(&status).ok_or_else(|| bad("status"))?,
        progress: b.0,
        created_at: b.1,
        started_at: b.2,
        finished_at: b.3,
        updated_at: b.4,
        server: b.5,
        load_ms: b.6,
        keys_checked: c.0.map(|n| n.max(0) as u64),
        mismatches: c.1.map(|n| n.max(0) as u64),
        mismatch_sample: c
            .2
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default(),
        digest: c.3,
        error: c.4.as_deref().and_then(JobError::parse),
        reason: c.5,
        id: VerificationId::from_stored(id),
    })
}

/// sqlx decodes tuples of at most 16; a record is read as three.
fn split(row: &impl RowLike) -> Result<Row> {
    Ok((
        (
            row.text(0)?,
            row.text(1)?,
            row.text(2)?,
            row.text(3)?,
            row.text(4)?,
            row.int(5)?,
            row.text(6)?,
            row.text(7)?,
        ),
        (
            row.int(8)?,
            row.int(9)?,
            row.int_opt(10)?,
            row.int_opt(11)?,
            row.int(12)?,
            row.text_opt(13)?,
            row.int_opt(14)?,
        ),
        (
            row.int_opt(15)?,
            row.int_opt(16)?,
            row.text_opt(17)?,
            row.text_opt(18)?,
            row.text_opt(19)?,
            row.text_opt(20)?,
        ),
    ))
}

trait RowLike {
    fn text(&self, i: usize) -> Result<String>;
    fn text_opt(&self, i: usize) -> Result<Option<String>>;
    fn int(&self, i: usize) -> Result<i64>;
    fn int_opt(&self, i: usize) -> Result<Option<i64>>;
}

macro_rules! row_like {
    ($row:ty) => {
        impl RowLike for $row {
            fn text(&self, i: usize) -> Result<String> {
                Ok(sqlx::Row::try_get(self, i)?)
            }
            fn text_opt(&self, i: usize) -> Result<Option<String>> {
                Ok(sqlx::Row::try_get(self, i)?)
            }
            fn int(&self, i: usize) -> Result<i64> {
                Ok(sqlx::Row::try_get(self, i)?)
            }
            fn int_opt(&self, i: usize) -> Result<Option<i64>> {
                Ok(sqlx::Row::try_get(self, i)?)
            }
        }
    };
}
row_like!(sqlx::sqlite::SqliteRow);
row_like!(sqlx::postgres::PgRow);

impl Catalog {
    /// Records a test restore and queues its job in the test lane of
    /// `lane` (the backup's instance for a scratch sandbox, the sandbox
    /// instance for an adopted one); [`super::CatalogError::Busy`] when a
    /// test restore already holds that lane.
    #[tracing::instrument(skip_all, fields(verification = %v.id, backup = %v.backup_id))]
    pub async fn enqueue_verification(
        &self,
        v: &NewVerification,
        lane: &InstanceId,
    ) -> Result<VerificationRecord> {
        self.enqueue(JobKind::Verification, lane, v.id.as_str(), || async {
            self.insert_verification(v).await?;
            self.verification(&v.id)
                .await?
                .ok_or_else(|| super::CatalogError::Corrupt("verification vanished".into()))
        })
        .await
    }

    async fn insert_verification(&self, v: &NewVerification) -> Result<()> {
        on_db!(&self.db, pool => sqlx::query(
            "INSERT INTO verifications (id, backup_id, instance_id, project_id, sandbox, sample, origin, \
             status, progress, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'waiting', 0, $8, $8)")
            .bind(v.id.as_str())
            .bind(v.backup_id.as_str())
            .bind(v.instance_id.as_str())
            .bind(v.project_id.as_str())
            .bind(&v.sandbox)
            .bind(v.sample as i64)
            .bind(v.origin.as_str())
            .bind(v.created_at)
            .execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    pub async fn verification(&self, id: &VerificationId) -> Result<Option<VerificationRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM verifications WHERE id = $1");
        let row = on_db!(&self.db, pool => match sqlx::query(&sql).bind(id.as_str()).fetch_optional(pool).await {
            Ok(Some(r)) => Some(split(&r)),
            Ok(None) => None,
            Err(e) => return Err(e.into()),
        });
        row.map(|r| decode(r?)).transpose()
    }

    /// A backup's test restores, newest first, and how many there are.
    pub async fn verifications_of_backup(
        &self,
        backup: &BackupId,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<VerificationRecord>, u64)> {
        let sql = format!(
            "SELECT {COLUMNS} FROM verifications WHERE backup_id = $1 \
             ORDER BY created_at DESC, id LIMIT $2 OFFSET $3"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let rows = on_db!(&self.db, pool => {
            let rows = sqlx::query(&sql)
                .bind(backup.as_str())
                .bind(limit)
                .bind(offset)
                .fetch_all(pool)
                .await?;
            rows.iter().map(split).collect::<Result<Vec<Row>>>()?
        });
        let total: i64 = on_db!(&self.db, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM verifications WHERE backup_id = $1")
            .bind(backup.as_str())
            .fetch_one(pool)
            .await)?;
        let items = rows.into_iter().map(decode).collect::<Result<Vec<_>>>()?;
        Ok((items, total.max(0) as u64))
    }

    /// `waiting` → `testing`; false if this runner no longer owns the job.
    pub async fn start_verification(
        &self,
        job: &ClaimedJob,
        owner: &str,
        now: Millis,
    ) -> Result<bool> {
        let sql = format!(
            "UPDATE verifications SET status = 'testing', progress = 0, started_at = $4, \
             updated_at = $4 WHERE id = $1 AND {}",
            super::jobs::OWNED
        );
        self.update_owned(job, owner, &sql, &[Arg::Int(Some(now))])
            .await
    }

    pub async fn verification_progress(
        &self,
        job: &ClaimedJob,
        owner: &str,
        progress: i64,
        now: Millis,
    ) -> Result<bool> {
        let sql = format!(
            "UPDATE verifications SET progress = $4, updated_at = $5 \
             WHERE id = $1 AND status = 'testing' AND {}",
            super::jobs::OWNED
        );
        self.update_owned(
            job,
            owner,
            &sql,
            &[Arg::Int(Some(progress)), Arg::Int(Some(now))],
        )
        .await
    }

    /// Writes a test restore's final state and releases its job in one
    /// transaction; a `failed` one also marks its backup untrusted, with
    /// the reason. False if the job is no longer `owner`'s.
    pub async fn finish_verification(
        &self,
        job: &ClaimedJob,
        owner: &str,
        out: &VerificationOutcome,
        now: Millis,
    ) -> Result<bool> {
        let status = out.status.unwrap_or(VerificationStatus::Skipped);
        let sample = serde_json::to_string(&out.mismatch_sample).ok();
        let update = format!(
            "UPDATE verifications SET status = $4, progress = CASE WHEN $4 = 'passed' THEN 10000 ELSE progress END, \
             finished_at = $5, updated_at = $5, server = $6, load_ms = $7, keys_checked = $8, mismatches = $9, \
             mismatch_sample = $10, digest = $11, error_code = $12, reason = $13, detail = NULL \
             WHERE id = $1 AND {}",
            super::jobs::OWNED
        );
        let failure = (status == VerificationStatus::Failed).then(|| {
            format!(
                "test restore {} failed: {}",
                job.record_id,
                out.reason.as_deref().unwrap_or("see its record")
            )
        });
        let done = on_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            let n = sqlx::query(&update)
                .bind(&job.record_id)
                .bind(job.id.as_str())
                .bind(owner)
                .bind(status.as_str())
                .bind(now)
                .bind(out.server.as_deref())
                .bind(out.load_ms)
                .bind(out.keys_checked.map(|n| n as i64))
                .bind(out.mismatches.map(|n| n as i64))
                .bind(sample.as_deref())
                .bind(out.digest.as_deref())
                .bind(out.error.map(JobError::code))
                .bind(out.reason.as_deref())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 1 {
                sqlx::query(super::jobs::RELEASE_JOB)
                    .bind(job.id.as_str())
                    .bind(owner)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                if let Some(why) = &failure {
                    // The first failure stands; a later one does not
                    // overwrite why the backup was first found wanting.
                    sqlx::query(
                        "UPDATE backups SET verification_failure = $2 WHERE id = \
                         (SELECT backup_id FROM verifications WHERE id = $1) \
                         AND verification_failure IS NULL",
                    )
                    .bind(&job.record_id)
                    .bind(why.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
            n == 1
        });
        Ok(done)
    }

    /// Saves what an unfinished test restore must undo after a crash
    /// (sealed: it holds an adopted sandbox's own `masterauth`).
    pub async fn set_verification_detail(
        &self,
        job: &ClaimedJob,
        owner: &str,
        detail: &str,
    ) -> Result<bool> {
        self.set_sealed_detail(Lane::Verifications, job, owner, detail)
            .await
    }

    /// The crash-recovery state an unfinished test restore wrote, opened.
    pub async fn verification_detail(&self, id: &str) -> Result<Option<String>> {
        self.sealed_detail(Lane::Verifications, id).await
    }

    /// True while an unfinished test restore reads this backup.
    pub async fn backup_under_test(&self, backup: &BackupId) -> Result<bool> {
        self.backup_read_by(Lane::Verifications, backup).await
    }

    /// Whether an instance is marked as a sandbox.
    pub async fn is_sandbox(&self, instance: &InstanceId) -> Result<bool> {
        let n: Option<i64> = on_db!(&self.db, pool => sqlx::query_scalar(
            "SELECT sandbox FROM instances WHERE id = $1")
            .bind(instance.as_str())
            .fetch_optional(pool)
            .await)?;
        Ok(n.unwrap_or(0) != 0)
    }

    /// Marks or unmarks a sandbox. Marking only lands on an instance with
    /// no backup policy and no backup record (checked in the statement, so
    /// a policy or backup added at the same moment cannot slip through).
    /// False if refused.
    pub async fn set_sandbox(&self, instance: &InstanceId, on: bool, now: Millis) -> Result<bool> {
        let sql = if on {
            "UPDATE instances SET sandbox = 1, updated_at = $2 WHERE id = $1 AND deleted_at IS NULL \
             AND policy IS NULL AND NOT EXISTS (SELECT 1 FROM backups WHERE backups.instance_id = $1)"
        } else {
            "UPDATE instances SET sandbox = 0, updated_at = $2 WHERE id = $1 AND deleted_at IS NULL"
        };
        let n = on_db!(&self.db, pool => sqlx::query(sql)
            .bind(instance.as_str())
            .bind(now)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Whether the instance has any backup record.
    pub async fn has_backups(&self, instance: &InstanceId) -> Result<bool> {
        let n: i64 = on_db!(&self.db, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT 1 FROM backups WHERE instance_id = $1 LIMIT 1) b")
            .bind(instance.as_str())
            .fetch_one(pool)
            .await)?;
        Ok(n > 0)
    }

    /// The instance's test-restore policy.
    pub async fn verification_policy(
        &self,
        instance: &InstanceId,
    ) -> Result<Option<VerificationPolicy>> {
        let p: Option<Option<String>> = on_db!(&self.db, pool => sqlx::query_scalar(
            "SELECT verification_policy FROM instances WHERE id = $1")
            .bind(instance.as_str())
            .fetch_optional(pool)
            .await)?;
        Ok(p.flatten().and_then(|s| serde_json::from_str(&s).ok()))
    }

    pub async fn set_verification_policy(
        &self,
        instance: &InstanceId,
        policy: &VerificationPolicy,
        now: Millis,
    ) -> Result<bool> {
        let json = serde_json::to_string(policy)
            .map_err(|e| super::CatalogError::Corrupt(format!("policy: {e}")))?;
        let n = on_db!(&self.db, pool => sqlx::query(
            "UPDATE instances SET verification_policy = $2, updated_at = $3 WHERE id = $1 AND deleted_at IS NULL")
            .bind(instance.as_str())
            .bind(json)
            .bind(now)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Live instances with an enabled test-restore policy, with it.
    pub async fn verification_policies(&self) -> Result<Vec<(InstanceId, VerificationPolicy)>> {
        let rows: Vec<(String, String)> = on_db!(&self.db, pool => sqlx::query_as(
            "SELECT id, verification_policy FROM instances \
             WHERE deleted_at IS NULL AND verification_policy IS NOT NULL")
            .fetch_all(pool)
            .await)?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, p)| {
                let p: VerificationPolicy = serde_json::from_str(&p).ok()?;
                p.enabled.then(|| (InstanceId::from_stored(id), p))
            })
            .collect())
    }

    /// The instance's newest succeeded backup created before `before`.
    pub async fn newest_succeeded_backup(
        &self,
        instance: &InstanceId,
        before: Millis,
    ) -> Result<Option<BackupId>> {
        let id: Option<String> = on_db!(&self.db, pool => sqlx::query_scalar(
            "SELECT id FROM backups WHERE instance_id = $1 AND status = 'succeed' AND created_at <= $2 \
             ORDER BY created_at DESC LIMIT 1")
            .bind(instance.as_str())
            .bind(before)
            .fetch_optional(pool)
            .await)?;
        Ok(id.map(BackupId::from_stored))
    }

    /// Claims a test-restore window for this node: true for exactly one
    /// claimer across replicas and restarts (the primary key).
    pub async fn claim_verification_window(
        &self,
        instance: &InstanceId,
        start: Millis,
        end: Millis,
        now: Millis,
    ) -> Result<bool> {
        let res = on_db!(&self.db, pool => sqlx::query(
            "INSERT INTO verification_windows (instance_id, window_start, window_end, state, verification_id, updated_at) \
             VALUES ($1, $2, $3, 'claimed', NULL, $4)")
            .bind(instance.as_str())
            .bind(start)
            .bind(end)
            .bind(now)
            .execute(pool)
            .await.map(|_| ()));
        match res {
            Ok(()) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Records how a claimed window ended (`started` with its test
    /// restore, or `none`/`busy`).
    pub async fn settle_verification_window(
        &self,
        instance: &InstanceId,
        start: Millis,
        state: &str,
        verification: Option<&VerificationId>,
        now: Millis,
    ) -> Result<()> {
        on_db!(&self.db, pool => sqlx::query(
            "UPDATE verification_windows SET state = $3, verification_id = $4, updated_at = $5 \
             WHERE instance_id = $1 AND window_start = $2")
            .bind(instance.as_str())
            .bind(start)
            .bind(state)
            .bind(verification.map(|v| v.as_str().to_owned()))
            .bind(now)
            .execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Per live instance, the time its newest passed test restore finished.
    pub async fn last_passed_verifications(&self) -> Result<Vec<(InstanceId, Millis)>> {
        let rows: Vec<(String, Option<i64>)> = on_db!(&self.db, pool => sqlx::query_as(
            "SELECT i.id, (SELECT MAX(v.finished_at) FROM verifications v \
               WHERE v.instance_id = i.id AND v.status = 'passed') \
             FROM instances i WHERE i.deleted_at IS NULL")
            .fetch_all(pool)
            .await)?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, t)| Some((InstanceId::from_stored(id), t?)))
            .collect())
    }
}

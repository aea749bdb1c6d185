//! What `GET /metrics` reads from the catalog, so that every replica
//! reports the same: queued jobs, and per live instance its policy and the
//! times of its newest succeeded and failed backup and restore.
//!
//! A scrape costs two statements: a count over the unfinished jobs
//! (`jobs_by_state`), and one pass over the live instances with four
//! single-probe subqueries each (`backups_by_instance_status`,
//! `restores_by_instance_status`, migration 0007).

use super::{on_db, Catalog, Result};
use crate::model::{BackupPolicy, InstanceId, Millis};

/// One live instance as a scrape sees it (no connection, no password).
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceStats {
    pub id: InstanceId,
    /// `None` without a policy (or with one the catalog cannot read).
    pub policy: Option<BackupPolicy>,
    /// When its newest succeeded backup finished (still `succeed`: not
    /// deleted or expired).
    pub backup_succeeded: Option<Millis>,
    /// When its newest failed backup was recorded.
    pub backup_failed: Option<Millis>,
    pub restore_succeeded: Option<Millis>,
    pub restore_failed: Option<Millis>,
}

const NEWEST: &str = "SELECT i.id, i.policy, \
     (SELECT MAX(b.updated_at) FROM backups b WHERE b.instance_id = i.id AND b.status = 'succeed'), \
     (SELECT MAX(b.updated_at) FROM backups b WHERE b.instance_id = i.id AND b.status = 'failed'), \
     (SELECT MAX(r.updated_at) FROM restores r WHERE r.instance_id = i.id AND r.status = 'succeed'), \
     (SELECT MAX(r.updated_at) FROM restores r WHERE r.instance_id = i.id AND r.status = 'failed') \
     FROM instances i WHERE i.deleted_at IS NULL ORDER BY i.id";

type StatsRow = (
    String,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

impl Catalog {
    /// Every live instance with its policy and newest outcomes.
    pub async fn instance_stats(&self) -> Result<Vec<InstanceStats>> {
        let rows: Vec<StatsRow> =
            on_db!(&self.db, pool => sqlx::query_as(NEWEST).fetch_all(pool).await)?;
        Ok(rows
            .into_iter()
            .map(|(id, policy, bs, bf, rs, rf)| {
                let policy = policy.and_then(|p| match serde_json::from_str(&p) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        tracing::warn!(instance = %id, error = %e, "unreadable backup policy");
                        None
                    }
                });
                InstanceStats {
                    id: InstanceId::from_stored(id),
                    policy,
                    backup_succeeded: bs,
                    backup_failed: bf,
                    restore_succeeded: rs,
                    restore_failed: rf,
                }
            })
            .collect())
    }

    /// Jobs waiting for a runner: queued, or running under a lapsed lease
    /// (their runner died; another will take them up).
    pub async fn waiting_jobs(&self, now: Millis) -> Result<i64> {
        let n: i64 = on_db!(&self.db, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE state = 'queued' \
             OR (state = 'running' AND lease_until < $1)")
            .bind(now)
            .fetch_one(pool)
            .await)?;
        Ok(n)
    }
}

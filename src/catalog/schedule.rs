//! Planned backup windows and expiry: what the scheduler asks of the store.
//!
//! A window is claimed by inserting `(instance_id, window_start)`; the
//! primary key makes the claim exactly-once across restarts and replicas.

use super::records::Record;
use super::{is_unique_violation, on_db, Arg, Catalog, Result};
use crate::model::{BackupId, BackupRecord, Instance, InstanceId, Millis};

/// A window's row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowRow {
    pub instance_id: InstanceId,
    pub start: Millis,
    pub end: Millis,
    pub state: String,
    pub backup_id: Option<String>,
}

impl Catalog {
    /// Live instances that have a backup policy.
    pub async fn instances_with_policy(&self) -> Result<Vec<Instance>> {
        let sql = format!(
            "SELECT {} FROM instances WHERE deleted_at IS NULL AND policy IS NOT NULL",
            super::INSTANCE_COLUMNS
        );
        let rows: Vec<super::InstanceRow> =
            on_db!(&self.db, pool => sqlx::query_as(&sql).fetch_all(pool).await)?;
        // An instance whose password cannot be opened is skipped (and
        // logged), not a reason to stop scheduling every other one.
        rows.into_iter()
            .map(|r| r.into_instance(self.keys()))
            .filter(|r| !matches!(r, Err(super::CatalogError::Secret(_))))
            .collect()
    }

    /// Claims the window (state `pending`) unless it already has a row;
    /// returns the row as it now stands.
    pub async fn claim_window(
        &self,
        instance: &InstanceId,
        start: Millis,
        end: Millis,
        now: Millis,
    ) -> Result<WindowRow> {
        self.insert_window(instance, start, end, "pending", now)
            .await?;
        let row: (String, i64, i64, String, Option<String>) = on_db!(&self.db, pool => sqlx::query_as(
            "SELECT instance_id, window_start, window_end, state, backup_id FROM backup_windows \
             WHERE instance_id = $1 AND window_start = $2")
            .bind(instance.as_str())
            .bind(start)
            .fetch_one(pool)
            .await)?;
        Ok(WindowRow {
            instance_id: InstanceId::from_stored(row.0),
            start: row.1,
            end: row.2,
            state: row.3,
            backup_id: row.4,
        })
    }

    /// Records a window that was never claimed because the service was not
    /// running during it; true if this call recorded it.
    pub async fn record_skipped_window(
        &self,
        instance: &InstanceId,
        start: Millis,
        end: Millis,
        now: Millis,
    ) -> Result<bool> {
        self.insert_window(instance, start, end, "skipped", now)
            .await
    }

    /// Inserts a window row in `state`; false if the window already has
    /// one (claimed, or recorded, by another node or an earlier tick).
    async fn insert_window(
        &self,
        instance: &InstanceId,
        start: Millis,
        end: Millis,
        state: &str,
        now: Millis,
    ) -> Result<bool> {
        let res = on_db!(&self.db, pool => sqlx::query(
            "INSERT INTO backup_windows (instance_id, window_start, window_end, state, backup_id, updated_at) \
             VALUES ($1, $2, $3, $4, NULL, $5)")
            .bind(instance.as_str())
            .bind(start)
            .bind(end)
            .bind(state)
            .bind(now)
            .execute(pool)
            .await.map(|_| ()));
        match res {
            Ok(()) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Moves a window from one of `from` states to `to`; false if another
    /// node (or an earlier tick) moved it first. A window stuck in
    /// `starting` for a minute (its node died) counts as `pending`.
    pub async fn move_window(
        &self,
        instance: &InstanceId,
        start: Millis,
        from: &str,
        to: &str,
        backup: Option<&BackupId>,
        now: Millis,
    ) -> Result<bool> {
        let n = on_db!(&self.db, pool => sqlx::query(
            "UPDATE backup_windows SET state = $4, backup_id = COALESCE($5, backup_id), updated_at = $6 \
             WHERE instance_id = $1 AND window_start = $2 \
             AND (state = $3 OR ($3 = 'pending' AND state = 'starting' AND updated_at < $6 - 60000))")
            .bind(instance.as_str())
            .bind(start)
            .bind(from)
            .bind(to)
            .bind(backup.map(|b| b.as_str().to_owned()))
            .bind(now)
            .execute(pool)
            .await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Claimed windows still waiting for their instance after they closed.
    pub async fn pending_windows_ended(&self, now: Millis) -> Result<Vec<WindowRow>> {
        let rows: Vec<(String, i64, i64, String, Option<String>)> = on_db!(&self.db, pool => sqlx::query_as(
            "SELECT instance_id, window_start, window_end, state, backup_id FROM backup_windows \
             WHERE state IN ('pending', 'starting') AND window_end <= $1")
            .bind(now)
            .fetch_all(pool)
            .await)?;
        Ok(rows
            .into_iter()
            .map(|r| WindowRow {
                instance_id: InstanceId::from_stored(r.0),
                start: r.1,
                end: r.2,
                state: r.3,
                backup_id: r.4,
            })
            .collect())
    }

    /// Succeeded backups whose expiry time has passed.
    pub async fn due_expiries(&self, now: Millis, limit: i64) -> Result<Vec<BackupRecord>> {
        let sql = format!(
            "SELECT {} FROM backups WHERE status = 'succeed' AND expires_at IS NOT NULL AND expires_at < $1 \
             ORDER BY expires_at LIMIT $2",
            <BackupRecord as Record>::COLUMNS
        );
        self.records(&sql, &[Arg::Int(Some(now)), Arg::Int(Some(limit))])
            .await
    }

    /// The time a backup expires, if it does.
    pub async fn backup_expiry(&self, id: &BackupId) -> Result<Option<Millis>> {
        let e: Option<Option<i64>> = on_db!(&self.db, pool =>
            sqlx::query_scalar("SELECT expires_at FROM backups WHERE id = $1").bind(id.as_str()).fetch_optional(pool).await)?;
        Ok(e.flatten())
    }
}

//! Point-in-time recovery's metadata: policies, capture leases, bases,
//! log segments, live links and restores to an instant (migrations 0010–0012).
//!
//! A segment or base is visible only once its row exists, and its row is
//! inserted only after its object is completely stored: a reader of these
//! tables never meets a file that is not whole.

use super::{on_db, Catalog, Result};
use crate::model::{InstanceId, Millis, ProjectId};

/// An instance's PITR policy as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PitrPolicy {
    pub instance_id: InstanceId,
    pub project_id: ProjectId,
    pub enabled: bool,
    /// Minutes between bases (5–120).
    pub interval_min: i64,
    /// Days PITR data is kept (1–7).
    pub keep_days: i64,
}

/// A stored base: one shard's RDB standing at `(repl_id, repl_offset)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseRow {
    pub id: String,
    pub instance_id: InstanceId,
    pub shard: String,
    /// The store prefix of its directory (a backup-shaped directory with a
    /// manifest).
    pub prefix: String,
    pub file_name: String,
    pub repl_id: String,
    pub repl_offset: i64,
    pub taken_at: Millis,
    /// From this instant on, every write the master had made is in the
    /// base or in the log after it.
    pub ready_at: Millis,
    pub size: i64,
    /// The base's manifest (JSON), as stored beside it.
    pub manifest: String,
    /// A backup of the instance serving as a base (`pitr::bases`), not
    /// a row of `pitr_bases`: its files are the backup's, kept or removed
    /// by the backup's own life, never by PITR retention.
    pub from_backup: bool,
}

/// A complete log segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentRow {
    pub instance_id: InstanceId,
    pub shard: String,
    pub repl_id: String,
    /// Stream offsets `[start_offset, end_offset)`.
    pub start_offset: i64,
    pub end_offset: i64,
    pub first_at: Millis,
    pub last_at: Millis,
    /// The database selected at the segment's first byte (-1: unknown).
    pub start_db: i64,
    pub end_db: i64,
    /// Stream bytes in the object (the rest is its time index).
    pub data_len: i64,
    pub size: i64,
    pub blake3: String,
    pub object_key: String,
    /// The first segment after the link resumed: the writes made while no
    /// link was up arrive in it, stamped when they arrived.
    pub resumed: bool,
    /// The latest instant the link had received everything up to
    /// `end_offset`: `last_at`, moved on while the link stays idle.
    pub covered_until: Millis,
}

/// Where a live capture link stands: everything received up to
/// `covered_at` is in segments ending at `end_offset` of `repl_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkRow {
    pub shard: String,
    pub repl_id: String,
    pub end_offset: i64,
    pub covered_at: Millis,
}

pub(super) const SEGMENT_COLUMNS: &str =
    "instance_id, shard, repl_id, start_offset, end_offset, first_at, \
    last_at, start_db, end_db, data_len, size, blake3, object_key, resumed, covered_until";
const BASE_COLUMNS: &str = "id, instance_id, shard, prefix, file_name, repl_id, repl_offset, \
    taken_at, ready_at, size, manifest";

type SegmentTuple = (
    String,
    String,
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    String,
    String,
    i64,
    i64,
);
type BaseTuple = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    i64,
    i64,
    String,
);

fn segment(t: SegmentTuple) -> SegmentRow {
    SegmentRow {
        instance_id: InstanceId::from_stored(t.0),
        shard: t.1,
        repl_id: t.2,
        start_offset: t.3,
        end_offset: t.4,
        first_at: t.5,
        last_at: t.6,
        start_db: t.7,
        end_db: t.8,
        data_len: t.9,
        size: t.10,
        blake3: t.11,
        object_key: t.12,
        resumed: t.13 != 0,
        covered_until: t.14,
    }
}

fn base(t: BaseTuple) -> BaseRow {
    BaseRow {
        id: t.0,
        instance_id: InstanceId::from_stored(t.1),
        shard: t.2,
        prefix: t.3,
        file_name: t.4,
        repl_id: t.5,
        repl_offset: t.6,
        taken_at: t.7,
        ready_at: t.8,
        size: t.9,
        manifest: t.10,
        from_backup: false,
    }
}

impl Catalog {
    /// Stores (inserts or replaces) an instance's PITR policy.
    pub async fn set_pitr_policy(&self, p: &PitrPolicy, now: Millis) -> Result<()> {
        on_db!(&self.db, pool => sqlx::query(
            "INSERT INTO pitr_policies (instance_id, project_id, enabled, interval_min, keep_days, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (instance_id) DO UPDATE SET enabled = $3, interval_min = $4, keep_days = $5, updated_at = $6")
            .bind(p.instance_id.as_str())
            .bind(p.project_id.as_str())
            .bind(i64::from(p.enabled))
            .bind(p.interval_min)
            .bind(p.keep_days)
            .bind(now)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn pitr_policy(&self, instance: &InstanceId) -> Result<Option<PitrPolicy>> {
        let row: Option<(String, String, i64, i64, i64)> = on_db!(&self.db, pool => sqlx::query_as(
            "SELECT instance_id, project_id, enabled, interval_min, keep_days FROM pitr_policies WHERE instance_id = $1")
            .bind(instance.as_str())
            .fetch_optional(pool).await)?;
        Ok(row.map(policy))
    }

    /// Every policy with data to keep or capture: enabled ones, and
    /// disabled ones whose data retention still has to remove.
    pub async fn pitr_policies(&self) -> Result<Vec<PitrPolicy>> {
        let rows: Vec<(String, String, i64, i64, i64)> = on_db!(&self.db, pool => sqlx::query_as(
            "SELECT p.instance_id, p.project_id, p.enabled, p.interval_min, p.keep_days FROM pitr_policies p \
             JOIN instances i ON i.id = p.instance_id WHERE i.deleted_at IS NULL ORDER BY p.instance_id")
            .fetch_all(pool).await)?;
        Ok(rows.into_iter().map(policy).collect())
    }

    /// Takes or renews the capture lease of `instance` for `owner`: free,
    /// lapsed, or already ours. False when another live holder has it.
    pub async fn claim_pitr_lease(
        &self,
        instance: &InstanceId,
        owner: &str,
        now: Millis,
        lease_until: Millis,
    ) -> Result<bool> {
        let n = on_db!(&self.db, pool => sqlx::query(
            "INSERT INTO pitr_leases (instance_id, owner, lease_until) VALUES ($1, $2, $3) \
             ON CONFLICT (instance_id) DO UPDATE SET owner = $2, lease_until = $3 \
             WHERE pitr_leases.owner = $2 OR pitr_leases.lease_until < $4")
            .bind(instance.as_str())
            .bind(owner)
            .bind(lease_until)
            .bind(now)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Gives the lease up (capture stopped on purpose).
    pub async fn release_pitr_lease(&self, instance: &InstanceId, owner: &str) -> Result<()> {
        on_db!(&self.db, pool => sqlx::query(
            "DELETE FROM pitr_leases WHERE instance_id = $1 AND owner = $2")
            .bind(instance.as_str())
            .bind(owner)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn insert_pitr_base(&self, b: &BaseRow) -> Result<()> {
        on_db!(&self.db, pool => sqlx::query(&format!(
            "INSERT INTO pitr_bases ({BASE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"))
            .bind(&b.id)
            .bind(b.instance_id.as_str())
            .bind(&b.shard)
            .bind(&b.prefix)
            .bind(&b.file_name)
            .bind(&b.repl_id)
            .bind(b.repl_offset)
            .bind(b.taken_at)
            .bind(b.ready_at)
            .bind(b.size)
            .bind(&b.manifest)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The capture's bases, oldest first per shard. A base standing inside
    /// a segment (taken over another link) is ready no earlier than that
    /// segment's last byte: the writes before its offset may have reached
    /// the capture link that late. One statement, one index seek per base.
    pub async fn pitr_bases(&self, instance: &InstanceId) -> Result<Vec<BaseRow>> {
        let rows: Vec<BaseTuple> = on_db!(&self.db, pool => sqlx::query_as(
            "SELECT b.id, b.instance_id, b.shard, b.prefix, b.file_name, b.repl_id, b.repl_offset, \
             b.taken_at, COALESCE((SELECT CASE WHEN s.end_offset > b.repl_offset \
               AND s.last_at > b.ready_at THEN s.last_at END FROM pitr_segments s \
               WHERE s.instance_id = b.instance_id AND s.shard = b.shard AND s.repl_id = b.repl_id \
               AND s.start_offset < b.repl_offset ORDER BY s.start_offset DESC LIMIT 1), b.ready_at), \
             b.size, b.manifest FROM pitr_bases b WHERE b.instance_id = $1 ORDER BY b.shard, b.taken_at")
            .bind(instance.as_str())
            .fetch_all(pool).await)?;
        Ok(rows.into_iter().map(base).collect())
    }

    /// The last receipt time of the segment of `shard` that holds stream
    /// offset `offset` of history `repl_id` strictly inside it, if any.
    pub async fn pitr_segment_around(
        &self,
        instance: &InstanceId,
        shard: &str,
        repl_id: &str,
        offset: i64,
    ) -> Result<Option<Millis>> {
        let row: Option<(i64, i64)> = on_db!(&self.db, pool => sqlx::query_as(
            "SELECT end_offset, last_at FROM pitr_segments WHERE instance_id = $1 AND shard = $2 \
             AND repl_id = $3 AND start_offset < $4 ORDER BY start_offset DESC LIMIT 1")
            .bind(instance.as_str())
            .bind(shard)
            .bind(repl_id)
            .bind(offset)
            .fetch_optional(pool).await)?;
        Ok(row.filter(|(end, _)| *end > offset).map(|(_, at)| at))
    }

    /// Segments of `shard` whose last byte arrived at or after `since`
    /// and whose first arrived at or before `until`, in receipt order:
    /// what a restore replays after a base taken at `since` (read through
    /// the `(instance_id, shard, last_at)` index).
    pub async fn pitr_segments_between(
        &self,
        instance: &InstanceId,
        shard: &str,
        since: Millis,
        until: Millis,
    ) -> Result<Vec<SegmentRow>> {
        let rows: Vec<SegmentTuple> = on_db!(&self.db, pool => sqlx::query_as(&format!(
            "SELECT {SEGMENT_COLUMNS} FROM pitr_segments WHERE instance_id = $1 AND shard = $2 \
             AND last_at >= $3 AND first_at <= $4 ORDER BY first_at, start_offset"))
            .bind(instance.as_str())
            .bind(shard)
            .bind(since)
            .bind(until)
            .fetch_all(pool).await)?;
        Ok(rows.into_iter().map(segment).collect())
    }

    /// Which of `starts` are the start offsets of segment rows of
    /// `(shard, repl_id)`: primary-key lookups, for the orphan sweep.
    pub async fn pitr_segment_starts(
        &self,
        instance: &InstanceId,
        shard: &str,
        repl_id: &str,
        starts: &[i64],
    ) -> Result<Vec<i64>> {
        if starts.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<String> = (0..starts.len()).map(|i| format!("${}", i + 4)).collect();
        let sql = format!(
            "SELECT start_offset FROM pitr_segments WHERE instance_id = $1 AND shard = $2 \
             AND repl_id = $3 AND start_offset IN ({})",
            list.join(", ")
        );
        let found: Vec<i64> = on_db!(&self.db, pool => {
            let mut q = sqlx::query_scalar(&sql)
                .bind(instance.as_str())
                .bind(shard)
                .bind(repl_id);
            for s in starts {
                q = q.bind(*s);
            }
            q.fetch_all(pool).await
        })?;
        Ok(found)
    }

    /// Up to `limit` segments of `shard` whose last byte arrived before
    /// `before`: what retention removes, a bounded batch at a time.
    pub async fn pitr_segments_before(
        &self,
        instance: &InstanceId,
        shard: &str,
        before: Millis,
        limit: i64,
    ) -> Result<Vec<SegmentRow>> {
        let rows: Vec<SegmentTuple> = on_db!(&self.db, pool => sqlx::query_as(&format!(
            "SELECT {SEGMENT_COLUMNS} FROM pitr_segments WHERE instance_id = $1 AND shard = $2 \
             AND last_at < $3 ORDER BY last_at LIMIT $4"))
            .bind(instance.as_str())
            .bind(shard)
            .bind(before)
            .bind(limit)
            .fetch_all(pool).await)?;
        Ok(rows.into_iter().map(segment).collect())
    }

    /// `(id, manifest JSON)` of the instance's backups that may serve as
    /// PITR bases: succeeded (files still stored), with a manifest, and
    /// not found wanting by a test restore. Read through the
    /// `(instance_id, status, updated_at)` index.
    pub async fn pitr_backup_manifests(
        &self,
        instance: &InstanceId,
    ) -> Result<Vec<(String, String)>> {
        let rows: Vec<(String, String)> = on_db!(&self.db, pool => sqlx::query_as(
            "SELECT id, manifest FROM backups WHERE instance_id = $1 AND status = 'succeed' \
             AND verification_failure IS NULL AND manifest IS NOT NULL ORDER BY updated_at")
            .bind(instance.as_str())
            .fetch_all(pool).await)?;
        Ok(rows)
    }

    pub async fn pitr_links(&self, instance: &InstanceId) -> Result<Vec<LinkRow>> {
        let rows: Vec<(String, String, i64, i64)> = on_db!(&self.db, pool => sqlx::query_as(
            "SELECT shard, repl_id, end_offset, covered_at FROM pitr_links WHERE instance_id = $1 ORDER BY shard")
            .bind(instance.as_str())
            .fetch_all(pool).await)?;
        Ok(rows
            .into_iter()
            .map(|(shard, repl_id, end_offset, covered_at)| LinkRow {
                shard,
                repl_id,
                end_offset,
                covered_at,
            })
            .collect())
    }

    /// Every segment of an instance, per shard in receipt order. Reads the
    /// whole log: the service itself reads runs (`pitr_runs`) and bounded
    /// ranges; this is for checking those against the rows.
    pub async fn pitr_segments(&self, instance: &InstanceId) -> Result<Vec<SegmentRow>> {
        let rows: Vec<SegmentTuple> = on_db!(&self.db, pool => sqlx::query_as(&format!(
            "SELECT {SEGMENT_COLUMNS} FROM pitr_segments WHERE instance_id = $1 ORDER BY shard, first_at, start_offset"))
            .bind(instance.as_str())
            .fetch_all(pool).await)?;
        Ok(rows.into_iter().map(segment).collect())
    }

    /// Where the newest segment of `shard` ends: the capture's resume point.
    pub async fn last_pitr_segment(
        &self,
        instance: &InstanceId,
        shard: &str,
    ) -> Result<Option<SegmentRow>> {
        let row: Option<SegmentTuple> = on_db!(&self.db, pool => sqlx::query_as(&format!(
            "SELECT {SEGMENT_COLUMNS} FROM pitr_segments WHERE instance_id = $1 AND shard = $2 \
             ORDER BY last_at DESC, end_offset DESC LIMIT 1"))
            .bind(instance.as_str())
            .bind(shard)
            .fetch_optional(pool).await)?;
        Ok(row.map(segment))
    }

    /// Bytes the instance's PITR data occupies in the store.
    pub async fn pitr_storage(&self, instance: &InstanceId) -> Result<i64> {
        let (a,): (Option<i64>,) = on_db!(&self.db, pool => sqlx::query_as(
            "SELECT CAST(SUM(size) AS BIGINT) FROM pitr_runs WHERE instance_id = $1")
            .bind(instance.as_str())
            .fetch_one(pool).await)?;
        let (b,): (Option<i64>,) = on_db!(&self.db, pool => sqlx::query_as(
            "SELECT CAST(SUM(size) AS BIGINT) FROM pitr_bases WHERE instance_id = $1")
            .bind(instance.as_str())
            .fetch_one(pool).await)?;
        Ok(a.unwrap_or(0) + b.unwrap_or(0))
    }

    /// Removes a base's row (retention; its files go first).
    pub async fn delete_pitr_base(&self, id: &str) -> Result<bool> {
        let n = on_db!(&self.db, pool => sqlx::query("DELETE FROM pitr_bases WHERE id = $1")
            .bind(id)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// The PITR row of a restore about to be queued, and the backups its
    /// pick reads as bases, in one transaction.
    pub async fn insert_pitr_restore(
        &self,
        restore: &str,
        source: &InstanceId,
        at: Millis,
        backups: &[&str],
    ) -> Result<()> {
        on_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO pitr_restores (restore_id, source_instance_id, restore_at) VALUES ($1, $2, $3)")
                .bind(restore)
                .bind(source.as_str())
                .bind(at)
                .execute(&mut *tx).await?;
            for b in backups {
                sqlx::query(RESTORE_BASE_INSERT).bind(restore).bind(*b).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Adds backups a restore to a point in time reads (the job's own
    /// pick, which a newer base may have changed since the API's).
    pub async fn add_pitr_restore_bases(&self, restore: &str, backups: &[&str]) -> Result<()> {
        for b in backups {
            on_db!(&self.db, pool => sqlx::query(RESTORE_BASE_INSERT)
                .bind(restore)
                .bind(*b)
                .execute(pool).await.map(|r| r.rows_affected()))?;
        }
        Ok(())
    }

    /// The instance and instant of a restore to a point in time.
    pub async fn pitr_restore(&self, restore: &str) -> Result<Option<(InstanceId, Millis)>> {
        let row: Option<(String, i64)> = on_db!(&self.db, pool => sqlx::query_as(
            "SELECT source_instance_id, restore_at FROM pitr_restores WHERE restore_id = $1")
            .bind(restore)
            .fetch_optional(pool).await)?;
        Ok(row.map(|(i, at)| (InstanceId::from_stored(i), at)))
    }
}

pub(super) const LINK_UPSERT: &str =
    "INSERT INTO pitr_links (instance_id, shard, repl_id, end_offset, covered_at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (instance_id, shard) DO UPDATE SET repl_id = $3, \
     end_offset = $4, covered_at = $5";

const RESTORE_BASE_INSERT: &str = "INSERT INTO pitr_restore_bases (restore_id, backup_id) \
     VALUES ($1, $2) ON CONFLICT (restore_id, backup_id) DO NOTHING";

fn policy((i, p, enabled, interval_min, keep_days): (String, String, i64, i64, i64)) -> PitrPolicy {
    PitrPolicy {
        instance_id: InstanceId::from_stored(i),
        project_id: ProjectId::from_stored(p),
        enabled: enabled != 0,
        interval_min,
        keep_days,
    }
}

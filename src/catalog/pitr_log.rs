//! The PITR log as the capture writes it and retention removes it:
//! segment rows, a link's coverage, and the runs (`pitr_runs`, migration
//! 0011) kept in the same transactions, so the periods and a restore's
//! pick read a handful of runs instead of every segment.
//!
//! Every upkeep of a shard's runs begins with a write (SQLite then holds
//! its one write lock) and, on PostgreSQL, with the shard's advisory lock
//! (`lock_runs!`). Anything but the capture's own course (a segment out
//! of receipt order, a removal inside a run) folds the shard's runs again
//! from its segments (`refold_runs!`).

use super::pitr::{LINK_UPSERT, SEGMENT_COLUMNS};
use super::{on_db, Catalog, Result, SegmentRow};
use crate::model::{InstanceId, Millis};

/// Takes, on PostgreSQL, the lock that serialises the upkeep of one
/// shard's runs until the transaction ends: the capture extending a run
/// and retention removing its first segment read the run before they
/// write it, and under READ COMMITTED two such transactions could each
/// miss the other's change. SQLite writes one transaction at a time, and
/// every upkeep begins with a write.
macro_rules! lock_runs {
    ($self:expr, $tx:ident, $instance:expr, $shard:expr) => {
        if $self.engine() == "postgres" {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))")
                .bind($instance)
                .bind($shard)
                .execute(&mut *$tx)
                .await?;
        }
    };
}

/// Folds the shard's runs again from its segments, inside the
/// transaction `$tx`.
macro_rules! refold_runs {
    ($tx:ident, $instance:expr, $shard:expr) => {{
        sqlx::query(RUNS_DELETE)
            .bind($instance)
            .bind($shard)
            .execute(&mut *$tx)
            .await?;
        sqlx::query(RUNS_FOLD)
            .bind($instance)
            .bind($shard)
            .execute(&mut *$tx)
            .await?;
    }};
}

impl Catalog {
    /// The instance's segments folded into runs: consecutive segments of
    /// one shard (in receipt order) where each starts where the previous
    /// ends, in the same history, and none follows a resume. A run reads
    /// as one segment from its first's start to its last's end, with the
    /// first's `first_at` and `resumed`, the last's `last_at` and
    /// `covered_until` (`blake3`, `object_key` empty, `size` and
    /// `data_len` summed). What periods are made of: a week of segments
    /// cut every 250 ms is millions of rows but a handful of runs, kept in
    /// `pitr_runs` as segments come and go (migration 0011), so reading
    /// them costs the runs, not the segments.
    pub async fn pitr_runs(&self, instance: &InstanceId) -> Result<Vec<SegmentRow>> {
        type Run = (String, String, i64, i64, i64, i64, i64, i64, i64, i64);
        let rows: Vec<Run> = on_db!(&self.db, pool => sqlx::query_as(
            "SELECT shard, repl_id, start_offset, end_offset, first_at, last_at, resumed, \
             covered_until, data_len, size FROM pitr_runs WHERE instance_id = $1 \
             ORDER BY shard, first_at, start_offset")
            .bind(instance.as_str())
            .fetch_all(pool).await)?;
        Ok(rows
            .into_iter()
            .map(|t| SegmentRow {
                instance_id: instance.clone(),
                shard: t.0,
                repl_id: t.1,
                start_offset: t.2,
                end_offset: t.3,
                first_at: t.4,
                last_at: t.5,
                start_db: -1,
                end_db: -1,
                data_len: t.8,
                size: t.9,
                blake3: String::new(),
                object_key: String::new(),
                resumed: t.6 != 0,
                covered_until: t.7,
            })
            .collect())
    }

    /// The runs of `shard` folded again from its segments: the way back
    /// when a segment arrives out of receipt order or one is removed from
    /// inside a run (neither happens in the capture's own course), and
    /// what the tests check the kept runs against.
    pub async fn rebuild_pitr_runs(&self, instance: &InstanceId, shard: &str) -> Result<()> {
        on_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            lock_runs!(self, tx, instance.as_str(), shard);
            refold_runs!(tx, instance.as_str(), shard);
            tx.commit().await?;
        });
        Ok(())
    }

    /// Inserts a complete segment's row, extends the shard's newest run
    /// with it (or starts one), and moves the link's position to its end,
    /// in one transaction, if `holder` owns the instance's capture lease;
    /// false (nothing written) once another node has taken it, so a
    /// capture that stalled past its lease cannot write beside the one
    /// that replaced it. The insert comes first: it takes SQLite's write
    /// lock before anything is read.
    pub async fn insert_pitr_segment(
        &self,
        s: &SegmentRow,
        covered_at: Millis,
        holder: &str,
    ) -> Result<bool> {
        let insert = format!(
            "INSERT INTO pitr_segments ({SEGMENT_COLUMNS}) SELECT $1, $2, $3, $4, $5, $6, $7, $8, \
             $9, $10, $11, $12, $13, $14, $15 WHERE EXISTS (SELECT 1 FROM pitr_leases \
             WHERE instance_id = $1 AND owner = $16)"
        );
        let covered = s.covered_until.max(s.last_at);
        let held = on_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            lock_runs!(self, tx, s.instance_id.as_str(), &s.shard);
            let n = sqlx::query(&insert)
                .bind(s.instance_id.as_str())
                .bind(&s.shard)
                .bind(&s.repl_id)
                .bind(s.start_offset)
                .bind(s.end_offset)
                .bind(s.first_at)
                .bind(s.last_at)
                .bind(s.start_db)
                .bind(s.end_db)
                .bind(s.data_len)
                .bind(s.size)
                .bind(&s.blake3)
                .bind(&s.object_key)
                .bind(i64::from(s.resumed))
                .bind(covered)
                .bind(holder)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
            let newest: Option<(String, i64, i64, i64)> = sqlx::query_as(
                "SELECT repl_id, end_offset, tail_first_at, tail_start FROM pitr_runs \
                 WHERE instance_id = $1 AND shard = $2 \
                 ORDER BY tail_first_at DESC, tail_start DESC LIMIT 1")
                .bind(s.instance_id.as_str())
                .bind(&s.shard)
                .fetch_optional(&mut *tx)
                .await?;
            match run_step(newest.as_ref(), s) {
                RunStep::Extend => {
                    sqlx::query(
                        "UPDATE pitr_runs SET end_offset = $4, last_at = CASE WHEN last_at > $5 \
                         THEN last_at ELSE $5 END, covered_until = CASE WHEN covered_until > $6 \
                         THEN covered_until ELSE $6 END, tail_first_at = $7, tail_start = $8, \
                         data_len = data_len + $9, size = size + $10, segments = segments + 1 \
                         WHERE instance_id = $1 AND shard = $2 AND repl_id = $3 AND end_offset = $8")
                        .bind(s.instance_id.as_str())
                        .bind(&s.shard)
                        .bind(&s.repl_id)
                        .bind(s.end_offset)
                        .bind(s.last_at)
                        .bind(covered)
                        .bind(s.first_at)
                        .bind(s.start_offset)
                        .bind(s.data_len)
                        .bind(s.size)
                        .execute(&mut *tx)
                        .await?;
                }
                RunStep::Start => {
                    sqlx::query(
                        "INSERT INTO pitr_runs (instance_id, shard, repl_id, start_offset, end_offset, \
                         first_at, last_at, tail_first_at, tail_start, resumed, covered_until, data_len, \
                         size, segments) VALUES ($1, $2, $3, $4, $5, $6, $7, $6, $4, $8, $9, $10, $11, 1)")
                        .bind(s.instance_id.as_str())
                        .bind(&s.shard)
                        .bind(&s.repl_id)
                        .bind(s.start_offset)
                        .bind(s.end_offset)
                        .bind(s.first_at)
                        .bind(s.last_at)
                        .bind(i64::from(s.resumed))
                        .bind(covered)
                        .bind(s.data_len)
                        .bind(s.size)
                        .execute(&mut *tx)
                        .await?;
                }
                RunStep::Refold => {
                    refold_runs!(tx, s.instance_id.as_str(), &s.shard);
                }
            }
            sqlx::query(LINK_UPSERT)
                .bind(s.instance_id.as_str())
                .bind(&s.shard)
                .bind(&s.repl_id)
                .bind(s.end_offset)
                .bind(covered_at)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            true
        });
        Ok(held)
    }

    /// Says the link is at `end_offset` of `repl_id` and that everything
    /// received up to `covered_at` is stored.
    pub async fn touch_pitr_link(
        &self,
        instance: &InstanceId,
        shard: &str,
        repl_id: &str,
        end_offset: i64,
        covered_at: Millis,
    ) -> Result<()> {
        on_db!(&self.db, pool => sqlx::query(LINK_UPSERT)
            .bind(instance.as_str())
            .bind(shard)
            .bind(repl_id)
            .bind(end_offset)
            .bind(covered_at)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        // The history keeps it too, so a later segment or a restart does
        // not forget that this stretch of time was covered.
        // The segment ending there is the one starting last before it:
        // one index seek, however long the history.
        for sql in [
            "UPDATE pitr_segments SET covered_until = $5 WHERE instance_id = $1 AND shard = $2 \
             AND repl_id = $3 AND end_offset = $4 AND covered_until < $5 AND start_offset = \
             (SELECT start_offset FROM pitr_segments WHERE instance_id = $1 AND shard = $2 \
              AND repl_id = $3 AND start_offset < $4 ORDER BY start_offset DESC LIMIT 1)",
            "UPDATE pitr_runs SET covered_until = $5 WHERE instance_id = $1 AND shard = $2 \
             AND repl_id = $3 AND end_offset = $4 AND covered_until < $5",
        ] {
            on_db!(&self.db, pool => sqlx::query(sql)
                .bind(instance.as_str())
                .bind(shard)
                .bind(repl_id)
                .bind(end_offset)
                .bind(covered_at)
                .execute(pool).await.map(|r| r.rows_affected()))?;
        }
        Ok(())
    }

    /// Removes a segment's row (retention: the row goes first, so no
    /// reader meets a row whose object is gone for long) and takes it out
    /// of its run, in one transaction: retention removes the oldest first,
    /// so the run starts at the next segment; anything else folds the
    /// shard's runs again.
    pub async fn delete_pitr_segment(&self, s: &SegmentRow) -> Result<bool> {
        let removed = on_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            lock_runs!(self, tx, s.instance_id.as_str(), &s.shard);
            let n = sqlx::query(
                "DELETE FROM pitr_segments WHERE instance_id = $1 AND shard = $2 AND repl_id = $3 AND start_offset = $4")
                .bind(s.instance_id.as_str())
                .bind(&s.shard)
                .bind(&s.repl_id)
                .bind(s.start_offset)
                .execute(&mut *tx).await?.rows_affected();
            if n == 1 {
                let run: Option<(i64, i64, i64)> = sqlx::query_as(
                    "SELECT start_offset, end_offset, segments FROM pitr_runs WHERE instance_id = $1 \
                     AND shard = $2 AND repl_id = $3 AND start_offset <= $4 \
                     ORDER BY start_offset DESC LIMIT 1")
                    .bind(s.instance_id.as_str())
                    .bind(&s.shard)
                    .bind(&s.repl_id)
                    .bind(s.start_offset)
                    .fetch_optional(&mut *tx).await?;
                match run {
                    Some((start, _, 1)) if start == s.start_offset => {
                        sqlx::query(
                            "DELETE FROM pitr_runs WHERE instance_id = $1 AND shard = $2 \
                             AND repl_id = $3 AND start_offset = $4")
                            .bind(s.instance_id.as_str())
                            .bind(&s.shard)
                            .bind(&s.repl_id)
                            .bind(start)
                            .execute(&mut *tx).await?;
                    }
                    Some((start, end, _)) if start == s.start_offset && end > s.end_offset => {
                        // The run now starts at the next segment, unless
                        // that one is missing or follows a resume.
                        let next: Option<(i64, i64)> = sqlx::query_as(
                            "SELECT first_at, resumed FROM pitr_segments WHERE instance_id = $1 \
                             AND shard = $2 AND repl_id = $3 AND start_offset = $4")
                            .bind(s.instance_id.as_str())
                            .bind(&s.shard)
                            .bind(&s.repl_id)
                            .bind(s.end_offset)
                            .fetch_optional(&mut *tx).await?;
                        match next {
                            Some((first_at, 0)) => {
                                sqlx::query(
                                    "UPDATE pitr_runs SET start_offset = $5, first_at = $6, resumed = 0, \
                                     data_len = data_len - $7, size = size - $8, segments = segments - 1 \
                                     WHERE instance_id = $1 AND shard = $2 AND repl_id = $3 AND start_offset = $4")
                                    .bind(s.instance_id.as_str())
                                    .bind(&s.shard)
                                    .bind(&s.repl_id)
                                    .bind(start)
                                    .bind(s.end_offset)
                                    .bind(first_at)
                                    .bind(s.data_len)
                                    .bind(s.size)
                                    .execute(&mut *tx).await?;
                            }
                            _ => refold_runs!(tx, s.instance_id.as_str(), &s.shard),
                        }
                    }
                    _ => refold_runs!(tx, s.instance_id.as_str(), &s.shard),
                }
            }
            tx.commit().await?;
            n
        });
        Ok(removed == 1)
    }
}

const RUNS_DELETE: &str = "DELETE FROM pitr_runs WHERE instance_id = $1 AND shard = $2";

/// One shard's runs folded from its segments with window functions (the
/// same fold migration 0011 applies to every shard).
const RUNS_FOLD: &str = "INSERT INTO pitr_runs (instance_id, shard, repl_id, start_offset, \
     end_offset, first_at, last_at, tail_first_at, tail_start, resumed, covered_until, data_len, \
     size, segments) \
     SELECT instance_id, shard, repl_id, MIN(start_offset), MAX(end_offset), MIN(first_at), \
       MAX(last_at), MAX(first_at), MAX(start_offset), MAX(resumed), MAX(covered_until), \
       CAST(SUM(data_len) AS BIGINT), CAST(SUM(size) AS BIGINT), COUNT(*) FROM ( \
       SELECT *, SUM(brk) OVER (ORDER BY first_at, start_offset ROWS UNBOUNDED PRECEDING) AS run \
       FROM ( \
         SELECT instance_id, shard, repl_id, start_offset, end_offset, first_at, last_at, resumed, \
           covered_until, data_len, size, \
           CASE WHEN resumed <> 0 \
             OR LAG(end_offset) OVER w IS NULL OR LAG(end_offset) OVER w <> start_offset \
             OR LAG(repl_id) OVER w <> repl_id THEN 1 ELSE 0 END AS brk \
         FROM pitr_segments WHERE instance_id = $1 AND shard = $2 \
         WINDOW w AS (ORDER BY first_at, start_offset)) a) r \
     GROUP BY instance_id, shard, repl_id, run";

/// What a new segment does to its shard's runs.
#[derive(Debug, PartialEq, Eq)]
enum RunStep {
    /// It continues the newest run: same history, starting where it ends,
    /// not after a resume.
    Extend,
    /// It starts a run of its own after the newest.
    Start,
    /// It does not come after the newest run's last segment in receipt
    /// order: the shard's runs are folded again.
    Refold,
}

/// `newest`: the shard's newest run as `(repl_id, end_offset,
/// tail_first_at, tail_start)`.
fn run_step(newest: Option<&(String, i64, i64, i64)>, s: &SegmentRow) -> RunStep {
    let Some((repl_id, end, tail_at, tail_start)) = newest else {
        return RunStep::Start;
    };
    if (s.first_at, s.start_offset) <= (*tail_at, *tail_start) {
        RunStep::Refold
    } else if !s.resumed && *repl_id == s.repl_id && *end == s.start_offset {
        RunStep::Extend
    } else {
        RunStep::Start
    }
}

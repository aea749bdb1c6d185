//! Backup and restore records: inserting them in `seq` order and listing
//! them with index probes only.

use std::sync::LazyLock;

use super::{bind_args, is_unique_violation, on_db, Arg, Catalog, CatalogError, Db, Result};
use crate::model::{
    compact_utc, BackupFormat, BackupId, BackupRecord, BackupStatus, BackupType, InstanceId,
    JobError, ListQuery, Millis, Page, ProjectId, RestoreFilter, RestoreId, RestoreRecord,
    RestoreStatus,
};

/// What a caller decides about a new backup record; the catalog assigns the
/// rest (sequence, final `created_at`, name).
#[derive(Clone, Debug)]
pub struct NewBackup {
    pub id: BackupId,
    pub instance_id: InstanceId,
    pub project_id: ProjectId,
    pub backup_type: BackupType,
    pub format: BackupFormat,
    pub status: BackupStatus,
    pub period: Option<String>,
    pub remark: String,
    /// Wished creation time; moved forward by up to a few milliseconds if an
    /// older record of the instance already has this time or a later one.
    pub created_at: Millis,
    pub error: Option<JobError>,
    /// How long after its creation an automatic backup expires (fixed when
    /// it is created); `None`: never.
    pub keep_for: Option<Millis>,
}

/// What a caller decides about a new restore record.
#[derive(Clone, Debug)]
pub struct NewRestore {
    pub id: RestoreId,
    pub instance_id: InstanceId,
    pub project_id: ProjectId,
    pub backup_id: BackupId,
    pub backup_name: String,
    pub backup_remark: String,
    pub source_instance_id: InstanceId,
    pub source_instance_name: String,
    pub remark: String,
    pub status: RestoreStatus,
    pub created_at: Millis,
    pub error: Option<JobError>,
    /// Only the keys matching it, over their namesakes, without a flush.
    pub filter: Option<RestoreFilter>,
}

/// A record type read by column position: the columns of
/// [`Record::COLUMNS`], in that order, from column `at` of a row of either
/// engine. Every read of a record (by id, listings, the scheduler's) selects
/// these columns and decodes them here, so there is one decoder per record.
pub(crate) trait Record: Sized + Send + 'static {
    const COLUMNS: &'static str;

    fn decode<'r>(row: impl Columns<'r>, at: usize) -> Result<Self>;

    fn created_at(&self) -> Millis;
}

/// A row of either engine, read by column position; text is borrowed from
/// the row, so a record's strings are copied once, into the record.
pub(crate) trait Columns<'r>: Copy {
    fn text(self, i: usize) -> Result<&'r str>;
    fn text_or_null(self, i: usize) -> Result<Option<&'r str>>;
    fn int(self, i: usize) -> Result<i64>;
    fn int_or_null(self, i: usize) -> Result<Option<i64>>;
}

/// Rows read through sqlx: PostgreSQL always, SQLite outside listings.
macro_rules! sqlx_columns {
    ($row:ty) => {
        impl<'r> Columns<'r> for &'r $row {
            fn text(self, i: usize) -> Result<&'r str> {
                Ok(sqlx::Row::try_get(self, i)?)
            }
            fn text_or_null(self, i: usize) -> Result<Option<&'r str>> {
                Ok(sqlx::Row::try_get(self, i)?)
            }
            fn int(self, i: usize) -> Result<i64> {
                Ok(sqlx::Row::try_get(self, i)?)
            }
            fn int_or_null(self, i: usize) -> Result<Option<i64>> {
                Ok(sqlx::Row::try_get(self, i)?)
            }
        }
    };
}
sqlx_columns!(sqlx::postgres::PgRow);
sqlx_columns!(sqlx::sqlite::SqliteRow);

/// Rows of the SQLite listing reads (see `reads`).
impl<'r> Columns<'r> for &'r rusqlite::Row<'_> {
    fn text(self, i: usize) -> Result<&'r str> {
        lite(i, self.get_ref(i)?.as_str())
    }
    fn text_or_null(self, i: usize) -> Result<Option<&'r str>> {
        lite(i, self.get_ref(i)?.as_str_or_null())
    }
    fn int(self, i: usize) -> Result<i64> {
        lite(i, self.get_ref(i)?.as_i64())
    }
    fn int_or_null(self, i: usize) -> Result<Option<i64>> {
        lite(i, self.get_ref(i)?.as_i64_or_null())
    }
}

fn lite<T>(i: usize, v: rusqlite::types::FromSqlResult<T>) -> Result<T> {
    v.map_err(|e| CatalogError::Corrupt(format!("record column {i}: {e}")))
}

impl Record for BackupRecord {
    const COLUMNS: &'static str = "id, instance_id, project_id, name, backup_type, format, \
         status, progress, size, period, remark, created_at, execution_at, updated_at, error_code, verification_failure";

    fn decode<'r>(r: impl Columns<'r>, at: usize) -> Result<Self> {
        let id = r.text(at)?;
        let bad = |what: &str| CatalogError::Corrupt(format!("backup {id}: {what}"));
        Ok(BackupRecord {
            id: BackupId::from_stored(id.to_owned()),
            instance_id: InstanceId::from_stored(r.text(at + 1)?.to_owned()),
            project_id: ProjectId::parse(r.text(at + 2)?).ok_or_else(|| bad("project"))?,
            name: r.text(at + 3)?.to_owned(),
            backup_type: BackupType::parse(r.text(at + 4)?).ok_or_else(|| bad("type"))?,
            format: BackupFormat::parse(r.text(at + 5)?).ok_or_else(|| bad("format"))?,
            status: BackupStatus::parse(r.text(at + 6)?).ok_or_else(|| bad("status"))?,
            progress: r.int(at + 7)?,
            size: r.int(at + 8)?,
            period: r.text_or_null(at + 9)?.map(str::to_owned),
            remark: r.text(at + 10)?.to_owned(),
            created_at: r.int(at + 11)?,
            execution_at: r.int_or_null(at + 12)?,
            updated_at: r.int(at + 13)?,
            error: r.text_or_null(at + 14)?.and_then(JobError::parse),
            verification_failure: r.text_or_null(at + 15)?.map(str::to_owned),
        })
    }

    fn created_at(&self) -> Millis {
        self.created_at
    }
}

impl Record for RestoreRecord {
    const COLUMNS: &'static str = "id, instance_id, project_id, backup_id, backup_name, \
         backup_remark, source_instance_id, source_instance_name, name, remark, status, progress, \
         created_at, updated_at, error_code, reason, filter";

    fn decode<'r>(r: impl Columns<'r>, at: usize) -> Result<Self> {
        let id = r.text(at)?;
        let bad = |what: &str| CatalogError::Corrupt(format!("restore {id}: {what}"));
        Ok(RestoreRecord {
            id: RestoreId::from_stored(id.to_owned()),
            instance_id: InstanceId::from_stored(r.text(at + 1)?.to_owned()),
            project_id: ProjectId::parse(r.text(at + 2)?).ok_or_else(|| bad("project"))?,
            backup_id: BackupId::from_stored(r.text(at + 3)?.to_owned()),
            backup_name: r.text(at + 4)?.to_owned(),
            backup_remark: r.text(at + 5)?.to_owned(),
            source_instance_id: InstanceId::from_stored(r.text(at + 6)?.to_owned()),
            source_instance_name: r.text(at + 7)?.to_owned(),
            name: r.text(at + 8)?.to_owned(),
            remark: r.text(at + 9)?.to_owned(),
            status: RestoreStatus::parse(r.text(at + 10)?).ok_or_else(|| bad("status"))?,
            progress: r.int(at + 11)?,
            created_at: r.int(at + 12)?,
            updated_at: r.int(at + 13)?,
            error: r.text_or_null(at + 14)?.and_then(JobError::parse),
            reason: r.text_or_null(at + 15)?.map(str::to_owned),
            filter: match r.text_or_null(at + 16)? {
                None => None,
                Some(f) => Some(serde_json::from_str(f).map_err(|_| bad("filter"))?),
            },
        })
    }

    fn created_at(&self) -> Millis {
        self.created_at
    }
}

/// SQL that differs between the engines, per record table.
struct TableSql {
    insert_backup: &'static str,
    insert_restore: &'static str,
}

// The new row takes the next `seq` of its instance and a `created_at` no
// earlier than one millisecond after the instance's newest record, in one
// statement, so the (seq, created_at) order invariant holds under
// concurrency: two racing inserts collide on the (instance_id, seq) unique
// index and the loser retries.
const SQLITE: TableSql = TableSql {
    insert_backup: "INSERT INTO backups (id, instance_id, project_id, seq, name, backup_type, format, \
        status, progress, size, period, remark, created_at, execution_at, updated_at, error_code, expires_at) \
        SELECT $1, $2, $3, COALESCE(MAX(seq), 0) + 1, 'backup_' || strftime('%Y%m%d%H%M%S', (MAX($9, COALESCE(MAX(created_at) + 1, $9))) / 1000, 'unixepoch'), $4, $5, $6, 0, 0, $7, $8, \
        MAX($9, COALESCE(MAX(created_at) + 1, $9)), NULL, MAX($9, COALESCE(MAX(created_at) + 1, $9)), $10, \
        MAX($9, COALESCE(MAX(created_at) + 1, $9)) + $11 \
        FROM backups WHERE instance_id = $2 RETURNING seq, created_at",
    insert_restore: "INSERT INTO restores (id, instance_id, project_id, seq, backup_id, backup_name, \
        backup_remark, source_instance_id, source_instance_name, name, remark, status, progress, \
        created_at, updated_at, error_code, filter) \
        SELECT $1, $2, $3, COALESCE(MAX(seq), 0) + 1, $4, $5, $6, $7, $8, 'restore_' || strftime('%Y%m%d%H%M%S', (MAX($11, COALESCE(MAX(created_at) + 1, $11))) / 1000, 'unixepoch'), $9, $10, \
        CASE WHEN $10 = 'succeed' THEN 10000 ELSE 0 END, \
        MAX($11, COALESCE(MAX(created_at) + 1, $11)), MAX($11, COALESCE(MAX(created_at) + 1, $11)), $12, $13 \
        FROM restores WHERE instance_id = $2 RETURNING seq, created_at",
};

const POSTGRES: TableSql = TableSql {
    insert_backup: "INSERT INTO backups (id, instance_id, project_id, seq, name, backup_type, format, \
        status, progress, size, period, remark, created_at, execution_at, updated_at, error_code, expires_at) \
        SELECT $1, $2, $3, COALESCE(MAX(seq), 0) + 1, 'backup_' || to_char(to_timestamp((GREATEST($9, COALESCE(MAX(created_at) + 1, $9))) / 1000) AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISS'), $4, $5, $6, 0, 0, $7, $8, \
        GREATEST($9, COALESCE(MAX(created_at) + 1, $9)), NULL, GREATEST($9, COALESCE(MAX(created_at) + 1, $9)), $10, \
        GREATEST($9, COALESCE(MAX(created_at) + 1, $9)) + $11 \
        FROM backups WHERE instance_id = $2 RETURNING seq, created_at",
    insert_restore: "INSERT INTO restores (id, instance_id, project_id, seq, backup_id, backup_name, \
        backup_remark, source_instance_id, source_instance_name, name, remark, status, progress, \
        created_at, updated_at, error_code, filter) \
        SELECT $1, $2, $3, COALESCE(MAX(seq), 0) + 1, $4, $5, $6, $7, $8, 'restore_' || to_char(to_timestamp((GREATEST($11, COALESCE(MAX(created_at) + 1, $11))) / 1000) AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISS'), $9, $10, \
        CASE WHEN $10 = 'succeed' THEN 10000 ELSE 0 END, \
        GREATEST($11, COALESCE(MAX(created_at) + 1, $11)), GREATEST($11, COALESCE(MAX(created_at) + 1, $11)), $12, $13 \
        FROM restores WHERE instance_id = $2 RETURNING seq, created_at",
};

const INSERT_RETRIES: usize = 8;

/// Runs a numbered insert, again while it collides with a concurrent one on
/// `(instance_id, seq)`.
async fn retry_numbered<F, Fut>(mut attempt: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<(i64, i64), sqlx::Error>>,
{
    for _ in 0..INSERT_RETRIES {
        match attempt().await {
            Ok(_) => return Ok(()),
            Err(e) if is_unique_violation(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(CatalogError::Corrupt(
        "could not allocate a record sequence number".into(),
    ))
}

/// Which seq numbers the page holds, newest first, and how many match.
fn page_window(lo: Option<i64>, hi: Option<i64>, q: &ListQuery) -> (u64, Option<(i64, i64)>) {
    let (Some(lo), Some(hi)) = (lo, hi) else {
        return (0, None);
    };
    if hi < lo {
        return (0, None);
    }
    let total = (hi - lo + 1) as u64;
    if q.offset >= total || q.limit == 0 {
        return (total, None);
    }
    // offset < total <= i64::MAX, so these fit.
    let top = hi - q.offset as i64;
    let bottom = top
        .saturating_sub(q.limit.min(i64::MAX as u64) as i64 - 1)
        .max(lo);
    (total, Some((bottom, top)))
}

impl Catalog {
    fn sql(&self) -> &'static TableSql {
        match self.db {
            Db::Sqlite(..) => &SQLITE,
            Db::Postgres(_) => &POSTGRES,
        }
    }

    /// Inserts a backup record and returns it as stored.
    #[tracing::instrument(skip_all, fields(backup = %b.id, instance = %b.instance_id))]
    pub async fn insert_backup(&self, b: &NewBackup) -> Result<BackupRecord> {
        let sql = self.sql().insert_backup;
        retry_numbered(|| async {
            on_db!(&self.db, pool => sqlx::query_as::<_, (i64, i64)>(sql)
                .bind(b.id.as_str())
                .bind(b.instance_id.as_str())
                .bind(b.project_id.as_str())
                .bind(b.backup_type.as_str())
                .bind(b.format.as_str())
                .bind(b.status.as_str())
                .bind(b.period.as_deref())
                .bind(&b.remark)
                .bind(b.created_at)
                .bind(b.error.map(JobError::code))
                .bind(b.keep_for)
                .fetch_one(pool)
                .await)
        })
        .await?;
        self.backup(&b.id)
            .await?
            .ok_or_else(|| CatalogError::Corrupt("inserted backup vanished".into()))
    }

    /// Inserts a restore record and returns it as stored.
    #[tracing::instrument(skip_all, fields(restore = %r.id, instance = %r.instance_id))]
    pub async fn insert_restore(&self, r: &NewRestore) -> Result<RestoreRecord> {
        let sql = self.sql().insert_restore;
        let filter = match &r.filter {
            None => None,
            Some(f) => {
                Some(serde_json::to_string(f).map_err(|e| CatalogError::Corrupt(e.to_string()))?)
            }
        };
        retry_numbered(|| async {
            on_db!(&self.db, pool => sqlx::query_as::<_, (i64, i64)>(sql)
                .bind(r.id.as_str())
                .bind(r.instance_id.as_str())
                .bind(r.project_id.as_str())
                .bind(r.backup_id.as_str())
                .bind(&r.backup_name)
                .bind(&r.backup_remark)
                .bind(r.source_instance_id.as_str())
                .bind(&r.source_instance_name)
                .bind(&r.remark)
                .bind(r.status.as_str())
                .bind(r.created_at)
                .bind(r.error.map(JobError::code))
                .bind(filter.as_deref())
                .fetch_one(pool)
                .await)
        })
        .await?;
        self.restore(&r.id)
            .await?
            .ok_or_else(|| CatalogError::Corrupt("inserted restore vanished".into()))
    }

    /// Imports many backup records of one instance at once (seeding a test
    /// or benchmark catalog, or moving records from another tool). They are
    /// numbered after the instance's newest record in the order given, each
    /// `created_at` at least 1 ms after the previous one.
    #[tracing::instrument(skip_all, fields(instance = %instance, n = recs.len()))]
    pub async fn import_backups(&self, instance: &InstanceId, recs: &[NewBackup]) -> Result<u64> {
        const CHUNK: usize = 500;
        on_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            // Taking the instance row first serializes importers and makes
            // concurrent single inserts collide on (instance_id, seq) and retry.
            sqlx::query("UPDATE instances SET updated_at = updated_at WHERE id = $1")
                .bind(instance.as_str())
                .execute(&mut *tx)
                .await?;
            let (mut seq, mut last): (i64, i64) = sqlx::query_as(
                "SELECT COALESCE(MAX(seq), 0), COALESCE(MAX(created_at), -1) FROM backups WHERE instance_id = $1")
                .bind(instance.as_str())
                .fetch_one(&mut *tx)
                .await?;
            for chunk in recs.chunks(CHUNK) {
                let mut qb = sqlx::QueryBuilder::new(
                    "INSERT INTO backups (id, instance_id, project_id, seq, name, backup_type, format, status, \
                     progress, size, period, remark, created_at, execution_at, updated_at, error_code, expires_at) ");
                qb.push_values(chunk, |mut row, b| {
                    seq += 1;
                    last = b.created_at.max(last + 1);
                    let done = matches!(b.status, BackupStatus::Succeed | BackupStatus::Expired | BackupStatus::Deleted);
                    row.push_bind(b.id.as_str().to_owned())
                        .push_bind(instance.as_str().to_owned())
                        .push_bind(b.project_id.as_str().to_owned())
                        .push_bind(seq)
                        .push_bind(format!("backup_{}", compact_utc(last)))
                        .push_bind(b.backup_type.as_str())
                        .push_bind(b.format.as_str())
                        .push_bind(b.status.as_str())
                        .push_bind(if done { 10_000_i64 } else { 0 })
                        .push_bind(0_i64)
                        .push_bind(b.period.clone())
                        .push_bind(b.remark.clone())
                        .push_bind(last)
                        .push_bind(done.then_some(last))
                        .push_bind(last)
                        .push_bind(b.error.map(JobError::code))
                        .push_bind(b.keep_for.map(|k| last + k));
                });
                qb.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(recs.len() as u64)
    }

    pub async fn backup(&self, id: &BackupId) -> Result<Option<BackupRecord>> {
        self.record_by_id(&BACKUP_BY_ID, id.as_str()).await
    }

    pub async fn restore(&self, id: &RestoreId) -> Result<Option<RestoreRecord>> {
        self.record_by_id(&RESTORE_BY_ID, id.as_str()).await
    }

    async fn record_by_id<T: Record>(&self, sql: &str, id: &str) -> Result<Option<T>> {
        on_db!(&self.db, pool => {
            let row = sqlx::query(sql).bind(id).fetch_optional(pool).await?;
            row.as_ref().map(|row| T::decode(row, 0)).transpose()
        })
    }

    /// The records `sql` selects (its columns [`Record::COLUMNS`]), in
    /// the order it returns them.
    pub(crate) async fn records<T: Record>(&self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<T>> {
        on_db!(&self.db, pool => {
            let rows = bind_args!(sqlx::query(sql), args).fetch_all(pool).await?;
            rows.iter().map(|row| T::decode(row, 0)).collect()
        })
    }

    /// One page of an instance's backup records, newest first; `None` if
    /// the instance is not the project's. One statement, one round trip.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn list_backups(
        &self,
        project: &ProjectId,
        instance: &InstanceId,
        q: &ListQuery,
    ) -> Result<Option<Page<BackupRecord>>> {
        self.list_page(&BACKUP_LISTS, project, instance, q).await
    }

    /// One page of an instance's restore records, newest first; `None` if
    /// the instance is not the project's.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn list_restores(
        &self,
        project: &ProjectId,
        instance: &InstanceId,
        q: &ListQuery,
    ) -> Result<Option<Page<RestoreRecord>>> {
        self.list_page(&RESTORE_LISTS, project, instance, q).await
    }

    /// Runs a listing statement built by [`list_sql`]: the instance check,
    /// the seq bounds of the time range and the page's records in one
    /// round trip.
    async fn list_page<T: Record>(
        &self,
        statements: &'static ListStatements,
        project: &ProjectId,
        instance: &InstanceId,
        q: &ListQuery,
    ) -> Result<Option<Page<T>>> {
        use sqlx::Row;
        let sql: &'static str = list_statement(statements, matches!(self.db, Db::Postgres(_)), q);
        let offset = i64::try_from(q.offset)
            .unwrap_or(i64::MAX / 4)
            .min(i64::MAX / 4);
        let limit = i64::try_from(q.limit).unwrap_or(1000);
        // Each statement takes a time bound only if the query has it.
        let (lo, hi, mut items): (Option<i64>, Option<i64>, Vec<T>) = match &self.db {
            Db::Sqlite(_, reads) => {
                use rusqlite::types::Value;
                let mut args = vec![
                    Value::Text(instance.as_str().to_owned()),
                    Value::Text(project.as_str().to_owned()),
                    Value::Integer(offset),
                    Value::Integer(limit),
                ];
                args.extend(q.begin.into_iter().chain(q.end).map(Value::Integer));
                let read = |row: &rusqlite::Row<'_>| T::decode(row, 2);
                let Some(listing) = reads.list(sql, args, q.limit, read).await? else {
                    return Ok(None);
                };
                (listing.lo, listing.hi, listing.items)
            }
            Db::Postgres(pool) => {
                let mut query = sqlx::query(sql)
                    .bind(instance.as_str())
                    .bind(project.as_str())
                    .bind(offset)
                    .bind(limit);
                if let Some(begin) = q.begin {
                    query = query.bind(begin);
                }
                if let Some(end) = q.end {
                    query = query.bind(end);
                }
                let rows = query.fetch_all(pool).await?;
                // No row: the instance is not the project's.
                let Some(first) = rows.first() else {
                    return Ok(None);
                };
                let mut items = Vec::with_capacity(rows.len());
                for row in &rows {
                    // A range with no record on the page leaves one row
                    // with the bounds only.
                    if row.try_get::<Option<&str>, _>(2)?.is_some() {
                        items.push(T::decode(row, 2)?);
                    }
                }
                (first.try_get(0)?, first.try_get(1)?, items)
            }
        };
        let (total, window) = page_window(lo, hi, q);
        if window.is_none() {
            items.clear();
        }
        items.sort_by_key(|r| std::cmp::Reverse(r.created_at()));
        Ok(Some(Page { items, total }))
    }
}

/// The listing statement for `table` on one engine, for a query with or
/// without each time bound. Parameters: $1 instance, $2 project, $3
/// offset, $4 limit, then the `created_at` lower bound and the upper bound
/// where the query has them. Without a lower bound the range starts at seq
/// 1, since an instance's seqs are dense from 1 (records are never
/// removed); without an upper bound it ends at the newest seq, read from
/// the `(instance_id, seq)` index the page is read from, so a plain listing
/// touches one index of the table.
///
/// Both engines return one row per record of the page, each carrying the
/// bounds first (`lo`, `hi`) and then the record's [`Record::COLUMNS`]; a
/// page with no record is one row of bounds and NULLs, and an instance that
/// is not the project's gives no row. On PostgreSQL each bound is read once
/// through a `LATERAL ... LIMIT 1` the page's range refers to; SQLite has
/// no LATERAL, so there the bounds are a materialized CTE.
fn list_sql(postgres: bool, table: &str, columns: &str, begin: bool, end: bool) -> String {
    // A deleted instance's backups stay listable by its project (so they
    // can be found and deleted); its restores do not.
    let live = if table == "backups" {
        ""
    } else {
        " AND deleted_at IS NULL"
    };
    let end_param = if begin { 6 } else { 5 };
    let columns: Vec<String> = columns
        .split(',')
        .map(|c| format!("r.{}", c.trim()))
        .collect();
    let columns = columns.join(", ");
    if postgres {
        let (lo, lo_join) = if begin {
            (
                "l.lo",
                format!("LEFT JOIN LATERAL (SELECT seq AS lo FROM {table} WHERE instance_id = $1 AND created_at >= $5 ORDER BY created_at ASC LIMIT 1) l ON true"),
            )
        } else {
            ("CAST(1 AS BIGINT)", String::new())
        };
        let hi = if end {
            format!("SELECT seq AS hi FROM {table} WHERE instance_id = $1 AND created_at <= ${end_param} ORDER BY created_at DESC LIMIT 1")
        } else {
            format!(
                "SELECT seq AS hi FROM {table} WHERE instance_id = $1 ORDER BY seq DESC LIMIT 1"
            )
        };
        return format!(
            "SELECT {lo} AS lo, h.hi, {columns} FROM instances i {lo_join} \
             LEFT JOIN LATERAL ({hi}) h ON true \
             LEFT JOIN {table} r ON r.instance_id = $1 AND r.seq BETWEEN GREATEST({lo}, h.hi - $3 - $4 + 1) AND h.hi - $3 \
             WHERE i.id = $1 AND i.project_id = $2{}",
            live.replace("deleted_at", "i.deleted_at")
        );
    }
    let lo = if begin {
        format!("(SELECT seq FROM {table} WHERE instance_id = $1 AND created_at >= $5 ORDER BY created_at ASC LIMIT 1)")
    } else {
        "1".to_owned()
    };
    let hi = if end {
        format!("(SELECT seq FROM {table} WHERE instance_id = $1 AND created_at <= ${end_param} ORDER BY created_at DESC LIMIT 1)")
    } else {
        format!("(SELECT MAX(seq) FROM {table} WHERE instance_id = $1)")
    };
    // `b` is materialized: it is read twice, and inlined each read would
    // probe the indexes again. Parameters are numbered `?n` here: the
    // SQLite listing reads bind them by position (see `reads`).
    let sql = format!(
        "WITH b AS MATERIALIZED (SELECT \
           (SELECT COUNT(*) FROM instances WHERE id = $1 AND project_id = $2{live}) AS found, \
           {lo} AS lo, {hi} AS hi), \
         w AS (SELECT found, lo, hi, hi - $3 AS top, MAX(lo, hi - $3 - $4 + 1) AS bottom FROM b) \
         SELECT w.lo, w.hi, {columns} \
         FROM w LEFT JOIN {table} r ON r.instance_id = $1 AND r.seq BETWEEN w.bottom AND w.top \
         WHERE w.found"
    );
    sql.replace('$', "?")
}

/// A table's listing statements: `[engine][begin as usize * 2 + end as usize]`.
type ListStatements = [[String; 4]; 2];

fn list_statements(table: &str, columns: &str) -> ListStatements {
    [false, true].map(|postgres| {
        [(false, false), (false, true), (true, false), (true, true)]
            .map(|(begin, end)| list_sql(postgres, table, columns, begin, end))
    })
}

fn list_statement<'a>(all: &'a ListStatements, postgres: bool, q: &ListQuery) -> &'a str {
    &all[usize::from(postgres)][usize::from(q.begin.is_some()) * 2 + usize::from(q.end.is_some())]
}

static BACKUP_LISTS: LazyLock<ListStatements> =
    LazyLock::new(|| list_statements("backups", BackupRecord::COLUMNS));
static RESTORE_LISTS: LazyLock<ListStatements> =
    LazyLock::new(|| list_statements("restores", RestoreRecord::COLUMNS));

static BACKUP_BY_ID: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM backups WHERE id = $1",
        BackupRecord::COLUMNS
    )
});
static RESTORE_BY_ID: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM restores WHERE id = $1",
        RestoreRecord::COLUMNS
    )
});

#[cfg(test)]
mod tests {
    use super::*;

    fn q(offset: u64, limit: u64) -> ListQuery {
        ListQuery {
            begin: None,
            end: None,
            offset,
            limit,
        }
    }

    #[test]
    fn page_window_counts_and_slices_newest_first() {
        assert_eq!(page_window(None, None, &q(0, 10)), (0, None));
        assert_eq!(page_window(Some(5), Some(4), &q(0, 10)), (0, None));
        assert_eq!(
            page_window(Some(1), Some(100), &q(0, 10)),
            (100, Some((91, 100)))
        );
        assert_eq!(
            page_window(Some(1), Some(100), &q(95, 10)),
            (100, Some((1, 5)))
        );
        assert_eq!(page_window(Some(1), Some(100), &q(100, 10)), (100, None));
        assert_eq!(
            page_window(Some(7), Some(7), &q(0, 1000)),
            (1, Some((7, 7)))
        );
    }
}

//! The metadata store: projects, credentials, instances, backup and restore
//! records, and the job queue, on SQLite (default) or PostgreSQL.
//!
//! Both engines run the same SQL (numbered `$n` parameters work on both);
//! where the dialects differ a query is chosen per engine. Every listing is
//! answered with index probes only: an instance's records carry a dense
//! sequence number `seq` with `created_at` strictly increasing along it, so
//! the number of records in a time range and the page at any offset are
//! computed from at most two `(instance_id, created_at)` probes and one
//! `(instance_id, seq)` range, whatever the number of records. Records are
//! never removed, so seqs are dense from 1 and a range with no lower bound
//! starts at 1 without a probe.

mod access;
mod jobs;
mod pitr;
mod pitr_log;
mod reads;
mod records;
mod schedule;
mod stats;
mod verifications;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::model::{
    BackupPolicy, Connection, Instance, InstanceId, Millis, ProjectId, Secret, StoredPolicy,
    Topology,
};
use crate::secrets::{SecretError, SecretKeys};

pub use jobs::{BackupOutcome, ClaimedJob, Lane, RestoreOutcome};
pub use pitr::{BaseRow, LinkRow, PitrPolicy, SegmentRow};
pub use records::{NewBackup, NewRestore};
pub use schedule::WindowRow;
pub use stats::InstanceStats;
pub use verifications::{NewVerification, VerificationOutcome};

/// Errors of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database url {0:?}: use sqlite://PATH or postgres://...")]
    BadUrl(String),
    #[error("database url {0:?} names an in-memory SQLite catalog, which would lose every record when the service stops: use sqlite://PATH")]
    InMemory(String),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot lock {0} to migrate it: {1}")]
    Lock(String, std::io::Error),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("the instance already has a {0} job running")]
    Busy(crate::model::JobKind),
    #[error("instance password: {0}")]
    Secret(#[from] crate::secrets::SecretError),
}

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// The two engines; queries are written once and run on either. A SQLite
/// catalog also has its own read connections for listings (see `reads`).
#[derive(Clone, Debug)]
pub(crate) enum Db {
    Sqlite(SqlitePool, std::sync::Arc<reads::Reads>),
    Postgres(PgPool),
}

/// Runs the same expression against whichever pool the catalog has.
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::catalog::Db::Sqlite($pool, _) => $body,
            $crate::catalog::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_db;

/// A value bound by position where a statement's parameters are shared
/// by several callers (see [`bind_args`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Arg<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
}

/// Binds `args` in order to a query of either engine.
macro_rules! bind_args {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match *arg {
                $crate::catalog::Arg::Int(v) => query.bind(v),
                $crate::catalog::Arg::Text(v) => query.bind(v),
            };
        }
        query
    }};
}
pub(crate) use bind_args;

/// A credential: an access key bound to one project.
#[derive(Clone, Debug)]
pub struct Credential {
    pub project_id: ProjectId,
    pub ak: String,
    pub sk: Secret,
}

/// Handle on the metadata store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Catalog {
    pub(crate) db: Db,
    /// Seals instance passwords on write and opens them on read; the
    /// catalog uses the keys for nothing else.
    secrets: Option<std::sync::Arc<SecretKeys>>,
}

#[derive(sqlx::FromRow)]
struct InstanceRow {
    id: String,
    project_id: String,
    name: String,
    description: String,
    host: String,
    port: i64,
    username: Option<String>,
    password: Option<String>,
    tls: i64,
    topology: String,
    policy: Option<String>,
    policy_id: Option<String>,
    policy_created_at: Option<i64>,
    policy_updated_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

const INSTANCE_COLUMNS: &str = "id, project_id, name, description, host, port, username, password, \
     tls, topology, policy, policy_id, policy_created_at, policy_updated_at, created_at, updated_at";

impl InstanceRow {
    fn into_instance(self, keys: Option<&SecretKeys>) -> Result<Instance> {
        let password = match (self.password, keys) {
            (None, _) => None,
            (Some(stored), Some(keys)) if crate::secrets::is_sealed(&stored) => Some(Secret::new(
                keys.open_value(&stored, &self.id).map_err(|e| {
                    tracing::error!(instance = %self.id, error = %e, "instance unusable: its password cannot be decrypted");
                    e
                })?,
            )),
            // Written by a version before encryption and not sealed yet
            // (the start-up pass seals such rows).
            (Some(plain), Some(_)) => Some(Secret::new(plain)),
            (Some(_), None) => return Err(SecretError::NoKey.into()),
        };
        let topology: Topology = serde_json::from_str(&self.topology)
            .map_err(|e| CatalogError::Corrupt(format!("instance {} topology: {e}", self.id)))?;
        let policy = match (self.policy, self.policy_id) {
            (Some(p), Some(id)) => {
                let policy: BackupPolicy = serde_json::from_str(&p).map_err(|e| {
                    CatalogError::Corrupt(format!("instance {} policy: {e}", self.id))
                })?;
                Some(StoredPolicy {
                    id,
                    policy,
                    created_at: self.policy_created_at.unwrap_or(self.created_at),
                    updated_at: self.policy_updated_at.unwrap_or(self.updated_at),
                })
            }
            _ => None,
        };
        Ok(Instance {
            id: InstanceId::from_stored(self.id),
            project_id: ProjectId::parse(&self.project_id)
                .ok_or_else(|| CatalogError::Corrupt("project id".into()))?,
            name: self.name,
            description: self.description,
            connection: Connection {
                host: self.host,
                port: u16::try_from(self.port)
                    .map_err(|_| CatalogError::Corrupt("instance port".into()))?,
                username: self.username,
                password,
                tls: self.tls != 0,
            },
            topology,
            policy,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// An instance's stored forms of its password, topology and policy.
struct InstanceFields {
    password: Option<String>,
    topology: String,
    policy: Option<String>,
}

impl InstanceFields {
    fn of(catalog: &Catalog, inst: &Instance) -> Result<Self> {
        Ok(Self {
            password: catalog.seal_password(inst)?,
            topology: serde_json::to_string(&inst.topology)
                .map_err(|e| CatalogError::Corrupt(e.to_string()))?,
            policy: policy_json(&inst.policy)?,
        })
    }

    /// The first 14 of [`INSTANCE_COLUMNS`] in order (`id` … `policy_updated_at`),
    /// as insert and update both bind them.
    fn args<'a>(&'a self, inst: &'a Instance) -> [Arg<'a>; 14] {
        let policy = inst.policy.as_ref();
        [
            Arg::Text(Some(inst.id.as_str())),
            Arg::Text(Some(inst.project_id.as_str())),
            Arg::Text(Some(&inst.name)),
            Arg::Text(Some(&inst.description)),
            Arg::Text(Some(&inst.connection.host)),
            Arg::Int(Some(i64::from(inst.connection.port))),
            Arg::Text(inst.connection.username.as_deref()),
            Arg::Text(self.password.as_deref()),
            Arg::Int(Some(i64::from(inst.connection.tls))),
            Arg::Text(Some(&self.topology)),
            Arg::Text(self.policy.as_deref()),
            Arg::Text(policy.map(|p| p.id.as_str())),
            Arg::Int(policy.map(|p| p.created_at)),
            Arg::Int(policy.map(|p| p.updated_at)),
        ]
    }
}

fn policy_json(p: &Option<StoredPolicy>) -> Result<Option<String>> {
    p.as_ref()
        .map(|p| serde_json::to_string(&p.policy))
        .transpose()
        .map_err(|e| CatalogError::Corrupt(e.to_string()))
}

/// A new credential of `project`, with a fresh access key and secret.
fn fresh_credential(project: ProjectId) -> Credential {
    Credential {
        project_id: project,
        ak: random_token(20, ALNUM_UPPER),
        sk: Secret::new(random_token(40, ALNUM)),
    }
}

/// Inserts a credential and its project (if new).
async fn insert_credential<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    cred: &Credential,
    now: Millis,
) -> Result<()>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    sqlx::query(
        "INSERT INTO projects (id, created_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
    )
    .bind(cred.project_id.as_str())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query("INSERT INTO credentials (ak, sk, project_id, created_at) VALUES ($1, $2, $3, $4)")
        .bind(cred.ak.as_str())
        .bind(cred.sk.expose())
        .bind(cred.project_id.as_str())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Waits for an exclusive advisory lock on `path` (created if missing),
/// held until the file returned is dropped.
async fn lock_file(path: std::path::PathBuf) -> Result<std::fs::File> {
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .map_err(|e| CatalogError::Lock(shown.clone(), std::io::Error::other(e)))?
    .map_err(|e| CatalogError::Lock(shown, e))
}

/// Whether a `sqlite:` url names a database that lives only in memory.
fn is_in_memory(url: &str) -> bool {
    let (db, params) = url.split_once('?').unwrap_or((url, ""));
    db.ends_with(":memory:") || params.split('&').any(|p| p == "mode=memory")
}

impl Catalog {
    /// Opens the store at `url` and brings its schema up to date.
    #[tracing::instrument(skip_all, fields(engine))]
    pub async fn connect(url: &str) -> Result<Self> {
        let db = if url.starts_with("sqlite:") {
            tracing::Span::current().record("engine", "sqlite");
            if is_in_memory(url) {
                return Err(CatalogError::InMemory(url.to_owned()));
            }
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            let path = opts.get_filename().to_owned();
            // sqlx takes no lock around SQLite migrations, so replicas
            // starting at once on a new file would each create it, switch
            // it to WAL and apply the first migration; an advisory lock
            // makes them take turns. It is taken on a file of its own:
            // closing a descriptor of the database file would drop the
            // fcntl locks SQLite holds on it in this process.
            let mut lock_path = path.clone().into_os_string();
            lock_path.push("-migrations.lock");
            let turn = lock_file(lock_path.into()).await?;
            let pool = SqlitePoolOptions::new()
                // Every connection is still pinged when it returns to the pool.
                .test_before_acquire(false)
                .max_connections(8)
                .min_connections(1)
                .connect_with(opts)
                .await?;
            sqlx::migrate!("migrations/sqlite").run(&pool).await?;
            drop(turn);
            let reads = reads::Reads::new(path);
            Db::Sqlite(pool, std::sync::Arc::new(reads))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            tracing::Span::current().record("engine", "postgres");
            // Every statement here is an index probe whatever its
            // parameters, so the generic plan is always right; without
            // this PostgreSQL re-plans statements like the listing's on
            // every execution, and planning costs more than running them.
            let opts = PgConnectOptions::from_str(url)?
                .options([("plan_cache_mode", "force_generic_plan")]);
            let pool = PgPoolOptions::new()
                // Every connection is still pinged when it returns to the pool.
                .test_before_acquire(false)
                .max_connections(16)
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await?;
            sqlx::migrate!("migrations/postgres").run(&pool).await?;
            Db::Postgres(pool)
        } else {
            return Err(CatalogError::BadUrl(url.to_owned()));
        };
        Ok(Self { db, secrets: None })
    }

    /// The catalog sealing instance passwords with `keys`.
    pub fn with_secrets(mut self, keys: std::sync::Arc<SecretKeys>) -> Self {
        self.secrets = Some(keys);
        self
    }

    fn keys(&self) -> Option<&SecretKeys> {
        self.secrets.as_deref()
    }

    /// The stored form of an instance's password: sealed, bound to its id.
    fn seal_password(&self, inst: &Instance) -> Result<Option<String>> {
        let Some(p) = &inst.connection.password else {
            return Ok(None);
        };
        let keys = self.keys().ok_or(SecretError::NoKey)?;
        Ok(Some(keys.seal(p.expose(), inst.id.as_str())?))
    }

    /// The SQLite file, for tightening its mode (and its `-wal`/`-shm`).
    pub fn sqlite_file(&self) -> Option<std::path::PathBuf> {
        match &self.db {
            Db::Sqlite(_, reads) => Some(reads.path().to_owned()),
            Db::Postgres(_) => None,
        }
    }

    /// Seals every instance password still stored in plain text (from a
    /// version before encryption). Idempotent; returns how many were
    /// sealed and how many name a key this service does not hold.
    pub async fn seal_plaintext_passwords(&self) -> Result<(u64, u64)> {
        let keys = self.keys().ok_or(SecretError::NoKey)?;
        let rows: Vec<(String, String)> = on_db!(&self.db, pool =>
            sqlx::query_as("SELECT id, password FROM instances WHERE password IS NOT NULL")
                .fetch_all(pool).await)?;
        let mut sealed = 0;
        let mut unknown = 0;
        for (id, stored) in rows {
            if let Some(kid) = SecretKeys::sealed_key_id(&stored) {
                if !keys.key_ids().iter().any(|k| k == kid) {
                    unknown += 1;
                }
                continue;
            }
            let value = keys.seal(&stored, &id)?;
            // Only if still the same plaintext: another replica may be at it.
            let done = on_db!(&self.db, pool => sqlx::query(
                "UPDATE instances SET password = $1 WHERE id = $2 AND password = $3")
                .bind(&value).bind(&id).bind(&stored)
                .execute(pool).await.map(|r| r.rows_affected()))?;
            sealed += done;
        }
        Ok((sealed, unknown))
    }

    /// Re-seals every instance password with the newest of `keys` (which
    /// must open every stored value), in one transaction. Plaintext rows
    /// are sealed too. Returns the number of rows written.
    pub async fn reseal_passwords(&self, keys: &SecretKeys) -> Result<u64> {
        let newest = keys.key_ids().into_iter().next();
        let n = on_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            // Take the write lock first (SQLite) / lock the rows (PostgreSQL).
            sqlx::query("UPDATE instances SET password = password WHERE password IS NOT NULL")
                .execute(&mut *tx).await?;
            let rows: Vec<(String, String)> =
                sqlx::query_as("SELECT id, password FROM instances WHERE password IS NOT NULL")
                    .fetch_all(&mut *tx).await?;
            let mut n = 0u64;
            for (id, stored) in rows {
                if SecretKeys::sealed_key_id(&stored).map(str::to_owned) == newest {
                    continue;
                }
                let plain = if crate::secrets::is_sealed(&stored) {
                    keys.open_value(&stored, &id)?
                } else {
                    stored
                };
                let value = keys.seal(&plain, &id)?;
                sqlx::query("UPDATE instances SET password = $1 WHERE id = $2")
                    .bind(&value).bind(&id)
                    .execute(&mut *tx).await?;
                n += 1;
            }
            tx.commit().await?;
            n
        });
        Ok(n)
    }

    pub fn engine(&self) -> &'static str {
        match self.db {
            Db::Sqlite(..) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// Closes every pooled connection.
    pub async fn close(&self) {
        on_db!(&self.db, pool => pool.close().await)
    }

    /// Answers once the store can take a query.
    pub async fn ping(&self) -> Result<()> {
        on_db!(&self.db, pool => sqlx::query("SELECT 1").execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    // ---- projects, credentials, settings ----------------------------------

    /// Creates the project if it is new, then a fresh credential for it.
    pub async fn create_credential(&self, project_id: &ProjectId) -> Result<Credential> {
        let now = crate::model::now_millis();
        let cred = fresh_credential(project_id.clone());
        on_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            insert_credential(&mut tx, &cred, now).await?;
            tx.commit().await?;
        });
        Ok(cred)
    }

    /// On a catalog that has never had a credential, creates a project and
    /// its credential and returns it; `None` if the catalog has or had one.
    /// Replicas starting at once on an empty catalog create one between
    /// them: the first to write the `bootstrapped` setting does it, in the
    /// same transaction, and the others wait on that row and find it.
    pub async fn bootstrap_credential(&self) -> Result<Option<Credential>> {
        let now = crate::model::now_millis();
        let cred = fresh_credential(ProjectId::generate());
        let created = on_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            let first = sqlx::query("INSERT INTO settings (key, value) VALUES ('bootstrapped', $1) ON CONFLICT (key) DO NOTHING")
                .bind(now.to_string())
                .execute(&mut *tx)
                .await?
                .rows_affected() == 1;
            // A catalog from before the setting existed has credentials.
            let fresh = first && sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM credentials")
                .fetch_one(&mut *tx)
                .await? == 0;
            if fresh {
                insert_credential(&mut tx, &cred, now).await?;
            }
            tx.commit().await?;
            fresh
        });
        Ok(created.then_some(cred))
    }

    /// Looks up an access key.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn credential(&self, ak: &str) -> Result<Option<Credential>> {
        let row: Option<(String, String)> = on_db!(&self.db, pool =>
            sqlx::query_as("SELECT sk, project_id FROM credentials WHERE ak = $1")
                .bind(ak)
                .fetch_optional(pool)
                .await)?;
        Ok(row.and_then(|(sk, project)| {
            Some(Credential {
                project_id: ProjectId::parse(&project)?,
                ak: ak.to_owned(),
                sk: Secret::new(sk),
            })
        }))
    }

    /// Returns the shared setting `key`, storing `init()` first if it is unset.
    /// Every replica sees the value the first one stored.
    pub async fn setting_or_init(
        &self,
        key: &str,
        init: impl FnOnce() -> String,
    ) -> Result<String> {
        let candidate = init();
        let value: String = on_db!(&self.db, pool => {
            sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                .bind(key)
                .bind(&candidate)
                .execute(pool)
                .await?;
            sqlx::query_scalar("SELECT value FROM settings WHERE key = $1").bind(key).fetch_one(pool).await
        })?;
        Ok(value)
    }

    // ---- instances ---------------------------------------------------------

    #[tracing::instrument(skip_all, fields(instance = %inst.id))]
    pub async fn insert_instance(&self, inst: &Instance) -> Result<()> {
        let fields = InstanceFields::of(self, inst)?;
        let sql = format!(
            "INSERT INTO instances ({INSTANCE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        );
        let args = fields.args(inst);
        let stamps = [
            Arg::Int(Some(inst.created_at)),
            Arg::Int(Some(inst.updated_at)),
        ];
        on_db!(&self.db, pool => bind_args!(bind_args!(sqlx::query(&sql), &args), &stamps)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Writes every mutable field of an existing instance.
    #[tracing::instrument(skip_all, fields(instance = %inst.id))]
    pub async fn update_instance(&self, inst: &Instance) -> Result<bool> {
        let fields = InstanceFields::of(self, inst)?;
        let args = fields.args(inst);
        let stamps = [Arg::Int(Some(inst.updated_at))];
        let done = on_db!(&self.db, pool => bind_args!(bind_args!(sqlx::query(
            "UPDATE instances SET name = $3, description = $4, host = $5, port = $6, username = $7, \
             password = $8, tls = $9, topology = $10, policy = $11, policy_id = $12, \
             policy_created_at = $13, policy_updated_at = $14, updated_at = $15 \
             WHERE id = $1 AND project_id = $2 AND deleted_at IS NULL"), &args), &stamps)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// The instance if it exists, belongs to the project and is not deleted.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn instance(&self, project: &ProjectId, id: &InstanceId) -> Result<Option<Instance>> {
        let sql = format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = $1 AND project_id = $2 AND deleted_at IS NULL"
        );
        let row: Option<InstanceRow> = on_db!(&self.db, pool =>
            sqlx::query_as(&sql).bind(id.as_str()).bind(project.as_str()).fetch_optional(pool).await)?;
        row.map(|r| r.into_instance(self.keys())).transpose()
    }

    /// Any instance by id, deleted or not, whatever its project: for jobs.
    pub async fn instance_any(&self, id: &InstanceId) -> Result<Option<Instance>> {
        let sql = format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = $1");
        let row: Option<InstanceRow> = on_db!(&self.db, pool => sqlx::query_as(&sql).bind(id.as_str()).fetch_optional(pool).await)?;
        row.map(|r| r.into_instance(self.keys())).transpose()
    }

    /// A project's live instances, newest first, optionally filtered by exact
    /// name or by name substring.
    pub async fn list_instances(
        &self,
        project: &ProjectId,
        name_like: Option<&str>,
        name_equal: bool,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<Instance>, u64)> {
        // `$2` is always bound: the empty pattern switches the filter off.
        let (filter, pattern) = match name_like {
            None => (" AND $2 = ''", String::new()),
            Some(n) if name_equal => (" AND name = $2", n.to_owned()),
            Some(n) => (
                " AND name LIKE $2 ESCAPE '\\'",
                format!("%{}%", escape_like(n)),
            ),
        };
        let count_sql = format!(
            "SELECT COUNT(*) FROM instances WHERE project_id = $1 AND deleted_at IS NULL{filter}"
        );
        let page_sql = format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE project_id = $1 AND deleted_at IS NULL{filter} \
             ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let (total, rows): (i64, Vec<InstanceRow>) = on_db!(&self.db, pool => {
            let total = sqlx::query_scalar(&count_sql)
                .bind(project.as_str())
                .bind(&pattern)
                .fetch_one(pool)
                .await?;
            let rows = sqlx::query_as(&page_sql)
                .bind(project.as_str())
                .bind(&pattern)
                .bind(limit)
                .bind(offset)
                .fetch_all(pool)
                .await?;
            (total, rows)
        });
        let items = rows
            .into_iter()
            .map(|r| r.into_instance(self.keys()))
            .collect::<Result<_>>()?;
        Ok((items, total.max(0) as u64))
    }

    /// Marks the instance deleted. Its records and backup files stay.
    pub async fn delete_instance(
        &self,
        project: &ProjectId,
        id: &InstanceId,
        now: Millis,
    ) -> Result<bool> {
        let done = on_db!(&self.db, pool => sqlx::query(
            "UPDATE instances SET deleted_at = $3, updated_at = $3 WHERE id = $1 AND project_id = $2 AND deleted_at IS NULL")
            .bind(id.as_str())
            .bind(project.as_str())
            .bind(now)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }
}

fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const ALNUM_UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// A random token drawn from the OS's CSPRNG.
pub fn random_token(len: usize, alphabet: &[u8]) -> String {
    use rand::Rng;
    let mut rng = rand::rngs::OsRng;
    (0..len)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

/// True when the error is a unique-constraint violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_in_memory_sqlite_catalog_is_refused() {
        for url in [
            "sqlite::memory:",
            "sqlite://x.db?mode=memory",
            "sqlite:x.db?mode=memory&cache=shared",
        ] {
            let e = Catalog::connect(url).await.err();
            assert!(matches!(e, Some(CatalogError::InMemory(_))), "{url}: {e:?}");
        }
        assert!(!is_in_memory("sqlite:///tmp/memory.db"));
    }
}

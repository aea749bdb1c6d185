//! SQLite listings, answered on the calling thread.
//!
//! sqlx runs every SQLite connection on a thread of its own, so each
//! statement through the pool costs two thread hand-offs and a ping on
//! release: more, on a small machine, than a listing's own work. Listings
//! are read-only and short, so they run here instead, on connections of
//! their own to the same file; WAL lets them read beside the pool's writes,
//! each statement seeing one committed state.
//!
//! A page of at most [`INLINE_LIMIT`] records is read on the task's own
//! thread, without waiting for a lock: in WAL a reader waits only while
//! another connection holds the database exclusively (recovery after a
//! crash, or a tool that took it). Then, and for larger pages, the read
//! moves to a blocking thread, where it waits as the pool does.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags, Row};

use super::{CatalogError, Result};

/// Pages up to this many records are read without leaving the thread.
pub const INLINE_LIMIT: u64 = 100;

/// How long a read moved to a blocking thread waits for a lock, as the
/// pool's connections do.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle connections kept for reuse; more are opened while more reads run
/// at once, and closed when they end.
const MAX_IDLE: usize = 8;

/// What a listing statement returns: the seq bounds of the range and the
/// page's records, or `None` if the instance is not the project's.
#[derive(Debug)]
pub struct Listing<T> {
    pub lo: Option<i64>,
    pub hi: Option<i64>,
    pub items: Vec<T>,
}

/// Read connections to one SQLite catalog file.
#[derive(Debug)]
pub struct Reads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Reads {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The database file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Runs a listing statement (`?1`, `?2`, … bound from `args` in order)
    /// and reads its rows: each carries the bounds, then from column 2 a
    /// record, which `read` turns into an item, or NULLs when the page is
    /// empty. No row: the instance is not the project's.
    pub async fn list<T, F>(
        self: &Arc<Self>,
        sql: &'static str,
        args: Vec<Value>,
        limit: u64,
        read: F,
    ) -> Result<Option<Listing<T>>>
    where
        T: Send + 'static,
        F: Fn(&Row<'_>) -> Result<T> + Send + 'static,
    {
        if limit <= INLINE_LIMIT {
            match self.run(sql, &args, Duration::ZERO, &read) {
                Err(CatalogError::Sqlite(e)) if is_busy(&e) => {
                    tracing::debug!("listing waits for a lock on a blocking thread");
                }
                done => return done,
            }
        }
        let reads = Arc::clone(self);
        tokio::task::spawn_blocking(move || reads.run(sql, &args, BUSY_TIMEOUT, &read))
            .await
            .map_err(|e| CatalogError::Corrupt(format!("listing read stopped: {e}")))?
    }

    fn run<T>(
        &self,
        sql: &str,
        args: &[Value],
        busy: Duration,
        read: &dyn Fn(&Row<'_>) -> Result<T>,
    ) -> Result<Option<Listing<T>>> {
        let conn = self.take()?;
        let listing = conn
            .busy_timeout(busy)
            .map_err(CatalogError::from)
            .and_then(|()| {
                let mut stmt = conn.prepare_cached(sql)?;
                let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
                let mut listing = None;
                while let Some(row) = rows.next()? {
                    let l = listing.get_or_insert(Listing {
                        lo: row.get(0)?,
                        hi: row.get(1)?,
                        items: Vec::new(),
                    });
                    if row.get_ref(2)? != ValueRef::Null {
                        l.items.push(read(row)?);
                    }
                }
                Ok(listing)
            });
        // A connection that failed for another reason than a lock is not
        // kept: the next read opens a fresh one.
        match &listing {
            Ok(_) => self.put(conn),
            Err(CatalogError::Sqlite(e)) if is_busy(e) => self.put(conn),
            Err(_) => {}
        }
        listing
    }

    fn take(&self) -> rusqlite::Result<Connection> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => {
                let conn = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                // These connections only ever read.
                conn.pragma_update(None, "query_only", true)?;
                Ok(conn)
            }
        }
    }

    fn put(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A page read that finds the file locked by another connection waits
    /// for the lock on a blocking thread, so the runtime's one thread goes
    /// on with other tasks, and then reads the page in full.
    #[tokio::test(flavor = "current_thread")]
    async fn a_locked_file_delays_a_read_without_stalling_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        // A rollback journal, where a writer's lock keeps readers out (in
        // WAL only a connection holding the file exclusively does).
        let locker = Connection::open(&path).unwrap();
        locker
            .execute_batch(
                "CREATE TABLE r (seq INTEGER, name TEXT); \
                 INSERT INTO r VALUES (1, 'a'), (2, 'b'), (3, 'c');",
            )
            .unwrap();
        locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let reads = Arc::new(Reads::new(path));
        let ticks = Arc::new(AtomicU32::new(0));
        let ticker = {
            let ticks = ticks.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let held = Duration::from_millis(500);
        let release = std::thread::spawn(move || {
            std::thread::sleep(held);
            locker.execute_batch("COMMIT").unwrap();
        });
        let t0 = std::time::Instant::now();
        let listing = reads
            .list(
                "SELECT 1, MAX(seq) OVER (), seq, name FROM r WHERE seq >= ?1 ORDER BY seq",
                vec![Value::Integer(2)],
                10,
                |row| Ok(row.get::<_, String>(3)?),
            )
            .await
            .unwrap()
            .unwrap();
        let waited = t0.elapsed();
        release.join().unwrap();
        ticker.abort();
        assert_eq!(listing.items, ["b", "c"]);
        assert_eq!((listing.lo, listing.hi), (Some(1), Some(3)));
        assert!(
            waited >= held / 2,
            "the read waited for the lock ({waited:?})"
        );
        let ticks = ticks.load(Ordering::Relaxed);
        assert!(
            ticks >= 20,
            "other tasks ran while the read waited ({ticks} ticks of 10 ms in {waited:?})"
        );
    }

    /// With no row the instance is not the project's; a row of NULLs past
    /// the bounds is an empty page.
    #[tokio::test(flavor = "current_thread")]
    async fn no_row_is_none_and_a_null_record_is_an_empty_page() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE r (seq INTEGER, name TEXT)")
            .unwrap();
        let reads = Arc::new(Reads::new(path));
        let read = |row: &Row<'_>| Ok(row.get::<_, String>(2)?);
        let none = reads
            .list("SELECT 1, 2, name FROM r", vec![], 10, read)
            .await
            .unwrap();
        assert!(none.is_none());
        let empty = reads
            .list("SELECT 1, 2, NULL", vec![], 10, read)
            .await
            .unwrap()
            .unwrap();
        assert!(empty.items.is_empty());
        assert_eq!(empty.hi, Some(2));
    }
}

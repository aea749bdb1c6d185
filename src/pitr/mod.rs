//! Point-in-time recovery: capture of every master's replication stream
//! into checksummed log segments (`capture`, `segment`), the bases a
//! restore starts from (`bases`: the capture's own and the instance's
//! backups), the restorable periods they make (`periods`), retention
//! (`retention`) and the replay a restore to an instant ends with
//! (`replay`).
//!
//! Sits beside `jobs`: it uses the catalog, the store, the replication
//! client and the backup's snapshot writer, and knows no DCS field name.

pub mod bases;
pub mod capture;
mod derive;
mod link;
pub mod periods;
pub mod replay;
pub mod retention;
pub mod segment;

/// Test-only time scale, so tests see periodic bases and retention in
/// seconds. `DCS_BACKUP_TEST_PITR_MINUTE_MS` is how long one minute of a
/// policy's `interval` lasts and `DCS_BACKUP_TEST_PITR_DAY_MS` one day of
/// its `keep_days`. Never set in production: not a flag, not in the
/// README's table, read once at first use; anything unset or not a
/// positive number means the real minute and day.
pub mod scale {
    use std::sync::OnceLock;

    use crate::model::Millis;

    fn read(var: &str, real: Millis) -> Millis {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse::<Millis>().ok())
            .filter(|v| *v > 0)
            .unwrap_or(real)
    }

    /// One minute of `interval`, in ms.
    pub fn minute() -> Millis {
        static M: OnceLock<Millis> = OnceLock::new();
        *M.get_or_init(|| read("DCS_BACKUP_TEST_PITR_MINUTE_MS", 60_000))
    }

    /// One day of `keep_days`, in ms.
    pub fn day() -> Millis {
        static D: OnceLock<Millis> = OnceLock::new();
        *D.get_or_init(|| read("DCS_BACKUP_TEST_PITR_DAY_MS", 86_400_000))
    }
}

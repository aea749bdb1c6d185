//! Retention: PITR data older than `keep_days` that no restorable instant
//! inside the window still needs is removed, and so are orphans (files
//! a crash left without their catalog row).
//!
//! Per shard, the newest base ready at or before the window's start `W`
//! is the oldest thing a restore to `W` needs; bases before it and
//! segments whose last byte was received before it was asked for (so
//! they hold only offsets the base already contains: a base's
//! `taken_at` is set before its sync is requested) go. Only the capture
//! lease holder runs this, and each row is removed by one `DELETE` that
//! reports whether it removed it: the row goes first (nothing visible
//! then points at a missing file), its files after, by the replica whose
//! `DELETE` removed it, so exactly once; a crash between leaves an
//! orphan file, never a record without its data.
//!
//! Orphans: a segment object is written before its row, a base's files
//! before its row. Files under the instance's `pitr/` with no row and
//! last written more than [`ORPHAN_GRACE`] ago are removed: the live
//! capture inserts a row milliseconds after its file is complete, and a
//! replaced lease holder stops its links within a tick, so an object that
//! old without a row is one no capture will ever claim.

use std::collections::HashSet;

use crate::catalog::PitrPolicy;
use crate::jobs::{JobFailure, Jobs};
use crate::model::{now_millis, Millis};

/// Segments removed per shard and pass at most.
const RETENTION_BATCH: i64 = 2000;

/// How old a file without a row must be to be an orphan.
pub const ORPHAN_GRACE: Millis = 10 * 60_000;

pub async fn apply(jobs: &Jobs, policy: &PitrPolicy, now: Millis) -> Result<(), JobFailure> {
    let window = now - policy.keep_days.clamp(1, 7) * super::scale::day();
    let bases = jobs.catalog.pitr_bases(&policy.instance_id).await?;
    let mut shards: Vec<&str> = bases.iter().map(|b| b.shard.as_str()).collect();
    shards.sort_unstable();
    shards.dedup();
    for shard in shards {
        let Some(keep) = bases
            .iter()
            .filter(|b| b.shard == shard && b.ready_at <= window)
            .max_by_key(|b| (b.ready_at, b.taken_at))
        else {
            continue;
        };
        for b in bases
            .iter()
            .filter(|b| b.shard == shard && b.taken_at < keep.taken_at)
        {
            if jobs.catalog.delete_pitr_base(&b.id).await? {
                jobs.store.delete_prefix(&b.prefix).await?;
                tracing::info!(base = %b.id, %shard, "pitr: base past retention removed");
            }
        }
        // A bounded batch per pass (the loop passes every 2 s), read
        // through the time index: never the whole log.
        let old = jobs
            .catalog
            .pitr_segments_before(&policy.instance_id, shard, keep.taken_at, RETENTION_BATCH)
            .await?;
        let mut removed = 0u64;
        for s in &old {
            if jobs.catalog.delete_pitr_segment(s).await? {
                jobs.store.delete_file(&s.object_key).await?;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(%shard, segments = removed, "pitr: log segments past retention removed");
        }
    }
    Ok(())
}

/// Removes the instance's PITR files that have no row and are older than
/// [`ORPHAN_GRACE`]; returns how many.
pub async fn sweep_orphans(jobs: &Jobs, inst: &crate::model::Instance) -> Result<u64, JobFailure> {
    let prefix = super::capture::pitr_prefix(inst);
    // Rows first, files after: a file stored after this read is young.
    let bases = jobs.catalog.pitr_bases(&inst.id).await?;
    let segments = jobs.catalog.pitr_segments(&inst.id).await?;
    let known: HashSet<&str> = segments.iter().map(|s| s.object_key.as_str()).collect();
    let base_dirs: Vec<&str> = bases.iter().map(|b| b.prefix.as_str()).collect();
    let old = now_millis() - ORPHAN_GRACE;
    let mut removed = 0;
    for path in jobs.store.list_files(&prefix).await? {
        let rest = &path[prefix.len().min(path.len())..];
        let owned = if rest.starts_with("log/") {
            known.contains(path.as_str())
        } else if rest.starts_with("bases/") {
            base_dirs.iter().any(|d| path.starts_with(d))
        } else {
            true // not ours to judge
        };
        if owned {
            continue;
        }
        match jobs.store.modified_at(&path).await? {
            Some(t) if t < old => {
                jobs.store.delete_file(&path).await?;
                tracing::info!(%path, "pitr: orphan file removed");
                removed += 1;
            }
            _ => {}
        }
    }
    Ok(removed)
}

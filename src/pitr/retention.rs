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

use std::collections::{HashMap, HashSet};

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

/// Files of the listing checked against the catalog at a time.
const SWEEP_BATCH: usize = 1000;

/// `(shard, repl_id, start offset)` of a segment object's key below the
/// instance's `pitr/` (`log/{shard}/{replid}-{start:020}.seg`).
fn segment_key(rest: &str) -> Option<(&str, &str, i64)> {
    let (shard, file) = rest.strip_prefix("log/")?.split_once('/')?;
    let (id, start) = file.strip_suffix(".seg")?.rsplit_once('-')?;
    Some((shard, id, start.parse().ok()?))
}

/// Removes the instance's PITR files that have no row and are older than
/// [`ORPHAN_GRACE`]; returns how many. The listing is walked in batches,
/// each checked by primary-key lookups: memory stays bounded however long
/// the log.
pub async fn sweep_orphans(jobs: &Jobs, inst: &crate::model::Instance) -> Result<u64, JobFailure> {
    use futures::StreamExt;
    let prefix = super::capture::pitr_prefix(inst);
    // Rows are read after the listing's files: a file stored after its
    // batch was checked is young, and young files are never touched.
    let bases = jobs.catalog.pitr_bases(&inst.id).await?;
    let base_dirs: Vec<&str> = bases.iter().map(|b| b.prefix.as_str()).collect();
    let old = now_millis() - ORPHAN_GRACE;
    let mut removed = 0;
    let mut files = jobs.store.file_stream(&prefix).await?.chunks(SWEEP_BATCH);
    while let Some(batch) = files.next().await {
        let batch = batch.into_iter().collect::<Result<Vec<String>, _>>()?;
        let mut wanted: HashMap<(&str, &str), Vec<i64>> = HashMap::new();
        for path in &batch {
            if let Some((shard, id, start)) = segment_key(&path[prefix.len().min(path.len())..]) {
                wanted.entry((shard, id)).or_default().push(start);
            }
        }
        let mut known: HashSet<(&str, &str, i64)> = HashSet::new();
        for ((shard, id), starts) in &wanted {
            for s in jobs
                .catalog
                .pitr_segment_starts(&inst.id, shard, id, starts)
                .await?
            {
                known.insert((shard, id, s));
            }
        }
        for path in &batch {
            let rest = &path[prefix.len().min(path.len())..];
            let owned = if rest.starts_with("log/") {
                segment_key(rest).is_some_and(|k| known.contains(&k))
            } else if rest.starts_with("bases/") {
                base_dirs.iter().any(|d| path.starts_with(d))
            } else {
                true // not ours to judge
            };
            if owned {
                continue;
            }
            match jobs.store.modified_at(path).await? {
                Some(t) if t < old => {
                    jobs.store.delete_file(path).await?;
                    tracing::info!(%path, "pitr: orphan file removed");
                    removed += 1;
                }
                _ => {}
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::segment_key;

    #[test]
    fn segment_keys_parse_back_to_their_row() {
        let id = "e".repeat(40);
        assert_eq!(
            segment_key(&format!(
                "log/slots-0-5460_10923-16383/{id}-00000000000000012500.seg"
            )),
            Some(("slots-0-5460_10923-16383", id.as_str(), 12_500))
        );
        assert_eq!(segment_key("log/main/x-notanumber.seg"), None);
        assert_eq!(segment_key("bases/abc/file.rdb"), None);
        assert_eq!(segment_key("log/main/r-1.tmp"), None);
    }
}

//! Retention: PITR data older than `keep_days` that no restorable instant
//! inside the window still needs is removed.
//!
//! Per shard, the newest base taken at or before the window's start `W`
//! is the oldest thing a restore to `W` needs; bases before it and
//! segments whose last byte was received before it (so they hold only
//! offsets the base already contains) go. Only the capture lease holder
//! runs this, and each row is removed by one `DELETE` that reports whether
//! it removed it: the row goes first (nothing visible then points at a
//! missing file), its files after; a crash between leaves unreferenced
//! files, never a record without its data.

use crate::catalog::PitrPolicy;
use crate::jobs::{JobFailure, Jobs};
use crate::model::Millis;

const DAY: Millis = 86_400_000;

pub async fn apply(jobs: &Jobs, policy: &PitrPolicy, now: Millis) -> Result<(), JobFailure> {
    let window = now - policy.keep_days.clamp(1, 7) * DAY;
    let bases = jobs.catalog.pitr_bases(&policy.instance_id).await?;
    let mut shards: Vec<&str> = bases.iter().map(|b| b.shard.as_str()).collect();
    shards.sort_unstable();
    shards.dedup();
    let mut segments = None;
    for shard in shards {
        let Some(keep) = bases
            .iter()
            .filter(|b| b.shard == shard && b.taken_at <= window)
            .max_by_key(|b| b.taken_at)
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
        if segments.is_none() {
            segments = Some(jobs.catalog.pitr_segments(&policy.instance_id).await?);
        }
        for s in segments
            .iter()
            .flatten()
            .filter(|s| s.shard == shard && s.last_at < keep.taken_at)
        {
            if jobs.catalog.delete_pitr_segment(s).await? {
                jobs.store.delete_file(&s.object_key).await?;
            }
        }
    }
    Ok(())
}

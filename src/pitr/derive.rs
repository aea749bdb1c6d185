//! A periodic base made without touching the source: the shard's newest
//! base, loaded natively by a scratch server (`--sandbox-server`), the
//! stored log after it replayed in, and the result taken as a snapshot of
//! the scratch server and stored as a base standing at the end of that
//! log, in the source's history (its replication id and offset).
//!
//! Used for a shard whose only node is its master, where a base over a
//! second link would make the master fork. The scratch server runs in the
//! service's own sandbox directory and memory bound; whatever keeps it
//! from serving (no binary loads the base, too big, a failure) leaves the
//! caller to take the base from the master as before.
//!
//! What the derived base holds is what a restore to the end of that log
//! would give (the same verify and replay): the master's dataset at that
//! offset, save for keys whose expiry passed before the scratch server
//! read them, which a restore to any later instant would not bring back
//! either.

use std::sync::Arc;

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::capture::store_base;
use super::replay::{self, ShardPick};
use crate::catalog::BaseRow;
use crate::jobs::backup::Source;
use crate::jobs::restore::Progress;
use crate::jobs::sandbox::{self, Scratch};
use crate::jobs::{JobFailure, Jobs};
use crate::model::{Instance, JobError, Millis, NodeAddr};
use crate::storage::Manifest;

fn refuse(why: impl Into<String>) -> JobFailure {
    JobFailure::new(JobError::ToolStart, why)
}

/// Derives and stores a new base for `shard`; `Err` says why it could not
/// (the caller then takes one from the source).
pub(super) async fn derive_base(
    jobs: &Arc<Jobs>,
    inst: &Instance,
    shard: &str,
    slots: &[(u16, u16)],
    master: &NodeAddr,
    cluster: bool,
) -> Result<BaseRow, JobFailure> {
    if jobs.settings.sandbox_servers.is_empty() {
        return Err(refuse("no --sandbox-server is configured"));
    }
    // The newest stored byte of the shard, and the chain that reaches it.
    let runs = jobs.catalog.pitr_runs(&inst.id).await?;
    let newest = runs
        .iter()
        .filter(|r| r.shard == shard)
        .max_by_key(|r| (r.last_at, r.end_offset))
        .ok_or_else(|| refuse("no log is stored yet"))?;
    let t = newest.last_at;
    let bases: Vec<BaseRow> = super::bases::all(&jobs.catalog, &inst.id)
        .await?
        .into_iter()
        .filter(|b| b.shard == shard && super::bases::format(b) == "rdb")
        .collect();
    let links: Vec<_> = jobs
        .catalog
        .pitr_links(&inst.id)
        .await?
        .into_iter()
        .filter(|l| l.shard == shard)
        .collect();
    let base = replay::choose(&bases, &runs, &links, t)
        .map_err(|_| refuse("no base's chain reaches the newest log"))?
        .into_iter()
        .next()
        .ok_or_else(|| refuse("no base of the shard"))?;
    let segments = replay::chain_to(jobs, &inst.id, &base, &links, t)
        .await
        .map_err(|e| match e {
            replay::PickError::Outside => refuse("no whole chain from the base"),
            replay::PickError::Catalog(e) => JobFailure::from(e),
        })?;
    let Some(last) = segments.last() else {
        return Err(refuse("no log after the newest base"));
    };
    if last.end_offset != newest.end_offset || last.repl_id != newest.repl_id {
        return Err(refuse(
            "the newest base's chain does not reach the newest log",
        ));
    }
    let (end, repl_id, end_at) = (last.end_offset, last.repl_id.clone(), last.last_at);
    let pick = ShardPick {
        shard: shard.to_owned(),
        base: base.clone(),
        segments,
    };
    // Every segment checked before anything runs.
    replay::verify(jobs, std::slice::from_ref(&pick), Millis::MAX).await?;

    let manifest: Manifest =
        serde_json::from_str(&base.manifest).map_err(|e| refuse(format!("base manifest: {e}")))?;
    let file = manifest
        .files
        .first()
        .ok_or_else(|| refuse("the base's manifest lists no file"))?;
    let server = sandbox::choose(&jobs.settings.sandbox_servers, &manifest)
        .map_err(|why| refuse(format!("no sandbox server for the base: {why}")))?
        .clone();
    // The loaded dataset takes a few times its RDB; the replay adds to it.
    let bound = jobs.settings.sandbox_max_memory;
    if file.size.saturating_mul(4) > bound {
        return Err(refuse(format!(
            "the base ({} MiB) is too big for the sandbox bound ({} MiB)",
            file.size >> 20,
            bound >> 20
        )));
    }
    let root = &jobs.settings.sandbox_root;
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| refuse(format!("cannot make {}: {e}", root.display())))?;
    }
    let seed = root.join(format!("seed-{}.rdb", uuid::Uuid::new_v4().simple()));
    let fetched = fetch(jobs, &format!("{}{}", base.prefix, file.name), &seed, file).await;
    if let Err(e) = fetched {
        let _ = tokio::fs::remove_file(&seed).await;
        return Err(e);
    }
    let databases = file.keys_per_db.keys().max().map_or(16, |d| d + 1);
    let scratch = Scratch::start_seeded(&server, root, bound, databases, &jobs.redis, Some(&seed))
        .await
        .map_err(|why| {
            let _ = std::fs::remove_file(&seed);
            refuse(why)
        })?;
    let made = replay_and_store(
        jobs, inst, &scratch, &pick, shard, slots, master, cluster, &repl_id, end, end_at,
    )
    .await;
    scratch.stop(&jobs.redis).await;
    made
}

/// Copies a base file out of the store into `to` (owner-only), checking
/// its size and BLAKE3 against its manifest as it lands.
async fn fetch(
    jobs: &Jobs,
    key: &str,
    to: &std::path::Path,
    file: &crate::storage::ManifestFile,
) -> Result<(), JobFailure> {
    let mut out = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .await
        .map_err(|e| refuse(format!("cannot write {}: {e}", to.display())))?;
    let mut s = jobs.store.read_stream(key).await?;
    let mut hash = blake3::Hasher::new();
    let mut n = 0u64;
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| JobFailure::new(JobError::Storage, e.to_string()))?;
        n += chunk.len() as u64;
        if n > file.size {
            return Err(JobFailure::new(
                JobError::SizeQuery,
                format!("base {key} is larger than its manifest says"),
            ));
        }
        hash.update(&chunk);
        out.write_all(&chunk)
            .await
            .map_err(|e| refuse(format!("cannot write {}: {e}", to.display())))?;
    }
    out.flush()
        .await
        .map_err(|e| refuse(format!("cannot write {}: {e}", to.display())))?;
    if n != file.size || hash.finalize().to_hex().as_str() != file.blake3 {
        return Err(JobFailure::new(
            JobError::SizeQuery,
            format!("base {key} does not match its manifest"),
        ));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn replay_and_store(
    jobs: &Arc<Jobs>,
    inst: &Instance,
    scratch: &Scratch,
    pick: &ShardPick,
    shard: &str,
    slots: &[(u16, u16)],
    master: &NodeAddr,
    cluster: bool,
    repl_id: &str,
    end: i64,
    end_at: Millis,
) -> Result<BaseRow, JobFailure> {
    let conn = scratch.connection();
    let node = NodeAddr {
        host: "127.0.0.1".into(),
        port: scratch.port,
    };
    let sent = replay::replay(jobs, &conn, &node, pick, Millis::MAX, &Progress::default()).await?;
    let mut snap = crate::redis::replication::start_snapshot(&conn, &node, &jobs.redis).await?;
    // The snapshot stands where the replayed log ends, in the source's
    // history, not in the scratch server's own.
    snap.replid = repl_id.to_owned();
    snap.offset = Some(end as u64);
    let src = Source {
        node,
        shard_master: master.clone(),
        slots: slots.to_vec(),
    };
    // Every byte before `end` had arrived by `end_at`; the row is
    // restorable from when it is stored.
    let (_, row) = store_base(jobs, inst, shard, src, cluster, snap, end_at, None).await?;
    tracing::info!(
        %shard,
        from = %pick.base.id,
        commands = sent,
        offset = end,
        "pitr: base derived in a scratch server, the source untouched"
    );
    Ok(row)
}

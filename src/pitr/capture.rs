//! Capture: one replica link per master of every instance with PITR
//! enabled ([`super::link`]), its stream cut into segments in the store.
//!
//! Which `serve` replica captures an instance is decided by a lease row
//! (`pitr_leases`), taken when free or lapsed and renewed every
//! [`TICK`]; a holder that dies is replaced within [`LEASE`]. The holder
//! runs one task per instance: the topology, a link per master, and
//! periodic bases.
//!
//! Every [`TICK`] the holder also takes a base when the newest one (a
//! backup of the same history counts) is older than the policy's
//! interval: over a second link from a replica when the shard has a
//! healthy one, else derived in a scratch server ([`super::derive`]) when
//! one is configured, else from the master (a fork). It also removes data
//! older than `keep_days` that no restorable instant in the window needs
//! ([`super::retention`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::link::Link;
use crate::catalog::{BaseRow, PitrPolicy};
use crate::jobs::backup::{choose_sources, file_name, store_snapshot, Progress, Source};
use crate::jobs::{JobFailure, Jobs, Meter};
use crate::model::{compact_utc, now_millis, BackupFormat, BackupId, Instance, Millis, Topology};
use crate::redis::discover;
use crate::storage::Manifest;

/// How often leases are renewed and policies read.
pub const TICK: Duration = Duration::from_secs(2);
/// How long a capture lease lasts without renewal.
pub const LEASE: Duration = Duration::from_secs(8);

/// The name of a shard in the catalog: its slots in a cluster, else `main`.
pub fn shard_key(topology: &Topology, slots: &[(u16, u16)]) -> String {
    shard_key_of(
        topology.cache_mode() == crate::model::CacheMode::Cluster,
        slots,
    )
}

/// [`shard_key`] from whether the instance is a cluster.
pub fn shard_key_of(cluster: bool, slots: &[(u16, u16)]) -> String {
    if cluster {
        let parts: Vec<String> = slots.iter().map(|(a, b)| format!("{a}-{b}")).collect();
        format!("slots-{}", parts.join("_"))
    } else {
        "main".to_owned()
    }
}

/// Where an instance's PITR data lives in the store.
pub fn pitr_prefix(inst: &Instance) -> String {
    format!("{}/{}/pitr/", inst.project_id.as_str(), inst.id.as_str())
}

/// Runs capture for every instance whose lease this node holds, until
/// `shutdown`.
pub async fn run(jobs: Arc<Jobs>, mut shutdown: watch::Receiver<bool>) {
    let mut running: HashMap<String, (tokio::task::JoinHandle<()>, Arc<AtomicBool>)> =
        HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    // Retention and the orphan sweep run beside this loop, one task per
    // instance at a time: removing thousands of objects or listing a long
    // log takes far longer than a lease, and this loop must renew every
    // lease each tick. Orphans are looked for when this node takes an
    // instance (a holder that died may have left some) and then every hour
    // (of the test scale): listing a week's log is ~2,400 LIST calls on
    // S3, and an orphan costs only its storage until the next pass.
    let sweep_every = Duration::from_millis(60 * super::scale::minute() as u64);
    let mut upkeep: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut swept: HashMap<String, tokio::time::Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
        let policies = match jobs.catalog.pitr_policies().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "pitr: cannot read policies");
                continue;
            }
        };
        let now = now_millis();
        let mut wanted = std::collections::HashSet::new();
        for p in policies.iter().filter(|p| p.enabled) {
            let id = p.instance_id.to_string();
            let held = jobs
                .catalog
                .claim_pitr_lease(
                    &p.instance_id,
                    &jobs.node_id,
                    now,
                    now + LEASE.as_millis() as i64,
                )
                .await
                .unwrap_or(false);
            if !held {
                continue;
            }
            wanted.insert(id.clone());
            if let Some((h, _)) = running.get(&id) {
                if !h.is_finished() {
                    continue;
                }
            }
            let stop = Arc::new(AtomicBool::new(false));
            let task = tokio::spawn(capture_instance(
                Arc::clone(&jobs),
                p.clone(),
                Arc::clone(&stop),
            ));
            running.insert(id, (task, stop));
        }
        running.retain(|id, (task, stop)| {
            if wanted.contains(id) {
                return true;
            }
            // Disabled, deleted, or the lease went to another node.
            stop.store(true, Ordering::SeqCst);
            task.abort();
            false
        });
        for p in policies.iter().filter(|p| !p.enabled) {
            let _ = jobs
                .catalog
                .release_pitr_lease(&p.instance_id, &jobs.node_id)
                .await;
        }
        for p in policies
            .iter()
            .filter(|p| wanted.contains(p.instance_id.as_str()))
        {
            let id = p.instance_id.to_string();
            if upkeep.get(&id).is_some_and(|h| !h.is_finished()) {
                continue;
            }
            let sweep = swept.get(&id).is_none_or(|t| t.elapsed() >= sweep_every);
            if sweep {
                swept.insert(id.clone(), tokio::time::Instant::now());
            }
            let (jobs, p) = (Arc::clone(&jobs), p.clone());
            upkeep.insert(id, tokio::spawn(housekeep(jobs, p, sweep)));
        }
        // An instance no longer held: its upkeep stops (an object whose
        // row it had removed is an orphan the next holder sweeps).
        upkeep.retain(|id, task| {
            let keep = wanted.contains(id);
            if !keep {
                task.abort();
                swept.remove(id);
            }
            keep
        });
    }
    for (_, task) in upkeep {
        task.abort();
    }
    for (_, (task, stop)) in running {
        stop.store(true, Ordering::SeqCst);
        // Give links a moment to store their open segments.
        let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
    }
}

/// One pass of an instance's retention and, when `sweep`, its orphan
/// sweep.
async fn housekeep(jobs: Arc<Jobs>, policy: PitrPolicy, sweep: bool) {
    if let Err(e) = super::retention::apply(&jobs, &policy, now_millis()).await {
        tracing::warn!(instance = %policy.instance_id, error = %e.detail, "pitr retention failed");
    }
    if !sweep {
        return;
    }
    if let Ok(Some(inst)) = jobs.catalog.instance_any(&policy.instance_id).await {
        if let Err(e) = super::retention::sweep_orphans(&jobs, &inst).await {
            tracing::warn!(instance = %policy.instance_id, error = %e.detail, "pitr orphan sweep failed");
        }
    }
}

/// Captures one instance: a link per master, rediscovered when one ends.
#[tracing::instrument(skip_all, fields(instance = %policy.instance_id))]
async fn capture_instance(jobs: Arc<Jobs>, policy: PitrPolicy, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        let inst = match jobs.catalog.instance_any(&policy.instance_id).await {
            Ok(Some(i)) => i,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "pitr: cannot read the instance");
                tokio::time::sleep(TICK).await;
                continue;
            }
        };
        let topology = match discover(&inst.connection, &jobs.redis).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "pitr: cannot reach the instance");
                tokio::time::sleep(TICK).await;
                continue;
            }
        };
        let inst = Arc::new(inst);
        let round = Arc::new(AtomicBool::new(false));
        let mut links = Vec::new();
        for shard in &topology.shards {
            let key = shard_key(&topology, &shard.slots);
            let link = Link {
                jobs: Arc::clone(&jobs),
                inst: Arc::clone(&inst),
                shard: key,
                master: shard.master.clone(),
                slots: shard.slots.clone(),
                cluster: topology.cache_mode() == crate::model::CacheMode::Cluster,
                stop: Arc::clone(&stop),
                round: Arc::clone(&round),
            };
            links.push(tokio::spawn(async move {
                let r = link.run().await;
                (link.shard, r)
            }));
        }
        let bases = tokio::spawn(periodic_bases(
            Arc::clone(&jobs),
            Arc::clone(&inst),
            topology.clone(),
            policy.interval_min,
            Arc::clone(&stop),
        ));
        // The first link to end (error or stop) ends this round: a failover
        // or resharding shows in the next discovery.
        let (first, _, rest) = futures::future::select_all(links).await;
        if let Ok((shard, Err(e))) = first {
            tracing::warn!(%shard, error = %e.detail, "pitr: capture link ended");
        }
        if !rest.is_empty() {
            // Let the other links store what they hold before they stop.
            round.store(true, Ordering::SeqCst);
            for l in rest {
                let _ = tokio::time::timeout(Duration::from_secs(3), l).await;
            }
        }
        bases.abort();
        if !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Takes a base of every shard whose newest base is older than the
/// policy's interval, over a second link.
async fn periodic_bases(
    jobs: Arc<Jobs>,
    inst: Arc<Instance>,
    topology: Topology,
    interval_min: i64,
    stop: Arc<AtomicBool>,
) {
    let every = interval_min.max(1) * super::scale::minute();
    // Checked every tick: a base is at most a tick (and its transfer)
    // later than due, so a restore replays little more than an interval.
    let poll = Duration::from_millis((every as u64 / 4).clamp(250, TICK.as_millis() as u64));
    loop {
        tokio::time::sleep(poll).await;
        if stop.load(Ordering::SeqCst) {
            return;
        }
        // A backup of the history the link now follows counts as a base:
        // while one is recent, the source is spared a fork.
        // Only positions and `taken_at` matter here: no per-backup lookup
        // of the segment it lies in on every poll.
        let (Ok(mut bases), Ok(backups), Ok(links)) = (
            jobs.catalog.pitr_bases(&inst.id).await,
            super::bases::backups(&jobs.catalog, &inst.id).await,
            jobs.catalog.pitr_links(&inst.id).await,
        ) else {
            continue;
        };
        bases.extend(backups);
        let now = now_millis();
        let sources = choose_sources(&inst.connection, &topology, &jobs.redis).await;
        for src in sources {
            let key = shard_key(&topology, &src.slots);
            let link = links.iter().find(|l| l.shard == key);
            let newest = bases
                .iter()
                .filter(|b| b.shard == key)
                .filter(|b| {
                    !b.from_backup
                        || link.is_some_and(|l| {
                            l.repl_id == b.repl_id && b.repl_offset <= l.end_offset
                        })
                })
                .map(|b| b.taken_at)
                .max();
            if newest.is_some_and(|t| now - t < every) || newest.is_none() {
                // No base yet: the capture link's own full sync makes it.
                continue;
            }
            let cluster = topology.cache_mode() == crate::model::CacheMode::Cluster;
            // A shard with no healthy replica would fork its master: where
            // sandbox servers are configured, the base is derived from the
            // previous one and the log instead, and the source is not asked.
            if src.node == src.shard_master && !jobs.settings.sandbox_servers.is_empty() {
                match super::derive::derive_base(
                    &jobs,
                    &inst,
                    &key,
                    &src.slots,
                    &src.shard_master,
                    cluster,
                )
                .await
                {
                    Ok(_) => continue,
                    Err(e) => tracing::warn!(
                        shard = %key,
                        error = %e.detail,
                        "pitr: could not derive a base in a scratch server; taking it from the master"
                    ),
                }
            }
            match take_base(&jobs, &inst, &key, src, cluster).await {
                Ok(()) => tracing::info!(shard = %key, "pitr: periodic base stored"),
                Err(e) => {
                    tracing::warn!(shard = %key, error = %e.detail, "pitr: periodic base failed")
                }
            }
        }
    }
}

async fn take_base(
    jobs: &Arc<Jobs>,
    inst: &Instance,
    shard: &str,
    src: Source,
    cluster: bool,
) -> Result<(), JobFailure> {
    // Before the sync: every byte past the base's offset arrives later.
    let taken_at = now_millis();
    let snap =
        crate::redis::replication::start_snapshot(&inst.connection, &src.node, &jobs.redis).await?;
    store_base(jobs, inst, shard, src, cluster, snap, taken_at, None)
        .await
        .map(|_| ())
}

/// Stores a snapshot as a base (a backup-shaped directory with its
/// manifest, then its row) and hands back the snapshot for its stream.
/// `taken_at` is when the sync was asked for (no byte past the base's
/// offset arrives before it: retention relies on that); `ready_at`
/// defaults to the time the base is complete.
#[allow(clippy::too_many_arguments)]
pub(super) async fn store_base(
    jobs: &Arc<Jobs>,
    inst: &Instance,
    shard: &str,
    src: Source,
    cluster: bool,
    mut snap: crate::redis::replication::Snapshot,
    taken_at: Millis,
    ready_at: Option<Millis>,
) -> Result<(crate::redis::replication::Snapshot, BaseRow), JobFailure> {
    let (Some(offset), false) = (snap.offset, snap.replid.is_empty()) else {
        return Err(JobFailure::new(
            crate::model::JobError::ToolStart,
            "the master did not say the snapshot's replication offset",
        ));
    };
    let id = BackupId::generate().to_string();
    let prefix = format!("{}bases/{id}/", pitr_prefix(inst));
    let name = file_name(&src, cluster, &compact_utc(taken_at), BackupFormat::Rdb);
    let path = format!("{prefix}{name}");
    let file = store_snapshot(
        jobs,
        &mut snap,
        None,
        src,
        name.clone(),
        path,
        BackupFormat::Rdb,
        Arc::new(Progress::default()),
        Arc::new(Meter::default()),
    )
    .await;
    let file = match file {
        Ok(f) => f,
        Err(e) => {
            let _ = jobs.store.delete_prefix(&prefix).await;
            return Err(e);
        }
    };
    let manifest = Manifest {
        manifest_version: 2,
        backup_id: id.clone(),
        instance_id: inst.id.to_string(),
        project_id: inst.project_id.to_string(),
        format: "rdb".into(),
        cache_mode: if cluster { "cluster" } else { "single" }.into(),
        engine: String::new(),
        server_version: String::new(),
        started_at: taken_at,
        completed_at: now_millis(),
        files: vec![file],
    };
    jobs.store.put_manifest(&prefix, &manifest).await?;
    let json = serde_json::to_string(&manifest)
        .map_err(|e| JobFailure::new(crate::model::JobError::Storage, e.to_string()))?;
    let row = BaseRow {
        id,
        instance_id: inst.id.clone(),
        shard: shard.to_owned(),
        prefix,
        file_name: name,
        repl_id: snap.replid.clone(),
        repl_offset: offset as i64,
        taken_at,
        ready_at: ready_at.unwrap_or_else(now_millis),
        size: manifest.total_size() as i64,
        manifest: json,
        from_backup: false,
    };
    jobs.catalog.insert_pitr_base(&row).await?;
    Ok((snap, row))
}

/// Reads a whole object of the store (segments are small).
pub(crate) async fn read_object(
    jobs: &Jobs,
    key: &str,
    limit: u64,
) -> Result<Vec<u8>, crate::storage::StorageError> {
    use futures::StreamExt;
    let mut s = jobs.store.read_stream(key).await?;
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        let chunk = chunk.map_err(|e| crate::storage::StorageError::Manifest {
            path: key.to_owned(),
            why: e.to_string(),
        })?;
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(crate::storage::StorageError::Manifest {
                path: key.to_owned(),
                why: "object larger than its record says".into(),
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

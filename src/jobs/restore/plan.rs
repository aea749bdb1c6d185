//! Plan: what the target is, what the backup holds, and which path (feed,
//! slicing, decoded commands) takes one into the other, or a refusal.
//!
//! Everything the target says about itself is read once, before anything
//! is written, and [`decide`] is a pure function of those facts and the
//! backup's: a restore the target could not finish is refused here, with
//! the target untouched.

use std::collections::BTreeMap;

use dcs_rdb::types::type_name;
use dcs_rdb::Flavor;

use super::verify::BackupFacts;
use super::RestoreMode;
use crate::jobs::{JobFailure, Jobs};
use crate::model::{CacheMode, Instance, NodeAddr, RestoreFilter, Topology};
use crate::redis::topology::{missing_commands, server_facts, ServerFacts};
use crate::redis::Conn;

/// What the slicer needs to know of the target: the capabilities every
/// master shares.
#[derive(Clone, Debug)]
pub(crate) struct TargetInfo {
    pub rdb_version: u32,
    pub flavor: Flavor,
    pub functions: bool,
    /// Redis < 7 does not know the 7.0 stream counters.
    pub legacy_streams: bool,
}

/// How the data gets into the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RestorePath {
    /// The target loads the RDB from the service playing its master.
    Feed,
    /// RESTORE payloads (and decoded commands) or an AOF's commands,
    /// pipelined to each key's master.
    Slice,
}

impl RestorePath {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Feed => "feed",
            Self::Slice => "slicing",
        }
    }
}

/// One master of the target as the plan saw it.
#[derive(Clone, Debug)]
pub(crate) struct NodeFacts {
    pub addr: NodeAddr,
    pub server: ServerFacts,
    /// Commands the restore may send that the node does not know under
    /// that name; `None` when it does not say (`COMMAND` refused).
    pub missing: Option<Vec<String>>,
    /// Inclusive slot ranges it owns (clusters).
    pub slots: Vec<(u16, u16)>,
}

/// Everything the plan decides on besides the facts.
#[derive(Clone, Debug)]
pub(crate) struct PlanInput<'a> {
    pub masters: &'a [NodeFacts],
    pub backup: &'a BackupFacts,
    pub cluster: bool,
    pub mode: RestoreMode,
    /// The target is reached over TLS.
    pub tls: bool,
    pub feed_listener: bool,
    /// A partial restore: only these keys, nothing flushed.
    pub filter: Option<&'a RestoreFilter>,
}

impl<'a> PlanInput<'a> {
    pub fn with_filter(mut self, filter: Option<&'a RestoreFilter>) -> Self {
        self.filter = filter;
        self
    }
}

/// The accepted plan.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub path: RestorePath,
    /// Why this path, and every other choice, in words.
    pub decisions: Vec<String>,
    pub target: TargetInfo,
    pub keys: u64,
    pub keys_per_db: BTreeMap<u64, u64>,
    pub bytes_per_db: BTreeMap<u64, u64>,
    /// Estimated memory the dataset takes once loaded.
    pub memory_estimate: u64,
    /// Estimated seconds of the execute phase.
    pub estimated_seconds: f64,
}

/// Per-key memory beyond the key and value bytes: a string's dict entry,
/// object and sds headers; an aggregate's container structures. Measured
/// on Redis 7.0 (`used_memory_dataset` after `DEBUG POPULATE` and small
/// lists and hashes): the estimate came within -2 % to +24 % of it.
const STRING_OVERHEAD: u64 = 32;
const AGGREGATE_OVERHEAD: u64 = 128;
/// A dataset is refused when its estimate plus this share of it does not
/// fit in `maxmemory` minus what stays.
const MEMORY_MARGIN_PERCENT: u64 = 10;
/// Execute rates measured by `bench/restore-bench.sh` on this machine
/// kind (bench/README.md, session 3 medians): the feed loads about
/// 200 MB/s, slicing about 120 MB/s of stored backup.
const FEED_BYTES_PER_SECOND: f64 = 200e6;
const SLICE_BYTES_PER_SECOND: f64 = 120e6;

/// The commands a value type is written with when decoded.
fn decoded_commands(rdb_type: u8) -> &'static [&'static str] {
    match type_name(rdb_type) {
        "string" => &["SET"],
        "list" => &["RPUSH"],
        "set" => &["SADD"],
        "zset" => &["ZADD"],
        "hash" => &["HSET"],
        "stream" => &["XADD", "XSETID", "XGROUP", "XCLAIM"],
        _ => &[],
    }
}

/// Reads every master's facts, one connection each, writing nothing.
pub(crate) async fn gather(
    jobs: &Jobs,
    target: &Instance,
    topology: &Topology,
    backup: &BackupFacts,
) -> Result<Vec<NodeFacts>, JobFailure> {
    let mut masters = Vec::with_capacity(topology.shards.len());
    let probe = commands_to_probe(backup);
    for shard in &topology.shards {
        let m = &shard.master;
        let mut c = Conn::open(&target.connection, &m.host, m.port, &jobs.redis).await?;
        let server = server_facts(&mut c).await?;
        let missing = missing_commands(&mut c, &probe).await?;
        masters.push(NodeFacts {
            addr: m.clone(),
            server,
            missing,
            slots: shard.slots.clone(),
        });
    }
    Ok(masters)
}

/// The facts and the settings a plan is decided on.
pub(crate) fn input<'a>(
    jobs: &Jobs,
    target: &Instance,
    topology: &Topology,
    masters: &'a [NodeFacts],
    backup: &'a BackupFacts,
) -> PlanInput<'a> {
    PlanInput {
        masters,
        backup,
        cluster: topology.cache_mode() == CacheMode::Cluster,
        mode: jobs.settings.restore_mode,
        tls: target.connection.tls,
        feed_listener: jobs.feed.is_some(),
        filter: None,
    }
}

/// Every command some path could send, asked about in one `COMMAND INFO`.
fn commands_to_probe(backup: &BackupFacts) -> Vec<&'static str> {
    let mut names = vec![
        "REPLICAOF",
        "CONFIG",
        "FLUSHALL",
        "DEL",
        "RESTORE",
        "SELECT",
        "PEXPIREAT",
        "FUNCTION",
        "HPEXPIREAT",
    ];
    for t in backup.keys_per_rdb_type.keys() {
        names.extend_from_slice(decoded_commands(*t));
    }
    names.extend(aof_commands(backup));
    names.sort_unstable();
    names.dedup();
    names
}

/// Command names an AOF backup of ours holds, asked about by name.
const KNOWN_AOF_COMMANDS: &[&str] = &[
    "SELECT",
    "SET",
    "RPUSH",
    "SADD",
    "ZADD",
    "HSET",
    "XADD",
    "XSETID",
    "XGROUP",
    "XCLAIM",
    "XDEL",
    "PEXPIREAT",
    "HPEXPIREAT",
    "FUNCTION",
    "MULTI",
    "EXEC",
];

/// The commands of [`KNOWN_AOF_COMMANDS`] an AOF backup replays.
fn aof_commands(backup: &BackupFacts) -> impl Iterator<Item = &'static str> + '_ {
    KNOWN_AOF_COMMANDS
        .iter()
        .copied()
        .filter(|k| backup.aof_commands.contains(*k))
}

/// Estimated memory of the dataset once loaded.
pub(crate) fn memory_estimate(b: &BackupFacts) -> u64 {
    let strings = b
        .keys_per_rdb_type
        .iter()
        .filter(|(t, _)| type_name(**t) == "string")
        .map(|(_, n)| n)
        .sum::<u64>();
    let aggregates = b.keys.saturating_sub(strings);
    b.expanded_bytes + strings * STRING_OVERHEAD + aggregates * AGGREGATE_OVERHEAD
}

fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
}

/// Why the dataset would not fit in a master's `maxmemory`, if it would
/// not: a full restore flushes the target first, so what stays is the
/// server's own overhead; a partial one keeps the whole dataset (and counts
/// the keys it replaces twice: an upper bound).
pub(crate) fn memory_refusal(input: &PlanInput<'_>) -> Option<String> {
    let (b, masters) = (input.backup, input.masters);
    let estimate = memory_estimate(b);
    let total_slots: u64 = 16384;
    for m in masters {
        let s = &m.server;
        if s.maxmemory == 0 {
            continue;
        }
        let share = if input.cluster {
            let owned: u64 = m.slots.iter().map(|(lo, hi)| u64::from(hi - lo) + 1).sum();
            estimate.saturating_mul(owned) / total_slots
        } else {
            estimate
        };
        let stays = if input.filter.is_some() {
            s.used_memory
        } else {
            s.used_memory.saturating_sub(s.used_memory_dataset)
        };
        let room = s.maxmemory.saturating_sub(stays);
        let need = share + share * MEMORY_MARGIN_PERCENT / 100;
        if need > room {
            let what = if s.maxmemory_policy == "noeviction" {
                "it would refuse writes before the end (maxmemory-policy noeviction)".to_owned()
            } else {
                format!(
                    "it would silently evict restored keys (maxmemory-policy {})",
                    s.maxmemory_policy
                )
            };
            return Some(format!(
                "the dataset needs about {} (estimate plus {MEMORY_MARGIN_PERCENT} %), and the \
                 target {} has {} of maxmemory {} free{}: {what}",
                mib(need),
                m.addr,
                mib(room),
                mib(s.maxmemory),
                if input.filter.is_some() {
                    ""
                } else {
                    " once flushed"
                }
            ));
        }
    }
    None
}

/// The heart of the plan: refuse what the target cannot finish, else pick
/// the fastest path it accepts.
pub(crate) fn decide(input: &PlanInput<'_>) -> Result<Plan, String> {
    let b = input.backup;
    let masters = input.masters;
    let first = masters.first().ok_or("the target has no master")?;
    let mut decisions = Vec::new();
    if let Some(f) = input.filter {
        decisions.push(format!(
            "partial: only {} ({} keys of the backup); nothing is flushed, each replaces its \
             namesake and every other key stays",
            f.describe(),
            b.keys
        ));
        if b.keys == 0 {
            return Err(format!(
                "the filter ({}) takes no key of the backup",
                f.describe()
            ));
        }
    }

    // Databases.
    let max_db = b
        .keys_per_db
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(db, _)| *db)
        .max();
    if input.cluster {
        if let Some(db) = max_db.filter(|db| *db > 0) {
            return Err(format!(
                "the backup has keys in database {db}, and a cluster has only database 0"
            ));
        }
    } else if let Some(db) = max_db.filter(|db| *db > 0) {
        for m in masters {
            match m.server.databases {
                Some(n) if db >= n => {
                    return Err(format!(
                        "the backup has keys in database {db}, and the target {} has {n} \
                         databases (its `databases` setting)",
                        m.addr
                    ))
                }
                Some(_) => {}
                None => {
                    return Err(format!(
                        "the backup has keys in database {db}, and the target {} does not \
                         say how many databases it has (CONFIG GET is refused)",
                        m.addr
                    ))
                }
            }
        }
    }

    // Hash field expiries.
    if b.field_ttl_hashes > 0 {
        if let Some(m) = masters.iter().find(|m| !m.server.has_field_ttls()) {
            return Err(format!(
                "the backup has {} hashes with field expiries, which {} {} at {} does not \
                 support (Redis 7.4+ or Valkey 9.0+ needed)",
                b.field_ttl_hashes, m.server.engine, m.server.version, m.addr
            ));
        }
    }

    // Module values.
    for (module, n) in &b.modules {
        for m in masters {
            let loaded = m.server.modules.as_deref().unwrap_or_default();
            let serves = loaded.iter().any(|l| {
                let (l, t) = (l.to_ascii_lowercase(), module.to_ascii_lowercase());
                !l.is_empty() && (t.starts_with(&l) || l.starts_with(t.trim_end_matches('-')))
            });
            if !serves {
                return Err(format!(
                    "the backup has {n} values of module type '{module}', and the target {} \
                     has no module for it (modules loaded: {})",
                    m.addr,
                    if loaded.is_empty() {
                        "none".to_owned()
                    } else {
                        loaded.join(", ")
                    }
                ));
            }
        }
    }

    // Memory: a full restore flushes the target first, so what stays is
    // the server's own overhead; a partial one keeps the whole dataset
    // (and counts the keys it replaces twice: an upper bound).
    let estimate = memory_estimate(b);
    if let Some(why) = memory_refusal(input) {
        return Err(why);
    }
    decisions.push(format!("memory: about {} needed", mib(estimate)));

    // What every master shares.
    let target = TargetInfo {
        rdb_version: masters
            .iter()
            .map(|m| m.server.rdb_version)
            .min()
            .unwrap_or(9),
        flavor: first.server.rdb_flavor(),
        functions: masters.iter().all(|m| m.server.has_functions()),
        legacy_streams: masters.iter().any(|m| m.server.legacy_streams()),
    };

    // The path.
    let missing_on = |names: &[&str]| -> Vec<String> {
        let mut out = Vec::new();
        for m in masters {
            if let Some(missing) = &m.missing {
                for n in names {
                    if missing.iter().any(|x| x.eq_ignore_ascii_case(n)) {
                        out.push(format!("{n} on {}", m.addr));
                    }
                }
            }
        }
        out
    };
    let single_rdb = !b.aof && b.rdbs.len() == 1;
    let why_not_feed = if input.filter.is_some() {
        Some(
            "a partial restore writes chosen keys (a full sync would replace everything)"
                .to_owned(),
        )
    } else if input.cluster {
        Some("the target is a cluster (REPLICAOF is refused in cluster mode)".to_owned())
    } else if !single_rdb {
        Some(format!(
            "the backup is {} {} file(s)",
            b.rdbs.len(),
            if b.aof { "AOF" } else { "RDB" }
        ))
    } else if !dcs_rdb::server_loads_rdb(target.rdb_version, b.rdbs[0].0, b.rdbs[0].1) {
        Some(format!(
            "the target cannot load RDB version {} (it writes {})",
            b.rdbs[0].1, target.rdb_version
        ))
    } else if input.tls {
        Some(
            "the target is reached over TLS and the feed would send the snapshot in clear text"
                .to_owned(),
        )
    } else if first.server.tls_replication {
        Some("the target replicates over TLS (tls-replication yes)".to_owned())
    } else if input.mode == RestoreMode::Slice {
        Some("slicing was forced by configuration".to_owned())
    } else if !input.feed_listener {
        Some("the replication listener is not running".to_owned())
    } else {
        let missing = missing_on(&["REPLICAOF", "CONFIG"]);
        (!missing.is_empty()).then(|| format!("the target lacks {}", missing.join(", ")))
    };

    // The commands slicing would send.
    let mut slice_needs: Vec<&str> = Vec::new();
    // A partial restore clears each taken key with DEL where it is built
    // up by commands, and flushes nothing.
    let clear = if input.filter.is_some() {
        "DEL"
    } else {
        "FLUSHALL"
    };
    if b.aof {
        slice_needs.extend(aof_commands(b));
        slice_needs.push(clear);
    } else {
        slice_needs.extend([clear, "RESTORE"]);
        if !input.cluster {
            slice_needs.push("SELECT");
        }
        if b.functions > 0 && target.functions {
            slice_needs.push("FUNCTION");
        }
        // Values the target cannot RESTORE go as decoded commands.
        for t in b.keys_per_rdb_type.keys() {
            let native = dcs_rdb::min_rdb_version_for_type(*t, first.server.rdb_flavor())
                .is_some_and(|min| min <= target.rdb_version);
            if !native {
                slice_needs.extend_from_slice(decoded_commands(*t));
                if b.expiring_keys > 0 {
                    slice_needs.push("PEXPIREAT");
                }
            }
        }
    }
    if input.cluster && b.aof && b.aof_commands.contains("SELECT") {
        slice_needs.retain(|c| *c != "SELECT");
    }
    let slice_missing = missing_on(&slice_needs);
    if masters.iter().any(|m| m.missing.is_none()) {
        decisions.push(
            "the target does not list its commands (COMMAND refused): they are assumed present"
                .into(),
        );
    }

    let path = match (why_not_feed, input.mode) {
        (None, _) => {
            decisions.push("path: replication feed (the target loads the RDB natively)".into());
            if !slice_missing.is_empty() {
                decisions.push(format!(
                    "no fallback to slicing: the target lacks {}",
                    slice_missing.join(", ")
                ));
            }
            RestorePath::Feed
        }
        (Some(why), RestoreMode::Feed) => {
            return Err(format!("the feed is required but not possible: {why}"))
        }
        (Some(why), _) => {
            if !slice_missing.is_empty() {
                return Err(format!(
                    "the restore would send commands the target refuses or renamed: {}",
                    slice_missing.join(", ")
                ));
            }
            decisions.push(format!("path: slicing, because {why}"));
            RestorePath::Slice
        }
    };
    let rate = match path {
        RestorePath::Feed => FEED_BYTES_PER_SECOND,
        RestorePath::Slice => SLICE_BYTES_PER_SECOND,
    };
    Ok(Plan {
        path,
        decisions,
        target,
        keys: b.keys,
        keys_per_db: b.keys_per_db.clone(),
        bytes_per_db: b.bytes_per_db.clone(),
        memory_estimate: estimate,
        estimated_seconds: b.stored_bytes as f64 / rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(version: &str, rdb: u32) -> ServerFacts {
        ServerFacts {
            engine: "redis".into(),
            version: version.into(),
            redis_version: version.into(),
            rdb_version: rdb,
            cluster: false,
            maxmemory: 0,
            maxmemory_policy: "noeviction".into(),
            used_memory: 1 << 20,
            used_memory_dataset: 0,
            databases: Some(16),
            modules: Some(vec![]),
            tls_replication: false,
        }
    }

    fn node(server: ServerFacts) -> NodeFacts {
        NodeFacts {
            addr: NodeAddr {
                host: "127.0.0.1".into(),
                port: 6379,
            },
            server,
            missing: Some(vec![]),
            slots: vec![],
        }
    }

    fn rdb_backup(version: u32) -> BackupFacts {
        BackupFacts {
            rdbs: vec![(dcs_rdb::Magic::Redis, version)],
            keys: 10,
            keys_per_db: [(0, 10)].into(),
            keys_per_rdb_type: [(0u8, 10)].into(),
            expanded_bytes: 1000,
            stored_bytes: 1000,
            ..BackupFacts::default()
        }
    }

    fn decide_one(server: ServerFacts, backup: &BackupFacts) -> Result<Plan, String> {
        let masters = [node(server)];
        decide(&PlanInput {
            masters: &masters,
            backup,
            cluster: false,
            mode: RestoreMode::Auto,
            tls: false,
            feed_listener: true,
            filter: None,
        })
    }

    #[test]
    fn a_loadable_rdb_is_fed_and_a_newer_one_sliced() {
        let p = decide_one(server("7.0.15", 10), &rdb_backup(10)).unwrap();
        assert_eq!(p.path, RestorePath::Feed);
        let p = decide_one(server("6.2.14", 9), &rdb_backup(10)).unwrap();
        assert_eq!(p.path, RestorePath::Slice);
        assert!(p
            .decisions
            .iter()
            .any(|d| d.contains("cannot load RDB version 10")));
    }

    #[test]
    fn field_ttls_need_a_server_that_has_them() {
        let mut b = rdb_backup(12);
        b.field_ttl_hashes = 3;
        let why = decide_one(server("7.0.15", 10), &b).unwrap_err();
        assert!(why.contains("3 hashes with field expiries"), "{why}");
        assert!(decide_one(server("8.2.3", 12), &b).is_ok());
        let mut valkey = server("7.2.4", 80);
        valkey.engine = "valkey".into();
        assert!(decide_one(valkey, &b).is_ok());
    }

    #[test]
    fn a_database_the_target_lacks_is_refused() {
        let mut b = rdb_backup(10);
        b.keys_per_db = [(0, 5), (5, 5)].into();
        let mut s = server("7.0.15", 10);
        s.databases = Some(2);
        let why = decide_one(s.clone(), &b).unwrap_err();
        assert!(why.contains("database 5") && why.contains("has 2"), "{why}");
        s.databases = None;
        assert!(decide_one(s, &b).is_err());
        let masters = [node(server("7.0.15", 10))];
        let why = decide(&PlanInput {
            masters: &masters,
            backup: &b,
            cluster: true,
            mode: RestoreMode::Auto,
            tls: false,
            feed_listener: true,
            filter: None,
        })
        .unwrap_err();
        assert!(why.contains("only database 0"), "{why}");
    }

    #[test]
    fn module_values_need_their_module() {
        let mut b = rdb_backup(10);
        b.modules = [("graphdata".to_owned(), 2)].into();
        let why = decide_one(server("7.0.15", 10), &b).unwrap_err();
        assert!(why.contains("'graphdata'") && why.contains("none"), "{why}");
        let mut s = server("7.0.15", 10);
        s.modules = Some(vec!["graph".into()]);
        assert!(decide_one(s, &b).is_ok());
    }

    #[test]
    fn a_dataset_that_does_not_fit_is_refused_under_either_policy() {
        let mut b = rdb_backup(10);
        b.expanded_bytes = 40 << 20;
        let mut s = server("7.0.15", 10);
        s.maxmemory = 8 << 20;
        let why = decide_one(s.clone(), &b).unwrap_err();
        assert!(why.contains("refuse writes"), "{why}");
        s.maxmemory_policy = "allkeys-lru".into();
        let why = decide_one(s.clone(), &b).unwrap_err();
        assert!(why.contains("silently evict"), "{why}");
        s.maxmemory = 100 << 20;
        assert!(decide_one(s, &b).is_ok());
    }

    #[test]
    fn a_renamed_command_the_path_needs_is_refused() {
        let mut s = node(server("6.2.14", 9));
        s.missing = Some(vec!["RESTORE".into()]);
        let b = rdb_backup(10);
        let masters = [s];
        let why = decide(&PlanInput {
            masters: &masters,
            backup: &b,
            cluster: false,
            mode: RestoreMode::Auto,
            tls: false,
            feed_listener: true,
            filter: None,
        })
        .unwrap_err();
        assert!(why.contains("RESTORE"), "{why}");
    }

    #[test]
    fn tls_targets_are_never_fed() {
        let b = rdb_backup(10);
        let masters = [node(server("7.0.15", 10))];
        let p = decide(&PlanInput {
            masters: &masters,
            backup: &b,
            cluster: false,
            mode: RestoreMode::Auto,
            tls: true,
            feed_listener: true,
            filter: None,
        })
        .unwrap();
        assert_eq!(p.path, RestorePath::Slice);
    }
}

//! Discovering what an instance is: engine, version, and its layout
//! (standalone, master with replicas, or a cluster of shards).
//!
//! Reads `INFO server`, `INFO replication` and, in cluster mode,
//! `CLUSTER NODES` (format documented with `clusterGenNodeDescription` in
//! Redis's `cluster.c`).

use std::time::Duration;

use tokio::sync::Semaphore;

use super::client::{Conn, ConnectOptions, Info, RedisError};
use super::resp::Reply;
use crate::model::{BadNodeAddr, Connection, NodeAddr, Shard, Topology};

/// Discoveries running at once in the whole process. Each holds at most a
/// few control replies ([`super::resp::Limits::CONTROL`]), so this bounds
/// the memory peers can make adopts and backups use together.
const DISCOVERIES: usize = 4;
/// How long a discovery waits for its turn before giving up.
const DISCOVERY_WAIT: Duration = Duration::from_secs(10);
static DISCOVERY_SLOTS: Semaphore = Semaphore::const_new(DISCOVERIES);

/// What the server says about itself.
#[derive(Clone, Debug)]
pub struct ServerInfo {
    pub engine: String,
    pub version: String,
    pub cluster: bool,
    pub role_master: bool,
    pub master: Option<NodeAddr>,
}

/// Reads engine, version, mode and role from `INFO`.
pub async fn server_info(conn: &mut Conn) -> Result<(ServerInfo, Info), RedisError> {
    let server = conn.info("server").await?;
    let repl = conn.info("replication").await?;
    let (engine, version) = engine_and_version(&server);
    let role_master = repl.get("role") != Some("slave");
    // A replica's master is followed, so its address must be valid.
    let master = match (repl.get("master_host"), repl.get("master_port")) {
        (Some(h), Some(p)) if !role_master => Some(NodeAddr::from_reported(h, p)?),
        _ => None,
    };
    Ok((
        ServerInfo {
            engine,
            version,
            cluster: server.get("redis_mode") == Some("cluster"),
            role_master,
            master,
        },
        repl,
    ))
}

/// Replicas a master lists in `INFO replication` (`slaveN:ip=..,port=..`).
/// A listed replica with an invalid address is an error: backups may read
/// from replicas, so skipping one would change where data comes from.
/// A replica listed with `port=0` announced no listening port: it is a
/// snapshot or capture link (`redis-cli --rdb`, this service's own), not a
/// server anything can connect to, and is not one.
pub fn replicas_of(repl: &Info) -> Result<Vec<(NodeAddr, bool)>, BadNodeAddr> {
    repl.with_prefix("slave")
        .filter(|(k, _)| k[5..].chars().all(|c| c.is_ascii_digit()) && k.len() > 5)
        .filter(|(_, v)| !v.split(',').any(|kv| kv == "port=0"))
        .map(|(_, v)| {
            let mut host = "";
            let mut port = "";
            let mut online = false;
            for kv in v.split(',') {
                match kv.split_once('=') {
                    Some(("ip", h)) => host = h,
                    Some(("port", p)) => port = p,
                    Some(("state", s)) => online = s == "online",
                    _ => {}
                }
            }
            Ok((NodeAddr::from_reported(host, port)?, online))
        })
        .collect()
}

/// One line of `CLUSTER NODES`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNode {
    pub id: String,
    pub addr: NodeAddr,
    pub master: bool,
    pub master_id: Option<String>,
    pub failed: bool,
    pub slots: Vec<(u16, u16)>,
}

/// Parses `CLUSTER NODES` output. Importing/migrating markers (`[...]`)
/// are not ownership and are skipped. Every node's address is validated
/// ([`NodeAddr::from_reported`]); one invalid address fails the whole
/// parse, since dropping a node would silently drop its slots' data.
pub fn parse_cluster_nodes(text: &str) -> Result<Vec<ClusterNode>, BadNodeAddr> {
    text.lines()
        .filter(|line| line.split_whitespace().count() >= 8)
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // ip:port@cport[,hostname]
            let addr = f[1].split(['@', ',']).next().unwrap_or("");
            let (host, port) = addr.rsplit_once(':').unwrap_or((addr, ""));
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let flags: Vec<&str> = f[2].split(',').collect();
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|n| (n, n)),
                })
                .collect();
            Ok(ClusterNode {
                id: f[0].to_owned(),
                addr: NodeAddr::from_reported(host, port)?,
                master: flags.contains(&"master"),
                master_id: (f[3] != "-").then(|| f[3].to_owned()),
                failed: flags
                    .iter()
                    .any(|x| matches!(*x, "fail" | "fail?" | "noaddr" | "handshake")),
                slots,
            })
        })
        .collect()
}

/// Connects to the instance and works out its topology. When pointed at a
/// replica, follows it to its master. At most [`DISCOVERIES`] run at once
/// in the process; one that waits longer than [`DISCOVERY_WAIT`] for its
/// turn fails.
#[tracing::instrument(skip_all, fields(host = %conn.host, port = conn.port))]
pub async fn discover(conn: &Connection, opts: &ConnectOptions) -> Result<Topology, RedisError> {
    let _turn = tokio::time::timeout(DISCOVERY_WAIT, DISCOVERY_SLOTS.acquire())
        .await
        .map_err(|_| {
            RedisError::Busy(format!(
                "too many topology discoveries at once; waited {DISCOVERY_WAIT:?}"
            ))
        })?
        .map_err(|_| RedisError::Busy("topology discovery is shut down".into()))?;
    discover_now(conn, opts).await
}

async fn discover_now(conn: &Connection, opts: &ConnectOptions) -> Result<Topology, RedisError> {
    let mut c = Conn::open(conn, &conn.host, conn.port, opts).await?;
    let (mut info, mut repl) = server_info(&mut c).await?;
    let mut master = NodeAddr {
        host: conn.host.clone(),
        port: conn.port,
    };
    if !info.cluster && !info.role_master {
        if let Some(m) = info.master.clone() {
            tracing::info!(master = %super::peer_text(&m.to_string()), "adopted address is a replica; using its master");
            c = Conn::open(conn, &m.host, m.port, opts).await?;
            (info, repl) = server_info(&mut c).await?;
            master = m;
        }
    }
    if info.cluster {
        let reply = c.cmd_ok(&["CLUSTER", "NODES"]).await?;
        let text = reply
            .as_text()
            .ok_or_else(|| RedisError::Server("CLUSTER NODES did not answer with text".into()))?;
        let nodes = parse_cluster_nodes(&text)?;
        let mut shards: Vec<(String, Shard)> = nodes
            .iter()
            .filter(|n| n.master && !n.slots.is_empty())
            .map(|n| {
                (
                    n.id.clone(),
                    Shard {
                        master: n.addr.clone(),
                        replicas: vec![],
                        slots: n.slots.clone(),
                    },
                )
            })
            .collect();
        for n in nodes.iter().filter(|n| !n.master) {
            if let Some(s) = shards
                .iter_mut()
                .find(|(id, _)| Some(id) == n.master_id.as_ref())
            {
                s.1.replicas.push(n.addr.clone());
            }
        }
        let mut shards: Vec<Shard> = shards.into_iter().map(|(_, s)| s).collect();
        shards.sort_by_key(|s| s.slots.first().map(|r| r.0).unwrap_or(u16::MAX));
        return Ok(Topology {
            mode: "cluster".into(),
            engine: info.engine,
            version: info.version,
            shards,
        });
    }
    let replicas: Vec<NodeAddr> = replicas_of(&repl)?.into_iter().map(|(a, _)| a).collect();
    let mode = if replicas.is_empty() { "single" } else { "ha" };
    Ok(Topology {
        mode: mode.into(),
        engine: info.engine,
        version: info.version,
        shards: vec![Shard {
            master,
            replicas,
            slots: vec![],
        }],
    })
}

/// What a server is and what it takes, read once: flavor and version, the
/// RDB version it writes (and so the newest it loads), mode, memory,
/// databases, modules. A restore plans on these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerFacts {
    /// `redis` or `valkey`.
    pub engine: String,
    /// The engine's own version (Valkey reports `redis_version:7.2.4` for
    /// compatibility and its real version as `valkey_version`).
    pub version: String,
    /// `redis_version` as the server reports it.
    pub redis_version: String,
    /// The RDB version the server writes, the newest it loads.
    pub rdb_version: u32,
    pub cluster: bool,
    /// 0 when unlimited.
    pub maxmemory: u64,
    pub maxmemory_policy: String,
    pub used_memory: u64,
    pub used_memory_dataset: u64,
    /// `CONFIG GET databases`; `None` when CONFIG is refused.
    pub databases: Option<u64>,
    /// Loaded modules (`MODULE LIST` names); `None` when refused.
    pub modules: Option<Vec<String>>,
    /// `tls-replication yes`: as a replica it would speak TLS.
    pub tls_replication: bool,
}

impl ServerFacts {
    fn redis_major(&self) -> u32 {
        self.redis_version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    }

    /// How the server reads the type bytes Redis and Valkey disagree on.
    pub fn rdb_flavor(&self) -> dcs_rdb::Flavor {
        if self.rdb_version >= 80 {
            dcs_rdb::Flavor::Valkey
        } else {
            dcs_rdb::Flavor::Redis
        }
    }

    /// Hash field expiries (Redis 7.4+, RDB 12; Valkey 9+, RDB 80).
    pub fn has_field_ttls(&self) -> bool {
        self.rdb_version >= 12
    }

    /// Functions (Redis 7+, every Valkey).
    pub fn has_functions(&self) -> bool {
        self.redis_major() >= 7
    }

    /// Redis before 7 does not know the 7.0 stream counters.
    pub fn legacy_streams(&self) -> bool {
        self.redis_major() < 7
    }
}

/// Which server this is, from `INFO server`: Valkey reports
/// `redis_version:7.2.4` for compatibility and its own version as
/// `valkey_version`, so that field decides (Valkey 8 included).
fn engine_and_version(server: &Info) -> (String, String) {
    match server.get("valkey_version") {
        Some(v) => ("valkey".to_owned(), v.to_owned()),
        None => (
            server.get("server_name").unwrap_or("redis").to_owned(),
            server.get("redis_version").unwrap_or("unknown").to_owned(),
        ),
    }
}

/// Reads a server's [`ServerFacts`]: `INFO server`, `INFO memory`,
/// `CONFIG GET databases` and `tls-replication`, `MODULE LIST`.
pub async fn server_facts(conn: &mut Conn) -> Result<ServerFacts, RedisError> {
    let server = conn.info("server").await?;
    let memory = conn.info("memory").await?;
    let redis_version = server.get("redis_version").unwrap_or("0").to_owned();
    let rdb_version = dcs_rdb::rdb_version_for_server(&redis_version, server.get("valkey_version"))
        .unwrap_or(9) as u32;
    let (engine, version) = engine_and_version(&server);
    let num = |k: &str| memory.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
    let databases = match conn.cmd(&["CONFIG", "GET", "databases"]).await? {
        Reply::Error(_) => None,
        r => r.config_value().and_then(|v| v.parse().ok()),
    };
    let tls_replication = match conn.cmd(&["CONFIG", "GET", "tls-replication"]).await? {
        Reply::Error(_) => false,
        r => r
            .config_value()
            .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
    };
    let modules = match conn.cmd(&["MODULE", "LIST"]).await? {
        Reply::Array(Some(mods)) => Some(
            mods.iter()
                .filter_map(|m| match m {
                    Reply::Array(Some(fields)) => fields
                        .chunks(2)
                        .find(|kv| kv[0].as_text().as_deref() == Some("name"))
                        .and_then(|kv| kv.get(1)?.as_text()),
                    _ => None,
                })
                .collect(),
        ),
        _ => None,
    };
    Ok(ServerFacts {
        engine,
        version,
        redis_version,
        rdb_version,
        cluster: server.get("redis_mode") == Some("cluster"),
        maxmemory: num("maxmemory"),
        maxmemory_policy: memory
            .get("maxmemory_policy")
            .unwrap_or("noeviction")
            .to_owned(),
        used_memory: num("used_memory"),
        used_memory_dataset: num("used_memory_dataset"),
        databases,
        modules,
        tls_replication,
    })
}

/// Which of `names` the server does not know under that name (absent, or
/// renamed by `rename-command`), from `COMMAND INFO`; `None` when `COMMAND`
/// itself is refused and the answer cannot be known.
pub async fn missing_commands(
    conn: &mut Conn,
    names: &[&str],
) -> Result<Option<Vec<String>>, RedisError> {
    let mut args = vec!["COMMAND", "INFO"];
    args.extend_from_slice(names);
    match conn.cmd(&args).await? {
        Reply::Array(Some(infos)) if infos.len() == names.len() => Ok(Some(
            names
                .iter()
                .zip(infos)
                .filter(|(_, i)| matches!(i, Reply::Array(None) | Reply::Bulk(None)))
                .map(|(n, _)| n.to_string())
                .collect(),
        )),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cluster_nodes() {
        let text = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383 [5000->-abc]
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460
";
        let nodes = parse_cluster_nodes(text).unwrap();
        assert_eq!(nodes.len(), 4);
        assert!(!nodes[0].master);
        assert_eq!(
            nodes[0].master_id.as_deref(),
            Some("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca")
        );
        assert_eq!(nodes[2].slots, vec![(10923, 16383)]);
        assert_eq!(
            nodes[3].addr,
            NodeAddr {
                host: "127.0.0.1".into(),
                port: 30001
            }
        );
    }

    #[test]
    fn parses_replica_lines() {
        let info = Info::parse(
            "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
             slave0:ip=127.0.0.1,port=7001,state=online,offset=10,lag=0\r\n\
             slave1:ip=10.0.0.2,port=7002,state=wait_bgsave,offset=0,lag=0\r\nslave_read_repl_offset:1\r\n",
        );
        let r = replicas_of(&info).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0],
            (
                NodeAddr {
                    host: "127.0.0.1".into(),
                    port: 7001
                },
                true
            )
        );
        assert!(!r[1].1);
    }

    #[test]
    fn refuses_hostile_addresses() {
        let line = |addr: &str| {
            format!("07c37dfeb235213a872192d90877d0cd55635b91 {addr}@16379 myself,master - 0 0 1 connected 0-16383\n")
        };
        for bad in [
            "x/../../tmp/PWNED:6379",
            "..:6379",
            "a b:1",
            "host:0",
            "host:65536",
            "host:",
            ":6379",
            "-lead.example:1",
            "under_score:1",
            "ctl\u{7}:1",
        ] {
            assert!(parse_cluster_nodes(&line(bad)).is_err(), "{bad}");
        }
        for good in [
            "127.0.0.1:7000",
            "[::1]:7000",
            "redis-0.svc.cluster.local:6379",
        ] {
            assert!(parse_cluster_nodes(&line(good)).is_ok(), "{good}");
        }
        let info = Info::parse("role:master\r\nslave0:ip=../x,port=1,state=online\r\n");
        assert!(replicas_of(&info).is_err());
        let long = format!("{}.com", "a".repeat(64));
        assert!(NodeAddr::from_reported(&long, "1").is_err());
        let e = NodeAddr::from_reported("x/../../etc\r\n", "1").unwrap_err();
        assert!(!e.to_string().contains('\n'), "{e}");
    }
}

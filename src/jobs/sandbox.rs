//! Sandboxes for test restores: the server binaries the service may start
//! (`--sandbox-server NAME=PATH`), the choice of one for a backup, and the
//! scratch server itself.
//!
//! A scratch sandbox is a server this service starts on a free loopback
//! port, in a fresh owner-only directory under `DATA_DIR/sandboxes`, from
//! a configuration file in that directory (so its random `requirepass`
//! never shows in a process list): no persistence, bound to 127.0.0.1,
//! `maxmemory` the sandbox bound with `noeviction`. It is shut down and
//! its directory removed however the test restore ends; dropping it (a
//! watchdog dropping the job) kills it. Its directory holds its pid, so a
//! start-up after a crash kills what an earlier life left ([`sweep`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::model::{
    CacheMode, Connection, Instance, InstanceId, ProjectId, Secret, Shard, Topology,
};
use crate::redis::resp::Reply;
use crate::redis::{Conn, ConnectOptions};
use crate::storage::Manifest;

const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// How long a server has to answer `--version`, and a sandbox to start.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `SHUTDOWN NOSAVE` may take before the process is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A server binary the service may start as a scratch sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxServer {
    pub name: String,
    pub path: PathBuf,
    /// `redis` or `valkey`.
    pub engine: String,
    pub version: String,
    /// The RDB version it writes, and so the newest it loads.
    pub rdb_version: u32,
}

impl std::fmt::Display for SandboxServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} {})", self.name, self.engine, self.version)
    }
}

/// `NAME=PATH`, as `--sandbox-server` takes it.
pub fn parse_spec(spec: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = spec
        .split_once('=')
        .ok_or_else(|| format!("{spec:?}: want NAME=PATH"))?;
    let name = name.trim();
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        return Err(format!(
            "{spec:?}: a name is 1-64 of letters, digits, '.', '_' and '-'"
        ));
    }
    if path.trim().is_empty() {
        return Err(format!("{spec:?}: no path"));
    }
    Ok((name.to_owned(), PathBuf::from(path.trim())))
}

/// `Redis server v=7.0.15 sha=…` or `Valkey server v=9.0.0 …`: the engine
/// and its version.
pub fn parse_version_line(text: &str) -> Option<(String, String)> {
    let line = text.lines().next()?.trim();
    let engine = line.split_whitespace().next()?.to_ascii_lowercase();
    if engine != "redis" && engine != "valkey" {
        return None;
    }
    let version = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("v="))?
        .to_owned();
    let numeric = !version.is_empty()
        && version.len() <= 32
        && version.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    numeric.then_some((engine, version))
}

/// Runs `PATH --version` and learns what the server is; refuses a path
/// that is not an executable file or does not answer like a server.
pub async fn probe(name: &str, path: &Path) -> Result<SandboxServer, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("sandbox server {name} at {}: {e}", path.display()))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(format!(
            "sandbox server {name} at {} is not an executable file",
            path.display()
        ));
    }
    let run = tokio::process::Command::new(path)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(PROBE_TIMEOUT, run)
        .await
        .map_err(|_| format!("sandbox server {name}: `--version` did not answer in time"))?
        .map_err(|e| format!("sandbox server {name}: cannot run it: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (engine, version) = parse_version_line(&text).ok_or_else(|| {
        format!(
            "sandbox server {name}: `--version` did not answer like Redis or Valkey: {}",
            crate::redis::peer_text(&text)
        )
    })?;
    let rdb = if engine == "valkey" {
        dcs_rdb::rdb_version_for_server(&version, Some(&version))
    } else {
        dcs_rdb::rdb_version_for_server(&version, None)
    }
    .ok_or_else(|| format!("sandbox server {name}: unknown version {version}"))?;
    Ok(SandboxServer {
        name: name.to_owned(),
        path: path.to_owned(),
        engine,
        version,
        rdb_version: u32::from(rdb),
    })
}

fn version_key(v: &str) -> Vec<u32> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// The server to test a backup in: one that loads every file's RDB, the
/// source's own engine first, then the same version, else the closest
/// newer one, else the closest older one that still loads the files.
pub fn choose<'a>(
    servers: &'a [SandboxServer],
    manifest: &Manifest,
) -> Result<&'a SandboxServer, String> {
    if servers.is_empty() {
        return Err("no sandbox server is configured (--sandbox-server NAME=PATH)".into());
    }
    let loads = |s: &SandboxServer| {
        manifest.files.iter().all(|f| {
            let magic = if f.rdb_magic == "VALKEY" {
                dcs_rdb::Magic::Valkey
            } else {
                dcs_rdb::Magic::Redis
            };
            dcs_rdb::server_loads_rdb(s.rdb_version, magic, f.rdb_version)
        })
    };
    let source = version_key(&manifest.server_version);
    let best = servers.iter().filter(|s| loads(s)).min_by_key(|s| {
        let v = version_key(&s.version);
        let other_engine = !s.engine.eq_ignore_ascii_case(&manifest.engine);
        let older = v < source;
        // Closest: compare the distance version by version.
        let distance: Vec<u64> = v
            .iter()
            .zip(source.iter().chain(std::iter::repeat(&0)))
            .map(|(a, b)| u64::from(a.abs_diff(*b)))
            .collect();
        (other_engine, older, distance)
    });
    best.ok_or_else(|| {
        let rdbs: Vec<String> = manifest
            .files
            .iter()
            .map(|f| format!("{} {}", f.rdb_magic, f.rdb_version))
            .collect();
        let have: Vec<String> = servers.iter().map(ToString::to_string).collect();
        format!(
            "no sandbox server loads this backup's RDB ({}, from {} {}); configured: {}",
            rdbs.join(", "),
            manifest.engine,
            manifest.server_version,
            have.join(", ")
        )
    })
}

/// Where scratch sandboxes live.
pub fn root(data_dir: &Path) -> PathBuf {
    data_dir.join("sandboxes")
}

/// A running scratch sandbox.
#[derive(Debug)]
pub struct Scratch {
    child: tokio::process::Child,
    dir: PathBuf,
    pub port: u16,
    password: Secret,
    pub pid: Option<u32>,
    pub server: SandboxServer,
    done: bool,
}

fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn owner_only_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Whether the server knows `enable-debug-command` (Redis 7.0+, every
/// Valkey); older ones allow `DEBUG` anyway.
fn knows_debug_switch(s: &SandboxServer) -> bool {
    s.engine == "valkey" || version_key(&s.version).first().copied().unwrap_or(0) >= 7
}

impl Scratch {
    /// Starts `server` under `root` with `max_memory` bytes and at least
    /// `databases` databases, and waits until it answers.
    pub async fn start(
        server: &SandboxServer,
        root: &Path,
        max_memory: u64,
        databases: u64,
        redis: &ConnectOptions,
    ) -> Result<Scratch, String> {
        Self::start_seeded(server, root, max_memory, databases, redis, None).await
    }

    /// [`Scratch::start`], the server first loading the RDB file `seed`
    /// (moved into its directory as `dump.rdb`, so it loads it natively at
    /// start-up; the wait for an answer lasts as long as the load does).
    pub async fn start_seeded(
        server: &SandboxServer,
        root: &Path,
        max_memory: u64,
        databases: u64,
        redis: &ConnectOptions,
        seed: Option<&Path>,
    ) -> Result<Scratch, String> {
        let dir = root.join(uuid::Uuid::new_v4().simple().to_string());
        owner_only_dir(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        if let Some(seed) = seed {
            std::fs::rename(seed, dir.join("dump.rdb")).map_err(|e| {
                let _ = std::fs::remove_dir_all(&dir);
                format!("cannot place the seed RDB in {}: {e}", dir.display())
            })?;
        }
        let password = Secret::new(crate::catalog::random_token(48, PASSWORD_ALPHABET));
        let port = free_port().map_err(|e| format!("no free loopback port: {e}"))?;
        let mut conf = format!(
            "port {port}\nbind 127.0.0.1\nprotected-mode yes\ndaemonize no\n\
             dir {dir}\nlogfile {dir}/server.log\nsave \"\"\nappendonly no\n\
             maxmemory {max_memory}\nmaxmemory-policy noeviction\n\
             databases {dbs}\nrequirepass {pw}\n",
            dir = dir.display(),
            dbs = databases.clamp(16, 10_000),
            pw = password.expose(),
        );
        if knows_debug_switch(server) {
            conf.push_str("enable-debug-command local\n");
        }
        let conf_path = dir.join("sandbox.conf");
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&conf_path)
                .map_err(|e| format!("cannot write {}: {e}", conf_path.display()))?;
            f.write_all(conf.as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", conf_path.display()))?;
        }
        let child = tokio::process::Command::new(&server.path)
            .arg(&conf_path)
            .current_dir(&dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                let _ = std::fs::remove_dir_all(&dir);
                format!("cannot start {server}: {e}")
            })?;
        let pid = child.id();
        let mut me = Scratch {
            child,
            dir,
            port,
            password,
            pid,
            server: server.clone(),
            done: false,
        };
        // The pid is written before anything else can go wrong, so a crash
        // from here on leaves what the next start needs to kill it.
        if let Some(pid) = pid {
            let _ = std::fs::write(me.dir.join("pid"), pid.to_string());
        }
        me.wait_ready(redis).await?;
        tracing::info!(server = %me.server, port, pid = ?me.pid, "scratch sandbox started");
        Ok(me)
    }

    async fn wait_ready(&mut self, redis: &ConnectOptions) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                let tail: String = log.lines().rev().take(3).collect::<Vec<_>>().join(" / ");
                return Err(format!(
                    "the sandbox server {} exited at start ({status}): {}",
                    self.server,
                    crate::redis::peer_text(&tail)
                ));
            }
            let mut loading = false;
            if let Ok(mut c) = Conn::open(&self.connection(), "127.0.0.1", self.port, redis).await {
                match c.cmd(&["PING"]).await {
                    Ok(Reply::Simple(s)) if s == "PONG" => return Ok(()),
                    Ok(Reply::Error(e)) if e.starts_with("LOADING") => loading = true,
                    _ => {}
                }
            }
            // A seeded server answers LOADING while it loads: it is alive.
            if !loading && tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "the sandbox server {} did not answer within {} s",
                    self.server,
                    START_TIMEOUT.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How the service logs in to it.
    pub fn connection(&self) -> Connection {
        Connection {
            host: "127.0.0.1".into(),
            port: self.port,
            username: None,
            password: Some(self.password.clone()),
            tls: false,
        }
    }

    /// The sandbox as the restore pipeline's target.
    pub fn instance(&self, project: &ProjectId) -> Instance {
        let node = crate::model::NodeAddr {
            host: "127.0.0.1".into(),
            port: self.port,
        };
        Instance {
            id: InstanceId::generate(),
            project_id: project.clone(),
            name: format!("sandbox-{}", self.port),
            description: String::new(),
            connection: self.connection(),
            topology: Topology {
                mode: CacheMode::Single.as_str().into(),
                engine: self.server.engine.clone(),
                version: self.server.version.clone(),
                shards: vec![Shard {
                    master: node,
                    replicas: vec![],
                    slots: vec![],
                }],
            },
            policy: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `SHUTDOWN NOSAVE`, then a kill if it does not exit in time, then
    /// the directory goes.
    pub async fn stop(mut self, redis: &ConnectOptions) {
        if let Ok(mut c) = Conn::open(&self.connection(), "127.0.0.1", self.port, redis).await {
            let _ = c.cmd(&["SHUTDOWN", "NOSAVE"]).await;
        }
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(pid = ?self.pid, "the sandbox did not shut down; killing it");
                let _ = self.child.kill().await;
            }
        }
        self.remove_dir();
        self.done = true;
        tracing::info!(port = self.port, "scratch sandbox stopped and removed");
    }

    fn remove_dir(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove the sandbox directory");
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.start_kill();
            self.remove_dir();
            tracing::warn!(pid = ?self.pid, "scratch sandbox killed");
        }
    }
}

/// Kills the scratch sandboxes an earlier life of this service left (it
/// crashed, or was killed, while testing) and removes their directories.
/// A pid is only killed if that process's command line names the
/// sandbox's own directory, so a recycled pid is left alone.
pub fn sweep(root: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    let mut n = 0;
    for entry in entries.flatten() {
        let dir = entry.path();
        if !dir.is_dir() {
            continue;
        }
        let pid = std::fs::read_to_string(dir.join("pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        if let Some(pid) = pid {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let needle = dir.join("sandbox.conf");
            let ours = String::from_utf8_lossy(&cmdline).contains(&*needle.to_string_lossy());
            if ours {
                if let Some(p) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                    tracing::warn!(pid, dir = %dir.display(), "killed a sandbox left by an earlier run");
                }
            }
        }
        if std::fs::remove_dir_all(&dir).is_ok() {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_lines_are_read() {
        assert_eq!(
            parse_version_line("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0"),
            Some(("redis".into(), "7.0.15".into()))
        );
        assert_eq!(
            parse_version_line("Valkey server v=9.1.2 sha=00000000:1"),
            Some(("valkey".into(), "9.1.2".into()))
        );
        assert_eq!(parse_version_line("bash 5.2"), None);
        assert_eq!(parse_version_line("Redis server v=$(rm)"), None);
    }

    #[test]
    fn specs_want_a_name_and_a_path() {
        assert_eq!(
            parse_spec("redis-7.0=/usr/bin/redis-server"),
            Ok(("redis-7.0".into(), "/usr/bin/redis-server".into()))
        );
        assert!(parse_spec("/usr/bin/redis-server").is_err());
        assert!(parse_spec("bad name=/x").is_err());
        assert!(parse_spec("a=").is_err());
    }

    fn server(name: &str, engine: &str, version: &str, rdb: u32) -> SandboxServer {
        SandboxServer {
            name: name.into(),
            path: "/x".into(),
            engine: engine.into(),
            version: version.into(),
            rdb_version: rdb,
        }
    }

    fn manifest(engine: &str, version: &str, magic: &str, rdb: u32) -> Manifest {
        let file: crate::storage::ManifestFile = serde_json::from_value(serde_json::json!({
            "name": "f", "size": 1, "blake3": "", "rdb_magic": magic, "rdb_version": rdb,
            "rdb_checksum": "ok", "keys": 0, "keys_per_db": {}, "expiring_keys": 0,
            "functions": 0, "slots": [], "source_node": "", "shard_master": ""
        }))
        .unwrap();
        Manifest {
            manifest_version: 2,
            backup_id: String::new(),
            instance_id: String::new(),
            project_id: String::new(),
            format: "rdb".into(),
            cache_mode: "single".into(),
            engine: engine.into(),
            server_version: version.into(),
            started_at: 0,
            completed_at: 0,
            files: vec![file],
        }
    }

    #[test]
    fn the_matching_or_closest_newer_server_is_chosen() {
        let servers = [
            server("r62", "redis", "6.2.14", 9),
            server("r70", "redis", "7.0.15", 10),
            server("r82", "redis", "8.2.3", 12),
            server("v91", "valkey", "9.1.2", 80),
        ];
        let pick = |m: &Manifest| choose(&servers, m).map(|s| s.name.clone());
        assert_eq!(
            pick(&manifest("redis", "7.0.15", "REDIS", 10)),
            Ok("r70".into())
        );
        assert_eq!(
            pick(&manifest("redis", "7.2.4", "REDIS", 11)),
            Ok("r82".into())
        );
        assert_eq!(
            pick(&manifest("redis", "6.0.9", "REDIS", 9)),
            Ok("r62".into())
        );
        assert_eq!(
            pick(&manifest("valkey", "8.0.1", "REDIS", 11)),
            Ok("v91".into())
        );
        assert!(choose(&servers[..2], &manifest("valkey", "9.0.0", "VALKEY", 80)).is_err());
        assert!(choose(&[], &manifest("redis", "7.0.0", "REDIS", 10)).is_err());
    }
}

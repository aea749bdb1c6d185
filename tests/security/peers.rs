//! Peers are untrusted: servers that lie about their nodes, answer with
//! oversized replies, declare gigantic RDB strings or trickle their
//! snapshot a byte at a time. Each story ends the way a user would check
//! it: a clear error, nothing written outside the store, the service's
//! memory bounded, other projects' backups still running.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{RedisServer, ServiceProcess, TestApp};
use dcs_backup::redis::resp::{parse_reply, Reply};
use dcs_backup::storage::{StorageUrl, Store};

/// What a hostile fake Redis does once it is asked for a snapshot.
#[derive(Clone, Copy, Debug)]
enum Snapshot {
    /// Refuses (no snapshot expected in the test).
    None,
    /// Sends one RDB byte every `0` (a slow source).
    Trickle(Duration),
    /// An RDB whose first aux field declares 4 GiB, then zeros as fast as
    /// the service reads them (up to 1 GiB).
    HugeAux,
}

/// A small hostile server speaking just enough RESP: `+OK` to anything
/// but `INFO`, `CLUSTER NODES`, `PSYNC`/`SYNC`.
struct Fake {
    port: u16,
    /// `CLUSTER NODES` text; `None` makes the server standalone.
    nodes: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Behaviour {
    nodes: Arc<Mutex<Option<String>>>,
    /// When set, every `INFO` is answered with a bulk of this many bytes.
    huge_info: Option<usize>,
    snapshot: Snapshot,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fake {
    async fn start(nodes: Option<String>, huge_info: Option<usize>, snapshot: Snapshot) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let nodes = Arc::new(Mutex::new(nodes));
        let b = Behaviour {
            nodes: Arc::clone(&nodes),
            huge_info,
            snapshot,
        };
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(serve(s, b.clone()));
            }
        });
        Fake { port, nodes, task }
    }

    fn set_nodes(&self, text: String) {
        *self.nodes.lock().expect("lock") = Some(text);
    }
}

fn bulk(text: &str) -> Vec<u8> {
    let mut v = format!("${}\r\n", text.len()).into_bytes();
    v.extend_from_slice(text.as_bytes());
    v.extend_from_slice(b"\r\n");
    v
}

async fn serve(mut s: TcpStream, b: Behaviour) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 4096];
    loop {
        while let Ok(Some((cmd, used))) = parse_reply(&buf) {
            buf.drain(..used);
            let args: Vec<String> = match cmd {
                Reply::Array(Some(items)) => items.iter().filter_map(Reply::as_text).collect(),
                _ => return,
            };
            let name = args
                .first()
                .map(|a| a.to_ascii_uppercase())
                .unwrap_or_default();
            let out = match name.as_str() {
                "INFO" => {
                    if let Some(n) = b.huge_info {
                        let _ = s.write_all(format!("${n}\r\n").as_bytes()).await;
                        let block = vec![b'a'; 1 << 20];
                        let mut left = n;
                        while left > 0 {
                            let k = left.min(block.len());
                            if s.write_all(&block[..k]).await.is_err() {
                                return;
                            }
                            left -= k;
                        }
                        // A well-formed reply: only its size is hostile.
                        if s.write_all(b"\r\n").await.is_err() {
                            return;
                        }
                        continue;
                    }
                    let section = args
                        .get(1)
                        .map(|a| a.to_ascii_lowercase())
                        .unwrap_or_default();
                    let cluster = b.nodes.lock().expect("lock").is_some();
                    let mode = if cluster { "cluster" } else { "standalone" };
                    bulk(&match section.as_str() {
                        "server" => {
                            format!("# Server\r\nredis_version:7.0.15\r\nredis_mode:{mode}\r\n")
                        }
                        "replication" => {
                            "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n".into()
                        }
                        "memory" => "# Memory\r\nused_memory:100000\r\n".into(),
                        _ => String::new(),
                    })
                }
                "CLUSTER" => bulk(&b.nodes.lock().expect("lock").clone().unwrap_or_default()),
                "PSYNC" | "SYNC" => {
                    snapshot(&mut s, b.snapshot).await;
                    return;
                }
                _ => b"+OK\r\n".to_vec(),
            };
            if s.write_all(&out).await.is_err() {
                return;
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// An RDB length field of 8 bytes (`RDB_64BITLEN`).
fn len64(n: u64) -> Vec<u8> {
    let mut v = vec![0x81];
    v.extend_from_slice(&n.to_be_bytes());
    v
}

async fn snapshot(s: &mut TcpStream, how: Snapshot) {
    let preamble = format!(
        "+FULLRESYNC {} 0\r\n$EOF:{}\r\n",
        "a".repeat(40),
        "b".repeat(40)
    );
    match how {
        Snapshot::None => {
            let _ = s.write_all(b"-ERR no\r\n").await;
        }
        Snapshot::Trickle(every) => {
            if s.write_all(preamble.as_bytes()).await.is_err() {
                return;
            }
            let rdb = b"REDIS0011".iter().copied().chain(std::iter::repeat(0u8));
            for byte in rdb {
                tokio::time::sleep(every).await;
                if s.write_all(&[byte]).await.is_err() {
                    return;
                }
            }
        }
        Snapshot::HugeAux => {
            let mut head = preamble.into_bytes();
            head.extend_from_slice(b"REDIS0011\xfa\x09redis-ver");
            head.extend(len64(4 << 30));
            if s.write_all(&head).await.is_err() {
                return;
            }
            let zeros = vec![0u8; 1 << 20];
            for _ in 0..1024 {
                if s.write_all(&zeros).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// One `CLUSTER NODES` line: a master owning every slot at `addr`.
fn master_line(addr: &str) -> String {
    format!("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca {addr}@16379 myself,master - 0 0 1 connected 0-16383\n")
}

/// Every path under `dir` whose name contains `needle`.
fn find_named(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.file_name()
            .is_some_and(|n| n.to_string_lossy().contains(needle))
        {
            out.push(p.clone());
        }
        if p.is_dir() && !p.is_symlink() {
            out.extend(find_named(&p, needle));
        }
    }
    out
}

fn adopt_body(name: &str, port: u16) -> Value {
    json!({
        "name": name, "engine": "Redis", "capacity": 1, "spec_code": "redis.single.xu1.tiny.128",
        "az_codes": ["az1"], "vpc_id": "vpc", "subnet_id": "subnet",
        "private_ip": "127.0.0.1", "port": port,
    })
}

#[tokio::test]
async fn a_fake_cluster_naming_traversal_hosts_writes_nothing_outside_the_store() {
    let outside = tempfile::tempdir().expect("tempdir");
    let app = TestApp::spawn().await;
    let hostile = format!("x/../../{}/PWNED:6379", outside.path().display());

    // Adopting a cluster whose CLUSTER NODES names hostile hosts fails,
    // saying why, and without echoing the whole reply.
    for addr in [
        hostile.clone(),
        "..:6379".into(),
        "evil\\host:6379".into(),
        "127.0.0.1:0".into(),
        "a_b:6379".into(),
    ] {
        let fake = Fake::start(Some(master_line(&addr)), None, Snapshot::None).await;
        let (s, b) = app
            .call(
                Method::POST,
                &app.v2("/instances"),
                Some(adopt_body("evil", fake.port)),
            )
            .await;
        assert_eq!(s, 400, "{addr}: {b}");
        let ext = b["error_ext_msg"].as_str().unwrap_or_default();
        assert!(ext.contains("invalid node address"), "{addr}: {b}");
        assert!(!b.to_string().contains("PWNED"), "echoes the peer: {b}");
    }

    // A cluster that was sane when adopted and turns hostile: the backup
    // fails clearly and no file appears anywhere but where it should.
    let fake = Fake::start(Some(String::new()), None, Snapshot::None).await;
    fake.set_nodes(master_line(&format!("127.0.0.1:{}", fake.port)));
    let id = app.adopt("turns-evil", fake.port, json!({})).await;
    fake.set_nodes(master_line(&hostile));
    let backup = app.start_backup(&id, "rdb").await;
    let rec = app.wait_backup(&id, &backup).await;
    assert_eq!(rec["status"], "failed", "{rec}");
    assert_eq!(rec["error_code"], "dcs.08.0001", "{rec}");

    let left: Vec<_> = std::fs::read_dir(outside.path())
        .expect("outside")
        .collect();
    assert!(left.is_empty(), "files outside the store: {left:?}");
    for dir in [outside.path(), app.dir.path()] {
        assert_eq!(find_named(dir, "PWNED"), Vec::<PathBuf>::new());
    }
}

/// Every key that leaves the store is refused by every method of `store`.
async fn refuses_escaping_keys(store: &Store, outside: &Path) {
    let escape = "../outside/PWNED".to_owned();
    let absolute = format!("{}/PWNED", outside.display());
    for key in [
        escape.as_str(),
        absolute.as_str(),
        "a//b",
        "a/./b",
        "a\\b",
        "a/b\r\n",
        "p/../../x",
    ] {
        let err = store.writer(key).await.err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("refused object key")),
            "{key}: {err:?}"
        );
        assert!(store.size_of(key).await.is_err(), "{key}");
        assert!(store.read_stream(key).await.is_err(), "{key}");
        assert!(
            store
                .presign_read(key, Duration::from_secs(60))
                .await
                .is_err(),
            "{key}"
        );
        assert!(store.source(key).is_err(), "{key}");
        assert!(store.manifest(&format!("{key}/")).await.is_err(), "{key}");
    }
    for prefix in ["../", "/", "", "p/../"] {
        assert!(store.delete_prefix(prefix).await.is_err(), "{prefix:?}");
    }
}

#[tokio::test]
async fn the_s3_store_refuses_keys_that_leave_its_prefix() {
    if crate::common::engine() == "postgres" {
        return; // the catalog plays no part
    }
    let s3 = crate::common::s3::S3Server::start();
    let url = StorageUrl::parse(&s3.storage_url("backups")).expect("url");
    let keys = dcs_backup::config::s3_keys_from_env();
    let store = Store::open(&url, &keys).await.expect("store");
    refuses_escaping_keys(&store, Path::new("/outside")).await;
    assert_eq!(
        s3.objects("").await,
        Vec::<String>::new(),
        "nothing written"
    );
}

#[tokio::test]
async fn the_store_refuses_keys_that_leave_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let store = Store::open(&StorageUrl::Fs { root: root.clone() }, &Default::default())
        .await
        .expect("store");
    let outside = dir.path().join("outside");
    refuses_escaping_keys(&store, &outside).await;
    assert!(!outside.exists());
    assert_eq!(find_named(dir.path(), "PWNED"), Vec::<PathBuf>::new());
    // What the service writes is accepted.
    let mut w = store
        .writer("p/i/b/redis_127.0.0.1_6379_20260101000000.rdb")
        .await
        .expect("ok");
    w.write(bytes::Bytes::from_static(b"x"))
        .await
        .expect("write");
    w.finish().await.expect("finish");
    store.delete_prefix("p/i/b/").await.expect("delete");
}

/// Peak (VmHWM) and current (VmRSS) resident memory of `pid`, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// The bound these tests hold the service to: its peak RSS (VmHWM) grows by
/// less than 64 MiB over its RSS before the hostile peers. Measured on the
/// debug binary from a ~29 MiB baseline: four 300 MB INFO replies at once
/// +0.5–1 MiB (2.9 GiB without the 4 MiB reply cap); a 4 GiB aux field
/// followed by 1 GiB of bytes +1.8–2.4 MiB (1.07 GiB without the aux bound).
const RSS_BOUND_KIB: u64 = 64 * 1024;

#[tokio::test]
async fn oversized_info_replies_under_concurrent_adopts_keep_memory_bounded() {
    if crate::common::engine() == "postgres" {
        return; // the catalog plays no part
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = ServiceProcess::start(dir.path(), None);
    let pid = svc.pid().expect("pid");
    let redis = RedisServer::start(&[]);
    // Warm up with one real adopt so the baseline includes a used pool.
    let (s, b) = svc
        .call(
            Method::POST,
            &svc.v2("/instances"),
            Some(adopt_body("warm", redis.port)),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (_, base) = memory_kib(pid);

    // Four adopts at once, each answered with a 300 MB INFO reply.
    let fake = Fake::start(None, Some(300_000_000), Snapshot::None).await;
    let started = Instant::now();
    let path = svc.v2("/instances");
    let calls = (0..4).map(|i| {
        svc.call(
            Method::POST,
            &path,
            Some(adopt_body(&format!("big{i}"), fake.port)),
        )
    });
    let answers = futures::future::join_all(calls).await;
    let (peak, now) = memory_kib(pid);
    eprintln!("oversized INFO: baseline RSS {base} KiB, peak {peak} KiB, now {now} KiB");
    assert!(
        peak < base + RSS_BOUND_KIB,
        "peak RSS {peak} KiB, baseline {base} KiB: more than {RSS_BOUND_KIB} KiB above"
    );
    for (s, b) in answers {
        assert_eq!(s, 400, "{b}");
        let ext = b["error_ext_msg"].as_str().unwrap_or_default();
        // A fixed phrase: the size the peer declared is not echoed either.
        assert_eq!(
            ext, "the server could not be reached or did not answer as Redis",
            "{b}"
        );
        assert!(b.to_string().len() < 2048, "the error echoes the peer: {b}");
    }
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn a_master_declaring_a_4_gib_aux_field_fails_the_backup_with_memory_bounded() {
    if crate::common::engine() == "postgres" {
        return; // the catalog plays no part
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = ServiceProcess::start(dir.path(), None);
    let pid = svc.pid().expect("pid");
    let fake = Fake::start(None, None, Snapshot::HugeAux).await;
    let (s, b) = svc
        .call(
            Method::POST,
            &svc.v2("/instances"),
            Some(adopt_body("aux-master", fake.port)),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let id = b["instances"][0]["instance_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (_, base) = memory_kib(pid);
    let (s, b) = svc
        .call(
            Method::POST,
            &svc.v2(&format!("/instances/{id}/backups")),
            Some(json!({"backup_format": "rdb"})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let backup = b["backup_id"].as_str().expect("backup_id").to_owned();
    let start = Instant::now();
    let rec = loop {
        let (_, l) = svc
            .call(
                Method::GET,
                &svc.v2(&format!("/instances/{id}/backups")),
                None,
            )
            .await;
        let rec = l["backup_record_response"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["backup_id"] == backup.as_str()))
            .cloned()
            .unwrap_or_default();
        if !matches!(rec["status"].as_str(), Some("waiting" | "backuping")) {
            break rec;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "backup never ended: {rec}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(rec["status"], "failed", "{rec}");
    assert_eq!(rec["error_code"], "dcs.08.0001", "{rec}");
    let (peak, now) = memory_kib(pid);
    eprintln!("4 GiB aux: baseline RSS {base} KiB, peak {peak} KiB, now {now} KiB");
    assert!(
        peak < base + RSS_BOUND_KIB,
        "peak {peak} KiB, baseline {base} KiB"
    );
    let log = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("serve-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert!(
        log.contains("aux field of 4294967296 bytes"),
        "log says why: {log}"
    );
    // The failed backup left no file.
    let files: Vec<_> = find_named(&dir.path().join("backups"), ".rdb");
    assert!(files.is_empty(), "{files:?}");
}

/// A service whose jobs are bounded by `tweak`.
async fn bounded_app(tweak: impl FnOnce(&mut dcs_backup::jobs::JobSettings)) -> TestApp {
    TestApp::spawn_with(|c| tweak(&mut c.jobs)).await
}

/// Polls a backup's record until `done` says so (or `within` passes).
async fn wait_for(
    app: &TestApp,
    cred: &crate::common::Cred,
    instance: &str,
    backup: &str,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let (s, l) = app
            .call_as(
                cred,
                Method::GET,
                &format!("/v2/{}/instances/{instance}/backups", cred.project_id),
                None,
            )
            .await;
        assert_eq!(s, 200, "{l}");
        let rec = l["backup_record_response"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["backup_id"] == backup))
            .cloned()
            .unwrap_or_default();
        if done(&rec) {
            return rec;
        }
        assert!(start.elapsed() < within, "waited {within:?}: {rec}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn backup_as(app: &TestApp, cred: &crate::common::Cred, instance: &str) -> String {
    let (s, b) = app
        .call_as(
            cred,
            Method::POST,
            &format!("/v2/{}/instances/{instance}/backups", cred.project_id),
            Some(json!({"backup_format": "rdb"})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    b["backup_id"].as_str().expect("backup_id").to_owned()
}

async fn adopt_as(app: &TestApp, cred: &crate::common::Cred, name: &str, port: u16) -> String {
    let (s, b) = app
        .call_as(
            cred,
            Method::POST,
            &format!("/v2/{}/instances", cred.project_id),
            Some(adopt_body(name, port)),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    b["instances"][0]["instance_id"]
        .as_str()
        .expect("id")
        .to_owned()
}

#[tokio::test]
async fn slow_sources_of_one_project_do_not_stall_another_projects_backup() {
    // Per-project limit 2, no rate check: four slow sources of project A
    // (one byte every 3 s) could fill the node's four slots; they get two.
    let app = bounded_app(|j| {
        j.max_jobs_per_project = 2;
        j.min_rate = 0;
    })
    .await;
    let a = app.cred.clone();
    let b = app.credential_for("otherprojectb").await;
    let mut fakes = Vec::new();
    let mut slow = Vec::new();
    for i in 0..4 {
        let fake = Fake::start(None, None, Snapshot::Trickle(Duration::from_secs(3))).await;
        let id = adopt_as(&app, &a, &format!("slow{i}"), fake.port).await;
        slow.push((id.clone(), backup_as(&app, &a, &id).await));
        fakes.push(fake);
    }
    // Two of A's backups run; the other two wait.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut running = 0;
    for (id, bk) in &slow {
        let rec = wait_for(&app, &a, id, bk, Duration::from_secs(5), |_| true).await;
        if rec["status"] == "backuping" {
            running += 1;
        }
    }
    assert_eq!(running, 2, "project A runs at most 2 jobs");

    // Project B's backup of a real Redis succeeds promptly meanwhile.
    let redis = RedisServer::start(&[]);
    redis.cli(&["SET", "k", "v"]);
    let id = adopt_as(&app, &b, "fast", redis.port).await;
    let bk = backup_as(&app, &b, &id).await;
    let rec = wait_for(&app, &b, &id, &bk, Duration::from_secs(30), |r| {
        !matches!(r["status"].as_str(), Some("waiting" | "backuping"))
    })
    .await;
    assert_eq!(rec["status"], "succeed", "{rec}");
}

#[tokio::test]
async fn a_slow_backup_fails_with_dcs_08_0002_and_frees_its_slot() {
    // One job per project; a source must move 1 KiB/s over 3 s after 2 s.
    let app = bounded_app(|j| {
        j.max_jobs_per_project = 1;
        j.min_rate = 1024;
        j.rate_grace = Duration::from_secs(2);
        j.rate_window = Duration::from_secs(3);
    })
    .await;
    let a = app.cred.clone();
    let fake = Fake::start(None, None, Snapshot::Trickle(Duration::from_secs(1))).await;
    let slow_id = adopt_as(&app, &a, "slow", fake.port).await;
    // Redis waits 5 s (repl-diskless-sync-delay) before its first byte:
    // longer than grace and window, but a master preparing its snapshot
    // is not a slow source, and this backup must succeed.
    let redis = RedisServer::start(&[]);
    redis.cli(&["SET", "k", "v"]);
    let fast_id = adopt_as(&app, &a, "fast", redis.port).await;

    let slow = backup_as(&app, &a, &slow_id).await;
    wait_for(&app, &a, &slow_id, &slow, Duration::from_secs(10), |r| {
        r["status"] == "backuping"
    })
    .await;
    // Same project, limit 1: this one waits for the slow one's slot.
    let fast = backup_as(&app, &a, &fast_id).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rec = wait_for(&app, &a, &fast_id, &fast, Duration::from_secs(5), |_| true).await;
    assert_eq!(rec["status"], "waiting", "{rec}");

    let started = Instant::now();
    let rec = wait_for(&app, &a, &slow_id, &slow, Duration::from_secs(30), |r| {
        !matches!(r["status"].as_str(), Some("waiting" | "backuping"))
    })
    .await;
    assert_eq!(
        (rec["status"].as_str(), rec["error_code"].as_str()),
        (Some("failed"), Some("dcs.08.0002")),
        "{rec}"
    );
    // grace 2 s + window 3 s, checked about every 0.75 s, plus the stop.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let dir = app.dir.path().join("backups");
    assert!(find_named(&dir, &slow).is_empty(), "partial files left");

    // The slot is free again: the waiting backup runs and succeeds.
    let rec = wait_for(&app, &a, &fast_id, &fast, Duration::from_secs(30), |r| {
        !matches!(r["status"].as_str(), Some("waiting" | "backuping"))
    })
    .await;
    assert_eq!(rec["status"], "succeed", "{rec}");
}

#[tokio::test]
async fn a_backup_past_its_deadline_fails_with_dcs_08_0002() {
    let app = bounded_app(|j| {
        j.min_rate = 0;
        j.job_deadline = Duration::from_secs(3);
    })
    .await;
    let a = app.cred.clone();
    let fake = Fake::start(None, None, Snapshot::Trickle(Duration::from_millis(200))).await;
    let id = adopt_as(&app, &a, "long", fake.port).await;
    let bk = backup_as(&app, &a, &id).await;
    let started = Instant::now();
    let rec = wait_for(&app, &a, &id, &bk, Duration::from_secs(20), |r| {
        !matches!(r["status"].as_str(), Some("waiting" | "backuping"))
    })
    .await;
    assert_eq!(
        (rec["status"].as_str(), rec["error_code"].as_str()),
        (Some("failed"), Some("dcs.08.0002")),
        "{rec}"
    );
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert!(
        find_named(&app.dir.path().join("backups"), &bk).is_empty(),
        "partial files left"
    );
}

#[tokio::test]
async fn the_per_project_limit_holds_across_replicas_sharing_the_catalog() {
    let tweak = |j: &mut dcs_backup::jobs::JobSettings| {
        j.max_jobs_per_project = 1;
        j.min_rate = 0;
    };
    let first = bounded_app(tweak).await;
    let second = TestApp::spawn_replica_of(&first, |c| tweak(&mut c.jobs)).await;
    let a = first.cred.clone();
    let mut fakes = Vec::new();
    let mut slow = Vec::new();
    for i in 0..3 {
        let fake = Fake::start(None, None, Snapshot::Trickle(Duration::from_secs(3))).await;
        let id = adopt_as(&first, &a, &format!("slow{i}"), fake.port).await;
        slow.push((id.clone(), backup_as(&second, &a, &id).await));
        fakes.push(fake);
    }
    // Both replicas poll the queue; for a few seconds exactly one of the
    // project's backups runs.
    let mut seen_running = 0;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut running = 0;
        for (id, bk) in &slow {
            let rec = wait_for(&first, &a, id, bk, Duration::from_secs(5), |_| true).await;
            running += usize::from(rec["status"] == "backuping");
        }
        assert!(running <= 1, "{running} backups of one project run at once");
        seen_running = seen_running.max(running);
    }
    assert_eq!(seen_running, 1, "one backup runs");
}

#[tokio::test]
async fn a_backup_over_its_size_limit_or_string_bound_fails_and_leaves_nothing() {
    let redis = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    // 8 KiB that LZF cannot shrink much.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: String = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 90) as u8)
        })
        .collect();
    redis.cli(&["SET", "big", &noise]);

    // --max-backup-size 4096: the snapshot is larger.
    let app = bounded_app(|j| j.max_backup_size = Some(4096)).await;
    let id = app.adopt("size-limited", redis.port, json!({})).await;
    let bk = app.start_backup(&id, "rdb").await;
    let rec = app.wait_backup(&id, &bk).await;
    assert_eq!(
        (rec["status"].as_str(), rec["error_code"].as_str()),
        (Some("failed"), Some("dcs.08.0003")),
        "{rec}"
    );
    assert!(find_named(&app.dir.path().join("backups"), &bk).is_empty());
    drop(app);

    // --max-rdb-string 1024: the 8 KiB value is refused, in both formats.
    let app = bounded_app(|j| j.max_rdb_string = 1024).await;
    let id = app.adopt("string-limited", redis.port, json!({})).await;
    for format in ["rdb", "aof"] {
        let bk = app.start_backup(&id, format).await;
        let rec = app.wait_backup(&id, &bk).await;
        assert_eq!(
            (rec["status"].as_str(), rec["error_code"].as_str()),
            (Some("failed"), Some("dcs.08.0001")),
            "{format}: {rec}"
        );
        assert!(find_named(&app.dir.path().join("backups"), &bk).is_empty());
    }
    // Within the bounds the same server backs up.
    let app = bounded_app(|j| j.max_backup_size = Some(1 << 20)).await;
    let id = app.adopt("within-limits", redis.port, json!({})).await;
    let bk = app.start_backup(&id, "rdb").await;
    assert_eq!(app.wait_backup(&id, &bk).await["status"], "succeed");
}

#[tokio::test]
async fn a_restore_past_its_deadline_gives_the_target_back() {
    // The target is told to replicate from an address where nothing
    // listens, so the feed waits (up to 30 s) past the 3 s deadline; the
    // job does not stop on its own there, so the runner drops it after
    // 15 s and runs the crash clean-up, which must release the target.
    let app = TestApp::spawn_with(|c| {
        c.advertise_addr = Some("127.0.0.2".into());
        c.jobs.restore_mode = dcs_backup::jobs::restore::RestoreMode::Feed;
        c.jobs.job_deadline = Duration::from_secs(3);
        c.jobs.min_rate = 0;
    })
    .await;
    let source = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    source.cli(&["SET", "k", "v"]);
    let src = app.adopt("deadline-src", source.port, json!({})).await;
    let bk = app.start_backup(&src, "rdb").await;
    assert_eq!(app.wait_backup(&src, &bk).await["status"], "succeed");

    let target = RedisServer::start(&[]);
    let dst = app.adopt("deadline-dst", target.port, json!({})).await;
    let started = Instant::now();
    let restore = app.start_restore(&dst, &bk).await;
    // It is pointed at the service first...
    let pointed = loop {
        if target.info_field("replication", "role") == "slave" {
            break true;
        }
        if started.elapsed() > Duration::from_secs(10) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(pointed, "the target never replicated from the service");
    // ...and given back when the deadline ends the restore.
    let rec = app.wait_restore(&dst, &restore).await;
    assert_eq!(
        (rec["status"].as_str(), rec["error_code"].as_str()),
        (Some("failed"), Some("dcs.08.0002")),
        "{rec}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(target.info_field("replication", "role"), "master");
}

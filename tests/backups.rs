//! Real backups of real servers: what is stored is the server's data,
//! verifiably, whatever the topology, format or server version; and a
//! failure never leaves a record that lies.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::http::Method;
use common::{
    fill_dataset, master_with_replicas, RedisCluster, RedisServer, ServiceProcess, TestApp,
};
use serde_json::{json, Value};

/// Downloads every file of a backup through its links.
async fn download(app: &TestApp, instance: &str, backup_id: &str) -> Vec<(String, Vec<u8>)> {
    let (s, b) = app
        .call(
            Method::POST,
            &app.v2(&format!("/instances/{instance}/backups/{backup_id}/links")),
            Some(json!({"expiration": 300})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let mut out = Vec::new();
    for l in b["links"].as_array().unwrap() {
        let resp = app
            .http
            .get(l["link"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        out.push((
            l["file_name"].as_str().unwrap().to_owned(),
            resp.bytes().await.unwrap().to_vec(),
        ));
    }
    out
}

fn stored_files(app: &TestApp, backup_id: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    fn walk(p: &Path, id: &str, found: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, id, found);
            } else if path.to_string_lossy().contains(id) {
                found.push(path);
            }
        }
    }
    walk(&app.dir.path().join("backups"), backup_id, &mut found);
    found
}

fn check_tool(tool: &str, file: &Path) {
    let out = std::process::Command::new(tool)
        .arg(file)
        .output()
        .expect(tool);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{tool} rejected {}: {text}",
        file.display()
    );
}

fn write_temp(bytes: &[u8], name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    (dir, p)
}

#[tokio::test]
async fn rdb_backup_of_a_standalone_server_is_its_exact_dataset() {
    let app = TestApp::spawn().await;
    let redis = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    fill_dataset(&redis, true);
    let digest = redis.digest();
    let id = app.adopt("rdb-1", redis.port, json!({})).await;
    let before = std::time::SystemTime::now();
    let backup = app.start_backup(&id, "RDB").await;
    let rec = app.wait_backup(&id, &backup).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    assert_eq!(rec["progress"], "100.00");
    assert_eq!(rec["is_support_restore"], "TRUE");
    assert_eq!(rec["backup_format"], "RDB");
    assert_eq!(rec["backup_type"], "manual");
    assert_eq!(rec["remark"], "test");
    assert!(rec["execution_at"].is_string());
    assert!(rec["error_code"].is_null());
    let files = download(&app, &id, &backup).await;
    assert_eq!(files.len(), 1);
    let (name, bytes) = &files[0];
    assert!(
        name.starts_with(&format!("redis_127.0.0.1_{}_", redis.port)) && name.ends_with(".rdb"),
        "{name}"
    );
    assert_eq!(rec["size"].as_u64().unwrap(), bytes.len() as u64);
    assert_eq!(&bytes[..9], b"REDIS0010");
    // The stored file is byte for byte what was downloaded.
    let stored: Vec<PathBuf> = stored_files(&app, &backup)
        .into_iter()
        .filter(|p| p.ends_with(name))
        .collect();
    assert_eq!(std::fs::read(&stored[0]).unwrap(), *bytes);
    let (_d, file) = write_temp(bytes, name);
    check_tool("redis-check-rdb", &file);
    // Loaded into a fresh server, it is the same dataset.
    let copy = RedisServer::start_with_rdb(Path::new("redis-server"), bytes, &[]);
    assert_eq!(copy.digest(), digest);
    assert_eq!(copy.dbsize(5), redis.dbsize(5));
    assert_eq!(copy.cli(&["FCALL", "hello", "0"]).trim(), "hi");
    let _ = before;
}

#[tokio::test]
async fn aof_backup_replays_into_the_same_dataset() {
    let app = TestApp::spawn().await;
    let redis = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    fill_dataset(&redis, true);
    let digest = redis.digest();
    let id = app.adopt("aof-1", redis.port, json!({})).await;
    let backup = app.start_backup(&id, "aof").await;
    let rec = app.wait_backup(&id, &backup).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    assert_eq!(rec["backup_format"], "AOF");
    let files = download(&app, &id, &backup).await;
    let (name, bytes) = &files[0];
    assert!(name.ends_with(".aof"));
    let (_d, file) = write_temp(bytes, name);
    check_tool("redis-check-aof", &file);
    let empty = RedisServer::start(&[]);
    empty.pipe(bytes);
    assert_eq!(empty.digest(), digest);
}

#[tokio::test]
async fn master_standby_backups_come_from_the_replica_and_spare_the_master_a_fork() {
    let app = TestApp::spawn().await;
    let (master, replicas) = master_with_replicas(1);
    replicas[0].cli(&["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
    fill_dataset(&master, true);
    let start = Instant::now();
    while replicas[0].digest() != master.digest() {
        assert!(start.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let digest = master.digest();
    let master_forks = master.info_field("stats", "total_forks");
    let replica_forks: u64 = replicas[0]
        .info_field("stats", "total_forks")
        .parse()
        .unwrap();
    let id = app.adopt("ha-backup", master.port, json!({})).await;
    let backup = app.start_backup(&id, "rdb").await;
    let rec = app.wait_backup(&id, &backup).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    assert_eq!(
        master.info_field("stats", "total_forks"),
        master_forks,
        "the master must not fork"
    );
    let after: u64 = replicas[0]
        .info_field("stats", "total_forks")
        .parse()
        .unwrap();
    assert!(after > replica_forks, "the replica made the snapshot");
    let files = download(&app, &id, &backup).await;
    assert!(
        files[0].0.contains(&format!("_{}_", master.port)),
        "named after the shard's master: {}",
        files[0].0
    );
    let copy = RedisServer::start_with_rdb(Path::new("redis-server"), &files[0].1, &[]);
    assert_eq!(copy.digest(), digest);
}

#[tokio::test]
async fn cluster_backups_have_one_file_per_shard_named_by_its_slots() {
    let app = TestApp::spawn().await;
    let cluster = RedisCluster::start(3, 0);
    let mut total = 0;
    for n in &cluster.nodes {
        n.cli(&["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
    }
    // Keys spread over every shard.
    for i in 0..3000 {
        let out = std::process::Command::new("redis-cli")
            .args([
                "-c",
                "-p",
                &cluster.first_port().to_string(),
                "SET",
                &format!("key:{i}"),
                &format!("v{i}"),
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
        total += 1;
    }
    let id = app
        .adopt("cluster-bk", cluster.first_port(), json!({}))
        .await;
    let backup = app.start_backup(&id, "rdb").await;
    let rec = app.wait_backup(&id, &backup).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    let files = download(&app, &id, &backup).await;
    assert_eq!(files.len(), 3);
    let mut keys = 0;
    for (name, bytes) in &files {
        let port: u16 = name.split('_').nth(2).unwrap().parse().unwrap();
        let node = cluster
            .nodes
            .iter()
            .find(|n| n.port == port)
            .expect("file named after a master");
        let slots = name.split('_').nth(3).unwrap();
        let (lo, hi) = slots.split_once('-').unwrap();
        let owned = node.cli(&["CLUSTER", "SHARDS"]);
        assert!(
            owned.contains(lo) && owned.contains(hi),
            "{name} slots {slots} not this node's"
        );
        let copy = RedisServer::start_with_rdb(Path::new("redis-server"), bytes, &[]);
        assert_eq!(copy.dbsize(0), node.dbsize(0), "{name}");
        keys += copy.dbsize(0);
    }
    assert_eq!(keys, total);
}

#[tokio::test]
async fn one_job_per_instance_and_bad_requests_change_nothing() {
    let app = TestApp::spawn().await;
    let redis = RedisServer::start(&["--repl-diskless-sync-delay", "3"]);
    redis.cli(&["SET", "k", "v"]);
    let id = app.adopt("busy-1", redis.port, json!({})).await;
    let path = app.v2(&format!("/instances/{id}/backups"));
    let cases = [
        (json!({"remark": "r".repeat(129)}), "DCS.4098"),
        (json!({"remark": 5}), "DCS.4098"),
        (json!({"backup_format": "zip"}), "DCS.4800"),
        (json!({"backup_format": 1}), "DCS.4800"),
    ];
    for (body, code) in cases {
        let (s, b) = app.call(Method::POST, &path, Some(body)).await;
        assert_eq!((s, b["error_code"].as_str()), (400, Some(code)), "{b}");
    }
    let (_, list) = app.call(Method::GET, &path, None).await;
    assert_eq!(list["total_num"], 0, "refused requests record nothing");

    let first = app.start_backup(&id, "rdb").await;
    let (s, b) = app.call(Method::POST, &path, Some(json!({}))).await;
    assert_eq!(
        (s, b["error_code"].as_str()),
        (400, Some("DCS.4096")),
        "{b}"
    );
    let (s, b) = app
        .call(
            Method::POST,
            &app.v1(&format!("/instances/{id}/backups")),
            Some(json!({"remark": "x"})),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("111400096")),
        "{b}"
    );
    // A running backup cannot be deleted; its instance neither.
    let (s, b) = app
        .call(
            Method::DELETE,
            &app.v2(&format!("/instances/{id}/backups/{first}")),
            None,
        )
        .await;
    assert_eq!(
        (s, b["error_code"].as_str()),
        (400, Some("DCS.4096")),
        "{b}"
    );
    let (s, _) = app
        .call(Method::DELETE, &app.v2(&format!("/instances/{id}")), None)
        .await;
    assert_eq!(s, 400);
    let rec = app.find_backup(&id, &first).await;
    assert!(
        matches!(rec["status"].as_str(), Some("waiting" | "backuping")),
        "{rec}"
    );
    let rec = app.wait_backup(&id, &first).await;
    assert_eq!(rec["status"], "succeed");
    let (_, list) = app.call(Method::GET, &path, None).await;
    assert_eq!(list["total_num"], 1);
    // Once it is done, the next one is accepted (v1.0 form).
    let (s, b) = app
        .call(
            Method::POST,
            &app.v1(&format!("/instances/{id}/backups")),
            // Not the refused request's body: the same signed bytes in the
            // same second would be a replay.
            Some(json!({"remark": "y"})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let second = b["backup_id"].as_str().unwrap().to_owned();
    assert_eq!(app.wait_backup(&id, &second).await["status"], "succeed");
}

#[tokio::test]
async fn delete_removes_files_keeps_the_record_and_refuses_links() {
    let app = TestApp::spawn().await;
    let redis = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    redis.cli(&["SET", "k", "v"]);
    let id = app.adopt("del-bk", redis.port, json!({})).await;
    let backup = app.start_backup(&id, "rdb").await;
    assert_eq!(app.wait_backup(&id, &backup).await["status"], "succeed");
    let (s, b) = app
        .call(
            Method::POST,
            &app.v2(&format!("/instances/{id}/backups/{backup}/links")),
            Some(json!({"expiration": 300})),
        )
        .await;
    assert_eq!(s, 200);
    let link = b["links"][0]["link"].as_str().unwrap().to_owned();

    // Bad link requests.
    for exp in [json!(299), json!(86401), json!("600"), Value::Null] {
        let (s, b) = app
            .call(
                Method::POST,
                &app.v2(&format!("/instances/{id}/backups/{backup}/links")),
                Some(json!({"expiration": exp})),
            )
            .await;
        assert_eq!(
            (s, b["error_msg"].as_str()),
            (400, Some("Invalid expiration in the request.")),
            "{exp}"
        );
    }
    let (s, _) = app
        .call(
            Method::POST,
            &app.v2(&format!(
                "/instances/{id}/backups/{}/links",
                uuid::Uuid::new_v4()
            )),
            Some(json!({"expiration": 300})),
        )
        .await;
    assert_eq!(s, 400);
    // A tampered or expired link is refused.
    let tampered = link.replace("signature=", "signature=0");
    assert_eq!(app.http.get(&tampered).send().await.unwrap().status(), 403);
    let expired = link.replace("expires=", "expires=1");
    assert_eq!(app.http.get(&expired).send().await.unwrap().status(), 403);

    assert!(!stored_files(&app, &backup).is_empty());
    let (s, _) = app
        .call(
            Method::DELETE,
            &app.v2(&format!("/instances/{id}/backups/{backup}")),
            None,
        )
        .await;
    assert_eq!(s, 204);
    assert!(stored_files(&app, &backup).is_empty(), "files removed");
    let rec = app.find_backup(&id, &backup).await;
    assert_eq!(rec["status"], "deleted");
    assert_eq!(rec["is_support_restore"], "FALSE");
    assert_eq!(
        app.http.get(&link).send().await.unwrap().status(),
        404,
        "old links stop working"
    );
    let (s, _) = app
        .call(
            Method::POST,
            &app.v2(&format!("/instances/{id}/backups/{backup}/links")),
            Some(json!({"expiration": 600})),
        )
        .await;
    assert_eq!(s, 400, "no links for a deleted backup");
    // Deleting again is harmless; v1.0 answers 200 with a message.
    let (s, b) = app
        .call(
            Method::DELETE,
            &app.v1(&format!("/instances/{id}/backups/{backup}")),
            None,
        )
        .await;
    assert_eq!((s, b), (200, json!({"message": ""})));
}

#[tokio::test]
async fn redis_dying_mid_transfer_fails_the_backup_and_leaves_nothing() {
    let app = TestApp::spawn().await;
    let mut redis = RedisServer::start(&[
        "--repl-diskless-sync-delay",
        "0",
        "--rdb-key-save-delay",
        "2000",
        "--rdbcompression",
        "no",
    ]);
    redis.cli(&["DEBUG", "POPULATE", "5000", "k", "200"]);
    let id = app.adopt("dying-1", redis.port, json!({})).await;
    let backup = app.start_backup(&id, "rdb").await;
    // Wait until bytes flow, then kill the server.
    let start = Instant::now();
    loop {
        let rec = app.find_backup(&id, &backup).await;
        if rec["status"] == "backuping" && rec["size"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "transfer never started: {rec}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    redis.kill();
    let rec = app.wait_backup(&id, &backup).await;
    assert_eq!(rec["status"], "failed", "{rec}");
    assert_eq!(rec["error_code"], "dcs.08.0001");
    assert_eq!(rec["is_support_restore"], "FALSE");
    assert!(
        stored_files(&app, &backup).is_empty(),
        "no partial file stays"
    );
    let (s, _) = app
        .call(
            Method::POST,
            &app.v2(&format!("/instances/{id}/backups/{backup}/links")),
            Some(json!({"expiration": 300})),
        )
        .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn unreachable_server_fails_the_backup_with_a_start_error() {
    let app = TestApp::spawn().await;
    let mut redis = RedisServer::start(&[]);
    let id = app.adopt("gone-1", redis.port, json!({})).await;
    redis.kill();
    let backup = app.start_backup(&id, "rdb").await;
    let rec = app.wait_backup(&id, &backup).await;
    assert_eq!(
        (rec["status"].as_str(), rec["error_code"].as_str()),
        (Some("failed"), Some("dcs.08.0001")),
        "{rec}"
    );
}

#[tokio::test]
async fn service_killed_mid_backup_ends_honestly_after_restart() {
    let db = common::TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut svc = ServiceProcess::start(dir.path(), db.url.as_deref());
    let redis = RedisServer::start(&[
        "--repl-diskless-sync-delay",
        "0",
        "--rdb-key-save-delay",
        "500",
        "--rdbcompression",
        "no",
    ]);
    redis.cli(&["DEBUG", "POPULATE", "6000", "k", "100"]);
    let digest = redis.digest();
    let (s, b) = svc
        .call(
            Method::POST,
            &svc.v2("/instances"),
            Some(json!({"name": "killed-1", "private_ip": "127.0.0.1", "port": redis.port})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let id = b["instances"][0]["instance_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, b) = svc
        .call(
            Method::POST,
            &svc.v2(&format!("/instances/{id}/backups")),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let backup = b["backup_id"].as_str().unwrap().to_owned();
    let list = format!("/instances/{id}/backups");
    let start = Instant::now();
    loop {
        let (_, b) = svc.call(Method::GET, &svc.v2(&list), None).await;
        let rec = &b["backup_record_response"][0];
        if rec["status"] == "backuping" && rec["size"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "transfer never started: {rec}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    svc.kill();
    svc.restart();
    let start = Instant::now();
    let rec = loop {
        let (_, b) = svc.call(Method::GET, &svc.v2(&list), None).await;
        let rec = b["backup_record_response"][0].clone();
        if matches!(rec["status"].as_str(), Some("succeed" | "failed")) {
            break rec;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "stuck after restart: {rec}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(rec["backup_id"], backup.as_str());
    // Retried from scratch after the restart: a complete, loadable file.
    assert_eq!(rec["status"], "succeed", "{rec}");
    let (s, b) = svc
        .call(
            Method::POST,
            &svc.v2(&format!("/instances/{id}/backups/{backup}/links")),
            Some(json!({"expiration": 300})),
        )
        .await;
    assert_eq!(s, 200);
    let bytes = reqwest::get(b["links"][0]["link"].as_str().unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(rec["size"].as_u64().unwrap(), bytes.len() as u64);
    let copy = RedisServer::start_with_rdb(Path::new("redis-server"), &bytes, &[]);
    assert_eq!(copy.digest(), digest);
}

/// Other server versions, when the test command provides their binaries.
async fn backup_of_version(env: &str, magic: &[u8], with_functions: bool) {
    let Some(bin) = common::server_from_env(env) else {
        return;
    };
    let app = TestApp::spawn().await;
    let redis = RedisServer::start_binary(&bin, &["--repl-diskless-sync-delay", "0"]);
    fill_dataset(&redis, with_functions);
    let digest = redis.digest();
    let id = app.adopt("version-1", redis.port, json!({})).await;
    for format in ["rdb", "aof"] {
        let backup = app.start_backup(&id, format).await;
        let rec = app.wait_backup(&id, &backup).await;
        assert_eq!(rec["status"], "succeed", "{format}: {rec}");
        let files = download(&app, &id, &backup).await;
        let bytes = &files[0].1;
        if format == "rdb" {
            assert_eq!(&bytes[..magic.len()], magic);
            let copy = RedisServer::start_with_rdb(&bin, bytes, &[]);
            assert_eq!(copy.digest(), digest, "rdb");
        } else {
            let copy = RedisServer::start_binary(&bin, &[]);
            copy.pipe(bytes);
            assert_eq!(copy.digest(), digest, "aof");
        }
    }
}

#[tokio::test]
async fn redis_6_2_backups_are_rdb_version_9() {
    backup_of_version("DCS_TEST_REDIS62", b"REDIS0009", false).await;
}

#[tokio::test]
async fn redis_8_2_backups_are_rdb_version_12() {
    backup_of_version("DCS_TEST_REDIS82", b"REDIS0012", true).await;
}

#[tokio::test]
async fn valkey_9_backups_are_valkey_rdb_80() {
    backup_of_version("DCS_TEST_VALKEY", b"VALKEY080", true).await;
}

#[tokio::test]
async fn disk_based_transfers_and_tls_servers_are_backed_up_too() {
    // Disk-based sync: the master announces `$<length>` instead of an EOF mark.
    let app = TestApp::spawn().await;
    let redis = RedisServer::start(&["--repl-diskless-sync", "no"]);
    fill_dataset(&redis, true);
    let digest = redis.digest();
    let id = app.adopt("disk-sync", redis.port, json!({})).await;
    let backup = app.start_backup(&id, "rdb").await;
    let rec = app.wait_backup(&id, &backup).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    let files = download(&app, &id, &backup).await;
    let copy = RedisServer::start_with_rdb(Path::new("redis-server"), &files[0].1, &[]);
    assert_eq!(copy.digest(), digest);

    // A server that speaks only TLS.
    let certs = common::TestCerts::new();
    let ca = certs.ca();
    let app = TestApp::spawn_with(|c| c.redis_ca_file = Some(ca)).await;
    let tls = RedisServer::start_tls(&certs);
    let id = app
        .adopt("tls-backup", tls.port, json!({"enable_ssl": true}))
        .await;
    let backup = app.start_backup(&id, "rdb").await;
    let rec = app.wait_backup(&id, &backup).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    let files = download(&app, &id, &backup).await;
    assert_eq!(&files[0].1[..9], b"REDIS0010");
    let (_d, file) = write_temp(&files[0].1, &files[0].0);
    check_tool("redis-check-rdb", &file);
}

/// Writes, outside the service, the job row a service that died between
/// its two inserts leaves: `held`, for `record`, created at `at`.
async fn leave_held_job(url: &str, instance: &str, record: &str, at: i64) {
    let sql = "INSERT INTO jobs (id, kind, instance_id, record_id, state, owner, lease_until, \
               attempts, created_at, updated_at) \
               VALUES ($1, 'backup', $2, $3, 'held', NULL, NULL, 0, $4, $4)";
    let id = dcs_backup::model::JobId::generate();
    macro_rules! run {
        ($pool:expr) => {{
            let pool = $pool.expect("catalog");
            let query = sqlx::query(sql)
                .bind(id.as_str())
                .bind(instance)
                .bind(record);
            query.bind(at).execute(&pool).await.expect("statement");
            pool.close().await;
        }};
    }
    if url.starts_with("sqlite:") {
        run!(sqlx::SqlitePool::connect(url).await)
    } else {
        run!(sqlx::PgPool::connect(url).await)
    }
}

/// A service that died between inserting a job and releasing it leaves the
/// job `held`. The next start settles every held job older than a minute:
/// one whose record was never written is removed, so its instance takes
/// backups again; one whose record was written is queued and run, so the
/// record does not stay `waiting` for ever.
#[tokio::test]
async fn held_jobs_a_crash_left_are_settled_by_the_next_start() {
    use dcs_backup::model::{now_millis, BackupStatus, BackupType, InstanceId};
    let app = TestApp::spawn().await;
    let (a, b) = (RedisServer::start(&[]), RedisServer::start(&[]));
    a.cli(&["SET", "a", "1"]);
    b.cli(&["SET", "b", "2"]);
    let ia = app.adopt("held-a", a.port, json!({})).await;
    let ib = app.adopt("held-b", b.port, json!({})).await;
    let inst_b = app
        .catalog()
        .instance_any(&InstanceId::parse(&ib).unwrap())
        .await
        .unwrap()
        .unwrap();
    let mut waiting = dcs_backup::dev::synthetic_backup(&inst_b, 1, now_millis());
    waiting.status = BackupStatus::Waiting;
    waiting.backup_type = BackupType::Manual;
    waiting.error = None;
    let rec = app.catalog().insert_backup(&waiting).await.unwrap();
    let two_minutes_ago = now_millis() - 120_000;
    // `a`: died before its record was written.
    let never_written = dcs_backup::model::BackupId::generate();
    leave_held_job(
        &app.database_url,
        &ia,
        never_written.as_str(),
        two_minutes_ago,
    )
    .await;
    // `b`: died after writing its record, before releasing the job.
    leave_held_job(&app.database_url, &ib, rec.id.as_str(), two_minutes_ago).await;
    // Until a start settles them, the held jobs keep both instances busy.
    for id in [&ia, &ib] {
        let (s, body) = app
            .call(
                Method::POST,
                &app.v2(&format!("/instances/{id}/backups")),
                Some(json!({})),
            )
            .await;
        assert_eq!(
            (s, body["error_code"].as_str()),
            (400, Some("DCS.4096")),
            "{body}"
        );
    }
    assert_eq!(
        app.find_backup(&ib, rec.id.as_str()).await["status"],
        "waiting"
    );

    // A node starts on the same catalog.
    let node = TestApp::spawn_replica_of(&app, |_| {}).await;
    let done = node.wait_backup(&ib, rec.id.as_str()).await;
    assert_eq!(done["status"], "succeed", "{done}");
    let id = node.start_backup(&ia, "rdb").await;
    let done = node.wait_backup(&ia, &id).await;
    assert_eq!(done["status"], "succeed", "{done}");
    let (_, list) = node
        .call(
            Method::GET,
            &node.v2(&format!("/instances/{ia}/backups")),
            None,
        )
        .await;
    assert_eq!(list["total_num"], 1, "the lost job left no record: {list}");
}

#[tokio::test]
async fn the_manifest_endpoint_answers_the_stored_file_with_counts_and_replication_position() {
    let app = TestApp::spawn().await;
    let redis = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    redis.cli(&["SET", "s1", "v"]);
    redis.cli(&["SET", "s2", "v"]);
    redis.cli(&["HSET", "h", "f", "v"]);
    redis.cli(&["-n", "3", "RPUSH", "l", "a", "b"]);
    redis.cli(&["-n", "3", "ZADD", "z", "1", "m"]);
    let id = app.adopt("manifest-1", redis.port, json!({})).await;
    let before_offset: u64 = redis
        .info_field("replication", "master_repl_offset")
        .parse()
        .unwrap();
    let backup = app.start_backup(&id, "RDB").await;
    assert_eq!(app.wait_backup(&id, &backup).await["status"], "succeed");

    let path = app.v2(&format!("/instances/{id}/backups/{backup}/manifest"));
    let resp = app
        .send_signed(&app.cred, Method::GET, &path, Vec::new(), |_| {})
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let answered = resp.bytes().await.unwrap().to_vec();
    let stored: Vec<PathBuf> = stored_files(&app, &backup)
        .into_iter()
        .filter(|p| p.ends_with("manifest.json"))
        .collect();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        answered,
        std::fs::read(&stored[0]).unwrap(),
        "not byte for byte"
    );

    let m: Value = serde_json::from_slice(&answered).unwrap();
    assert_eq!(m["manifest_version"], 2);
    assert_eq!(m["backup_id"], backup.as_str());
    let f = &m["files"][0];
    assert_eq!(f["keys_per_db"], json!({"0": 3, "3": 2}));
    assert_eq!(
        f["keys_per_type"],
        json!({"0": {"string": 2, "hash": 1}, "3": {"list": 1, "zset": 1}})
    );
    // The snapshot's place in the master's history: its replication id
    // and an offset the master had reached when the snapshot began.
    assert_eq!(
        f["repl_id"].as_str().unwrap(),
        redis.info_field("replication", "master_replid")
    );
    let offset = f["repl_offset"].as_u64().unwrap();
    let now_offset: u64 = redis
        .info_field("replication", "master_repl_offset")
        .parse()
        .unwrap();
    assert!(
        before_offset <= offset && offset <= now_offset,
        "{before_offset} <= {offset} <= {now_offset}"
    );
    assert_eq!(
        f["blake3"].as_str().unwrap(),
        blake3::hash(&download(&app, &id, &backup).await[0].1)
            .to_hex()
            .as_str()
    );

    // Unknown, malformed and other projects' backups: the DCS errors.
    let (s, b) = app
        .call(
            Method::POST,
            &app.v2(&format!("/instances/{id}/backups")),
            Some(json!({"remark": "second"})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let other = b["backup_id"].as_str().unwrap().to_owned();
    app.wait_backup(&id, &other).await;
    let (s, b) = app
        .call(
            Method::GET,
            &app.v2(&format!(
                "/instances/{id}/backups/00000000-0000-0000-0000-000000000000/manifest"
            )),
            None,
        )
        .await;
    assert_eq!(
        (s, b["error_code"].as_str()),
        (400, Some("DCS.4800")),
        "{b}"
    );
    let (s, b) = app
        .call(
            Method::GET,
            &app.v2(&format!("/instances/{id}/backups/x/y/manifest")),
            None,
        )
        .await;
    assert_eq!(s, 404, "{b}");
    let stranger = app.credential_for("another-project").await;
    let (s, b) = app
        .call_as(
            &stranger,
            Method::GET,
            &format!("/v2/another-project/instances/{id}/backups/{backup}/manifest"),
            None,
        )
        .await;
    assert!(s == 404 || s == 400, "{s} {b}");
    assert!(!b.to_string().contains("keys_per_db"), "{b}");
    // A deleted backup has no manifest any more.
    let (s, _) = app
        .call(
            Method::DELETE,
            &app.v2(&format!("/instances/{id}/backups/{other}")),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, b) = app
        .call(
            Method::GET,
            &app.v2(&format!("/instances/{id}/backups/{other}/manifest")),
            None,
        )
        .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["error_ext_msg"]
            .as_str()
            .unwrap_or("")
            .contains("deleted"),
        "{b}"
    );
}

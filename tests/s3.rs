//! Backups stored in a real S3-compatible bucket (moto on loopback): the
//! same guarantees as on the local store, objects where the layout says,
//! presigned links that serve exactly the stored bytes, nothing on the
//! local disk, and honest failures when the object store goes away.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::Method;
use common::s3::S3Server;
use common::{fill_dataset, free_port, RedisCluster, RedisServer, TestApp};
use dcs_backup::jobs::restore::RestoreMode;
use dcs_backup::storage::StorageUrl;
use serde_json::{json, Value};

const PREFIX: &str = "pfx";

async fn app_on(s3: &S3Server) -> TestApp {
    let url = StorageUrl::parse(&s3.storage_url(PREFIX)).expect("storage url");
    TestApp::spawn_with(move |c| c.storage = url).await
}

async fn links(app: &TestApp, instance: &str, backup_id: &str) -> (u16, Value) {
    // Each call asks for another expiration: a signed POST is accepted
    // once, and two identical ones within a second are the same request.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    app.call(
        Method::POST,
        &app.v2(&format!("/instances/{instance}/backups/{backup_id}/links")),
        Some(json!({"expiration": 300 + n})),
    )
    .await
}

/// `{project}/{instance}/{backup}/` under the store's prefix.
fn key_prefix(app: &TestApp, instance: &str, backup_id: &str) -> String {
    format!("{PREFIX}/{}/{instance}/{backup_id}/", app.cred.project_id)
}

/// Files under the service's data dir that look like backup data.
fn local_backup_data(dir: &Path, backup_id: &str) -> Vec<PathBuf> {
    fn walk(p: &Path, id: &str, found: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            let path = e.path();
            let name = path.to_string_lossy().into_owned();
            if path.is_dir() {
                if name.contains(id) {
                    found.push(path.clone());
                }
                walk(&path, id, found);
            } else if name.contains(id)
                || name.ends_with(".rdb")
                || name.ends_with(".aof")
                || name.ends_with("manifest.json")
            {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(dir, backup_id, &mut found);
    found
}

fn check_tool(tool: &str, bytes: &[u8], name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(name);
    std::fs::write(&file, bytes).unwrap();
    let out = Command::new(tool).arg(&file).output().expect(tool);
    assert!(
        out.status.success(),
        "{tool} rejected {name}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Backs up `redis` in `format` to S3 and checks everything a user relies
/// on; returns the downloaded file.
async fn backup_to_s3_and_check(
    app: &TestApp,
    s3: &S3Server,
    instance: &str,
    format: &str,
) -> (String, String, Vec<u8>) {
    let backup = app.start_backup(instance, format).await;
    let rec = app.wait_backup(instance, &backup).await;
    assert_eq!(rec["status"], "succeed", "{format}: {rec}");
    assert_eq!(rec["is_support_restore"], "TRUE");
    assert!(rec["error_code"].is_null(), "{rec}");

    // Layout: the file and the manifest, under pfx/{project}/{instance}/{backup}/.
    let prefix = key_prefix(app, instance, &backup);
    let mut keys = s3.objects(&prefix).await;
    keys.sort();
    assert_eq!(keys.len(), 2, "one file and a manifest: {keys:?}");
    let manifest_key = format!("{prefix}manifest.json");
    assert!(keys.contains(&manifest_key), "{keys:?}");
    let manifest: Value =
        serde_json::from_slice(&s3.get(&manifest_key).await.expect("manifest")).unwrap();
    assert_eq!(manifest["backup_id"], backup.as_str());
    assert_eq!(manifest["format"], format);
    let file = &manifest["files"][0];
    let name = file["name"].as_str().unwrap().to_owned();
    let object_key = format!("{prefix}{name}");
    assert!(keys.contains(&object_key), "{keys:?}");
    let object = s3.get(&object_key).await.expect("backup object");
    assert_eq!(file["size"].as_u64().unwrap(), object.len() as u64);
    assert_eq!(file["blake3"].as_str().unwrap(), blake3_hex(&object));
    assert_eq!(rec["size"].as_u64().unwrap(), object.len() as u64);

    // The presigned link serves exactly the stored object.
    let (s, l) = links(app, instance, &backup).await;
    assert_eq!(s, 200, "{l}");
    assert_eq!(l["bucket_name"], s3.bucket.as_str(), "{l}");
    let items = l["links"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{l}");
    assert_eq!(items[0]["file_name"], name.as_str());
    let link = items[0]["link"].as_str().unwrap();
    assert!(
        link.starts_with(&s3.endpoint()) && link.contains("X-Amz-Signature="),
        "a presigned S3 URL: {link}"
    );
    let resp = reqwest::get(link).await.unwrap();
    assert_eq!(resp.status(), 200, "{link}");
    let downloaded = resp.bytes().await.unwrap().to_vec();
    assert_eq!(downloaded.len() as u64, rec["size"].as_u64().unwrap());
    assert!(downloaded == object, "the link serves the stored bytes");

    // With S3 the local disk holds no backup data.
    let local = local_backup_data(app.dir.path(), &backup);
    assert!(local.is_empty(), "backup data on the local disk: {local:?}");
    (backup, name, downloaded)
}

async fn delete_and_check(app: &TestApp, s3: &S3Server, instance: &str, backup: &str) {
    let (_, l) = links(app, instance, backup).await;
    let link = l["links"][0]["link"].as_str().unwrap().to_owned();
    let (s, b) = app
        .call(
            Method::DELETE,
            &app.v2(&format!("/instances/{instance}/backups/{backup}")),
            None,
        )
        .await;
    assert_eq!(s, 204, "{b}");
    let left = s3.objects(&key_prefix(app, instance, backup)).await;
    assert!(left.is_empty(), "objects left after delete: {left:?}");
    let rec = app.find_backup(instance, backup).await;
    assert_eq!(rec["status"], "deleted", "{rec}");
    assert_eq!(rec["is_support_restore"], "FALSE");
    let (s, _) = links(app, instance, backup).await;
    assert_eq!(s, 400, "no links for a deleted backup");
    let old = reqwest::get(&link).await.unwrap().status();
    assert_eq!(old, 404, "an old presigned link finds nothing");
}

#[tokio::test]
async fn rdb_and_aof_backups_to_s3_are_exact_and_deletable() {
    let s3 = S3Server::start();
    let app = app_on(&s3).await;
    let redis = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    fill_dataset(&redis, true);
    let digest = redis.digest();
    let id = app.adopt("s3-standalone", redis.port, json!({})).await;

    let (rdb_backup, name, rdb) = backup_to_s3_and_check(&app, &s3, &id, "rdb").await;
    assert!(
        name.starts_with(&format!("redis_127.0.0.1_{}_", redis.port)) && name.ends_with(".rdb"),
        "{name}"
    );
    check_tool("redis-check-rdb", &rdb, &name);
    let copy = RedisServer::start_with_rdb(Path::new("redis-server"), &rdb, &[]);
    assert_eq!(copy.digest(), digest, "the RDB is the dataset");

    let (aof_backup, name, aof) = backup_to_s3_and_check(&app, &s3, &id, "aof").await;
    assert!(name.ends_with(".aof"), "{name}");
    check_tool("redis-check-aof", &aof, &name);
    let empty = RedisServer::start(&[]);
    empty.pipe(&aof);
    assert_eq!(empty.digest(), digest, "the AOF replays into the dataset");

    delete_and_check(&app, &s3, &id, &rdb_backup).await;
    // The other backup is untouched by the first one's deletion.
    let other = s3.objects(&key_prefix(&app, &id, &aof_backup)).await;
    assert_eq!(other.len(), 2, "{other:?}");
    delete_and_check(&app, &s3, &id, &aof_backup).await;
    let all = s3.objects(PREFIX).await;
    assert!(all.is_empty(), "the bucket holds nothing more: {all:?}");
}

#[tokio::test]
async fn cluster_backup_to_s3_has_one_object_per_shard() {
    let s3 = S3Server::start();
    let app = app_on(&s3).await;
    let cluster = RedisCluster::start(3, 0);
    for n in &cluster.nodes {
        n.cli(&["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
    }
    // Every node gets keys of its own slots: `{tag}` keys hashed to each.
    let mut total = 0u64;
    for n in &cluster.nodes {
        let mut buf = Vec::new();
        let mut tags = 0;
        for t in 0..2000 {
            let key = format!("{{t{t}}}:k");
            let slot: u16 = n.cli(&["CLUSTER", "KEYSLOT", &key]).trim().parse().unwrap();
            if owns(n, slot) {
                for i in 0..100 {
                    let k = format!("{{t{t}}}:{i}");
                    buf.extend_from_slice(&common::resp(&[b"SET", k.as_bytes(), b"value"]));
                }
                tags += 1;
                total += 100;
                if tags == 5 {
                    break;
                }
            }
        }
        assert_eq!(tags, 5, "node {} owns no slot we found", n.port);
        n.pipe(&buf);
    }
    let id = app
        .adopt("s3-cluster", cluster.first_port(), json!({}))
        .await;
    let backup = app.start_backup(&id, "rdb").await;
    let rec = app.wait_backup(&id, &backup).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    let prefix = key_prefix(&app, &id, &backup);
    let keys = s3.objects(&prefix).await;
    assert_eq!(keys.len(), 4, "three shard files and a manifest: {keys:?}");
    assert!(keys.contains(&format!("{prefix}manifest.json")), "{keys:?}");
    let (s, l) = links(&app, &id, &backup).await;
    assert_eq!(s, 200, "{l}");
    let items = l["links"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{l}");
    let mut size = 0u64;
    let mut keys_seen = 0u64;
    for item in items {
        let name = item["file_name"].as_str().unwrap();
        assert!(
            keys.contains(&format!("{prefix}{name}")),
            "{name} in {keys:?}"
        );
        let bytes = reqwest::get(item["link"].as_str().unwrap())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec();
        assert!(
            s3.get(&format!("{prefix}{name}")).await.unwrap() == bytes,
            "{name}: the link serves the stored bytes"
        );
        size += bytes.len() as u64;
        let port: u16 = name.split('_').nth(2).unwrap().parse().unwrap();
        let node = cluster
            .nodes
            .iter()
            .find(|n| n.port == port)
            .expect("a master's file");
        let copy = RedisServer::start_with_rdb(Path::new("redis-server"), &bytes, &[]);
        assert_eq!(copy.dbsize(0), node.dbsize(0), "{name}");
        assert_eq!(copy.digest(), node.digest(), "{name}");
        keys_seen += copy.dbsize(0);
    }
    assert_eq!(keys_seen, total);
    assert_eq!(rec["size"].as_u64().unwrap(), size);
    let local = local_backup_data(app.dir.path(), &backup);
    assert!(local.is_empty(), "backup data on the local disk: {local:?}");
}

fn owns(node: &RedisServer, slot: u16) -> bool {
    // The slot ranges `CLUSTER NODES` lists for the node itself.
    let nodes = node.cli(&["CLUSTER", "NODES"]);
    let me = nodes
        .lines()
        .find(|l| l.contains("myself"))
        .expect("myself");
    me.split_whitespace().skip(8).any(|range| {
        let (lo, hi) = range.split_once('-').unwrap_or((range, range));
        match (lo.parse::<u16>(), hi.parse::<u16>()) {
            (Ok(lo), Ok(hi)) => lo <= slot && slot <= hi,
            _ => false,
        }
    })
}

/// A Redis whose snapshot streams slowly (0.5 ms a key): `keys` keys of
/// `value_size` bytes.
fn slow_redis(keys: u32, value_size: u32) -> RedisServer {
    let redis = RedisServer::start(&[
        "--repl-diskless-sync-delay",
        "0",
        "--rdb-key-save-delay",
        "500",
        "--rdbcompression",
        "no",
    ]);
    redis.cli(&[
        "DEBUG",
        "POPULATE",
        &keys.to_string(),
        "k",
        &value_size.to_string(),
    ]);
    redis
}

/// Starts a backup of `redis`, kills the S3 server once bytes flow (and,
/// if `after_a_part`, once a part of the multipart upload is stored), and
/// checks the outcome is an honest, final failure.
async fn kill_s3_mid_upload(redis: &RedisServer, after_a_part: bool) {
    let mut s3 = S3Server::start();
    let app = app_on(&s3).await;
    let id = app.adopt("s3-dying", redis.port, json!({})).await;
    let backup = app.start_backup(&id, "rdb").await;
    let start = Instant::now();
    loop {
        let rec = app.find_backup(&id, &backup).await;
        if rec["status"] == "backuping"
            && rec["size"].as_u64().unwrap_or(0) > 0
            && (!after_a_part || s3.requests().contains("partNumber="))
        {
            break;
        }
        assert!(
            rec["status"] == "waiting" || rec["status"] == "backuping",
            "finished before the store could be stopped (make it slower): {rec}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "transfer never started: {rec}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s3.kill();
    let rec = app.wait_backup(&id, &backup).await;
    assert_eq!(rec["status"], "failed", "{rec}");
    assert_eq!(rec["error_code"], "dcs.08.0003", "a storage failure: {rec}");
    assert_eq!(rec["is_support_restore"], "FALSE");
    // The failure is final: it never turns into succeed later.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = app.find_backup(&id, &backup).await;
    assert_eq!(again["status"], "failed", "{again}");
    let (s, _) = links(&app, &id, &backup).await;
    assert_eq!(s, 400, "no links for a failed backup");

    // The store is back (moto keeps nothing across a restart): no complete
    // backup appears in it, and the next backup works.
    s3.restart();
    let left = s3.objects(&key_prefix(&app, &id, &backup)).await;
    assert!(
        !left.iter().any(|k| k.ends_with("manifest.json")),
        "a manifest for a failed backup: {left:?}"
    );
    assert_eq!(app.find_backup(&id, &backup).await["status"], "failed");
    let next = app.start_backup(&id, "rdb").await;
    let rec = app.wait_backup(&id, &next).await;
    assert_eq!(rec["status"], "succeed", "the next backup works: {rec}");
    let keys = s3.objects(&key_prefix(&app, &id, &next)).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
}

#[tokio::test]
async fn s3_dying_mid_upload_fails_the_backup_honestly() {
    // 5000 keys of 100 bytes: about 2.5 s of streaming, one S3 part.
    kill_s3_mid_upload(&slow_redis(5000, 100), false).await;
}

#[tokio::test]
async fn s3_dying_during_a_multipart_upload_fails_the_backup_honestly() {
    // 6000 keys of 3000 bytes: 18 MB in about 3 s, three parts.
    kill_s3_mid_upload(&slow_redis(6000, 3000), true).await;
}

#[tokio::test]
async fn s3_backup_larger_than_one_part_succeeds() {
    let s3 = S3Server::start();
    let app = app_on(&s3).await;
    let redis = RedisServer::start(&["--repl-diskless-sync-delay", "0", "--rdbcompression", "no"]);
    redis.cli(&["DEBUG", "POPULATE", "6000", "k", "3000"]);
    let digest = redis.digest();
    let id = app.adopt("s3-big", redis.port, json!({})).await;
    let (_, name, rdb) = backup_to_s3_and_check(&app, &s3, &id, "rdb").await;
    assert!(rdb.len() > 16 << 20, "{name}: {} bytes", rdb.len());
    let copy = RedisServer::start_with_rdb(Path::new("redis-server"), &rdb, &[]);
    assert_eq!(copy.digest(), digest);
}

#[tokio::test]
async fn s3_down_before_the_backup_fails_it_with_a_storage_error() {
    let mut s3 = S3Server::start();
    let app = app_on(&s3).await;
    let redis = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    redis.cli(&["SET", "k", "v"]);
    let id = app.adopt("s3-down", redis.port, json!({})).await;
    s3.kill();
    let backup = app.start_backup(&id, "aof").await;
    let rec = app.wait_backup(&id, &backup).await;
    assert_eq!(
        (rec["status"].as_str(), rec["error_code"].as_str()),
        (Some("failed"), Some("dcs.08.0003")),
        "{rec}"
    );
    assert_eq!(rec["is_support_restore"], "FALSE");
}

/// Runs `dcs-backup serve --storage URL`; returns (exit code, stderr,
/// whether it ever answered, data dir) once it exits, or panics if it keeps
/// running for more than a few seconds.
async fn serve_with_storage(storage: &str) -> (Option<i32>, String, tempfile::TempDir) {
    common::s3::set_aws_keys();
    let db = common::TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dcs-backup"));
    cmd.args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
    ])
    .arg(dir.path())
    .args(["--storage", storage])
    .env("AWS_ACCESS_KEY_ID", common::s3::ACCESS_KEY)
    .env("AWS_SECRET_ACCESS_KEY", common::s3::SECRET_KEY)
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    if let Some(url) = &db.url {
        cmd.args(["--database-url", url]);
    }
    let mut child = cmd.spawn().expect("dcs-backup runs");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let answered = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after 10 s (listening: {answered}) with storage {storage}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?} to give up",
        start.elapsed()
    );
    drop(db);
    (status.code(), stderr, dir)
}

#[tokio::test]
async fn unreachable_s3_endpoint_refuses_to_start() {
    let dead = free_port();
    let storage = format!(
        "s3://dcs-backups/pfx?endpoint=http://127.0.0.1:{dead}&region=us-east-1&path_style=true"
    );
    let (code, stderr, dir) = serve_with_storage(&storage).await;
    assert!(matches!(code, Some(c) if c != 0), "exit {code:?}: {stderr}");
    assert!(
        stderr.contains("backup store") && stderr.contains(&dead.to_string()),
        "a clear message naming the store: {stderr}"
    );
    assert!(
        !stderr.contains(common::s3::SECRET_KEY),
        "the secret key is never printed: {stderr}"
    );
    assert!(
        !dir.path().join("credentials.json").exists(),
        "not a half-started service"
    );
}

#[tokio::test]
async fn missing_bucket_refuses_to_start() {
    let s3 = S3Server::start();
    let storage = format!(
        "s3://no-such-bucket/pfx?endpoint={}&region=us-east-1&path_style=true",
        s3.endpoint()
    );
    let (code, stderr, dir) = serve_with_storage(&storage).await;
    assert!(matches!(code, Some(c) if c != 0), "exit {code:?}: {stderr}");
    assert!(
        stderr.contains("backup store") && stderr.contains("no-such-bucket"),
        "{stderr}"
    );
    assert!(!dir.path().join("credentials.json").exists());
}

#[tokio::test]
async fn links_name_the_objects_place_in_the_bucket() {
    let s3 = S3Server::start();
    let app = app_on(&s3).await;
    let redis = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    redis.cli(&["SET", "k", "v"]);
    let id = app.adopt("s3-path", redis.port, json!({})).await;
    let backup = app.start_backup(&id, "rdb").await;
    assert_eq!(app.wait_backup(&id, &backup).await["status"], "succeed");
    let (s, l) = links(&app, &id, &backup).await;
    assert_eq!(s, 200, "{l}");
    // "file_path: Paths of files in the OBS bucket" (DCS API reference).
    let key = format!(
        "{}{}",
        l["file_path"].as_str().unwrap(),
        l["links"][0]["file_name"].as_str().unwrap()
    );
    assert_eq!(l["bucket_name"], s3.bucket.as_str());
    assert!(
        s3.get(&key).await.is_some(),
        "no object {key:?} in the bucket; it holds {:?}",
        s3.objects("").await
    );
}

/// Restores read the backup back from the bucket: checked as it streams in
/// (BLAKE3 and a full parse), then fed to the target as a replica's full
/// sync, sliced into RESTOREs, or replayed (AOF), and the target ends up
/// exactly as it was at backup time.
#[tokio::test]
async fn restores_from_s3_by_feed_slicing_and_replay() {
    let s3 = S3Server::start();
    for (mode, formats) in [
        (RestoreMode::Auto, &["rdb"][..]),
        (RestoreMode::Slice, &["rdb", "aof"][..]),
    ] {
        let url = StorageUrl::parse(&s3.storage_url(PREFIX)).expect("storage url");
        let app = TestApp::spawn_with(move |c| {
            c.storage = url;
            c.jobs.restore_mode = mode;
        })
        .await;
        let redis = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
        fill_dataset(&redis, true);
        let digest = redis.digest();
        let instance = app.adopt("s3-restore", redis.port, json!({})).await;
        for format in formats {
            let backup = app.start_backup(&instance, format).await;
            let rec = app.wait_backup(&instance, &backup).await;
            assert_eq!(rec["status"], "succeed", "{format}: {rec}");
            redis.cli(&["SET", "added-after-backup", "x"]);
            redis.cli(&["DEL", "list:big"]);
            assert_ne!(redis.digest(), digest);

            let restore = app.start_restore(&instance, &backup).await;
            let rec = app.wait_restore(&instance, &restore).await;
            assert_eq!(rec["status"], "succeed", "{mode:?} {format}: {rec}");
            let path = app.restore_path(&restore).await;
            if mode == RestoreMode::Auto {
                assert_eq!(path, "replication feed");
            } else {
                assert!(path.starts_with("slicing"), "{path}");
            }
            assert_eq!(redis.digest(), digest, "{mode:?} {format}");
            assert_eq!(redis.info_field("replication", "role"), "master");
        }
    }
}

/// A stored object with one byte flipped is caught while it streams back
/// from the bucket: the restore fails with dcs.08.0006 and the target keeps
/// its data and its role.
#[tokio::test]
async fn a_corrupted_object_fails_the_restore_before_the_target_is_touched() {
    let s3 = S3Server::start();
    let app = app_on(&s3).await;
    let redis = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    fill_dataset(&redis, false);
    let instance = app.adopt("s3-corrupt", redis.port, json!({})).await;
    let backup = app.start_backup(&instance, "rdb").await;
    let rec = app.wait_backup(&instance, &backup).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    let key = s3
        .objects(&key_prefix(&app, &instance, &backup))
        .await
        .into_iter()
        .find(|k| k.ends_with(".rdb"))
        .expect("rdb object");
    let mut bytes = s3.get(&key).await.expect("object");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    s3.put(&key, bytes).await;
    redis.cli(&["SET", "added-after-backup", "x"]);
    let digest = redis.digest();

    let restore = app.start_restore(&instance, &backup).await;
    let rec = app.wait_restore(&instance, &restore).await;
    assert_eq!(rec["status"], "failed", "{rec}");
    assert_eq!(rec["error_code"], "dcs.08.0006", "{rec}");
    assert_eq!(redis.digest(), digest, "target untouched");
    assert_eq!(redis.info_field("replication", "role"), "master");
}

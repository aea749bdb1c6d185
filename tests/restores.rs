//! Restores: the target's dataset becomes exactly the backup's, by the
//! replication feed or by RESTORE slicing, across topologies, shapes and
//! server versions; and a bad backup or a crash never destroys data.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::http::Method;
use common::{
    fill_dataset, master_with_replicas, RedisCluster, RedisServer, ServiceProcess, TestApp,
};
use dcs_backup::jobs::restore::RestoreMode;
use serde_json::{json, Value};

async fn backup(app: &TestApp, instance: &str, format: &str) -> String {
    let (s, b) = app
        .call(
            Method::POST,
            &app.v2(&format!("/instances/{instance}/backups")),
            Some(json!({"backup_format": format})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let id = b["backup_id"].as_str().unwrap().to_owned();
    let rec = app.wait_backup(instance, &id).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    id
}

/// Restores and returns (record, path taken).
async fn restore(app: &TestApp, instance: &str, backup_id: &str) -> (Value, String) {
    let id = app.start_restore(instance, backup_id).await;
    let rec = app.wait_restore(instance, &id).await;
    let path = app.restore_path(&id).await;
    (rec, path)
}

/// Adds, deletes and re-times keys so a restore has something to undo.
fn scribble(r: &RedisServer) {
    for db in ["0", "1"] {
        r.cli(&["-n", db, "SET", "added-after-backup", "x"]);
        r.cli(&["-n", db, "DEL", "list:big", "hash:small"]);
        r.cli(&["-n", db, "EXPIRE", "set:big", "1000"]);
        r.cli(&["-n", db, "PERSIST", "ttl:far"]);
    }
}

fn servers_binary(env: &str) -> Option<PathBuf> {
    common::server_from_env(env)
}

#[tokio::test]
async fn feed_restores_a_standalone_server_exactly() {
    let app = TestApp::spawn().await;
    let redis = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    fill_dataset(&redis, true);
    let digest = redis.digest();
    let id = app.adopt("feed-1", redis.port, json!({})).await;
    let b = backup(&app, &id, "rdb").await;
    scribble(&redis);
    assert_ne!(redis.digest(), digest);
    let (rec, path) = restore(&app, &id, &b).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    assert_eq!(rec["progress"], "100.00");
    assert_eq!(rec["backup_id"], b.as_str());
    assert_eq!(rec["restore_remark"], "test restore");
    assert_eq!(path, "replication feed");
    assert_eq!(redis.digest(), digest);
    assert_eq!(
        redis.info_field("replication", "role"),
        "master",
        "the target is a master again"
    );
    assert_eq!(
        redis
            .cli(&["CONFIG", "GET", "repl-diskless-load"])
            .lines()
            .nth(1),
        Some("disabled")
    );
    assert_eq!(redis.cli(&["FCALL", "hello", "0"]).trim(), "hi");
}

#[tokio::test]
async fn slicing_restores_a_standalone_server_exactly() {
    let app = TestApp::spawn_with(|c| c.jobs.restore_mode = RestoreMode::Slice).await;
    let redis = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    fill_dataset(&redis, true);
    // Keys that expire soon must not come back once expired.
    redis.cli(&["SET", "short-lived", "v", "PX", "300"]);
    let id = app.adopt("slice-1", redis.port, json!({})).await;
    let b = backup(&app, &id, "rdb").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let digest = redis.digest();
    scribble(&redis);
    let (rec, path) = restore(&app, &id, &b).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    assert!(path.starts_with("slicing"), "{path}");
    assert_eq!(redis.digest(), digest);
    assert_eq!(redis.cli(&["EXISTS", "short-lived"]).trim(), "0");
    assert_eq!(redis.cli(&["FCALL", "hello", "0"]).trim(), "hi");
}

#[tokio::test]
async fn aof_backups_restore_by_replay() {
    let app = TestApp::spawn().await;
    let redis = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    fill_dataset(&redis, true);
    let digest = redis.digest();
    let id = app.adopt("aof-restore", redis.port, json!({})).await;
    let b = backup(&app, &id, "aof").await;
    scribble(&redis);
    let (rec, path) = restore(&app, &id, &b).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    assert!(path.starts_with("slicing"), "{path}");
    assert_eq!(redis.digest(), digest);
}

#[tokio::test]
async fn master_standby_restore_reaches_the_replica_too() {
    let app = TestApp::spawn().await;
    let (master, replicas) = master_with_replicas(1);
    for r in [&master, &replicas[0]] {
        r.cli(&["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
    }
    fill_dataset(&master, true);
    let digest = master.digest();
    let start = Instant::now();
    while replicas[0].digest() != digest {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "replica never caught up before the backup"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = app.adopt("ha-restore", master.port, json!({})).await;
    let b = backup(&app, &id, "rdb").await;
    scribble(&master);
    let (rec, path) = restore(&app, &id, &b).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    assert_eq!(path, "replication feed");
    assert_eq!(master.digest(), digest);
    let start = Instant::now();
    while replicas[0].digest() != digest {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the replica never caught up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(master.info_field("replication", "role"), "master");
    assert_eq!(master.info_field("replication", "connected_slaves"), "1");
}

fn cluster_digests(c: &RedisCluster) -> Vec<(u16, String)> {
    c.nodes
        .iter()
        .filter(|n| n.info_field("replication", "role") == "master")
        .map(|n| (n.port, n.digest()))
        .collect()
}

fn fill_cluster(c: &RedisCluster, n: usize) {
    // redis-cli --pipe does not follow redirects: route by slot ourselves.
    let nodes =
        dcs_backup::redis::topology::parse_cluster_nodes(&c.nodes[0].cli(&["CLUSTER", "NODES"]))
            .expect("valid CLUSTER NODES");
    let owner = |key: &[u8]| -> u16 {
        let slot = dcs_backup::redis::cluster::key_slot(key);
        nodes
            .iter()
            .find(|n| n.master && n.slots.iter().any(|&(a, b)| a <= slot && slot <= b))
            .unwrap()
            .addr
            .port
    };
    let mut per_node: std::collections::HashMap<u16, Vec<u8>> = Default::default();
    for i in 0..n {
        let key = format!("key:{i}");
        per_node
            .entry(owner(key.as_bytes()))
            .or_default()
            .extend(common::resp(&[
                b"SET",
                key.as_bytes(),
                format!("value {i}").as_bytes(),
            ]));
        if i % 10 == 0 {
            let list = format!("{{tag{i}}}:list");
            let buf = per_node.entry(owner(list.as_bytes())).or_default();
            buf.extend(common::resp(&[b"RPUSH", list.as_bytes(), b"a", b"b", b"c"]));
            buf.extend(common::resp(&[b"PEXPIRE", list.as_bytes(), b"86400000"]));
        }
    }
    for (port, bytes) in per_node {
        c.nodes
            .iter()
            .find(|n| n.port == port)
            .unwrap()
            .pipe(&bytes);
    }
}

fn total_keys(c: &RedisCluster) -> u64 {
    c.nodes
        .iter()
        .filter(|n| n.info_field("replication", "role") == "master")
        .map(|n| n.dbsize(0))
        .sum()
}

/// Union digest of a cluster: every key's DUMP-independent value, sorted.
fn cluster_content(c: &RedisCluster) -> Vec<String> {
    let mut out = Vec::new();
    for n in c
        .nodes
        .iter()
        .filter(|n| n.info_field("replication", "role") == "master")
    {
        for k in n.cli(&["--scan"]).lines() {
            let t = n.cli(&["TYPE", k]).trim().to_owned();
            let v = match t.as_str() {
                "string" => n.cli(&["GET", k]),
                "list" => n.cli(&["LRANGE", k, "0", "-1"]),
                _ => String::new(),
            };
            let ttl = n.cli(&["PEXPIRETIME", k]).trim().to_owned();
            out.push(format!("{k}={t}:{v}:{ttl}"));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn cluster_backups_restore_into_clusters_of_other_shapes() {
    let app = TestApp::spawn().await;
    let source = RedisCluster::start(3, 0);
    fill_cluster(&source, 600);
    let content = cluster_content(&source);
    let keys = total_keys(&source);
    let id = app
        .adopt("src-cluster", source.first_port(), json!({}))
        .await;
    let b = backup(&app, &id, "rdb").await;

    // Same shape: every master ends with its own digest.
    let digests = cluster_digests(&source);
    for n in &source.nodes {
        n.cli(&["-c", "SET", "added-after", "1"]);
    }
    let (rec, path) = restore(&app, &id, &b).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    assert!(path.starts_with("slicing"), "{path}");
    assert_eq!(cluster_digests(&source), digests);

    for shards in [2usize, 4] {
        let target = RedisCluster::start(shards, 0);
        target.nodes[0].cli(&["-c", "SET", "old-data", "1"]);
        let tid = app
            .adopt(&format!("target-{shards}"), target.first_port(), json!({}))
            .await;
        let (rec, _) = restore(&app, &tid, &b).await;
        assert_eq!(rec["status"], "succeed", "{shards} shards: {rec}");
        assert_eq!(total_keys(&target), keys, "{shards} shards");
        assert_eq!(cluster_content(&target), content, "{shards} shards");
        // v1.0 shows the source of a restore from another instance.
        let (_, v1) = app
            .call(
                Method::GET,
                &app.v1(&format!("/instances/{tid}/restores")),
                None,
            )
            .await;
        assert_eq!(
            v1["restore_record_response"][0]["sourceInstanceId"],
            id.as_str()
        );
        assert_eq!(
            v1["restore_record_response"][0]["sourceInstanceName"],
            "src-cluster"
        );
    }

    // Cluster backup into a standalone server, and back.
    let single = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    let sid = app
        .adopt("single-from-cluster", single.port, json!({}))
        .await;
    let (rec, _) = restore(&app, &sid, &b).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    assert_eq!(single.dbsize(0), keys);
    let sb = backup(&app, &sid, "rdb").await;
    let target = RedisCluster::start(3, 0);
    let tid = app
        .adopt("cluster-from-single", target.first_port(), json!({}))
        .await;
    let (rec, _) = restore(&app, &tid, &sb).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    assert_eq!(cluster_content(&target), content);
}

#[tokio::test]
async fn a_backup_with_other_databases_cannot_go_into_a_cluster_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let single = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    single.cli(&["SET", "a", "1"]);
    single.cli(&["-n", "3", "SET", "b", "2"]);
    let sid = app.adopt("multi-db", single.port, json!({})).await;
    let b = backup(&app, &sid, "rdb").await;
    let cluster = RedisCluster::start(3, 0);
    cluster.nodes[0].cli(&["-c", "SET", "keep-me", "1"]);
    let before = cluster_digests(&cluster);
    let cid = app
        .adopt("cluster-x", cluster.first_port(), json!({}))
        .await;
    let (rec, _) = restore(&app, &cid, &b).await;
    assert_eq!(rec["status"], "failed", "{rec}");
    assert_eq!(
        rec["error_code"], "dcs.08.0001",
        "refused by the plan: {rec}"
    );
    assert!(rec["reason"]
        .as_str()
        .is_some_and(|r| r.contains("database 3") && r.contains("only database 0")));
    assert_eq!(cluster_digests(&cluster), before, "nothing written");
}

#[tokio::test]
async fn corrupt_backup_fails_before_the_target_is_touched() {
    let app = TestApp::spawn().await;
    let redis = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    fill_dataset(&redis, false);
    let id = app.adopt("corrupt-1", redis.port, json!({})).await;
    let b = backup(&app, &id, "rdb").await;
    scribble(&redis);
    let digest = redis.digest();
    // Flip one byte of the stored file.
    let file = walk(&app.dir.path().join("backups"))
        .into_iter()
        .find(|p| p.to_string_lossy().contains(&b) && p.extension().is_some_and(|e| e == "rdb"))
        .unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(&file, &bytes).unwrap();
    let (rec, _) = restore(&app, &id, &b).await;
    assert_eq!(rec["status"], "failed", "{rec}");
    assert_eq!(rec["error_code"], "dcs.08.0006");
    assert_eq!(redis.digest(), digest, "target untouched");
    assert_eq!(redis.info_field("replication", "role"), "master");
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[tokio::test]
async fn restore_requests_are_checked() {
    let app = TestApp::spawn().await;
    let redis = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    redis.cli(&["SET", "k", "v"]);
    let id = app.adopt("checks-1", redis.port, json!({})).await;
    let b = backup(&app, &id, "rdb").await;
    let path = app.v2(&format!("/instances/{id}/restores"));
    for (body, code) in [
        (json!({}), "DCS.4800"),
        (json!({"backup_id": "nope"}), "DCS.4800"),
        (
            json!({"backup_id": uuid::Uuid::new_v4().to_string()}),
            "DCS.4800",
        ),
        (
            json!({"backup_id": b, "remark": "r".repeat(129)}),
            "DCS.4098",
        ),
    ] {
        let (s, r) = app.call(Method::POST, &path, Some(body)).await;
        assert_eq!((s, r["error_code"].as_str()), (400, Some(code)), "{r}");
    }
    // Only succeeded backups.
    let (s, _) = app
        .call(
            Method::DELETE,
            &app.v2(&format!("/instances/{id}/backups/{b}")),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, r) = app
        .call(Method::POST, &path, Some(json!({"backup_id": b})))
        .await;
    assert_eq!(
        (s, r["error_code"].as_str()),
        (400, Some("DCS.4087")),
        "{r}"
    );
    let (s, r) = app
        .call(
            Method::POST,
            &app.v1(&format!("/instances/{id}/restores")),
            Some(json!({"backup_id": b})),
        )
        .await;
    assert_eq!(
        (s, r["error"]["code"].as_str()),
        (400, Some("111400087")),
        "{r}"
    );
    let (s, _) = app.call(Method::GET, &path, None).await;
    assert_eq!(s, 204, "no restore was recorded");

    // One job at a time: a restore while a backup runs, and the reverse.
    redis.cli(&["CONFIG", "SET", "repl-diskless-sync-delay", "3"]);
    let b2 = backup_started(&app, &id).await;
    let (s, r) = app
        .call(Method::POST, &path, Some(json!({"backup_id": b2})))
        .await;
    assert_eq!(s, 400, "{r}");
    assert!(
        matches!(r["error_code"].as_str(), Some("DCS.4096" | "DCS.4087")),
        "{r}"
    );
    app.wait_backup(&id, &b2).await;
    redis.cli(&["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
    redis.cli(&["CONFIG", "SET", "rdb-key-save-delay", "0"]);
    let rid = app.start_restore(&id, &b2).await;
    let (s, r) = app
        .call(
            Method::POST,
            &app.v2(&format!("/instances/{id}/backups")),
            Some(json!({})),
        )
        .await;
    if s == 400 {
        assert_eq!(r["error_code"], "DCS.4097", "{r}");
    }
    let rec = app.wait_restore(&id, &rid).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
}

async fn backup_started(app: &TestApp, instance: &str) -> String {
    let (s, b) = app
        .call(
            Method::POST,
            &app.v2(&format!("/instances/{instance}/backups")),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    b["backup_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn big_keys_restore_by_both_paths() {
    let app = TestApp::spawn().await;
    let redis = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    let mut buf = Vec::new();
    for chunk in 0..100 {
        let mut args: Vec<Vec<u8>> = vec![b"HSET".to_vec(), b"big:hash".to_vec()];
        let mut list: Vec<Vec<u8>> = vec![b"RPUSH".to_vec(), b"big:list".to_vec()];
        for i in 0..10_000 {
            let n = chunk * 10_000 + i;
            args.push(format!("field:{n}").into_bytes());
            args.push(format!("{n}").into_bytes());
            list.push(format!("item:{n}").into_bytes());
        }
        let a: Vec<&[u8]> = args.iter().map(|v| v.as_slice()).collect();
        buf.extend(common::resp(&a));
        let l: Vec<&[u8]> = list.iter().map(|v| v.as_slice()).collect();
        buf.extend(common::resp(&l));
    }
    redis.pipe(&buf);
    assert_eq!(redis.cli(&["HLEN", "big:hash"]).trim(), "1000000");
    assert_eq!(redis.cli(&["LLEN", "big:list"]).trim(), "1000000");
    let digest = redis.digest();
    let id = app.adopt("big-1", redis.port, json!({})).await;
    let b = backup(&app, &id, "rdb").await;
    redis.cli(&["DEL", "big:hash"]);
    let (rec, path) = restore(&app, &id, &b).await;
    assert_eq!(
        (rec["status"].as_str(), path.as_str()),
        (Some("succeed"), "replication feed"),
        "{rec}"
    );
    assert_eq!(redis.digest(), digest);

    let slicer = TestApp::spawn_with(|c| {
        c.jobs.restore_mode = RestoreMode::Slice;
        // Force the command fallback for the big values.
        c.jobs.restore_max_payload = 1024 * 1024;
    })
    .await;
    let target = RedisServer::start(&[]);
    let tid = slicer.adopt("big-2", target.port, json!({})).await;
    let sid = slicer.adopt("big-src", redis.port, json!({})).await;
    let sb = backup(&slicer, &sid, "rdb").await;
    let (rec, path) = restore(&slicer, &tid, &sb).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    assert!(path.starts_with("slicing"), "{path}");
    assert_eq!(target.digest(), digest);
}

#[tokio::test]
async fn cross_version_restores() {
    let (Some(r62), Some(valkey)) = (
        servers_binary("DCS_TEST_REDIS62"),
        servers_binary("DCS_TEST_VALKEY"),
    ) else {
        eprintln!("skipped: DCS_TEST_REDIS62 / DCS_TEST_VALKEY not set (scripts/test sets them)");
        return;
    };
    let app = TestApp::spawn().await;

    // Redis 7.0 backup into Redis 6.2: encodings 6.2 lacks go as commands.
    let src70 = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    fill_dataset(&src70, false);
    let id70 = app.adopt("src-70", src70.port, json!({})).await;
    let b70 = backup(&app, &id70, "rdb").await;
    let t62 = RedisServer::start_binary(&r62, &["--repl-diskless-sync-delay", "0"]);
    let tid = app.adopt("t-62", t62.port, json!({})).await;
    let (rec, path) = restore(&app, &tid, &b70).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    assert!(path.starts_with("slicing"), "{path}");
    let reference = RedisServer::start_binary(&r62, &[]);
    fill_dataset(&reference, false);
    assert_eq!(t62.digest(), reference.digest(), "7.0 → 6.2");

    // Valkey 9.1 backup (VALKEY080) into Redis 7.0.
    let vsrc = RedisServer::start_binary(&valkey, &["--repl-diskless-sync-delay", "0"]);
    fill_dataset(&vsrc, true);
    let vid = app.adopt("src-valkey", vsrc.port, json!({})).await;
    let vb = backup(&app, &vid, "rdb").await;
    let t70 = RedisServer::start(&[]);
    let tid = app.adopt("t-70", t70.port, json!({})).await;
    let (rec, path) = restore(&app, &tid, &vb).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    assert!(path.starts_with("slicing"), "{path}");
    // Each engine hashes its own way: compare with Redis 7.0 holding the
    // same dataset.
    let reference = RedisServer::start(&[]);
    fill_dataset(&reference, true);
    assert_eq!(t70.digest(), reference.digest(), "Valkey 9.1 → Redis 7.0");

    // Redis 6.2 backup into Valkey 9.1 by the feed.
    let src62 = RedisServer::start_binary(&r62, &["--repl-diskless-sync-delay", "0"]);
    fill_dataset(&src62, false);
    let id62 = app.adopt("src-62", src62.port, json!({})).await;
    let b62 = backup(&app, &id62, "rdb").await;
    let tv = RedisServer::start_binary(&valkey, &[]);
    let tid = app.adopt("t-valkey", tv.port, json!({})).await;
    let (rec, path) = restore(&app, &tid, &b62).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    assert_eq!(path, "replication feed");
    let reference = RedisServer::start_binary(&valkey, &[]);
    fill_dataset(&reference, false);
    assert_eq!(tv.digest(), reference.digest(), "Redis 6.2 → Valkey 9.1");
}

#[tokio::test]
async fn target_killed_mid_restore_fails_with_a_sync_error_and_the_service_stays_healthy() {
    let app = TestApp::spawn_with(|c| c.jobs.restore_mode = RestoreMode::Slice).await;
    let source = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    source.cli(&["DEBUG", "POPULATE", "400000", "k", "64"]);
    let sid = app.adopt("big-source", source.port, json!({})).await;
    let b = backup(&app, &sid, "rdb").await;
    let mut target = RedisServer::start(&[]);
    let tid = app.adopt("doomed", target.port, json!({})).await;
    let rid = app.start_restore(&tid, &b).await;
    let start = Instant::now();
    while target.dbsize(0) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "restore never started writing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    target.kill();
    let rec = app.wait_restore(&tid, &rid).await;
    assert_eq!(rec["status"], "failed", "{rec}");
    assert_eq!(rec["error_code"], "dcs.08.0007");
    // The record says what the target now holds and what to do.
    let reason = rec["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("partial dataset"), "{reason}");
    assert!(reason.contains("of 400000 keys were written"), "{reason}");
    assert!(reason.contains("restoring again"), "{reason}");
    let r = app.http.get(app.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn service_killed_mid_feed_frees_the_target_after_restart() {
    let db = common::TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut svc = ServiceProcess::start(dir.path(), db.url.as_deref());
    let redis = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    redis.cli(&["DEBUG", "POPULATE", "300000", "k", "100"]);
    let (s, b) = svc
        .call(
            Method::POST,
            &svc.v2("/instances"),
            Some(json!({"name": "fed-1", "private_ip": "127.0.0.1", "port": redis.port})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let id = b["instances"][0]["instance_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, b) = svc
        .call(
            Method::POST,
            &svc.v2(&format!("/instances/{id}/backups")),
            Some(json!({})),
        )
        .await;
    let backup = b["backup_id"].as_str().unwrap().to_owned();
    let start = Instant::now();
    loop {
        let (_, l) = svc
            .call(
                Method::GET,
                &svc.v2(&format!("/instances/{id}/backups")),
                None,
            )
            .await;
        if l["backup_record_response"][0]["status"] == "succeed" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Slow the target's load so the feed is caught in the middle.
    redis.cli(&["CONFIG", "SET", "key-load-delay", "50"]);
    let (s, b) = svc
        .call(
            Method::POST,
            &svc.v2(&format!("/instances/{id}/restores")),
            Some(json!({"backup_id": backup})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let start = Instant::now();
    while redis.info_field("replication", "role") != "slave" {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the feed never began"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    svc.kill();
    redis.cli(&["CONFIG", "SET", "key-load-delay", "0"]);
    svc.restart();
    let start = Instant::now();
    let rec = loop {
        let (s, l) = svc
            .call(
                Method::GET,
                &svc.v2(&format!("/instances/{id}/restores")),
                None,
            )
            .await;
        if s == 200
            && matches!(
                l["restore_record_response"][0]["status"].as_str(),
                Some("succeed" | "failed")
            )
        {
            break l["restore_record_response"][0].clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "restore stuck after restart: {l}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(rec["status"], "failed", "{rec}");
    assert_eq!(rec["error_code"], "dcs.08.0007");
    let start = Instant::now();
    while redis.info_field("replication", "role") != "master" {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the target was left a replica"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(redis.cli(&["SET", "answers", "again"]).trim(), "OK");
}

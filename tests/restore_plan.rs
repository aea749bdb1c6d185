//! A restore that cannot finish never touches the target: the plan reads
//! the target's facts and the backup's before the first write, and refuses
//! with the reason in the record, the target byte-for-byte as it was. A
//! dry run answers the plan and writes nothing.

mod common;

use std::path::PathBuf;

use axum::http::Method;
use common::{fill_dataset, resp, server_from_env, RedisServer, TestApp};
use serde_json::{json, Value};

async fn backup(app: &TestApp, instance: &str, format: &str) -> String {
    let id = app.start_backup(instance, format).await;
    let rec = app.wait_backup(instance, &id).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    id
}

/// Restores `backup` into `target` and returns the finished record.
async fn restore(app: &TestApp, target: &str, backup: &str) -> Value {
    let id = app.start_restore(target, backup).await;
    app.wait_restore(target, &id).await
}

/// The restore is refused before any write: failed, with a reason that
/// says `why`, and the target's data exactly as it was.
async fn assert_refused(
    app: &TestApp,
    target: &RedisServer,
    target_id: &str,
    backup: &str,
    why: &str,
) {
    let before = target.digest();
    let rec = restore(app, target_id, backup).await;
    assert_eq!(rec["status"], "failed", "{rec}");
    assert_eq!(rec["error_code"], "dcs.08.0001", "{rec}");
    let reason = rec["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("refused before any write"), "{reason}");
    assert!(reason.contains(why), "expected {why:?} in {reason:?}");
    assert_eq!(target.digest(), before, "the target was touched");
    assert_eq!(target.cli(&["PING"]).trim(), "PONG", "the target is alive");
}

/// A far future in ms, so no field expires during the test.
fn far(offset: u64) -> String {
    (4_102_444_800_000u64 + offset).to_string()
}

/// Every type, plus hashes whose fields expire, in both encodings: a small
/// listpack hash and a hash table over `hash-max-listpack-entries`.
fn fill_with_field_ttls(r: &RedisServer) {
    fill_dataset(r, true);
    r.cli(&["HSET", "ttl:small", "a", "1", "b", "2", "c", "3"]);
    r.cli(&["HPEXPIREAT", "ttl:small", &far(1), "FIELDS", "2", "a", "b"]);
    let mut buf = Vec::new();
    for i in 0..600 {
        let f = format!("f{i}");
        buf.extend(resp(&[b"HSET", b"ttl:big", f.as_bytes(), b"value"]));
        if i % 2 == 0 {
            let at = far(i);
            buf.extend(resp(&[
                b"HPEXPIREAT",
                b"ttl:big",
                at.as_bytes(),
                b"FIELDS",
                b"1",
                f.as_bytes(),
            ]));
        }
    }
    r.pipe(&buf);
    assert_eq!(
        r.cli(&["OBJECT", "ENCODING", "ttl:big"]).trim(),
        "hashtable"
    );
    // Redis 8.2 calls a listpack with field expiries `listpackex`.
    assert!(r
        .cli(&["OBJECT", "ENCODING", "ttl:small"])
        .starts_with("listpack"));
}

/// Each field of the TTL hashes with its value and absolute expiry.
fn field_ttls(r: &RedisServer) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["ttl:small", "ttl:big"] {
        let fields: Vec<String> = r.cli(&["HKEYS", key]).lines().map(str::to_owned).collect();
        assert!(!fields.is_empty(), "{key} is empty");
        let mut args = vec!["HPEXPIRETIME", key, "FIELDS"];
        let n = fields.len().to_string();
        args.push(&n);
        args.extend(fields.iter().map(String::as_str));
        let times = r.cli(&args);
        let mut pairs: Vec<String> = fields
            .iter()
            .zip(times.lines())
            .map(|(f, t)| format!("{key}/{f}={t}"))
            .collect();
        pairs.sort();
        out.extend(pairs);
    }
    out
}

fn binary(var: &str) -> Option<PathBuf> {
    server_from_env(var)
}

/// Redis 8.2 (RDB 12) hashes with field expiries restore into Redis 8.2
/// and Valkey 9.1 with every field's expiry, by RDB and by AOF backups; the
/// same backups into Redis 7.0 and 6.2 are refused before any write; an 8.2
/// backup without field expiries restores into 7.0 and 6.2.
#[tokio::test]
async fn redis_8_2_field_ttls_go_where_they_can_and_are_refused_elsewhere() {
    let (Some(r82), Some(r62), Some(valkey)) = (
        binary("DCS_TEST_REDIS82"),
        binary("DCS_TEST_REDIS62"),
        binary("DCS_TEST_VALKEY"),
    ) else {
        return;
    };
    let app = TestApp::spawn().await;
    let source = RedisServer::start_binary(&r82, &["--repl-diskless-sync-delay", "0"]);
    fill_with_field_ttls(&source);
    let want = field_ttls(&source);
    assert!(
        want.iter().any(|p| !p.ends_with("=-1")),
        "some fields expire"
    );
    let digest = source.digest();
    let sid = app.adopt("source-82", source.port, json!({})).await;
    let rdb = backup(&app, &sid, "rdb").await;
    let aof = backup(&app, &sid, "aof").await;

    let t82 = RedisServer::start_binary(&r82, &[]);
    let t82_id = app.adopt("target-82", t82.port, json!({})).await;
    let tvk = RedisServer::start_binary(&valkey, &[]);
    let tvk_id = app.adopt("target-valkey", tvk.port, json!({})).await;
    for b in [&rdb, &aof] {
        t82.cli(&["FLUSHALL"]);
        let rec = restore(&app, &t82_id, b).await;
        assert_eq!(rec["status"], "succeed", "{rec}");
        assert_eq!(t82.digest(), digest);
        assert_eq!(field_ttls(&t82), want);
        tvk.cli(&["FLUSHALL"]);
        let rec = restore(&app, &tvk_id, b).await;
        assert_eq!(rec["status"], "succeed", "{rec}");
        assert_eq!(field_ttls(&tvk), want, "valkey");
        assert_eq!(tvk.cli(&["DBSIZE"]), source.cli(&["DBSIZE"]));
    }

    let t70 = RedisServer::start(&[]);
    let t62 = RedisServer::start_binary(&r62, &[]);
    for (t, name) in [(&t70, "target-70"), (&t62, "target-62")] {
        t.cli(&["SET", "precious", "data"]);
        t.cli(&["HSET", "also", "precious", "1"]);
        let id = app.adopt(name, t.port, json!({})).await;
        for b in [&rdb, &aof] {
            assert_refused(&app, t, &id, b, "hashes with field expiries").await;
        }
    }

    // Without field expiries, 8.2's RDB 12 goes into the older servers.
    // Each engine hashes its own way: compare with a server of the
    // target's version holding the same dataset.
    source.cli(&["DEL", "ttl:small", "ttl:big"]);
    let plain = backup(&app, &sid, "rdb").await;
    for (t, name, bin) in [
        (&t70, "target-70", PathBuf::from("redis-server")),
        (&t62, "target-62", r62.clone()),
    ] {
        let id = instance_id(&app, name).await;
        let rec = restore(&app, &id, &plain).await;
        assert_eq!(rec["status"], "succeed", "{name}: {rec}");
        let reference = RedisServer::start_binary(&bin, &[]);
        fill_dataset(&reference, false);
        assert_eq!(t.digest(), reference.digest(), "{name}");
    }
}

async fn instance_id(app: &TestApp, name: &str) -> String {
    let (s, b) = app
        .call(
            Method::GET,
            &app.v2(&format!("/instances?name={name}&name_equal=true")),
            None,
        )
        .await;
    assert_eq!(s, 200, "{b}");
    b["instances"][0]["instance_id"]
        .as_str()
        .expect("instance")
        .to_owned()
}

/// A backup using database 5 into a server with `databases 2` is refused
/// (fed by replication, that server would exit), and the server keeps its
/// data and keeps running.
#[tokio::test]
async fn a_database_the_target_lacks_is_refused() {
    let app = TestApp::spawn().await;
    let source = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    source.cli(&["-n", "5", "SET", "k", "v"]);
    source.cli(&["SET", "k0", "v"]);
    let sid = app.adopt("db-source", source.port, json!({})).await;
    let b = backup(&app, &sid, "rdb").await;
    let target = RedisServer::start(&["--databases", "2"]);
    target.cli(&["SET", "mine", "1"]);
    let tid = app.adopt("db-target", target.port, json!({})).await;
    assert_refused(&app, &target, &tid, &b, "database 5").await;
}

/// A dataset that would not fit under `maxmemory` is refused, whether the
/// target would refuse writes (noeviction) or silently evict (LRU).
#[tokio::test]
async fn a_dataset_that_does_not_fit_is_refused() {
    let app = TestApp::spawn().await;
    let source = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    source.cli(&["DEBUG", "POPULATE", "300000", "key", "100"]);
    let sid = app.adopt("mem-source", source.port, json!({})).await;
    let b = backup(&app, &sid, "rdb").await;
    for (policy, why) in [
        ("noeviction", "refuse writes"),
        ("allkeys-lru", "silently evict"),
    ] {
        let target = RedisServer::start(&["--maxmemory", "8mb", "--maxmemory-policy", policy]);
        target.cli(&["SET", "mine", "1"]);
        let tid = app
            .adopt(&format!("mem-{policy}"), target.port, json!({}))
            .await;
        assert_refused(&app, &target, &tid, &b, why).await;
    }
    // With room to spare the same backup goes in.
    let roomy = RedisServer::start(&["--maxmemory", "200mb"]);
    let tid = app.adopt("mem-roomy", roomy.port, json!({})).await;
    let rec = restore(&app, &tid, &b).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    assert_eq!(roomy.digest(), source.digest());
}

/// A target that renamed away the commands every path needs (REPLICAOF for
/// the feed, RESTORE for slicing) is refused before anything is sent.
#[tokio::test]
async fn renamed_commands_a_path_needs_are_refused() {
    let app = TestApp::spawn().await;
    let source = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    fill_dataset(&source, false);
    let sid = app.adopt("cmd-source", source.port, json!({})).await;
    let b = backup(&app, &sid, "rdb").await;
    let target = RedisServer::start(&[
        "--rename-command",
        "REPLICAOF",
        "",
        "--rename-command",
        "SLAVEOF",
        "",
        "--rename-command",
        "RESTORE",
        "",
    ]);
    target.cli(&["SET", "mine", "1"]);
    let tid = app.adopt("cmd-target", target.port, json!({})).await;
    assert_refused(&app, &target, &tid, &b, "RESTORE").await;
}

/// Module values need their module on the target: a FalkorDB graph backed
/// up from Redis 8.2 with the module is refused by a plain 8.2, and the
/// refusal names the module type.
#[tokio::test]
async fn module_values_without_their_module_are_refused() {
    let Some(r82) = binary("DCS_TEST_REDIS82") else {
        return;
    };
    let module = r82.with_file_name("falkordb.so");
    let module = module.display().to_string();
    let app = TestApp::spawn().await;
    let source = RedisServer::start_binary(
        &r82,
        &["--repl-diskless-sync-delay", "0", "--loadmodule", &module],
    );
    source.cli(&["GRAPH.QUERY", "g", "CREATE (:N {v: 1})"]);
    assert_eq!(source.cli(&["TYPE", "g"]).trim(), "graphdata");
    let sid = app.adopt("graph-source", source.port, json!({})).await;
    let b = backup(&app, &sid, "rdb").await;
    let target = RedisServer::start_binary(&r82, &[]);
    target.cli(&["SET", "mine", "1"]);
    let tid = app.adopt("graph-target", target.port, json!({})).await;
    assert_refused(&app, &target, &tid, &b, "'graphdata'").await;
}

async fn dry_run(app: &TestApp, target: &str, backup: &str) -> Value {
    let (s, b) = app
        .call(
            Method::POST,
            &app.v2(&format!("/instances/{target}/restores")),
            Some(json!({"backup_id": backup, "dry_run": true})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    b
}

/// A dry run verifies and plans, answers the plan, and writes nothing: no
/// record, no byte on the target. A refused plan says why.
#[tokio::test]
async fn a_dry_run_answers_the_plan_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let source = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    fill_dataset(&source, true);
    let sid = app.adopt("dry-source", source.port, json!({})).await;
    let b = backup(&app, &sid, "rdb").await;
    let target = RedisServer::start(&[]);
    target.cli(&["SET", "mine", "1"]);
    let before = target.digest();
    let tid = app.adopt("dry-target", target.port, json!({})).await;

    let plan = dry_run(&app, &tid, &b).await;
    assert_eq!(plan["accepted"], true, "{plan}");
    assert_eq!(plan["path"], "feed", "{plan}");
    let keys: u64 = source
        .cli(&["INFO", "keyspace"])
        .lines()
        .filter_map(|l| {
            l.split("keys=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_eq!(plan["keys"], keys);
    let dbs: Vec<u64> = plan["databases"]
        .as_array()
        .expect("databases")
        .iter()
        .map(|d| d["db"].as_u64().unwrap_or(99))
        .collect();
    assert_eq!(dbs, [0, 1, 5]);
    assert!(plan["databases"][0]["bytes"].as_u64().unwrap_or(0) > 0);
    assert!(plan["memory_estimate"].as_u64().unwrap_or(0) > 0);
    assert!(plan["estimated_seconds"].as_f64().is_some());
    assert_eq!(plan["targets"][0]["version"], "7.0.15");
    assert!(plan["decisions"]
        .as_array()
        .is_some_and(|d| d.iter().any(|x| x.as_str().unwrap_or("").contains("feed"))));
    assert_eq!(target.digest(), before);
    let (s, body) = app
        .call(
            Method::GET,
            &app.v2(&format!("/instances/{tid}/restores")),
            None,
        )
        .await;
    assert_eq!(s, 204, "a dry run stores no record: {body}");

    // A plan the target cannot take is answered, not run.
    let small = RedisServer::start(&["--databases", "2"]);
    let small_id = app.adopt("dry-small", small.port, json!({})).await;
    let plan = dry_run(&app, &small_id, &b).await;
    assert_eq!(plan["accepted"], false, "{plan}");
    assert!(plan["refusal"]
        .as_str()
        .is_some_and(|r| r.contains("database 5")));
    assert_eq!(plan["path"], Value::Null);

    // dry_run must be a boolean.
    let (s, body) = app
        .call(
            Method::POST,
            &app.v2(&format!("/instances/{tid}/restores")),
            Some(json!({"backup_id": b, "dry_run": "yes"})),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["error_code"], "DCS.4800");
}

//! Partial restores: with a `filter`, exactly the backup's keys that match
//! replace their namesakes on the target, nothing is flushed, and every
//! other key of the target keeps its value and its expiry.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use axum::http::Method;
use common::{RedisCluster, RedisServer, TestApp};
use serde_json::{json, Value};

/// `(db, key)` → `(DEBUG DIGEST-VALUE, PEXPIRETIME)`: every key of a
/// server, its value and its absolute expiry.
type State = BTreeMap<(u32, String), (String, String)>;

fn state_of(r: &RedisServer, dbs: &[u32]) -> State {
    let mut out = State::new();
    for &db in dbs {
        let d = db.to_string();
        let keys: Vec<String> = r
            .cli(&["-n", &d, "--scan"])
            .lines()
            .map(str::to_owned)
            .filter(|k| !k.is_empty())
            .collect();
        if keys.is_empty() {
            continue;
        }
        let mut script = String::new();
        for k in &keys {
            script.push_str(&format!("DEBUG DIGEST-VALUE {k}\nPEXPIRETIME {k}\n"));
        }
        let mut child = Command::new("redis-cli")
            .args(["-p", &r.port.to_string(), "-n", &d])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), keys.len() * 2, "{text}");
        for (i, k) in keys.iter().enumerate() {
            out.insert(
                (db, k.clone()),
                (lines[2 * i].to_owned(), lines[2 * i + 1].to_owned()),
            );
        }
    }
    assert!(!out.is_empty(), "no key read from {dbs:?}");
    out
}

fn cluster_state(c: &RedisCluster) -> State {
    let mut out = State::new();
    for n in &c.nodes {
        out.extend(state_of(n, &[0]));
    }
    assert!(out.len() > 100);
    out
}

async fn backup(app: &TestApp, instance: &str, format: &str) -> String {
    let id = app.start_backup(instance, format).await;
    let rec = app.wait_backup(instance, &id).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    id
}

/// Starts a restore with `filter`; returns the HTTP status and answer.
async fn post_restore(app: &TestApp, target: &str, body: Value) -> (u16, Value) {
    app.call(
        Method::POST,
        &app.v2(&format!("/instances/{target}/restores")),
        Some(body),
    )
    .await
}

async fn partial_restore(app: &TestApp, target: &str, backup: &str, filter: Value) -> Value {
    let (s, b) = post_restore(
        app,
        target,
        json!({"backup_id": backup, "filter": filter, "remark": filter.to_string()}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let id = b["restore_id"].as_str().unwrap().to_owned();
    app.wait_restore(target, &id).await
}

/// The target after a partial restore: each key of `backup` that `taken`
/// accepts is as in the backup, every other key as it was before.
fn expected(before: &State, backup: &State, taken: impl Fn(u32, &str) -> bool) -> State {
    let mut out: State = before
        .iter()
        .filter(|((db, k), _)| !(taken(*db, k) && backup.contains_key(&(*db, k.clone()))))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for ((db, k), v) in backup {
        if taken(*db, k) {
            out.insert((*db, k.clone()), v.clone());
        }
    }
    out
}

/// The source's dataset: strings, a list, a hash, a set and a sorted set in
/// databases 0 and 2, some with expiries.
fn fill_source(r: &RedisServer) {
    for db in ["0", "2"] {
        for i in 0..20 {
            r.cli(&[
                "-n",
                db,
                "SET",
                &format!("user:{i}"),
                &format!("backup-{db}-{i}"),
            ]);
            r.cli(&[
                "-n",
                db,
                "SET",
                &format!("job:{i}"),
                &format!("job-{db}-{i}"),
            ]);
        }
        r.cli(&["-n", db, "PEXPIREAT", "user:3", "4102444800000"]);
        r.cli(&["-n", db, "RPUSH", "user:list", "a", "b", "c"]);
        r.cli(&["-n", db, "HSET", "user:hash", "f1", "v1", "f2", "v2"]);
        r.cli(&["-n", db, "SADD", "job:set", "x", "y"]);
        r.cli(&["-n", db, "ZADD", "job:zset", "1", "m"]);
    }
}

/// The target's own data: namesakes of the backup's keys with other values
/// and expiries (a longer list, a hash with other fields), keys the backup
/// lacks, and a database the backup does not have.
fn fill_target(t: &RedisServer) {
    for db in ["0", "2"] {
        for i in 10..30 {
            t.cli(&[
                "-n",
                db,
                "SET",
                &format!("user:{i}"),
                &format!("target-{db}-{i}"),
            ]);
        }
        t.cli(&["-n", db, "PEXPIREAT", "user:12", "4102444900000"]);
        t.cli(&[
            "-n",
            db,
            "RPUSH",
            "user:list",
            "old1",
            "old2",
            "old3",
            "old4",
        ]);
        t.cli(&["-n", db, "HSET", "user:hash", "f9", "old"]);
        t.cli(&["-n", db, "SET", "job:1", "target-job"]);
        t.cli(&["-n", db, "SET", "mine", "only on the target"]);
    }
    t.cli(&["-n", "5", "SET", "db5-key", "v"]);
}

#[tokio::test]
async fn one_database_replaces_exactly_its_keys_and_leaves_the_rest() {
    let app = TestApp::spawn().await;
    let source = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    fill_source(&source);
    let sid = app.adopt("partial-src", source.port, json!({})).await;
    let in_backup = state_of(&source, &[0, 2]);
    let b = backup(&app, &sid, "rdb").await;

    let target = RedisServer::start(&[]);
    fill_target(&target);
    let tid = app.adopt("partial-dst", target.port, json!({})).await;
    let before = state_of(&target, &[0, 2, 5]);

    // The dry run says what would change, and changes nothing.
    let (s, plan) = post_restore(
        &app,
        &tid,
        json!({"backup_id": b, "dry_run": true, "filter": {"dbs": [2]}}),
    )
    .await;
    assert_eq!(s, 200, "{plan}");
    assert_eq!(plan["accepted"], true, "{plan}");
    assert_eq!(plan["partial"], true);
    assert_eq!(plan["path"], "slicing");
    let backup_db2 = in_backup.keys().filter(|(db, _)| *db == 2).count() as u64;
    let shared_db2 = in_backup
        .keys()
        .filter(|(db, k)| *db == 2 && before.contains_key(&(2, k.clone())))
        .count() as u64;
    assert_eq!(plan["keys"], backup_db2, "{plan}");
    assert_eq!(plan["keys_replaced"], shared_db2, "{plan}");
    assert_eq!(plan["keys_added"], backup_db2 - shared_db2, "{plan}");
    assert!(plan["replaced_sample"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k == "user:list"));
    assert!(
        plan["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d.as_str().unwrap().contains("nothing is flushed")),
        "{plan}"
    );
    assert_eq!(state_of(&target, &[0, 2, 5]), before, "the dry run wrote");

    let rec = partial_restore(&app, &tid, &b, json!({"dbs": [2]})).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    assert_eq!(rec["partial"], true, "{rec}");
    assert_eq!(rec["filter"], json!({"dbs": [2]}), "{rec}");
    let after = state_of(&target, &[0, 2, 5]);
    assert_eq!(after, expected(&before, &in_backup, |db, _| db == 2));
    // The list was replaced, not appended to.
    assert_eq!(
        target.cli(&["-n", "2", "LRANGE", "user:list", "0", "-1"]),
        "a\nb\nc\n"
    );
    // The path taken is recorded like any restore's.
    assert!(app
        .restore_path(rec["restore_id"].as_str().unwrap())
        .await
        .starts_with("slicing"));
}

#[tokio::test]
async fn a_key_pattern_from_an_aof_backup_replaces_only_matching_keys() {
    let app = TestApp::spawn().await;
    let source = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    fill_source(&source);
    let sid = app.adopt("aof-src", source.port, json!({})).await;
    let in_backup = state_of(&source, &[0, 2]);
    let b = backup(&app, &sid, "aof").await;

    let target = RedisServer::start(&[]);
    fill_target(&target);
    let tid = app.adopt("aof-dst", target.port, json!({})).await;
    let before = state_of(&target, &[0, 2, 5]);

    let rec = partial_restore(
        &app,
        &tid,
        &b,
        json!({"key_patterns": ["user:1*", "user:list"]}),
    )
    .await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    let taken = |_: u32, k: &str| k.starts_with("user:1") || k == "user:list";
    assert_eq!(
        state_of(&target, &[0, 2, 5]),
        expected(&before, &in_backup, taken)
    );
    assert_eq!(
        target.cli(&["LRANGE", "user:list", "0", "-1"]),
        "a\nb\nc\n",
        "AOF commands append: the namesake must be cleared first"
    );

    // By type, from the same AOF: hashes only.
    let before = state_of(&target, &[0, 2, 5]);
    let rec = partial_restore(&app, &tid, &b, json!({"types": ["hash"]})).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    assert_eq!(
        state_of(&target, &[0, 2, 5]),
        expected(&before, &in_backup, |_, k| k == "user:hash")
    );
    assert_eq!(target.cli(&["HGETALL", "user:hash"]), "f1\nv1\nf2\nv2\n");
}

#[tokio::test]
async fn a_cluster_target_takes_matching_keys_on_every_shard() {
    let app = TestApp::spawn().await;
    let source = RedisCluster::start(3, 0);
    for i in 0..200 {
        source.nodes[0].cli(&["-c", "SET", &format!("k:{i}"), &format!("backup-{i}")]);
    }
    source.nodes[0].cli(&["-c", "RPUSH", "k:list", "a", "b"]);
    let in_backup = cluster_state(&source);
    let sid = app.adopt("cl-src", source.first_port(), json!({})).await;
    let b = backup(&app, &sid, "rdb").await;

    // The same cluster changes after the backup; some keys are restored.
    for i in 0..200 {
        source.nodes[0].cli(&["-c", "SET", &format!("k:{i}"), &format!("changed-{i}")]);
    }
    source.nodes[0].cli(&["-c", "RPUSH", "k:list", "c"]);
    source.nodes[0].cli(&["-c", "SET", "k:new", "added after the backup"]);
    let before = cluster_state(&source);
    let rec = partial_restore(&app, &sid, &b, json!({"key_patterns": ["k:1?", "k:list"]})).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    let taken = |_: u32, k: &str| k == "k:list" || (k.len() == 4 && k.starts_with("k:1"));
    assert_eq!(cluster_state(&source), expected(&before, &in_backup, taken));
    assert_eq!(
        source.nodes[0].cli(&["-c", "GET", "k:15"]).trim(),
        "backup-15"
    );
    assert_eq!(
        source.nodes[0].cli(&["-c", "GET", "k:150"]).trim(),
        "changed-150"
    );
}

#[tokio::test]
async fn bad_filters_are_refused_and_change_nothing() {
    let app = TestApp::spawn().await;
    let source = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    fill_source(&source);
    let sid = app.adopt("bad-src", source.port, json!({})).await;
    let b = backup(&app, &sid, "rdb").await;
    let target = RedisServer::start(&[]);
    fill_target(&target);
    let tid = app.adopt("bad-dst", target.port, json!({})).await;
    let before = target.digest();

    for (filter, field) in [
        (json!({}), "filter"),
        (json!("user:*"), "filter"),
        (json!({"patterns": ["user:*"]}), "filter"),
        (json!({"dbs": [-1]}), "filter.dbs"),
        (json!({"dbs": "0"}), "filter.dbs"),
        (json!({"key_patterns": [""]}), "filter.key_patterns"),
        (
            json!({"key_patterns": ["x".repeat(1025)]}),
            "filter.key_patterns",
        ),
        (json!({"types": ["blob"]}), "filter.types"),
        (json!({"dbs": (0..65).collect::<Vec<_>>()}), "filter.dbs"),
    ] {
        let (s, e) = post_restore(&app, &tid, json!({"backup_id": b, "filter": filter})).await;
        assert_eq!(s, 400, "{filter}: {e}");
        assert_eq!(e["error_code"], "DCS.4800", "{filter}: {e}");
        assert!(
            e["error_msg"].as_str().unwrap().contains(field),
            "{filter}: {e}"
        );
        assert!(
            e["error_ext_msg"].is_string(),
            "{filter}: the reason in words: {e}"
        );
    }
    let (s, _) = app
        .call(
            Method::GET,
            &app.v2(&format!("/instances/{tid}/restores")),
            None,
        )
        .await;
    assert_eq!(s, 204, "a refused request left a record");

    // A filter that takes nothing is refused by the plan, before any write.
    let rec = partial_restore(&app, &tid, &b, json!({"key_patterns": ["nothing:*"]})).await;
    assert_eq!(rec["status"], "failed", "{rec}");
    assert!(
        rec["reason"]
            .as_str()
            .unwrap()
            .contains("takes no key of the backup"),
        "{rec}"
    );
    assert_eq!(target.digest(), before);
}

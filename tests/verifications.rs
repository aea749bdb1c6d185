//! Test restores: a backup loaded into a sandbox (never the instance it
//! came from) through the restore pipeline, and checked.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::http::Method;
use common::{fill_dataset, RedisServer, TestApp};
use serde_json::{json, Value};

fn redis_server_path() -> String {
    let out = std::process::Command::new("which")
        .arg("redis-server")
        .output()
        .expect("which");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

async fn spawn(max_memory: Option<u64>) -> TestApp {
    TestApp::spawn_with(|c| {
        c.sandbox_servers = vec![("redis-7.0".into(), PathBuf::from(redis_server_path()))];
        if let Some(m) = max_memory {
            c.jobs.sandbox_max_memory = m;
        }
    })
    .await
}

async fn start_verification(app: &TestApp, inst: &str, backup: &str, body: Value) -> String {
    let (s, b) = app
        .call(
            Method::POST,
            &app.v2(&format!("/instances/{inst}/backups/{backup}/verifications")),
            Some(body),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    b["verification_id"]
        .as_str()
        .expect("verification_id")
        .to_owned()
}

async fn wait_verification(app: &TestApp, inst: &str, backup: &str, id: &str) -> Value {
    let start = Instant::now();
    loop {
        let (s, b) = app
            .call(
                Method::GET,
                &app.v2(&format!("/instances/{inst}/backups/{backup}/verifications")),
                None,
            )
            .await;
        assert_eq!(s, 200, "{b}");
        let rec = b["verifications"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["verification_id"] == id))
            .cloned()
            .unwrap_or_default();
        if matches!(
            rec["status"].as_str(),
            Some("passed" | "failed" | "skipped")
        ) {
            return rec;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "test restore never finished: {rec}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Processes whose command line names a path under `dir`.
fn processes_under(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmd).contains(&needle)
        })
        .collect()
}

fn sandboxes_left(app: &TestApp) -> usize {
    std::fs::read_dir(app.dir.path().join("sandboxes"))
        .map(|d| d.count())
        .unwrap_or(0)
}

async fn backed_up(app: &TestApp, redis: &RedisServer) -> (String, String) {
    let inst = app.adopt("source-1", redis.port, json!({})).await;
    let backup = app.start_backup(&inst, "rdb").await;
    let rec = app.wait_backup(&inst, &backup).await;
    assert_eq!(rec["status"], "succeed", "{rec}");
    (inst, backup)
}

#[tokio::test]
async fn a_good_backup_passes_with_its_counts_and_leaves_no_sandbox() {
    let app = spawn(None).await;
    let redis = RedisServer::start(&[]);
    fill_dataset(&redis, false);
    let keys0 = redis.dbsize(0);
    let (inst, backup) = backed_up(&app, &redis).await;
    let digest_before = redis.digest();

    let id = start_verification(&app, &inst, &backup, json!({"sample": 50})).await;
    let rec = wait_verification(&app, &inst, &backup, &id).await;
    assert_eq!(rec["status"], "passed", "{rec}");
    assert_eq!(rec["sandbox"], "scratch");
    assert_eq!(rec["mismatches"], 0, "{rec}");
    let checked = rec["keys_checked"].as_u64().unwrap();
    assert!(checked > 0 && checked <= 50, "{rec}");
    assert!(rec["load_seconds"].as_f64().unwrap() > 0.0, "{rec}");
    assert!(
        rec["server"].as_str().unwrap().contains("redis-7.0"),
        "{rec}"
    );
    // The sandbox's digest is the source's: the same dataset.
    assert_eq!(
        rec["digest"].as_str(),
        Some(digest_before.as_str()),
        "{rec}"
    );
    assert!(keys0 > 0);

    // The source was never touched, and the sandbox is gone.
    assert_eq!(redis.digest(), digest_before);
    assert_eq!(sandboxes_left(&app), 0);
    assert!(processes_under(&app.dir.path().join("sandboxes")).is_empty());
    let b = app.find_backup(&inst, &backup).await;
    assert_eq!(b["is_support_restore"], "TRUE", "{b}");
    assert!(b.get("verification").is_none(), "{b}");

    let text = app.metrics().await;
    assert_eq!(
        common::metric(&text, "dcs_backup_verifications_total{status=\"passed\"}"),
        Some(1.0),
        "{text}"
    );
    let last = common::metric(
        &text,
        &format!(
            "dcs_backup_verification_last_success_timestamp_seconds{{instance_id=\"{inst}\"}}"
        ),
    );
    assert!(last.is_some_and(|t| t > 1.0e9), "{text}");
}

fn stored_rdb(app: &TestApp, backup: &str) -> PathBuf {
    fn walk(dir: &Path, backup: &str, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, backup, out);
            } else if p.extension().is_some_and(|x| x == "rdb")
                && p.to_string_lossy().contains(backup)
            {
                out.push(p);
            }
        }
    }
    let mut found = Vec::new();
    walk(&app.dir.path().join("backups"), backup, &mut found);
    found.pop().expect("the backup's RDB file")
}

#[tokio::test]
async fn a_corrupted_backup_fails_and_is_no_longer_restorable() {
    let app = spawn(None).await;
    let redis = RedisServer::start(&[]);
    fill_dataset(&redis, false);
    let (inst, backup) = backed_up(&app, &redis).await;

    // One byte changed after the manifest was written, size unchanged.
    let file = stored_rdb(&app, &backup);
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&file, &bytes).unwrap();

    let id = start_verification(&app, &inst, &backup, json!({})).await;
    let rec = wait_verification(&app, &inst, &backup, &id).await;
    assert_eq!(rec["status"], "failed", "{rec}");
    assert!(
        rec["reason"].as_str().unwrap().contains("checksum"),
        "{rec}"
    );
    assert!(rec["error_code"].as_str().is_some(), "{rec}");
    let b = app.find_backup(&inst, &backup).await;
    assert_eq!(b["is_support_restore"], "FALSE", "{b}");
    assert!(b["verification"].as_str().unwrap().contains(&id), "{b}");
    assert_eq!(sandboxes_left(&app), 0);

    let text = app.metrics().await;
    assert_eq!(
        common::metric(&text, "dcs_backup_verifications_total{status=\"failed\"}"),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn a_backup_too_big_for_the_sandbox_is_skipped_not_failed() {
    let app = spawn(Some(1 << 20)).await; // 1 MiB
    let redis = RedisServer::start(&[]);
    fill_dataset(&redis, false);
    redis.cli(&["DEBUG", "POPULATE", "20000", "big", "100"]);
    let (inst, backup) = backed_up(&app, &redis).await;
    let id = start_verification(&app, &inst, &backup, json!({})).await;
    let rec = wait_verification(&app, &inst, &backup, &id).await;
    assert_eq!(rec["status"], "skipped", "{rec}");
    assert!(
        rec["reason"]
            .as_str()
            .unwrap()
            .contains("not tested: too big"),
        "{rec}"
    );
    let b = app.find_backup(&inst, &backup).await;
    assert_eq!(b["is_support_restore"], "TRUE", "{b}");
}

#[tokio::test]
async fn an_adopted_sandbox_takes_the_backup_and_marking_is_guarded() {
    let app = spawn(None).await;
    let redis = RedisServer::start(&[]);
    fill_dataset(&redis, false);
    let (inst, backup) = backed_up(&app, &redis).await;
    let sandbox_redis = RedisServer::start(&[]);
    sandbox_redis.cli(&["SET", "stale", "1"]);
    let sandbox = app.adopt("sandbox-1", sandbox_redis.port, json!({})).await;

    // The backed-up instance cannot be a sandbox; a plain one can.
    let mark = |id: String, on: Value| {
        let app = &app;
        async move {
            app.call(
                Method::PUT,
                &app.v2(&format!("/instances/{id}/sandbox")),
                Some(json!({"sandbox": on})),
            )
            .await
        }
    };
    let (s, b) = mark(inst.clone(), json!(true)).await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error_code"], "DCS.4800");
    assert!(
        b["error_ext_msg"].as_str().unwrap().contains("backups"),
        "{b}"
    );
    // Not a sandbox yet: refused as a target.
    let (s, b) = app
        .call(
            Method::POST,
            &app.v2(&format!("/instances/{inst}/backups/{backup}/verifications")),
            Some(json!({"sandbox": sandbox})),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = mark(sandbox.clone(), json!(true)).await;
    assert_eq!(s, 204, "{b}");
    // A sandbox takes no backup policy.
    let (s, b) = app
        .call(
            Method::PUT,
            &app.v2(&format!("/instances/{sandbox}")),
            Some(json!({"instance_backup_policy": {"backup_type": "auto", "save_days": 1,
                "periodical_backup_plan": {"backup_at": [1], "period_type": "weekly", "begin_at": "01:00-02:00"}}})),
        )
        .await;
    assert_eq!(s, 400, "{b}");

    // The same request a second later (a signature is accepted once).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let id = start_verification(&app, &inst, &backup, json!({"sandbox": sandbox})).await;
    let rec = wait_verification(&app, &inst, &backup, &id).await;
    assert_eq!(rec["status"], "passed", "{rec}");
    assert_eq!(rec["sandbox"], sandbox.as_str());
    // Its data was replaced by the backup's.
    assert_eq!(sandbox_redis.digest(), redis.digest());
    assert_eq!(sandbox_redis.cli(&["EXISTS", "stale"]).trim(), "0");
}

#[tokio::test]
async fn bad_requests_are_refused_in_the_dcs_shape() {
    let app = spawn(None).await;
    let redis = RedisServer::start(&[]);
    redis.cli(&["SET", "k", "v"]);
    let (inst, backup) = backed_up(&app, &redis).await;
    let path = app.v2(&format!("/instances/{inst}/backups/{backup}/verifications"));
    for body in [
        json!({"sample": -1}),
        json!({"sample": "many"}),
        json!({"sample": 100001}),
        json!({"sandbox": 7}),
        json!({"sandbox": "not-an-id"}),
        json!({"sandbox": inst}),
        json!({"unknown": 1}),
    ] {
        let (s, b) = app.call(Method::POST, &path, Some(body.clone())).await;
        assert_eq!(s, 400, "{body}: {b}");
        assert!(b["error_code"].as_str().unwrap().starts_with("DCS."), "{b}");
    }
    let bad = app.v2(&format!(
        "/instances/{inst}/backups/{}/verifications",
        uuid::Uuid::new_v4()
    ));
    let (s, b) = app.call(Method::POST, &bad, Some(json!({}))).await;
    assert_eq!(
        (s, b["error_code"].as_str()),
        (400, Some("DCS.4800")),
        "{b}"
    );
    let (s, b) = app
        .call(Method::GET, &format!("{path}?limit=0"), None)
        .await;
    assert_eq!(s, 400, "{b}");
    let policy = app.v2(&format!("/instances/{inst}/verification-policy"));
    for body in [
        json!({"enabled": "yes"}),
        json!({"enabled": true, "backup_at": [8], "begin_at": "01:00-02:00"}),
        json!({"enabled": true, "backup_at": [1], "begin_at": "01:30-02:00"}),
        json!({"enabled": true, "backup_at": [1], "begin_at": "01:00-02:00", "timezone": "Mars"}),
        json!({"enabled": true}),
    ] {
        let (s, b) = app.call(Method::PUT, &policy, Some(body.clone())).await;
        assert_eq!(s, 400, "{body}: {b}");
    }
    // Nothing was queued by any of them.
    let (s, b) = app.call(Method::GET, &path, None).await;
    assert_eq!((s, b["total_num"].as_u64()), (200, Some(0)), "{b}");
    let (s, doc) = app.call(Method::GET, "/openapi.json", None).await;
    assert_eq!(s, 200);
    assert!(doc["paths"].as_object().unwrap().contains_key(
        "/v2/{project_id}/instances/{instance_id}/backups/{backup_id}/verifications"
    ));
}

/// 2024-03-04 00:00:00 UTC, a Monday.
const MON: i64 = 1_709_510_400_000;
const HOUR: i64 = 3_600_000;

#[tokio::test]
async fn a_scheduled_test_restore_runs_once_per_window_across_two_replicas() {
    use dcs_backup::clock::ManualClock;
    use std::sync::Arc;
    let clock = Arc::new(ManualClock::new(MON));
    let (c1, c2) = (Arc::clone(&clock), Arc::clone(&clock));
    let server = PathBuf::from(redis_server_path());
    let s2 = server.clone();
    let app = TestApp::spawn_with(move |c| {
        c.jobs.clock = c1;
        c.jobs.scheduler_interval = Duration::from_secs(3600);
        c.sandbox_servers = vec![("redis-7.0".into(), server)];
    })
    .await;
    let replica = TestApp::spawn_replica_of(&app, move |c| {
        c.jobs.clock = c2;
        c.jobs.scheduler_interval = Duration::from_secs(3600);
        c.sandbox_servers = vec![("redis-7.0".into(), s2)];
    })
    .await;
    let redis = RedisServer::start(&[]);
    fill_dataset(&redis, false);
    let (inst, backup) = backed_up(&app, &redis).await;
    let (s, b) = app
        .call(
            Method::PUT,
            &app.v2(&format!("/instances/{inst}/verification-policy")),
            Some(
                json!({"enabled": true, "backup_at": [1], "begin_at": "01:00-02:00",
                        "timezone": "GMT+00:00", "sandbox": "scratch"}),
            ),
        )
        .await;
    assert_eq!(s, 204, "{b}");
    let (s, b) = app
        .call(
            Method::GET,
            &app.v2(&format!("/instances/{inst}/verification-policy")),
            None,
        )
        .await;
    assert_eq!(
        (s, &b["begin_at"], &b["enabled"]),
        (200, &json!("01:00-02:00"), &json!(true)),
        "{b}"
    );

    let list = || async {
        let (s, b) = app
            .call(
                Method::GET,
                &app.v2(&format!("/instances/{inst}/backups/{backup}/verifications")),
                None,
            )
            .await;
        assert_eq!(s, 200, "{b}");
        b
    };
    // Outside the window: nothing.
    for at in [MON + HOUR / 2, MON + 2 * HOUR + 1] {
        clock.set(at);
        app.state.jobs.schedule_tick(at, false).await.unwrap();
        replica.state.jobs.schedule_tick(at, false).await.unwrap();
    }
    assert_eq!(list().await["total_num"], 0);
    // In the window, both replicas tick, twice each, at once.
    let at = MON + HOUR + 600_000;
    clock.set(at);
    for _ in 0..2 {
        let (a, b) = tokio::join!(
            app.state.jobs.schedule_tick(at, false),
            replica.state.jobs.schedule_tick(at + 1000, false)
        );
        a.unwrap();
        b.unwrap();
    }
    let b = list().await;
    assert_eq!(b["total_num"], 1, "{b}");
    let id = b["verifications"][0]["verification_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let rec = wait_verification(&app, &inst, &backup, &id).await;
    assert_eq!(rec["status"], "passed", "{rec}");
    assert_eq!(rec["origin"], "schedule", "{rec}");
    // A restarted scheduler does not run the same window again; next week's does.
    app.state
        .jobs
        .schedule_tick(at + 60_000, true)
        .await
        .unwrap();
    assert_eq!(list().await["total_num"], 1);
    let next = at + 7 * 24 * HOUR;
    clock.set(next);
    replica.state.jobs.schedule_tick(next, false).await.unwrap();
    app.state.jobs.schedule_tick(next, false).await.unwrap();
    assert_eq!(list().await["total_num"], 2);
}

//! Automatic backups: one per planned window whatever the time zone, across
//! restarts and replicas; retention that expires only what it should.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use common::{RedisServer, ServiceProcess, TestApp};
use dcs_backup::clock::ManualClock;
use serde_json::{json, Value};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// 2024-03-04 00:00:00 UTC, a Monday.
const MON: i64 = 1_709_510_400_000;

fn policy(days: &[u8], begin_at: &str, tz: &str, save_days: i64) -> Value {
    json!({"backup_type": "auto", "save_days": save_days,
           "periodical_backup_plan": {"period_type": "weekly", "backup_at": days, "begin_at": begin_at,
                                      "timezone_offset": tz}})
}

struct Fixture {
    app: TestApp,
    clock: Arc<ManualClock>,
    redis: RedisServer,
    id: String,
}

async fn fixture(start: i64) -> Fixture {
    let clock = Arc::new(ManualClock::new(start));
    let c2 = Arc::clone(&clock);
    let app = TestApp::spawn_with(move |c| {
        c.jobs.clock = c2;
        // The test drives the scheduler itself.
        c.jobs.scheduler_interval = Duration::from_secs(3600);
    })
    .await;
    let redis = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    redis.cli(&["SET", "k", "v"]);
    let id = app.adopt("sched-1", redis.port, json!({})).await;
    Fixture {
        app,
        clock,
        redis,
        id,
    }
}

impl Fixture {
    async fn set_policy(&self, p: Value) {
        let (s, b) = self
            .app
            .call(
                Method::PUT,
                &self.app.v2(&format!("/instances/{}", self.id)),
                Some(json!({"instance_backup_policy": p})),
            )
            .await;
        assert_eq!(s, 204, "{b}");
    }

    async fn tick_at(&self, at: i64) {
        self.clock.set(at);
        self.app
            .state
            .jobs
            .schedule_tick(at, false)
            .await
            .expect("tick");
    }

    async fn backups(&self) -> Vec<Value> {
        let (_, b) = self
            .app
            .call(
                Method::GET,
                &self
                    .app
                    .v2(&format!("/instances/{}/backups?limit=1000", self.id)),
                None,
            )
            .await;
        b["backup_record_response"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn auto_backups(&self) -> Vec<Value> {
        self.backups()
            .await
            .into_iter()
            .filter(|b| b["backup_type"] == "auto")
            .collect()
    }

    async fn settle(&self) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let all = self.backups().await;
            if all
                .iter()
                .all(|b| !matches!(b["status"].as_str(), Some("waiting" | "backuping")))
            {
                return all;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "backups never finished: {all:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn one_auto_backup_per_planned_window_across_a_week() {
    let f = fixture(MON).await;
    f.set_policy(policy(&[1, 3], "02:00-03:00", "GMT+00:00", 7))
        .await;
    f.tick_at(MON + 2 * HOUR - 1000).await;
    assert!(f.auto_backups().await.is_empty(), "not before the window");
    f.tick_at(MON + 2 * HOUR).await;
    f.tick_at(MON + 2 * HOUR + 1000).await;
    f.tick_at(MON + 2 * HOUR + 50 * 60_000).await;
    let all = f.settle().await;
    let autos: Vec<&Value> = all.iter().filter(|b| b["backup_type"] == "auto").collect();
    assert_eq!(autos.len(), 1, "exactly one in the window: {all:?}");
    assert_eq!(autos[0]["period"], "02:00-03:00");
    assert_eq!(autos[0]["status"], "succeed", "{}", autos[0]);
    assert_eq!(autos[0]["backup_name"], "backup_20240304020000");
    // Tuesday is not planned; Wednesday is.
    f.tick_at(MON + DAY + 2 * HOUR + 5).await;
    assert_eq!(f.auto_backups().await.len(), 1);
    f.tick_at(MON + 2 * DAY + 2 * HOUR + 5).await;
    f.settle().await;
    assert_eq!(f.auto_backups().await.len(), 2);
    // The next Monday again.
    f.tick_at(MON + 7 * DAY + 2 * HOUR + 5).await;
    f.settle().await;
    assert_eq!(f.auto_backups().await.len(), 3);
    // A manual policy plans nothing.
    f.set_policy(json!({"backup_type": "manual"})).await;
    f.tick_at(MON + 9 * DAY + 2 * HOUR + 5).await;
    assert_eq!(f.auto_backups().await.len(), 3);
}

#[tokio::test]
async fn windows_follow_the_policy_time_zone() {
    // Sunday 22:00–23:00 at UTC−05:00 is Monday 03:00–04:00 UTC.
    let f = fixture(MON).await;
    f.set_policy(policy(&[7], "22:00-23:00", "GMT-05:00", 3))
        .await;
    f.tick_at(MON - 2 * HOUR + 60_000).await; // Sunday 22:01 UTC
    assert!(
        f.auto_backups().await.is_empty(),
        "Sunday 22:00 UTC is not the window"
    );
    f.tick_at(MON + 3 * HOUR + 60_000).await; // Monday 03:01 UTC
    f.settle().await;
    let autos = f.auto_backups().await;
    assert_eq!(autos.len(), 1);
    assert_eq!(autos[0]["period"], "22:00-23:00");
    // Monday 01:00 at UTC+08:00 is Sunday 17:00 UTC.
    f.set_policy(policy(&[1], "01:00-02:00", "+08:00", 3)).await;
    f.tick_at(MON + 7 * DAY - 7 * HOUR + 30_000).await;
    f.settle().await;
    assert_eq!(f.auto_backups().await.len(), 2);
}

#[tokio::test]
async fn a_busy_instance_waits_within_the_window_or_records_why_it_did_not() {
    let f = fixture(MON).await;
    f.set_policy(policy(&[1, 2], "02:00-03:00", "GMT+00:00", 7))
        .await;
    // A slow manual backup occupies the instance.
    f.redis
        .cli(&["CONFIG", "SET", "repl-diskless-sync-delay", "4"]);
    let (s, _) = f
        .app
        .call(
            Method::POST,
            &f.app.v2(&format!("/instances/{}/backups", f.id)),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200);
    f.tick_at(MON + 2 * HOUR).await;
    assert!(
        f.auto_backups().await.is_empty(),
        "no auto backup while busy"
    );
    f.settle().await;
    f.redis
        .cli(&["CONFIG", "SET", "repl-diskless-sync-delay", "0"]);
    // Still inside the window: it runs now.
    f.tick_at(MON + 2 * HOUR + 40 * 60_000).await;
    f.settle().await;
    let autos = f.auto_backups().await;
    assert_eq!(autos.len(), 1);
    assert_eq!(autos[0]["status"], "succeed");

    // Tuesday: busy through the whole window.
    f.redis
        .cli(&["CONFIG", "SET", "repl-diskless-sync-delay", "30"]);
    let (s, _) = f
        .app
        .call(
            Method::POST,
            &f.app.v2(&format!("/instances/{}/backups", f.id)),
            Some(json!({"remark": "tuesday"})),
        )
        .await;
    assert_eq!(s, 200);
    f.tick_at(MON + DAY + 2 * HOUR + 1000).await;
    f.tick_at(MON + DAY + 2 * HOUR + 59 * 60_000).await;
    f.tick_at(MON + DAY + 3 * HOUR).await;
    f.tick_at(MON + DAY + 3 * HOUR + 1000).await;
    let autos = f.auto_backups().await;
    assert_eq!(autos.len(), 2, "{autos:?}");
    let missed = &autos[0];
    assert_eq!(missed["status"], "failed");
    assert_eq!(missed["error_code"], "dcs.08.0008");
    assert_eq!(missed["period"], "02:00-03:00");

    // /metrics counts Monday's window as started and Tuesday's as missed,
    // and reads the instance's outcomes and policy from this catalog.
    let text = f.app.metrics().await;
    let id = &f.id;
    let windows = |outcome: &str| {
        common::metric(
            &text,
            &format!("dcs_backup_schedule_windows_total{{outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(windows("started"), Some(1.0), "{text}");
    assert_eq!(windows("missed"), Some(1.0), "{text}");
    assert_eq!(windows("skipped"), Some(0.0), "{text}");
    let last = |what: &str| {
        common::metric(
            &text,
            &format!(
                "dcs_backup_last_{what}_timestamp_seconds{{instance_id=\"{id}\",kind=\"backup\"}}"
            ),
        )
    };
    // Monday's automatic backup, and the failed record of Tuesday's window.
    assert!(last("success").is_some(), "{text}");
    assert!(last("failure").is_some(), "{text}");
    // Mondays and Tuesdays: the longest gap is Tuesday to Monday.
    assert_eq!(
        common::metric(
            &text,
            &format!("dcs_backup_policy_period_seconds{{instance_id=\"{id}\"}}")
        ),
        Some(6.0 * 86_400.0),
        "{text}"
    );
}

#[tokio::test]
async fn auto_backups_expire_after_save_days_and_manual_ones_never() {
    let f = fixture(MON).await;
    f.set_policy(policy(&[1], "02:00-03:00", "GMT+00:00", 2))
        .await;
    f.tick_at(MON + 2 * HOUR).await;
    let all = f.settle().await;
    let auto = all
        .iter()
        .find(|b| b["backup_type"] == "auto")
        .unwrap()
        .clone();
    let (s, b) = f
        .app
        .call(
            Method::POST,
            &f.app.v2(&format!("/instances/{}/backups", f.id)),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    f.settle().await;
    let id = auto["backup_id"].as_str().unwrap().to_owned();
    let bid = dcs_backup::model::BackupId::parse(&id).unwrap();
    let expires = f.app.catalog().backup_expiry(&bid).await.unwrap().unwrap();
    assert_eq!(expires, MON + 2 * HOUR + 2 * DAY);

    // Shortening or removing the policy does not expire anything early.
    f.set_policy(policy(&[1], "02:00-03:00", "GMT+00:00", 1))
        .await;
    f.tick_at(MON + 2 * HOUR + DAY + 60_000).await;
    f.set_policy(json!({"backup_type": "manual"})).await;
    // At the boundary second itself it is not yet older than save_days.
    f.tick_at(expires).await;
    let rec = f
        .backups()
        .await
        .into_iter()
        .find(|b| b["backup_id"] == id.as_str())
        .unwrap();
    assert_eq!(rec["status"], "succeed");
    assert_eq!(rec["is_support_restore"], "TRUE");
    f.tick_at(expires + 1000).await;
    let all = f.backups().await;
    let rec = all.iter().find(|b| b["backup_id"] == id.as_str()).unwrap();
    assert_eq!(rec["status"], "expired");
    assert_eq!(rec["is_support_restore"], "FALSE");
    let stored = walk(&f.app.dir.path().join("backups"));
    assert!(
        !stored.iter().any(|p| p.contains(&id)),
        "expired files are deleted"
    );
    let (s, _) = f
        .app
        .call(
            Method::POST,
            &f.app.v2(&format!("/instances/{}/backups/{id}/links", f.id)),
            Some(json!({"expiration": 300})),
        )
        .await;
    assert_eq!(s, 400);
    // Manual backups never expire.
    f.tick_at(MON + 400 * DAY).await;
    let all = f.backups().await;
    let manual: Vec<&Value> = all
        .iter()
        .filter(|b| b["backup_type"] == "manual")
        .collect();
    assert_eq!(manual.len(), 1);
    assert_eq!(manual[0]["status"], "succeed", "{manual:?}");
}

fn walk(p: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path().display().to_string());
        }
    }
    out
}

#[tokio::test]
async fn two_replicas_on_one_catalog_start_one_backup_per_window() {
    let f = fixture(MON).await;
    let clock2 = Arc::new(ManualClock::new(MON));
    let c2 = Arc::clone(&clock2);
    let replica = TestApp::spawn_replica_of(&f.app, move |c| {
        c.jobs.clock = c2;
        c.jobs.scheduler_interval = Duration::from_secs(3600);
    })
    .await;
    f.set_policy(policy(&[1], "02:00-03:00", "GMT+00:00", 7))
        .await;
    let at = MON + 2 * HOUR + 10;
    clock2.set(at);
    // Both replicas tick in the same window at the same moment.
    let ((), replica_tick) =
        tokio::join!(f.tick_at(at), replica.state.jobs.schedule_tick(at, false));
    replica_tick.expect("replica tick");
    for i in 0..5 {
        f.tick_at(at + i * 1000).await;
        replica
            .state
            .jobs
            .schedule_tick(at + i * 1000, false)
            .await
            .unwrap();
    }
    let all = f.settle().await;
    let autos: Vec<&Value> = all.iter().filter(|b| b["backup_type"] == "auto").collect();
    assert_eq!(autos.len(), 1, "{all:?}");
    assert_eq!(autos[0]["status"], "succeed");
}

/// Minutes east of UTC that make the local time now `target_minute`.
fn offset_for_local_minute(target_minute: i64) -> (String, i64) {
    let now = dcs_backup::model::now_millis();
    let minute = (now / 60_000).rem_euclid(60);
    let mut off = target_minute - minute;
    if off > 30 {
        off -= 60;
    }
    let sign = if off < 0 { '-' } else { '+' };
    (format!("GMT{sign}00:{:02}", off.abs()), off)
}

fn local_now(off_minutes: i64) -> (u8, u8) {
    let local = dcs_backup::model::now_millis() + off_minutes * 60_000;
    let hour = (local / HOUR).rem_euclid(24) as u8;
    let weekday = ((local.div_euclid(DAY) + 3).rem_euclid(7) + 1) as u8;
    (hour, weekday)
}

/// The real binary on the wall clock: a window that opens about a minute
/// after the test starts gets its backup, and a restart inside the window
/// does not start a second one.
#[tokio::test]
async fn real_clock_window_runs_once_even_across_a_restart() {
    let db = common::TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(&["--repl-diskless-sync-delay", "0"]);
    redis.cli(&["SET", "k", "v"]);
    let mut svc = ServiceProcess::start(dir.path(), db.url.as_deref());
    let (s, b) = svc
        .call(
            Method::POST,
            &svc.v2("/instances"),
            Some(json!({"name": "clock-1", "private_ip": "127.0.0.1", "port": redis.port})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let id = b["instances"][0]["instance_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Local time is now hh:59 in this zone, so the next hour's window opens
    // within a minute.
    let (tz, off) = offset_for_local_minute(59);
    let (hour, weekday) = local_now(off);
    let next = (hour + 1) % 24;
    let day = if next == 0 { weekday % 7 + 1 } else { weekday };
    let p = policy(
        &[day],
        &format!("{next:02}:00-{:02}:00", (next + 1) % 24),
        &tz,
        1,
    );
    let (s, b) = svc
        .call(
            Method::PUT,
            &svc.v2(&format!("/instances/{id}")),
            Some(json!({"instance_backup_policy": p})),
        )
        .await;
    assert_eq!(s, 204, "{b}");
    let list = format!("/instances/{id}/backups");
    let start = Instant::now();
    let first = loop {
        let (_, b) = svc.call(Method::GET, &svc.v2(&list), None).await;
        if let Some(r) = b["backup_record_response"]
            .as_array()
            .and_then(|a| a.first())
        {
            if r["status"] == "succeed" {
                break r.clone();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no automatic backup: {b}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(first["backup_type"], "auto");
    svc.kill();
    svc.restart();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let (_, b) = svc.call(Method::GET, &svc.v2(&list), None).await;
    assert_eq!(
        b["total_num"], 1,
        "a restart inside the window starts nothing new: {b}"
    );
}

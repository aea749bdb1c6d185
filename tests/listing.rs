//! The seed list APIs: backup and restore records, v2 and v1.0 — order,
//! paging, inclusive time bounds, aliases, totals and every bad parameter.

mod common;

use axum::http::Method;
use common::{RedisServer, TestApp};
use dcs_backup::catalog::NewRestore;
use dcs_backup::model::{compact_utc, BackupId, Instance, InstanceId, RestoreId, RestoreStatus};
use serde_json::{json, Value};

/// 2024-03-01T00:00:00Z
const T0: i64 = 1_709_251_200_000;

struct Fixture {
    app: TestApp,
    _redis: RedisServer,
    id: String,
    other: String,
    /// created_at of each backup, oldest first.
    backup_times: Vec<i64>,
    restore_times: Vec<i64>,
}

async fn instance(app: &TestApp, id: &str) -> Instance {
    app.catalog()
        .instance_any(&InstanceId::parse(id).unwrap())
        .await
        .unwrap()
        .unwrap()
}

/// 300 backups: mostly one per second, with runs of three sharing a second
/// (at different milliseconds), so bounds must include whole seconds.
/// 40 restores, one every ten seconds. Another instance gets records at the
/// same times, which must never show up.
async fn fixture() -> Fixture {
    let app = TestApp::spawn().await;
    let redis = RedisServer::start(&[]);
    let id = app.adopt("list-1", redis.port, json!({})).await;
    let other = app.adopt("list-2", redis.port, json!({})).await;
    let inst = instance(&app, &id).await;
    let other_inst = instance(&app, &other).await;
    let mut times = Vec::new();
    for i in 0..300i64 {
        let t = if i % 10 < 3 {
            T0 + (i / 10) * 10_000 + (i % 10) * 300
        } else {
            T0 + i * 1000
        };
        times.push(t);
    }
    times.sort();
    for (i, &t) in times.iter().enumerate() {
        for who in [&inst, &other_inst] {
            let rec = app
                .catalog()
                .insert_backup(&dcs_backup::dev::synthetic_backup(who, i as u64, t))
                .await
                .unwrap();
            assert_eq!(rec.created_at, t, "created_at kept as given when in order");
        }
    }
    let mut restore_times = Vec::new();
    for i in 0..40i64 {
        let t = T0 + i * 10_000 + 500;
        restore_times.push(t);
        app.catalog()
            .insert_restore(&NewRestore {
                id: RestoreId::generate(),
                instance_id: inst.id.clone(),
                project_id: inst.project_id.clone(),
                backup_id: BackupId::generate(),
                backup_name: format!("backup_{}", compact_utc(T0)),
                backup_remark: "nightly".into(),
                source_instance_id: other_inst.id.clone(),
                source_instance_name: other_inst.name.clone(),
                remark: format!("restore {i}"),
                status: RestoreStatus::Succeed,
                created_at: t,
                error: None,
                filter: None,
            })
            .await
            .unwrap();
    }
    Fixture {
        app,
        _redis: redis,
        id,
        other,
        backup_times: times,
        restore_times,
    }
}

fn compact(ms: i64) -> String {
    compact_utc(ms)
}

impl Fixture {
    async fn get(&self, path: &str) -> (u16, Value) {
        self.app.call(Method::GET, path, None).await
    }

    fn backups_v2(&self, q: &str) -> String {
        self.app.v2(&format!("/instances/{}/backups?{q}", self.id))
    }
}

fn parse_iso(s: &str) -> i64 {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

#[tokio::test]
async fn paging_walks_every_record_once_newest_first() {
    let f = fixture().await;
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let (s, b) = f
            .get(&f.backups_v2(&format!("offset={offset}&limit=7")))
            .await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(
            b["total_num"], 300,
            "total_num counts matches, not the page"
        );
        let page = b["backup_record_response"].as_array().unwrap().clone();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        seen.extend(page);
        offset += 7;
    }
    assert_eq!(seen.len(), 300);
    let times: Vec<i64> = seen
        .iter()
        .map(|r| parse_iso(r["created_at"].as_str().unwrap()))
        .collect();
    let mut expected = f.backup_times.clone();
    expected.reverse();
    assert_eq!(times, expected, "newest first, every record once");
    let mut ids: Vec<&str> = seen
        .iter()
        .map(|r| r["backup_id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 300);
    for r in &seen {
        assert_eq!(r["instance_id"], f.id.as_str());
        let created = parse_iso(r["created_at"].as_str().unwrap());
        assert_eq!(r["backup_name"], format!("backup_{}", compact(created)));
        let ok = r["status"] == "succeed";
        assert_eq!(r["is_support_restore"], if ok { "TRUE" } else { "FALSE" });
        assert!(matches!(r["backup_format"].as_str(), Some("RDB" | "AOF")));
        assert!(
            r["created_at"].as_str().unwrap().len() == 24,
            "ISO with milliseconds: {}",
            r["created_at"]
        );
    }

    // Defaults: first 10; v1 `start` is 1-based and lands on the same records.
    let (_, b) = f.get(&f.backups_v2("")).await;
    assert_eq!(b["backup_record_response"].as_array().unwrap().len(), 10);
    let (_, v2) = f.get(&f.backups_v2("offset=20&limit=5")).await;
    let (_, v1) = f
        .get(
            &f.app
                .v1(&format!("/instances/{}/backups?start=21&limit=5", f.id)),
        )
        .await;
    assert_eq!(v1["total_num"], 300);
    assert_eq!(v1["backup_record_response"], v2["backup_record_response"]);
    let (_, start) = f.get(&f.backups_v2("start=21&limit=5")).await;
    assert_eq!(
        start["backup_record_response"], v2["backup_record_response"],
        "v2 accepts start too"
    );

    // Past the end: empty page, true total.
    let (s, b) = f.get(&f.backups_v2("offset=300")).await;
    assert_eq!((s, b["total_num"].as_u64()), (200, Some(300)));
    assert_eq!(b["backup_record_response"], json!([]));
}

#[tokio::test]
async fn time_bounds_are_inclusive_whole_seconds_in_every_spelling() {
    let f = fixture().await;
    let count_in = |lo: i64, hi: i64| {
        let lo_s = lo.div_euclid(1000) * 1000;
        let hi_s = hi.div_euclid(1000) * 1000 + 999;
        f.backup_times
            .iter()
            .filter(|&&t| t >= lo_s && t <= hi_s)
            .count() as u64
    };
    // Edges: a record's own second, one second before and after.
    let t = f.backup_times[150];
    let sec = |ms: i64| compact(ms);
    let cases = [
        (t, t),
        (t - 1000, t),
        (t + 1000, t + 5000),
        (t, t - 1000 + 1000),
        (f.backup_times[0], f.backup_times[0]),
        (f.backup_times[299], f.backup_times[299]),
        (f.backup_times[0] - 1000, f.backup_times[299] + 1000),
    ];
    for (lo, hi) in cases {
        let want = count_in(lo, hi);
        for (b, e) in [
            ("begin_time", "end_time"),
            ("beginTime", "endTime"),
            ("begin_Time", "end_Time"),
        ] {
            let (s, body) = f
                .get(&f.backups_v2(&format!("{b}={}&{e}={}&limit=1000", sec(lo), sec(hi))))
                .await;
            assert_eq!(s, 200, "{body}");
            assert_eq!(body["total_num"], want, "{b}={} {e}={}", sec(lo), sec(hi));
            let recs = body["backup_record_response"].as_array().unwrap();
            assert_eq!(recs.len() as u64, want);
            for r in recs {
                let c = parse_iso(r["created_at"].as_str().unwrap()) / 1000;
                assert!(c >= lo / 1000 && c <= hi / 1000);
            }
        }
    }
    // A second holding three records returns all three.
    let shared = f.backup_times[0];
    assert_eq!(count_in(shared, shared), 3);
    // One second past a record's second excludes it.
    let (_, b) = f
        .get(&f.backups_v2(&format!("begin_time={}", sec(f.backup_times[299] + 1000))))
        .await;
    assert_eq!(b["total_num"], 0);
    let (_, b) = f
        .get(&f.backups_v2(&format!("end_time={}", sec(f.backup_times[0] - 1000))))
        .await;
    assert_eq!(b["total_num"], 0);
    // Only one bound.
    let (_, b) = f
        .get(&f.backups_v2(&format!("begin_time={}", sec(t))))
        .await;
    assert_eq!(
        b["total_num"],
        f.backup_times
            .iter()
            .filter(|&&x| x >= t / 1000 * 1000)
            .count()
    );
    let (_, b) = f
        .get(&f.backups_v2(&format!("end_time={}&offset=2&limit=5", sec(t))))
        .await;
    let mut upto: Vec<i64> = f
        .backup_times
        .iter()
        .copied()
        .filter(|&x| x <= t / 1000 * 1000 + 999)
        .collect();
    assert_eq!(b["total_num"], upto.len());
    // Newest first: the page starts at the third newest record up to `t`.
    let first = parse_iso(
        b["backup_record_response"][0]["created_at"]
            .as_str()
            .unwrap(),
    );
    upto.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(first / 1000, upto[2] / 1000);
    // Paging inside a window.
    let (lo, hi) = (f.backup_times[100], f.backup_times[199]);
    let (_, b) = f
        .get(&f.backups_v2(&format!(
            "begin_time={}&end_time={}&offset=5&limit=3",
            sec(lo),
            sec(hi)
        )))
        .await;
    assert_eq!(b["total_num"], count_in(lo, hi));
    let got: Vec<i64> = b["backup_record_response"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| parse_iso(r["created_at"].as_str().unwrap()))
        .collect();
    let mut window: Vec<i64> = f
        .backup_times
        .iter()
        .copied()
        .filter(|&x| x >= lo / 1000 * 1000 && x <= hi / 1000 * 1000 + 999)
        .collect();
    window.reverse();
    assert_eq!(got, window[5..8].to_vec());
}

#[tokio::test]
async fn restore_lists_carry_the_source_and_answer_204_when_empty() {
    let f = fixture().await;
    let path = f.app.v2(&format!("/instances/{}/restores", f.id));
    let (s, b) = f.get(&format!("{path}?limit=100")).await;
    assert_eq!(s, 200);
    assert_eq!(b["total_num"], 40);
    let recs = b["restore_record_response"].as_array().unwrap();
    assert_eq!(recs.len(), 40);
    assert_eq!(recs[0]["restore_remark"], "restore 39");
    assert_eq!(recs[0]["backup_remark"], "nightly");
    assert_eq!(
        recs[0]["restore_name"],
        format!("restore_{}", compact(f.restore_times[39]))
    );
    assert!(
        recs[0].get("sourceInstanceId").is_none(),
        "v2 has no source fields"
    );

    let (s, b) = f
        .get(
            &f.app
                .v1(&format!("/instances/{}/restores?start=1&limit=2", f.id)),
        )
        .await;
    assert_eq!(s, 200);
    let r = &b["restore_record_response"][0];
    assert_eq!(r["sourceInstanceId"], f.other.as_str());
    assert_eq!(r["sourceInstanceID"], f.other.as_str());
    assert_eq!(r["sourceInstanceName"], "list-2");

    // No record in the window: 204 with no body (v2 only).
    let late = compact(f.restore_times[39] + 60_000);
    let resp = f
        .app
        .send_signed(
            &f.app.cred,
            Method::GET,
            &format!("{path}?begin_time={late}"),
            vec![],
            |_| {},
        )
        .await;
    assert_eq!(resp.status(), 204);
    assert!(resp.bytes().await.unwrap().is_empty());
    // The other instance has no restores at all.
    let (s, _) = f
        .get(&f.app.v2(&format!("/instances/{}/restores", f.other)))
        .await;
    assert_eq!(s, 204);
    let (s, b) = f
        .get(&f.app.v1(&format!("/instances/{}/restores", f.other)))
        .await;
    assert_eq!((s, b["total_num"].as_u64()), (200, Some(0)));
    // Backups list answers 200 with an empty array instead.
    let (s, b) = f.get(&f.backups_v2(&format!("begin_time={late}"))).await;
    assert_eq!(
        (s, b),
        (200, json!({"backup_record_response": [], "total_num": 0}))
    );
}

#[tokio::test]
async fn every_bad_parameter_of_every_list_endpoint_is_refused_in_its_versions_shape() {
    let f = fixture().await;
    let random = uuid::Uuid::new_v4().to_string();
    struct Endpoint {
        path: String,
        v1: bool,
    }
    let endpoints = [
        Endpoint {
            path: f.app.v2(&format!("/instances/{}/backups", f.id)),
            v1: false,
        },
        Endpoint {
            path: f.app.v2(&format!("/instances/{}/restores", f.id)),
            v1: false,
        },
        Endpoint {
            path: f.app.v1(&format!("/instances/{}/backups", f.id)),
            v1: true,
        },
        Endpoint {
            path: f.app.v1(&format!("/instances/{}/restores", f.id)),
            v1: true,
        },
    ];
    for ep in &endpoints {
        let (begin, end, page) = if ep.v1 {
            ("beginTime", "endTime", "start")
        } else {
            ("begin_time", "end_time", "offset")
        };
        let mut cases: Vec<(String, &str, String)> = vec![
            ("limit=0".into(), "4800", "limit".into()),
            ("limit=1001".into(), "4800", "limit".into()),
            ("limit=-5".into(), "4800", "limit".into()),
            ("limit=ten".into(), "4800", "limit".into()),
            ("limit=".into(), "4800", "limit".into()),
            (format!("{page}=abc"), "4800", page.into()),
            (format!("{page}=1.5"), "4800", page.into()),
            (format!("{begin}=2017"), "4800", begin.into()),
            (format!("{begin}=201707182359590"), "4800", begin.into()),
            (format!("{begin}=2017071823595a"), "4800", begin.into()),
            (format!("{begin}=20170230000000"), "4800", begin.into()),
            (format!("{end}=20171301000000"), "4800", end.into()),
            (format!("{end}=20170101250000"), "4800", end.into()),
            (format!("{end}=20170101006000"), "4800", end.into()),
            (
                format!("{begin}=20170719000000&{end}=20170718235959"),
                "4025",
                String::new(),
            ),
        ];
        if ep.v1 {
            cases.push(("start=0".into(), "4800", "start".into()));
            cases.push(("start=-1".into(), "4800", "start".into()));
        } else {
            cases.push(("offset=-1".into(), "4800", "offset".into()));
            cases.push(("start=0".into(), "4800", "start".into()));
            cases.push(("begin_Time=x".into(), "4800", "begin_Time".into()));
            cases.push(("endTime=x".into(), "4800", "endTime".into()));
        }
        for (query, code, name) in cases {
            let (s, b) = f.get(&format!("{}?{query}", ep.path)).await;
            assert_eq!(s, 400, "{} ?{query}: {b}", ep.path);
            let (got_code, msg) = if ep.v1 {
                (
                    b["error"]["code"].as_str().unwrap().to_owned(),
                    b["error"]["message"].as_str().unwrap().to_owned(),
                )
            } else {
                (
                    b["error_code"].as_str().unwrap().to_owned(),
                    b["error_msg"].as_str().unwrap().to_owned(),
                )
            };
            let want_code = if ep.v1 {
                format!("111400{}", &code[1..])
            } else {
                format!("DCS.{code}")
            };
            assert_eq!(got_code, want_code, "{} ?{query}", ep.path);
            if code == "4800" {
                assert_eq!(msg, format!("Invalid {name} in the request."), "?{query}");
            }
        }
        // Unknown instance and malformed instance id.
        let unknown = ep.path.replace(&f.id, &random);
        let (s, b) = f.get(&unknown).await;
        assert_eq!(s, 404);
        let code = if ep.v1 {
            b["error"]["code"].clone()
        } else {
            b["error_code"].clone()
        };
        assert_eq!(code, if ep.v1 { "111404022" } else { "DCS.3022" });
        let malformed = ep.path.replace(&f.id, "not-an-id");
        let (s, b) = f.get(&malformed).await;
        assert_eq!(s, 400);
        let code = if ep.v1 {
            b["error"]["code"].clone()
        } else {
            b["error_code"].clone()
        };
        assert_eq!(code, if ep.v1 { "111400061" } else { "DCS.4061" });
        // The largest page is fine.
        let (s, _) = f.get(&format!("{}?limit=1000", ep.path)).await;
        assert_eq!(s, 200);
    }
}

#[tokio::test]
async fn a_record_inserted_out_of_order_never_sorts_before_an_older_one() {
    let f = fixture().await;
    let inst = instance(&f.app, &f.id).await;
    let newest = *f.backup_times.last().unwrap();
    let rec = f
        .app
        .catalog()
        .insert_backup(&dcs_backup::dev::synthetic_backup(
            &inst,
            1,
            T0 - 86_400_000,
        ))
        .await
        .unwrap();
    assert_eq!(
        rec.created_at,
        newest + 1,
        "moved just after the newest record"
    );
    let (_, b) = f.get(&f.backups_v2("limit=1")).await;
    assert_eq!(b["backup_record_response"][0]["backup_id"], rec.id.as_str());
    assert_eq!(b["total_num"], 301);
}

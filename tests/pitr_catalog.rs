//! PITR metadata on the real catalog (SQLite, or PostgreSQL with
//! `DCS_TEST_DATABASE=postgres`): the runs the database folds segments
//! into give exactly the periods the segments give, a base taken inside
//! a segment is ready once that segment's last byte arrived, and the
//! bounded reads retention and replay use return what they say.

mod common;

use common::TestApp;
use dcs_backup::catalog::{BaseRow, SegmentRow};
use dcs_backup::model::InstanceId;
use dcs_backup::pitr::periods::periods;

fn seg(inst: &InstanceId, shard: &str, id: &str, a: i64, b: i64, t0: i64, t1: i64) -> SegmentRow {
    SegmentRow {
        instance_id: inst.clone(),
        shard: shard.into(),
        repl_id: id.into(),
        start_offset: a,
        end_offset: b,
        first_at: t0,
        last_at: t1,
        start_db: 0,
        end_db: 0,
        data_len: b - a,
        size: b - a + 24,
        blake3: "00".into(),
        object_key: format!("{shard}/{id}-{a}.seg"),
        resumed: false,
        covered_until: t1,
    }
}

fn base(inst: &InstanceId, shard: &str, id: &str, off: i64, taken: i64, ready: i64) -> BaseRow {
    BaseRow {
        id: format!("{shard}-{off}-{taken}"),
        instance_id: inst.clone(),
        shard: shard.into(),
        prefix: format!("p/i/pitr/bases/{shard}-{off}/"),
        file_name: "f.rdb".into(),
        repl_id: id.into(),
        repl_offset: off,
        taken_at: taken,
        ready_at: ready,
        size: 1,
        manifest: "{}".into(),
        from_backup: false,
    }
}

#[tokio::test]
async fn runs_give_the_periods_segments_give() {
    let app = TestApp::spawn().await;
    let c = app.catalog();
    let inst = InstanceId::from_stored("0f0e0d0c-0b0a-4000-8000-000000000001".into());
    let mut segs = Vec::new();
    // Shard a: 500 segments of 100 bytes, 250 ms apart, with a
    // `+CONTINUE <newid>` at 200, a resume at 300 and, at 400, a gap
    // (200 bytes never captured) after which a full sync starts afresh.
    let (mut off, mut t, mut id) = (0i64, 1_000_000i64, "r1".to_owned());
    for i in 0..500 {
        if i == 200 {
            id = "r2".into();
        }
        if i == 400 {
            off += 200;
            t += 5000;
        }
        let mut s = seg(&inst, "a", &id, off, off + 100, t, t + 200);
        if i == 300 {
            s.resumed = true;
            s.first_at += 3000;
            s.last_at += 3000;
            s.covered_until = s.last_at;
            t += 3000;
        }
        segs.push(s);
        off += 100;
        t += 250;
    }
    // Shard b: one unbroken stretch.
    for i in 0..600 {
        let t = 1_000_100 + i * 250;
        segs.push(seg(&inst, "b", "rb", i * 100, i * 100 + 100, t, t + 200));
    }
    for s in &segs {
        c.insert_pitr_segment(s, s.last_at).await.unwrap();
    }
    // Bases: a's first, one inside segment 100 stored before that
    // segment's last byte arrived, one after the gap; b's first.
    let a100 = &segs[100];
    let bases = vec![
        base(&inst, "a", "r1", 0, 999_000, 999_500),
        base(
            &inst,
            "a",
            "r1",
            a100.start_offset + 50,
            a100.first_at - 10,
            a100.first_at + 5,
        ),
        base(
            &inst,
            "a",
            "r2",
            segs[400].start_offset,
            segs[400].first_at - 500,
            segs[400].first_at - 100,
        ),
        base(&inst, "b", "rb", 0, 999_000, 1_000_050),
    ];
    for b in &bases {
        c.insert_pitr_base(b).await.unwrap();
    }

    let runs = c.pitr_runs(&inst).await.unwrap();
    // a: [0,200) r1, [200,300) r2, [300,400) resumed, [400,500) after the gap; b: one.
    let a_runs: Vec<(i64, i64, bool)> = runs
        .iter()
        .filter(|r| r.shard == "a")
        .map(|r| (r.start_offset, r.end_offset, r.resumed))
        .collect();
    assert_eq!(
        a_runs,
        vec![
            (0, 20_000, false),
            (20_000, 30_000, false),
            (30_000, 40_000, true),
            (40_200, 50_200, false)
        ]
    );
    assert_eq!(runs.iter().filter(|r| r.shard == "b").count(), 1);
    let sizes: i64 = runs.iter().map(|r| r.size).sum();
    assert_eq!(sizes, segs.iter().map(|s| s.size).sum::<i64>());

    // The base inside segment 100 is ready once its last byte arrived.
    let stored = c.pitr_bases(&inst).await.unwrap();
    let mid = stored.iter().find(|b| b.id == bases[1].id).unwrap();
    assert_eq!(mid.ready_at, a100.last_at);
    let first = stored.iter().find(|b| b.id == bases[0].id).unwrap();
    assert_eq!(
        first.ready_at, 999_500,
        "a base at a segment's start is unchanged"
    );

    let all = c.pitr_segments(&inst).await.unwrap();
    let links = c.pitr_links(&inst).await.unwrap();
    let by_runs = periods(&stored, &runs, &links);
    assert_eq!(by_runs, periods(&stored, &all, &links));
    assert!(
        by_runs.len() >= 2,
        "the gap splits the history: {by_runs:?}"
    );

    // Replay's read: from a base's time to T, in receipt order.
    let between = c
        .pitr_segments_between(&inst, "a", a100.first_at, segs[150].first_at)
        .await
        .unwrap();
    assert_eq!(between.first().unwrap().start_offset, a100.start_offset);
    assert_eq!(between.last().unwrap().start_offset, segs[150].start_offset);
    assert_eq!(between.len(), 51);
    // Retention's read: bounded, oldest first, one shard.
    let before = c
        .pitr_segments_before(&inst, "a", segs[120].last_at, 50)
        .await
        .unwrap();
    assert_eq!(before.len(), 50);
    assert!(before.iter().all(|s| s.shard == "a"));
    assert_eq!(before[0].start_offset, 0);
    assert!(before.windows(2).all(|w| w[0].last_at <= w[1].last_at));
}

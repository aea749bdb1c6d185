//! PITR metadata on the real catalog (SQLite, or PostgreSQL with
//! `DCS_TEST_DATABASE=postgres`): the runs the catalog keeps give exactly
//! the periods the segments give and equal a fresh fold of the segments
//! however segments come and go, a base taken inside a segment is ready
//! once that segment's last byte arrived, and the bounded reads retention
//! and replay use return what they say.

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

/// The node the tests capture as: every instance's lease is taken for it
/// before its segments are stored.
const HOLDER: &str = "test-node";

async fn hold(c: &dcs_backup::catalog::Catalog, inst: &InstanceId) {
    assert!(c.claim_pitr_lease(inst, HOLDER, 0, i64::MAX).await.unwrap());
}

/// `(start, end, resumed)` of the instance's runs of `shard`, as kept.
async fn shard_runs(
    c: &dcs_backup::catalog::Catalog,
    inst: &InstanceId,
    shard: &str,
) -> Vec<(i64, i64, bool)> {
    c.pitr_runs(inst)
        .await
        .unwrap()
        .iter()
        .filter(|r| r.shard == shard)
        .map(|r| (r.start_offset, r.end_offset, r.resumed))
        .collect()
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
    hold(c, &inst).await;
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
        assert!(c.insert_pitr_segment(s, s.last_at, HOLDER).await.unwrap());
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
    let a_runs = shard_runs(c, &inst, "a").await;
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

/// The runs kept as segments come and go equal the runs folded afresh
/// from the segments: through retention's oldest-first removal across
/// run boundaries, a removal from inside a run, a segment arriving out of
/// receipt order, and an idle link's coverage.
#[tokio::test]
async fn kept_runs_equal_runs_folded_afresh() {
    let app = TestApp::spawn().await;
    let c = app.catalog();
    let inst = InstanceId::from_stored("0f0e0d0c-0b0a-4000-8000-000000000002".into());
    hold(c, &inst).await;
    async fn kept_equals_folded(c: &dcs_backup::catalog::Catalog, inst: &InstanceId, what: &str) {
        let kept = c.pitr_runs(inst).await.unwrap();
        for shard in ["a", "b"] {
            c.rebuild_pitr_runs(inst, shard).await.unwrap();
        }
        let folded = c.pitr_runs(inst).await.unwrap();
        assert_eq!(kept, folded, "{what}");
    }
    // Shard a: a history change at 50, a resume at 100, a gap at 150.
    let (mut off, mut t, mut id) = (0i64, 5_000_000i64, "r1".to_owned());
    let mut a = Vec::new();
    for i in 0..200 {
        if i == 50 {
            id = "r2".into();
        }
        if i == 150 {
            off += 300;
        }
        let mut s = seg(&inst, "a", &id, off, off + 100, t, t + 200);
        s.resumed = i == 100;
        a.push(s);
        off += 100;
        t += 250;
    }
    for (i, s) in a.iter().enumerate() {
        assert!(c.insert_pitr_segment(s, s.last_at, HOLDER).await.unwrap());
        // Shard b interleaved, one unbroken stretch.
        let tb = 5_000_100 + i as i64 * 250;
        let b = seg(
            &inst,
            "b",
            "rb",
            i as i64 * 10,
            i as i64 * 10 + 10,
            tb,
            tb + 100,
        );
        assert!(c.insert_pitr_segment(&b, b.last_at, HOLDER).await.unwrap());
    }
    assert_eq!(shard_runs(c, &inst, "a").await.len(), 4);
    assert_eq!(shard_runs(c, &inst, "b").await.len(), 1);
    kept_equals_folded(c, &inst, "after inserts").await;

    // An idle link moves the coverage of its last segment and run.
    let last = a.last().unwrap();
    c.touch_pitr_link(
        &inst,
        "a",
        &last.repl_id,
        last.end_offset,
        last.last_at + 9_000,
    )
    .await
    .unwrap();
    let runs = c.pitr_runs(&inst).await.unwrap();
    let tail = runs.iter().rfind(|r| r.shard == "a").unwrap();
    assert_eq!(tail.covered_until, last.last_at + 9_000);
    kept_equals_folded(c, &inst, "after an idle link's touch").await;
    assert_eq!(
        c.pitr_storage(&inst).await.unwrap(),
        c.pitr_segments(&inst)
            .await
            .unwrap()
            .iter()
            .map(|s| s.size)
            .sum::<i64>()
    );

    // Retention, oldest first, through the history change and the resume.
    for s in &a[..120] {
        assert!(c.delete_pitr_segment(s).await.unwrap());
        if [0, 49, 50, 99, 100, 119].contains(&(a.iter().position(|x| x == s).unwrap())) {
            kept_equals_folded(c, &inst, "during retention").await;
        }
    }
    assert_eq!(
        shard_runs(c, &inst, "a").await,
        vec![(12_000, 15_000, false), (15_300, 20_300, false)]
    );
    assert!(!c.delete_pitr_segment(&a[0]).await.unwrap(), "removed once");

    // A segment removed from inside a run splits it.
    assert!(c.delete_pitr_segment(&a[170]).await.unwrap());
    kept_equals_folded(c, &inst, "after a removal inside a run").await;
    assert_eq!(shard_runs(c, &inst, "a").await.len(), 3);

    // A segment stored out of receipt order (a handover between two
    // replicas whose clocks disagree) is folded in where it belongs.
    let late = seg(
        &inst,
        "a",
        "r2",
        a[170].start_offset,
        a[170].end_offset,
        a[170].first_at,
        a[170].last_at,
    );
    assert!(c
        .insert_pitr_segment(&late, late.last_at, HOLDER)
        .await
        .unwrap());
    kept_equals_folded(c, &inst, "after an out-of-order insert").await;
    assert_eq!(shard_runs(c, &inst, "a").await.len(), 2);
}

/// Every backup a restore to a point in time reads (a cluster's shards
/// may start from different ones, and the record names one base) is in
/// use, so deleting or expiring it is refused, until the restore's job is
/// done.
#[tokio::test]
async fn every_backup_a_pitr_restore_reads_is_in_use_until_it_ends() {
    use dcs_backup::catalog::{Catalog, NewRestore};
    use dcs_backup::model::{
        BackupId, Connection, Instance, ProjectId, RestoreId, RestoreStatus, Topology,
    };
    // A catalog with no service: no runner claims the job behind the test's back.
    let db = common::TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let url = db
        .url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/catalog.db", dir.path().display()));
    let c = Catalog::connect(&url).await.unwrap();
    let project = ProjectId::generate();
    c.create_credential(&project).await.unwrap();
    let source = InstanceId::from_stored("0f0e0d0c-0b0a-4000-8000-000000000003".into());
    c.insert_instance(&Instance {
        id: source.clone(),
        project_id: project.clone(),
        name: "s".into(),
        description: String::new(),
        connection: Connection {
            host: "127.0.0.1".into(),
            port: 1,
            username: None,
            password: None,
            tls: false,
        },
        topology: Topology {
            mode: "single".into(),
            engine: "redis".into(),
            version: "7.0.15".into(),
            shards: vec![],
        },
        policy: None,
        created_at: 1_000,
        updated_at: 1_000,
    })
    .await
    .unwrap();
    let in_use = |b: &'static str| {
        let c = &c;
        async move {
            c.backup_in_use(&BackupId::from_stored(b.into()))
                .await
                .unwrap()
        }
    };
    let id = RestoreId::generate();
    c.insert_pitr_restore(id.as_str(), &source, 1_000, &["backup-1", "backup-2"])
        .await
        .unwrap();
    c.enqueue_restore(&NewRestore {
        id: id.clone(),
        instance_id: source.clone(),
        project_id: project.clone(),
        backup_id: BackupId::from_stored("capture-base".into()),
        backup_name: "pitr_20261206000000".into(),
        backup_remark: String::new(),
        source_instance_id: source.clone(),
        source_instance_name: "s".into(),
        remark: String::new(),
        status: RestoreStatus::Waiting,
        created_at: 1_000,
        error: None,
        filter: None,
    })
    .await
    .unwrap();
    for b in ["backup-1", "backup-2", "capture-base"] {
        assert!(in_use(b).await, "{b} is read by the queued restore");
    }
    assert!(!in_use("backup-9").await);
    // The job's own pick, made later, adds the base it chose.
    c.add_pitr_restore_bases(id.as_str(), &["backup-3", "backup-1"])
        .await
        .unwrap();
    assert!(in_use("backup-3").await);
    let now = dcs_backup::model::now_millis();
    let job = c
        .claim_job("test", now, now + 60_000, 4)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.record_id, id.as_str());
    assert!(in_use("backup-2").await, "a running restore reads it too");
    assert!(c.finish_job(&job.id, "test", now).await.unwrap());
    for b in ["backup-1", "backup-2", "backup-3", "capture-base"] {
        assert!(!in_use(b).await, "{b} is free once the restore is done");
    }
}

/// The capture extending a shard's newest run and retention removing
/// that run's first segment at the same moment (a link idle for longer
/// than the window, then a write) leave the runs a fresh fold gives.
#[tokio::test]
async fn capture_and_retention_at_once_keep_the_runs_true() {
    let app = TestApp::spawn().await;
    let c = app.catalog();
    let inst = InstanceId::from_stored("0f0e0d0c-0b0a-4000-8000-000000000004".into());
    hold(c, &inst).await;
    let s = |i: i64| {
        seg(
            &inst,
            "a",
            "r",
            i * 100,
            i * 100 + 100,
            1_000 + i * 250,
            1_100 + i * 250,
        )
    };
    assert!(c.insert_pitr_segment(&s(0), 1_100, HOLDER).await.unwrap());
    for i in 1..150 {
        let (new, old) = (s(i), s(i - 1));
        let (a, b) = tokio::join!(
            c.insert_pitr_segment(&new, new.last_at, HOLDER),
            c.delete_pitr_segment(&old)
        );
        assert!(a.unwrap());
        assert!(b.unwrap());
    }
    let kept = c.pitr_runs(&inst).await.unwrap();
    c.rebuild_pitr_runs(&inst, "a").await.unwrap();
    assert_eq!(kept, c.pitr_runs(&inst).await.unwrap());
    assert_eq!((kept[0].start_offset, kept[0].end_offset), (14_900, 15_000));
}

/// A capture that stalled past its lease while another node took the
/// instance over stores no row beside the new holder's: the insert says
/// so and writes nothing (its object is left to the orphan sweep).
#[tokio::test]
async fn a_replaced_holder_stores_no_segment() {
    let app = TestApp::spawn().await;
    let c = app.catalog();
    let inst = InstanceId::from_stored("0f0e0d0c-0b0a-4000-8000-000000000005".into());
    assert!(c.claim_pitr_lease(&inst, HOLDER, 0, 1_000).await.unwrap());
    let first = seg(&inst, "a", "r", 0, 100, 500, 600);
    assert!(c.insert_pitr_segment(&first, 600, HOLDER).await.unwrap());
    // The lease lapsed at 1,000; another node takes it at 2,000.
    assert!(c
        .claim_pitr_lease(&inst, "other-node", 2_000, 10_000)
        .await
        .unwrap());
    let late = seg(&inst, "a", "r", 100, 200, 700, 800);
    assert!(!c.insert_pitr_segment(&late, 800, HOLDER).await.unwrap());
    assert_eq!(c.pitr_segments(&inst).await.unwrap(), vec![first.clone()]);
    let runs = c.pitr_runs(&inst).await.unwrap();
    assert_eq!((runs.len(), runs[0].end_offset), (1, 100));
    let link = c.pitr_links(&inst).await.unwrap();
    assert_eq!(
        link[0].end_offset, 100,
        "the link's position is the holder's"
    );
    // The new holder stores on.
    assert!(c
        .insert_pitr_segment(&late, 800, "other-node")
        .await
        .unwrap());
    assert_eq!(c.pitr_runs(&inst).await.unwrap()[0].end_offset, 200);
}

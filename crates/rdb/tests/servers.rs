//! Round trips through real servers: fill a Redis/Valkey with every type and
//! encoding, SAVE, then check that this crate reads the RDB to the end with
//! a good checksum, that its AOF is accepted by `redis-check-aof` and
//! rebuilds the same dataset in a fresh server, and that DUMP payloads cut
//! from the file RESTORE the same dataset too.
//!
//! Redis 7.0 is Debian's `redis-server`; Redis 6.2 and Valkey 9.1 come from
//! `DCS_TEST_REDIS62` / `DCS_TEST_VALKEY` and are skipped when unset.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::*;
use dcs_rdb::{
    decode_value, dump_payload, rdb_to_aof, verify, AofOptions, ChecksumStatus, Item, KeyEntry,
    RdbReader, ReadMode,
};

struct Parsed {
    keys: Vec<KeyEntry>,
    functions: Vec<Vec<u8>>,
    version: u32,
}

fn parse_all(rdb: &[u8]) -> Parsed {
    let mut reader = RdbReader::new(rdb, ReadMode::RawAndDecode).require_eof_after_trailer(true);
    let mut p = Parsed {
        keys: Vec::new(),
        functions: Vec::new(),
        version: 0,
    };
    let mut ended = false;
    while let Some(item) = reader.next_item().expect("parse") {
        match item {
            Item::Header { version, .. } => p.version = version,
            Item::Key(k) => p.keys.push(k),
            Item::Function { code } => p.functions.push(code),
            Item::End { checksum } => {
                assert!(
                    matches!(checksum, ChecksumStatus::Verified(_)),
                    "{checksum:?}"
                );
                ended = true;
            }
            _ => {}
        }
    }
    assert!(ended);
    assert_eq!(reader.offset(), rdb.len() as u64);
    // Decoding the raw slice alone gives the same value.
    for k in &p.keys {
        let again = decode_value(k.rdb_type, k.raw.as_ref().unwrap(), reader.flavor()).unwrap();
        assert_eq!(Some(&again), k.value.as_ref());
    }
    p
}

fn check_aof_file(src: &Server, aof: &[u8]) {
    let path = src.dir.join("converted.aof");
    std::fs::write(&path, aof).unwrap();
    let out = Command::new("redis-check-aof")
        .arg(&path)
        .output()
        .expect("run redis-check-aof");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "redis-check-aof refused the AOF: {text}"
    );
    assert!(text.contains("is valid"), "redis-check-aof said: {text}");
}

fn replay_aof(bin: &std::path::Path, kind: Kind, aof: Vec<u8>, commands: u64) -> Server {
    let dst = Server::start(bin, kind, &[]);
    let errors = dst.client().pipe(aof, commands);
    assert!(errors.is_empty(), "replay errors: {errors:?}");
    dst
}

fn restore_all(bin: &std::path::Path, kind: Kind, p: &Parsed, version: u16) -> Server {
    let dst = Server::start(bin, kind, &[]);
    let mut c = dst.client();
    for code in &p.functions {
        c.ok(&[&b"FUNCTION"[..], b"LOAD", code]);
    }
    let mut db = None;
    for k in &p.keys {
        if db != Some(k.db) {
            c.ok(&["SELECT", &k.db.to_string()]);
            db = Some(k.db);
        }
        let payload = dump_payload(k.rdb_type, k.raw.as_ref().unwrap(), version);
        let ttl = k.expire_ms.unwrap_or(0).to_string();
        c.ok(&[
            &b"RESTORE"[..],
            &k.key,
            ttl.as_bytes(),
            &payload,
            b"ABSTTL",
            b"REPLACE",
        ]);
    }
    dst
}

fn roundtrip(kind: Kind, extra: &[&str], big: bool) {
    let Some(bin) = server_binary(kind) else {
        eprintln!(
            "SKIP {kind:?}: server binary not configured (DCS_TEST_REDIS62 / DCS_TEST_VALKEY)"
        );
        return;
    };
    let src = Server::start(&bin, kind, extra);
    let mut c = src.client();
    fill_dataset(&mut c, kind, big);
    let want = snapshot(&mut c, kind, false);
    let want_exact = snapshot(&mut c, kind, true);
    assert!(
        want.len() > 40
            && want
                .iter()
                .any(|l| l.contains("xinfo") && l.contains("stream:main"))
    );
    let keyspace = c.keyspace();
    let rdb = src.save_rdb();

    // verify: checksum and counts, without decoding.
    let summary = verify(&rdb[..]).expect("verify");
    assert!(matches!(summary.checksum, ChecksumStatus::Verified(_)));
    let counted: Vec<(u64, u64)> = summary.keys_per_db.iter().map(|(d, n)| (*d, *n)).collect();
    assert_eq!(counted, keyspace);
    assert_eq!(summary.byte_len, rdb.len() as u64);
    assert_eq!(summary.functions, if kind.has_functions() { 1 } else { 0 });
    assert!(summary.server_version().is_some());
    assert_eq!(summary.expiring_keys, 4);

    // Full decode; DUMP payloads built from raw slices equal the server's own.
    let parsed = parse_all(&rdb);
    assert_eq!(parsed.keys.len() as u64, summary.total_keys);
    let version = parsed.version as u16;
    let mut types = BTreeMap::new();
    let mut db = None;
    for k in &parsed.keys {
        *types.entry(k.rdb_type).or_insert(0) += 1;
        if db != Some(k.db) {
            c.ok(&["SELECT", &k.db.to_string()]);
            db = Some(k.db);
        }
        let theirs = c.ok(&[&b"DUMP"[..], &k.key]).bytes();
        let ours = dump_payload(k.rdb_type, k.raw.as_ref().unwrap(), version);
        assert_eq!(
            ours,
            theirs,
            "DUMP payload of {:?}",
            String::from_utf8_lossy(&k.key)
        );
    }
    eprintln!(
        "{kind:?}: RDB {version}, {} bytes, type bytes seen {types:?}",
        rdb.len()
    );

    // AOF: accepted by redis-check-aof, replay rebuilds the same data.
    let mut aof = Vec::new();
    let stats = rdb_to_aof(&rdb[..], &mut aof, AofOptions::default()).expect("aof");
    assert_eq!(stats.keys, summary.total_keys);
    check_aof_file(&src, &aof);
    let dst = replay_aof(&bin, kind, aof, stats.commands);
    assert_eq!(snapshot(&mut dst.client(), kind, false), want);
    drop(dst);

    // RESTORE of payloads cut from the file rebuilds it exactly.
    let dst = restore_all(&bin, kind, &parsed, version);
    assert_eq!(snapshot(&mut dst.client(), kind, true), want_exact);
    drop(dst);

    // Skipping keys already expired at a given time.
    let mut aof = Vec::new();
    let opts = AofOptions {
        now_ms: Some(3_000_000_000_000),
        ..Default::default()
    };
    let stats = rdb_to_aof(&rdb[..], &mut aof, opts).expect("aof");
    assert_eq!(stats.expired_skipped, 2); // ttl:list (relative, soon) and ttl:hash
    let dst = replay_aof(&bin, kind, aof, stats.commands);
    let total: u64 = dst.client().keyspace().iter().map(|(_, n)| n).sum();
    assert_eq!(total, summary.total_keys - 2);
}

#[test]
fn redis_7_0_round_trip() {
    roundtrip(Kind::Redis70, &["--maxmemory-policy", "allkeys-lfu"], true);
}

#[test]
fn redis_6_2_round_trip() {
    roundtrip(Kind::Redis62, &["--maxmemory-policy", "allkeys-lru"], false);
}

#[test]
fn valkey_9_1_round_trip() {
    roundtrip(Kind::Valkey91, &[], true);
}

/// A Redis 6.2 backup restored into Redis 7.0, by AOF and by RESTORE.
#[test]
fn redis_6_2_into_7_0() {
    let (Some(old), Some(new)) = (server_binary(Kind::Redis62), server_binary(Kind::Redis70))
    else {
        eprintln!("SKIP: DCS_TEST_REDIS62 not set");
        return;
    };
    let src = Server::start(&old, Kind::Redis62, &[]);
    let mut c = src.client();
    fill_dataset(&mut c, Kind::Redis62, false);
    let digest = c.digest();
    let keyspace = c.keyspace();
    let rdb = src.save_rdb();
    let parsed = parse_all(&rdb);
    let mut aof = Vec::new();
    let stats = rdb_to_aof(&rdb[..], &mut aof, AofOptions::default()).unwrap();
    let dst = replay_aof(&new, Kind::Redis70, aof, stats.commands);
    let mut d = dst.client();
    assert_eq!(
        (d.digest(), d.keyspace()),
        (digest.clone(), keyspace.clone())
    );
    let dst = restore_all(&new, Kind::Redis70, &parsed, parsed.version as u16);
    let mut d = dst.client();
    assert_eq!((d.digest(), d.keyspace()), (digest, keyspace));
}

/// Regenerate `tests/fixtures/*.rdb` (small real RDBs used by the
/// corruption tests and as fuzzing seeds):
/// `cargo test -p dcs-rdb --test servers -- --ignored generate_fixtures`.
#[test]
#[ignore]
fn generate_fixtures() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    for (kind, name) in [
        (Kind::Redis62, "redis-6.2.rdb"),
        (Kind::Redis70, "redis-7.0.rdb"),
        (Kind::Valkey91, "valkey-9.1.rdb"),
    ] {
        let Some(bin) = server_binary(kind) else {
            eprintln!("SKIP {kind:?}");
            continue;
        };
        let src = Server::start(&bin, kind, &[]);
        fill_mini(&mut src.client(), kind);
        let rdb = src.save_rdb();
        parse_all(&rdb);
        std::fs::write(dir.join(name), rdb).unwrap();
    }
}

/// A Redis 7.0 backup into Redis 6.2, the way the restore path falls back:
/// RESTORE for values whose encoding 6.2 knows (payload stamped 9), decoded
/// commands for the rest (listpacks, stream v2).
#[test]
fn redis_7_0_into_6_2_with_command_fallback() {
    let (Some(new), Some(old)) = (server_binary(Kind::Redis70), server_binary(Kind::Redis62))
    else {
        eprintln!("SKIP: DCS_TEST_REDIS62 not set");
        return;
    };
    let src = Server::start(&new, Kind::Redis70, &[]);
    let mut c = src.client();
    fill_dataset(&mut c, Kind::Redis62, false); // no functions: 6.2 has none
    let digest = c.digest();
    let keyspace = c.keyspace();
    let rdb = src.save_rdb();
    let parsed = parse_all(&rdb);
    let dst = Server::start(&old, Kind::Redis62, &[]);
    let mut d = dst.client();
    let opts = AofOptions {
        legacy_streams: true,
        ..Default::default()
    };
    let (mut restored, mut fallback) = (0, 0);
    let mut db = None;
    for k in &parsed.keys {
        if db != Some(k.db) {
            d.ok(&["SELECT", &k.db.to_string()]);
            db = Some(k.db);
        }
        let min = dcs_rdb::min_rdb_version_for_type(k.rdb_type, dcs_rdb::Flavor::Redis).unwrap();
        if min <= 9 {
            let ttl = k.expire_ms.unwrap_or(0).to_string();
            d.ok(&[
                &b"RESTORE"[..],
                &k.key,
                ttl.as_bytes(),
                &k.dump_payload(9).unwrap(),
                b"ABSTTL",
                b"REPLACE",
            ]);
            restored += 1;
        } else {
            let mut cmds = Vec::new();
            let n = dcs_rdb::write_key_commands(
                &mut cmds,
                &k.key,
                k.value.as_ref().unwrap(),
                k.expire_ms,
                &opts,
            )
            .unwrap();
            let errors = d.pipe(cmds, n);
            assert!(errors.is_empty(), "{errors:?}");
            fallback += 1;
        }
    }
    assert!(restored > 5 && fallback > 5, "{restored} {fallback}");
    assert_eq!((d.digest(), d.keyspace()), (digest, keyspace));
}

//! Hand-built RDBs for formats the test servers do not write any more (or
//! not yet): RDB 6 linked lists, string-score zsets, zipmaps and ziplists,
//! second-precision expiry, module values and aux data, pre-GA functions,
//! Redis 7.4 hash field expiration, files without or with a zero checksum.

use crate::aof::{write_key_commands, AofOptions};
use crate::crc64::crc64;
use crate::encodings::tests::{lp_build, lp_int, lp_str};
use crate::reader::{ChecksumStatus, Item, RdbReader, ReadMode};
use crate::types::*;
use crate::value::{HashField, Value};
use crate::RdbError;

fn len(n: u64) -> Vec<u8> {
    if n < 64 {
        vec![n as u8]
    } else if n < 16384 {
        vec![0x40 | (n >> 8) as u8, n as u8]
    } else if n <= u32::MAX as u64 {
        let mut v = vec![0x80];
        v.extend_from_slice(&(n as u32).to_be_bytes());
        v
    } else {
        let mut v = vec![0x81];
        v.extend_from_slice(&n.to_be_bytes());
        v
    }
}

fn s(b: &[u8]) -> Vec<u8> {
    let mut v = len(b.len() as u64);
    v.extend_from_slice(b);
    v
}

fn finish(mut body: Vec<u8>, checksum: bool) -> Vec<u8> {
    body.push(OPCODE_EOF);
    let c = if checksum { crc64(0, &body) } else { 0 };
    body.extend_from_slice(&c.to_le_bytes());
    body
}

fn module_id(name: &str, encver: u64) -> u64 {
    const CSET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut id = 0u64;
    for c in name.bytes() {
        id = (id << 6) | CSET.iter().position(|&x| x == c).unwrap() as u64;
    }
    (id << 10) | encver
}

fn items(data: &[u8], mode: ReadMode) -> Vec<Result<Item, RdbError>> {
    let mut r = RdbReader::new(data, mode);
    let mut out = Vec::new();
    loop {
        match r.next_item() {
            Ok(Some(i)) => out.push(Ok(i)),
            Ok(None) => return out,
            Err(e) => {
                let fatal = !matches!(e, RdbError::Module { .. });
                out.push(Err(e));
                if fatal {
                    return out;
                }
            }
        }
    }
}

fn values(data: &[u8]) -> Vec<(Vec<u8>, Option<i64>, Value)> {
    items(data, ReadMode::Decode)
        .into_iter()
        .filter_map(|i| match i.unwrap() {
            Item::Key(k) => Some((k.key, k.expire_ms, k.value.unwrap())),
            _ => None,
        })
        .collect()
}

fn ziplist(entries: &[&[u8]]) -> Vec<u8> {
    // Strings only, all short: prevlen 1 byte.
    let mut body = Vec::new();
    let mut prev = 0;
    let mut tail = 10;
    for e in entries {
        tail = 10 + body.len();
        let start = body.len();
        body.push(prev as u8);
        body.push(e.len() as u8);
        body.extend_from_slice(e);
        prev = body.len() - start;
    }
    let mut zl = Vec::new();
    zl.extend_from_slice(&((10 + body.len() + 1) as u32).to_le_bytes());
    zl.extend_from_slice(&(tail as u32).to_le_bytes());
    zl.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    zl.extend_from_slice(&body);
    zl.push(0xff);
    zl
}

#[test]
fn old_encodings_rdb6() {
    let mut b = b"REDIS0006".to_vec();
    b.push(OPCODE_SELECTDB);
    b.extend(len(2));
    // EXPIRETIME in seconds, then an RDB_TYPE_LIST (linked list).
    b.push(OPCODE_EXPIRETIME);
    b.extend_from_slice(&2_000_000_000i32.to_le_bytes());
    b.push(TYPE_LIST);
    b.extend(s(b"oldlist"));
    b.extend(len(3));
    b.extend(s(b"a"));
    b.extend([0xc0, 0xfb]); // int8 -5
    b.extend([0xc1, 0x39, 0x30]); // int16 12345
                                  // RDB_TYPE_ZSET with string scores and the special lengths.
    b.push(TYPE_ZSET);
    b.extend(s(b"oldzset"));
    b.extend(len(3));
    b.extend(s(b"m1"));
    b.extend([3, b'1', b'.', b'5']);
    b.extend(s(b"m2"));
    b.push(255);
    b.extend(s(b"m3"));
    b.push(254);
    // Zipmap hash, ziplist list/zset/hash.
    b.push(TYPE_HASH_ZIPMAP);
    b.extend(s(b"zm"));
    b.extend(s(b"\x02\x03foo\x03\x00bar\x05hello\x05\x01world!\xff"));
    b.push(TYPE_LIST_ZIPLIST);
    b.extend(s(b"zl"));
    b.extend(s(&ziplist(&[b"x", b"yy"])));
    b.push(TYPE_ZSET_ZIPLIST);
    b.extend(s(b"zz"));
    b.extend(s(&ziplist(&[b"mem", b"2.25"])));
    b.push(TYPE_HASH_ZIPLIST);
    b.extend(s(b"zh"));
    b.extend(s(&ziplist(&[b"f", b"v"])));
    let data = finish(b, true);

    let v = values(&data);
    assert_eq!(v[0].0, b"oldlist");
    assert_eq!(v[0].1, Some(2_000_000_000_000));
    assert_eq!(
        v[0].2,
        Value::List(vec![b"a".to_vec(), b"-5".to_vec(), b"12345".to_vec()])
    );
    assert_eq!(
        v[1].2,
        Value::SortedSet(vec![
            (b"m1".to_vec(), 1.5),
            (b"m2".to_vec(), f64::NEG_INFINITY),
            (b"m3".to_vec(), f64::INFINITY)
        ])
    );
    let Value::Hash(h) = &v[2].2 else { panic!() };
    assert_eq!(h.len(), 2);
    assert_eq!(
        (h[1].field.as_slice(), h[1].value.as_slice()),
        (&b"hello"[..], &b"world"[..])
    );
    assert_eq!(v[3].2, Value::List(vec![b"x".to_vec(), b"yy".to_vec()]));
    assert_eq!(v[4].2, Value::SortedSet(vec![(b"mem".to_vec(), 2.25)]));
    assert_eq!(
        v[5].2,
        Value::Hash(vec![HashField {
            field: b"f".to_vec(),
            value: b"v".to_vec(),
            expire_ms: None
        }])
    );
    let last = items(&data, ReadMode::Skip).pop().unwrap().unwrap();
    assert!(matches!(
        last,
        Item::End {
            checksum: ChecksumStatus::Verified(_)
        }
    ));
}

#[test]
fn modules_functions_and_checksums() {
    let id = module_id("dcs-mod01", 2);
    let mut b = b"REDIS0010".to_vec();
    b.push(OPCODE_MODULE_AUX);
    b.extend(len(id));
    b.extend(len(2)); // when_opcode UINT
    b.extend(len(1)); // when
    b.extend(len(5)); // STRING
    b.extend(s(b"aux"));
    b.extend(len(0)); // EOF
    b.push(OPCODE_FUNCTION_PRE_GA);
    b.extend(s(b"lib"));
    b.extend(s(b"LUA"));
    b.extend(len(0));
    b.extend(s(b"redis.register_function('f', function() return 1 end)"));
    b.push(TYPE_MODULE_2);
    b.extend(s(b"modkey"));
    b.extend(len(id));
    b.extend(len(1)); // SINT
    b.extend(len(7));
    b.extend(len(4)); // DOUBLE
    b.extend(1.5f64.to_le_bytes());
    b.extend(len(3)); // FLOAT
    b.extend(1.5f32.to_le_bytes());
    b.extend(len(5)); // STRING
    b.extend(s(b"payload"));
    b.extend(len(0));
    b.push(TYPE_STRING);
    b.extend(s(b"after"));
    b.extend(s(b"ok"));
    let data = finish(b.clone(), true);

    // Raw mode slices the module value; decode mode names the module and
    // goes on with the next key.
    let raw = items(&data, ReadMode::Raw);
    assert!(raw.iter().all(|i| i.is_ok()));
    assert!(
        matches!(raw[1].as_ref().unwrap(), Item::ModuleAux { module_name, .. } if module_name == "dcs-mod01")
    );
    let dec = items(&data, ReadMode::Decode);
    assert!(matches!(&dec[3], Err(RdbError::Module { name }) if name == "dcs-mod01"));
    assert!(matches!(dec[4].as_ref().unwrap(), Item::Key(k) if k.key == b"after"));
    assert!(matches!(dec[5].as_ref().unwrap(), Item::End { .. }));

    let zero = finish(b.clone(), false);
    assert!(matches!(
        items(&zero, ReadMode::Skip).pop().unwrap().unwrap(),
        Item::End {
            checksum: ChecksumStatus::Disabled
        }
    ));
    let mut wrong = data.clone();
    let n = wrong.len();
    wrong[n - 1] ^= 1;
    assert!(matches!(
        items(&wrong, ReadMode::Skip).pop().unwrap(),
        Err(RdbError::ChecksumMismatch { .. })
    ));

    // RDB 4: no trailer at all.
    let mut old = b"REDIS0004".to_vec();
    old.push(TYPE_STRING);
    old.extend(s(b"k"));
    old.extend(s(b"v"));
    old.push(OPCODE_EOF);
    assert!(matches!(
        items(&old, ReadMode::Decode).pop().unwrap().unwrap(),
        Item::End {
            checksum: ChecksumStatus::Absent
        }
    ));
}

#[test]
fn redis_7_4_hash_field_expiration() {
    let mut b = b"REDIS0012".to_vec();
    // RDB_TYPE_HASH_METADATA: minExpire, then (ttl relative+1, field, value).
    b.push(TYPE_HASH_METADATA);
    b.extend(s(b"hm"));
    b.extend(1_000_000u64.to_le_bytes());
    b.extend(len(2));
    b.extend(len(0));
    b.extend(s(b"plain"));
    b.extend(s(b"1"));
    b.extend(len(11));
    b.extend(s(b"ttl"));
    b.extend(s(b"2"));
    // RDB_TYPE_HASH_LISTPACK_EX: minExpire + listpack of triples.
    b.push(TYPE_HASH_LISTPACK_EX);
    b.extend(s(b"hl"));
    b.extend(5_000_000u64.to_le_bytes());
    let lp = lp_build(&[
        lp_str(b"a"),
        lp_str(b"x"),
        lp_int(0),
        lp_str(b"b"),
        lp_int(7),
        lp_int(5_000_000),
    ]);
    b.extend(s(&lp));
    // Pre-GA forms: absolute TTLs.
    b.push(TYPE_22);
    b.extend(s(b"hp"));
    b.extend(len(1));
    b.extend(len(123_456));
    b.extend(s(b"f"));
    b.extend(s(b"v"));
    b.push(TYPE_HASH_LISTPACK_EX_PRE_GA);
    b.extend(s(b"hq"));
    b.extend(s(&lp_build(&[lp_str(b"f"), lp_str(b"v"), lp_int(99_999)])));
    let data = finish(b, true);
    let v = values(&data);
    let h = |i: usize| match &v[i].2 {
        Value::Hash(h) => h
            .iter()
            .map(|f| (f.field.clone(), f.value.clone(), f.expire_ms))
            .collect::<Vec<_>>(),
        _ => panic!(),
    };
    assert_eq!(
        h(0),
        vec![
            (b"plain".to_vec(), b"1".to_vec(), None),
            (b"ttl".to_vec(), b"2".to_vec(), Some(1_000_010))
        ]
    );
    assert_eq!(
        h(1),
        vec![
            (b"a".to_vec(), b"x".to_vec(), None),
            (b"b".to_vec(), b"7".to_vec(), Some(5_000_000))
        ]
    );
    assert_eq!(h(2), vec![(b"f".to_vec(), b"v".to_vec(), Some(123_456))]);
    assert_eq!(h(3), vec![(b"f".to_vec(), b"v".to_vec(), Some(99_999))]);

    // The AOF sets field TTLs with HPEXPIREAT, and drops expired fields.
    let mut out = Vec::new();
    write_key_commands(&mut out, b"hm", &v[0].2, None, &AofOptions::default()).unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains(
        "HPEXPIREAT\r\n$2\r\nhm\r\n$7\r\n1000010\r\n$6\r\nFIELDS\r\n$1\r\n1\r\n$3\r\nttl"
    ));
    let mut out = Vec::new();
    let opts = AofOptions {
        now_ms: Some(2_000_000),
        ..Default::default()
    };
    write_key_commands(&mut out, b"hm", &v[0].2, None, &opts).unwrap();
    assert!(!String::from_utf8_lossy(&out).contains("HPEXPIREAT"));
}

#[test]
fn errors_are_sticky_and_iteration_ends() {
    let mut r = RdbReader::new(&b"REDIS0010\x00\x01k"[..], ReadMode::Decode);
    assert!(r.next_item().unwrap().is_some());
    assert!(r.next_item().is_err());
    assert!(r.next_item().is_err());
    let all: Vec<_> = RdbReader::new(&b"NOTANRDB!"[..], ReadMode::Skip).collect();
    assert_eq!(all.len(), 1);
    assert!(all[0].is_err());
}

#[test]
fn declared_lengths_above_the_bounds_are_refused_before_reading() {
    // A 4 GiB aux value with no bytes behind it: refused by its length.
    let mut aux = b"REDIS0011".to_vec();
    aux.push(OPCODE_AUX);
    aux.extend(s(b"redis-ver"));
    aux.extend(len(4 << 30));
    let mut r = RdbReader::new(&aux[..], ReadMode::Skip);
    r.next_item().unwrap();
    match r.next_item() {
        Err(RdbError::TooLarge { what, len, .. }) => {
            assert_eq!((what, len), ("aux field", 4 << 30));
        }
        other => panic!("{other:?}"),
    }
    // A string value above the reader's bound, skipped or decoded.
    let mut key = b"REDIS0011".to_vec();
    key.push(TYPE_STRING);
    key.extend(s(b"k"));
    key.extend(len(2048));
    for mode in [ReadMode::Skip, ReadMode::Decode] {
        let mut r = RdbReader::new(&key[..], mode).max_string(1024);
        r.next_item().unwrap();
        let e = r.next_item().unwrap_err();
        assert!(
            matches!(
                e,
                RdbError::TooLarge {
                    len: 2048,
                    limit: 1024,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("above the limit"), "{e}");
    }
}

#[test]
fn verify_filtered_checks_everything_and_counts_only_the_kept_keys() {
    let mut b = b"REDIS0010".to_vec();
    for (db, keys) in [
        (0u64, &["user:1", "user:2", "job:1"][..]),
        (3, &["user:3"][..]),
    ] {
        b.push(OPCODE_SELECTDB);
        b.extend(len(db));
        for k in keys {
            b.push(TYPE_STRING);
            b.extend(s(k.as_bytes()));
            b.extend(s(b"0123456789"));
        }
    }
    b.push(TYPE_SET);
    b.extend(s(b"user:set"));
    b.extend(len(2));
    b.extend(s(b"a"));
    b.extend(s(b"b"));
    let file = finish(b, true);

    let all = crate::verify(&file[..]).unwrap();
    assert_eq!(all.total_keys, 5);
    let mut seen = Vec::new();
    let some = crate::verify_filtered(&file[..], |db, key, t| {
        seen.push((db, key.to_vec(), t));
        key.starts_with(b"user:") && t == TYPE_STRING
    })
    .unwrap();
    assert_eq!(seen.len(), 5, "every key is offered with its name");
    assert_eq!(some.total_keys, 3);
    assert_eq!(some.keys_per_db.get(&0), Some(&2));
    assert_eq!(some.keys_per_db.get(&3), Some(&1));
    assert_eq!(some.keys_per_rdb_type.get(&TYPE_SET), None);
    assert_eq!(some.checksum, all.checksum);
    // Each kept string is a 6-byte name and a 10-byte value.
    assert_eq!(some.expanded_bytes, 3 * 16);
    assert!(all.expanded_bytes > some.expanded_bytes);

    // A corrupt file is refused whatever the filter keeps.
    let mut bad = file.clone();
    let n = bad.len();
    bad[n - 3] ^= 0xff;
    assert!(crate::verify_filtered(&bad[..], |_, _, _| false).is_err());
}

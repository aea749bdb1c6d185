//! Hostile input: every prefix of real RDB files, bit flips with and without
//! a checksum, and garbage must end in an error (or, for the complete file,
//! success), never a panic, a hang or a runaway allocation.

use dcs_rdb::{verify, RdbReader, ReadMode};

const FIXTURES: &[(&str, &[u8])] = &[
    ("redis-6.2", include_bytes!("fixtures/redis-6.2.rdb")),
    ("redis-7.0", include_bytes!("fixtures/redis-7.0.rdb")),
    ("valkey-9.1", include_bytes!("fixtures/valkey-9.1.rdb")),
];

fn read_all(data: &[u8], mode: ReadMode) -> Result<usize, dcs_rdb::RdbError> {
    let mut r = RdbReader::new(data, mode).require_eof_after_trailer(true);
    let mut n = 0;
    loop {
        match r.next_item() {
            Ok(Some(_)) => n += 1,
            Ok(None) => return Ok(n),
            // A module value is the one recoverable error; none are here.
            Err(e) => return Err(e),
        }
    }
}

#[test]
fn fixtures_parse_completely() {
    for (name, data) in FIXTURES {
        for mode in [
            ReadMode::Skip,
            ReadMode::Raw,
            ReadMode::Decode,
            ReadMode::RawAndDecode,
        ] {
            read_all(data, mode).unwrap_or_else(|e| panic!("{name} {mode:?}: {e}"));
        }
        let s = verify(*data).unwrap();
        assert!(s.total_keys >= 13, "{name}: {s:?}");
    }
}

#[test]
fn every_prefix_is_an_error() {
    for (name, data) in FIXTURES {
        for cut in 0..data.len() {
            for mode in [ReadMode::Skip, ReadMode::Decode, ReadMode::RawAndDecode] {
                assert!(
                    read_all(&data[..cut], mode).is_err(),
                    "{name}: prefix {cut} accepted in {mode:?}"
                );
            }
            assert!(verify(&data[..cut]).is_err());
        }
    }
}

#[test]
fn trailing_garbage_is_an_error() {
    for (_, data) in FIXTURES {
        let mut d = data.to_vec();
        d.push(0);
        assert!(verify(&d[..]).is_err());
    }
}

#[test]
fn bit_flips_are_caught_by_the_checksum() {
    for (name, data) in FIXTURES {
        for i in 0..data.len() {
            let mut d = data.to_vec();
            d[i] ^= 1 << (i % 8);
            assert!(
                read_all(&d, ReadMode::RawAndDecode).is_err(),
                "{name}: flip at {i} accepted"
            );
        }
    }
}

#[test]
fn bit_flips_without_checksum_are_refused_or_read_consistently() {
    // With the trailer zeroed ("rdbchecksum no"), damage reaches the
    // structural checks and the value decoder. A flip inside a value's
    // bytes can leave a valid file; every other flip must be refused, and
    // every mode must agree on which is which.
    for (name, data) in FIXTURES {
        let mut base = data.to_vec();
        let n = base.len();
        base[n - 8..].fill(0);
        read_all(&base, ReadMode::RawAndDecode).unwrap();
        let (mut tried, mut refused) = (0, 0);
        for i in 9..n - 9 {
            let mut variants: Vec<Vec<u8>> = Vec::new();
            for bit in [0, 3, 7] {
                let mut d = base.clone();
                d[i] ^= 1 << bit;
                variants.push(d);
            }
            for byte in [0x00, 0xff, 0x80, 0xc3, 0x7f] {
                let mut d = base.clone();
                d[i] = byte;
                variants.push(d);
            }
            for d in variants {
                tried += 1;
                let full = read_all(&d, ReadMode::RawAndDecode);
                let decoded = read_all(&d, ReadMode::Decode);
                match &full {
                    Err(_) => refused += 1,
                    // An accepted file reads the same in the decoding modes.
                    Ok(items) => assert_eq!(decoded.as_ref().ok(), Some(items), "{name} at {i}"),
                }
                let _ = read_all(&d, ReadMode::Skip);
            }
        }
        // Most damage lands on lengths, opcodes, encodings and headers.
        assert!(
            refused * 5 > tried * 2,
            "{name}: only {refused} of {tried} corruptions were refused"
        );
    }
}

#[test]
fn absurd_lengths_do_not_allocate() {
    // A string claiming 2^63 bytes, an LZF string claiming a huge output,
    // a list claiming 2^60 elements: each must fail fast on the short input.
    let cases: &[&[u8]] = &[
        b"REDIS0010\x00\x01k\x81\x7f\xff\xff\xff\xff\xff\xff\xff",
        b"REDIS0010\x00\x01k\xc3\x02\x81\x7f\xff\xff\xff\xff\xff\xff\xff\x00a",
        b"REDIS0010\x01\x01k\x81\x10\x00\x00\x00\x00\x00\x00\x00\x01a",
        b"REDIS0010\x0f\x01k\x81\x10\x00\x00\x00\x00\x00\x00\x00",
    ];
    for c in cases {
        for mode in [ReadMode::Skip, ReadMode::Decode, ReadMode::RawAndDecode] {
            assert!(read_all(c, mode).is_err());
        }
    }
}

#[test]
fn garbage_is_refused_and_never_panics() {
    // A cheap deterministic generator: many random files with a valid header.
    let mut x: u64 = 0x1234_5678_9abc_def0;
    for _ in 0..3000 {
        let mut d = b"REDIS0011".to_vec();
        let len = (x % 200) as usize;
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            d.push((x >> 24) as u8);
        }
        // Random bytes never form a file that ends in EOF, a trailer and
        // nothing else: every one is refused.
        assert!(
            read_all(&d, ReadMode::RawAndDecode).is_err(),
            "garbage accepted: {d:?}"
        );
    }
}

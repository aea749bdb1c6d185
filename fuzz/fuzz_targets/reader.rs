//! Arbitrary bytes through the streaming reader in every mode, the value
//! decoder for every type byte, the DUMP payload parser and verify.
#![no_main]

use dcs_rdb::{decode_value, parse_dump_payload, verify, Flavor, RdbError, RdbReader, ReadMode};
use libfuzzer_sys::fuzz_target;

fn drain(data: &[u8], mode: ReadMode) {
    let mut r = RdbReader::new(data, mode);
    // Bounded: every item consumes input, so this ends.
    loop {
        match r.next_item() {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(RdbError::Module { .. }) => {}
            Err(_) => break,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    drain(data, ReadMode::RawAndDecode);
    drain(data, ReadMode::Decode);
    drain(data, ReadMode::Skip);
    let _ = verify(data);
    // Headerless: the input as a file body behind valid headers.
    for header in [&b"REDIS0009"[..], b"REDIS0011", b"VALKEY080"] {
        let mut file = header.to_vec();
        file.extend_from_slice(data);
        drain(&file, ReadMode::RawAndDecode);
    }
    if let Some((&t, rest)) = data.split_first() {
        let _ = decode_value(t % 26, rest, Flavor::Redis);
        let _ = decode_value(t % 26, rest, Flavor::Valkey);
    }
    let _ = parse_dump_payload(data);
});

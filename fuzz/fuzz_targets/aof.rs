//! Arbitrary bytes decoded as a value (type byte first) or as an RDB body,
//! then written as AOF commands.
#![no_main]

use dcs_rdb::{decode_value, rdb_to_aof, write_key_commands, AofOptions, Flavor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&t, rest)) = data.split_first() {
        for flavor in [Flavor::Redis, Flavor::Valkey] {
            if let Ok(v) = decode_value(t % 26, rest, flavor) {
                let mut out = Vec::new();
                let _ = write_key_commands(&mut out, b"k", &v, Some(5), &AofOptions::default());
                let opts = AofOptions {
                    now_ms: Some(1 << 40),
                    items_per_cmd: 3,
                    legacy_streams: true,
                };
                let _ = write_key_commands(&mut out, b"k", &v, None, &opts);
            }
        }
    }
    let mut file = b"REDIS0011".to_vec();
    file.extend_from_slice(data);
    let _ = rdb_to_aof(&file[..], std::io::sink(), AofOptions::default());
    let _ = rdb_to_aof(data, std::io::sink(), AofOptions::default());
});

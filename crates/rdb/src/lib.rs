//! `dcs-rdb`: the RDB format for dcs-backup.
//!
//! A pure, std-only crate: a streaming reader that walks an RDB item by item
//! while checking its CRC-64 ([`RdbReader`]), the exact bytes of every value
//! for DUMP/RESTORE payloads ([`dump`]), a decoder to typed values
//! ([`Value`]), an AOF writer ([`aof`]) and a fast [`verify()`] pass.
//! It follows Redis's `src/rdb.c`, `src/rdb.h`, `src/listpack.c`,
//! `src/ziplist.c`, `src/intset.c`, `src/zipmap.c`, `src/t_stream.c`,
//! `src/aof.c`, `src/cluster.c`, and Valkey's `src/rdb.c`/`src/rdb.h`.
//!
//! Invariant: no input can make it panic, loop forever or allocate beyond
//! what the input itself contains; every problem is an [`RdbError`].

#![warn(missing_docs)]

pub mod aof;
mod bytes;
pub mod crc64;
pub mod dump;
pub mod encodings;
mod error;
pub mod lzf;
pub mod reader;
mod source;
pub mod types;
pub mod value;
pub mod verify;

pub use aof::{format_double, rdb_to_aof, write_key_commands, AofOptions, AofStats, AofWriter};
pub use bytes::{int_to_bytes, parse_double};
pub use crc64::{crc64, Crc64};
pub use dump::{
    dump_payload, parse_dump_payload, rdb_version_for_server, write_dump_payload,
    write_restore_command, DumpPayload,
};
pub use error::RdbError;
pub use reader::{ChecksumStatus, Item, KeyEntry, RdbReader, ReadMode};
pub use types::{
    min_rdb_version_for_type, module_name_from_id, rdb_version_of_magic, server_loads_rdb, Flavor,
    Magic,
};
pub use value::{
    decode_value, Consumer, ConsumerGroup, HashField, PendingEntry, Stream, StreamEntry, StreamId,
    Value,
};
pub use verify::{has_field_ttls, verify, verify_filtered, RdbSummary};

/// Longest string a reader accepts unless told otherwise: Redis's own
/// `proto-max-bulk-len` default (512 MiB).
pub const DEFAULT_MAX_STRING: u64 = 512 * 1024 * 1024;
/// Longest aux field (`redis-ver`, `repl-id`, …) a reader accepts; real
/// ones are a few dozen bytes.
pub const MAX_AUX: u64 = 1024 * 1024;

#[cfg(test)]
mod synthetic_tests;

//! DUMP / RESTORE payloads (`createDumpPayload` and `verifyDumpPayload` in
//! Redis's `src/cluster.c`): `<type byte><value bytes as in the RDB>
//! <2-byte LE RDB version><8-byte LE CRC-64 of everything before>`.
//!
//! A server refuses a payload whose version is newer than its own
//! (`rdbver > RDB_VERSION`), so the caller picks the version to stamp: the
//! source file's version is always right for a server at least as new; an
//! older target may still load the bytes if it knows every encoding used.

use crate::crc64::{crc64, Crc64};
use crate::error::RdbError;

/// Build a payload for `RESTORE key ttl <payload> [ABSTTL] [REPLACE]` from a
/// key entry's type byte and raw value bytes.
pub fn dump_payload(rdb_type: u8, raw_value: &[u8], rdb_version: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_len(raw_value));
    write_dump_payload(&mut out, rdb_type, raw_value, rdb_version);
    out
}

/// The size of a payload for `raw_value`.
fn payload_len(raw_value: &[u8]) -> usize {
    1 + raw_value.len() + 2 + 8
}

/// Appends the payload of [`dump_payload`] to `out`: the one writer of
/// DUMP payloads.
pub fn write_dump_payload(out: &mut Vec<u8>, rdb_type: u8, raw_value: &[u8], rdb_version: u16) {
    let start = out.len();
    out.push(rdb_type);
    out.extend_from_slice(raw_value);
    out.extend_from_slice(&rdb_version.to_le_bytes());
    let mut c = Crc64::new();
    c.update(&out[start..]);
    out.extend_from_slice(&c.value().to_le_bytes());
}

/// Appends `RESTORE key ttl <payload> ABSTTL REPLACE` as a RESP command,
/// the payload built in place (no copy of a big value): `ttl` is the
/// absolute expiry in ms, 0 for none.
pub fn write_restore_command(
    out: &mut Vec<u8>,
    key: &[u8],
    expire_ms: Option<i64>,
    rdb_type: u8,
    raw_value: &[u8],
    rdb_version: u16,
) {
    use std::io::Write;
    let ttl = expire_ms.unwrap_or(0).to_string();
    let _ = write!(out, "*6\r\n$7\r\nRESTORE\r\n${}\r\n", key.len());
    out.extend_from_slice(key);
    let _ = write!(
        out,
        "\r\n${}\r\n{ttl}\r\n${}\r\n",
        ttl.len(),
        payload_len(raw_value)
    );
    write_dump_payload(out, rdb_type, raw_value, rdb_version);
    out.extend_from_slice(b"\r\n$6\r\nABSTTL\r\n$7\r\nREPLACE\r\n");
}

/// The RDB version a server writes (and the newest it accepts in a DUMP
/// payload), from `INFO server`: `redis_version` and, for Valkey, its
/// `valkey_version` (Valkey 9 reports `redis_version:7.2.4` for
/// compatibility). Follows the `RDB_VERSION` of each release line: Redis
/// 6.0/6.2 → 9, 7.0 → 10, 7.2 → 11, 7.4+ → 12; Valkey 7.2/8.x → 11, 9.x →
/// 80. `None` when the version cannot be parsed.
pub fn rdb_version_for_server(redis_version: &str, valkey_version: Option<&str>) -> Option<u16> {
    fn major_minor(v: &str) -> Option<(u32, u32)> {
        let mut it = v.trim().split('.');
        let major = it.next()?.parse().ok()?;
        let minor = it.next().unwrap_or("0").parse().ok()?;
        Some((major, minor))
    }
    if let Some(v) = valkey_version {
        let (major, _) = major_minor(v)?;
        return Some(if major >= 9 { 80 } else { 11 });
    }
    let (major, minor) = major_minor(redis_version)?;
    Some(match (major, minor) {
        (0..=1, _) => 1,
        (2, 0..=4) => 4,
        (2, _) => 6,
        (3, _) => 7,
        (4, _) => 8,
        (5, _) | (6, _) => 9,
        (7, 0..=1) => 10,
        (7, 2..=3) => 11,
        _ => 12,
    })
}

/// A checked view of a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpPayload<'a> {
    /// The type byte.
    pub rdb_type: u8,
    /// The value bytes.
    pub value: &'a [u8],
    /// The stamped RDB version.
    pub rdb_version: u16,
}

/// Split and verify a payload the way `verifyDumpPayload` does (without the
/// version ceiling, which is the target's business).
pub fn parse_dump_payload(p: &[u8]) -> Result<DumpPayload<'_>, RdbError> {
    if p.len() < 11 {
        return Err(RdbError::corrupt("DUMP payload too short"));
    }
    let body_end = p.len() - 10;
    let footer = &p[body_end..];
    let rdb_version = u16::from_le_bytes([footer[0], footer[1]]);
    let mut crc = [0u8; 8];
    crc.copy_from_slice(&footer[2..]);
    let expected = u64::from_le_bytes(crc);
    let computed = crc64(0, &p[..p.len() - 8]);
    if expected != computed {
        return Err(RdbError::ChecksumMismatch { expected, computed });
    }
    Ok(DumpPayload {
        rdb_type: p[0],
        value: &p[1..body_end],
        rdb_version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_versions() {
        assert_eq!(rdb_version_for_server("6.2.14", None), Some(9));
        assert_eq!(rdb_version_for_server("7.0.15", None), Some(10));
        assert_eq!(rdb_version_for_server("7.2.4", None), Some(11));
        assert_eq!(rdb_version_for_server("7.4.1", None), Some(12));
        assert_eq!(rdb_version_for_server("7.2.4", Some("9.1.2")), Some(80));
        assert_eq!(rdb_version_for_server("7.2.4", Some("8.0.1")), Some(11));
        assert_eq!(rdb_version_for_server("x", None), None);
    }

    #[test]
    fn round_trip_and_known_payload() {
        // DUMP of SET k hello on Redis 7.0 (RDB 10).
        let p = dump_payload(0, b"\x05hello", 10);
        assert_eq!(&p[..9], b"\x00\x05hello\x0a\x00");
        let d = parse_dump_payload(&p).unwrap();
        assert_eq!(
            (d.rdb_type, d.value, d.rdb_version),
            (0, &b"\x05hello"[..], 10)
        );
        let mut bad = p.clone();
        bad[3] ^= 1;
        assert!(parse_dump_payload(&bad).is_err());
    }
}

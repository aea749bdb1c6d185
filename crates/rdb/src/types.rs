//! Type bytes, opcodes and header facts from `src/rdb.h` (Redis) and
//! `src/rdb.h` (Valkey).

/// `RDB_TYPE_STRING`.
pub const TYPE_STRING: u8 = 0;
/// `RDB_TYPE_LIST` (linked list, RDB < 7).
pub const TYPE_LIST: u8 = 1;
/// `RDB_TYPE_SET`.
pub const TYPE_SET: u8 = 2;
/// `RDB_TYPE_ZSET` (scores as strings).
pub const TYPE_ZSET: u8 = 3;
/// `RDB_TYPE_HASH`.
pub const TYPE_HASH: u8 = 4;
/// `RDB_TYPE_ZSET_2` (binary double scores).
pub const TYPE_ZSET_2: u8 = 5;
/// `RDB_TYPE_MODULE_PRE_GA` (4.0 release candidates, refused).
pub const TYPE_MODULE_PRE_GA: u8 = 6;
/// `RDB_TYPE_MODULE_2`.
pub const TYPE_MODULE_2: u8 = 7;
/// `RDB_TYPE_HASH_ZIPMAP`.
pub const TYPE_HASH_ZIPMAP: u8 = 9;
/// `RDB_TYPE_LIST_ZIPLIST`.
pub const TYPE_LIST_ZIPLIST: u8 = 10;
/// `RDB_TYPE_SET_INTSET`.
pub const TYPE_SET_INTSET: u8 = 11;
/// `RDB_TYPE_ZSET_ZIPLIST`.
pub const TYPE_ZSET_ZIPLIST: u8 = 12;
/// `RDB_TYPE_HASH_ZIPLIST`.
pub const TYPE_HASH_ZIPLIST: u8 = 13;
/// `RDB_TYPE_LIST_QUICKLIST` (ziplist nodes).
pub const TYPE_LIST_QUICKLIST: u8 = 14;
/// `RDB_TYPE_STREAM_LISTPACKS`.
pub const TYPE_STREAM_LISTPACKS: u8 = 15;
/// `RDB_TYPE_HASH_LISTPACK`.
pub const TYPE_HASH_LISTPACK: u8 = 16;
/// `RDB_TYPE_ZSET_LISTPACK`.
pub const TYPE_ZSET_LISTPACK: u8 = 17;
/// `RDB_TYPE_LIST_QUICKLIST_2` (listpack or plain nodes).
pub const TYPE_LIST_QUICKLIST_2: u8 = 18;
/// `RDB_TYPE_STREAM_LISTPACKS_2`.
pub const TYPE_STREAM_LISTPACKS_2: u8 = 19;
/// `RDB_TYPE_SET_LISTPACK`.
pub const TYPE_SET_LISTPACK: u8 = 20;
/// `RDB_TYPE_STREAM_LISTPACKS_3`.
pub const TYPE_STREAM_LISTPACKS_3: u8 = 21;
/// Type 22: Redis 7.4 RC `RDB_TYPE_HASH_METADATA_PRE_GA`, but Valkey 9
/// `RDB_TYPE_HASH_2`; which one is decided by [`Flavor`].
pub const TYPE_22: u8 = 22;
/// `RDB_TYPE_HASH_LISTPACK_EX_PRE_GA` (Redis 7.4 RC).
pub const TYPE_HASH_LISTPACK_EX_PRE_GA: u8 = 23;
/// `RDB_TYPE_HASH_METADATA` (Redis 7.4+ hash with field TTLs).
pub const TYPE_HASH_METADATA: u8 = 24;
/// `RDB_TYPE_HASH_LISTPACK_EX` (Redis 7.4+ listpack hash with field TTLs).
pub const TYPE_HASH_LISTPACK_EX: u8 = 25;

/// Valkey 9 `RDB_OPCODE_SLOT_IMPORT`.
pub const OPCODE_SLOT_IMPORT: u8 = 243;
/// `RDB_OPCODE_SLOT_INFO` (Redis 7.4+ cluster, Valkey foreign).
pub const OPCODE_SLOT_INFO: u8 = 244;
/// `RDB_OPCODE_FUNCTION2`.
pub const OPCODE_FUNCTION2: u8 = 245;
/// `RDB_OPCODE_FUNCTION_PRE_GA` (7.0 release candidates).
pub const OPCODE_FUNCTION_PRE_GA: u8 = 246;
/// `RDB_OPCODE_MODULE_AUX`.
pub const OPCODE_MODULE_AUX: u8 = 247;
/// `RDB_OPCODE_IDLE`.
pub const OPCODE_IDLE: u8 = 248;
/// `RDB_OPCODE_FREQ`.
pub const OPCODE_FREQ: u8 = 249;
/// `RDB_OPCODE_AUX`.
pub const OPCODE_AUX: u8 = 250;
/// `RDB_OPCODE_RESIZEDB`.
pub const OPCODE_RESIZEDB: u8 = 251;
/// `RDB_OPCODE_EXPIRETIME_MS`.
pub const OPCODE_EXPIRETIME_MS: u8 = 252;
/// `RDB_OPCODE_EXPIRETIME` (seconds, old files).
pub const OPCODE_EXPIRETIME: u8 = 253;
/// `RDB_OPCODE_SELECTDB`.
pub const OPCODE_SELECTDB: u8 = 254;
/// `RDB_OPCODE_EOF`.
pub const OPCODE_EOF: u8 = 255;

/// The highest RDB version this crate reads: Valkey 9's 80. Redis uses
/// 1..=12 (7.4 writes 12); Valkey reserves 12..=79 for Redis ("foreign").
pub const MAX_SUPPORTED_VERSION: u32 = 80;

/// Who wrote the file: decides the meaning of type 22.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Magic {
    /// `REDIS` followed by a 4-digit version (Redis, and Valkey up to 8).
    Redis,
    /// `VALKEY` followed by a 3-digit version (Valkey 9+, `rdb.c`).
    Valkey,
}

/// How to interpret the type bytes on which Redis and Valkey disagree
/// (22: Redis 7.4 RC hash-with-metadata vs Valkey 9 `RDB_TYPE_HASH_2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// Redis semantics.
    Redis,
    /// Valkey 9+ semantics.
    Valkey,
}

impl Flavor {
    /// The flavor of an RDB file given its header.
    pub fn of_header(magic: Magic, version: u32) -> Flavor {
        if magic == Magic::Valkey || version >= 80 {
            Flavor::Valkey
        } else {
            Flavor::Redis
        }
    }

    /// The flavor of a DUMP payload, which carries only the version
    /// (Valkey 9 stamps 80 there).
    pub fn of_dump_version(version: u16) -> Flavor {
        if version >= 80 {
            Flavor::Valkey
        } else {
            Flavor::Redis
        }
    }
}

/// Parse the 9-byte RDB header: `REDIS` + 4 ASCII digits or `VALKEY` + 3
/// ASCII digits (`rdbLoadRioWithLoadingCtx` in `src/rdb.c`). Returns the
/// writer and the version, or `None` when it is not an RDB header.
pub fn rdb_version_of_magic(magic: &[u8; 9]) -> Option<(Magic, u32)> {
    let (kind, digits) = if &magic[..5] == b"REDIS" {
        (Magic::Redis, &magic[5..])
    } else if &magic[..6] == b"VALKEY" {
        (Magic::Valkey, &magic[6..])
    } else {
        return None;
    };
    let mut v: u32 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (d - b'0') as u32;
    }
    Some((kind, v))
}

/// The magic a server of this kind writes for `version`, the inverse of
/// [`rdb_version_of_magic`].
pub fn magic_for_version(magic: Magic, version: u32) -> Option<[u8; 9]> {
    let s = match magic {
        Magic::Redis if version <= 9999 => format!("REDIS{version:04}"),
        Magic::Valkey if version <= 999 => format!("VALKEY{version:03}"),
        _ => return None,
    };
    let mut out = [0u8; 9];
    out.copy_from_slice(s.as_bytes());
    Some(out)
}

/// Decode the 9-character module type name from a 64-bit module id
/// (`moduleTypeNameByID` in `src/module.c`): 9 characters of 6 bits each
/// above the 10-bit encoding version.
pub fn module_name_from_id(id: u64) -> String {
    const CSET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut name = [0u8; 9];
    let mut id = id >> 10;
    for slot in name.iter_mut().rev() {
        *slot = CSET[(id & 63) as usize];
        id >>= 6;
    }
    String::from_utf8_lossy(&name).into_owned()
}

/// A human name for a type byte, for logs and errors.
pub fn type_name(t: u8) -> &'static str {
    match t {
        TYPE_STRING => "string",
        TYPE_LIST | TYPE_LIST_ZIPLIST | TYPE_LIST_QUICKLIST | TYPE_LIST_QUICKLIST_2 => "list",
        TYPE_SET | TYPE_SET_INTSET | TYPE_SET_LISTPACK => "set",
        TYPE_ZSET | TYPE_ZSET_2 | TYPE_ZSET_ZIPLIST | TYPE_ZSET_LISTPACK => "zset",
        TYPE_HASH
        | TYPE_HASH_ZIPMAP
        | TYPE_HASH_ZIPLIST
        | TYPE_HASH_LISTPACK
        | TYPE_22
        | TYPE_HASH_LISTPACK_EX_PRE_GA
        | TYPE_HASH_METADATA
        | TYPE_HASH_LISTPACK_EX => "hash",
        TYPE_STREAM_LISTPACKS | TYPE_STREAM_LISTPACKS_2 | TYPE_STREAM_LISTPACKS_3 => "stream",
        TYPE_MODULE_PRE_GA | TYPE_MODULE_2 => "module",
        _ => "unknown",
    }
}

/// The first RDB version that has type byte `t` (from the version notes in
/// `src/rdb.h`), i.e. the oldest server that can `RESTORE` such a value.
/// A target whose own RDB version is lower needs decoded commands instead.
pub fn min_rdb_version_for_type(t: u8, flavor: Flavor) -> Option<u32> {
    Some(match t {
        TYPE_STRING..=TYPE_HASH => 1,
        TYPE_HASH_ZIPMAP..=TYPE_ZSET_ZIPLIST => 2,
        TYPE_HASH_ZIPLIST => 4,
        TYPE_LIST_QUICKLIST => 7,
        TYPE_ZSET_2 | TYPE_MODULE_PRE_GA | TYPE_MODULE_2 => 8,
        TYPE_STREAM_LISTPACKS => 9,
        TYPE_HASH_LISTPACK..=TYPE_STREAM_LISTPACKS_2 => 10,
        TYPE_SET_LISTPACK | TYPE_STREAM_LISTPACKS_3 => 11,
        TYPE_22 if flavor == Flavor::Valkey => 80,
        TYPE_22..=TYPE_HASH_LISTPACK_EX => 12,
        _ => return None,
    })
}

/// Whether a server writing RDB version `server_version` (see
/// `rdb_version_for_server`) loads a whole file of (`magic`, `version`)
/// by replication or at start-up. A server refuses versions newer than its
/// own (`rdbLoadRioWithLoadingCtx`); Valkey 9 reads Redis files only up to
/// 11, the last version the two share, and Redis reads no Valkey file.
pub fn server_loads_rdb(server_version: u32, magic: Magic, version: u32) -> bool {
    let file_valkey = magic == Magic::Valkey || version >= 80;
    let server_valkey = server_version >= 80;
    match (file_valkey, server_valkey) {
        (true, false) => false,
        (true, true) => version <= server_version,
        (false, true) => version <= 11,
        (false, false) => version <= server_version,
    }
}

/// Whether `t` is a value type byte this crate can slice.
pub fn is_value_type(t: u8) -> bool {
    matches!(t, 0..=7 | 9..=25)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_rdbs_a_server_loads() {
        assert!(server_loads_rdb(10, Magic::Redis, 9));
        assert!(server_loads_rdb(10, Magic::Redis, 10));
        assert!(!server_loads_rdb(9, Magic::Redis, 10));
        assert!(!server_loads_rdb(10, Magic::Valkey, 80));
        assert!(!server_loads_rdb(12, Magic::Valkey, 80));
        assert!(server_loads_rdb(80, Magic::Redis, 9));
        assert!(server_loads_rdb(80, Magic::Valkey, 80));
        assert!(!server_loads_rdb(80, Magic::Redis, 12));
        assert!(server_loads_rdb(12, Magic::Redis, 12));
    }

    #[test]
    fn magic_parsing() {
        assert_eq!(rdb_version_of_magic(b"REDIS0009"), Some((Magic::Redis, 9)));
        assert_eq!(rdb_version_of_magic(b"REDIS0011"), Some((Magic::Redis, 11)));
        assert_eq!(
            rdb_version_of_magic(b"VALKEY080"),
            Some((Magic::Valkey, 80))
        );
        assert_eq!(rdb_version_of_magic(b"VALKEY08x"), None);
        assert_eq!(rdb_version_of_magic(b"redis0009"), None);
        assert_eq!(
            magic_for_version(Magic::Valkey, 80).as_ref(),
            Some(b"VALKEY080")
        );
        assert_eq!(
            magic_for_version(Magic::Redis, 10).as_ref(),
            Some(b"REDIS0010")
        );
    }

    #[test]
    fn type_versions() {
        assert_eq!(
            min_rdb_version_for_type(TYPE_SET_LISTPACK, Flavor::Redis),
            Some(11)
        );
        assert_eq!(
            min_rdb_version_for_type(TYPE_LIST_QUICKLIST_2, Flavor::Redis),
            Some(10)
        );
        assert_eq!(min_rdb_version_for_type(TYPE_22, Flavor::Valkey), Some(80));
        assert_eq!(min_rdb_version_for_type(TYPE_22, Flavor::Redis), Some(12));
        assert_eq!(min_rdb_version_for_type(8, Flavor::Redis), None);
    }

    #[test]
    fn module_names() {
        // Encode "ReJSON-RL" with encver 3 the way moduleTypeEncodeId does.
        const CSET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut id: u64 = 0;
        for c in b"ReJSON-RL" {
            id = (id << 6) | CSET.iter().position(|x| x == c).unwrap() as u64;
        }
        id = (id << 10) | 3;
        assert_eq!(module_name_from_id(id), "ReJSON-RL");
    }
}

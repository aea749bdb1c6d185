//! Whole-file verification for backups: walk every item without decoding
//! values (the skip path of the reader), check the CRC-64 trailer and count
//! what is inside, for a backup manifest.

use std::collections::BTreeMap;
use std::io::Read;

use crate::error::RdbError;
use crate::reader::{ChecksumStatus, Item, RdbReader, ReadMode};
use crate::types::{
    Magic, TYPE_22, TYPE_HASH_LISTPACK_EX, TYPE_HASH_LISTPACK_EX_PRE_GA, TYPE_HASH_METADATA,
};

/// Whether a value of type `t` is a hash stored with field expiries.
pub fn has_field_ttls(t: u8) -> bool {
    matches!(
        t,
        TYPE_22 | TYPE_HASH_LISTPACK_EX_PRE_GA | TYPE_HASH_METADATA | TYPE_HASH_LISTPACK_EX
    )
}

/// What [`verify`] found in an RDB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdbSummary {
    /// Who wrote it.
    pub magic: Magic,
    /// Its RDB version.
    pub version: u32,
    /// Keys per database number.
    pub keys_per_db: BTreeMap<u64, u64>,
    /// All keys.
    pub total_keys: u64,
    /// Keys with an expiry.
    pub expiring_keys: u64,
    /// Function libraries.
    pub functions: u64,
    /// Module aux sections, by module name.
    pub module_aux: Vec<String>,
    /// Keys holding module values (their type byte is 7).
    pub module_keys: u64,
    /// Checksum outcome (a mismatch is an error).
    pub checksum: ChecksumStatus,
    /// Bytes read, trailer included.
    pub byte_len: u64,
    /// AUX fields in file order (`redis-ver`, `ctime`, …) as lossy text.
    pub aux: Vec<(String, String)>,
    /// Keys per value type byte (see `types::type_name` for a name).
    pub keys_per_rdb_type: BTreeMap<u8, u64>,
    /// Value bytes in the file per database number.
    pub value_bytes_per_db: BTreeMap<u64, u64>,
    /// Hashes stored in an encoding that carries field expiries (Redis
    /// 7.4+ types 24/25 and their release-candidate 22/23, Valkey 9's 22).
    pub field_ttl_hashes: u64,
    /// Module values per module type name.
    pub module_key_names: BTreeMap<String, u64>,
    /// The largest value's size in the file, in bytes.
    pub biggest_value: u64,
    /// Logical bytes of every string in the file (LZF strings expanded),
    /// see [`RdbReader::expanded_bytes`].
    pub expanded_bytes: u64,
}

impl RdbSummary {
    /// The `redis-ver` (or `valkey-ver`) aux field, if present.
    pub fn server_version(&self) -> Option<&str> {
        self.aux
            .iter()
            .find(|(k, _)| k == "valkey-ver")
            .or_else(|| self.aux.iter().find(|(k, _)| k == "redis-ver"))
            .map(|(_, v)| v.as_str())
    }
}

/// Read a whole RDB from `input`, checking its structure and checksum, and
/// summarise it. Values are walked, not decoded; the input must end right
/// after the trailer.
pub fn verify<R: Read>(input: R) -> Result<RdbSummary, RdbError> {
    summarise(input, None)
}

/// Like [`verify`] (the whole file is checked), but the key facts of the
/// summary (counts per database and type, value bytes, expanded bytes,
/// field-TTL hashes, module values, the biggest value) describe only the
/// keys `keep(db, key, rdb_type)` accepts: what a partial restore writes.
pub fn verify_filtered<R: Read>(
    input: R,
    mut keep: impl FnMut(u64, &[u8], u8) -> bool,
) -> Result<RdbSummary, RdbError> {
    summarise(input, Some(&mut keep))
}

type KeyFilter<'a> = &'a mut dyn FnMut(u64, &[u8], u8) -> bool;

fn summarise<R: Read>(input: R, mut keep: Option<KeyFilter<'_>>) -> Result<RdbSummary, RdbError> {
    let mode = if keep.is_some() {
        ReadMode::Keys
    } else {
        ReadMode::Skip
    };
    let mut reader = RdbReader::new(input, mode).require_eof_after_trailer(true);
    let mut s = RdbSummary {
        magic: Magic::Redis,
        version: 0,
        keys_per_db: BTreeMap::new(),
        total_keys: 0,
        expiring_keys: 0,
        functions: 0,
        module_aux: Vec::new(),
        module_keys: 0,
        checksum: ChecksumStatus::Absent,
        byte_len: 0,
        aux: Vec::new(),
        keys_per_rdb_type: BTreeMap::new(),
        value_bytes_per_db: BTreeMap::new(),
        field_ttl_hashes: 0,
        module_key_names: BTreeMap::new(),
        biggest_value: 0,
        expanded_bytes: 0,
    };
    // Expanded bytes of the keys left out, taken off the file's total.
    let mut left_out = 0u64;
    loop {
        let before = reader.expanded_bytes();
        let Some(item) = reader.next_item()? else {
            break;
        };
        match item {
            Item::Header { magic, version } => {
                s.magic = magic;
                s.version = version;
            }
            Item::Key(k) if keep.as_mut().is_some_and(|f| !f(k.db, &k.key, k.rdb_type)) => {
                left_out += reader.expanded_bytes() - before;
            }
            Item::Key(k) => {
                *s.keys_per_db.entry(k.db).or_insert(0) += 1;
                s.total_keys += 1;
                if k.expire_ms.is_some() {
                    s.expiring_keys += 1;
                }
                if k.rdb_type == crate::types::TYPE_MODULE_2 {
                    s.module_keys += 1;
                }
                if let Some(m) = k.module {
                    *s.module_key_names.entry(m).or_insert(0) += 1;
                }
                *s.keys_per_rdb_type.entry(k.rdb_type).or_insert(0) += 1;
                *s.value_bytes_per_db.entry(k.db).or_insert(0) += k.value_len;
                if has_field_ttls(k.rdb_type) {
                    s.field_ttl_hashes += 1;
                }
                s.biggest_value = s.biggest_value.max(k.value_len);
            }
            Item::Aux { key, value } => s.aux.push((
                String::from_utf8_lossy(&key).into_owned(),
                String::from_utf8_lossy(&value).into_owned(),
            )),
            Item::Function { .. } | Item::FunctionPreGa { .. } => s.functions += 1,
            Item::ModuleAux { module_name, .. } => s.module_aux.push(module_name),
            Item::End { checksum } => s.checksum = checksum,
            Item::SelectDb(_)
            | Item::ResizeDb { .. }
            | Item::SlotInfo { .. }
            | Item::SlotImport { .. } => {}
        }
    }
    s.byte_len = reader.offset();
    s.expanded_bytes = reader.expanded_bytes() - left_out;
    Ok(s)
}

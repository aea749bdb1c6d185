//! The streaming RDB reader: the main loop of `rdbLoadRioWithLoadingCtx`
//! in `src/rdb.c`, yielding one [`Item`] at a time instead of building a
//! dataset.
//!
//! Memory stays bounded by the largest single key: values are walked with
//! their lengths read incrementally, and copied out only when asked.

use std::io::Read;

use crate::error::RdbError;
use crate::source::Source;
use crate::types::*;
use crate::value::{decode_value, Value};

/// What the reader does with each key's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// Walk the value without keeping it, and skip the key name too (the
    /// fast path for verification: no allocation per key).
    Skip,
    /// Keep the key name, walk the value without keeping it (choosing
    /// keys by name at almost the cost of [`ReadMode::Skip`]).
    Keys,
    /// Keep the key and the value's exact bytes ([`KeyEntry::raw`]).
    Raw,
    /// Keep the key and the decoded value ([`KeyEntry::value`]).
    Decode,
    /// Both the raw bytes and the decoded value.
    RawAndDecode,
}

impl ReadMode {
    fn keeps_key(self) -> bool {
        self != ReadMode::Skip
    }
    fn captures(self) -> bool {
        !matches!(self, ReadMode::Skip | ReadMode::Keys)
    }
    fn decodes(self) -> bool {
        matches!(self, ReadMode::Decode | ReadMode::RawAndDecode)
    }
    fn keeps_raw(self) -> bool {
        matches!(self, ReadMode::Raw | ReadMode::RawAndDecode)
    }
}

/// How the file's checksum turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumStatus {
    /// The trailer matched the CRC-64 of the content.
    Verified(u64),
    /// The trailer was 0: the writer had `rdbchecksum no`.
    Disabled,
    /// RDB version < 5 has no trailer.
    Absent,
}

/// A key and its value as stored in the RDB.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyEntry {
    /// The database number (from the last SELECTDB; 0 before any).
    pub db: u64,
    /// The key name (empty in [`ReadMode::Skip`]).
    pub key: Vec<u8>,
    /// Absolute expiry in Unix milliseconds (EXPIRETIME_MS, or seconds
    /// EXPIRETIME × 1000).
    pub expire_ms: Option<i64>,
    /// LRU idle seconds (`RDB_OPCODE_IDLE`), if stored.
    pub lru_idle: Option<u64>,
    /// LFU frequency (`RDB_OPCODE_FREQ`), if stored.
    pub lfu_freq: Option<u8>,
    /// The RDB type byte of the value.
    pub rdb_type: u8,
    /// The value's bytes exactly as in the file (modes `Raw`,
    /// `RawAndDecode`): with `rdb_type` this is a DUMP payload body.
    pub raw: Option<Vec<u8>>,
    /// The decoded value (modes `Decode`, `RawAndDecode`).
    pub value: Option<Value>,
    /// File offset of the key's first opcode or type byte.
    pub offset: u64,
    /// Size in bytes of the value's encoding in the file.
    pub value_len: u64,
    /// For a module value, its module type name (`moduleTypeNameByID`).
    pub module: Option<String>,
}

impl KeyEntry {
    /// The DUMP/RESTORE payload of this key stamped with `rdb_version`
    /// (`None` unless the entry was read in a mode that keeps raw bytes).
    pub fn dump_payload(&self, rdb_version: u16) -> Option<Vec<u8>> {
        self.raw
            .as_ref()
            .map(|raw| crate::dump::dump_payload(self.rdb_type, raw, rdb_version))
    }
}

/// One unit of an RDB file, in file order.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// The 9-byte header.
    Header {
        /// Who wrote it.
        magic: Magic,
        /// The RDB version.
        version: u32,
    },
    /// `RDB_OPCODE_AUX`: a string pair such as `redis-ver`.
    Aux {
        /// Field name.
        key: Vec<u8>,
        /// Field value.
        value: Vec<u8>,
    },
    /// `RDB_OPCODE_SELECTDB`.
    SelectDb(u64),
    /// `RDB_OPCODE_RESIZEDB`: size hints for the current database.
    ResizeDb {
        /// Keys in the database.
        db_size: u64,
        /// Keys with an expiry.
        expires_size: u64,
    },
    /// `RDB_OPCODE_SLOT_INFO` (cluster size hints).
    SlotInfo {
        /// Slot number.
        slot: u64,
        /// Keys in the slot.
        size: u64,
        /// Keys with an expiry in the slot.
        expires_size: u64,
    },
    /// Valkey 9 `RDB_OPCODE_SLOT_IMPORT`: an atomic slot migration in
    /// progress (name and slot ranges).
    SlotImport {
        /// Job name.
        name: Vec<u8>,
        /// Inclusive slot ranges.
        ranges: Vec<(u64, u64)>,
    },
    /// `RDB_OPCODE_FUNCTION2`: one function library's source code, as given
    /// to `FUNCTION LOAD`.
    Function {
        /// Library code, starting with its `#!<engine> name=<name>` line.
        code: Vec<u8>,
    },
    /// `RDB_OPCODE_FUNCTION_PRE_GA` (Redis 7.0 release candidates).
    FunctionPreGa {
        /// Library name.
        name: Vec<u8>,
        /// Engine name (e.g. `LUA`).
        engine: Vec<u8>,
        /// Optional description.
        description: Option<Vec<u8>>,
        /// Library code without a shebang line.
        code: Vec<u8>,
    },
    /// `RDB_OPCODE_MODULE_AUX`: module data outside the keyspace (skipped,
    /// decodable only by the module).
    ModuleAux {
        /// The module id.
        module_id: u64,
        /// The module type name decoded from the id.
        module_name: String,
        /// `REDISMODULE_AUX_BEFORE_RDB` / `AFTER_RDB`.
        when: u64,
    },
    /// A key with its value.
    Key(KeyEntry),
    /// `RDB_OPCODE_EOF` and the trailer.
    End {
        /// Checksum outcome (a mismatch is an error instead).
        checksum: ChecksumStatus,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    Body,
    Done,
    Failed,
}

/// Streaming RDB parser over any `Read`.
///
/// Call [`RdbReader::next_item`] until it returns `Ok(None)`. The CRC-64 of
/// every byte before the trailer is computed on the way and checked at the
/// end; [`RdbReader::offset`] tells how far it got (for progress).
pub struct RdbReader<R: Read> {
    src: Source<R>,
    mode: ReadMode,
    state: State,
    magic: Magic,
    version: u32,
    flavor: Flavor,
    db: u64,
    require_eof: bool,
    /// The module id of the module value being scanned.
    module_id: Option<u64>,
}

impl<R: Read> RdbReader<R> {
    /// A reader in the given mode.
    pub fn new(inner: R, mode: ReadMode) -> Self {
        RdbReader {
            src: Source::new(inner),
            mode,
            state: State::Start,
            magic: Magic::Redis,
            version: 0,
            flavor: Flavor::Redis,
            db: 0,
            require_eof: false,
            module_id: None,
        }
    }

    /// Also check, after the trailer, that the input ends there
    /// ([`RdbError::TrailingData`] otherwise).
    pub fn require_eof_after_trailer(mut self, yes: bool) -> Self {
        self.require_eof = yes;
        self
    }

    /// Refuse strings (keys, values, function code) that declare more
    /// than `max` bytes, before reading or allocating any of them
    /// ([`RdbError::TooLarge`]). Default [`crate::DEFAULT_MAX_STRING`].
    pub fn max_string(mut self, max: u64) -> Self {
        self.src.max_string = max;
        self
    }

    /// Change the mode between items.
    pub fn set_mode(&mut self, mode: ReadMode) {
        self.mode = mode;
    }

    /// Logical bytes of every string read or skipped so far (LZF strings
    /// at their uncompressed size, integers not counted): about what the
    /// keys and values take once loaded, before per-key overhead.
    pub fn expanded_bytes(&self) -> u64 {
        self.src.expanded()
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.src.offset()
    }

    /// The RDB version (0 before the header is read).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Who wrote the file (valid after the header).
    pub fn magic(&self) -> Magic {
        self.magic
    }

    /// How type bytes are interpreted for this file.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// The next item, `Ok(None)` after [`Item::End`].
    ///
    /// After an error the reader should be dropped, except for
    /// [`RdbError::Module`] in a decoding mode: the module value has been
    /// consumed and reading can go on.
    pub fn next_item(&mut self) -> Result<Option<Item>, RdbError> {
        match self.state {
            State::Done => Ok(None),
            // Never report a clean end after a failure, even to a caller
            // that ignored the error.
            State::Failed => Err(RdbError::corrupt("reading on after an earlier error")),
            State::Start => {
                let r = self.header();
                if r.is_err() {
                    self.state = State::Failed;
                }
                r.map(Some)
            }
            State::Body => {
                let r = self.body_item();
                if let Err(e) = &r {
                    if !matches!(e, RdbError::Module { .. }) {
                        self.state = State::Failed;
                    }
                }
                r.map(Some)
            }
        }
    }

    fn header(&mut self) -> Result<Item, RdbError> {
        let magic = self.src.array::<9>()?;
        let (kind, version) = rdb_version_of_magic(&magic).ok_or(RdbError::BadMagic(magic))?;
        if !(1..=MAX_SUPPORTED_VERSION).contains(&version) {
            return Err(RdbError::UnsupportedVersion(version));
        }
        self.magic = kind;
        self.version = version;
        self.flavor = Flavor::of_header(kind, version);
        self.state = State::Body;
        Ok(Item::Header {
            magic: kind,
            version,
        })
    }

    fn body_item(&mut self) -> Result<Item, RdbError> {
        let mut expire_ms = None;
        let mut lru_idle = None;
        let mut lfu_freq = None;
        let mut key_offset = None;
        loop {
            let at = self.src.offset();
            let t = self.src.u8()?;
            match t {
                OPCODE_EXPIRETIME => {
                    key_offset.get_or_insert(at);
                    let secs = i32::from_le_bytes(self.src.array()?);
                    expire_ms = Some(secs as i64 * 1000);
                }
                OPCODE_EXPIRETIME_MS => {
                    key_offset.get_or_insert(at);
                    expire_ms = Some(i64::from_le_bytes(self.src.array()?));
                }
                OPCODE_FREQ => {
                    key_offset.get_or_insert(at);
                    lfu_freq = Some(self.src.u8()?);
                }
                OPCODE_IDLE => {
                    key_offset.get_or_insert(at);
                    lru_idle = Some(self.src.len()?);
                }
                OPCODE_EOF => return self.finish(),
                OPCODE_SELECTDB => {
                    self.db = self.src.len()?;
                    return Ok(Item::SelectDb(self.db));
                }
                OPCODE_RESIZEDB => {
                    let db_size = self.src.len()?;
                    let expires_size = self.src.len()?;
                    return Ok(Item::ResizeDb {
                        db_size,
                        expires_size,
                    });
                }
                OPCODE_SLOT_INFO => {
                    let slot = self.src.len()?;
                    let size = self.src.len()?;
                    let expires_size = self.src.len()?;
                    return Ok(Item::SlotInfo {
                        slot,
                        size,
                        expires_size,
                    });
                }
                OPCODE_SLOT_IMPORT => {
                    let name = self.src.string()?;
                    let n = self.src.len()?;
                    let mut ranges = Vec::new();
                    for _ in 0..n {
                        ranges.push((self.src.len()?, self.src.len()?));
                    }
                    return Ok(Item::SlotImport { name, ranges });
                }
                OPCODE_AUX => {
                    let key = self.src.string_within(crate::MAX_AUX, "aux field")?;
                    let value = self.src.string_within(crate::MAX_AUX, "aux field")?;
                    return Ok(Item::Aux { key, value });
                }
                OPCODE_MODULE_AUX => {
                    let module_id = self.src.len()?;
                    let when_opcode = self.src.len()?;
                    let when = self.src.len()?;
                    if when_opcode != MODULE_OPCODE_UINT {
                        return Err(
                            RdbError::corrupt("bad module aux 'when' opcode").with_offset(at)
                        );
                    }
                    self.skip_module_body()?;
                    return Ok(Item::ModuleAux {
                        module_id,
                        module_name: module_name_from_id(module_id),
                        when,
                    });
                }
                OPCODE_FUNCTION_PRE_GA => {
                    let name = self.src.string()?;
                    let engine = self.src.string()?;
                    let has_desc = self.src.len()?;
                    let description = if has_desc != 0 {
                        Some(self.src.string()?)
                    } else {
                        None
                    };
                    let code = self.src.string()?;
                    return Ok(Item::FunctionPreGa {
                        name,
                        engine,
                        description,
                        code,
                    });
                }
                OPCODE_FUNCTION2 => {
                    let code = self.src.string()?;
                    return Ok(Item::Function { code });
                }
                t if is_value_type(t) => {
                    return self.key_entry(
                        t,
                        key_offset.unwrap_or(at),
                        expire_ms,
                        lru_idle,
                        lfu_freq,
                    );
                }
                other => {
                    return Err(RdbError::UnknownType {
                        type_byte: other,
                        offset: Some(at),
                    })
                }
            }
        }
    }

    fn finish(&mut self) -> Result<Item, RdbError> {
        self.state = State::Done;
        let checksum = if self.version >= 5 {
            let computed = self.src.crc();
            self.src.stop_crc();
            let expected = u64::from_le_bytes(self.src.array()?);
            if expected == 0 {
                ChecksumStatus::Disabled
            } else if expected == computed {
                ChecksumStatus::Verified(computed)
            } else {
                return Err(RdbError::ChecksumMismatch { expected, computed });
            }
        } else {
            ChecksumStatus::Absent
        };
        if self.require_eof && !self.src.at_eof()? {
            return Err(RdbError::TrailingData {
                offset: self.src.offset(),
            });
        }
        Ok(Item::End { checksum })
    }

    fn key_entry(
        &mut self,
        t: u8,
        offset: u64,
        expire_ms: Option<i64>,
        lru_idle: Option<u64>,
        lfu_freq: Option<u8>,
    ) -> Result<Item, RdbError> {
        let mode = self.mode;
        let key = if mode.keeps_key() {
            self.src.string()?
        } else {
            self.src.skip_string()?;
            Vec::new()
        };
        let start = self.src.offset();
        if mode == ReadMode::Decode && t == TYPE_STRING {
            // Fast path: a string decodes straight from the stream, no copy.
            let value = self.src.string().map_err(|e| e.with_offset(start))?;
            return Ok(Item::Key(KeyEntry {
                db: self.db,
                key,
                expire_ms,
                lru_idle,
                lfu_freq,
                rdb_type: t,
                raw: None,
                value: Some(Value::String(value)),
                offset,
                value_len: self.src.offset() - start,
                module: None,
            }));
        }
        if mode.captures() {
            self.src.start_capture();
        }
        self.module_id = None;
        let scanned = self.scan_value(t);
        let raw = if mode.captures() {
            Some(self.src.take_capture())
        } else {
            None
        };
        scanned.map_err(|e| e.with_offset(start))?;
        let value_len = self.src.offset() - start;
        let mut entry = KeyEntry {
            db: self.db,
            key,
            expire_ms,
            lru_idle,
            lfu_freq,
            rdb_type: t,
            raw: None,
            value: None,
            offset,
            value_len,
            module: self.module_id.take().map(module_name_from_id),
        };
        if let Some(raw) = raw {
            if mode.decodes() {
                entry.value =
                    Some(decode_value(t, &raw, self.flavor).map_err(|e| e.with_offset(start))?);
            }
            if mode.keeps_raw() {
                entry.raw = Some(raw);
            }
        }
        Ok(Item::Key(entry))
    }

    /// Module value body after the id: typed opcodes until EOF
    /// (`rdbLoadCheckModuleValue`).
    fn skip_module_body(&mut self) -> Result<(), RdbError> {
        loop {
            match self.src.len()? {
                MODULE_OPCODE_EOF => return Ok(()),
                MODULE_OPCODE_SINT | MODULE_OPCODE_UINT => {
                    self.src.len()?;
                }
                MODULE_OPCODE_STRING => self.src.skip_string()?,
                MODULE_OPCODE_FLOAT => self.src.skip(4)?,
                MODULE_OPCODE_DOUBLE => self.src.skip(8)?,
                other => return Err(RdbError::corrupt(format!("unknown module opcode {other}"))),
            }
        }
    }

    /// Walk one value's encoding without interpreting the blobs inside it,
    /// following the layout `rdbSaveObject` writes.
    fn scan_value(&mut self, t: u8) -> Result<(), RdbError> {
        let s = &mut self.src;
        match t {
            TYPE_STRING => s.skip_string(),
            TYPE_LIST | TYPE_SET | TYPE_LIST_QUICKLIST => {
                let n = s.len()?;
                for _ in 0..n {
                    s.skip_string()?;
                }
                Ok(())
            }
            TYPE_ZSET => {
                let n = s.len()?;
                for _ in 0..n {
                    s.skip_string()?;
                    let l = s.u8()?;
                    if l < 253 {
                        s.skip(l as u64)?;
                    }
                }
                Ok(())
            }
            TYPE_ZSET_2 => {
                let n = s.len()?;
                for _ in 0..n {
                    s.skip_string()?;
                    s.skip(8)?;
                }
                Ok(())
            }
            TYPE_HASH => {
                let n = s.len()?;
                for _ in 0..n {
                    s.skip_string()?;
                    s.skip_string()?;
                }
                Ok(())
            }
            TYPE_22 if self.flavor == Flavor::Valkey => {
                let n = s.len()?;
                for _ in 0..n {
                    s.skip_string()?;
                    s.skip_string()?;
                    s.skip(8)?;
                }
                Ok(())
            }
            TYPE_22 | TYPE_HASH_METADATA => {
                if t == TYPE_HASH_METADATA {
                    s.skip(8)?;
                }
                let n = s.len()?;
                for _ in 0..n {
                    s.len()?;
                    s.skip_string()?;
                    s.skip_string()?;
                }
                Ok(())
            }
            TYPE_HASH_LISTPACK_EX => {
                s.skip(8)?;
                s.skip_string()
            }
            TYPE_HASH_ZIPMAP
            | TYPE_LIST_ZIPLIST
            | TYPE_SET_INTSET
            | TYPE_ZSET_ZIPLIST
            | TYPE_HASH_ZIPLIST
            | TYPE_HASH_LISTPACK
            | TYPE_ZSET_LISTPACK
            | TYPE_SET_LISTPACK
            | TYPE_HASH_LISTPACK_EX_PRE_GA => s.skip_string(),
            TYPE_LIST_QUICKLIST_2 => {
                let n = s.len()?;
                for _ in 0..n {
                    let container = s.len()?;
                    if container != 1 && container != 2 {
                        return Err(RdbError::corrupt("unknown quicklist container"));
                    }
                    s.skip_string()?;
                }
                Ok(())
            }
            TYPE_STREAM_LISTPACKS | TYPE_STREAM_LISTPACKS_2 | TYPE_STREAM_LISTPACKS_3 => {
                let nodes = s.len()?;
                for _ in 0..nodes {
                    s.skip_string()?;
                    s.skip_string()?;
                }
                s.len()?; // length
                s.len()?; // last id
                s.len()?;
                if t >= TYPE_STREAM_LISTPACKS_2 {
                    for _ in 0..5 {
                        s.len()?; // first id, max deleted id, entries added
                    }
                }
                let groups = s.len()?;
                for _ in 0..groups {
                    s.skip_string()?;
                    s.len()?;
                    s.len()?;
                    if t >= TYPE_STREAM_LISTPACKS_2 {
                        s.len()?;
                    }
                    let pel = s.len()?;
                    for _ in 0..pel {
                        s.skip(16 + 8)?;
                        s.len()?;
                    }
                    let consumers = s.len()?;
                    for _ in 0..consumers {
                        s.skip_string()?;
                        s.skip(if t >= TYPE_STREAM_LISTPACKS_3 { 16 } else { 8 })?;
                        let n = s.len()?;
                        for _ in 0..n {
                            s.skip(16)?;
                        }
                    }
                }
                Ok(())
            }
            TYPE_MODULE_2 => {
                self.module_id = Some(s.len()?);
                self.skip_module_body()
            }
            TYPE_MODULE_PRE_GA => Err(RdbError::Unsupported("pre-GA module value format".into())),
            other => Err(RdbError::UnknownType {
                type_byte: other,
                offset: None,
            }),
        }
    }
}

/// Module value opcodes (`RDB_MODULE_OPCODE_*`).
const MODULE_OPCODE_EOF: u64 = 0;
const MODULE_OPCODE_SINT: u64 = 1;
const MODULE_OPCODE_UINT: u64 = 2;
const MODULE_OPCODE_FLOAT: u64 = 3;
const MODULE_OPCODE_DOUBLE: u64 = 4;
const MODULE_OPCODE_STRING: u64 = 5;

impl<R: Read> Iterator for RdbReader<R> {
    type Item = Result<Item, RdbError>;

    /// Ends (`None`) after the first fatal error, so a `for` loop that
    /// keeps going on errors still terminates.
    fn next(&mut self) -> Option<Self::Item> {
        if self.state == State::Failed {
            return None;
        }
        self.next_item().transpose()
    }
}

//! Typed values and the decoder from a value's RDB bytes (`rdbLoadObject`
//! in `src/rdb.c`, Redis and Valkey), covering every encoding those servers
//! write: plain, ziplist, listpack, intset, zipmap, quicklist 1 and 2,
//! streams 1–3 and hashes with field expiration (Redis 7.4 types 22–25,
//! Valkey 9 `RDB_TYPE_HASH_2`).

use crate::bytes::{parse_double, Cursor};
use crate::encodings::{self, Elem};
use crate::error::RdbError;
use crate::types::*;

/// A decoded value, independent of how Redis encoded it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string.
    String(Vec<u8>),
    /// A list, head first.
    List(Vec<Vec<u8>>),
    /// A set's members (in file order).
    Set(Vec<Vec<u8>>),
    /// A sorted set's members with their scores (in file order).
    SortedSet(Vec<(Vec<u8>, f64)>),
    /// A hash's fields (in file order), with per-field expiry where the
    /// format carries one.
    Hash(Vec<HashField>),
    /// A stream.
    Stream(Box<Stream>),
}

impl Value {
    /// The Redis type name (`TYPE` command).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "string",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::SortedSet(_) => "zset",
            Value::Hash(_) => "hash",
            Value::Stream(_) => "stream",
        }
    }
}

/// One hash field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashField {
    /// The field name.
    pub field: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// Absolute expiry in Unix milliseconds (hash field expiration), if any.
    pub expire_ms: Option<i64>,
}

/// A stream ID `<ms>-<seq>` (`streamID` in `src/stream.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence part.
    pub seq: u64,
}

impl StreamId {
    /// Decode the 16-byte big-endian form used for rax keys and PELs
    /// (`streamDecodeID`).
    pub fn from_be_bytes(b: &[u8; 16]) -> StreamId {
        let mut ms = [0u8; 8];
        let mut seq = [0u8; 8];
        ms.copy_from_slice(&b[..8]);
        seq.copy_from_slice(&b[8..]);
        StreamId {
            ms: u64::from_be_bytes(ms),
            seq: u64::from_be_bytes(seq),
        }
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A stream entry that is not deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// Its ID.
    pub id: StreamId,
    /// Field/value pairs in order.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A pending (delivered, unacknowledged) entry of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEntry {
    /// The entry's ID (it may have been deleted from the stream since).
    pub id: StreamId,
    /// Last delivery time, Unix milliseconds.
    pub delivery_time_ms: i64,
    /// Number of deliveries.
    pub delivery_count: u64,
    /// The consumer that owns it (`None` only in a damaged file).
    pub consumer: Option<Vec<u8>>,
}

/// A consumer of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    /// Its name.
    pub name: Vec<u8>,
    /// Last time it was seen, Unix milliseconds.
    pub seen_time_ms: i64,
    /// Last time it read successfully (stream type 3 only).
    pub active_time_ms: Option<i64>,
    /// IDs of its pending entries, in order.
    pub pending: Vec<StreamId>,
}

/// A consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroup {
    /// Its name.
    pub name: Vec<u8>,
    /// Last delivered ID.
    pub last_delivered_id: StreamId,
    /// Logical read counter (`entries_read`; -1 means unknown), stream
    /// types 2 and 3 only.
    pub entries_read: Option<i64>,
    /// The group's pending entries list, in ID order.
    pub pel: Vec<PendingEntry>,
    /// Its consumers.
    pub consumers: Vec<Consumer>,
}

/// A stream value (`stream` in `src/stream.h`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stream {
    /// Live entries in ID order.
    pub entries: Vec<StreamEntry>,
    /// The stored length (number of live entries).
    pub length: u64,
    /// Last ID ever generated.
    pub last_id: StreamId,
    /// First live ID (types 2 and 3).
    pub first_id: Option<StreamId>,
    /// Largest deleted ID (types 2 and 3).
    pub max_deleted_id: Option<StreamId>,
    /// Entries ever added (types 2 and 3).
    pub entries_added: Option<u64>,
    /// Consumer groups.
    pub groups: Vec<ConsumerGroup>,
}

/// `STREAM_ITEM_FLAG_DELETED` and `STREAM_ITEM_FLAG_SAMEFIELDS`.
const STREAM_FLAG_DELETED: i64 = 1;
const STREAM_FLAG_SAMEFIELDS: i64 = 2;

/// Decode a value from its bytes exactly as they follow the key in the RDB
/// (or follow the type byte in a DUMP payload). `flavor` settles type 22.
///
/// Errors on module values ([`RdbError::Module`], naming the module),
/// on unknown types, and on any inconsistency; never panics.
pub fn decode_value(rdb_type: u8, raw: &[u8], flavor: Flavor) -> Result<Value, RdbError> {
    let mut c = Cursor::new(raw);
    let v = decode_from(&mut c, rdb_type, flavor)?;
    if !c.is_empty() {
        return Err(RdbError::corrupt("extra bytes after the value"));
    }
    Ok(v)
}

fn elems_to_vecs(e: Vec<Elem<'_>>) -> Vec<Vec<u8>> {
    e.iter().map(Elem::to_vec).collect()
}

fn pairs_to_zset(e: Vec<Elem<'_>>) -> Result<Vec<(Vec<u8>, f64)>, RdbError> {
    if !e.len().is_multiple_of(2) {
        return Err(RdbError::corrupt(
            "zset encoding with an odd number of elements",
        ));
    }
    e.chunks_exact(2)
        .map(|p| {
            let score = match p[1] {
                Elem::Int(i) => i as f64,
                Elem::Str(s) => parse_double(s)?,
            };
            if score.is_nan() {
                return Err(RdbError::corrupt("zset with NaN score"));
            }
            Ok((p[0].to_vec(), score))
        })
        .collect()
}

fn pairs_to_hash(e: Vec<Elem<'_>>) -> Result<Vec<HashField>, RdbError> {
    if !e.len().is_multiple_of(2) {
        return Err(RdbError::corrupt(
            "hash encoding with an odd number of elements",
        ));
    }
    Ok(e.chunks_exact(2)
        .map(|p| HashField {
            field: p[0].to_vec(),
            value: p[1].to_vec(),
            expire_ms: None,
        })
        .collect())
}

fn triples_to_hash(e: Vec<Elem<'_>>) -> Result<Vec<HashField>, RdbError> {
    if !e.len().is_multiple_of(3) {
        return Err(RdbError::corrupt(
            "hash-with-TTL listpack not made of triples",
        ));
    }
    e.chunks_exact(3)
        .map(|p| {
            let ttl = p[2].as_int()?;
            Ok(HashField {
                field: p[0].to_vec(),
                value: p[1].to_vec(),
                expire_ms: if ttl == 0 { None } else { Some(ttl) },
            })
        })
        .collect()
}

fn decode_from(c: &mut Cursor<'_>, t: u8, flavor: Flavor) -> Result<Value, RdbError> {
    match t {
        TYPE_STRING => Ok(Value::String(c.string_owned()?)),
        TYPE_LIST | TYPE_SET => {
            let n = c.count(1)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(c.string_owned()?);
            }
            Ok(if t == TYPE_LIST {
                Value::List(items)
            } else {
                Value::Set(items)
            })
        }
        TYPE_ZSET | TYPE_ZSET_2 => {
            let n = c.count(2)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                let m = c.string_owned()?;
                let s = if t == TYPE_ZSET_2 {
                    c.binary_double()?
                } else {
                    c.string_double()?
                };
                if s.is_nan() {
                    return Err(RdbError::corrupt("zset with NaN score"));
                }
                items.push((m, s));
            }
            Ok(Value::SortedSet(items))
        }
        TYPE_HASH => {
            let n = c.count(2)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                let field = c.string_owned()?;
                let value = c.string_owned()?;
                items.push(HashField {
                    field,
                    value,
                    expire_ms: None,
                });
            }
            Ok(Value::Hash(items))
        }
        TYPE_22 if flavor == Flavor::Valkey => {
            // Valkey 9 RDB_TYPE_HASH_2: (field, value, 8-byte LE expiry or -1).
            let n = c.count(10)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                let field = c.string_owned()?;
                let value = c.string_owned()?;
                let ttl = c.millis()?;
                items.push(HashField {
                    field,
                    value,
                    expire_ms: if ttl == -1 { None } else { Some(ttl) },
                });
            }
            Ok(Value::Hash(items))
        }
        TYPE_22 | TYPE_HASH_METADATA => {
            // Redis 7.4: [minExpire] count, then (ttl, field, value); the
            // GA form stores TTLs relative to minExpire, plus one.
            let min_expire = if t == TYPE_HASH_METADATA {
                Some(c.millis()? as u64)
            } else {
                None
            };
            let n = c.count(3)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                let ttl = c.len()?;
                let expire = match (ttl, min_expire) {
                    (0, _) => None,
                    (t, Some(min)) => Some(t.wrapping_add(min).wrapping_sub(1)),
                    (t, None) => Some(t),
                };
                if let Some(e) = expire {
                    if e > 0x0000_FFFF_FFFF_FFFF {
                        return Err(RdbError::corrupt("hash field expiry out of range"));
                    }
                }
                let field = c.string_owned()?;
                let value = c.string_owned()?;
                items.push(HashField {
                    field,
                    value,
                    expire_ms: expire.map(|e| e as i64),
                });
            }
            Ok(Value::Hash(items))
        }
        TYPE_HASH_LISTPACK_EX | TYPE_HASH_LISTPACK_EX_PRE_GA => {
            if t == TYPE_HASH_LISTPACK_EX {
                let _min_expire = c.millis()?;
            }
            let blob = c.string()?;
            Ok(Value::Hash(triples_to_hash(encodings::listpack(&blob)?)?))
        }
        TYPE_HASH_ZIPMAP => {
            let blob = c.string()?;
            let pairs = encodings::zipmap(&blob)?;
            Ok(Value::Hash(
                pairs
                    .into_iter()
                    .map(|(f, v)| HashField {
                        field: f.to_vec(),
                        value: v.to_vec(),
                        expire_ms: None,
                    })
                    .collect(),
            ))
        }
        TYPE_LIST_ZIPLIST => Ok(Value::List(elems_to_vecs(encodings::ziplist(
            &c.string()?,
        )?))),
        TYPE_SET_INTSET => {
            let blob = c.string()?;
            let ints = encodings::intset(&blob)?;
            Ok(Value::Set(
                ints.into_iter().map(crate::bytes::int_to_bytes).collect(),
            ))
        }
        TYPE_SET_LISTPACK => Ok(Value::Set(elems_to_vecs(encodings::listpack(
            &c.string()?,
        )?))),
        TYPE_ZSET_ZIPLIST => Ok(Value::SortedSet(pairs_to_zset(encodings::ziplist(
            &c.string()?,
        )?)?)),
        TYPE_ZSET_LISTPACK => Ok(Value::SortedSet(pairs_to_zset(encodings::listpack(
            &c.string()?,
        )?)?)),
        TYPE_HASH_ZIPLIST => Ok(Value::Hash(pairs_to_hash(encodings::ziplist(
            &c.string()?,
        )?)?)),
        TYPE_HASH_LISTPACK => Ok(Value::Hash(pairs_to_hash(encodings::listpack(
            &c.string()?,
        )?)?)),
        TYPE_LIST_QUICKLIST | TYPE_LIST_QUICKLIST_2 => {
            let nodes = c.count(2)?;
            let mut items = Vec::new();
            for _ in 0..nodes {
                let container = if t == TYPE_LIST_QUICKLIST_2 {
                    c.len()?
                } else {
                    2
                };
                let blob = c.string()?;
                match container {
                    // QUICKLIST_NODE_CONTAINER_PLAIN: one big element.
                    1 => items.push(blob.into_owned()),
                    // QUICKLIST_NODE_CONTAINER_PACKED.
                    2 => {
                        let elems = if t == TYPE_LIST_QUICKLIST_2 {
                            encodings::listpack(&blob)?
                        } else {
                            encodings::ziplist(&blob)?
                        };
                        items.extend(elems.iter().map(Elem::to_vec));
                    }
                    _ => return Err(RdbError::corrupt("unknown quicklist container")),
                }
            }
            Ok(Value::List(items))
        }
        TYPE_STREAM_LISTPACKS | TYPE_STREAM_LISTPACKS_2 | TYPE_STREAM_LISTPACKS_3 => {
            Ok(Value::Stream(Box::new(decode_stream(c, t)?)))
        }
        TYPE_MODULE_2 => {
            let id = c.len()?;
            Err(RdbError::Module {
                name: module_name_from_id(id),
            })
        }
        TYPE_MODULE_PRE_GA => Err(RdbError::Unsupported("pre-GA module value format".into())),
        other => Err(RdbError::UnknownType {
            type_byte: other,
            offset: None,
        }),
    }
}

fn stream_id(c: &mut Cursor<'_>) -> Result<StreamId, RdbError> {
    Ok(StreamId {
        ms: c.len()?,
        seq: c.len()?,
    })
}

fn raw_id(c: &mut Cursor<'_>) -> Result<StreamId, RdbError> {
    Ok(StreamId::from_be_bytes(&c.array::<16>()?))
}

fn decode_stream(c: &mut Cursor<'_>, t: u8) -> Result<Stream, RdbError> {
    let mut s = Stream::default();
    let nodes = c.count(2)?;
    for _ in 0..nodes {
        let key = c.string()?;
        let key: &[u8; 16] = key
            .as_ref()
            .try_into()
            .map_err(|_| RdbError::corrupt("stream node key is not a stream ID"))?;
        let master = StreamId::from_be_bytes(key);
        let lp = c.string()?;
        decode_stream_listpack(&lp, master, &mut s.entries)?;
    }
    s.length = c.len()?;
    s.last_id = stream_id(c)?;
    if t >= TYPE_STREAM_LISTPACKS_2 {
        s.first_id = Some(stream_id(c)?);
        s.max_deleted_id = Some(stream_id(c)?);
        s.entries_added = Some(c.len()?);
    }
    let groups = c.count(3)?;
    for _ in 0..groups {
        let name = c.string_owned()?;
        let last_delivered_id = stream_id(c)?;
        let entries_read = if t >= TYPE_STREAM_LISTPACKS_2 {
            Some(c.len()? as i64)
        } else {
            None
        };
        let pel_len = c.count(25)?;
        let mut pel = Vec::with_capacity(pel_len);
        for _ in 0..pel_len {
            let id = raw_id(c)?;
            let delivery_time_ms = c.millis()?;
            let delivery_count = c.len()?;
            // The PEL is a radix tree saved in key order: IDs strictly
            // increase, which also lets consumers find their entries fast.
            if pel.last().is_some_and(|p: &PendingEntry| p.id >= id) {
                return Err(RdbError::corrupt("stream PEL not in ID order"));
            }
            pel.push(PendingEntry {
                id,
                delivery_time_ms,
                delivery_count,
                consumer: None,
            });
        }
        let ncons = c.count(10)?;
        let mut consumers = Vec::with_capacity(ncons);
        for _ in 0..ncons {
            let cname = c.string_owned()?;
            let seen_time_ms = c.millis()?;
            let active_time_ms = if t >= TYPE_STREAM_LISTPACKS_3 {
                Some(c.millis()?)
            } else {
                None
            };
            let np = c.count(16)?;
            let mut pending = Vec::with_capacity(np);
            for _ in 0..np {
                let id = raw_id(c)?;
                let slot = pel
                    .binary_search_by(|p: &PendingEntry| p.id.cmp(&id))
                    .map_err(|_| RdbError::corrupt("consumer PEL entry not in the group PEL"))?;
                if pel[slot].consumer.is_some() {
                    return Err(RdbError::corrupt("PEL entry owned by two consumers"));
                }
                pel[slot].consumer = Some(cname.clone());
                pending.push(id);
            }
            consumers.push(Consumer {
                name: cname,
                seen_time_ms,
                active_time_ms,
                pending,
            });
        }
        s.groups.push(ConsumerGroup {
            name,
            last_delivered_id,
            entries_read,
            pel,
            consumers,
        });
    }
    Ok(s)
}

/// Walk one stream listpack node (see the layout comment above
/// `streamAppendItem` in `src/t_stream.c`): a master entry
/// `count deleted n field_1..field_n 0`, then entries
/// `flags ms-delta seq-delta [n] (fields and) values lp-count`.
fn decode_stream_listpack(
    lp: &[u8],
    master: StreamId,
    out: &mut Vec<StreamEntry>,
) -> Result<(), RdbError> {
    let e = encodings::listpack(lp)?;
    let bad = || RdbError::corrupt("malformed stream listpack");
    let mut i = 0usize;
    let next = |i: &mut usize| -> Result<Elem<'_>, RdbError> {
        let v = *e.get(*i).ok_or_else(bad)?;
        *i += 1;
        Ok(v)
    };
    let count = next(&mut i)?.as_int()?;
    let deleted = next(&mut i)?.as_int()?;
    let nmaster = next(&mut i)?.as_int()?;
    if count < 0 || deleted < 0 || nmaster < 0 || nmaster as usize > e.len() {
        return Err(bad());
    }
    let mut master_fields = Vec::with_capacity(nmaster as usize);
    for _ in 0..nmaster {
        master_fields.push(next(&mut i)?);
    }
    if next(&mut i)?.as_int()? != 0 {
        return Err(bad());
    }
    let mut seen_live = 0i64;
    let mut seen_deleted = 0i64;
    while i < e.len() {
        let flags = next(&mut i)?.as_int()?;
        let ms = master.ms.wrapping_add(next(&mut i)?.as_int()? as u64);
        let seq = master.seq.wrapping_add(next(&mut i)?.as_int()? as u64);
        let same = flags & STREAM_FLAG_SAMEFIELDS != 0;
        let nfields = if same {
            nmaster
        } else {
            next(&mut i)?.as_int()?
        };
        if nfields < 0 || nfields as usize > e.len() {
            return Err(bad());
        }
        let mut fields = Vec::with_capacity(nfields as usize);
        #[allow(clippy::needless_range_loop)]
        for k in 0..nfields as usize {
            let f = if same {
                *master_fields.get(k).ok_or_else(bad)?
            } else {
                next(&mut i)?
            };
            let v = next(&mut i)?;
            fields.push((f.to_vec(), v.to_vec()));
        }
        let lp_count = next(&mut i)?.as_int()?;
        let expect = if same { 3 + nfields } else { 4 + 2 * nfields };
        if lp_count != expect {
            return Err(bad());
        }
        if flags & STREAM_FLAG_DELETED != 0 {
            seen_deleted += 1;
        } else {
            seen_live += 1;
            let id = StreamId { ms, seq };
            if let Some(last) = out.last() {
                if last.id >= id {
                    return Err(RdbError::corrupt("stream entries out of order"));
                }
            }
            out.push(StreamEntry { id, fields });
        }
    }
    if seen_live != count || seen_deleted != deleted {
        return Err(RdbError::corrupt(
            "stream listpack counters do not match its entries",
        ));
    }
    Ok(())
}

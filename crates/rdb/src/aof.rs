//! Turning RDB items into a RESP command stream, the way an AOF rewrite
//! expresses a dataset (`rewriteAppendOnlyFileRio` and the `rewrite*Object`
//! helpers in `src/aof.c`): `SELECT` per database, variadic `RPUSH`/`SADD`/
//! `ZADD`/`HSET` in chunks of [`ITEMS_PER_CMD`], streams rebuilt with explicit
//! IDs, `XSETID`, `XGROUP CREATE … ENTRIESREAD` and `XCLAIM … JUSTID FORCE`,
//! `PEXPIREAT` for keys with an expiry and `FUNCTION LOAD` for libraries.
//!
//! The output is a plain sequence of `*N\r\n$len\r\n…` commands that
//! `redis-check-aof` accepts and that can be piped into a server.

use std::io::{BufWriter, Read, Write};

use crate::error::RdbError;
use crate::reader::{Item, RdbReader, ReadMode};
use crate::value::{HashField, Stream, StreamId, Value};

/// `AOF_REWRITE_ITEMS_PER_CMD` in `src/server.h`.
pub const ITEMS_PER_CMD: usize = 64;

/// Options for the conversion.
#[derive(Debug, Clone)]
pub struct AofOptions {
    /// Elements per variadic command (default [`ITEMS_PER_CMD`]).
    pub items_per_cmd: usize,
    /// When set, keys (and hash fields) whose absolute expiry is at or
    /// before this Unix time in milliseconds are left out, as a server
    /// loading the data would drop them.
    pub now_ms: Option<i64>,
    /// Write streams as Redis < 7.0 understands them: no `ENTRIESADDED` /
    /// `MAXDELETEDID` on `XSETID`, no `ENTRIESREAD` on `XGROUP CREATE`
    /// (those counters are then recomputed by the target).
    pub legacy_streams: bool,
}

impl Default for AofOptions {
    fn default() -> Self {
        AofOptions {
            items_per_cmd: ITEMS_PER_CMD,
            now_ms: None,
            legacy_streams: false,
        }
    }
}

/// What a conversion wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AofStats {
    /// Keys written.
    pub keys: u64,
    /// Keys left out because they had already expired.
    pub expired_skipped: u64,
    /// Keys left out because they had no elements (Redis drops those too).
    pub empty_skipped: u64,
    /// Function libraries written.
    pub functions: u64,
    /// Commands written.
    pub commands: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// Format a double so that parsing it gives back exactly the same value
/// (shortest round-trip representation; `inf`/`-inf` as Redis spells
/// them). Used for `ZADD` scores.
pub fn format_double(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if v.is_nan() {
        return "nan".into();
    }
    let plain = format!("{v}");
    let exp = format!("{v:e}");
    if exp.len() < plain.len() {
        exp
    } else {
        plain
    }
}

/// Writes RESP commands with byte and command counting.
struct Resp<'a, W: Write> {
    out: &'a mut W,
    commands: u64,
    bytes: u64,
}

/// `prefix` + decimal `n` + CRLF, without allocating.
fn count_line(prefix: u8, n: usize, buf: &mut [u8; 24]) -> &[u8] {
    let mut i = buf.len() - 2;
    buf[i] = b'\r';
    buf[i + 1] = b'\n';
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    i -= 1;
    buf[i] = prefix;
    &buf[i..]
}

impl<W: Write> Resp<'_, W> {
    fn header(&mut self, n: usize) -> Result<(), RdbError> {
        let mut buf = [0u8; 24];
        let line = count_line(b'*', n, &mut buf);
        self.out.write_all(line)?;
        self.bytes += line.len() as u64;
        self.commands += 1;
        Ok(())
    }

    fn bulk(&mut self, b: &[u8]) -> Result<(), RdbError> {
        let mut buf = [0u8; 24];
        let line = count_line(b'$', b.len(), &mut buf);
        self.out.write_all(line)?;
        self.out.write_all(b)?;
        self.out.write_all(b"\r\n")?;
        self.bytes += (line.len() + b.len() + 2) as u64;
        Ok(())
    }

    fn cmd(&mut self, args: &[&[u8]]) -> Result<(), RdbError> {
        self.header(args.len())?;
        for a in args {
            self.bulk(a)?;
        }
        Ok(())
    }
}

fn id_bytes(id: &StreamId) -> Vec<u8> {
    id.to_string().into_bytes()
}

/// Write the commands that recreate one key into `out` (no `SELECT`).
///
/// Returns the number of commands written; 0 when the key is skipped
/// (already expired relative to `opts.now_ms`, or empty). This is the
/// per-key fallback when a server refuses a `RESTORE` payload.
pub fn write_key_commands<W: Write>(
    out: &mut W,
    key: &[u8],
    value: &Value,
    expire_ms: Option<i64>,
    opts: &AofOptions,
) -> Result<u64, RdbError> {
    let mut r = Resp {
        out,
        commands: 0,
        bytes: 0,
    };
    write_key_resp(&mut r, key, value, expire_ms, opts)?;
    Ok(r.commands)
}

/// Whether [`write_key_resp`] emits any command for this (unexpired) value.
fn writes_something(value: &Value, opts: &AofOptions) -> bool {
    match value {
        Value::String(_) | Value::Stream(_) => true,
        Value::List(v) | Value::Set(v) => !v.is_empty(),
        Value::SortedSet(v) => !v.is_empty(),
        Value::Hash(f) => f.iter().any(|f| !is_expired(f.expire_ms, opts)),
    }
}

fn is_expired(expire_ms: Option<i64>, opts: &AofOptions) -> bool {
    matches!((expire_ms, opts.now_ms), (Some(e), Some(now)) if e <= now)
}

fn chunked<W: Write>(
    r: &mut Resp<'_, W>,
    cmd: &[u8],
    key: &[u8],
    items: &[Vec<u8>],
    per: usize,
) -> Result<(), RdbError> {
    for chunk in items.chunks(per.max(1)) {
        r.header(2 + chunk.len())?;
        r.bulk(cmd)?;
        r.bulk(key)?;
        for it in chunk {
            r.bulk(it)?;
        }
    }
    Ok(())
}

fn write_key_resp<W: Write>(
    r: &mut Resp<'_, W>,
    key: &[u8],
    value: &Value,
    expire_ms: Option<i64>,
    opts: &AofOptions,
) -> Result<(), RdbError> {
    if is_expired(expire_ms, opts) {
        return Ok(());
    }
    let per = opts.items_per_cmd.max(1);
    match value {
        Value::String(s) => r.cmd(&[b"SET", key, s])?,
        Value::List(items) => chunked(r, b"RPUSH", key, items, per)?,
        Value::Set(items) => chunked(r, b"SADD", key, items, per)?,
        Value::SortedSet(items) => {
            for chunk in items.chunks(per) {
                r.header(2 + 2 * chunk.len())?;
                r.bulk(b"ZADD")?;
                r.bulk(key)?;
                for (m, s) in chunk {
                    r.bulk(format_double(*s).as_bytes())?;
                    r.bulk(m)?;
                }
            }
        }
        Value::Hash(fields) => {
            let live: Vec<&HashField> = fields
                .iter()
                .filter(|f| !is_expired(f.expire_ms, opts))
                .collect();
            for chunk in live.chunks(per) {
                r.header(2 + 2 * chunk.len())?;
                r.bulk(b"HSET")?;
                r.bulk(key)?;
                for f in chunk {
                    r.bulk(&f.field)?;
                    r.bulk(&f.value)?;
                }
            }
            for f in live.iter().filter(|f| f.expire_ms.is_some()) {
                let at = f.expire_ms.unwrap_or_default().to_string();
                r.cmd(&[b"HPEXPIREAT", key, at.as_bytes(), b"FIELDS", b"1", &f.field])?;
            }
        }
        Value::Stream(s) => write_stream(r, key, s, opts.legacy_streams)?,
    }
    if r.commands > 0 {
        if let Some(e) = expire_ms {
            r.cmd(&[b"PEXPIREAT", key, e.to_string().as_bytes()])?;
        }
    }
    Ok(())
}

/// `rewriteStreamObject` in `src/aof.c`, with one refinement: pending
/// entries whose message was deleted from the stream cannot be recreated by
/// `XCLAIM` alone (it drops IDs that are not in the stream), so such IDs are
/// added as placeholders, claimed, then deleted, and `XSETID` restores the
/// counters afterwards.
fn write_stream<W: Write>(
    r: &mut Resp<'_, W>,
    key: &[u8],
    s: &Stream,
    legacy: bool,
) -> Result<(), RdbError> {
    let mut placeholders: Vec<StreamId> = Vec::new();
    for g in &s.groups {
        for p in &g.pel {
            if p.consumer.is_some()
                && p.id != StreamId::default()
                && s.entries.binary_search_by(|e| e.id.cmp(&p.id)).is_err()
            {
                placeholders.push(p.id);
            }
        }
    }
    placeholders.sort_unstable();
    placeholders.dedup();

    let mut ph = placeholders.iter().peekable();
    for e in &s.entries {
        while let Some(&&p) = ph.peek() {
            if p < e.id {
                r.cmd(&[b"XADD", key, &id_bytes(&p), b"x", b"y"])?;
                ph.next();
            } else {
                break;
            }
        }
        r.header(3 + 2 * e.fields.len())?;
        r.bulk(b"XADD")?;
        r.bulk(key)?;
        r.bulk(&id_bytes(&e.id))?;
        for (f, v) in &e.fields {
            r.bulk(f)?;
            r.bulk(v)?;
        }
    }
    for p in ph {
        r.cmd(&[b"XADD", key, &id_bytes(p), b"x", b"y"])?;
    }
    if s.entries.is_empty() && placeholders.is_empty() {
        // The XADD MAXLEN 0 trick creates an empty stream.
        r.cmd(&[b"XADD", key, b"MAXLEN", b"0", b"0-1", b"x", b"y"])?;
    }

    for g in &s.groups {
        let last = id_bytes(&g.last_delivered_id);
        match g.entries_read.filter(|_| !legacy) {
            Some(n) => r.cmd(&[
                b"XGROUP",
                b"CREATE",
                key,
                &g.name,
                &last,
                b"ENTRIESREAD",
                n.to_string().as_bytes(),
            ])?,
            None => r.cmd(&[b"XGROUP", b"CREATE", key, &g.name, &last])?,
        }
        for c in &g.consumers {
            if c.pending.is_empty() {
                r.cmd(&[b"XGROUP", b"CREATECONSUMER", key, &g.name, &c.name])?;
                continue;
            }
            for id in &c.pending {
                // `decode_value` guarantees the PEL is sorted by ID.
                let Ok(slot) = g.pel.binary_search_by(|p| p.id.cmp(id)) else {
                    continue;
                };
                let p = &g.pel[slot];
                r.cmd(&[
                    b"XCLAIM",
                    key,
                    &g.name,
                    &c.name,
                    b"0",
                    &id_bytes(id),
                    b"TIME",
                    p.delivery_time_ms.to_string().as_bytes(),
                    b"RETRYCOUNT",
                    p.delivery_count.to_string().as_bytes(),
                    b"JUSTID",
                    b"FORCE",
                ])?;
            }
        }
    }

    for chunk in placeholders.chunks(ITEMS_PER_CMD) {
        r.header(2 + chunk.len())?;
        r.bulk(b"XDEL")?;
        r.bulk(key)?;
        for id in chunk {
            r.bulk(&id_bytes(id))?;
        }
    }

    let last = id_bytes(&s.last_id);
    match (s.entries_added.filter(|_| !legacy), s.max_deleted_id) {
        (Some(added), Some(maxdel)) => r.cmd(&[
            b"XSETID",
            key,
            &last,
            b"ENTRIESADDED",
            added.to_string().as_bytes(),
            b"MAXDELETEDID",
            &id_bytes(&maxdel),
        ])?,
        _ => r.cmd(&[b"XSETID", key, &last])?,
    }
    Ok(())
}

/// Streams RDB items out as AOF commands.
pub struct AofWriter<W: Write> {
    out: W,
    opts: AofOptions,
    selected: Option<u64>,
    stats: AofStats,
}

impl<W: Write> AofWriter<W> {
    /// A writer into `out` (wrap files in a `BufWriter`).
    pub fn new(out: W, opts: AofOptions) -> Self {
        AofWriter {
            out,
            opts,
            selected: None,
            stats: AofStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &AofStats {
        &self.stats
    }

    /// Write the commands for one item. Keys must have been read in a
    /// decoding [`ReadMode`]. Module data is refused with
    /// [`RdbError::Module`] naming the module: only the module could
    /// express it.
    pub fn write_item(&mut self, item: &Item) -> Result<(), RdbError> {
        match item {
            Item::Key(k) => {
                let value = k.value.as_ref().ok_or_else(|| {
                    RdbError::Unsupported(
                        "AOF conversion needs decoded values (ReadMode::Decode)".into(),
                    )
                })?;
                self.write_key(k.db, &k.key, value, k.expire_ms)?;
            }
            Item::Function { code } => {
                let mut r = Resp {
                    out: &mut self.out,
                    commands: 0,
                    bytes: 0,
                };
                r.cmd(&[b"FUNCTION", b"LOAD", code])?;
                self.stats.commands += r.commands;
                self.stats.bytes += r.bytes;
                self.stats.functions += 1;
            }
            Item::FunctionPreGa {
                name, engine, code, ..
            } => {
                let mut full =
                    format!("#!{} name=", String::from_utf8_lossy(engine).to_lowercase())
                        .into_bytes();
                full.extend_from_slice(name);
                full.push(b'\n');
                full.extend_from_slice(code);
                let mut r = Resp {
                    out: &mut self.out,
                    commands: 0,
                    bytes: 0,
                };
                r.cmd(&[b"FUNCTION", b"LOAD", &full])?;
                self.stats.commands += r.commands;
                self.stats.bytes += r.bytes;
                self.stats.functions += 1;
            }
            Item::ModuleAux { module_name, .. } => {
                return Err(RdbError::Module {
                    name: module_name.clone(),
                });
            }
            _ => {}
        }
        Ok(())
    }

    /// Write one decoded key of database `db`, with a `SELECT` first when
    /// the database changes. Returns whether the key was written.
    pub fn write_key(
        &mut self,
        db: u64,
        key: &[u8],
        value: &Value,
        expire_ms: Option<i64>,
    ) -> Result<bool, RdbError> {
        if is_expired(expire_ms, &self.opts) {
            self.stats.expired_skipped += 1;
            return Ok(false);
        }
        if !writes_something(value, &self.opts) {
            self.stats.empty_skipped += 1;
            return Ok(false);
        }
        if self.selected != Some(db) {
            let mut r = Resp {
                out: &mut self.out,
                commands: 0,
                bytes: 0,
            };
            r.cmd(&[b"SELECT", db.to_string().as_bytes()])?;
            self.stats.commands += r.commands;
            self.stats.bytes += r.bytes;
            self.selected = Some(db);
        }
        let mut r = Resp {
            out: &mut self.out,
            commands: 0,
            bytes: 0,
        };
        write_key_resp(&mut r, key, value, expire_ms, &self.opts)?;
        self.stats.commands += r.commands;
        self.stats.bytes += r.bytes;
        self.stats.keys += 1;
        Ok(true)
    }

    /// Flush and give back the output.
    pub fn finish(mut self) -> Result<W, RdbError> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Convert a whole RDB into an AOF command stream; the RDB is verified
/// (checksum included) on the way.
pub fn rdb_to_aof<R: Read, W: Write>(
    input: R,
    output: W,
    opts: AofOptions,
) -> Result<AofStats, RdbError> {
    let mut reader = RdbReader::new(input, ReadMode::Decode);
    let mut w = AofWriter::new(BufWriter::with_capacity(1 << 20, output), opts);
    while let Some(item) = reader.next_item()? {
        w.write_item(&item)?;
    }
    let stats = w.stats().clone();
    w.finish()?.flush()?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_round_trip() {
        for v in [
            0.0,
            -0.0,
            1.5,
            -2.25,
            1e300,
            1e-300,
            0.1,
            1.0 / 3.0,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            123456789.0,
        ] {
            let s = format_double(v);
            let back: f64 = s.parse().unwrap();
            assert_eq!(back.to_bits(), v.to_bits(), "{v} -> {s}");
        }
        assert_eq!(format_double(f64::INFINITY), "inf");
        assert_eq!(format_double(f64::NEG_INFINITY), "-inf");
        assert_eq!(format_double(3.0), "3");
        assert_eq!(format_double(1e300), "1e300");
    }

    #[test]
    fn key_commands_shape() {
        let mut out = Vec::new();
        let v = Value::List((0..70).map(|i| i.to_string().into_bytes()).collect());
        let n = write_key_commands(&mut out, b"k", &v, Some(123), &AofOptions::default()).unwrap();
        assert_eq!(n, 3); // RPUSH 64, RPUSH 6, PEXPIREAT
        assert!(out.starts_with(b"*66\r\n$5\r\nRPUSH\r\n$1\r\nk\r\n$1\r\n0\r\n"));
        assert!(out.ends_with(b"*3\r\n$9\r\nPEXPIREAT\r\n$1\r\nk\r\n$3\r\n123\r\n"));
        let opts = AofOptions {
            now_ms: Some(200),
            ..Default::default()
        };
        let mut out = Vec::new();
        assert_eq!(
            write_key_commands(&mut out, b"k", &v, Some(123), &opts).unwrap(),
            0
        );
        assert!(out.is_empty());
    }
}

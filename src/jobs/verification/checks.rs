//! The checks a test restore makes once the sandbox holds the backup:
//! the reservoir sample drawn while the backup is read again (`sample_*`),
//! the key counts per database and type, `DEBUG DIGEST`, and each sampled
//! key compared type for type, value for value and expiry for expiry
//! (`check`, `compare_key`). Pure reads of the sandbox and the store.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use rand::Rng;
use tokio::sync::mpsc;

use super::{DIGEST_MAX_KEYS, FULL_COMPARE_BYTES, NAMED_MISMATCHES};
use crate::catalog::VerificationOutcome;
use crate::jobs::restore::{self, Progress, Restore};
use crate::jobs::{JobFailure, Jobs, Lease};
use crate::model::{now_millis, JobError, Mismatch, VerificationStatus};
use crate::redis::resp::Reply;
use crate::redis::Conn;
use crate::storage::{BackupLocation, FileSource, Manifest};

/// A key drawn for the sample.
#[derive(Debug)]
struct Drawn {
    db: u64,
    key: Vec<u8>,
    expire_ms: Option<i64>,
    rdb_type: u8,
    /// `None` for a module value (the service cannot decode it).
    value: Option<dcs_rdb::Value>,
}

/// What reading the backup again found.
#[derive(Debug, Default)]
pub(super) struct Sampled {
    aof: bool,
    keys: Vec<Drawn>,
    /// Keys per database and type, as the files hold them.
    per_type: BTreeMap<(u64, &'static str), u64>,
    /// Keys per database whose expiry passes before the horizon (the job's
    /// deadline from the start of the test): the sandbox may lack them.
    may_expire: BTreeMap<u64, u64>,
    /// The same per database and type.
    may_expire_type: BTreeMap<(u64, &'static str), u64>,
}

/// Reads every RDB file of the backup once more and draws `k` keys at
/// random (reservoir sampling: whether the next key is drawn is decided
/// before it is read, so only drawn keys are kept, with their raw value
/// decoded here).
pub(super) async fn sample_backup(
    jobs: &Jobs,
    at: &BackupLocation,
    manifest: &Manifest,
    k: u64,
    horizon: i64,
    progress: &Arc<Progress>,
) -> Result<Sampled, JobFailure> {
    let mut out = Sampled {
        aof: manifest.format == "aof",
        ..Default::default()
    };
    if out.aof {
        return Ok(out);
    }
    let mut seen = 0u64;
    for f in &manifest.files {
        let path = at.file(&f.name);
        let reader: Box<dyn Read + Send> = match jobs.store.source(&path)? {
            FileSource::Local(local) => Box::new(std::fs::File::open(&local).map_err(|e| {
                JobFailure::new(JobError::Storage, format!("reading {}: {e}", f.name))
            })?),
            FileSource::Remote(remote) => {
                let mut stream = remote.stream().await?;
                let (tx, rx) = mpsc::channel::<Bytes>(crate::jobs::pipe::DEPTH);
                crate::jobs::spawn_traced(async move {
                    while let Some(Ok(chunk)) = stream.next().await {
                        if tx.send(chunk).await.is_err() {
                            break;
                        }
                    }
                });
                Box::new(crate::jobs::pipe::ChannelReader::new(rx))
            }
        };
        let counted = restore::Counted {
            inner: reader,
            progress: Arc::clone(progress),
        };
        let max_string = jobs.settings.max_rdb_string;
        let mut state = std::mem::take(&mut out);
        let name = f.name.clone();
        let res = tokio::task::spawn_blocking(move || {
            let r = sample_rdb(counted, k, &mut seen, horizon, max_string, &mut state);
            (r, state, seen)
        })
        .await
        .map_err(|e| JobFailure::new(JobError::SizeQuery, format!("sampler crashed: {e}")))?;
        out = res.1;
        seen = res.2;
        res.0.map_err(|e| {
            JobFailure::new(JobError::SizeQuery, format!("backup file {name}: {e}"))
        })?;
    }
    Ok(out)
}

fn sample_rdb(
    input: impl Read,
    k: u64,
    seen: &mut u64,
    horizon: i64,
    max_string: u64,
    out: &mut Sampled,
) -> Result<(), dcs_rdb::RdbError> {
    use dcs_rdb::{Item, RdbReader, ReadMode};
    let mut rng = rand::thread_rng();
    let mut reader = RdbReader::new(input, ReadMode::Skip).max_string(max_string);
    // The slot the next key goes to, decided before it is read.
    let mut slot: Option<Option<usize>> = None;
    loop {
        let next = *slot.get_or_insert_with(|| {
            if *seen < k {
                Some(*seen as usize)
            } else {
                let j = rng.gen_range(0..=*seen);
                (j < k).then_some(j as usize)
            }
        });
        reader.set_mode(if next.is_some() {
            ReadMode::Raw
        } else {
            ReadMode::Skip
        });
        let Some(item) = reader.next_item()? else {
            return Ok(());
        };
        let Item::Key(e) = item else { continue };
        slot = None;
        *seen += 1;
        let t = dcs_rdb::types::type_name(e.rdb_type);
        *out.per_type.entry((e.db, t)).or_insert(0) += 1;
        if e.expire_ms.is_some_and(|x| x <= horizon) {
            *out.may_expire.entry(e.db).or_insert(0) += 1;
            *out.may_expire_type.entry((e.db, t)).or_insert(0) += 1;
        }
        if let Some(i) = next {
            let value = e
                .raw
                .as_deref()
                .and_then(|raw| dcs_rdb::decode_value(e.rdb_type, raw, reader.flavor()).ok());
            let d = Drawn {
                db: e.db,
                key: e.key,
                expire_ms: e.expire_ms,
                rdb_type: e.rdb_type,
                value,
            };
            if i < out.keys.len() {
                out.keys[i] = d;
            } else {
                out.keys.push(d);
            }
        }
    }
}

/// Keys per database from `INFO keyspace`.
fn keyspace(info: &crate::redis::Info) -> BTreeMap<u64, u64> {
    info.with_prefix("db")
        .filter_map(|(k, v)| {
            let db = k.strip_prefix("db")?.parse().ok()?;
            let keys = v
                .split(',')
                .find_map(|p| p.strip_prefix("keys="))?
                .parse()
                .ok()?;
            Some((db, keys))
        })
        .collect()
}

fn shown_key(k: &[u8]) -> String {
    let s = String::from_utf8_lossy(k);
    let mut out: String = s.chars().take(128).collect();
    if s.chars().count() > 128 {
        out.push('…');
    }
    out
}

struct Found {
    mismatches: u64,
    named: Vec<Mismatch>,
}

impl Found {
    fn add(&mut self, db: u64, key: String, what: String) {
        self.mismatches += 1;
        if self.named.len() < NAMED_MISMATCHES {
            self.named.push(Mismatch { key, db, what });
        }
    }
}

/// Compares the sandbox with the manifest and the sample.
pub(super) async fn check(
    jobs: &Jobs,
    r: &Restore<'_>,
    sampled: &Sampled,
) -> Result<VerificationOutcome, JobFailure> {
    let node = &r.topology.shards[0].master;
    let mut c = Conn::open(&r.target.connection, &node.host, node.port, &jobs.redis).await?;
    let mut found = Found {
        mismatches: 0,
        named: Vec::new(),
    };
    let mut notes = Vec::new();

    // Counts per database.
    let mut expected: BTreeMap<u64, u64> = BTreeMap::new();
    let mut expected_type: BTreeMap<(u64, String), u64> = BTreeMap::new();
    for f in &r.manifest.files {
        for (db, n) in &f.keys_per_db {
            *expected.entry(*db).or_insert(0) += n;
        }
        for (db, types) in &f.keys_per_type {
            for (t, n) in types {
                *expected_type.entry((*db, t.clone())).or_insert(0) += n;
            }
        }
    }
    let held = keyspace(&c.info("keyspace").await?);
    let may_expire_total: u64 = sampled.may_expire.values().sum();
    let dbs: std::collections::BTreeSet<u64> =
        expected.keys().chain(held.keys()).copied().collect();
    for db in dbs {
        let want = expected.get(&db).copied().unwrap_or(0);
        let have = held.get(&db).copied().unwrap_or(0);
        let slack = sampled.may_expire.get(&db).copied().unwrap_or(0);
        if have > want || have + slack < want {
            found.add(
                db,
                format!("db{db}"),
                if slack > 0 {
                    format!("{have} keys in the sandbox, the manifest says {want} ({slack} may have expired)")
                } else {
                    format!("{have} keys in the sandbox, the manifest says {want}")
                },
            );
        }
    }
    if may_expire_total > 0 {
        notes.push(format!(
            "{may_expire_total} keys carry an expiry that passes before the check could end; \
             counts allow for them"
        ));
    }

    // Counts per type: the files against the manifest (RDB backups), and
    // the sandbox against the manifest where a database holds several.
    if !sampled.aof && !expected_type.is_empty() {
        for ((db, t), want) in &expected_type {
            let in_files = sampled
                .per_type
                .get(&(*db, t.as_str()))
                .copied()
                .unwrap_or(0);
            if in_files != *want {
                found.add(
                    *db,
                    format!("db{db}:{t}"),
                    format!("{in_files} {t} keys in the files, the manifest says {want}"),
                );
            }
        }
    }
    let mut by_db: BTreeMap<u64, Vec<(&str, u64)>> = BTreeMap::new();
    for ((db, t), n) in &expected_type {
        if *n > 0 {
            by_db.entry(*db).or_default().push((t.as_str(), *n));
        }
    }
    let mut selected = 0u64;
    for (db, types) in &by_db {
        if types.len() < 2 {
            continue; // the database's count is the type's count
        }
        if *db != selected {
            c.cmd_ok(&["SELECT", &db.to_string()]).await?;
            selected = *db;
        }
        for (t, want) in types {
            if *t == "module" {
                continue; // SCAN TYPE takes the module's own type name
            }
            let have = scan_count(&mut c, t, &r.lease).await?;
            let slack = sampled
                .may_expire_type
                .get(&(*db, type_static(t)))
                .copied()
                .unwrap_or(0);
            if have > *want || have + slack < *want {
                found.add(
                    *db,
                    format!("db{db}:{t}"),
                    format!("{have} {t} keys in the sandbox, the manifest says {want}"),
                );
            }
        }
    }

    // The sample.
    let mut checked = 0u64;
    let now = now_millis();
    if sampled.aof {
        notes.push(
            "AOF backup: counts and digest checked; no value sample (an AOF holds commands, \
             not values)"
                .into(),
        );
    }
    let pexpiretime = !matches!(
        c.cmd(&["COMMAND", "INFO", "PEXPIRETIME"]).await?,
        Reply::Array(Some(ref v)) if v.first().is_none_or(|x| matches!(x, Reply::Array(None) | Reply::Bulk(None)))
    );
    let mut expired = 0u64;
    for d in &sampled.keys {
        if r.lease.lost() {
            return Err(JobFailure::lost());
        }
        if d.expire_ms.is_some_and(|x| x <= now + 1000) {
            expired += 1;
            continue;
        }
        if d.db != selected {
            c.cmd_ok(&["SELECT", &d.db.to_string()]).await?;
            selected = d.db;
        }
        let key = shown_key(&d.key);
        if let Some(what) = compare_key(&mut c, d, pexpiretime).await? {
            found.add(d.db, key, what);
        }
        checked += 1;
    }
    if expired > 0 {
        notes.push(format!(
            "{expired} sampled keys had expired and were not compared"
        ));
    }

    // The digest: SHA1 over the whole dataset, about 4 s per million
    // keys (as long as the load itself), so only for smaller datasets.
    let total: u64 = held.values().sum();
    let digest = if total > DIGEST_MAX_KEYS {
        notes.push(format!(
            "DEBUG DIGEST not taken: {total} keys (over {DIGEST_MAX_KEYS}, it would take longer than the load)"
        ));
        None
    } else {
        let mut opts = jobs.redis.clone();
        opts.io_timeout = Duration::from_secs(300);
        let mut d = Conn::open(&r.target.connection, &node.host, node.port, &opts).await?;
        match d.cmd(&["DEBUG", "DIGEST"]).await? {
            Reply::Simple(s) => Some(s),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
            _ => {
                notes.push("DEBUG DIGEST is not allowed by the sandbox".into());
                None
            }
        }
    }
    .filter(|d| d.len() <= 64 && d.bytes().all(|b| b.is_ascii_hexdigit()));

    let status = if found.mismatches == 0 {
        VerificationStatus::Passed
    } else {
        VerificationStatus::Failed
    };
    let mut reason = notes;
    if found.mismatches > 0 {
        reason.insert(
            0,
            format!(
                "{} mismatches between the sandbox and the backup (first: {} {})",
                found.mismatches,
                found.named.first().map(|m| m.key.as_str()).unwrap_or(""),
                found.named.first().map(|m| m.what.as_str()).unwrap_or("")
            ),
        );
    }
    Ok(VerificationOutcome {
        status: Some(status),
        keys_checked: Some(checked),
        mismatches: Some(found.mismatches),
        mismatch_sample: found.named,
        digest,
        error: (status == VerificationStatus::Failed).then_some(JobError::RestoreSync),
        reason: (!reason.is_empty()).then(|| reason.join("; ")),
        ..Default::default()
    })
}

fn type_static(t: &str) -> &'static str {
    match t {
        "string" => "string",
        "list" => "list",
        "set" => "set",
        "zset" => "zset",
        "hash" => "hash",
        "stream" => "stream",
        _ => "module",
    }
}

/// Keys of type `t` in the selected database, by `SCAN 0 … TYPE t`.
async fn scan_count(c: &mut Conn, t: &str, lease: &Lease) -> Result<u64, JobFailure> {
    let mut cursor = "0".to_owned();
    let mut n = 0u64;
    loop {
        if lease.lost() {
            return Err(JobFailure::lost());
        }
        let reply = c
            .cmd_ok(&["SCAN", cursor.as_str(), "COUNT", "1000", "TYPE", t])
            .await?;
        let Reply::Array(Some(parts)) = reply else {
            return Err(JobFailure::new(JobError::ToolStart, "SCAN answered oddly"));
        };
        let next = parts.first().and_then(Reply::as_text).unwrap_or_default();
        if let Some(Reply::Array(Some(keys))) = parts.get(1) {
            n += keys.len() as u64;
        }
        if next == "0" || next.is_empty() {
            return Ok(n);
        }
        cursor = next;
    }
}

fn bulk(r: &Reply) -> Option<&[u8]> {
    match r {
        Reply::Bulk(Some(b)) => Some(b),
        _ => None,
    }
}

fn bulks(r: &Reply) -> Option<Vec<Vec<u8>>> {
    match r {
        Reply::Array(Some(items)) => items.iter().map(|i| bulk(i).map(<[u8]>::to_vec)).collect(),
        _ => None,
    }
}

fn size_of(v: &dcs_rdb::Value) -> (u64, u64) {
    use dcs_rdb::Value as V;
    match v {
        V::String(s) => (s.len() as u64, s.len() as u64),
        V::List(l) | V::Set(l) => (l.len() as u64, l.iter().map(|x| x.len() as u64).sum()),
        V::SortedSet(z) => (
            z.len() as u64,
            z.iter().map(|(m, _)| m.len() as u64 + 24).sum(),
        ),
        V::Hash(h) => (
            h.len() as u64,
            h.iter()
                .map(|f| (f.field.len() + f.value.len()) as u64)
                .sum(),
        ),
        V::Stream(s) => (s.length, s.entries.len() as u64 * 64),
    }
}

/// One sampled key against the sandbox: `Some(what differs)`.
async fn compare_key(
    c: &mut Conn,
    d: &Drawn,
    pexpiretime: bool,
) -> Result<Option<String>, JobFailure> {
    let key = d.key.as_slice();
    let ty = c.cmd(&[b"TYPE".as_slice(), key]).await?;
    let ty = ty.as_text().unwrap_or_default();
    let want_type = dcs_rdb::types::type_name(d.rdb_type);
    if ty == "none" {
        return Ok(Some("missing from the sandbox".into()));
    }
    let Some(value) = &d.value else {
        // A module value: its type name is the module's own.
        return Ok(None);
    };
    if ty != value.type_name() || ty != want_type && want_type != "module" {
        return Ok(Some(format!(
            "type {ty}, the backup has {}",
            value.type_name()
        )));
    }
    use dcs_rdb::Value as V;
    let (len, bytes) = size_of(value);
    let length_cmd: &[u8] = match value {
        V::String(_) => b"STRLEN",
        V::List(_) => b"LLEN",
        V::Set(_) => b"SCARD",
        V::SortedSet(_) => b"ZCARD",
        V::Hash(_) => b"HLEN",
        V::Stream(_) => b"XLEN",
    };
    let have_len = match c.cmd(&[length_cmd, key]).await? {
        Reply::Int(n) => n.max(0) as u64,
        other => return Ok(Some(format!("length: {other:?}"))),
    };
    if have_len != len {
        return Ok(Some(format!("length {have_len}, the backup has {len}")));
    }
    if bytes <= FULL_COMPARE_BYTES {
        let differs = match value {
            V::String(s) => {
                let r = c.cmd(&[b"GET".as_slice(), key]).await?;
                bulk(&r) != Some(s.as_slice())
            }
            V::List(l) => {
                let r = c.cmd(&[b"LRANGE".as_slice(), key, b"0", b"-1"]).await?;
                bulks(&r).as_ref() != Some(l)
            }
            V::Set(s) => {
                let r = c.cmd(&[b"SMEMBERS".as_slice(), key]).await?;
                let mut have = bulks(&r).unwrap_or_default();
                let mut want = s.clone();
                have.sort();
                want.sort();
                have != want
            }
            V::SortedSet(z) => {
                let r = c
                    .cmd(&[b"ZRANGE".as_slice(), key, b"0", b"-1", b"WITHSCORES"])
                    .await?;
                let flat = bulks(&r).unwrap_or_default();
                let mut have: Vec<(Vec<u8>, f64)> = flat
                    .chunks(2)
                    .filter_map(|p| {
                        let score = std::str::from_utf8(p.get(1)?).ok()?;
                        Some((p[0].clone(), dcs_rdb::parse_double(score.as_bytes()).ok()?))
                    })
                    .collect();
                let mut want = z.clone();
                have.sort_by(|a, b| a.0.cmp(&b.0));
                want.sort_by(|a, b| a.0.cmp(&b.0));
                have.len() != want.len()
                    || have
                        .iter()
                        .zip(&want)
                        .any(|(a, b)| a.0 != b.0 || !(a.1 == b.1 || (a.1.is_nan() && b.1.is_nan())))
            }
            V::Hash(h) => {
                let r = c.cmd(&[b"HGETALL".as_slice(), key]).await?;
                let flat = bulks(&r).unwrap_or_default();
                let mut have: Vec<(Vec<u8>, Vec<u8>)> = flat
                    .chunks(2)
                    .filter(|p| p.len() == 2)
                    .map(|p| (p[0].clone(), p[1].clone()))
                    .collect();
                let now = now_millis();
                let mut want: Vec<(Vec<u8>, Vec<u8>)> = h
                    .iter()
                    .filter(|f| f.expire_ms.is_none_or(|x| x > now + 1000))
                    .map(|f| (f.field.clone(), f.value.clone()))
                    .collect();
                have.sort();
                want.sort();
                // Fields whose own expiry passed may be gone.
                have != want && have.len() >= want.len()
            }
            V::Stream(s) => {
                let r = c.cmd(&[b"XINFO".as_slice(), b"STREAM", key]).await?;
                let last = match &r {
                    Reply::Array(Some(items)) => items
                        .chunks(2)
                        .find(|p| {
                            p.first().and_then(Reply::as_text).as_deref()
                                == Some("last-generated-id")
                        })
                        .and_then(|p| p.get(1).and_then(Reply::as_text)),
                    _ => None,
                };
                last.as_deref() != Some(format!("{}-{}", s.last_id.ms, s.last_id.seq).as_str())
            }
        };
        if differs {
            return Ok(Some("value differs".into()));
        }
    }
    // The expiry.
    let have = if pexpiretime {
        match c.cmd(&[b"PEXPIRETIME".as_slice(), key]).await? {
            Reply::Int(n) if n >= 0 => Some(n),
            _ => None,
        }
    } else {
        match c.cmd(&[b"PTTL".as_slice(), key]).await? {
            Reply::Int(n) if n >= 0 => Some(now_millis() + n),
            _ => None,
        }
    };
    let close = |a: i64, b: i64| {
        if pexpiretime {
            a == b
        } else {
            (a - b).abs() <= 2000
        }
    };
    match (d.expire_ms, have) {
        (None, None) => Ok(None),
        (Some(a), Some(b)) if close(a, b) => Ok(None),
        (want, have) => Ok(Some(format!(
            "expiry {}, the backup has {}",
            have.map_or("none".into(), |h| h.to_string()),
            want.map_or("none".into(), |w| w.to_string())
        ))),
    }
}

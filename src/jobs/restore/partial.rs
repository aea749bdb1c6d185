//! Partial restores: which keys of a backup a filter takes, in an RDB (by
//! the reader's key entries) or an AOF (by its commands), and, for a dry
//! run, how many of them would replace a key the target already holds.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::{fail, sync_failure};
use crate::jobs::pipe::{ChannelReader, DEPTH};
use crate::jobs::{JobFailure, Jobs};
use crate::model::{Instance, JobError, KeyType, RestoreFilter, Topology};
use crate::redis::cluster::SlotMap;
use crate::redis::resp::{CommandReader, Reply};
use crate::redis::Conn;
use crate::storage::{BackupLocation, FileSource, Manifest};
use dcs_rdb::{Item, RdbReader, ReadMode};

/// The key an AOF command of ours writes (see `dcs_rdb::aof`): the second
/// argument, or the third for `XGROUP CREATE|CREATECONSUMER`.
pub(crate) fn aof_key<'a>(name: &str, args: &'a [Reply]) -> Option<&'a [u8]> {
    let at = if name == "XGROUP" { 2 } else { 1 };
    match args.get(at) {
        Some(Reply::Bulk(Some(k))) => Some(k.as_slice()),
        _ => None,
    }
}

/// The type of the key a command of ours writes first.
fn aof_type(name: &str) -> Option<KeyType> {
    Some(match name {
        "SET" => KeyType::String,
        "RPUSH" => KeyType::List,
        "SADD" => KeyType::Set,
        "ZADD" => KeyType::Zset,
        "HSET" => KeyType::Hash,
        "XADD" | "XGROUP" | "XSETID" | "XCLAIM" | "XDEL" => KeyType::Stream,
        _ => return None,
    })
}

/// What to do with one AOF command under a filter.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AofStep {
    /// `SELECT n`: keep it, the database changed.
    Select(u64),
    /// A command of a key the filter takes; `first` for the key's first
    /// command, which must be preceded by a `DEL` (the AOF builds values
    /// up, and the target's namesake must not be added to).
    Write { first: bool },
    /// Not taken: a key the filter leaves out, or something that is not a
    /// key's (functions, transactions).
    Skip,
}

/// Follows an AOF of ours command by command: its database, and the key
/// being written. Our AOFs write each key with consecutive commands, its
/// first command telling its type.
#[derive(Default)]
pub(crate) struct AofKeys {
    db: u64,
    /// The key being written, and whether the filter takes it.
    current: Option<(u64, Vec<u8>, bool)>,
}

impl AofKeys {
    /// The database the commands go to now.
    pub fn db(&self) -> u64 {
        self.db
    }

    pub fn step(&mut self, filter: &RestoreFilter, name: &str, args: &[Reply]) -> AofStep {
        if name == "SELECT" {
            if let Some(db) = args
                .get(1)
                .and_then(Reply::as_text)
                .and_then(|t| t.parse().ok())
            {
                self.db = db;
                return AofStep::Select(db);
            }
            return AofStep::Skip;
        }
        let Some(key) = aof_key(name, args) else {
            return AofStep::Skip;
        };
        if let Some((db, k, taken)) = &self.current {
            if *db == self.db && k.as_slice() == key {
                return if *taken {
                    AofStep::Write { first: false }
                } else {
                    AofStep::Skip
                };
            }
        }
        let taken = filter.matches(self.db, key, aof_type(name));
        self.current = Some((self.db, key.to_vec(), taken));
        if taken {
            AofStep::Write { first: true }
        } else {
            AofStep::Skip
        }
    }
}

/// What a dry run of a partial restore adds to the plan.
#[derive(Debug, Default)]
pub struct Replaced {
    /// Keys of the backup the filter takes that the target holds now.
    pub keys: u64,
    /// The first few of them, as text.
    pub sample: Vec<String>,
}

/// Keys sampled by name in a dry run's answer.
const SAMPLE: usize = 20;
/// Keys asked about per round trip.
const BATCH: usize = 1000;

/// Reads the backup's key names again and asks the target which of the
/// keys the filter takes it already holds (`EXISTS`, pipelined, by slot in
/// a cluster). Writes nothing.
pub(crate) async fn count_replaced(
    jobs: &Jobs,
    target: &Instance,
    topology: &Topology,
    at: &BackupLocation,
    manifest: &Manifest,
    filter: &RestoreFilter,
) -> Result<Replaced, JobFailure> {
    let map = SlotMap::new(topology).map_err(sync_failure)?;
    let cluster = topology.cache_mode() == crate::model::CacheMode::Cluster;
    let mut conns = Vec::with_capacity(map.masters.len());
    for m in &map.masters {
        conns.push(Conn::open(&target.connection, &m.host, m.port, &jobs.redis).await?);
    }
    let is_aof = manifest.format == "aof";
    let mut out = Replaced::default();
    for f in &manifest.files {
        let (tx, mut rx) = mpsc::channel::<Vec<(u64, Vec<u8>)>>(4);
        let source = jobs.store.source(&at.file(&f.name))?;
        let (input, feeder): (Box<dyn Read + Send>, _) = match source {
            FileSource::Local(path) => {
                let file = File::open(&path)
                    .map_err(|e| fail(JobError::Storage, format!("opening {}: {e}", f.name)))?;
                (Box::new(file), None)
            }
            FileSource::Remote(remote) => {
                let (ctx, crx) = mpsc::channel::<Bytes>(DEPTH);
                let task = tokio::spawn(async move {
                    let mut stream = remote.stream().await?;
                    while let Some(chunk) = stream.next().await {
                        let chunk = chunk.map_err(|e| fail(JobError::Storage, e.to_string()))?;
                        if ctx.send(chunk).await.is_err() {
                            break;
                        }
                    }
                    Ok::<_, JobFailure>(())
                });
                (Box::new(ChannelReader::new(crx)), Some(task))
            }
        };
        let filter_owned = filter.clone();
        let reader =
            tokio::task::spawn_blocking(move || matching_keys(input, is_aof, &filter_owned, &tx));
        while let Some(batch) = rx.recv().await {
            ask(&mut conns, &map, cluster, &batch, &mut out).await?;
        }
        reader
            .await
            .map_err(|e| sync_failure(format!("key reader crashed: {e}")))?
            .map_err(|e| fail(JobError::SizeQuery, format!("backup file {}: {e}", f.name)))?;
        if let Some(task) = feeder {
            task.await
                .map_err(|e| sync_failure(format!("feeder crashed: {e}")))??;
        }
    }
    Ok(out)
}

/// Sends the keys of one file the filter takes, in batches of [`BATCH`].
fn matching_keys(
    input: Box<dyn Read + Send>,
    is_aof: bool,
    filter: &RestoreFilter,
    tx: &mpsc::Sender<Vec<(u64, Vec<u8>)>>,
) -> Result<(), String> {
    let mut batch = Vec::with_capacity(BATCH);
    let push = |db: u64, key: Vec<u8>, batch: &mut Vec<(u64, Vec<u8>)>| -> bool {
        batch.push((db, key));
        if batch.len() >= BATCH {
            let full = std::mem::replace(batch, Vec::with_capacity(BATCH));
            return tx.blocking_send(full).is_ok();
        }
        true
    };
    if is_aof {
        let mut reader = CommandReader::new(input);
        let mut keys = AofKeys::default();
        while let Some(cmd) = reader.next_command().map_err(|e| e.to_string())? {
            if keys.step(filter, &cmd.name, &cmd.args) == (AofStep::Write { first: true }) {
                let key = aof_key(&cmd.name, &cmd.args).unwrap_or_default().to_vec();
                if !push(keys.db, key, &mut batch) {
                    return Ok(());
                }
            }
        }
    } else {
        let mut reader = RdbReader::new(input, ReadMode::Keys);
        let now = crate::model::now_millis();
        while let Some(item) = reader.next_item().map_err(|e| e.to_string())? {
            if let Item::Key(k) = item {
                // A key already expired is not restored.
                if k.expire_ms.is_some_and(|e| e <= now) {
                    continue;
                }
                if filter.matches(k.db, &k.key, KeyType::of_rdb(k.rdb_type))
                    && !push(k.db, k.key, &mut batch)
                {
                    return Ok(());
                }
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.blocking_send(batch);
    }
    Ok(())
}

/// `EXISTS` for each key of the batch on its master, pipelined.
async fn ask(
    conns: &mut [Conn],
    map: &SlotMap,
    cluster: bool,
    batch: &[(u64, Vec<u8>)],
    out: &mut Replaced,
) -> Result<(), JobFailure> {
    // Per master: the keys asked about, in order, and its current db.
    let mut asked: Vec<VecDeque<&[u8]>> = vec![VecDeque::new(); conns.len()];
    let mut selects = vec![0usize; conns.len()];
    let mut db_of: Vec<Option<u64>> = vec![None; conns.len()];
    for (db, key) in batch {
        let i = if cluster { map.node_of(key) } else { 0 };
        if !cluster && db_of[i] != Some(*db) {
            conns[i].send(&[b"SELECT".as_slice(), db.to_string().as_bytes()]);
            selects[i] += 1;
            db_of[i] = Some(*db);
        }
        conns[i].send(&[b"EXISTS".as_slice(), key]);
        asked[i].push_back(key);
    }
    for (i, c) in conns.iter_mut().enumerate() {
        if asked[i].is_empty() && selects[i] == 0 {
            continue;
        }
        c.flush().await.map_err(sync_failure)?;
        // Replies come in the order sent; SELECTs answer +OK.
        let mut pending = asked[i].len() + selects[i];
        while pending > 0 {
            let reply = c.read_reply().await.map_err(sync_failure)?;
            pending -= 1;
            match reply {
                Reply::Simple(_) => {}
                Reply::Int(n) => {
                    let key = asked[i].pop_front().unwrap_or_default();
                    if n > 0 {
                        out.keys += 1;
                        if out.sample.len() < SAMPLE {
                            out.sample.push(String::from_utf8_lossy(key).into_owned());
                        }
                    }
                }
                Reply::Error(e) => {
                    return Err(sync_failure(format!(
                        "the target refused EXISTS: {}",
                        crate::redis::peer_text(&e)
                    )))
                }
                other => {
                    return Err(sync_failure(format!(
                        "unexpected answer to EXISTS: {other:?}"
                    )))
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str]) -> (String, Vec<Reply>) {
        (
            args[0].to_ascii_uppercase(),
            args.iter()
                .map(|a| Reply::Bulk(Some(a.as_bytes().to_vec())))
                .collect(),
        )
    }

    #[test]
    fn an_aof_is_followed_key_by_key() {
        let filter = RestoreFilter {
            dbs: vec![1],
            key_patterns: vec!["user:*".into()],
            types: vec![],
        };
        let mut keys = AofKeys::default();
        let mut steps = Vec::new();
        for c in [
            &["RPUSH", "user:1", "a"][..],
            &["SELECT", "1"],
            &["RPUSH", "user:1", "a", "b"],
            &["RPUSH", "user:1", "c"],
            &["PEXPIREAT", "user:1", "99"],
            &["SET", "other", "x"],
            &["XADD", "user:s", "1-1", "f", "v"],
            &["XGROUP", "CREATE", "user:s", "g", "0"],
            &["FUNCTION", "LOAD", "code"],
            &["XGROUP", "CREATE", "job:s", "g", "0"],
        ] {
            let (name, args) = cmd(c);
            steps.push(keys.step(&filter, &name, &args));
        }
        use AofStep::*;
        assert_eq!(
            steps,
            [
                Skip, // database 0
                Select(1),
                Write { first: true },
                Write { first: false },
                Write { first: false },
                Skip,
                Write { first: true },
                Write { first: false },
                Skip,
                Skip,
            ]
        );
    }

    #[test]
    fn types_come_from_the_first_command() {
        let filter = RestoreFilter {
            types: vec![KeyType::Hash],
            ..RestoreFilter::default()
        };
        let mut keys = AofKeys::default();
        let (n, a) = cmd(&["HSET", "h", "f", "v"]);
        assert_eq!(keys.step(&filter, &n, &a), AofStep::Write { first: true });
        let (n, a) = cmd(&["PEXPIREAT", "h", "5"]);
        assert_eq!(keys.step(&filter, &n, &a), AofStep::Write { first: false });
        let (n, a) = cmd(&["SET", "s", "v"]);
        assert_eq!(keys.step(&filter, &n, &a), AofStep::Skip);
    }
}

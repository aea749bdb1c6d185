//! Execute by slicing: every key's value cut from the RDB and sent as
//! `RESTORE … ABSTTL REPLACE` (or decoded commands), or an AOF replayed,
//! pipelined to the master owning each key.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use std::sync::atomic::AtomicU64;

use super::partial::{aof_key, AofKeys, AofStep};
use super::plan::TargetInfo;
use super::*;
use crate::jobs::pipe::{ChannelReader, DEPTH};
use crate::model::KeyType;
use crate::redis::cluster::SlotMap;
use crate::redis::pipeline::{Op, Pipeline};
use crate::redis::resp::{encode_command, Command, CommandReader};
use crate::storage::FileSource;
use dcs_rdb::{
    decode_value, min_rdb_version_for_type, write_key_commands, AofOptions, Flavor, Item,
    RdbReader, ReadMode,
};

/// Bytes in flight per target node.
const WINDOW: usize = 32 * 1024 * 1024;
/// Commands are grouped into ops of about this many bytes.
const OP_BYTES: usize = 256 * 1024;

/// One unit for the pipelines: to one master, or to every master.
enum Dest {
    One(usize),
    All,
}

/// Where one backup file's bytes come from for the slicing thread.
enum SliceInput {
    /// A local file, read by the slicing thread itself.
    Local(PathBuf),
    /// Chunks a task on the main runtime streams in from a remote store.
    Remote(mpsc::Receiver<Bytes>),
}

/// Empties every master and writes every key of the backup into it.
pub(crate) async fn slice(r: &Restore<'_>, tinfo: &TargetInfo) -> Result<(), JobFailure> {
    let (jobs, target, topology, manifest) = (r.jobs, &r.target, &r.topology, &r.manifest);
    let progress = &r.progress;
    let cluster = topology.cache_mode() == CacheMode::Cluster;
    let map = SlotMap::new(topology).map_err(sync_failure)?;
    let mut inputs = Vec::with_capacity(manifest.files.len());
    let mut remote = Vec::new();
    for f in &manifest.files {
        match jobs.store.source(&r.backup.file(&f.name))? {
            FileSource::Local(local) => inputs.push(SliceInput::Local(local)),
            FileSource::Remote(file) => {
                let (tx, rx) = mpsc::channel::<Bytes>(DEPTH);
                inputs.push(SliceInput::Remote(rx));
                remote.push((file, tx));
            }
        }
    }
    // Remote files stream in order, each into its channel, as the slicing
    // thread reads them.
    let feeder = {
        let progress = Arc::clone(progress);
        crate::jobs::spawn_traced(async move {
            for (file, tx) in remote {
                let mut stream = file.stream().await?;
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| fail(JobError::Storage, e.to_string()))?;
                    progress
                        .done
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    if tx.send(chunk).await.is_err() {
                        return Ok(());
                    }
                }
            }
            Ok::<_, JobFailure>(())
        })
    };
    // Parsing, encoding, writing to the masters and reading their replies
    // take turns on one thread with a runtime of its own, as `redis-cli
    // --pipe` does: on a machine shared with the target, every other
    // runnable thread of the service would take CPU time from the Redis
    // doing the loading.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let work = SliceWork {
        jobs: Arc::clone(jobs),
        target: target.clone(),
        map,
        cluster,
        tinfo: tinfo.clone(),
        format_aof: manifest.format == "aof",
        progress: Arc::clone(progress),
        now: now_millis(),
        lease: r.lease.share(),
        filter: r.filter.clone(),
    };
    std::thread::Builder::new()
        .name("restore-slicer".into())
        .spawn(move || {
            let result = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(work.run(inputs)),
                Err(e) => Err(sync_failure(format!("slicer runtime: {e}"))),
            };
            let _ = done_tx.send(result);
        })
        .map_err(|e| sync_failure(format!("slicer thread: {e}")))?;
    let sliced = done_rx
        .await
        .map_err(|_| sync_failure("the slicer thread crashed"))?;
    let fed = feeder
        .await
        .map_err(|e| sync_failure(format!("feeder crashed: {e}")))?;
    // A read failure explains whatever the slicer saw after it.
    fed?;
    sliced
}

/// What the slicing thread needs, owned.
struct SliceWork {
    jobs: Arc<Jobs>,
    target: Instance,
    map: SlotMap,
    cluster: bool,
    tinfo: TargetInfo,
    format_aof: bool,
    progress: Arc<Progress>,
    now: i64,
    /// Checked between batches: the slicing thread stops with the job.
    lease: Lease,
    /// A partial restore: only these keys, and no flush.
    filter: Option<RestoreFilter>,
}

impl SliceWork {
    /// Empties every master (unless the restore is partial), then streams
    /// every file's commands to them.
    async fn run(self, inputs: Vec<SliceInput>) -> Result<(), JobFailure> {
        let mut pipes = Vec::with_capacity(self.map.masters.len());
        for m in &self.map.masters {
            let mut c =
                Conn::open(&self.target.connection, &m.host, m.port, &self.jobs.redis).await?;
            self.progress.touched.store(true, Ordering::SeqCst);
            if self.filter.is_none() {
                c.cmd_ok(&["FLUSHALL"]).await.map_err(sync_failure)?;
                if self.tinfo.functions {
                    let _ = c.cmd(&["FUNCTION", "FLUSH"]).await;
                }
            }
            pipes.push(Pipeline::start(c, WINDOW));
        }
        for input in inputs {
            let input: Box<dyn Read + Send> = match input {
                SliceInput::Local(path) => {
                    let file = File::open(&path).map_err(|e| {
                        fail(
                            JobError::Storage,
                            format!("opening {}: {e}", path.display()),
                        )
                    })?;
                    Box::new(Counted {
                        inner: file,
                        progress: Arc::clone(&self.progress),
                    })
                }
                SliceInput::Remote(rx) => Box::new(ChannelReader::new(rx)),
            };
            let batch = Batcher::new(self.map.masters.len());
            let result = if self.format_aof {
                let mut source =
                    AofReplayer::new(input, &self.map, self.cluster, batch, self.filter.as_ref());
                send_all(&mut source, &pipes, &self.lease).await
            } else {
                let mut source = RdbSlicer::new(input, &self, batch);
                send_all(&mut source, &pipes, &self.lease).await
            };
            result?;
        }
        let mut redirects = Vec::new();
        for p in pipes {
            let stats = p.finish().await.map_err(sync_failure)?;
            if stats.error_count > 0 {
                return Err(sync_failure(format!(
                    "{} commands refused by the target, e.g. {}",
                    stats.error_count,
                    stats.errors.join("; ")
                )));
            }
            redirects.extend(stats.redirects);
        }
        crate::redis::pipeline::resend_redirected(
            &self.target.connection,
            &self.jobs.redis,
            redirects,
        )
        .await
        .map_err(sync_failure)
    }
}

/// Something that turns a backup file into ops, a few at a time.
trait OpSource {
    /// Turns the next piece of input into commands in the batch; false once
    /// the input is done (and the batch finished).
    fn step(&mut self) -> Result<bool, String>;

    fn batch(&mut self) -> &mut Batcher;

    /// Works until `out` holds an op or the input is done; false once done
    /// (every op handed out).
    fn fill(&mut self, out: &mut VecDeque<(Dest, Op)>) -> Result<bool, String> {
        loop {
            if self.batch().hand_out(out) {
                return Ok(true);
            }
            if !self.step()? {
                self.batch().hand_out(out);
                return Ok(false);
            }
        }
    }
}

/// Hands a source's ops to the pipelines, yielding after each batch so the
/// pipelines' writers and readers run on this same thread.
async fn send_all(
    source: &mut dyn OpSource,
    pipes: &[Pipeline],
    lease: &Lease,
) -> Result<(), JobFailure> {
    let mut ready = VecDeque::new();
    loop {
        if lease.lost() {
            return Err(JobFailure::lost());
        }
        let more = source.fill(&mut ready).map_err(sync_failure)?;
        while let Some((dest, op)) = ready.pop_front() {
            match dest {
                Dest::One(i) => pipes[i].send(op).await.map_err(sync_failure)?,
                Dest::All => {
                    for p in pipes {
                        p.send(op.clone()).await.map_err(sync_failure)?;
                    }
                }
            }
        }
        if !more {
            return Ok(());
        }
        tokio::task::yield_now().await;
    }
}

/// Per-destination buffers of encoded commands, cut into ops of about
/// [`OP_BYTES`].
struct Batcher {
    bufs: Vec<(Vec<u8>, u32)>,
    /// Ops cut and not yet handed out, in order.
    ready: VecDeque<(Dest, Op)>,
}

impl Batcher {
    fn new(n: usize) -> Self {
        Self {
            bufs: (0..n).map(|_| (Vec::with_capacity(OP_BYTES), 0)).collect(),
            ready: VecDeque::new(),
        }
    }

    fn push(&mut self, dest: usize, bytes: &[u8], commands: u32) {
        self.push_with(dest, commands, |buf| buf.extend_from_slice(bytes));
    }

    /// Like [`Self::push`], but the command is written straight into the
    /// destination's buffer (no intermediate copy of big values).
    fn push_with(&mut self, dest: usize, commands: u32, write: impl FnOnce(&mut Vec<u8>)) {
        let (buf, n) = &mut self.bufs[dest];
        write(buf);
        *n += commands;
        if buf.len() >= OP_BYTES {
            self.cut(dest);
        }
    }

    /// A command for every master, after what each already has queued.
    fn push_all(&mut self, bytes: &[u8]) {
        for i in 0..self.bufs.len() {
            self.cut(i);
        }
        self.ready.push_back((
            Dest::All,
            Op {
                bytes: Bytes::copy_from_slice(bytes),
                replies: 1,
            },
        ));
    }

    fn cut(&mut self, dest: usize) {
        let (buf, n) = &mut self.bufs[dest];
        if *n == 0 {
            return;
        }
        let op = Op {
            bytes: Bytes::from(std::mem::replace(buf, Vec::with_capacity(OP_BYTES))),
            replies: std::mem::take(n),
        };
        self.ready.push_back((Dest::One(dest), op));
    }

    fn finish(&mut self) {
        for i in 0..self.bufs.len() {
            self.cut(i);
        }
    }

    /// Moves the cut ops to `out`; true if there were any.
    fn hand_out(&mut self, out: &mut VecDeque<(Dest, Op)>) -> bool {
        let any = !self.ready.is_empty();
        out.append(&mut self.ready);
        any
    }
}

/// Cuts each key's value out of the RDB and turns it into RESTORE (or,
/// where the target cannot take the encoding, decoded commands).
struct RdbSlicer<'a, R: Read> {
    reader: RdbReader<R>,
    map: &'a SlotMap,
    cluster: bool,
    t: &'a TargetInfo,
    now: i64,
    max_payload: usize,
    /// Keys handed to the pipelines, for an honest failure report.
    written: &'a AtomicU64,
    batch: Batcher,
    version: u32,
    flavor: Flavor,
    db: u64,
    cmd: Vec<u8>,
    aof: AofOptions,
    restored: u64,
    decoded: u64,
    expired: u64,
    /// Keys a partial restore leaves out.
    skipped: u64,
    filter: Option<&'a RestoreFilter>,
    done: bool,
}

impl<'a, R: Read> RdbSlicer<'a, R> {
    fn new(input: R, w: &'a SliceWork, batch: Batcher) -> Self {
        let (t, now) = (&w.tinfo, w.now);
        Self {
            reader: RdbReader::new(input, ReadMode::Raw).require_eof_after_trailer(true),
            map: &w.map,
            cluster: w.cluster,
            t,
            now,
            max_payload: w.jobs.settings.restore_max_payload,
            written: &w.progress.keys_written,
            batch,
            version: 0,
            flavor: Flavor::Redis,
            db: 0,
            cmd: Vec::with_capacity(1024),
            aof: AofOptions {
                now_ms: Some(now),
                legacy_streams: t.legacy_streams,
                ..AofOptions::default()
            },
            restored: 0,
            decoded: 0,
            expired: 0,
            skipped: 0,
            filter: w.filter.as_ref(),
            done: false,
        }
    }

    fn item(&mut self, item: Item) -> Result<(), String> {
        match item {
            Item::Header { magic, version: v } => {
                self.version = v;
                self.flavor = Flavor::of_header(magic, v);
            }
            Item::SelectDb(n) => {
                self.db = n;
                if !self.cluster && self.filter.is_none_or(|f| f.wants_db(n)) {
                    self.cmd.clear();
                    encode_command(
                        &mut self.cmd,
                        &[b"SELECT".as_slice(), n.to_string().as_bytes()],
                    );
                    self.batch.push(0, &self.cmd, 1);
                }
            }
            Item::Function { code } if self.t.functions && self.filter.is_none() => {
                self.cmd.clear();
                encode_command(
                    &mut self.cmd,
                    &[b"FUNCTION".as_slice(), b"LOAD", b"REPLACE", &code],
                );
                self.batch.push_all(&self.cmd);
            }
            Item::Key(k) => {
                if k.expire_ms.is_some_and(|e| e <= self.now) {
                    self.expired += 1;
                    return Ok(());
                }
                if self
                    .filter
                    .is_some_and(|f| !f.matches(self.db, &k.key, KeyType::of_rdb(k.rdb_type)))
                {
                    self.skipped += 1;
                    return Ok(());
                }
                if self.cluster && self.db != 0 {
                    return Err(format!(
                        "key in database {}: a cluster has only database 0",
                        self.db
                    ));
                }
                let (t, flavor, version) = (self.t, self.flavor, self.version);
                let dest = if self.cluster {
                    self.map.node_of(&k.key)
                } else {
                    0
                };
                let raw = k.raw.as_deref().ok_or("reader kept no raw value")?;
                let native = min_rdb_version_for_type(k.rdb_type, flavor)
                    .is_some_and(|min| min <= t.rdb_version && (flavor == t.flavor || min <= 11));
                if native && raw.len() <= self.max_payload {
                    // Stamp the lowest version that describes the encoding
                    // the target knows: its own if the file's is newer.
                    // Valkey refuses the version numbers only Redis used (12–79).
                    let cap = if flavor == t.flavor {
                        t.rdb_version
                    } else {
                        t.rdb_version.min(11)
                    };
                    let stamp = version.min(cap) as u16;
                    self.batch.push_with(dest, 1, |out| {
                        dcs_rdb::write_restore_command(
                            out,
                            &k.key,
                            k.expire_ms,
                            k.rdb_type,
                            raw,
                            stamp,
                        )
                    });
                    self.restored += 1;
                    self.written.fetch_add(1, Ordering::Relaxed);
                } else {
                    let value = decode_value(k.rdb_type, raw, flavor).map_err(|e| e.to_string())?;
                    self.cmd.clear();
                    // Commands build the value up: over a namesake that
                    // was not flushed, it goes first.
                    let cleared = if self.filter.is_some() {
                        encode_command(&mut self.cmd, &[b"DEL".as_slice(), &k.key]);
                        1
                    } else {
                        0
                    };
                    let n =
                        write_key_commands(&mut self.cmd, &k.key, &value, k.expire_ms, &self.aof)
                            .map_err(|e| e.to_string())?;
                    if n + cleared > 0 {
                        self.batch.push(dest, &self.cmd, (n + cleared) as u32);
                    }
                    self.decoded += 1;
                    self.written.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl<R: Read> OpSource for RdbSlicer<'_, R> {
    fn step(&mut self) -> Result<bool, String> {
        if self.done {
            return Ok(false);
        }
        match self.reader.next_item().map_err(|e| e.to_string())? {
            Some(item) => self.item(item)?,
            None => {
                self.batch.finish();
                self.done = true;
                tracing::info!(
                    restored = self.restored,
                    decoded = self.decoded,
                    expired = self.expired,
                    left_out = self.skipped,
                    "RDB sliced"
                );
            }
        }
        Ok(!self.done)
    }

    fn batch(&mut self) -> &mut Batcher {
        &mut self.batch
    }
}

/// Replays an AOF's commands, routing each by its key in a cluster.
struct AofReplayer<'a, R: Read> {
    commands: CommandReader<R>,
    map: &'a SlotMap,
    cluster: bool,
    batch: Batcher,
    done: bool,
    /// A partial restore: only the keys it takes, each cleared first.
    filter: Option<&'a RestoreFilter>,
    keys: AofKeys,
}

impl<'a, R: Read> AofReplayer<'a, R> {
    fn new(
        input: R,
        map: &'a SlotMap,
        cluster: bool,
        batch: Batcher,
        filter: Option<&'a RestoreFilter>,
    ) -> Self {
        Self {
            commands: CommandReader::new(input),
            map,
            cluster,
            batch,
            done: false,
            filter,
            keys: AofKeys::default(),
        }
    }

    /// Batches one command.
    fn command(&mut self, cmd: Command) {
        let key = aof_key(&cmd.name, &cmd.args);
        let dest = match (self.cluster, key) {
            (true, Some(k)) => self.map.node_of(k),
            _ => 0,
        };
        if let Some(f) = self.filter {
            match self.keys.step(f, &cmd.name, &cmd.args) {
                AofStep::Skip => return,
                AofStep::Select(_) => {}
                AofStep::Write { first } => {
                    if first {
                        let mut del = Vec::new();
                        encode_command(&mut del, &[b"DEL".as_slice(), key.unwrap_or_default()]);
                        self.batch.push(dest, &del, 1);
                    }
                    self.batch.push(dest, &cmd.raw, 1);
                    return;
                }
            }
        }
        match cmd.name.as_str() {
            "SELECT" if self.cluster => {}
            "SELECT" => self.batch.push(0, &cmd.raw, 1),
            "FUNCTION" | "MULTI" | "EXEC" => self.batch.push_all(&cmd.raw),
            _ => self.batch.push(dest, &cmd.raw, 1),
        }
    }
}

impl<R: Read> OpSource for AofReplayer<'_, R> {
    fn step(&mut self) -> Result<bool, String> {
        if self.done {
            return Ok(false);
        }
        match self.commands.next_command().map_err(|e| e.to_string())? {
            Some(cmd) => self.command(cmd),
            None => {
                self.batch.finish();
                self.done = true;
            }
        }
        Ok(!self.done)
    }

    fn batch(&mut self) -> &mut Batcher {
        &mut self.batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_commands_carry_dump_payloads() {
        let mut fast = Vec::new();
        dcs_rdb::write_restore_command(&mut fast, b"k\x00ey", Some(1234), 0, b"\x05hello", 10);
        let mut slow = Vec::new();
        let payload = dcs_rdb::dump_payload(0, b"\x05hello", 10);
        encode_command(
            &mut slow,
            &[
                b"RESTORE".as_slice(),
                b"k\x00ey",
                b"1234",
                &payload,
                b"ABSTTL",
                b"REPLACE",
            ],
        );
        assert_eq!(fast, slow);
    }
}

//! Verify: every file of the backup read back before the target is
//! touched (size, BLAKE3, a full parse of the RDB with its CRC64, or the
//! AOF's framing).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::partial::{AofKeys, AofStep};
use super::{fail, Counted, Progress};
use crate::jobs::pipe::{ChannelReader, DEPTH};
use crate::jobs::{JobFailure, Jobs};
use crate::model::{JobError, KeyType, RestoreFilter};
use crate::redis::resp::{CommandError, CommandReader};
use crate::storage::{BackupLocation, FileSource, Manifest, ManifestFile, RemoteFile};

fn bad_file(f: &ManifestFile, why: impl std::fmt::Display) -> JobFailure {
    fail(
        JobError::SizeQuery,
        format!("backup file {}: {why}", f.name),
    )
}

/// Why a file did not pass its check.
enum CheckError {
    /// Reading it failed (the store's fault, not the backup's).
    Read(std::io::Error),
    /// Its content is wrong.
    Bad(String),
}

impl CheckError {
    fn into_failure(self, f: &ManifestFile) -> JobFailure {
        match self {
            CheckError::Read(e) => fail(JobError::Storage, format!("reading {}: {e}", f.name)),
            CheckError::Bad(why) => bad_file(f, why),
        }
    }
}

/// What the verify pass learned of the backup, for the plan: the manifest
/// says how many keys, the files themselves say what kind.
#[derive(Clone, Debug, Default)]
pub(crate) struct BackupFacts {
    pub aof: bool,
    /// Each file's RDB header (the RDB an AOF was converted from).
    pub rdbs: Vec<(dcs_rdb::Magic, u32)>,
    pub keys: u64,
    pub expiring_keys: u64,
    pub keys_per_db: BTreeMap<u64, u64>,
    /// Value bytes per database in the files (RDB backups).
    pub bytes_per_db: BTreeMap<u64, u64>,
    pub keys_per_rdb_type: BTreeMap<u8, u64>,
    /// Hashes stored with field expiries (RDB), or `HPEXPIREAT` commands
    /// (AOF).
    pub field_ttl_hashes: u64,
    /// Module values per module type name.
    pub modules: BTreeMap<String, u64>,
    pub functions: u64,
    pub biggest_value: u64,
    /// Logical bytes of keys and values, LZF strings expanded.
    pub expanded_bytes: u64,
    /// Bytes stored.
    pub stored_bytes: u64,
    /// Command names an AOF backup replays.
    pub aof_commands: BTreeSet<String>,
    /// The facts are of the keys a filter takes, not the whole backup.
    pub partial: bool,
}

impl BackupFacts {
    /// The whole backup's counts from its manifest; a partial restore's
    /// come from the files' parse instead ([`Self::add`]).
    fn from_manifest(manifest: &Manifest, partial: bool) -> Self {
        let mut f = Self {
            aof: manifest.format == "aof",
            partial,
            ..Self::default()
        };
        for file in &manifest.files {
            let magic = if file.rdb_magic == "VALKEY" {
                dcs_rdb::Magic::Valkey
            } else {
                dcs_rdb::Magic::Redis
            };
            f.rdbs.push((magic, file.rdb_version));
            f.stored_bytes += file.size;
            if partial {
                continue; // a partial restore loads no functions
            }
            f.keys += file.keys;
            f.expiring_keys += file.expiring_keys;
            f.functions += file.functions;
            for (db, n) in &file.keys_per_db {
                *f.keys_per_db.entry(*db).or_insert(0) += n;
            }
        }
        f
    }

    fn add(&mut self, content: Content) {
        match content {
            Content::Rdb(s) => {
                if self.partial {
                    self.keys += s.total_keys;
                    self.expiring_keys += s.expiring_keys;
                    for (db, n) in &s.keys_per_db {
                        *self.keys_per_db.entry(*db).or_insert(0) += n;
                    }
                }
                for (t, n) in s.keys_per_rdb_type {
                    *self.keys_per_rdb_type.entry(t).or_insert(0) += n;
                }
                for (db, n) in s.value_bytes_per_db {
                    *self.bytes_per_db.entry(db).or_insert(0) += n;
                }
                for (m, n) in s.module_key_names {
                    *self.modules.entry(m).or_insert(0) += n;
                }
                self.field_ttl_hashes += s.field_ttl_hashes;
                self.biggest_value = self.biggest_value.max(s.biggest_value);
                self.expanded_bytes += s.expanded_bytes;
            }
            Content::Aof {
                commands,
                bytes,
                keys_per_db,
            } => {
                if commands.contains("HPEXPIREAT") {
                    self.field_ttl_hashes += 1;
                }
                if self.partial {
                    for (db, n) in keys_per_db {
                        self.keys += n;
                        *self.keys_per_db.entry(db).or_insert(0) += n;
                    }
                }
                self.expanded_bytes += bytes;
                self.aof_commands.extend(commands);
            }
        }
    }
}

/// What one file's parse found.
enum Content {
    Rdb(dcs_rdb::RdbSummary),
    Aof {
        commands: BTreeSet<String>,
        bytes: u64,
        /// Keys a filter takes, per database (empty without a filter).
        keys_per_db: BTreeMap<u64, u64>,
    },
}

/// Parses a whole file: the RDB structure and CRC64, or the AOF framing.
/// With a filter, the facts describe the keys it takes.
fn check_content(
    input: impl Read,
    is_aof: bool,
    filter: Option<&RestoreFilter>,
) -> Result<Content, CheckError> {
    if is_aof {
        return check_resp(input, filter);
    }
    let summary = match filter {
        None => dcs_rdb::verify(input),
        Some(f) => {
            dcs_rdb::verify_filtered(input, |db, key, t| f.matches(db, key, KeyType::of_rdb(t)))
        }
    };
    match summary {
        Ok(s) => Ok(Content::Rdb(s)),
        Err(dcs_rdb::RdbError::Io(e)) => Err(CheckError::Read(e)),
        Err(e) => Err(CheckError::Bad(e.to_string())),
    }
}

/// Reads every file back: size, BLAKE3, and a full parse.
#[tracing::instrument(skip_all, fields(files = manifest.files.len()))]
pub(crate) async fn verify_backup(
    jobs: &Jobs,
    at: &BackupLocation,
    manifest: &Manifest,
    progress: &Arc<Progress>,
    filter: Option<&RestoreFilter>,
) -> Result<BackupFacts, JobFailure> {
    let is_aof = manifest.format == "aof";
    let mut facts = BackupFacts::from_manifest(manifest, filter.is_some());
    for f in &manifest.files {
        let path = at.file(&f.name);
        match jobs.store.size_of(&path).await? {
            Some(n) if n == f.size => {}
            Some(n) => {
                return Err(bad_file(
                    f,
                    format!("{n} bytes stored, {} expected", f.size),
                ))
            }
            None => return Err(bad_file(f, "missing")),
        }
        let content = match jobs.store.source(&path)? {
            FileSource::Local(local) => {
                verify_local(local, f, is_aof, progress, filter.cloned()).await?
            }
            FileSource::Remote(remote) => {
                verify_streamed(remote, f, is_aof, progress, filter.cloned()).await?
            }
        };
        facts.add(content);
    }
    Ok(facts)
}

/// A local file is read twice at once from the page cache, by a thread
/// that hashes it and one that parses it, so the check costs the time of
/// the slower of the two.
async fn verify_local(
    local: PathBuf,
    f: &ManifestFile,
    is_aof: bool,
    progress: &Arc<Progress>,
    filter: Option<RestoreFilter>,
) -> Result<Content, JobFailure> {
    let hashing = tokio::task::spawn_blocking({
        let local = local.clone();
        move || -> std::io::Result<String> {
            let mut file = File::open(&local)?;
            let mut hasher = blake3::Hasher::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    return Ok(hasher.finalize().to_hex().to_string());
                }
                hasher.update(&buf[..n]);
            }
        }
    });
    let progress = Arc::clone(progress);
    let parsing = tokio::task::spawn_blocking(move || {
        let file = File::open(&local).map_err(CheckError::Read)?;
        check_content(
            Counted {
                inner: file,
                progress,
            },
            is_aof,
            filter.as_ref(),
        )
    });
    let (hashed, parsed) = tokio::join!(hashing, parsing);
    let crashed = |e: tokio::task::JoinError| bad_file(f, format!("checker crashed: {e}"));
    let digest = hashed
        .map_err(crashed)?
        .map_err(|e| CheckError::Read(e).into_failure(f))?;
    let content = parsed.map_err(crashed)?.map_err(|e| e.into_failure(f))?;
    if digest != f.blake3 {
        return Err(bad_file(f, "content does not match its checksum"));
    }
    Ok(content)
}

/// A remote file is downloaded once: hashed as it streams in and parsed
/// in a blocking thread at the same time.
async fn verify_streamed(
    remote: RemoteFile,
    f: &ManifestFile,
    is_aof: bool,
    progress: &Progress,
    filter: Option<RestoreFilter>,
) -> Result<Content, JobFailure> {
    let mut stream = remote.stream().await?;
    let (tx, rx) = mpsc::channel::<Bytes>(DEPTH);
    let checker = tokio::task::spawn_blocking(move || {
        check_content(ChannelReader::new(rx), is_aof, filter.as_ref())
    });
    let mut hasher = blake3::Hasher::new();
    let mut read_err = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => {
                hasher.update(&c);
                progress.done.fetch_add(c.len() as u64, Ordering::Relaxed);
                if tx.send(c).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                read_err = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let parsed = checker
        .await
        .map_err(|e| bad_file(f, format!("checker crashed: {e}")))?;
    if let Some(e) = read_err {
        return Err(fail(JobError::Storage, format!("reading {}: {e}", f.name)));
    }
    let digest = hasher.finalize().to_hex().to_string();
    if digest != f.blake3 {
        return Err(bad_file(f, "content does not match its checksum"));
    }
    parsed.map_err(|e| e.into_failure(f))
}

/// Checks that an AOF is a sequence of complete RESP commands; returns
/// the command names it holds and its size (with a filter: the commands
/// and bytes of the keys it takes, and those keys per database).
fn check_resp(input: impl Read, filter: Option<&RestoreFilter>) -> Result<Content, CheckError> {
    let mut reader = CommandReader::new(input);
    let mut commands = BTreeSet::new();
    let mut bytes = 0u64;
    let mut keys = AofKeys::default();
    let mut keys_per_db = BTreeMap::new();
    while let Some(cmd) = reader.next_command().map_err(|e| match e {
        CommandError::Read(e) => CheckError::Read(e),
        CommandError::Bad(why) => CheckError::Bad(why),
    })? {
        let taken = match filter {
            None => true,
            Some(f) => match keys.step(f, &cmd.name, &cmd.args) {
                AofStep::Select(_) => true,
                AofStep::Write { first } => {
                    if first {
                        *keys_per_db.entry(keys.db()).or_insert(0) += 1;
                    }
                    true
                }
                AofStep::Skip => false,
            },
        };
        if taken {
            bytes += cmd.raw.len() as u64;
            // At most 256 names: a hostile file cannot grow the set.
            if !cmd.name.is_empty() && commands.len() < 256 {
                commands.insert(cmd.name);
            }
        }
    }
    Ok(Content::Aof {
        commands,
        bytes,
        keys_per_db,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp_check_accepts_commands_only() {
        let Ok(Content::Aof {
            commands, bytes, ..
        }) = check_resp(
            &b"*1\r\n$4\r\nping\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n"[..],
            None,
        )
        else {
            panic!("commands refused")
        };
        assert_eq!(commands.into_iter().collect::<Vec<_>>(), ["PING", "SELECT"]);
        assert_eq!(bytes, 37);
        assert!(check_resp(&b"*1\r\n$4\r\nPIN"[..], None).is_err());
        assert!(check_resp(&b"+OK\r\n"[..], None).is_err());
        assert!(check_resp(&b""[..], None).is_ok());
    }
}

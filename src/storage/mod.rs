//! The object store holding backup files, through OpenDAL: a local
//! directory (default) or any S3-compatible bucket.
//!
//! It owns:
//! - the layout: [`BackupLocation`] names a backup's directory
//!   `{project}/{instance}/{backup}/`, its files and its `manifest.json`;
//! - key checking: every key a [`Store`] method takes goes through
//!   [`check_key`] first, so none leaves the store's root;
//! - the [`Manifest`], written last, whose presence says a backup is
//!   complete, and the hashing [`FileWriter`] that produces its sizes and
//!   BLAKE3s;
//! - reading back: [`Store::source`] decides once whether a file is a local
//!   one (read by blocking threads from the page cache, or sent with
//!   `sendfile`) or a remote object streamed once ([`FileSource`]);
//! - links: presigned S3 URLs, and where a backup lies as the API reports
//!   it ([`Store::bucket_path`]).
//!
//! S3 keys come from the configuration ([`S3Keys`]), never from the
//! environment here. This module knows nothing about HTTP or the catalog.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use opendal::{services, Operator};
use serde::{Deserialize, Serialize};

use crate::model::Secret;

/// Errors of the object store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid storage URL {url:?}: {why}")]
    BadUrl { url: String, why: String },
    #[error("object store: {0}")]
    Store(#[from] opendal::Error),
    #[error("manifest {path}: {why}")]
    Manifest { path: String, why: String },
    #[error("refused object key {key}: {why}")]
    BadKey { key: String, why: &'static str },
}

/// The one check every key goes through before any [`Store`] method uses
/// it, for fs and S3 alike: relative, `/`-separated segments that are
/// neither empty, `.` nor `..`, with no backslash or control character. A
/// prefix (`allow_dir`) may end in one `/`. So no key can name anything
/// outside the store's root, whatever reached it.
pub fn check_key(key: &str, allow_dir: bool) -> Result<(), StorageError> {
    let bad = |why| {
        Err(StorageError::BadKey {
            key: key.escape_debug().take(128).collect(),
            why,
        })
    };
    if key.starts_with('/') {
        return bad("absolute path");
    }
    if key.contains('\\') {
        return bad("backslash");
    }
    if key.chars().any(char::is_control) {
        return bad("control character");
    }
    let body = match key.strip_suffix('/') {
        Some(b) if allow_dir => b,
        _ => key,
    };
    for seg in body.split('/') {
        match seg {
            "" => return bad("empty segment"),
            "." | ".." => return bad("dot segment"),
            _ => {}
        }
    }
    Ok(())
}

/// Name of the file that, once present, says a backup is complete.
pub const MANIFEST: &str = "manifest.json";
/// The largest manifest read back: a 3,000-shard cluster's is under 4 MiB.
pub const MAX_MANIFEST: u64 = 16 << 20;
/// Writes to the store are coalesced to this size (S3 parts are larger).
const WRITE_BUFFER: usize = 1024 * 1024;
/// S3's smallest part. Parts are uploaded one at a time: OpenDAL 0.54 keeps
/// every finished concurrent part in memory until the file closes.
const S3_PART: usize = 5 * 1024 * 1024;

/// Where one backup's files live: `{project}/{instance}/{backup}/`, the
/// one place the layout is spelled out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupLocation {
    prefix: String,
}

impl BackupLocation {
    pub fn new(project: &str, instance: &str, backup: &str) -> Self {
        Self {
            prefix: format!("{project}/{instance}/{backup}/"),
        }
    }

    /// An instance's whole directory, whose file names carry their own
    /// subdirectory (a restore to an instant, whose bases lie in several).
    pub fn instance_root(project: &str, instance: &str) -> Self {
        Self {
            prefix: format!("{project}/{instance}/"),
        }
    }

    /// The location of a backup record's files.
    pub fn of(rec: &crate::model::BackupRecord) -> Self {
        Self::new(
            rec.project_id.as_str(),
            rec.instance_id.as_str(),
            rec.id.as_str(),
        )
    }

    /// The backup's directory, ending in `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of the backup's file `name`.
    pub fn file(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The key of the backup's manifest.
    pub fn manifest(&self) -> String {
        manifest_key(&self.prefix)
    }
}

/// The manifest's key in the backup directory `prefix`.
fn manifest_key(prefix: &str) -> String {
    format!("{prefix}{MANIFEST}")
}

/// The keys an S3 store signs its requests with (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), read once with the
/// configuration. Unset ones are left to OpenDAL's defaults.
#[derive(Clone, Debug, Default)]
pub struct S3Keys {
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
    pub session_token: Option<Secret>,
}

/// Where a stored file's bytes come from when it is read back, decided
/// once by [`Store::source`].
#[derive(Debug)]
pub enum FileSource {
    /// A file of the local store: read directly by blocking threads (from
    /// the page cache, as often as they like) or sent with `sendfile`,
    /// rather than through the async runtime.
    Local(PathBuf),
    /// An object of a remote store, to be streamed through once.
    Remote(RemoteFile),
}

/// An object of a remote store, opened only when its stream is asked for.
#[derive(Debug)]
pub struct RemoteFile {
    op: Operator,
    path: String,
}

/// A stored file's bytes, in chunks.
pub type ByteStream = std::pin::Pin<Box<dyn futures::Stream<Item = std::io::Result<Bytes>> + Send>>;

impl RemoteFile {
    /// Starts reading the object.
    pub async fn stream(self) -> Result<ByteStream, StorageError> {
        open_stream(&self.op, &self.path).await
    }
}

/// The object at an already checked `path` as a stream of chunks.
async fn open_stream(op: &Operator, path: &str) -> Result<ByteStream, StorageError> {
    let reader = op.reader_with(path).chunk(WRITE_BUFFER).await?;
    Ok(Box::pin(reader.into_bytes_stream(..).await?))
}

/// The repository format's record of one backup, written last: a backup is
/// complete exactly when its manifest is stored (see `docs` in
/// ARCHITECTURE.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format of this document: 2 adds `keys_per_type`, `repl_id` and
    /// `repl_offset` to files; readers take 1 and 2.
    pub manifest_version: u32,
    pub backup_id: String,
    pub instance_id: String,
    pub project_id: String,
    /// `rdb` or `aof`.
    pub format: String,
    /// `single`, `ha` or `cluster`.
    pub cache_mode: String,
    pub engine: String,
    pub server_version: String,
    pub started_at: i64,
    pub completed_at: i64,
    pub files: Vec<ManifestFile>,
}

/// One stored file of a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub name: String,
    pub size: u64,
    /// Hex BLAKE3 of the stored bytes.
    pub blake3: String,
    /// The RDB the file holds or was converted from.
    pub rdb_magic: String,
    pub rdb_version: u32,
    /// `ok` (CRC64 trailer verified) or `absent` (server had rdbchecksum no).
    pub rdb_checksum: String,
    pub keys: u64,
    pub keys_per_db: BTreeMap<u64, u64>,
    pub expiring_keys: u64,
    pub functions: u64,
    /// Inclusive slot ranges of the shard (cluster backups).
    pub slots: Vec<(u16, u16)>,
    /// The node the snapshot was taken from.
    pub source_node: String,
    /// The master of the shard the file belongs to.
    pub shard_master: String,
    /// Keys per database number and value type (`string`, `list`, `set`,
    /// `zset`, `hash`, `stream`, `module`). Absent in manifests of version 1.
    #[serde(default)]
    pub keys_per_type: BTreeMap<u64, BTreeMap<String, u64>>,
    /// The replication id and offset the snapshot stands at, as the master
    /// announced them (`+FULLRESYNC <replid> <offset>`): the history the
    /// file belongs to and where its write stream continues. Absent when
    /// the master only spoke `SYNC`, and in manifests of version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repl_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repl_offset: Option<u64>,
}

impl Manifest {
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// A file being written: bytes are buffered, hashed and counted; nothing
/// is complete until [`FileWriter::finish`] returns.
pub struct FileWriter {
    inner: opendal::Writer,
    buf: BytesMut,
    hasher: blake3::Hasher,
    size: u64,
    path: String,
}

impl std::fmt::Debug for FileWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileWriter({}, {} bytes)", self.path, self.size)
    }
}

impl FileWriter {
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        self.hasher.update(&chunk);
        self.size += chunk.len() as u64;
        if self.buf.is_empty() && chunk.len() >= WRITE_BUFFER {
            self.inner.write(chunk).await?;
            return Ok(());
        }
        self.buf.extend_from_slice(&chunk);
        if self.buf.len() >= WRITE_BUFFER {
            let full = self.buf.split().freeze();
            self.inner.write(full).await?;
        }
        Ok(())
    }

    /// Flushes and closes the file; returns its size and hex BLAKE3.
    pub async fn finish(mut self) -> Result<(u64, String), StorageError> {
        if !self.buf.is_empty() {
            let rest = self.buf.split().freeze();
            self.inner.write(rest).await?;
        }
        self.inner.close().await?;
        Ok((self.size, self.hasher.finalize().to_hex().to_string()))
    }

    /// Gives up the file; the caller removes whatever reached the store.
    pub async fn abort(mut self) {
        if let Err(e) = self.inner.abort().await {
            tracing::debug!(path = %self.path, error = %e, "abort of a partial upload failed");
        }
    }
}

/// Where backups are stored, parsed from `--storage`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageUrl {
    Fs {
        root: PathBuf,
    },
    S3 {
        bucket: String,
        prefix: String,
        endpoint: Option<String>,
        region: String,
        path_style: bool,
    },
}

impl StorageUrl {
    /// Parses `fs:///absolute/path` or
    /// `s3://BUCKET[/PREFIX]?endpoint=URL&region=R&path_style=true|false`.
    pub fn parse(url: &str) -> Result<Self, StorageError> {
        let bad = |why: &str| StorageError::BadUrl {
            url: url.to_owned(),
            why: why.to_owned(),
        };
        if let Some(path) = url.strip_prefix("fs://") {
            if !path.starts_with('/') {
                return Err(bad("the path must be absolute (fs:///abs/path)"));
            }
            return Ok(Self::Fs {
                root: PathBuf::from(path),
            });
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
            let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket"));
            }
            let mut endpoint = None;
            let mut region = "us-east-1".to_owned();
            let mut path_style = true;
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let v = percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned();
                match k {
                    "endpoint" => endpoint = Some(v),
                    "region" => region = v,
                    "path_style" => {
                        path_style = match v.as_str() {
                            "true" => true,
                            "false" => false,
                            _ => return Err(bad("path_style must be true or false")),
                        }
                    }
                    "access_key_id" | "secret_access_key" | "session_token" => return Err(bad(
                        "keys come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, never the URL",
                    )),
                    other => return Err(bad(&format!("unknown parameter {other:?}"))),
                }
            }
            return Ok(Self::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
                endpoint,
                region,
                path_style,
            });
        }
        Err(bad(
            "use fs:///absolute/path or s3://bucket[/prefix]?endpoint=...",
        ))
    }

    pub fn is_local(&self) -> bool {
        matches!(self, Self::Fs { .. })
    }
}

/// The backup store.
#[derive(Clone, Debug)]
pub struct Store {
    op: Operator,
    url: StorageUrl,
}

impl Store {
    /// Builds the store and checks that it answers.
    #[tracing::instrument(skip_all)]
    pub async fn open(url: &StorageUrl, keys: &S3Keys) -> Result<Self, StorageError> {
        let op = match url {
            StorageUrl::Fs { root } => {
                std::fs::create_dir_all(root).map_err(|e| StorageError::BadUrl {
                    url: format!("fs://{}", root.display()),
                    why: e.to_string(),
                })?;
                Operator::new(services::Fs::default().root(&root.to_string_lossy()))?.finish()
            }
            StorageUrl::S3 {
                bucket,
                prefix,
                endpoint,
                region,
                path_style,
            } => {
                let mut b = services::S3::default()
                    .bucket(bucket)
                    .root(&format!("/{prefix}"))
                    .region(region)
                    .disable_config_load()
                    .disable_ec2_metadata();
                if let Some(e) = endpoint {
                    b = b.endpoint(e);
                }
                if !path_style {
                    b = b.enable_virtual_host_style();
                }
                if let Some(k) = &keys.access_key_id {
                    b = b.access_key_id(k.expose());
                }
                if let Some(k) = &keys.secret_access_key {
                    b = b.secret_access_key(k.expose());
                }
                if let Some(t) = &keys.session_token {
                    b = b.session_token(t.expose());
                }
                Operator::new(b)?.finish()
            }
        };
        op.check().await?;
        Ok(Self {
            op,
            url: url.clone(),
        })
    }

    /// Starts writing `path`, replacing any file already there.
    #[tracing::instrument(skip(self))]
    pub async fn writer(&self, path: &str) -> Result<FileWriter, StorageError> {
        check_key(path, false)?;
        let inner = match self.url {
            StorageUrl::Fs { .. } => self.op.writer(path).await?,
            StorageUrl::S3 { .. } => self.op.writer_with(path).chunk(S3_PART).await?,
        };
        Ok(FileWriter {
            inner,
            buf: BytesMut::with_capacity(WRITE_BUFFER),
            hasher: blake3::Hasher::new(),
            size: 0,
            path: path.to_owned(),
        })
    }

    /// Stores a backup's manifest; the last write of every backup.
    pub async fn put_manifest(&self, prefix: &str, m: &Manifest) -> Result<(), StorageError> {
        let path = manifest_key(prefix);
        check_key(&path, false)?;
        let body = serde_json::to_vec_pretty(m).map_err(|e| StorageError::Manifest {
            path: path.clone(),
            why: e.to_string(),
        })?;
        self.op.write(&path, body).await?;
        Ok(())
    }

    /// Reads a backup's manifest; `None` if the backup never completed.
    pub async fn manifest(&self, prefix: &str) -> Result<Option<Manifest>, StorageError> {
        let Some(raw) = self.manifest_bytes(prefix).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|e| StorageError::Manifest {
                path: manifest_key(prefix),
                why: e.to_string(),
            })
    }

    /// A backup's manifest exactly as stored; `None` if the backup never
    /// completed. A stored object larger than [`MAX_MANIFEST`] is refused
    /// before it is read (a store is a peer like any other).
    pub async fn manifest_bytes(&self, prefix: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let path = manifest_key(prefix);
        check_key(&path, false)?;
        let size = match self.op.stat(&path).await {
            Ok(meta) => meta.content_length(),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if size > MAX_MANIFEST {
            return Err(StorageError::Manifest {
                path,
                why: format!("{size} bytes, more than a manifest can be ({MAX_MANIFEST})"),
            });
        }
        match self.op.read_with(&path).range(0..size).await {
            Ok(buf) => Ok(Some(buf.to_vec())),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes every file under `prefix` (a backup's directory).
    #[tracing::instrument(skip(self))]
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), StorageError> {
        check_key(prefix, true)?;
        self.op.remove_all(prefix).await?;
        Ok(())
    }

    /// Removes one file (absent already is fine).
    #[tracing::instrument(skip(self))]
    pub async fn delete_file(&self, path: &str) -> Result<(), StorageError> {
        check_key(path, false)?;
        self.op.delete(path).await?;
        Ok(())
    }

    /// Every file under `prefix`, at any depth.
    #[tracing::instrument(skip(self))]
    pub async fn list_files(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        check_key(prefix, true)?;
        let entries = match self.op.list_with(prefix).recursive(true).await {
            Ok(e) => e,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        Ok(entries
            .into_iter()
            .filter(|e| e.metadata().mode().is_file())
            .map(|e| e.path().to_owned())
            .collect())
    }

    /// The files under `prefix` as the store lists them, one at a time:
    /// never the whole listing in memory (a week of PITR log is millions
    /// of files).
    pub async fn file_stream(
        &self,
        prefix: &str,
    ) -> Result<futures::stream::BoxStream<'static, Result<String, StorageError>>, StorageError>
    {
        use futures::StreamExt;
        check_key(prefix, true)?;
        let lister = match self.op.lister_with(prefix).recursive(true).await {
            Ok(l) => l,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => {
                return Ok(futures::stream::empty().boxed())
            }
            Err(e) => return Err(e.into()),
        };
        Ok(lister
            .filter_map(|e| async move {
                match e {
                    Ok(e) if e.metadata().mode().is_file() => Some(Ok(e.path().to_owned())),
                    Ok(_) => None,
                    Err(e) => Some(Err(e.into())),
                }
            })
            .boxed())
    }

    /// When a stored file was last written (ms since the epoch), or `None`
    /// if absent or the store does not say.
    pub async fn modified_at(&self, path: &str) -> Result<Option<i64>, StorageError> {
        check_key(path, false)?;
        match self.op.stat(path).await {
            Ok(m) => Ok(m.last_modified().map(|t| t.timestamp_millis())),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Size of a stored file, or `None` if absent.
    pub async fn size_of(&self, path: &str) -> Result<Option<u64>, StorageError> {
        check_key(path, false)?;
        match self.op.stat(path).await {
            Ok(m) => Ok(Some(m.content_length())),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// How a stored file is read back: where it lies on this machine for
    /// a local store, else the remote object to stream. The one place the
    /// restore's readers learn which; nothing is opened yet.
    pub fn source(&self, path: &str) -> Result<FileSource, StorageError> {
        check_key(path, false)?;
        Ok(match &self.url {
            StorageUrl::Fs { root } => FileSource::Local(root.join(path)),
            StorageUrl::S3 { .. } => FileSource::Remote(RemoteFile {
                op: self.op.clone(),
                path: path.to_owned(),
            }),
        })
    }

    /// The file as a stream of chunks, for downloads.
    pub async fn read_stream(&self, path: &str) -> Result<ByteStream, StorageError> {
        check_key(path, false)?;
        open_stream(&self.op, path).await
    }

    /// A presigned GET URL where the store can make one (S3).
    pub async fn presign_read(
        &self,
        path: &str,
        ttl: Duration,
    ) -> Result<Option<String>, StorageError> {
        check_key(path, false)?;
        if self.url.is_local() {
            return Ok(None);
        }
        let req = self.op.presign_read(path, ttl).await?;
        Ok(Some(req.uri().to_string()))
    }

    pub fn url(&self) -> &StorageUrl {
        &self.url
    }

    /// Where a backup's files are, as the DCS API reports them: the
    /// bucket's name (empty for a local store) and the path in it, the
    /// store's own prefix included.
    pub fn bucket_path(&self, at: &BackupLocation) -> (String, String) {
        match &self.url {
            StorageUrl::S3 { bucket, prefix, .. } if !prefix.is_empty() => {
                (bucket.clone(), format!("{prefix}/{}", at.prefix()))
            }
            StorageUrl::S3 { bucket, .. } => (bucket.clone(), at.prefix().to_owned()),
            StorageUrl::Fs { .. } => (String::new(), at.prefix().to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_storage_urls() {
        assert_eq!(
            StorageUrl::parse("fs:///var/backups").unwrap(),
            StorageUrl::Fs {
                root: "/var/backups".into()
            }
        );
        assert!(StorageUrl::parse("fs://relative").is_err());
        assert_eq!(
            StorageUrl::parse("s3://b/some/prefix/?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=r&path_style=false")
                .unwrap(),
            StorageUrl::S3 {
                bucket: "b".into(),
                prefix: "some/prefix".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: "r".into(),
                path_style: false
            }
        );
        assert!(StorageUrl::parse("s3://b?secret_access_key=x").is_err());
        assert!(StorageUrl::parse("s3://b?path_style=maybe").is_err());
        assert!(StorageUrl::parse("ftp://x").is_err());
    }

    #[test]
    fn keys_stay_inside_the_store() {
        for bad in [
            "../x",
            "a/../../b",
            "/etc/passwd",
            "a//b",
            "a/./b",
            "a\\b",
            "a/b\n",
            "",
            "a/..",
        ] {
            assert!(check_key(bad, false).is_err(), "{bad:?}");
            assert!(check_key(bad, true).is_err(), "{bad:?} as prefix");
        }
        assert!(check_key("p/i/b/redis_127.0.0.1_6379_20260101000000.rdb", false).is_ok());
        assert!(check_key("p/i/b/", true).is_ok());
        assert!(check_key("p/i/b/", false).is_err());
    }
}

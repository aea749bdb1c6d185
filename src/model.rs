//! Domain types shared by every layer below the API.
//!
//! Nothing here knows a DCS JSON field name or a wire format: the API layer
//! converts these to and from the DCS shapes. Timestamps are milliseconds
//! since the Unix epoch (UTC) everywhere inside the service.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// The current wall-clock time in milliseconds.
///
/// Jobs and the scheduler take time from [`crate::clock::Clock`]; this is for
/// places where the wall clock is the only sensible source (record stamps).
pub fn now_millis() -> Millis {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as Millis
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A fresh random identifier.
            pub fn generate() -> Self {
                Self(uuid::Uuid::new_v4().to_string())
            }

            /// Accepts only the canonical hyphenated UUID form DCS uses.
            pub fn parse(s: &str) -> Option<Self> {
                let u = uuid::Uuid::try_parse(s).ok()?;
                let canonical = u.hyphenated().to_string();
                (canonical == s.to_ascii_lowercase()).then_some(Self(canonical))
            }

            /// Wraps a value read back from the catalog, trusted as stored.
            pub fn from_stored(s: String) -> Self {
                Self(s)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

uuid_id!(
    /// Identifier of an adopted Redis instance.
    InstanceId
);
uuid_id!(
    /// Identifier of a backup record.
    BackupId
);
uuid_id!(
    /// Identifier of a restore record.
    RestoreId
);
uuid_id!(
    /// Identifier of a queued job.
    JobId
);
uuid_id!(
    /// Identifier of a test restore (a verification of a backup).
    VerificationId
);

/// A project: the unit of isolation. Credentials belong to exactly one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProjectId(String);

impl ProjectId {
    /// Project ids are 32 lowercase hex characters, as Huawei Cloud's are.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    /// Accepts 1–64 characters of `[A-Za-z0-9_-]`.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(s.to_owned()))
    }

    /// Wraps a value read back from the catalog, trusted as stored.
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A string whose `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

macro_rules! str_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// The lowercase name stored in the catalog.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $s),+ }
            }

            /// Parses the stored name, case-insensitively.
            pub fn parse(s: &str) -> Option<Self> {
                $(if s.eq_ignore_ascii_case($s) { return Some(Self::$variant); })+
                None
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

str_enum!(
    /// How the adopted Redis is laid out, discovered from the server itself.
    CacheMode { Single => "single", Ha => "ha", Cluster => "cluster" }
);

str_enum!(
    /// Whether a backup was asked for or planned by a policy.
    BackupType { Manual => "manual", Auto => "auto" }
);

str_enum!(
    /// The on-store format of a backup.
    BackupFormat { Rdb => "rdb", Aof => "aof" }
);

str_enum!(
    /// Life cycle of a backup record.
    BackupStatus {
        Waiting => "waiting",
        Backuping => "backuping",
        Succeed => "succeed",
        Failed => "failed",
        Expired => "expired",
        Deleted => "deleted",
    }
);

str_enum!(
    /// Life cycle of a restore record.
    RestoreStatus {
        Waiting => "waiting",
        Restoring => "restoring",
        Succeed => "succeed",
        Failed => "failed",
    }
);

str_enum!(
    /// What a queued job does.
    JobKind { Backup => "backup", Restore => "restore", Verification => "verification" }
);

str_enum!(
    /// Life cycle of a test restore: `passed` and `failed` say what the
    /// backup is worth; `skipped` says it could not be tested (too big for
    /// the sandbox, no server that loads it, the sandbox itself failing),
    /// which says nothing against the backup.
    VerificationStatus {
        Waiting => "waiting",
        Testing => "testing",
        Passed => "passed",
        Failed => "failed",
        Skipped => "skipped",
    }
);

str_enum!(
    /// Why a test restore was queued.
    VerificationOrigin { Manual => "manual", Schedule => "schedule", AfterBackup => "after_backup" }
);

/// One difference a test restore found between the sandbox and the backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    /// The key (lossy UTF-8, at most 128 characters), or `db<N>` for a count.
    pub key: String,
    pub db: u64,
    /// What differs, in words.
    pub what: String,
}

/// A test restore's record.
#[derive(Clone, Debug, PartialEq)]
pub struct VerificationRecord {
    pub id: VerificationId,
    pub backup_id: BackupId,
    pub instance_id: InstanceId,
    pub project_id: ProjectId,
    /// `scratch`, or the id of an adopted sandbox instance.
    pub sandbox: String,
    pub sample: u64,
    pub origin: VerificationOrigin,
    pub status: VerificationStatus,
    /// Hundredths of a percent.
    pub progress: i64,
    pub created_at: Millis,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub updated_at: Millis,
    /// The sandbox server used (`NAME (engine version)`).
    pub server: Option<String>,
    /// How long the load took: the recovery time.
    pub load_ms: Option<i64>,
    pub keys_checked: Option<u64>,
    pub mismatches: Option<u64>,
    pub mismatch_sample: Vec<Mismatch>,
    /// `DEBUG DIGEST` of the sandbox after the load, where allowed.
    pub digest: Option<String>,
    pub error: Option<JobError>,
    /// Why it failed or was skipped, or notes on a pass, in words.
    pub reason: Option<String>,
}

/// The test-restore policy of an instance: which windows test its newest
/// succeeded backup, into which sandbox, and whether every automatic
/// backup is tested as soon as it succeeds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationPolicy {
    pub enabled: bool,
    /// Windows, as a backup policy plans them (`backup_type` `auto`).
    pub plan: Option<BackupPolicy>,
    /// `scratch` or the id of an adopted sandbox instance.
    pub sandbox: String,
    pub after_backup: bool,
}

/// Which restore paths the service may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreMode {
    /// The feed where possible, else slicing.
    Auto,
    /// Only the feed (fails where it is not possible).
    Feed,
    /// Only slicing (benchmarks, or targets where REPLICAOF is unwelcome).
    Slice,
}

impl RestoreMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(Self::Auto),
            "feed" => Some(Self::Feed),
            "slice" => Some(Self::Slice),
            _ => None,
        }
    }
}

/// The keys a partial restore writes: those in one of `dbs` (any when
/// empty), whose name matches one of `key_patterns` (Redis globs; any when
/// empty) and whose type is one of `types` (any when empty). At least one
/// of the three is given. A filtered restore flushes nothing: each
/// matching key of the backup replaces its namesake, and every other key
/// of the target stays as it was.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreFilter {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dbs: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_patterns: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<KeyType>,
}

impl RestoreFilter {
    /// Most entries in each list.
    pub const MAX_ENTRIES: usize = 64;
    /// Longest key pattern, in bytes.
    pub const MAX_PATTERN: usize = 1024;

    /// Whether the key `key` of type `t` in database `db` is restored.
    pub fn matches(&self, db: u64, key: &[u8], t: Option<KeyType>) -> bool {
        (self.dbs.is_empty() || self.dbs.contains(&db))
            && (self.types.is_empty() || t.is_some_and(|t| self.types.contains(&t)))
            && (self.key_patterns.is_empty()
                || self
                    .key_patterns
                    .iter()
                    .any(|p| crate::glob::matches(p.as_bytes(), key)))
    }

    /// Whether keys of database `db` can match at all.
    pub fn wants_db(&self, db: u64) -> bool {
        self.dbs.is_empty() || self.dbs.contains(&db)
    }

    /// The filter in words, for decisions and logs.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.dbs.is_empty() {
            let dbs: Vec<String> = self.dbs.iter().map(u64::to_string).collect();
            parts.push(format!("databases {}", dbs.join(", ")));
        }
        if !self.key_patterns.is_empty() {
            let ps: Vec<String> = self.key_patterns.iter().map(|p| format!("{p:?}")).collect();
            parts.push(format!("keys matching {}", ps.join(" or ")));
        }
        if !self.types.is_empty() {
            let ts: Vec<&str> = self.types.iter().map(|t| t.as_str()).collect();
            parts.push(format!("types {}", ts.join(", ")));
        }
        parts.join("; ")
    }
}

/// A value's type as `TYPE` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    String,
    List,
    Set,
    Zset,
    Hash,
    Stream,
    Module,
}

impl KeyType {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "string" => Self::String,
            "list" => Self::List,
            "set" => Self::Set,
            "zset" => Self::Zset,
            "hash" => Self::Hash,
            "stream" => Self::Stream,
            "module" => Self::Module,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::List => "list",
            Self::Set => "set",
            Self::Zset => "zset",
            Self::Hash => "hash",
            Self::Stream => "stream",
            Self::Module => "module",
        }
    }

    /// The type of an RDB value type byte.
    pub fn of_rdb(t: u8) -> Option<Self> {
        Self::parse(dcs_rdb::types::type_name(t))
    }
}

/// Why a job failed: the `dcs.08.000x` codes of the DCS reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobError {
    /// dcs.08.0001: the backup/restore tool could not start (connect, handshake).
    ToolStart,
    /// dcs.08.0002: the job ran out of time.
    Timeout,
    /// dcs.08.0003: the object store failed.
    Storage,
    /// dcs.08.0004: credentials for the store could not be obtained.
    StoreCredentials,
    /// dcs.08.0005: the store's bucket could not be created or reached.
    StoreBucket,
    /// dcs.08.0006: the size of the backup data could not be determined.
    SizeQuery,
    /// dcs.08.0007: data failed to sync during a restore.
    RestoreSync,
    /// dcs.08.0008: an automatic backup did not run because the instance was busy.
    Busy,
}

impl JobError {
    pub fn code(self) -> &'static str {
        match self {
            Self::ToolStart => "dcs.08.0001",
            Self::Timeout => "dcs.08.0002",
            Self::Storage => "dcs.08.0003",
            Self::StoreCredentials => "dcs.08.0004",
            Self::StoreBucket => "dcs.08.0005",
            Self::SizeQuery => "dcs.08.0006",
            Self::RestoreSync => "dcs.08.0007",
            Self::Busy => "dcs.08.0008",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        [
            Self::ToolStart,
            Self::Timeout,
            Self::Storage,
            Self::StoreCredentials,
            Self::StoreBucket,
            Self::SizeQuery,
            Self::RestoreSync,
            Self::Busy,
        ]
        .into_iter()
        .find(|e| e.code() == code)
    }
}

/// One Redis node: where it is reachable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddr {
    pub host: String,
    pub port: u16,
}

/// A host name or port a server reported that cannot be used. Its text
/// never repeats the peer's bytes (errors reach API callers); the
/// escaped, shortened value is in `reported` and in the log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a server reported an invalid node address; refusing to use it")]
pub struct BadNodeAddr {
    pub reported: String,
}

impl NodeAddr {
    /// Validates an address a server reported (`CLUSTER NODES`, `INFO
    /// replication`, `MOVED`/`ASK`): the host is an IPv4/IPv6 literal or an
    /// RFC 1123 host name (labels of `[A-Za-z0-9-]`, 1–63 characters, not
    /// starting or ending with `-`, 253 characters in all) and the port is
    /// 1–65535. Peers are untrusted: this is the only way their addresses
    /// become a `NodeAddr`, so nothing else (file names included) ever sees
    /// `/`, `..` or control characters from them. The error shows at most a
    /// short escaped prefix of what was reported, logged, not shown.
    pub fn from_reported(host: &str, port: &str) -> Result<NodeAddr, BadNodeAddr> {
        let shown = || {
            let mut s: String = host
                .chars()
                .take(64)
                .collect::<String>()
                .escape_debug()
                .to_string();
            if host.chars().count() > 64 {
                s.push('…');
            }
            let p: String = port
                .chars()
                .take(8)
                .collect::<String>()
                .escape_debug()
                .to_string();
            format!("host \"{s}\" port \"{p}\"")
        };
        let refuse = || {
            let reported = shown();
            tracing::warn!(%reported, "a server reported an invalid node address");
            BadNodeAddr { reported }
        };
        let port: u16 = match port.parse() {
            Ok(p) if p > 0 => p,
            _ => return Err(refuse()),
        };
        if !valid_host(host) {
            return Err(refuse());
        }
        Ok(NodeAddr {
            host: host.to_owned(),
            port,
        })
    }

    /// `host` with every byte outside `[A-Za-z0-9.-]` turned into `-`
    /// (IPv6 colons), for file and object names.
    pub fn host_for_name(&self) -> String {
        self.host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    }
}

/// An IP literal or an RFC 1123 host name.
pub fn valid_host(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A shard: one master, its replicas and (for clusters) the slots it serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub master: NodeAddr,
    pub replicas: Vec<NodeAddr>,
    /// Inclusive slot ranges; empty outside cluster mode.
    pub slots: Vec<(u16, u16)>,
}

/// What the service learned about an instance the last time it looked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    pub mode: String,
    /// `redis` or `valkey`.
    pub engine: String,
    /// The server's own version (`valkey_version` for Valkey).
    pub version: String,
    pub shards: Vec<Shard>,
}

impl Topology {
    pub fn cache_mode(&self) -> CacheMode {
        CacheMode::parse(&self.mode).unwrap_or(CacheMode::Single)
    }

    pub fn replica_count(&self) -> usize {
        self.shards.iter().map(|s| s.replicas.len()).sum()
    }
}

/// How the service logs in to an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub tls: bool,
}

/// The backup policy of an instance, as validated at the API edge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupPolicy {
    pub backup_type: String,
    pub save_days: Option<i64>,
    pub period_type: Option<String>,
    pub backup_at: Vec<u8>,
    /// Hour of day the window opens (0–23), in the policy's time zone.
    pub begin_hour: Option<u8>,
    /// The policy's time zone as minutes east of UTC.
    pub tz_offset_minutes: i32,
    /// The offset as the user wrote it, echoed back unchanged.
    pub timezone_offset: Option<String>,
}

/// The one-hour window opening at `hour`, as policies write it
/// (`HH:00-HH+1:00`, wrapping at midnight): a policy's `begin_at` and an
/// automatic backup's `period`.
pub fn window_label(hour: u8) -> String {
    format!("{:02}:00-{:02}:00", hour, (hour + 1) % 24)
}

/// A stored policy with its identity and stamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPolicy {
    pub id: String,
    pub policy: BackupPolicy,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// An adopted instance as the catalog keeps it.
#[derive(Clone, Debug)]
pub struct Instance {
    pub id: InstanceId,
    pub project_id: ProjectId,
    pub name: String,
    pub description: String,
    pub connection: Connection,
    pub topology: Topology,
    pub policy: Option<StoredPolicy>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A backup record.
#[derive(Clone, Debug, PartialEq)]
pub struct BackupRecord {
    pub id: BackupId,
    pub instance_id: InstanceId,
    pub project_id: ProjectId,
    pub name: String,
    pub backup_type: BackupType,
    pub format: BackupFormat,
    pub status: BackupStatus,
    /// Hundredths of a percent, 0–10000.
    pub progress: i64,
    pub size: i64,
    pub period: Option<String>,
    pub remark: String,
    pub created_at: Millis,
    pub execution_at: Option<Millis>,
    pub updated_at: Millis,
    pub error: Option<JobError>,
    /// Why a test restore of it failed: it is no longer said to be
    /// restorable (a later passed test does not undo this).
    pub verification_failure: Option<String>,
}

impl BackupRecord {
    /// Only a succeeded backup whose files are still there, and that no
    /// test restore found wanting, is said to be restorable.
    pub fn is_restorable(&self) -> bool {
        self.status == BackupStatus::Succeed && self.verification_failure.is_none()
    }
}

/// A restore record.
#[derive(Clone, Debug, PartialEq)]
pub struct RestoreRecord {
    pub id: RestoreId,
    pub instance_id: InstanceId,
    pub project_id: ProjectId,
    pub backup_id: BackupId,
    pub backup_name: String,
    pub backup_remark: String,
    pub source_instance_id: InstanceId,
    pub source_instance_name: String,
    pub name: String,
    pub remark: String,
    pub status: RestoreStatus,
    pub progress: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub error: Option<JobError>,
    /// Why it failed, in words (what was refused, or how far it got).
    pub reason: Option<String>,
    /// A partial restore's filter.
    pub filter: Option<RestoreFilter>,
}

/// Time bounds and paging of a record listing, already validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListQuery {
    /// Inclusive lower bound on `created_at`.
    pub begin: Option<Millis>,
    /// Inclusive upper bound on `created_at`.
    pub end: Option<Millis>,
    pub offset: u64,
    pub limit: u64,
}

/// One page of records plus the number of records matching the filters.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// `yyyyMMddHHmmss` of a timestamp in UTC, as record names use it.
pub fn compact_utc(ms: Millis) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_only_canonical_uuids() {
        let id = InstanceId::generate();
        assert_eq!(InstanceId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(
            InstanceId::parse(&id.as_str().to_uppercase()).map(|i| i.to_string()),
            Some(id.to_string())
        );
        assert!(InstanceId::parse("not-a-uuid").is_none());
        assert!(InstanceId::parse(&id.as_str().replace('-', "")).is_none());
    }

    #[test]
    fn secrets_never_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "***");
    }

    #[test]
    fn compact_time_is_utc() {
        assert_eq!(compact_utc(1_557_477_076_166), "20190510083116");
    }
}

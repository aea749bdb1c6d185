//! Configuration in layers: defaults → TOML file (`--config`) →
//! `DCS_BACKUP_*` environment → command-line flags.
//!
//! clap reads flags and environment (a flag wins over its variable); the
//! file fills whatever neither gave; defaults fill the rest.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

use crate::storage::{S3Keys, StorageUrl};

#[derive(Parser, Debug)]
#[command(
    name = "dcs-backup",
    version,
    about = "Backup and restore for Redis and Valkey, speaking the Huawei Cloud DCS API"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// How log lines are written to stderr: `text` (coloured only when
    /// stderr is a terminal and NO_COLOR is unset) or `json` (one object a
    /// line, for log collectors, with the job and instance ids as fields)
    #[arg(long, global = true, env = "DCS_BACKUP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The shape of log lines.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the API, the job runner and the scheduler.
    Serve(Box<ServeArgs>),
    /// Manage API credentials.
    Credential {
        #[command(subcommand)]
        command: CredentialCommand,
    },
    /// Manage the keys that protect stored secrets.
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// Client commands (instance, backup, restore, policy) against a
    /// running service.
    #[command(flatten)]
    Client(crate::cli::ClientCommand),
    /// Developer tools: seeding catalogs for tests and benchmarks.
    #[command(hide = true)]
    Dev {
        #[command(subcommand)]
        command: DevCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum SecretsCommand {
    /// Generates a new key for instance passwords and re-encrypts every
    /// stored password with it, in one transaction. With a key file
    /// (DATA_DIR/secret.key) the file ends up holding only the new key;
    /// with DCS_BACKUP_SECRET_KEY set, the new key is printed for the
    /// operator to install on every replica instead.
    Rotate(RotateArgs),
}

#[derive(Args, Debug, Clone)]
pub struct RotateArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Also rotate the key that signs download links (old links stop working).
    #[arg(long)]
    pub links: bool,
}

#[derive(Subcommand, Debug)]
pub enum DevCommand {
    /// Adds synthetic backup and restore records to an adopted instance, and
    /// optionally clones of it holding records of their own.
    Seed(SeedArgs),
    /// Prints the headers of a signed request (`Name: value` lines), for
    /// load generators and shell scripts. Valid for 15 minutes; those of a
    /// mutating request (POST, PUT, DELETE) are accepted once.
    Sign(SignArgs),
}

#[derive(Args, Debug, Clone)]
pub struct SignArgs {
    #[arg(long, env = "DCS_AK")]
    pub ak: String,
    #[arg(long, env = "DCS_SK")]
    pub sk: String,
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Full URL, e.g. http://127.0.0.1:8080/v2/PROJECT/instances?limit=10
    #[arg(long)]
    pub url: String,
    /// Request body, if any.
    #[arg(long, default_value = "")]
    pub body: String,
}

#[derive(Args, Debug, Clone)]
pub struct SeedArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The adopted instance the records belong to.
    #[arg(long)]
    pub instance_id: String,
    #[arg(long, default_value_t = 0)]
    pub backups: u64,
    #[arg(long, default_value_t = 0)]
    pub restores: u64,
    /// created_at of the first record, yyyyMMddHHmmss UTC [default: now - records × step]
    #[arg(long)]
    pub from: Option<String>,
    /// Milliseconds between consecutive records.
    #[arg(long, default_value_t = 1000)]
    pub step_ms: i64,
    /// Number of extra instances cloned from this one's connection.
    #[arg(long, default_value_t = 0)]
    pub clones: u64,
    /// Backup records given to each clone.
    #[arg(long, default_value_t = 0)]
    pub clone_backups: u64,
}

#[derive(Subcommand, Debug)]
pub enum CredentialCommand {
    /// Create a credential for a project (the project is created if new);
    /// prints `{"project_id","ak","sk"}`.
    Create {
        #[arg(long)]
        project_id: String,
        #[command(flatten)]
        common: CommonArgs,
    },
}

/// Settings every subcommand that opens the catalog needs.
#[derive(Args, Debug, Default, Clone)]
pub struct CommonArgs {
    /// TOML file with any of the settings below (snake_case keys).
    #[arg(long, env = "DCS_BACKUP_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for the embedded catalog, local backups and credentials.json [default: ./data]
    #[arg(long, env = "DCS_BACKUP_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// sqlite://PATH or postgres://... [default: sqlite://DATA_DIR/catalog.db]
    #[arg(long, env = "DCS_BACKUP_DATABASE_URL")]
    pub database_url: Option<String>,
}

#[derive(Args, Debug, Default, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address the API listens on [default: 127.0.0.1:8080]
    #[arg(long, env = "DCS_BACKUP_LISTEN")]
    pub listen: Option<String>,
    /// fs:///absolute/path or s3://BUCKET[/PREFIX]?endpoint=URL&region=R&path_style=true|false
    /// [default: fs://DATA_DIR/backups]
    #[arg(long, env = "DCS_BACKUP_STORAGE")]
    pub storage: Option<String>,
    /// Host name or address Redis targets use to reach this service during a
    /// restore by replication feed [default: the listen host]
    #[arg(long, env = "DCS_BACKUP_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,
    /// Port of the replication feed listener [default: a free port, logged]
    #[arg(long, env = "DCS_BACKUP_REPLICATION_PORT")]
    pub replication_port: Option<u16>,
    /// Address the replication feed listener binds, HOST or HOST:PORT
    /// [default: 127.0.0.1]. Restore targets on other machines need an
    /// address they reach (with --advertise-addr if it differs).
    #[arg(long, env = "DCS_BACKUP_REPLICATION_LISTEN")]
    pub replication_listen: Option<String>,
    /// PEM file of CA certificates trusted for TLS connections to Redis
    #[arg(long, env = "DCS_BACKUP_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
    /// Base URL of this service as clients see it, for download links
    /// [default: http://LISTEN]
    #[arg(long, env = "DCS_BACKUP_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Restore path: auto (feed where possible, else slicing), feed, slice
    /// [default: auto]
    #[arg(long, env = "DCS_BACKUP_RESTORE_MODE")]
    pub restore_mode: Option<String>,
    /// Values larger than this many bytes are restored as commands rather
    /// than one RESTORE [default: 67108864]
    #[arg(long, env = "DCS_BACKUP_RESTORE_MAX_PAYLOAD")]
    pub restore_max_payload: Option<usize>,
    /// API listener: connections served at once; more wait [default: 1024]
    #[arg(long, env = "DCS_BACKUP_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// API over TLS: PEM certificate chain (with --tls-key)
    #[arg(long, env = "DCS_BACKUP_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// API over TLS: PEM private key (with --tls-cert)
    #[arg(long, env = "DCS_BACKUP_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Comma-separated networks (CIDR, or plain addresses) that instances
    /// and the nodes they report may be at; when given, nothing else is
    /// [default: any address not denied]
    #[arg(long, env = "DCS_BACKUP_ALLOW_TARGETS")]
    pub allow_targets: Option<String>,
    /// Comma-separated networks refused as targets, in addition to
    /// link-local and cloud metadata addresses (always refused); a denied
    /// address is refused even if allowed
    #[arg(long, env = "DCS_BACKUP_DENY_TARGETS")]
    pub deny_targets: Option<String>,
    /// GET /metrics wants `Authorization: Bearer TOKEN` [default: open]
    #[arg(long, env = "DCS_BACKUP_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// A server binary test restores, and PITR bases of masters with no
    /// replica, may start as a scratch sandbox, NAME=PATH (repeatable; the
    /// environment takes a comma-separated list)
    #[arg(
        long = "sandbox-server",
        env = "DCS_BACKUP_SANDBOX_SERVERS",
        value_delimiter = ','
    )]
    pub sandbox_servers: Vec<String>,
    /// maxmemory of a scratch sandbox in bytes; a larger backup is not
    /// tested ("too big") [default: 1073741824]
    #[arg(long, env = "DCS_BACKUP_SANDBOX_MAX_MEMORY")]
    pub sandbox_max_memory: Option<u64>,
    #[command(flatten)]
    pub bounds: JobBoundsArgs,
}

/// Bounds on jobs and on what masters may send (issue 13).
#[derive(Args, Debug, Default, Clone)]
pub struct JobBoundsArgs {
    /// Jobs of one project running at once, across replicas [default: 2]
    #[arg(long, env = "DCS_BACKUP_MAX_JOBS_PER_PROJECT")]
    pub max_jobs_per_project: Option<u32>,
    /// Seconds a job may run before it fails with dcs.08.0002 [default: 21600]
    #[arg(long, env = "DCS_BACKUP_JOB_DEADLINE")]
    pub job_deadline: Option<u64>,
    /// Bytes per second a job must move (over 60 s, after 120 s); 0 = off [default: 16384]
    #[arg(long, env = "DCS_BACKUP_MIN_RATE")]
    pub min_rate: Option<u64>,
    /// Longest string an RDB from a master may declare, in bytes [default: 536870912]
    #[arg(long, env = "DCS_BACKUP_MAX_RDB_STRING")]
    pub max_rdb_string: Option<u64>,
    /// Largest backup in bytes; larger ones fail and leave nothing [default: none]
    #[arg(long, env = "DCS_BACKUP_MAX_BACKUP_SIZE")]
    pub max_backup_size: Option<u64>,
}

impl JobBoundsArgs {
    /// Fills what `self` (flags, environment) left unset from `file`, then
    /// applies it over `j`'s defaults.
    fn apply(&self, file: &JobBoundsArgs, j: &mut crate::jobs::JobSettings) {
        if let Some(n) = self.max_jobs_per_project.or(file.max_jobs_per_project) {
            j.max_jobs_per_project = n.max(1);
        }
        if let Some(s) = self.job_deadline.or(file.job_deadline) {
            j.job_deadline = std::time::Duration::from_secs(s);
        }
        if let Some(r) = self.min_rate.or(file.min_rate) {
            j.min_rate = r;
        }
        if let Some(n) = self.max_rdb_string.or(file.max_rdb_string) {
            j.max_rdb_string = n;
        }
        if let Some(n) = self.max_backup_size.or(file.max_backup_size) {
            j.max_backup_size = Some(n);
        }
    }
}

/// The `--config` file: the same settings, all optional.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub storage: Option<String>,
    pub advertise_addr: Option<String>,
    pub replication_port: Option<u16>,
    pub replication_listen: Option<String>,
    pub redis_ca_file: Option<PathBuf>,
    pub public_url: Option<String>,
    pub restore_mode: Option<String>,
    pub restore_max_payload: Option<usize>,
    pub max_connections: Option<usize>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub allow_targets: Option<String>,
    pub deny_targets: Option<String>,
    pub metrics_token: Option<String>,
    pub sandbox_servers: Option<Vec<String>>,
    pub sandbox_max_memory: Option<u64>,
    // Job bounds (see `JobBoundsArgs`).
    pub max_jobs_per_project: Option<u32>,
    pub job_deadline: Option<u64>,
    pub min_rate: Option<u64>,
    pub max_rdb_string: Option<u64>,
    pub max_backup_size: Option<u64>,
}

impl FileConfig {
    fn bounds(&self) -> JobBoundsArgs {
        JobBoundsArgs {
            max_jobs_per_project: self.max_jobs_per_project,
            job_deadline: self.job_deadline,
            min_rate: self.min_rate,
            max_rdb_string: self.max_rdb_string,
            max_backup_size: self.max_backup_size,
        }
    }
}

/// Errors resolving the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error("cannot use data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid restore mode {0:?}: use auto, feed or slice")]
    RestoreMode(String),
    #[error("--tls-cert and --tls-key go together: give both or neither")]
    TlsPair,
    #[error("invalid network {0:?} in {1}: use CIDR (10.0.0.0/8, fd00::/8) or an address")]
    Targets(String, &'static str),
    #[error("invalid --sandbox-server {0}")]
    SandboxServer(String),
}

/// The settings `serve` runs with, fully resolved.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: String,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub storage: StorageUrl,
    /// The keys an S3 `storage` signs with, from the environment.
    pub s3_keys: S3Keys,
    pub advertise_addr: Option<String>,
    pub replication_port: Option<u16>,
    /// Bind host (and port) of the replication listener.
    pub replication_listen: Option<String>,
    pub feed_limits: crate::redis::feed::FeedLimits,
    pub redis_ca_file: Option<PathBuf>,
    pub public_url: Option<String>,
    pub jobs: crate::jobs::JobSettings,
    pub http: HttpSettings,
    /// `--allow-targets`: when set, the only networks Redis targets may be in.
    pub allow_targets: Option<Vec<crate::redis::Cidr>>,
    /// `--deny-targets`: refused in addition to the built-in denials.
    pub deny_targets: Vec<crate::redis::Cidr>,
    /// `DCS_BACKUP_SECRET_KEY`, if set; else `DATA_DIR/secret.key` is used.
    pub secret_key: Option<crate::model::Secret>,
    /// `--sandbox-server NAME=PATH`: probed at start-up into
    /// `jobs.sandbox_servers`.
    pub sandbox_servers: Vec<(String, PathBuf)>,
}

/// The S3 keys from the environment (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), each if set; the store
/// uses these and never reads the environment itself.
pub fn s3_keys_from_env() -> S3Keys {
    let var = |name| std::env::var(name).ok().map(crate::model::Secret::new);
    S3Keys {
        access_key_id: var("AWS_ACCESS_KEY_ID"),
        secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
        session_token: var("AWS_SESSION_TOKEN"),
    }
}

/// The key for instance passwords from the environment, if set.
pub fn secret_key_from_env() -> Option<crate::model::Secret> {
    std::env::var(crate::secrets::KEY_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(crate::model::Secret::new)
}

fn parse_targets(
    v: Option<String>,
    name: &'static str,
) -> Result<Option<Vec<crate::redis::Cidr>>, ConfigError> {
    v.map(|s| crate::redis::Cidr::parse_list(&s).map_err(|bad| ConfigError::Targets(bad, name)))
        .transpose()
}

/// The API listener's limits and optional TLS.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// A request's headers must arrive within this (a kept-alive
    /// connection waiting for its next request is closed after it too).
    pub header_timeout: std::time::Duration,
    /// A request's body must arrive within this.
    pub body_timeout: std::time::Duration,
    /// A connection on which no byte moves either way for this long is closed.
    pub idle_timeout: std::time::Duration,
    /// Connections served at once; more wait in the accept backlog.
    pub max_connections: usize,
    /// PEM certificate chain and private key: serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `GET /metrics` wants this bearer token when set.
    pub metrics_token: Option<crate::model::Secret>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        use std::time::Duration;
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            tls: None,
            metrics_token: None,
        }
    }
}

impl HttpSettings {
    fn resolve(args: &ServeArgs, file: &FileConfig) -> Result<Self, ConfigError> {
        let mut h = Self::default();
        if let Some(n) = args.max_connections.or(file.max_connections) {
            h.max_connections = n.max(1);
        }
        let cert = args.tls_cert.clone().or_else(|| file.tls_cert.clone());
        let key = args.tls_key.clone().or_else(|| file.tls_key.clone());
        h.tls = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err(ConfigError::TlsPair),
        };
        // An empty token (a variable set to "") means no token.
        h.metrics_token = args
            .metrics_token
            .clone()
            .or_else(|| file.metrics_token.clone())
            .filter(|t| !t.is_empty())
            .map(crate::model::Secret::new);
        Ok(h)
    }
}

fn load_file(path: Option<&Path>) -> Result<FileConfig, ConfigError> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })
}

fn absolute(p: PathBuf) -> Result<PathBuf, ConfigError> {
    std::path::absolute(&p).map_err(|source| ConfigError::DataDir { path: p, source })
}

/// Data dir and database URL, shared by every subcommand.
pub fn resolve_common(
    args: &CommonArgs,
    file: &FileConfig,
) -> Result<(PathBuf, String), ConfigError> {
    let data_dir = absolute(
        args.data_dir
            .clone()
            .or_else(|| file.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("./data")),
    )?;
    let database_url = args
        .database_url
        .clone()
        .or_else(|| file.database_url.clone())
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("catalog.db").display()));
    Ok((data_dir, database_url))
}

impl Config {
    /// Resolves `serve`'s settings from its arguments and the config file.
    pub fn from_serve_args(args: &ServeArgs) -> Result<Self, ConfigError> {
        let file = load_file(args.common.config.as_deref())?;
        let (data_dir, database_url) = resolve_common(&args.common, &file)?;
        let file_bounds = file.bounds();
        let storage = args
            .storage
            .clone()
            .or_else(|| file.storage.clone())
            .unwrap_or_else(|| format!("fs://{}", data_dir.join("backups").display()));
        let http = HttpSettings::resolve(args, &file)?;
        let specs = if args.sandbox_servers.is_empty() {
            file.sandbox_servers.clone().unwrap_or_default()
        } else {
            args.sandbox_servers.clone()
        };
        let sandbox_servers = specs
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| crate::jobs::sandbox::parse_spec(s).map_err(ConfigError::SandboxServer))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            sandbox_servers,
            http,
            listen: args
                .listen
                .clone()
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:8080".into()),
            storage: StorageUrl::parse(&storage)?,
            s3_keys: s3_keys_from_env(),
            data_dir,
            database_url,
            advertise_addr: args.advertise_addr.clone().or(file.advertise_addr),
            replication_port: args.replication_port.or(file.replication_port),
            replication_listen: args.replication_listen.clone().or(file.replication_listen),
            feed_limits: Default::default(),
            redis_ca_file: args.redis_ca_file.clone().or(file.redis_ca_file),
            public_url: args.public_url.clone().or(file.public_url),
            allow_targets: parse_targets(
                args.allow_targets.clone().or(file.allow_targets),
                "allow_targets",
            )?,
            deny_targets: parse_targets(
                args.deny_targets.clone().or(file.deny_targets),
                "deny_targets",
            )?
            .unwrap_or_default(),
            secret_key: secret_key_from_env(),
            jobs: {
                let mut j = crate::jobs::JobSettings::default();
                if let Some(m) = args.restore_mode.clone().or(file.restore_mode) {
                    j.restore_mode =
                        crate::model::RestoreMode::parse(&m).ok_or(ConfigError::RestoreMode(m))?;
                }
                if let Some(n) = args.restore_max_payload.or(file.restore_max_payload) {
                    j.restore_max_payload = n;
                }
                if let Some(n) = args.sandbox_max_memory.or(file.sandbox_max_memory) {
                    j.sandbox_max_memory = n.max(1 << 20);
                }
                args.bounds.apply(&file_bounds, &mut j);
                j
            },
        })
    }

    /// Settings for a throwaway server under `dir` (tests and benchmarks).
    pub fn for_dir(dir: &Path, database_url: Option<String>) -> Self {
        Self {
            listen: "127.0.0.1:0".into(),
            data_dir: dir.to_owned(),
            database_url: database_url
                .unwrap_or_else(|| format!("sqlite://{}", dir.join("catalog.db").display())),
            storage: StorageUrl::Fs {
                root: dir.join("backups"),
            },
            // Tests and benchmarks point `storage` at S3 after setting
            // the keys in their environment.
            s3_keys: s3_keys_from_env(),
            advertise_addr: None,
            replication_port: None,
            replication_listen: None,
            feed_limits: Default::default(),
            redis_ca_file: None,
            public_url: None,
            jobs: crate::jobs::JobSettings::default(),
            http: HttpSettings::default(),
            allow_targets: None,
            deny_targets: Vec::new(),
            secret_key: None,
            sandbox_servers: Vec::new(),
        }
    }
}

/// Loads the config file named by common args (for `credential create`).
pub fn load_common(args: &CommonArgs) -> Result<(PathBuf, String), ConfigError> {
    let file = load_file(args.config.as_deref())?;
    resolve_common(args, &file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_beat_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9999\"\nstorage = \"fs:///srv/b\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            common: CommonArgs {
                config: Some(file),
                data_dir: Some(dir.path().into()),
                database_url: None,
            },
            listen: Some("127.0.0.1:7000".into()),
            ..Default::default()
        };
        let c = Config::from_serve_args(&args).unwrap();
        assert_eq!(c.listen, "127.0.0.1:7000");
        assert_eq!(
            c.storage,
            StorageUrl::Fs {
                root: "/srv/b".into()
            }
        );
        assert_eq!(
            c.database_url,
            format!("sqlite://{}", dir.path().join("catalog.db").display())
        );
    }

    #[test]
    fn tls_files_go_together() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "tls_cert = \"/c.pem\"\nmax_connections = 8\n").unwrap();
        let mut args = ServeArgs {
            common: CommonArgs {
                config: Some(file),
                data_dir: Some(dir.path().into()),
                database_url: None,
            },
            ..Default::default()
        };
        assert!(matches!(
            Config::from_serve_args(&args),
            Err(ConfigError::TlsPair)
        ));
        args.tls_key = Some("/k.pem".into());
        let c = Config::from_serve_args(&args).unwrap();
        assert_eq!(c.http.tls, Some(("/c.pem".into(), "/k.pem".into())));
        assert_eq!(c.http.max_connections, 8);
    }

    #[test]
    fn the_metrics_token_comes_from_flags_or_file_and_never_prints() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "metrics_token = \"from-file\"\n").unwrap();
        let mut args = ServeArgs {
            common: CommonArgs {
                config: Some(file),
                data_dir: Some(dir.path().into()),
                database_url: None,
            },
            ..Default::default()
        };
        let c = Config::from_serve_args(&args).unwrap();
        assert_eq!(
            c.http.metrics_token.as_ref().map(|t| t.expose()),
            Some("from-file")
        );
        assert!(!format!("{:?}", c.http).contains("from-file"));
        args.metrics_token = Some("from-flag".into());
        let c = Config::from_serve_args(&args).unwrap();
        assert_eq!(
            c.http.metrics_token.as_ref().map(|t| t.expose()),
            Some("from-flag")
        );
        args.metrics_token = Some(String::new());
        assert!(Config::from_serve_args(&args)
            .unwrap()
            .http
            .metrics_token
            .is_none());
    }

    #[test]
    fn target_lists_come_from_flags_or_file_and_bad_networks_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "deny_targets = \"10.0.0.0/8\"\n").unwrap();
        let mut args = ServeArgs {
            common: CommonArgs {
                config: Some(file),
                ..Default::default()
            },
            allow_targets: Some("192.0.2.0/24, 2001:db8::1".into()),
            ..Default::default()
        };
        let c = Config::from_serve_args(&args).unwrap();
        assert_eq!(c.allow_targets.map(|a| a.len()), Some(2));
        assert_eq!(c.deny_targets.len(), 1);
        args.deny_targets = Some("10.0.0.0/40".into());
        assert!(matches!(
            Config::from_serve_args(&args),
            Err(ConfigError::Targets(..))
        ));
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "lisen = \"x\"\n").unwrap();
        let args = ServeArgs {
            common: CommonArgs {
                config: Some(file),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(matches!(
            Config::from_serve_args(&args),
            Err(ConfigError::Parse { .. })
        ));
    }

    #[test]
    fn job_bounds_come_from_flags_then_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "max_jobs_per_project = 3\nmin_rate = 0\njob_deadline = 10\nmax_backup_size = 1000\n",
        )
        .unwrap();
        let args = ServeArgs {
            common: CommonArgs {
                config: Some(file),
                data_dir: Some(dir.path().into()),
                database_url: None,
            },
            bounds: JobBoundsArgs {
                job_deadline: Some(60),
                ..Default::default()
            },
            ..Default::default()
        };
        let j = Config::from_serve_args(&args).unwrap().jobs;
        assert_eq!(j.max_jobs_per_project, 3);
        assert_eq!(j.min_rate, 0);
        assert_eq!(j.job_deadline, std::time::Duration::from_secs(60));
        assert_eq!(j.max_backup_size, Some(1000));
        assert_eq!(j.max_rdb_string, 512 * 1024 * 1024);
    }
}

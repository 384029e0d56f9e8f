//! Node configuration: flags, environment variables and a TOML file, in that order of
//! precedence, over sane defaults. README.md lists every setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use fairtrail_client::keys::PublicKey;
use serde::Deserialize;

use crate::limits::{Admission, AdmissionPolicy};

pub const DEFAULT_DATA_DIR: &str = "./fairtrail-data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_ORIGIN: &str = "fairtrail.local/log";
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
pub const DEFAULT_QUEUE: usize = 16 * 1024;
/// Full tiles kept in memory (16 KiB each, 16 MiB in all); entry bundles get a quarter as
/// many slots (up to about 80 KiB each). Measured at 10M entries (BENCHMARKS.md): 4096 held
/// 64 MiB of tiles the writer had just completed, which no reader needed.
pub const DEFAULT_TILE_CACHE: usize = 1024;

#[derive(Parser, Debug)]
#[command(
    name = "fairtrail-node",
    version,
    about = "Fairtrail node: an append-only, verifiable ledger of fair-trade attestations"
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the node (the default).
    Run,
    /// Print the log's verifier key in C2SP signed-note form (name+hexkeyid+base64key),
    /// creating the data directory and key on first use.
    LogKey,
}

/// Settings a flag, an environment variable or the config file can give.
#[derive(Args, Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// TOML config file; its keys are the long flag names (data-dir, listen, ...).
    #[arg(long, env = "FAIRTRAIL_CONFIG", global = true)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Where the log, its key and its indexes live [default: ./fairtrail-data].
    #[arg(long, env = "FAIRTRAIL_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// gRPC listen address [default: 127.0.0.1:50051]; port 0 picks a free port.
    #[arg(long, env = "FAIRTRAIL_LISTEN", global = true)]
    pub listen: Option<SocketAddr>,
    /// HTTP listen address for the consumer pages, bundles, checkpoint, tiles and metrics
    /// [default: 127.0.0.1:8080]; port 0 picks a free port.
    #[arg(long, env = "FAIRTRAIL_HTTP_LISTEN", global = true)]
    pub http_listen: Option<SocketAddr>,
    /// The public base URL of the HTTP side, used in QR codes and links, such as
    /// `https://trace.example.org` [default: `http://` and the HTTP listen address].
    #[arg(long, env = "FAIRTRAIL_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// The trust policy (TOML, as for `fairtrail verify`) under which the consumer pages
    /// compute their verdict; re-read when the file changes. Without one, pages show what
    /// the log proves but certify nothing.
    #[arg(long, env = "FAIRTRAIL_POLICY", global = true)]
    pub policy: Option<PathBuf>,
    /// The log's origin: the first line of its checkpoints and the name of its key, such as
    /// `fairtrail.example.org/log` [default for a new log: fairtrail.local/log]. Fixed when the
    /// log is created.
    #[arg(long, env = "FAIRTRAIL_ORIGIN", global = true)]
    pub origin: Option<String>,
    /// Largest gRPC message accepted, in bytes [default: 4194304].
    #[arg(long, env = "FAIRTRAIL_MAX_MESSAGE_BYTES", global = true)]
    pub max_message_bytes: Option<usize>,
    /// Submissions that may wait for the sequencer before callers are slowed [default: 16384].
    #[arg(long, env = "FAIRTRAIL_QUEUE", global = true)]
    pub queue: Option<usize>,
    /// Tiles kept in memory (each about 16 KiB; a quarter as many entry bundles) [default: 1024].
    #[arg(long, env = "FAIRTRAIL_TILE_CACHE", global = true)]
    pub tile_cache: Option<usize>,
    /// Megabytes of sled's page cache, for the ledger state held there (participants, keys,
    /// certifications, products) [default: 64].
    #[arg(long, env = "FAIRTRAIL_INDEX_CACHE_MB", global = true)]
    pub index_cache_mb: Option<u64>,
    /// Entries each hash index (statement ids, leaf hashes) holds in memory before writing
    /// them to a run file; what a crash loses of it is replayed from the log at start
    /// [default: 131072].
    #[arg(long, env = "FAIRTRAIL_HASH_RUN_ENTRIES", global = true)]
    pub hash_run_entries: Option<usize>,
    /// Kibibytes of lot records and entry lists the ledger state store holds in memory
    /// before writing them to a run file (they are durable before, in its write-ahead log)
    /// [default: 16384].
    #[arg(long, env = "FAIRTRAIL_STATE_RUN_KB", global = true)]
    pub state_run_kb: Option<usize>,
    /// Who may declare themselves: `open` (anyone) or `endorsed` (a declaration must be
    /// co-signed by an --operator-key) [default: open].
    #[arg(long, env = "FAIRTRAIL_ADMISSION", global = true, value_enum)]
    pub admission: Option<Admission>,
    /// A network operator's public key (`ed25519:<hex>`) that endorses declarations; repeat
    /// for several (in the config file: `operator-keys = [...]`).
    #[arg(
        long = "operator-key",
        env = "FAIRTRAIL_OPERATOR_KEYS",
        global = true,
        value_delimiter = ','
    )]
    #[serde(default)]
    pub operator_keys: Vec<PublicKey>,
    /// Submissions per second one connection may make (0: unlimited) [default: 5000].
    #[arg(long, env = "FAIRTRAIL_RATE_PER_CONNECTION", global = true)]
    pub rate_per_connection: Option<u32>,
    /// Submissions per second one issuer key may make (0: unlimited) [default: 1000].
    #[arg(long, env = "FAIRTRAIL_RATE_PER_KEY", global = true)]
    pub rate_per_key: Option<u32>,
    /// gRPC connections served at once; more wait to be accepted [default: 1024].
    #[arg(long, env = "FAIRTRAIL_MAX_CONNECTIONS", global = true)]
    pub max_connections: Option<usize>,
    /// Concurrent gRPC streams (calls) on one connection [default: 256].
    #[arg(long, env = "FAIRTRAIL_MAX_STREAMS", global = true)]
    pub max_streams: Option<u32>,
    /// TLS certificate chain (PEM) for gRPC and HTTP; with --tls-key, the node serves TLS only.
    #[arg(long, env = "FAIRTRAIL_TLS_CERT", global = true, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) matching --tls-cert; refused if others can read it.
    #[arg(long, env = "FAIRTRAIL_TLS_KEY", global = true, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Mebibytes of disk space kept free: while the file system holding the log or an index
    /// has less, the node refuses new statements (RESOURCE_EXHAUSTED), answers those already
    /// logged and goes on serving reads, until space is freed; 0 turns this off [default: 256].
    #[arg(long, env = "FAIRTRAIL_DISK_RESERVE_MB", global = true)]
    pub disk_reserve_mb: Option<u64>,
    /// Seconds a unary request may take before it is cancelled [default: 30].
    #[arg(long, env = "FAIRTRAIL_REQUEST_TIMEOUT", global = true)]
    pub request_timeout: Option<u64>,
}

/// Abuse limits, every default filled in.
#[derive(Debug, Clone)]
pub struct Limits {
    pub admission: AdmissionPolicy,
    pub rate_per_connection: u32,
    pub rate_per_key: u32,
    pub max_connections: usize,
    pub max_streams: u32,
    pub request_timeout: std::time::Duration,
    /// Free disk space kept back, in MiB (0: none); see [`crate::diskspace`].
    pub disk_reserve_mb: u64,
}

/// The settings in force, every default filled in.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub http_listen: SocketAddr,
    /// `None`: derived from the bound HTTP address.
    pub public_url: Option<String>,
    pub policy: Option<PathBuf>,
    /// `None` when not given: a new log then takes [`DEFAULT_ORIGIN`], an existing one keeps
    /// its own.
    pub origin: Option<String>,
    pub max_message_bytes: usize,
    pub queue: usize,
    pub tile_cache: usize,
    /// How the index is opened (sled's cache, the hash indexes' run size).
    pub index: crate::index::IndexOptions,
    pub limits: Limits,
    /// Certificate chain and key (PEM files), when the node serves TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl Settings {
    /// Flags and environment first, then the config file, then defaults.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => Settings::default(),
        };
        let listen = match self.listen.or(file.listen) {
            Some(a) => a,
            None => DEFAULT_LISTEN
                .parse()
                .map_err(|_| ConfigError::Invalid("bad default listen address".into()))?,
        };
        let http_listen = match self.http_listen.or(file.http_listen) {
            Some(a) => a,
            None => DEFAULT_HTTP_LISTEN
                .parse()
                .map_err(|_| ConfigError::Invalid("bad default HTTP listen address".into()))?,
        };
        let config = Config {
            data_dir: self
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            listen,
            http_listen,
            public_url: self
                .public_url
                .or(file.public_url)
                .map(|u| u.trim_end_matches('/').to_owned()),
            policy: self.policy.or(file.policy),
            origin: self.origin.or(file.origin),
            max_message_bytes: self
                .max_message_bytes
                .or(file.max_message_bytes)
                .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES),
            queue: self.queue.or(file.queue).unwrap_or(DEFAULT_QUEUE),
            tile_cache: self
                .tile_cache
                .or(file.tile_cache)
                .unwrap_or(DEFAULT_TILE_CACHE),
            index: {
                let defaults = crate::index::IndexOptions::default();
                crate::index::IndexOptions {
                    cache_mb: self
                        .index_cache_mb
                        .or(file.index_cache_mb)
                        .unwrap_or(defaults.cache_mb),
                    hash_run_entries: self
                        .hash_run_entries
                        .or(file.hash_run_entries)
                        .unwrap_or(defaults.hash_run_entries)
                        .max(1),
                    state_run_bytes: self
                        .state_run_kb
                        .or(file.state_run_kb)
                        .map_or(defaults.state_run_bytes, |kb| kb.saturating_mul(1024))
                        .max(1),
                    ..defaults
                }
            },
            tls: match (
                self.tls_cert.or(file.tls_cert),
                self.tls_key.or(file.tls_key),
            ) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                _ => {
                    return Err(ConfigError::Invalid(
                        "give both --tls-cert and --tls-key, or neither".into(),
                    ))
                }
            },
            limits: Limits {
                admission: AdmissionPolicy {
                    mode: self.admission.or(file.admission).unwrap_or_default(),
                    operators: if self.operator_keys.is_empty() {
                        file.operator_keys
                    } else {
                        self.operator_keys
                    },
                },
                rate_per_connection: self
                    .rate_per_connection
                    .or(file.rate_per_connection)
                    .unwrap_or(5000),
                rate_per_key: self.rate_per_key.or(file.rate_per_key).unwrap_or(1000),
                max_connections: self
                    .max_connections
                    .or(file.max_connections)
                    .unwrap_or(1024)
                    .max(1),
                max_streams: self.max_streams.or(file.max_streams).unwrap_or(256).max(1),
                disk_reserve_mb: self
                    .disk_reserve_mb
                    .or(file.disk_reserve_mb)
                    .unwrap_or(crate::diskspace::DEFAULT_RESERVE_MB),
                request_timeout: std::time::Duration::from_secs(
                    self.request_timeout
                        .or(file.request_timeout)
                        .unwrap_or(30)
                        .max(1),
                ),
            },
        };
        if config.limits.admission.mode == Admission::Endorsed
            && config.limits.admission.operators.is_empty()
        {
            return Err(ConfigError::Invalid(
                "admission is endorsed but no --operator-key is given: name the keys that endorse declarations".into(),
            ));
        }
        if config.max_message_bytes < 64 * 1024 {
            return Err(ConfigError::Invalid(format!(
                "max-message-bytes is {}; it must be at least 65536 to carry one statement",
                config.max_message_bytes
            )));
        }
        if let Some(origin) = &config.origin {
            check_origin(origin)?;
        }
        Ok(config)
    }
}

/// An origin is a key name in signed notes: non-empty, no spaces, no `+`.
pub fn check_origin(origin: &str) -> Result<(), ConfigError> {
    if origin.is_empty()
        || origin
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '+')
    {
        return Err(ConfigError::Invalid(format!(
            "origin {origin:?} must be non-empty, without spaces or '+', such as fairtrail.example.org/log"
        )));
    }
    Ok(())
}

fn read_file(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })
}

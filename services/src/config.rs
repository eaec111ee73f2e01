//! Server settings.
//!
//! Every option has a flag, an environment variable (`NODEGRID_…`) and a key of the same name in
//! the optional TOML file given by `--config`. Precedence, highest first: flag, environment
//! variable, file, built-in default. The defaults are documented on each option and in the
//! README.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use ipnet::IpNet;
use secrecy::SecretString;
use serde::Deserialize;

use crate::identity::DEFAULT_PASSWORD_MIN_LENGTH;
use crate::identity::IdentitySettings;
use crate::identity::passwords::PasswordCost;
use crate::identity::tokens::{
    DEVELOPMENT_JWT_SECRET, MIN_PRODUCTION_SECRET_BYTES, is_strong_secret,
};
use crate::pnodes::{AnalyticsConfig, PnodeSettings, Seed, XANDEUM_PUBLIC_SEEDS};
use crate::ratelimit::RateRule;

pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/nodegrid";
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const DEFAULT_REDIS_PREFIX: &str = "nodegrid";
/// The `--pnode-seeds` preset that names the public Xandeum IP nodes.
pub const XANDEUM_PUBLIC_PRESET: &str = "xandeum-public";
const DEFAULT_DATABASE_POOL_SIZE: usize = 16;
const DEFAULT_SHUTDOWN_TIMEOUT_SECS: u64 = 30;
const DEFAULT_READY_TIMEOUT_MS: u64 = 1_000;
const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
const DEFAULT_ACCESS_TOKEN_TTL_SECS: u64 = 3_600;
const DEFAULT_REFRESH_TOKEN_TTL_SECS: u64 = 7 * 24 * 3_600;
const DEFAULT_AUTH_IP_PER_MINUTE: u32 = 60;
const DEFAULT_AUTH_IP_BURST: u32 = 30;
const DEFAULT_AUTH_USERNAME_PER_MINUTE: u32 = 10;
const DEFAULT_AUTH_USERNAME_BURST: u32 = 10;
const DEFAULT_WS_MAX_FRAME_BYTES: usize = 64 * 1024;
const DEFAULT_PRODUCER_RATE_PER_SEC: u32 = 100;
const DEFAULT_PRODUCER_BURST: u32 = 200;
const DEFAULT_CONSUMER_BUFFER_MESSAGES: usize = 1_000;
const DEFAULT_CONSUMER_BUFFER_BYTES: u64 = 1024 * 1024;
const DEFAULT_WS_PING_INTERVAL_SECS: u64 = 25;
const DEFAULT_WS_IDLE_TIMEOUT_SECS: u64 = 60;
const DEFAULT_PNODE_INTERVAL_SECS: u64 = 60;
const DEFAULT_PNODE_RPC_TIMEOUT_MS: u64 = 3_000;
const DEFAULT_PNODE_MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
const DEFAULT_PNODE_RETENTION_DAYS: u64 = 30;
const DEFAULT_PNODE_API_RATE_PER_SEC: u32 = 50;
const DEFAULT_PNODE_API_BURST: u32 = 100;

/// The limits of the streaming sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Frames larger than this get a `too_large` error and are dropped.
    pub max_frame_bytes: usize,
    /// Sustained data messages per second per producer connection.
    pub producer_rate_per_sec: u32,
    /// Burst of the same.
    pub producer_burst: u32,
    /// Frames a socket may have waiting to be written before it is closed as slow.
    pub buffer_messages: usize,
    /// Bytes of the same.
    pub buffer_bytes: u64,
    /// How often the server pings each socket.
    pub ping_interval: Duration,
    /// A socket silent (no frame, no pong) this long is closed.
    pub idle_timeout: Duration,
    /// Whether sockets close when their token expires.
    pub token_expiry: WsTokenExpiry,
}

/// Whether an open socket's access token is checked again when it expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum WsTokenExpiry {
    /// At the token's `exp` the socket closes with 4001 `token_expired`, unless the client sent
    /// a newer token in a `refresh` frame.
    #[default]
    Refresh,
    /// The token is checked when the socket opens, never again (unmodified Motience devices).
    ConnectOnly,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event, for a terminal.
    #[default]
    Human,
    /// One JSON object per line, for a log collector.
    Json,
}

/// Where the server runs. Production refuses settings that are only acceptable on a laptop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Development,
    Production,
}

/// The options of `nodegrid serve` and `nodegrid migrate`, as given on the command line, in the
/// environment, or in the TOML file. Every field is optional here; [`ServeOptions::resolve`]
/// applies the file and the defaults.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeOptions {
    /// TOML file with any of these options (keys as the long flag names, with `_` for `-`).
    #[arg(long, env = "NODEGRID_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address the HTTP server listens on [default: 127.0.0.1:8080]. Port 0 picks a free port.
    #[arg(long, env = "NODEGRID_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,

    /// Number of HTTP worker threads [default: one per core].
    #[arg(long, env = "NODEGRID_HTTP_WORKERS")]
    pub http_workers: Option<usize>,

    /// Largest accepted request body, in bytes [default: 262144].
    #[arg(long, env = "NODEGRID_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,

    /// Postgres connection URL [default: postgres://postgres@127.0.0.1:5432/nodegrid].
    #[arg(long, env = "NODEGRID_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Largest number of pooled Postgres connections [default: 16].
    #[arg(long, env = "NODEGRID_DATABASE_POOL_SIZE")]
    pub database_pool_size: Option<usize>,

    /// Redis connection URL [default: redis://127.0.0.1:6379].
    #[arg(long, env = "NODEGRID_REDIS_URL")]
    pub redis_url: Option<String>,

    /// Prefix of every Redis key and channel of this deployment [default: nodegrid].
    #[arg(long, env = "NODEGRID_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,

    /// Key that signs access tokens. Prefer the environment variable or the file to the flag,
    /// which other users of the machine can read in the process list.
    #[arg(long, env = "NODEGRID_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<SecretString>,

    /// Username of the administrator that exists after start-up.
    #[arg(long, env = "NODEGRID_ADMIN_USERNAME")]
    pub admin_username: Option<String>,

    /// Password of that administrator.
    #[arg(long, env = "NODEGRID_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<SecretString>,

    /// Development or production [default: development].
    #[arg(long, env = "NODEGRID_ENVIRONMENT", value_enum)]
    pub environment: Option<Environment>,

    /// Log line format [default: human].
    #[arg(long, env = "NODEGRID_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// Log filter in tracing's `EnvFilter` syntax [default: info].
    #[arg(long, env = "NODEGRID_LOG")]
    pub log: Option<String>,

    /// Seconds that in-flight requests get to finish after SIGTERM/SIGINT [default: 30].
    #[arg(long, env = "NODEGRID_SHUTDOWN_TIMEOUT_SECS")]
    pub shutdown_timeout_secs: Option<u64>,

    /// Milliseconds each `/ready` dependency check may take before it counts as failed
    /// [default: 1000].
    #[arg(long, env = "NODEGRID_READY_TIMEOUT_MS")]
    pub ready_timeout_ms: Option<u64>,

    /// Lifetime of access tokens, in seconds [default: 3600].
    #[arg(long, env = "NODEGRID_ACCESS_TOKEN_TTL_SECS")]
    pub access_token_ttl_secs: Option<u64>,

    /// Lifetime of refresh tokens, in seconds [default: 604800, 7 days].
    #[arg(long, env = "NODEGRID_REFRESH_TOKEN_TTL_SECS")]
    pub refresh_token_ttl_secs: Option<u64>,

    /// Argon2id memory cost of password hashes, in KiB [default: 19456].
    #[arg(long, env = "NODEGRID_PASSWORD_MEMORY_KIB")]
    pub password_memory_kib: Option<u32>,

    /// Argon2id passes of password hashes [default: 2].
    #[arg(long, env = "NODEGRID_PASSWORD_ITERATIONS")]
    pub password_iterations: Option<u32>,

    /// Shortest password accepted for new passwords, in characters; existing ones are not
    /// checked [default: 8].
    #[arg(long, env = "NODEGRID_PASSWORD_MIN_LENGTH")]
    pub password_min_length: Option<usize>,

    /// Sustained login/register/refresh requests per client IP per minute; 0 turns the limit
    /// off [default: 60].
    #[arg(long, env = "NODEGRID_AUTH_IP_PER_MINUTE")]
    pub auth_ip_per_minute: Option<u32>,

    /// Burst of login/register/refresh requests per client IP [default: 30].
    #[arg(long, env = "NODEGRID_AUTH_IP_BURST")]
    pub auth_ip_burst: Option<u32>,

    /// Sustained login/register requests per username per minute; 0 turns the limit off
    /// [default: 10].
    #[arg(long, env = "NODEGRID_AUTH_USERNAME_PER_MINUTE")]
    pub auth_username_per_minute: Option<u32>,

    /// Burst of login/register requests per username [default: 10].
    #[arg(long, env = "NODEGRID_AUTH_USERNAME_BURST")]
    pub auth_username_burst: Option<u32>,

    /// Proxies whose `X-Forwarded-For` is believed, as IPs or CIDRs, comma-separated
    /// [default: none: the peer address is the client].
    #[arg(long, env = "NODEGRID_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<String>>,

    /// Largest accepted WebSocket frame, in bytes; larger ones get `too_large` [default: 65536].
    #[arg(long, env = "NODEGRID_WS_MAX_FRAME_BYTES")]
    pub ws_max_frame_bytes: Option<usize>,

    /// Sustained data messages per second per producer connection [default: 100].
    #[arg(long, env = "NODEGRID_PRODUCER_RATE_PER_SEC")]
    pub producer_rate_per_sec: Option<u32>,

    /// Burst of data messages per producer connection [default: 200].
    #[arg(long, env = "NODEGRID_PRODUCER_BURST")]
    pub producer_burst: Option<u32>,

    /// Frames a socket may have waiting to be written before it is closed with 4008
    /// slow_consumer [default: 1000].
    #[arg(long, env = "NODEGRID_CONSUMER_BUFFER_MESSAGES")]
    pub consumer_buffer_messages: Option<usize>,

    /// Bytes a socket may have waiting to be written before it is closed with 4008
    /// slow_consumer [default: 1048576].
    #[arg(long, env = "NODEGRID_CONSUMER_BUFFER_BYTES")]
    pub consumer_buffer_bytes: Option<u64>,

    /// Seconds between the server's pings on each socket [default: 25].
    #[arg(long, env = "NODEGRID_WS_PING_INTERVAL_SECS")]
    pub ws_ping_interval_secs: Option<u64>,

    /// Seconds without a frame or pong after which a socket is closed [default: 60].
    #[arg(long, env = "NODEGRID_WS_IDLE_TIMEOUT_SECS")]
    pub ws_idle_timeout_secs: Option<u64>,

    /// `refresh`: a socket closes with 4001 when its token expires unless a `refresh` frame
    /// brought a newer one; `connect-only`: the token is checked at connect only
    /// [default: refresh].
    #[arg(long, env = "NODEGRID_WS_TOKEN_EXPIRY", value_enum)]
    pub ws_token_expiry: Option<WsTokenExpiry>,

    /// pRPC seed nodes to poll, comma-separated `host[:port]` (port 6000 when omitted), or the
    /// preset `xandeum-public` (the nine public Xandeum IP nodes) [default: none: polling is
    /// off].
    #[arg(long, env = "NODEGRID_PNODE_SEEDS", value_delimiter = ',')]
    pub pnode_seeds: Option<Vec<String>>,

    /// Seconds between pNode polling cycles; nodes unseen for twice this are offline
    /// [default: 60].
    #[arg(long, env = "NODEGRID_PNODE_INTERVAL")]
    pub pnode_interval: Option<u64>,

    /// Milliseconds each pRPC call may take [default: 3000].
    #[arg(long, env = "NODEGRID_PNODE_RPC_TIMEOUT_MS")]
    pub pnode_rpc_timeout_ms: Option<u64>,

    /// Largest accepted pRPC answer, in bytes [default: 16777216].
    #[arg(long, env = "NODEGRID_PNODE_MAX_ANSWER_BYTES")]
    pub pnode_max_answer_bytes: Option<usize>,

    /// The pNode version that counts as latest [default: the most common among online nodes].
    #[arg(long, env = "NODEGRID_PNODE_LATEST_VERSION")]
    pub pnode_latest_version: Option<String>,

    /// Days of pNode history kept [default: 30].
    #[arg(long, env = "NODEGRID_PNODE_RETENTION_DAYS")]
    pub pnode_retention_days: Option<u64>,

    /// TOML file with `[scoring]` weights and `[alerts]` thresholds of the pNode analytics
    /// [default: the seed's values].
    #[arg(long, env = "NODEGRID_PNODE_SCORING_FILE")]
    pub pnode_scoring_file: Option<PathBuf>,

    /// Sustained `/api/xandeum` requests per second per client IP, per instance; 0 turns the
    /// limit off [default: 50].
    #[arg(long, env = "NODEGRID_PNODE_API_RATE_PER_SEC")]
    pub pnode_api_rate_per_sec: Option<u32>,

    /// Burst of the same [default: 100].
    #[arg(long, env = "NODEGRID_PNODE_API_BURST")]
    pub pnode_api_burst: Option<u32>,
}

/// Resolved settings: every option has its value.
#[derive(Debug, Clone)]
pub struct Settings {
    pub http_addr: SocketAddr,
    pub http_workers: Option<usize>,
    pub max_body_bytes: usize,
    pub database_url: String,
    pub database_pool_size: usize,
    pub redis_url: String,
    pub redis_prefix: String,
    pub jwt_secret: Option<SecretString>,
    pub admin_username: Option<String>,
    pub admin_password: Option<SecretString>,
    pub environment: Environment,
    pub log_format: LogFormat,
    pub log: String,
    pub shutdown_timeout: Duration,
    pub ready_timeout: Duration,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub password_cost: PasswordCost,
    pub password_min_length: usize,
    pub auth_ip_rule: RateRule,
    pub auth_username_rule: RateRule,
    pub trusted_proxies: Vec<IpNet>,
    pub stream: StreamLimits,
    pub pnodes: PnodeSettings,
}

/// Settings that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {source}")]
    ParseFile {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid setting {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

impl ServeOptions {
    /// Applies the TOML file (when `--config` names one) under the flags and environment, then
    /// the defaults under both, and validates the result.
    pub fn resolve(self) -> Result<Settings, ConfigError> {
        let file = match &self.config {
            Some(path) => Self::read_file(path)?,
            None => ServeOptions::default(),
        };
        self.over(file).into_settings()
    }

    fn read_file(path: &Path) -> Result<ServeOptions, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::ParseFile {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    /// Every option that is set in `self` wins over the one in `lower`.
    fn over(self, lower: ServeOptions) -> ServeOptions {
        ServeOptions {
            config: self.config,
            http_addr: self.http_addr.or(lower.http_addr),
            http_workers: self.http_workers.or(lower.http_workers),
            max_body_bytes: self.max_body_bytes.or(lower.max_body_bytes),
            database_url: self.database_url.or(lower.database_url),
            database_pool_size: self.database_pool_size.or(lower.database_pool_size),
            redis_url: self.redis_url.or(lower.redis_url),
            redis_prefix: self.redis_prefix.or(lower.redis_prefix),
            jwt_secret: self.jwt_secret.or(lower.jwt_secret),
            admin_username: self.admin_username.or(lower.admin_username),
            admin_password: self.admin_password.or(lower.admin_password),
            environment: self.environment.or(lower.environment),
            log_format: self.log_format.or(lower.log_format),
            log: self.log.or(lower.log),
            shutdown_timeout_secs: self.shutdown_timeout_secs.or(lower.shutdown_timeout_secs),
            ready_timeout_ms: self.ready_timeout_ms.or(lower.ready_timeout_ms),
            access_token_ttl_secs: self.access_token_ttl_secs.or(lower.access_token_ttl_secs),
            refresh_token_ttl_secs: self.refresh_token_ttl_secs.or(lower.refresh_token_ttl_secs),
            password_memory_kib: self.password_memory_kib.or(lower.password_memory_kib),
            password_iterations: self.password_iterations.or(lower.password_iterations),
            password_min_length: self.password_min_length.or(lower.password_min_length),
            auth_ip_per_minute: self.auth_ip_per_minute.or(lower.auth_ip_per_minute),
            auth_ip_burst: self.auth_ip_burst.or(lower.auth_ip_burst),
            auth_username_per_minute: self
                .auth_username_per_minute
                .or(lower.auth_username_per_minute),
            auth_username_burst: self.auth_username_burst.or(lower.auth_username_burst),
            trusted_proxies: self.trusted_proxies.or(lower.trusted_proxies),
            ws_max_frame_bytes: self.ws_max_frame_bytes.or(lower.ws_max_frame_bytes),
            producer_rate_per_sec: self.producer_rate_per_sec.or(lower.producer_rate_per_sec),
            producer_burst: self.producer_burst.or(lower.producer_burst),
            consumer_buffer_messages: self
                .consumer_buffer_messages
                .or(lower.consumer_buffer_messages),
            consumer_buffer_bytes: self.consumer_buffer_bytes.or(lower.consumer_buffer_bytes),
            ws_ping_interval_secs: self.ws_ping_interval_secs.or(lower.ws_ping_interval_secs),
            ws_idle_timeout_secs: self.ws_idle_timeout_secs.or(lower.ws_idle_timeout_secs),
            ws_token_expiry: self.ws_token_expiry.or(lower.ws_token_expiry),
            pnode_seeds: self.pnode_seeds.or(lower.pnode_seeds),
            pnode_interval: self.pnode_interval.or(lower.pnode_interval),
            pnode_rpc_timeout_ms: self.pnode_rpc_timeout_ms.or(lower.pnode_rpc_timeout_ms),
            pnode_max_answer_bytes: self.pnode_max_answer_bytes.or(lower.pnode_max_answer_bytes),
            pnode_latest_version: self.pnode_latest_version.or(lower.pnode_latest_version),
            pnode_retention_days: self.pnode_retention_days.or(lower.pnode_retention_days),
            pnode_scoring_file: self.pnode_scoring_file.or(lower.pnode_scoring_file),
            pnode_api_rate_per_sec: self.pnode_api_rate_per_sec.or(lower.pnode_api_rate_per_sec),
            pnode_api_burst: self.pnode_api_burst.or(lower.pnode_api_burst),
        }
    }

    fn into_settings(self) -> Result<Settings, ConfigError> {
        let http_addr = match self.http_addr {
            Some(addr) => addr,
            None => DEFAULT_HTTP_ADDR
                .parse()
                .map_err(|_| ConfigError::Invalid {
                    name: "http_addr",
                    reason: "built-in default does not parse".into(),
                })?,
        };
        let pnodes = self.pnode_settings()?;
        let settings = Settings {
            pnodes,
            http_addr,
            http_workers: self.http_workers,
            max_body_bytes: self.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
            database_url: self
                .database_url
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
            database_pool_size: self
                .database_pool_size
                .unwrap_or(DEFAULT_DATABASE_POOL_SIZE),
            redis_url: self
                .redis_url
                .unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned()),
            redis_prefix: self
                .redis_prefix
                .unwrap_or_else(|| DEFAULT_REDIS_PREFIX.to_owned()),
            jwt_secret: self.jwt_secret,
            admin_username: self.admin_username,
            admin_password: self.admin_password,
            environment: self.environment.unwrap_or_default(),
            log_format: self.log_format.unwrap_or_default(),
            log: self.log.unwrap_or_else(|| "info".to_owned()),
            shutdown_timeout: Duration::from_secs(
                self.shutdown_timeout_secs
                    .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT_SECS),
            ),
            ready_timeout: Duration::from_millis(
                self.ready_timeout_ms.unwrap_or(DEFAULT_READY_TIMEOUT_MS),
            ),
            access_token_ttl: Duration::from_secs(
                self.access_token_ttl_secs
                    .unwrap_or(DEFAULT_ACCESS_TOKEN_TTL_SECS),
            ),
            refresh_token_ttl: Duration::from_secs(
                self.refresh_token_ttl_secs
                    .unwrap_or(DEFAULT_REFRESH_TOKEN_TTL_SECS),
            ),
            password_cost: PasswordCost {
                memory_kib: self
                    .password_memory_kib
                    .unwrap_or(PasswordCost::default().memory_kib),
                iterations: self
                    .password_iterations
                    .unwrap_or(PasswordCost::default().iterations),
            },
            password_min_length: self
                .password_min_length
                .unwrap_or(DEFAULT_PASSWORD_MIN_LENGTH),
            auth_ip_rule: RateRule {
                per_minute: self
                    .auth_ip_per_minute
                    .unwrap_or(DEFAULT_AUTH_IP_PER_MINUTE),
                burst: self.auth_ip_burst.unwrap_or(DEFAULT_AUTH_IP_BURST),
            },
            auth_username_rule: RateRule {
                per_minute: self
                    .auth_username_per_minute
                    .unwrap_or(DEFAULT_AUTH_USERNAME_PER_MINUTE),
                burst: self
                    .auth_username_burst
                    .unwrap_or(DEFAULT_AUTH_USERNAME_BURST),
            },
            trusted_proxies: self
                .trusted_proxies
                .unwrap_or_default()
                .iter()
                .map(|text| parse_proxy(text))
                .collect::<Result<_, _>>()?,
            stream: StreamLimits {
                max_frame_bytes: self
                    .ws_max_frame_bytes
                    .unwrap_or(DEFAULT_WS_MAX_FRAME_BYTES),
                producer_rate_per_sec: self
                    .producer_rate_per_sec
                    .unwrap_or(DEFAULT_PRODUCER_RATE_PER_SEC),
                producer_burst: self.producer_burst.unwrap_or(DEFAULT_PRODUCER_BURST),
                buffer_messages: self
                    .consumer_buffer_messages
                    .unwrap_or(DEFAULT_CONSUMER_BUFFER_MESSAGES),
                buffer_bytes: self
                    .consumer_buffer_bytes
                    .unwrap_or(DEFAULT_CONSUMER_BUFFER_BYTES),
                ping_interval: Duration::from_secs(
                    self.ws_ping_interval_secs
                        .unwrap_or(DEFAULT_WS_PING_INTERVAL_SECS),
                ),
                idle_timeout: Duration::from_secs(
                    self.ws_idle_timeout_secs
                        .unwrap_or(DEFAULT_WS_IDLE_TIMEOUT_SECS),
                ),
                token_expiry: self.ws_token_expiry.unwrap_or_default(),
            },
        };
        settings.validate()?;
        Ok(settings)
    }
}

impl ServeOptions {
    fn pnode_settings(&self) -> Result<PnodeSettings, ConfigError> {
        let invalid = |name, reason: String| ConfigError::Invalid { name, reason };
        // Off unless named: a server never reaches out to third parties because an option was
        // left out.
        let seeds = self
            .pnode_seeds
            .iter()
            .flatten()
            .map(|text| text.trim())
            .filter(|text| !text.is_empty())
            .flat_map(|text| match text {
                XANDEUM_PUBLIC_PRESET => XANDEUM_PUBLIC_SEEDS.to_vec(),
                seed => vec![seed],
            })
            .map(|text| Seed::parse(text).map_err(|reason| invalid("pnode_seeds", reason)))
            .collect::<Result<Vec<_>, _>>()?;
        let interval = self.pnode_interval.unwrap_or(DEFAULT_PNODE_INTERVAL_SECS);
        if interval == 0 {
            return Err(invalid(
                "pnode_interval",
                "must be at least 1 second".into(),
            ));
        }
        let timeout = self
            .pnode_rpc_timeout_ms
            .unwrap_or(DEFAULT_PNODE_RPC_TIMEOUT_MS);
        let max_answer_bytes = self
            .pnode_max_answer_bytes
            .unwrap_or(DEFAULT_PNODE_MAX_ANSWER_BYTES);
        let retention_days = self
            .pnode_retention_days
            .unwrap_or(DEFAULT_PNODE_RETENTION_DAYS);
        if timeout == 0 || max_answer_bytes == 0 || retention_days == 0 {
            return Err(invalid(
                "pnode limits",
                "the pRPC timeout, answer size and retention must be positive".into(),
            ));
        }
        let analytics = match &self.pnode_scoring_file {
            Some(path) => AnalyticsConfig::from_file(path)
                .map_err(|reason| invalid("pnode_scoring_file", reason))?,
            None => AnalyticsConfig::default(),
        };
        Ok(PnodeSettings {
            seeds,
            interval: Duration::from_secs(interval),
            rpc_timeout: Duration::from_millis(timeout),
            max_answer_bytes,
            latest_version: self
                .pnode_latest_version
                .clone()
                .filter(|version| !version.trim().is_empty()),
            retention: Duration::from_secs(retention_days * 86_400),
            analytics,
            api_rate_per_sec: self
                .pnode_api_rate_per_sec
                .unwrap_or(DEFAULT_PNODE_API_RATE_PER_SEC),
            api_burst: self.pnode_api_burst.unwrap_or(DEFAULT_PNODE_API_BURST),
        })
    }
}

impl Settings {
    /// The built-in defaults, as `nodegrid serve` uses them with no option given.
    pub fn defaults() -> Result<Settings, ConfigError> {
        ServeOptions::default().into_settings()
    }

    /// The identity part of the settings. Without a configured secret, development uses a
    /// fixed one (and says so); production never gets here without a strong secret.
    pub fn identity(&self) -> IdentitySettings {
        IdentitySettings {
            jwt_secret: self
                .jwt_secret
                .clone()
                .unwrap_or_else(|| SecretString::from(DEVELOPMENT_JWT_SECRET)),
            access_ttl: self.access_token_ttl,
            refresh_ttl: self.refresh_token_ttl,
            password_cost: self.password_cost,
            password_min_length: self.password_min_length,
            ip_rule: self.auth_ip_rule,
            username_rule: self.auth_username_rule,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        validate_redis_prefix(&self.redis_prefix)?;
        if self.environment == Environment::Production
            && !self.jwt_secret.as_ref().is_some_and(is_strong_secret)
        {
            return Err(ConfigError::Invalid {
                name: "jwt_secret",
                reason: format!(
                    "production needs NODEGRID_JWT_SECRET of at least {MIN_PRODUCTION_SECRET_BYTES} bytes, not the development default"
                ),
            });
        }
        if self.access_token_ttl.is_zero() || self.refresh_token_ttl.is_zero() {
            return Err(ConfigError::Invalid {
                name: "access_token_ttl_secs",
                reason: "token lifetimes must be at least 1 second".into(),
            });
        }
        let stream = &self.stream;
        if stream.max_frame_bytes == 0
            || stream.producer_rate_per_sec == 0
            || stream.producer_burst == 0
            || stream.buffer_messages == 0
            || stream.buffer_bytes == 0
            || stream.ping_interval.is_zero()
            || stream.idle_timeout <= stream.ping_interval
        {
            return Err(ConfigError::Invalid {
                name: "ws limits",
                reason: "stream limits must be positive and the idle timeout longer than the ping interval".into(),
            });
        }
        if self.admin_username.is_some() != self.admin_password.is_some() {
            return Err(ConfigError::Invalid {
                name: "admin_username",
                reason: "NODEGRID_ADMIN_USERNAME and NODEGRID_ADMIN_PASSWORD go together".into(),
            });
        }
        if !(1..=crate::identity::MAX_PASSWORD_CHARS).contains(&self.password_min_length) {
            return Err(ConfigError::Invalid {
                name: "password_min_length",
                reason: format!(
                    "must be 1 to {} characters",
                    crate::identity::MAX_PASSWORD_CHARS
                ),
            });
        }
        if self.database_pool_size == 0 {
            return Err(ConfigError::Invalid {
                name: "database_pool_size",
                reason: "must be at least 1".into(),
            });
        }
        if self.http_workers == Some(0) {
            return Err(ConfigError::Invalid {
                name: "http_workers",
                reason: "must be at least 1".into(),
            });
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::Invalid {
                name: "max_body_bytes",
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// A trusted proxy: an IP address or a CIDR network.
fn parse_proxy(text: &str) -> Result<IpNet, ConfigError> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| ConfigError::Invalid {
            name: "trusted_proxies",
            reason: format!("{text:?} is neither an IP address nor a CIDR network"),
        })
}

/// A prefix is 1 to 64 characters of `[A-Za-z0-9_.-]`, so that it cannot collide with the `:`
/// that separates the parts of a key.
fn validate_redis_prefix(prefix: &str) -> Result<(), ConfigError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if prefix.is_empty() || prefix.len() > 64 || !prefix.chars().all(allowed) {
        return Err(ConfigError::Invalid {
            name: "redis_prefix",
            reason: format!("{prefix:?} must be 1 to 64 characters of [A-Za-z0-9_.-]"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_contract() {
        let settings = Settings::defaults().unwrap();
        assert_eq!(settings.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(
            settings.database_url,
            "postgres://postgres@127.0.0.1:5432/nodegrid"
        );
        assert_eq!(settings.redis_url, "redis://127.0.0.1:6379");
        assert_eq!(settings.redis_prefix, "nodegrid");
        assert_eq!(settings.log_format, LogFormat::Human);
    }

    #[test]
    fn pnode_polling_is_off_by_default_and_the_public_seeds_are_a_preset() {
        let settings = Settings::defaults().unwrap();
        assert!(settings.pnodes.seeds.is_empty());
        let public = ServeOptions {
            pnode_seeds: Some(vec!["xandeum-public".into(), "127.0.0.1:7000".into()]),
            ..ServeOptions::default()
        }
        .into_settings()
        .unwrap();
        assert_eq!(public.pnodes.seeds.len(), 10);
        assert_eq!(
            public.pnodes.seeds[0].rpc_url(),
            format!("http://{}:6000/rpc", XANDEUM_PUBLIC_SEEDS[0])
        );
        assert_eq!(
            public.pnodes.seeds[9].rpc_url(),
            "http://127.0.0.1:7000/rpc"
        );
        assert_eq!(settings.pnodes.interval, Duration::from_secs(60));
        assert_eq!(settings.pnodes.rpc_timeout, Duration::from_secs(3));
        assert_eq!(settings.pnodes.latest_version, None);
        let off = ServeOptions {
            pnode_seeds: Some(vec![String::new()]),
            pnode_interval: Some(1),
            pnode_latest_version: Some("0.8.0".into()),
            ..ServeOptions::default()
        }
        .into_settings()
        .unwrap();
        assert!(off.pnodes.seeds.is_empty());
        assert_eq!(off.pnodes.interval, Duration::from_secs(1));
        assert_eq!(off.pnodes.latest_version.as_deref(), Some("0.8.0"));
        for bad in [
            ServeOptions {
                pnode_interval: Some(0),
                ..ServeOptions::default()
            },
            ServeOptions {
                pnode_seeds: Some(vec!["10.0.0.1:http".into()]),
                ..ServeOptions::default()
            },
            ServeOptions {
                pnode_rpc_timeout_ms: Some(0),
                ..ServeOptions::default()
            },
        ] {
            assert!(bad.into_settings().is_err());
        }
    }

    #[test]
    fn a_scoring_file_changes_weights_and_thresholds_and_refuses_unknown_keys() {
        let dir = std::env::temp_dir().join(format!("nodegrid-scoring-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("scoring.toml");
        std::fs::write(
            &good,
            "[scoring]\nuptime_full_days = 10.0\n[alerts]\nstorage_critical_percent = 90.0\n",
        )
        .unwrap();
        let settings = ServeOptions {
            pnode_scoring_file: Some(good),
            ..ServeOptions::default()
        }
        .into_settings()
        .unwrap();
        assert_eq!(settings.pnodes.analytics.scoring.uptime_full_days, 10.0);
        assert_eq!(settings.pnodes.analytics.scoring.trust_uptime_points, 40.0);
        assert_eq!(
            settings.pnodes.analytics.alerts.storage_critical_percent,
            90.0
        );
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[scoring]\nuptime_days = 10.0\n").unwrap();
        assert!(
            ServeOptions {
                pnode_scoring_file: Some(bad),
                ..ServeOptions::default()
            }
            .into_settings()
            .is_err()
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn flags_win_over_file_and_file_over_defaults() {
        let dir = std::env::temp_dir().join(format!("nodegrid-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("nodegrid.toml");
        std::fs::write(
            &path,
            "redis_prefix = \"from-file\"\nhttp_addr = \"127.0.0.1:9000\"\nlog_format = \"json\"\n",
        )
        .unwrap();
        let options = ServeOptions {
            config: Some(path),
            http_addr: Some("127.0.0.1:9100".parse().unwrap()),
            ..ServeOptions::default()
        };
        let settings = options.resolve().unwrap();
        assert_eq!(settings.http_addr.to_string(), "127.0.0.1:9100");
        assert_eq!(settings.redis_prefix, "from-file");
        assert_eq!(settings.log_format, LogFormat::Json);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn production_refuses_a_missing_or_weak_jwt_secret() {
        for secret in [None, Some("short"), Some(DEVELOPMENT_JWT_SECRET)] {
            let options = ServeOptions {
                environment: Some(Environment::Production),
                jwt_secret: secret.map(SecretString::from),
                ..ServeOptions::default()
            };
            assert!(
                matches!(
                    options.resolve(),
                    Err(ConfigError::Invalid {
                        name: "jwt_secret",
                        ..
                    })
                ),
                "{secret:?} accepted"
            );
        }
        let options = ServeOptions {
            environment: Some(Environment::Production),
            jwt_secret: Some(SecretString::from("0123456789abcdef0123456789abcdef")),
            ..ServeOptions::default()
        };
        assert!(options.resolve().is_ok());
    }

    #[test]
    fn trusted_proxies_take_addresses_and_networks() {
        let options = ServeOptions {
            trusted_proxies: Some(vec!["10.0.0.0/8".into(), "127.0.0.1".into()]),
            ..ServeOptions::default()
        };
        let settings = options.resolve().unwrap();
        assert_eq!(settings.trusted_proxies.len(), 2);
        let options = ServeOptions {
            trusted_proxies: Some(vec!["proxy.local".into()]),
            ..ServeOptions::default()
        };
        assert!(options.resolve().is_err());
    }

    #[test]
    fn unknown_file_keys_and_bad_prefixes_are_refused() {
        let dir = std::env::temp_dir().join(format!("nodegrid-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("nodegrid.toml");
        std::fs::write(&path, "http_adr = \"127.0.0.1:9000\"\n").unwrap();
        let options = ServeOptions {
            config: Some(path),
            ..ServeOptions::default()
        };
        assert!(matches!(
            options.resolve(),
            Err(ConfigError::ParseFile { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();

        let options = ServeOptions {
            redis_prefix: Some("bad:prefix".into()),
            ..ServeOptions::default()
        };
        assert!(matches!(
            options.resolve(),
            Err(ConfigError::Invalid {
                name: "redis_prefix",
                ..
            })
        ));
    }
}

//! Server settings.
//!
//! Every option is declared once, on [`ServeOptions`]: its flag, its environment variable
//! (`NODEGRID_…`), its default and its help. The optional TOML file given by `--config` is
//! layered in as clap defaults ([`layer_config_file`]), so the precedence is, highest first:
//! flag, environment variable, file, built-in default; a file key is the flag's name with `_`
//! for `-`, and an unknown key is an error. The README's option table is generated from the
//! same declarations ([`options_markdown`]) and a test keeps the two equal.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{ArgMatches, Args, Command, FromArgMatches, ValueEnum};
use ipnet::IpNet;
use secrecy::SecretString;
use serde::Deserialize;

use crate::identity::IdentitySettings;
use crate::identity::passwords::PasswordCost;
use crate::identity::tokens::{
    DEVELOPMENT_JWT_SECRET, JwtKey, MIN_PRODUCTION_SECRET_BYTES, is_strong_secret,
};
use crate::pnodes::{AnalyticsConfig, PnodeSettings, Seed, XANDEUM_PUBLIC_SEEDS};
use crate::ratelimit::RateRule;

/// The `--pnode-seeds` preset that names the public Xandeum IP nodes.
pub const XANDEUM_PUBLIC_PRESET: &str = "xandeum-public";

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
    /// Most sockets one user may have open on one instance (0: no limit).
    pub max_sockets_per_user: usize,
}

/// The limits of the HTTP boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    /// 0: no limit.
    pub max_connections_per_ip: usize,
    /// Requests per second per client IP to paths no route matches (0: off), and the burst.
    pub not_found_per_sec: u32,
    pub not_found_burst: u32,
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

/// The options of `nodegrid serve`, `nodegrid migrate` and `nodegrid admin create-user`: the
/// one declaration of each (see the module documentation). Options without a value have no
/// built-in default; their help says what happens then.
#[derive(Debug, Clone, Args)]
pub struct ServeOptions {
    /// TOML file with any of these options (keys as the long flag names, with `_` for `-`).
    #[arg(long, env = "NODEGRID_CONFIG")]
    pub config: Option<PathBuf>,

    /// HTTP listen address; port 0 picks a free port.
    #[arg(long, env = "NODEGRID_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// HTTP worker threads [default: one per core].
    #[arg(long, env = "NODEGRID_HTTP_WORKERS")]
    pub http_workers: Option<usize>,

    /// Largest request body; larger → 413 `payload_too_large`.
    #[arg(long, env = "NODEGRID_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,

    /// Seconds a request body may take to arrive; slower → 408 `request_timeout`, and the
    /// connection closes.
    #[arg(long, env = "NODEGRID_BODY_TIMEOUT_SECS", default_value_t = 10)]
    pub body_timeout_secs: u64,

    /// Open connections per client IP (0: no limit; trusted proxies are not counted); past it
    /// 429 `too_many_connections` and the connection closes.
    #[arg(
        long,
        env = "NODEGRID_MAX_CONNECTIONS_PER_IP",
        default_value_t = 10_000
    )]
    pub max_connections_per_ip: usize,

    /// Requests per second per client IP that match no route, on each instance (0: off); past
    /// it 429 `rate_limited`.
    #[arg(long, env = "NODEGRID_NOT_FOUND_RATE_PER_SEC", default_value_t = 5)]
    pub not_found_rate_per_sec: u32,

    /// Burst of the same.
    #[arg(long, env = "NODEGRID_NOT_FOUND_BURST", default_value_t = 50)]
    pub not_found_burst: u32,

    /// A separate listener for `/metrics` (the usual Prometheus practice); when set, the API
    /// port does not serve `/metrics` [default: none: `/metrics` on the API port].
    #[arg(long, env = "NODEGRID_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Postgres.
    #[arg(
        long,
        env = "NODEGRID_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/nodegrid"
    )]
    pub database_url: String,

    /// Pooled Postgres connections.
    #[arg(long, env = "NODEGRID_DATABASE_POOL_SIZE", default_value_t = 16)]
    pub database_pool_size: usize,

    /// Redis.
    #[arg(
        long,
        env = "NODEGRID_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,

    /// Prefix of every Redis key and channel (`[A-Za-z0-9_.-]`, ≤ 64).
    #[arg(long, env = "NODEGRID_REDIS_PREFIX", default_value = "nodegrid")]
    pub redis_prefix: String,

    /// Key that signs access tokens (prefer the variable to the flag, which the process list
    /// shows) [default: the development secret].
    #[arg(long, env = "NODEGRID_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<SecretString>,

    /// Key id (`kid`) of `--jwt-secret`, written in the header of every token it signs.
    #[arg(long, env = "NODEGRID_JWT_KEY_ID", default_value = "k1")]
    pub jwt_key_id: String,

    /// Earlier signing keys still accepted, comma-separated `kid:secret`, so that the secret
    /// rotates without logging everyone out [default: none].
    #[arg(
        long,
        env = "NODEGRID_JWT_PREVIOUS_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub jwt_previous_keys: Vec<SecretString>,

    /// Days the audit log keeps an entry; one instance prunes older ones hourly.
    #[arg(long, env = "NODEGRID_AUDIT_RETENTION_DAYS", default_value_t = 365)]
    pub audit_retention_days: u64,

    /// Admin created at start-up if missing (an existing one keeps its password) [default:
    /// none].
    #[arg(long, env = "NODEGRID_ADMIN_USERNAME")]
    pub admin_username: Option<String>,

    /// Its password (both or neither) [default: none].
    #[arg(long, env = "NODEGRID_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<SecretString>,

    /// `development` or `production` (refuses a weak JWT secret).
    #[arg(
        long,
        env = "NODEGRID_ENVIRONMENT",
        value_enum,
        default_value = "development"
    )]
    pub environment: Environment,

    /// Access token lifetime, in seconds.
    #[arg(long, env = "NODEGRID_ACCESS_TOKEN_TTL_SECS", default_value_t = 3_600)]
    pub access_token_ttl_secs: u64,

    /// Refresh token lifetime, in seconds (7 days).
    #[arg(
        long,
        env = "NODEGRID_REFRESH_TOKEN_TTL_SECS",
        default_value_t = 604_800
    )]
    pub refresh_token_ttl_secs: u64,

    /// Argon2id memory cost, in KiB.
    #[arg(long, env = "NODEGRID_PASSWORD_MEMORY_KIB", default_value_t = 19_456)]
    pub password_memory_kib: u32,

    /// Argon2id passes.
    #[arg(long, env = "NODEGRID_PASSWORD_ITERATIONS", default_value_t = 2)]
    pub password_iterations: u32,

    /// Shortest password accepted when one is set (registration, admin creation); existing
    /// passwords are not checked.
    #[arg(long, env = "NODEGRID_PASSWORD_MIN_LENGTH", default_value_t = 8)]
    pub password_min_length: usize,

    /// Login/register/refresh requests per client IP per minute (0: off).
    #[arg(long, env = "NODEGRID_AUTH_IP_PER_MINUTE", default_value_t = 60)]
    pub auth_ip_per_minute: u32,

    /// Burst of the same.
    #[arg(long, env = "NODEGRID_AUTH_IP_BURST", default_value_t = 30)]
    pub auth_ip_burst: u32,

    /// Login/register requests per username per minute (0: off).
    #[arg(long, env = "NODEGRID_AUTH_USERNAME_PER_MINUTE", default_value_t = 10)]
    pub auth_username_per_minute: u32,

    /// Burst of the same.
    #[arg(long, env = "NODEGRID_AUTH_USERNAME_BURST", default_value_t = 10)]
    pub auth_username_burst: u32,

    /// Comma-separated IPs/CIDRs whose `X-Forwarded-For` is believed [default: none].
    #[arg(long, env = "NODEGRID_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,

    /// Largest WebSocket frame accepted.
    #[arg(long, env = "NODEGRID_WS_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub ws_max_frame_bytes: usize,

    /// Data messages per second per producer connection; past it `rate_limited` with
    /// `retry_after_ms`, the socket stays open.
    #[arg(long, env = "NODEGRID_PRODUCER_RATE_PER_SEC", default_value_t = 100)]
    pub producer_rate_per_sec: u32,

    /// Burst of the same.
    #[arg(long, env = "NODEGRID_PRODUCER_BURST", default_value_t = 200)]
    pub producer_burst: u32,

    /// Frames a socket may have queued before 4008 `slow_consumer` (the socket's only outbound
    /// buffer).
    #[arg(
        long,
        env = "NODEGRID_CONSUMER_BUFFER_MESSAGES",
        default_value_t = 1_000
    )]
    pub consumer_buffer_messages: usize,

    /// Bytes of the same.
    #[arg(long, env = "NODEGRID_CONSUMER_BUFFER_BYTES", default_value_t = 1024 * 1024)]
    pub consumer_buffer_bytes: u64,

    /// Seconds between server pings.
    #[arg(long, env = "NODEGRID_WS_PING_INTERVAL_SECS", default_value_t = 25)]
    pub ws_ping_interval_secs: u64,

    /// Seconds of silence before 4000 `idle_timeout`.
    #[arg(long, env = "NODEGRID_WS_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub ws_idle_timeout_secs: u64,

    /// `refresh`: a socket closes with 4001 `token_expired` at its token's expiry unless a
    /// `refresh` frame brought a newer token; `connect-only`: checked at connect only.
    #[arg(
        long,
        env = "NODEGRID_WS_TOKEN_EXPIRY",
        value_enum,
        default_value = "refresh"
    )]
    pub ws_token_expiry: WsTokenExpiry,

    /// Sockets one user may have open on one instance (0: no limit); past it 429
    /// `too_many_connections` before the upgrade.
    #[arg(long, env = "NODEGRID_MAX_SOCKETS_PER_USER", default_value_t = 100)]
    pub max_sockets_per_user: usize,

    /// `human` or `json` (one object per line).
    #[arg(long, env = "NODEGRID_LOG_FORMAT", value_enum, default_value = "human")]
    pub log_format: LogFormat,

    /// Log filter, tracing `EnvFilter` syntax (`info,nodegrid_actors=debug`).
    #[arg(long, env = "NODEGRID_LOG", default_value = "info")]
    pub log: String,

    /// Seconds in-flight requests get after SIGTERM/SIGINT.
    #[arg(long, env = "NODEGRID_SHUTDOWN_TIMEOUT_SECS", default_value_t = 30)]
    pub shutdown_timeout_secs: u64,

    /// Milliseconds each `/ready` check may take.
    #[arg(long, env = "NODEGRID_READY_TIMEOUT_MS", default_value_t = 1_000)]
    pub ready_timeout_ms: u64,

    /// pRPC seeds, comma-separated `host[:port]` (port 6000 when omitted), or the preset
    /// `xandeum-public` (the nine public Xandeum IP nodes) [default: none: polling is off].
    #[arg(long, env = "NODEGRID_PNODE_SEEDS", value_delimiter = ',')]
    pub pnode_seeds: Vec<String>,

    /// Seconds between polling cycles; nodes unseen for twice this are offline.
    #[arg(long, env = "NODEGRID_PNODE_INTERVAL", default_value_t = 60)]
    pub pnode_interval: u64,

    /// Milliseconds each pRPC call may take.
    #[arg(long, env = "NODEGRID_PNODE_RPC_TIMEOUT_MS", default_value_t = 3_000)]
    pub pnode_rpc_timeout_ms: u64,

    /// Largest pRPC answer read; larger ones fail the call (`too_large`).
    #[arg(long, env = "NODEGRID_PNODE_MAX_ANSWER_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub pnode_max_answer_bytes: usize,

    /// The version that counts as latest for scores and alerts [default: the most common among
    /// online nodes].
    #[arg(long, env = "NODEGRID_PNODE_LATEST_VERSION")]
    pub pnode_latest_version: Option<String>,

    /// Days of network and per-node history kept.
    #[arg(long, env = "NODEGRID_PNODE_RETENTION_DAYS", default_value_t = 30)]
    pub pnode_retention_days: u64,

    /// `/api/xandeum` requests per second per client IP, counted by each instance in memory (0:
    /// off); past it 429 `rate_limited` with `Retry-After`.
    #[arg(long, env = "NODEGRID_PNODE_API_RATE_PER_SEC", default_value_t = 50)]
    pub pnode_api_rate_per_sec: u32,

    /// Burst of the same.
    #[arg(long, env = "NODEGRID_PNODE_API_BURST", default_value_t = 100)]
    pub pnode_api_burst: u32,

    /// TOML with `[scoring]` weights and `[alerts]` thresholds (keys in
    /// `services/src/pnodes/scoring.rs` and `alerts.rs`) [default: the seed's values].
    #[arg(long, env = "NODEGRID_PNODE_SCORING_FILE")]
    pub pnode_scoring_file: Option<PathBuf>,
}

/// Resolved settings: every option has its value, in the types the code uses.
#[derive(Debug, Clone)]
pub struct Settings {
    pub http_addr: SocketAddr,
    pub http_workers: Option<usize>,
    pub max_body_bytes: usize,
    pub http_limits: HttpLimits,
    pub metrics_addr: Option<SocketAddr>,
    pub database_url: String,
    pub database_pool_size: usize,
    pub redis_url: String,
    pub redis_prefix: String,
    pub jwt_secret: Option<SecretString>,
    pub jwt_key_id: String,
    pub jwt_previous_keys: Vec<JwtKey>,
    pub audit_retention: Duration,
    /// How often the leader does its hourly chores (audit pruning). Not an option: tests
    /// shorten it.
    pub housekeeping_interval: Duration,
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
    #[error("config file {path} is not valid: {reason}")]
    ParseFile { path: PathBuf, reason: String },
    #[error("invalid setting {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("{0}")]
    Options(String),
}

impl ServeOptions {
    /// The options as clap parses them from `args` (the first is the program name), with the
    /// environment or without it.
    pub fn parse_from<I, T>(args: I, use_environment: bool) -> Result<ServeOptions, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut command = ServeOptions::augment_args(Command::new("nodegrid"));
        if !use_environment {
            command = command.mut_args(|arg| arg.env(None));
        }
        let matches = command
            .try_get_matches_from(args)
            .map_err(|error| ConfigError::Options(error.to_string()))?;
        ServeOptions::from_arg_matches(&matches)
            .map_err(|error| ConfigError::Options(error.to_string()))
    }

    /// Resolves the options into settings, validated.
    pub fn resolve(self) -> Result<Settings, ConfigError> {
        let pnodes = self.pnode_settings()?;
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .filter(|text| !text.trim().is_empty())
            .map(|text| parse_proxy(text))
            .collect::<Result<_, _>>()?;
        let settings = Settings {
            pnodes,
            trusted_proxies,
            http_addr: self.http_addr,
            http_workers: self.http_workers,
            max_body_bytes: self.max_body_bytes,
            http_limits: HttpLimits {
                max_body_bytes: self.max_body_bytes,
                body_timeout: Duration::from_secs(self.body_timeout_secs),
                max_connections_per_ip: self.max_connections_per_ip,
                not_found_per_sec: self.not_found_rate_per_sec,
                not_found_burst: self.not_found_burst,
            },
            metrics_addr: self.metrics_addr,
            database_url: self.database_url,
            database_pool_size: self.database_pool_size,
            redis_url: self.redis_url,
            redis_prefix: self.redis_prefix,
            jwt_secret: self.jwt_secret,
            jwt_key_id: self.jwt_key_id,
            jwt_previous_keys: self
                .jwt_previous_keys
                .iter()
                .map(|text| {
                    JwtKey::parse(text).map_err(|reason| ConfigError::Invalid {
                        name: "jwt_previous_keys",
                        reason,
                    })
                })
                .collect::<Result<_, _>>()?,
            audit_retention: Duration::from_secs(self.audit_retention_days.saturating_mul(86_400)),
            housekeeping_interval: Duration::from_secs(3_600),
            admin_username: self.admin_username,
            admin_password: self.admin_password,
            environment: self.environment,
            log_format: self.log_format,
            log: self.log,
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs),
            ready_timeout: Duration::from_millis(self.ready_timeout_ms),
            access_token_ttl: Duration::from_secs(self.access_token_ttl_secs),
            refresh_token_ttl: Duration::from_secs(self.refresh_token_ttl_secs),
            password_cost: PasswordCost {
                memory_kib: self.password_memory_kib,
                iterations: self.password_iterations,
            },
            password_min_length: self.password_min_length,
            auth_ip_rule: RateRule {
                per_minute: self.auth_ip_per_minute,
                burst: self.auth_ip_burst,
            },
            auth_username_rule: RateRule {
                per_minute: self.auth_username_per_minute,
                burst: self.auth_username_burst,
            },
            stream: StreamLimits {
                max_frame_bytes: self.ws_max_frame_bytes,
                producer_rate_per_sec: self.producer_rate_per_sec,
                producer_burst: self.producer_burst,
                buffer_messages: self.consumer_buffer_messages,
                buffer_bytes: self.consumer_buffer_bytes,
                ping_interval: Duration::from_secs(self.ws_ping_interval_secs),
                idle_timeout: Duration::from_secs(self.ws_idle_timeout_secs),
                token_expiry: self.ws_token_expiry,
                max_sockets_per_user: self.max_sockets_per_user,
            },
        };
        settings.validate()?;
        Ok(settings)
    }

    fn pnode_settings(&self) -> Result<PnodeSettings, ConfigError> {
        let invalid = |name, reason: String| ConfigError::Invalid { name, reason };
        // Off unless named: a server never reaches out to third parties because an option was
        // left out.
        let seeds = self
            .pnode_seeds
            .iter()
            .map(|text| text.trim())
            .filter(|text| !text.is_empty())
            .flat_map(|text| match text {
                XANDEUM_PUBLIC_PRESET => XANDEUM_PUBLIC_SEEDS.to_vec(),
                seed => vec![seed],
            })
            .map(|text| Seed::parse(text).map_err(|reason| invalid("pnode_seeds", reason)))
            .collect::<Result<Vec<_>, _>>()?;
        if self.pnode_interval == 0 {
            return Err(invalid(
                "pnode_interval",
                "must be at least 1 second".into(),
            ));
        }
        if self.pnode_rpc_timeout_ms == 0
            || self.pnode_max_answer_bytes == 0
            || self.pnode_retention_days == 0
        {
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
            interval: Duration::from_secs(self.pnode_interval),
            rpc_timeout: Duration::from_millis(self.pnode_rpc_timeout_ms),
            max_answer_bytes: self.pnode_max_answer_bytes,
            latest_version: self
                .pnode_latest_version
                .clone()
                .filter(|version| !version.trim().is_empty()),
            retention: Duration::from_secs(self.pnode_retention_days * 86_400),
            analytics,
            api_rate_per_sec: self.pnode_api_rate_per_sec,
            api_burst: self.pnode_api_burst,
        })
    }
}

/// Layers the TOML file named by `--config` (or `NODEGRID_CONFIG`) into `command` as the
/// defaults of the subcommand that takes [`ServeOptions`]: a flag or an environment variable
/// still wins, and a built-in default gives way. The file is found with a first parse of the
/// command line; when that parse fails, `command` is returned as it is, so that the real parse
/// reports the error.
pub fn layer_config_file(command: Command) -> Result<Command, ConfigError> {
    let Ok(matches) = command.clone().try_get_matches() else {
        return Ok(command);
    };
    let mut path = Vec::new();
    let mut current: &ArgMatches = &matches;
    let mut file = None;
    while let Some((name, sub_matches)) = current.subcommand() {
        path.push(name.to_owned());
        if let Ok(Some(config)) = sub_matches.try_get_one::<PathBuf>("config") {
            file = Some(config.clone());
            break;
        }
        current = sub_matches;
    }
    let Some(file) = file else {
        return Ok(command);
    };
    let values = read_file(&file)?;
    Ok(mutate_path(command, &path, &|command| {
        file_defaults(command, &values)
    }))
}

/// Applies `change` to the subcommand at `path` (names from the root).
fn mutate_path(command: Command, path: &[String], change: &dyn Fn(Command) -> Command) -> Command {
    match path.split_first() {
        None => change(command),
        Some((first, rest)) => command.mut_subcommand(first, |sub| mutate_path(sub, rest, change)),
    }
}

/// The file's keys and their values as command-line text; unknown keys are errors.
fn read_file(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    let parse_error = |reason: String| ConfigError::ParseFile {
        path: path.to_path_buf(),
        reason,
    };
    let table: toml::Table =
        toml::from_str(&text).map_err(|error| parse_error(error.to_string()))?;
    let known = ServeOptions::augment_args(Command::new("nodegrid"));
    let mut values = Vec::with_capacity(table.len());
    for (key, value) in table {
        if key == "config"
            || !known
                .get_arguments()
                .any(|arg| arg.get_id() == key.as_str())
        {
            return Err(parse_error(format!("unknown key {key:?}")));
        }
        let text = match value {
            toml::Value::String(text) => text,
            toml::Value::Integer(number) => number.to_string(),
            toml::Value::Float(number) => number.to_string(),
            toml::Value::Boolean(flag) => flag.to_string(),
            toml::Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    toml::Value::String(text) => Ok(text),
                    toml::Value::Integer(number) => Ok(number.to_string()),
                    other => Err(parse_error(format!(
                        "{key}: unexpected {}",
                        other.type_str()
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            other => {
                return Err(parse_error(format!(
                    "{key}: unexpected {}",
                    other.type_str()
                )));
            }
        };
        values.push((key, text));
    }
    Ok(values)
}

fn file_defaults(mut command: Command, values: &[(String, String)]) -> Command {
    for (key, value) in values {
        let value = value.clone();
        // File values may be secrets: never shown in `--help`.
        command = command.mut_arg(key, |arg| arg.default_value(value).hide_default_value(true));
    }
    command
}

/// The README's option table, generated from the declarations: flag, environment variable,
/// default, meaning.
pub fn options_markdown() -> String {
    let command = ServeOptions::augment_args(Command::new("nodegrid"));
    let mut table = String::from("| flag | environment | default | meaning |\n|---|---|---|---|\n");
    for arg in command.get_arguments() {
        let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) else {
            continue;
        };
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|help| help.to_string())
            .unwrap_or_default()
            .replace('\n', " ");
        let (meaning, described_default) = match help.rfind(" [default: ") {
            Some(start) if help.ends_with(']') => (
                help[..start].to_owned(),
                Some(help[start + 11..help.len() - 1].to_owned()),
            ),
            _ => (help.clone(), None),
        };
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|value| value.to_string_lossy().into_owned())
            .collect();
        let default = if !defaults.is_empty() {
            format!("`{}`", defaults.join(","))
        } else {
            described_default.unwrap_or_else(|| "none".to_owned())
        };
        table.push_str(&format!(
            "| `--{long}` | `{}` | {default} | {meaning} |\n",
            env.to_string_lossy()
        ));
    }
    table
}

impl Settings {
    /// The built-in defaults, as `nodegrid serve` uses them with no option given.
    /// (The environment is not read: these are the declared defaults.)
    pub fn defaults() -> Result<Settings, ConfigError> {
        ServeOptions::parse_from(["nodegrid"], false)?.resolve()
    }

    /// The identity part of the settings. Without a configured secret, development uses a
    /// fixed one (and says so); production never gets here without a strong secret.
    pub fn identity(&self) -> IdentitySettings {
        IdentitySettings {
            jwt_key: JwtKey {
                id: self.jwt_key_id.clone(),
                secret: self
                    .jwt_secret
                    .clone()
                    .unwrap_or_else(|| SecretString::from(DEVELOPMENT_JWT_SECRET)),
            },
            jwt_previous_keys: self.jwt_previous_keys.clone(),
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
        if self.http_limits.body_timeout.is_zero() || self.audit_retention.is_zero() {
            return Err(ConfigError::Invalid {
                name: "body_timeout_secs",
                reason: "the body timeout and the audit retention must be positive".into(),
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

    /// Options from flags alone (no environment).
    fn options(args: &[&str]) -> ServeOptions {
        ServeOptions::parse_from(
            std::iter::once("nodegrid").chain(args.iter().copied()),
            false,
        )
        .unwrap()
    }

    fn resolved(args: &[&str]) -> Result<Settings, ConfigError> {
        options(args).resolve()
    }

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
        assert_eq!(settings.password_min_length, 8);
        assert_eq!(settings.stream.buffer_messages, 1_000);
        assert_eq!(settings.stream.token_expiry, WsTokenExpiry::Refresh);
        assert_eq!(settings.password_cost, PasswordCost::default());
    }

    #[test]
    fn pnode_polling_is_off_by_default_and_the_public_seeds_are_a_preset() {
        let settings = Settings::defaults().unwrap();
        assert!(settings.pnodes.seeds.is_empty());
        let public = resolved(&["--pnode-seeds", "xandeum-public,127.0.0.1:7000"]).unwrap();
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
        let off = resolved(&[
            "--pnode-seeds",
            "",
            "--pnode-interval",
            "1",
            "--pnode-latest-version",
            "0.8.0",
        ])
        .unwrap();
        assert!(off.pnodes.seeds.is_empty());
        assert_eq!(off.pnodes.interval, Duration::from_secs(1));
        assert_eq!(off.pnodes.latest_version.as_deref(), Some("0.8.0"));
        for bad in [
            &["--pnode-interval", "0"][..],
            &["--pnode-seeds", "10.0.0.1:http"],
            &["--pnode-rpc-timeout-ms", "0"],
        ] {
            assert!(resolved(bad).is_err(), "{bad:?}");
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
        let settings = resolved(&["--pnode-scoring-file", good.to_str().unwrap()]).unwrap();
        assert_eq!(settings.pnodes.analytics.scoring.uptime_full_days, 10.0);
        assert_eq!(settings.pnodes.analytics.scoring.trust_uptime_points, 40.0);
        assert_eq!(
            settings.pnodes.analytics.alerts.storage_critical_percent,
            90.0
        );
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[scoring]\nuptime_days = 10.0\n").unwrap();
        assert!(
            super::ServeOptions::parse_from(
                ["nodegrid", "--pnode-scoring-file", bad.to_str().unwrap()],
                false
            )
            .unwrap()
            .resolve()
            .is_err()
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A command with `serve` taking the options, as the binary has.
    fn cli() -> Command {
        Command::new("nodegrid").subcommand(ServeOptions::augment_args(Command::new("serve")))
    }

    fn serve_options(command: Command, args: &[&str]) -> ServeOptions {
        let matches = command
            .mut_subcommand("serve", |serve| serve.mut_args(|arg| arg.env(None)))
            .try_get_matches_from(args)
            .unwrap();
        let (_, serve) = matches.subcommand().unwrap();
        ServeOptions::from_arg_matches(serve).unwrap()
    }

    #[test]
    fn flags_win_over_file_and_file_over_defaults() {
        let dir = std::env::temp_dir().join(format!("nodegrid-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("nodegrid.toml");
        std::fs::write(
            &path,
            "redis_prefix = \"from-file\"\nhttp_addr = \"127.0.0.1:9000\"\nlog_format = \"json\"\ntrusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\"]\ndatabase_pool_size = 3\n",
        )
        .unwrap();
        let path = path.to_str().unwrap();
        let values = read_file(Path::new(path)).unwrap();
        let args = [
            "nodegrid",
            "serve",
            "--config",
            path,
            "--http-addr",
            "127.0.0.1:9100",
        ];
        let command = mutate_path(cli(), &["serve".to_owned()], &|command| {
            file_defaults(command, &values)
        });
        let settings = serve_options(command, &args).resolve().unwrap();
        assert_eq!(settings.http_addr.to_string(), "127.0.0.1:9100");
        assert_eq!(settings.redis_prefix, "from-file");
        assert_eq!(settings.log_format, LogFormat::Json);
        assert_eq!(settings.trusted_proxies.len(), 2);
        assert_eq!(settings.database_pool_size, 3);
        assert_eq!(settings.redis_url, "redis://127.0.0.1:6379", "the default");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn production_refuses_a_missing_or_weak_jwt_secret() {
        for secret in [None, Some("short"), Some(DEVELOPMENT_JWT_SECRET)] {
            let mut args = vec!["--environment", "production"];
            if let Some(secret) = secret {
                args.extend(["--jwt-secret", secret]);
            }
            assert!(
                matches!(
                    resolved(&args),
                    Err(ConfigError::Invalid {
                        name: "jwt_secret",
                        ..
                    })
                ),
                "{secret:?} accepted"
            );
        }
        assert!(
            resolved(&[
                "--environment",
                "production",
                "--jwt-secret",
                "0123456789abcdef0123456789abcdef"
            ])
            .is_ok()
        );
    }

    #[test]
    fn trusted_proxies_take_addresses_and_networks() {
        let settings_ok = resolved(&["--trusted-proxies", "10.0.0.0/8,127.0.0.1"]).unwrap();
        assert_eq!(settings_ok.trusted_proxies.len(), 2);
        assert!(resolved(&["--trusted-proxies", "proxy.local"]).is_err());
    }

    #[test]
    fn unknown_file_keys_and_bad_prefixes_are_refused() {
        let dir = std::env::temp_dir().join(format!("nodegrid-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("nodegrid.toml");
        std::fs::write(&path, "http_adr = \"127.0.0.1:9000\"\n").unwrap();
        assert!(matches!(
            read_file(&path),
            Err(ConfigError::ParseFile { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
        assert!(matches!(
            resolved(&["--redis-prefix", "bad:prefix"]),
            Err(ConfigError::Invalid {
                name: "redis_prefix",
                ..
            })
        ));
    }

    /// The README's option table is the declarations' table.
    #[test]
    fn the_readme_option_table_matches_the_declarations() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        let start =
            "<!-- options:start (generated from services/src/config.rs; a test checks it) -->\n";
        let end = "<!-- options:end -->";
        let from = readme
            .find(start)
            .expect("the README marks its option table")
            + start.len();
        let to = readme[from..].find(end).expect("the table's end mark") + from;
        let expected = options_markdown();
        assert!(
            readme[from..to] == expected,
            "README.md's option table differs from the declarations; replace it with:\n{expected}"
        );
    }
}

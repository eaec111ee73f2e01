//! The one declaration of every server option: its flag, environment variable, default and help
//! (clap derives all four from it), and the types of the options' values.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use secrecy::SecretString;
use serde::Deserialize;

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

    /// PEM certificate chain: the API port serves HTTPS and WSS (rustls), the files re-read
    /// when they change [default: none: plain HTTP].
    #[arg(long, env = "NODEGRID_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "NODEGRID_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// With TLS: TLS 1.3 only (what children require of their mother).
    #[arg(long, env = "NODEGRID_TLS13_ONLY", default_value_t = false, action = clap::ArgAction::Set)]
    pub tls13_only: bool,

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

    /// Messages each Redis subscriber connection holds for its readers (16–1,048,576); past
    /// it the oldest are dropped (counted in `nodegrid_bus_messages_lagged_total`) and
    /// consumers catch up from history.
    #[arg(
        long,
        env = "NODEGRID_REDIS_SUBSCRIBER_BUFFER",
        default_value_t = 16_384,
        value_parser = clap::value_parser!(u32).range(16..=1_048_576)
    )]
    pub redis_subscriber_buffer: u32,

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

    /// Messages kept in each producer's history, in Redis, for consumers that resume (0: no
    /// history); an admin may set another figure per producer.
    #[arg(long, env = "NODEGRID_HISTORY_MESSAGES", default_value_t = 1_000)]
    pub history_messages: u32,

    /// Seconds a message stays in its producer's history.
    #[arg(long, env = "NODEGRID_HISTORY_AGE_SECS", default_value_t = 86_400)]
    pub history_age_secs: u64,

    /// `true`: every producer's accepted messages are stored in Postgres (an admin may turn it
    /// on or off per producer).
    #[arg(long, env = "NODEGRID_STORE_DATA", default_value_t = false, action = clap::ArgAction::Set)]
    pub store_data: bool,

    /// Days stored data is kept; one instance drops older days hourly.
    #[arg(long, env = "NODEGRID_DATA_RETENTION_DAYS", default_value_t = 30)]
    pub data_retention_days: u64,

    /// Messages waiting to be stored that each instance keeps while Postgres is slow or away;
    /// past it new ones are dropped, counted and logged.
    #[arg(
        long,
        env = "NODEGRID_DATA_WRITER_BUFFER_ROWS",
        default_value_t = 100_000
    )]
    pub data_writer_buffer_rows: usize,

    /// Most messages stored in one insert.
    #[arg(long, env = "NODEGRID_DATA_WRITER_BATCH_ROWS", default_value_t = 1_000)]
    pub data_writer_batch_rows: usize,

    /// Milliseconds a message waits at most before its batch is written.
    #[arg(long, env = "NODEGRID_DATA_WRITER_FLUSH_MS", default_value_t = 100)]
    pub data_writer_flush_ms: u64,

    /// Comma-separated origins (`https://dash.example.com`) whose pages may call the API and
    /// open sockets; `*` for any [default: none: only pages of the server's own origin].
    #[arg(long, env = "NODEGRID_CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Vec<String>,

    /// Secret key of the API tokens' hashes [default: derived from the JWT secret; set it
    /// before rotating that secret, or every API token stops working].
    #[arg(long, env = "NODEGRID_API_TOKEN_PEPPER", hide_env_values = true)]
    pub api_token_pepper: Option<SecretString>,

    /// Address of the gRPC API (the node registry's `NodeService`).
    #[arg(long, env = "NODEGRID_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,

    /// `true`: reading the node registry (list, get, watch) needs no token, as in the Node
    /// Status Platform; changes always need one.
    #[arg(long, env = "NODEGRID_REGISTRY_PUBLIC_READS", default_value_t = false, action = clap::ArgAction::Set)]
    pub registry_public_reads: bool,

    /// Registry events kept in Redis for watchers that resume (`since`); older ones get a
    /// `RESET`.
    #[arg(long, env = "NODEGRID_REGISTRY_EVENTS_KEPT", default_value_t = 100_000)]
    pub registry_events_kept: u64,

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

    /// Open `/api/xandeum/ws/pnodes` sockets per instance; past it the upgrade is refused with
    /// 429 `too_many_connections`.
    #[arg(long, env = "NODEGRID_PNODE_LIVE_SOCKETS", default_value_t = 10_000)]
    pub pnode_live_sockets: usize,

    /// Comma-separated hosts webhooks may be sent to (as written in their URLs), or `*` for
    /// any. Nothing leaves the machine until this names another host.
    #[arg(
        long,
        env = "NODEGRID_WEBHOOK_ALLOWED_HOSTS",
        value_delimiter = ',',
        default_value = "127.0.0.1,localhost,[::1]"
    )]
    pub webhook_allowed_hosts: Vec<String>,

    /// Milliseconds before a failed delivery's first retry; each further one doubles, up to an
    /// hour.
    #[arg(long, env = "NODEGRID_WEBHOOK_RETRY_BASE_MS", default_value_t = 10_000)]
    pub webhook_retry_base_ms: u64,

    /// Hours a delivery is retried before it is given up (`failed`).
    #[arg(long, env = "NODEGRID_WEBHOOK_RETRY_HOURS", default_value_t = 24)]
    pub webhook_retry_hours: u64,

    /// Milliseconds one delivery attempt may take (connect and answer).
    #[arg(long, env = "NODEGRID_WEBHOOK_TIMEOUT_MS", default_value_t = 10_000)]
    pub webhook_timeout_ms: u64,

    /// Delivery attempts in flight at once.
    #[arg(long, env = "NODEGRID_WEBHOOK_CONCURRENCY", default_value_t = 8)]
    pub webhook_concurrency: usize,

    /// Days delivered and failed deliveries are kept in the delivery log.
    #[arg(long, env = "NODEGRID_WEBHOOK_LOG_DAYS", default_value_t = 7)]
    pub webhook_log_days: u64,

    /// Seconds a child's lease is valid after the heartbeat it answers: a child cut off from
    /// the mother stops serving when its last lease expires.
    #[arg(long, env = "NODEGRID_CHILD_LEASE_TTL_SECS", default_value_t = 300)]
    pub child_lease_ttl_secs: u64,

    /// Seconds between a child's heartbeats; a child is late after 1.5 intervals without one
    /// and offline after 3.5.
    #[arg(
        long,
        env = "NODEGRID_CHILD_HEARTBEAT_INTERVAL_SECS",
        default_value_t = 30
    )]
    pub child_heartbeat_interval_secs: u64,

    /// Seconds a child request's timestamp may be off the mother's clock.
    #[arg(
        long,
        env = "NODEGRID_CHILD_MAX_CLOCK_SKEW_SECS",
        default_value_t = 300
    )]
    pub child_max_clock_skew_secs: u64,

    /// Secret the lease signing keys derive from [default: the API tokens' pepper, or the JWT
    /// secret].
    #[arg(long, env = "NODEGRID_CHILD_SIGNING_SECRET", hide_env_values = true)]
    pub child_signing_secret: Option<SecretString>,

    /// Version of the lease signing key: raise it to rotate; the previous key stays published
    /// for what it signed.
    #[arg(long, env = "NODEGRID_CHILD_SIGNING_KEY_VERSION", default_value_t = 1)]
    pub child_signing_key_version: u32,

    /// Requests per second each child may make on each instance.
    #[arg(long, env = "NODEGRID_CHILD_RATE_PER_SEC", default_value_t = 10)]
    pub child_rate_per_sec: u32,

    /// Requests a child may make at once above its rate.
    #[arg(long, env = "NODEGRID_CHILD_RATE_BURST", default_value_t = 50)]
    pub child_rate_burst: u32,

    /// Seconds a session lasts that a client's user gets by signing in through a child.
    #[arg(long, env = "NODEGRID_CHILD_SESSION_TTL_SECS", default_value_t = 3_600)]
    pub child_session_ttl_secs: u64,

    /// Share (0–1) of heartbeating children that, silent in one sweep, pauses late and
    /// offline marking (the mother is assumed cut off).
    #[arg(long, env = "NODEGRID_CHILD_DISRUPTION_SHARE", default_value_t = 0.5)]
    pub child_disruption_share: f64,

    /// Fewer heartbeating children than this never pause the marking.
    #[arg(
        long,
        env = "NODEGRID_CHILD_DISRUPTION_MIN_CHILDREN",
        default_value_t = 10
    )]
    pub child_disruption_min_children: u32,
}

//! Resolved settings: the options parsed, checked and turned into the types the code uses.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Command, FromArgMatches};
use ipnet::IpNet;
use secrecy::SecretString;

use super::error::ConfigError;
use super::options::{Environment, LogFormat, ServeOptions, WsTokenExpiry};
use nodegrid_protocol::stream::StreamPolicy;

use crate::children::ChildSettings;
use crate::identity::IdentitySettings;
use crate::identity::passwords::PasswordCost;
use crate::identity::tokens::{
    DEVELOPMENT_JWT_SECRET, JwtKey, MIN_PRODUCTION_SECRET_BYTES, is_strong_secret,
};
use crate::pnodes::{AnalyticsConfig, PnodeSettings, Seed, XANDEUM_PUBLIC_SEEDS};
use crate::ratelimit::RateRule;
use crate::registry::RegistrySettings;
use crate::webhooks::WebhookSettings;

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

/// Resolved settings: every option has its value, in the types the code uses.
#[derive(Debug, Clone)]
pub struct Settings {
    pub http_addr: SocketAddr,
    pub http_workers: Option<usize>,
    pub max_body_bytes: usize,
    pub http_limits: HttpLimits,
    pub metrics_addr: Option<SocketAddr>,
    /// HTTPS on the API port, when set.
    pub tls: Option<TlsSettings>,
    pub database_url: String,
    pub database_pool_size: usize,
    pub redis_url: String,
    pub redis_prefix: String,
    pub redis_subscriber_buffer: u32,
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
    /// What applies to a producer's stream unless an admin set otherwise for it.
    pub stream_defaults: StreamPolicy,
    pub data_writer: DataWriterSettings,
    /// Browser origins allowed to call the API and open sockets (`*`: any).
    pub cors_allowed_origins: Vec<String>,
    pub api_token_pepper: Option<SecretString>,
    /// The gRPC API's address.
    pub grpc_addr: SocketAddr,
    /// Reads of the node registry need no token.
    pub registry_public_reads: bool,
    pub registry: RegistrySettings,
    pub pnodes: PnodeSettings,
    pub webhooks: WebhookSettings,
    pub children: ChildSettings,
    pub child_signing_secret: Option<SecretString>,
}

/// The API port's TLS: the files (re-read when they change) and the protocol versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub tls13_only: bool,
}

/// How stored data is written and kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataWriterSettings {
    pub buffer_rows: usize,
    pub batch_rows: usize,
    pub flush_interval: Duration,
    pub retention: Duration,
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
        let webhooks = self.webhook_settings()?;
        let children = self.child_settings()?;
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
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsSettings {
                    cert: cert.clone(),
                    key: key.clone(),
                    tls13_only: self.tls13_only,
                }),
                _ => None,
            },
            database_url: self.database_url,
            database_pool_size: self.database_pool_size,
            redis_url: self.redis_url,
            redis_prefix: self.redis_prefix,
            redis_subscriber_buffer: self.redis_subscriber_buffer,
            jwt_secret: self.jwt_secret,
            jwt_key_id: self.jwt_key_id,
            jwt_previous_keys: self
                .jwt_previous_keys
                .iter()
                .map(|text| {
                    JwtKey::parse(text).map_err(|error| ConfigError::Invalid {
                        name: "jwt_previous_keys",
                        reason: error.to_string(),
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
            stream_defaults: StreamPolicy {
                history_messages: self.history_messages,
                history_age_secs: self.history_age_secs,
                store_data: self.store_data,
            },
            data_writer: DataWriterSettings {
                buffer_rows: self.data_writer_buffer_rows,
                batch_rows: self.data_writer_batch_rows,
                flush_interval: Duration::from_millis(self.data_writer_flush_ms),
                retention: Duration::from_secs(self.data_retention_days.saturating_mul(86_400)),
            },
            cors_allowed_origins: self
                .cors_allowed_origins
                .iter()
                .map(|origin| origin.trim().trim_end_matches('/').to_owned())
                .filter(|origin| !origin.is_empty())
                .collect(),
            api_token_pepper: self.api_token_pepper,
            grpc_addr: self.grpc_addr,
            registry_public_reads: self.registry_public_reads,
            registry: RegistrySettings {
                events_kept: self.registry_events_kept,
            },
            webhooks,
            children,
            child_signing_secret: self.child_signing_secret,
        };
        settings.validate()?;
        Ok(settings)
    }

    fn child_settings(&self) -> Result<ChildSettings, ConfigError> {
        if self.child_lease_ttl_secs == 0
            || self.child_heartbeat_interval_secs == 0
            || self.child_max_clock_skew_secs == 0
            || self.child_signing_key_version == 0
            || self.child_rate_per_sec == 0
            || self.child_rate_burst == 0
            || self.child_session_ttl_secs == 0
        {
            return Err(ConfigError::Invalid {
                name: "child limits",
                reason: "the lease TTL, heartbeat interval, clock skew, key version, rate, burst and session TTL must be positive".into(),
            });
        }
        if self.child_lease_ttl_secs < self.child_heartbeat_interval_secs {
            return Err(ConfigError::Invalid {
                name: "child_lease_ttl_secs",
                reason: "a lease must outlive the heartbeat interval that renews it".into(),
            });
        }
        if !(self.child_disruption_share > 0.0 && self.child_disruption_share <= 1.0) {
            return Err(ConfigError::Invalid {
                name: "child_disruption_share",
                reason: "must be above 0 and at most 1".into(),
            });
        }
        Ok(ChildSettings {
            lease_ttl: Duration::from_secs(self.child_lease_ttl_secs),
            heartbeat_interval: Duration::from_secs(self.child_heartbeat_interval_secs),
            max_clock_skew: Duration::from_secs(self.child_max_clock_skew_secs),
            signing_key_version: self.child_signing_key_version,
            rate_per_sec: self.child_rate_per_sec,
            rate_burst: self.child_rate_burst,
            session_ttl: Duration::from_secs(self.child_session_ttl_secs),
            disruption_share: self.child_disruption_share,
            disruption_min_population: self.child_disruption_min_children,
        })
    }

    fn webhook_settings(&self) -> Result<WebhookSettings, ConfigError> {
        let invalid = |name, reason: &str| ConfigError::Invalid {
            name,
            reason: reason.to_owned(),
        };
        let allowed_hosts: Vec<String> = self
            .webhook_allowed_hosts
            .iter()
            .map(|host| host.trim().to_ascii_lowercase())
            .filter(|host| !host.is_empty())
            .collect();
        if allowed_hosts
            .iter()
            .any(|host| host.contains('/') || host.contains('@'))
        {
            return Err(invalid(
                "webhook_allowed_hosts",
                "hosts only (127.0.0.1, hooks.example.com, [::1]) or *, without scheme or path",
            ));
        }
        if self.webhook_retry_base_ms == 0
            || self.webhook_timeout_ms == 0
            || self.webhook_concurrency == 0
            || self.webhook_log_days == 0
        {
            return Err(invalid(
                "webhook limits",
                "the retry base, the timeout, the concurrency and the log days must be positive",
            ));
        }
        Ok(WebhookSettings {
            allowed_hosts,
            retry_base: Duration::from_millis(self.webhook_retry_base_ms),
            retry_for: Duration::from_secs(self.webhook_retry_hours.saturating_mul(3_600)),
            timeout: Duration::from_millis(self.webhook_timeout_ms),
            concurrency: self.webhook_concurrency,
            keep: Duration::from_secs(self.webhook_log_days.saturating_mul(86_400)),
        })
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
            .map(|text| {
                Seed::parse(text).map_err(|error| invalid("pnode_seeds", error.to_string()))
            })
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
                .map_err(|error| invalid("pnode_scoring_file", error.to_string()))?,
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
            live_sockets: self.pnode_live_sockets,
        })
    }
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

    /// The secret the lease signing keys derive from: its own if set, else the API tokens'.
    pub fn child_signing_secret(&self) -> SecretString {
        self.child_signing_secret
            .clone()
            .unwrap_or_else(|| self.api_token_secret())
    }

    /// The secret the API tokens' hashes are keyed with: the pepper if set, else the JWT
    /// signing secret (the development one without a configured secret).
    pub fn api_token_secret(&self) -> SecretString {
        self.api_token_pepper
            .clone()
            .unwrap_or_else(|| self.identity().jwt_key.secret)
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
        let writer = &self.data_writer;
        if self.stream_defaults.history_age_secs == 0
            || writer.buffer_rows == 0
            || writer.batch_rows == 0
            || writer.flush_interval.is_zero()
            || writer.retention.is_zero()
        {
            return Err(ConfigError::Invalid {
                name: "history and data limits",
                reason: "the history age, the data writer's buffer, batch and flush interval, \
                         and the data retention must be positive"
                    .into(),
            });
        }
        if let Some(origin) = self.cors_allowed_origins.iter().find(|origin| {
            origin.as_str() != "*"
                && !origin.starts_with("http://")
                && !origin.starts_with("https://")
        }) {
            return Err(ConfigError::Invalid {
                name: "cors_allowed_origins",
                reason: format!("{origin:?} is not an origin (scheme://host[:port]) or *"),
            });
        }
        if self.admin_username.is_some() != self.admin_password.is_some() {
            return Err(ConfigError::Invalid {
                name: "admin_username",
                reason: "NODEGRID_ADMIN_USERNAME and NODEGRID_ADMIN_PASSWORD go together".into(),
            });
        }
        if !(1..=crate::identity::rules::MAX_PASSWORD_CHARS).contains(&self.password_min_length) {
            return Err(ConfigError::Invalid {
                name: "password_min_length",
                reason: format!(
                    "must be 1 to {} characters",
                    crate::identity::rules::MAX_PASSWORD_CHARS
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

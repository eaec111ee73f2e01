//! The agent's options (flags, `NODEGRID_…` variables, Motience's plugin variables, a TOML
//! file), resolved into settings; and why it stops.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use nodegrid_protocol::stream::Encoding;
use serde::Deserialize;

/// How readings are encoded on the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeviceEncoding {
    #[default]
    Json,
    Msgpack,
}

/// The options of `nodegrid device`. Each has a flag, a `NODEGRID_…` variable and a key in the
/// `--config` TOML file; Motience's plugin variables (`DEVICE_ID`, `USERNAME`, `PASSWORD`,
/// `AUTH_URL`, `WEBSOCKET_URL`, `SEND_INTERVAL_SECS`) are read when ours are not set.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceOptions {
    /// TOML file with any of these options.
    #[arg(long, env = "NODEGRID_DEVICE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// This device's name, sent in every reading [default: the host name].
    #[arg(long, env = "NODEGRID_DEVICE_ID")]
    pub device_id: Option<String>,
    /// The producer account to log in with.
    #[arg(long, env = "NODEGRID_DEVICE_USERNAME")]
    pub username: Option<String>,
    /// Its password (prefer the environment variable or the file to the flag).
    #[arg(long, env = "NODEGRID_DEVICE_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// An access token to use instead of logging in (it is not refreshed).
    #[arg(long, env = "NODEGRID_DEVICE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The server's base URL, or its login URL [default: http://127.0.0.1:8080].
    #[arg(long, env = "NODEGRID_AUTH_URL")]
    pub auth_url: Option<String>,
    /// The producer socket [default: ws://127.0.0.1:8080/producer].
    #[arg(long, env = "NODEGRID_WEBSOCKET_URL")]
    pub websocket_url: Option<String>,
    /// Seconds between readings [default: 5].
    #[arg(long, env = "NODEGRID_SEND_INTERVAL_SECS")]
    pub send_interval_secs: Option<f64>,
    /// JSON text or MessagePack binary frames [default: json].
    #[arg(long, env = "NODEGRID_DEVICE_ENCODING", value_enum)]
    pub encoding: Option<DeviceEncoding>,
    /// Send one reading, wait for its ack, and exit.
    #[arg(long)]
    #[serde(default)]
    pub once: bool,
    /// First reconnect delay, in milliseconds [default: 500].
    #[arg(long, env = "NODEGRID_DEVICE_BACKOFF_INITIAL_MS")]
    pub backoff_initial_ms: Option<u64>,
    /// Longest reconnect delay, in milliseconds [default: 30000].
    #[arg(long, env = "NODEGRID_DEVICE_BACKOFF_MAX_MS")]
    pub backoff_max_ms: Option<u64>,
    /// Readings kept while they wait for an ack [default: 1000].
    #[arg(long, env = "NODEGRID_DEVICE_BUFFER_MESSAGES")]
    pub buffer_messages: Option<usize>,
    /// Bytes of the same [default: 1048576].
    #[arg(long, env = "NODEGRID_DEVICE_BUFFER_BYTES")]
    pub buffer_bytes: Option<usize>,
    /// PEM certificates of authorities trusted beside the system's, for `https://` and
    /// `wss://` URLs.
    #[arg(long, env = "NODEGRID_DEVICE_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("invalid setting: {0}")]
    Config(String),
    #[error("the server refused the credentials ({0})")]
    BadCredentials(String),
    #[error("the server refused this device ({0})")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}

impl DeviceError {
    /// 2 for settings, 3 when the server says no (credentials, role, block), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            DeviceError::Config(_) => 2,
            DeviceError::BadCredentials(_) | DeviceError::Refused(_) => 3,
            DeviceError::Failed(_) => 1,
        }
    }
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct DeviceSettings {
    pub device_id: String,
    pub credentials: Credentials,
    pub auth_base: String,
    pub websocket_url: String,
    pub interval: Duration,
    pub encoding: Encoding,
    pub once: bool,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub buffer_messages: usize,
    pub buffer_bytes: usize,
    pub ca_file: Option<PathBuf>,
}

#[derive(Clone)]
pub enum Credentials {
    Login { username: String, password: String },
    Token(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Login { username, .. } => write!(f, "Login({username}, ***)"),
            Credentials::Token(_) => f.write_str("Token(***)"),
        }
    }
}

fn motience(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

impl DeviceOptions {
    pub fn resolve(self) -> Result<DeviceSettings, DeviceError> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|error| DeviceError::Config(format!("{}: {error}", path.display())))?;
                toml::from_str::<DeviceOptions>(&text)
                    .map_err(|error| DeviceError::Config(format!("{}: {error}", path.display())))?
            }
            None => DeviceOptions::default(),
        };
        let device_id = self
            .device_id
            .or_else(|| motience("DEVICE_ID"))
            .or(file.device_id)
            .or_else(|| sysinfo::System::host_name().ok())
            .unwrap_or_else(|| "device".to_owned());
        let token = self.token.or(file.token);
        let username = self
            .username
            .or_else(|| motience("USERNAME"))
            .or(file.username);
        let password = self
            .password
            .or_else(|| motience("PASSWORD"))
            .or(file.password);
        let credentials = match (token, username, password) {
            (Some(token), _, _) => Credentials::Token(token),
            (None, Some(username), Some(password)) => Credentials::Login { username, password },
            _ => {
                return Err(DeviceError::Config(
                    "give --token, or --username and --password (or USERNAME and PASSWORD)".into(),
                ));
            }
        };
        let auth_url = self
            .auth_url
            .or_else(|| motience("AUTH_URL"))
            .or(file.auth_url)
            .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
        let interval = self
            .send_interval_secs
            .or_else(|| motience("SEND_INTERVAL_SECS").and_then(|text| text.parse().ok()))
            .or(file.send_interval_secs)
            .unwrap_or(5.0);
        if !(0.01..=86_400.0).contains(&interval) {
            return Err(DeviceError::Config(
                "the send interval must be 0.01 to 86400 seconds".into(),
            ));
        }
        Ok(DeviceSettings {
            device_id,
            credentials,
            auth_base: auth_base(&auth_url),
            websocket_url: self
                .websocket_url
                .or_else(|| motience("WEBSOCKET_URL"))
                .or(file.websocket_url)
                .unwrap_or_else(|| "ws://127.0.0.1:8080/producer".to_owned()),
            interval: Duration::from_secs_f64(interval),
            encoding: match self.encoding.or(file.encoding).unwrap_or_default() {
                DeviceEncoding::Json => Encoding::Json,
                DeviceEncoding::Msgpack => Encoding::MessagePack,
            },
            once: self.once || file.once,
            backoff_initial: Duration::from_millis(
                self.backoff_initial_ms
                    .or(file.backoff_initial_ms)
                    .unwrap_or(500)
                    .max(1),
            ),
            backoff_max: Duration::from_millis(
                self.backoff_max_ms
                    .or(file.backoff_max_ms)
                    .unwrap_or(30_000)
                    .max(1),
            ),
            buffer_messages: self
                .buffer_messages
                .or(file.buffer_messages)
                .unwrap_or(1_000)
                .max(1),
            buffer_bytes: self
                .buffer_bytes
                .or(file.buffer_bytes)
                .unwrap_or(1024 * 1024)
                .max(1024),
            ca_file: self.ca_file.or(file.ca_file),
        })
    }
}

/// `http://host:8080`, `http://host:8080/api/auth` and `http://host:8080/api/auth/login` all
/// mean the same server.
pub(super) fn auth_base(url: &str) -> String {
    let url = url.trim_end_matches('/');
    let url = url.strip_suffix("/login").unwrap_or(url);
    let url = url.strip_suffix("/api/auth").unwrap_or(url);
    url.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_urls_in_every_motience_form_mean_the_same_server() {
        for url in [
            "http://host:3001",
            "http://host:3001/",
            "http://host:3001/api/auth",
            "http://host:3001/api/auth/login",
        ] {
            assert_eq!(auth_base(url), "http://host:3001");
        }
    }
}

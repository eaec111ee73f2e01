//! The options of `nodegrid child`: flags and `NODEGRID_CHILD_…` variables, resolved into
//! settings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use nodegrid_protocol::children::signing::child_key_well_formed;

#[derive(Debug, Clone, Args)]
pub struct ChildOptions {
    /// The mother's base URLs, tried in order (`https://mother.example.com,https://backup…`).
    #[arg(
        long,
        env = "NODEGRID_CHILD_MOTHER_URL",
        value_delimiter = ',',
        required = true
    )]
    pub mother_url: Vec<String>,
    /// This child's key (`ngc_…`), as the mother's admin got it at provisioning.
    #[arg(long, env = "NODEGRID_CHILD_API_KEY", hide_env_values = true)]
    pub api_key: String,
    /// Seconds between heartbeats (each one ±10 %).
    #[arg(long, env = "NODEGRID_CHILD_INTERVAL_SECS", default_value_t = 30)]
    pub interval_secs: u64,
    /// Where the local application asks (`/status`, `/login`, `/session`,
    /// `/users/{id}/allowed`).
    #[arg(
        long,
        env = "NODEGRID_CHILD_GATE_ADDR",
        default_value = "127.0.0.1:7070"
    )]
    pub gate_addr: SocketAddr,
    /// The file the last lease, its expiry and the failure count survive restarts in.
    #[arg(
        long,
        env = "NODEGRID_CHILD_STATE_FILE",
        default_value = "nodegrid-child-state.json"
    )]
    pub state_file: PathBuf,
    /// The version this child reports to the mother [default: nodegrid's].
    #[arg(long, env = "NODEGRID_CHILD_APP_VERSION")]
    pub app_version: Option<String>,
    /// PEM certificates of the authorities that may sign the mother's certificate, trusted
    /// beside the system's [default: the system's only].
    #[arg(long, env = "NODEGRID_CHILD_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Milliseconds one request to the mother may take.
    #[arg(
        long,
        env = "NODEGRID_CHILD_REQUEST_TIMEOUT_MS",
        default_value_t = 5_000
    )]
    pub request_timeout_ms: u64,
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct ChildSettings {
    pub mother_urls: Vec<String>,
    pub api_key: String,
    pub interval: Duration,
    pub gate_addr: SocketAddr,
    pub state_file: PathBuf,
    pub version: String,
    pub request_timeout: Duration,
    pub ca_file: Option<PathBuf>,
}

impl ChildOptions {
    pub fn resolve(self) -> Result<ChildSettings, String> {
        let mother_urls: Vec<String> = self
            .mother_url
            .iter()
            .map(|url| url.trim().trim_end_matches('/').to_owned())
            .filter(|url| !url.is_empty())
            .collect();
        if mother_urls.is_empty()
            || !mother_urls
                .iter()
                .all(|url| url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err("--mother-url: one or more http:// or https:// URLs".into());
        }
        let api_key = self.api_key.trim().to_owned();
        if !child_key_well_formed(&api_key) {
            return Err("--api-key: not a child key (ngc_…); check it was copied whole".into());
        }
        if self.interval_secs == 0 || self.request_timeout_ms == 0 {
            return Err("--interval-secs and --request-timeout-ms must be positive".into());
        }
        Ok(ChildSettings {
            mother_urls,
            api_key,
            interval: Duration::from_secs(self.interval_secs),
            gate_addr: self.gate_addr,
            state_file: self.state_file,
            version: self
                .app_version
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            ca_file: self.ca_file,
        })
    }
}

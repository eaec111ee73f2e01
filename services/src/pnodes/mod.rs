//! pNode analytics: the pRPC client, the merge of what the seeds report into one registry,
//! gossip consistency, the seed's scores and alerts, the network view the API answers from, and
//! the Postgres store of registry, snapshot and history.
//!
//! Everything here is plain data and functions, except [`client`] (HTTP to the seeds) and
//! [`store`] (Postgres). [`api`] computes the pNode API's answers from the view. The actors
//! crate runs the pollers and the aggregation cycle.

pub mod alerts;
pub mod api;
pub mod background;
pub mod changes;
pub mod client;
pub mod cycle;
pub mod scoring;
pub mod store;
pub mod view;
pub mod writes;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use self::alerts::AlertThresholds;
use self::scoring::ScoringConfig;

/// The nine public Xandeum IP nodes: what `--pnode-seeds xandeum-public` polls. Nothing is
/// polled unless seeds are named.
pub const XANDEUM_PUBLIC_SEEDS: [&str; 9] = [
    "173.212.203.145",
    "173.212.220.65",
    "161.97.97.41",
    "192.190.136.36",
    "192.190.136.37",
    "192.190.136.38",
    "192.190.136.28",
    "192.190.136.29",
    "207.244.255.1",
];
pub const DEFAULT_PRPC_PORT: u16 = 6000;

/// One pRPC seed node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Seed {
    pub host: String,
    pub port: u16,
}

/// Why a seed was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeedError {
    #[error("empty seed")]
    Empty,
    #[error("{0}: port is not a number from 1 to 65535")]
    BadPort(String),
    #[error("{0}: expected host[:port]")]
    Malformed(String),
}

impl Seed {
    /// `host[:port]`, port 6000 when omitted.
    pub fn parse(text: &str) -> Result<Seed, SeedError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SeedError::Empty);
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') || host.ends_with(']') => (
                host,
                port.parse::<u16>()
                    .map_err(|_| SeedError::BadPort(text.to_owned()))?,
            ),
            _ => (text, DEFAULT_PRPC_PORT),
        };
        if host.is_empty() || port == 0 {
            return Err(SeedError::Malformed(text.to_owned()));
        }
        Ok(Seed {
            host: host.to_owned(),
            port,
        })
    }

    /// How the seed is named in `peer_sources`, `source_ips` and the per-seed view: the host
    /// alone on the default port, `host:port` otherwise (several simulated seeds share a host).
    pub fn label(&self) -> String {
        if self.port == DEFAULT_PRPC_PORT {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub fn rpc_url(&self) -> String {
        format!("http://{}:{}/rpc", self.host, self.port)
    }
}

impl fmt::Display for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// Scores and alerts configuration, read from the optional `--pnode-scoring-file`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalyticsConfig {
    pub scoring: ScoringConfig,
    pub alerts: AlertThresholds,
}

/// Why the scoring file was refused.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsFileError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not valid: {source}", path.display())]
    Invalid {
        path: PathBuf,
        source: toml::de::Error,
    },
}

impl AnalyticsConfig {
    pub fn from_file(path: &Path) -> Result<AnalyticsConfig, AnalyticsFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| AnalyticsFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| AnalyticsFileError::Invalid {
            path: path.to_owned(),
            source,
        })
    }
}

/// Everything the pNode side needs, resolved.
#[derive(Debug, Clone)]
pub struct PnodeSettings {
    /// Empty: polling is off (the API still serves the last stored snapshot).
    pub seeds: Vec<Seed>,
    pub interval: Duration,
    pub rpc_timeout: Duration,
    /// Largest accepted pRPC answer body.
    pub max_answer_bytes: usize,
    /// The version that counts as latest; `None`: the most common among online nodes.
    pub latest_version: Option<String>,
    pub retention: Duration,
    pub analytics: AnalyticsConfig,
    /// `/api/xandeum` requests per second per client IP on each instance (0: no limit).
    pub api_rate_per_sec: u32,
    pub api_burst: u32,
    /// Open `/api/xandeum/ws/pnodes` sockets per instance.
    pub live_sockets: usize,
}

impl PnodeSettings {
    /// Nodes not seen for longer than this are offline.
    pub fn offline_after_secs(&self) -> i64 {
        i64::try_from(self.interval.as_secs().max(1) * 2).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse_with_and_without_a_port() {
        assert_eq!(
            Seed::parse("173.212.203.145").map(|seed| seed.rpc_url()),
            Ok("http://173.212.203.145:6000/rpc".to_owned())
        );
        let seed = Seed::parse(" 127.0.0.1:16001 ").expect("seed");
        assert_eq!(seed.port, 16_001);
        assert_eq!(seed.label(), "127.0.0.1:16001");
        assert_eq!(
            Seed::parse("10.0.0.1:6000").map(|s| s.label()),
            Ok("10.0.0.1".into())
        );
        assert!(Seed::parse("10.0.0.1:http").is_err());
        assert!(Seed::parse("").is_err());
        assert!(Seed::parse(":6000").is_err());
    }
}

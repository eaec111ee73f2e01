//! One pNode as the API shows it: what the seeds reported, merged, with its gossip
//! consistency, the seed's three scores and the alerts raised on it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One pNode, online or offline (an item of `/pnodes`, `/registry`, `/graveyard`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct NodeView {
    /// `host:port`, the node's identity.
    pub address: String,
    pub pubkey: Option<String>,
    pub is_online: bool,
    /// The last cycle that saw the node in gossip (unix seconds, this deployment's clock).
    pub last_seen: i64,
    pub last_checked: i64,
    /// The seeds' own `last_seen_timestamp` of the report that won the merge.
    pub last_seen_timestamp: Option<i64>,
    pub version: Option<String>,
    /// Seconds.
    pub uptime: Option<u64>,
    pub is_public: Option<bool>,
    pub rpc_port: Option<u16>,
    pub storage_committed: Option<u64>,
    pub storage_used: Option<u64>,
    pub storage_usage_percent: Option<f64>,
    /// The seeds that reported the node in the last cycle (empty when offline).
    pub peer_sources: Vec<String>,
    pub peer_count: usize,
    pub first_seen: i64,
    /// Every seed that ever reported the node.
    pub source_ips: Vec<String>,
    pub gossip_appearances: u64,
    pub gossip_disappearances: u64,
    pub last_gossip_appearance: Option<i64>,
    pub last_gossip_drop: Option<i64>,
    /// `appearances / (appearances + disappearances)`, 0 to 1.
    pub consistency_score: f64,
    /// Seconds since the node was last seen; only on offline nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_duration: Option<i64>,
    pub scores: Scores,
    /// The stake-confidence composite; 0 when offline.
    pub score: f64,
    /// `low_risk`, `medium_risk`, `high_risk`, or `offline`.
    pub tier: String,
}

/// The seed's three scores of a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct Scores {
    pub trust: TrustScore,
    pub capacity: CapacityScore,
    pub stake_confidence: StakeConfidence,
}

/// Trust, 0 to 100: uptime 40 + gossip presence 30 + version 20 + gossip consistency 10.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct TrustScore {
    pub score: f64,
    pub breakdown: TrustBreakdown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct TrustBreakdown {
    pub uptime: f64,
    pub gossip_presence: f64,
    pub version_compliance: f64,
    pub gossip_consistency: f64,
}

/// Capacity, 0 to 100: storage committed 30 + usage balance 40 + growth trend 30.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct CapacityScore {
    pub score: f64,
    pub breakdown: CapacityBreakdown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct CapacityBreakdown {
    pub storage_committed: f64,
    pub usage_balance: f64,
    pub growth_trend: f64,
}

/// Trust and capacity weighted into one figure, rated and coloured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct StakeConfidence {
    pub composite_score: f64,
    /// `low_risk`, `medium_risk` or `high_risk`.
    pub rating: String,
    /// The rating's colour, `#rrggbb`.
    pub color: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
pub enum Severity {
    Critical,
    Warning,
    Info,
}

/// The seed's ten alert types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
pub enum AlertType {
    Offline,
    LowUptime,
    StorageCritical,
    StorageWarning,
    VersionOutdated,
    VersionBehind,
    Isolated,
    WeakConnectivity,
    Underutilized,
    GossipFlapping,
}

impl AlertType {
    /// The name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            AlertType::Offline => "offline",
            AlertType::LowUptime => "low_uptime",
            AlertType::StorageCritical => "storage_critical",
            AlertType::StorageWarning => "storage_warning",
            AlertType::VersionOutdated => "version_outdated",
            AlertType::VersionBehind => "version_behind",
            AlertType::Isolated => "isolated",
            AlertType::WeakConnectivity => "weak_connectivity",
            AlertType::Underutilized => "underutilized",
            AlertType::GossipFlapping => "gossip_flapping",
        }
    }
}

/// One alert raised on one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct Alert {
    pub severity: Severity,
    #[serde(rename = "type")]
    #[cfg_attr(feature = "graphql", graphql(name = "type"))]
    pub alert_type: AlertType,
    pub message: String,
    /// The figure that was checked, such as `uptime` or `storage_usage_percent`.
    pub metric: String,
    /// Its value: a number, or the version string.
    pub value: Value,
    /// The limit it crossed: a number, or the latest version.
    pub threshold: Value,
    pub recommendation: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_type_names_are_the_serde_names() {
        let all = [
            AlertType::Offline,
            AlertType::LowUptime,
            AlertType::StorageCritical,
            AlertType::StorageWarning,
            AlertType::VersionOutdated,
            AlertType::VersionBehind,
            AlertType::Isolated,
            AlertType::WeakConnectivity,
            AlertType::Underutilized,
            AlertType::GossipFlapping,
        ];
        for alert_type in all {
            assert_eq!(
                serde_json::to_value(alert_type).ok(),
                Some(Value::from(alert_type.as_str()))
            );
        }
    }
}

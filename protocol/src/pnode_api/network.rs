//! The network as a whole: the API overview, the snapshot's freshness, the network's health
//! and analytics, gossip consistency, and the nodes grouped by operator.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::history::GrowthMetrics;
use super::node::Severity;

/// The version of the Xandeum PNode Developer API that `/api/xandeum` implements.
pub const API_VERSION: &str = "1.1.0";

/// `GET /api/xandeum/`: what the API is and where its main routes are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiOverview {
    pub api_name: String,
    pub version: String,
    pub description: String,
    /// Route name → path.
    pub core_endpoints: BTreeMap<String, String>,
    pub timestamp: i64,
}

impl ApiOverview {
    pub fn new(timestamp: i64) -> ApiOverview {
        let core_endpoints = [
            ("health", "/api/xandeum/health"),
            ("pnodes", "/api/xandeum/pnodes"),
            ("recommendations", "/api/xandeum/recommendations"),
            ("registry", "/api/xandeum/registry"),
            ("graveyard", "/api/xandeum/graveyard"),
            ("operators", "/api/xandeum/operators"),
            ("alerts", "/api/xandeum/alerts"),
            ("compare", "/api/xandeum/pnodes/compare"),
            ("network_health", "/api/xandeum/network/health"),
            ("network_topology", "/api/xandeum/network/topology"),
            ("network_history", "/api/xandeum/network/history"),
            ("network_growth", "/api/xandeum/network/growth"),
            ("network_analytics", "/api/xandeum/network/analytics"),
            ("network_consistency", "/api/xandeum/network/consistency"),
            ("all_nodes", "/api/xandeum/all-nodes"),
            ("node_history", "/api/xandeum/node/{address}/history"),
            ("history_status", "/api/xandeum/nodes/history-status"),
        ]
        .into_iter()
        .map(|(name, path)| (name.to_owned(), path.to_owned()))
        .collect();
        ApiOverview {
            api_name: "Xandeum PNode Developer API (nodegrid)".to_owned(),
            version: API_VERSION.to_owned(),
            description: "pNode analytics served from nodegrid's in-memory snapshot".to_owned(),
            core_endpoints,
            timestamp,
        }
    }
}

/// How fresh the served snapshot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SnapshotStatus {
    /// Younger than two polling intervals.
    Healthy,
    /// Older than that: the seeds may not be answering.
    Degraded,
    /// No snapshot yet (answered with 503).
    Unhealthy,
}

/// `GET /api/xandeum/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SnapshotHealth {
    pub status: SnapshotStatus,
    pub message: String,
    pub snapshot_age_seconds: Option<i64>,
    pub last_updated: Option<i64>,
    /// The polling interval, in seconds: how long an answer stays current.
    pub cache_ttl: u64,
    /// Online pNodes (0 without a snapshot).
    pub total_pnodes: usize,
    /// Seeds polled.
    pub total_ip_nodes: usize,
    /// Absent without a snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycle: Option<i64>,
    pub timestamp: i64,
}

/// Counts of the served snapshot, and its age.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct SnapshotSummary {
    pub total_pnodes: usize,
    pub online_pnodes: usize,
    pub offline_pnodes: usize,
    pub public_pnodes: usize,
    pub private_pnodes: usize,
    pub total_ip_nodes: usize,
    pub responding_ip_nodes: usize,
    pub snapshot_age_seconds: i64,
    pub last_updated: i64,
    pub cycle: i64,
}

/// Totals and averages over the online nodes and the seeds' own statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct NetworkStats {
    pub total_storage_committed: u64,
    pub total_storage_used: u64,
    pub avg_storage_usage_percent: f64,
    pub avg_uptime_hours: f64,
    pub avg_peer_count: f64,
    pub avg_cpu_percent: f64,
    pub avg_ram_used_percent: f64,
    pub total_active_streams: u64,
    pub total_bytes_processed: u64,
    /// Version → online nodes running it (`unknown` for none reported).
    pub version_distribution: BTreeMap<String, usize>,
    pub latest_version: Option<String>,
    pub avg_score: f64,
}

/// The network health factors and their total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct NetworkHealth {
    pub health_score: f64,
    /// `healthy`, `fair`, `degraded`, `critical`, or `unknown` without nodes.
    pub status: String,
    pub factors: HealthFactors,
}

impl Default for NetworkHealth {
    /// The health of a network without nodes.
    fn default() -> Self {
        NetworkHealth {
            health_score: 0.0,
            status: "unknown".to_owned(),
            factors: HealthFactors::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct HealthFactors {
    pub availability: f64,
    pub version_consistency: f64,
    pub node_quality: f64,
    pub connectivity: f64,
}

/// What the operators of the whole network should know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum NetworkAlertType {
    IpNodesUnreachable,
    HighOfflineRatio,
    NetworkHealth,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkAlert {
    pub severity: Severity,
    #[serde(rename = "type")]
    pub alert_type: NetworkAlertType,
    pub message: String,
}

/// `GET /api/xandeum/network/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkHealthResponse {
    pub health: NetworkHealth,
    pub network_stats: NetworkStats,
    pub summary: SnapshotSummary,
    pub alerts: Vec<NetworkAlert>,
    pub timestamp: i64,
}

/// `GET /api/xandeum/network/analytics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnalyticsResponse {
    pub current_state: CurrentState,
    /// Over the last 24 hours.
    pub growth: GrowthMetrics,
    pub version_analysis: VersionAnalysis,
    /// Advice to the network's operators.
    pub recommendations: Vec<String>,
    pub timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CurrentState {
    pub summary: SnapshotSummary,
    pub network_stats: NetworkStats,
    pub health: NetworkHealth,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionAnalysis {
    pub latest_version: Option<String>,
    pub nodes_on_latest: usize,
    /// Of the online nodes.
    pub latest_adoption_percent: f64,
    pub distribution: BTreeMap<String, usize>,
    pub distinct_versions: usize,
}

/// `GET /api/xandeum/network/consistency`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsistencyResponse {
    /// The nodes at or above `min_consistency`, sorted, at most `limit`.
    pub nodes: Vec<GossipConsistency>,
    pub summary: ConsistencySummary,
    /// Every node under the flapping threshold, whatever the filters.
    pub flapping_nodes: Vec<GossipConsistency>,
    pub timestamp: i64,
}

/// One node's presence in gossip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GossipConsistency {
    pub address: String,
    pub consistency_score: f64,
    pub gossip_appearances: u64,
    pub gossip_disappearances: u64,
    pub last_gossip_appearance: Option<i64>,
    pub last_gossip_drop: Option<i64>,
    pub is_online: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsistencySummary {
    pub total_nodes: usize,
    /// Nodes at or above `min_consistency`.
    pub matching: usize,
    pub avg_consistency: f64,
    pub flapping_threshold: f64,
    pub flapping_count: usize,
}

/// `GET /api/xandeum/node/{address}/consistency`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeConsistencyResponse {
    pub address: String,
    pub consistency_score: f64,
    pub gossip_appearances: u64,
    pub gossip_disappearances: u64,
    pub last_gossip_appearance: Option<i64>,
    pub last_gossip_drop: Option<i64>,
    pub is_flapping: bool,
    pub flapping_threshold: f64,
    pub first_seen: i64,
    pub last_seen: i64,
    pub is_online: bool,
    pub timestamp: i64,
}

/// `GET /api/xandeum/operators`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OperatorsResponse {
    pub summary: OperatorsSummary,
    pub operators: Vec<Operator>,
    pub timestamp: i64,
}

/// Over every operator, whatever the filters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OperatorsSummary {
    pub total_operators: usize,
    /// Nodes with a pubkey.
    pub total_nodes: usize,
    pub avg_nodes_per_operator: f64,
    pub largest_operator_share_percent: f64,
    /// 100 when every node has its own operator, falling as nodes concentrate.
    pub decentralization_score: f64,
}

/// The nodes that share one pubkey.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Operator {
    pub pubkey: String,
    pub node_count: usize,
    pub online_nodes: usize,
    pub total_storage_committed: u64,
    pub total_storage_used: u64,
    pub addresses: Vec<String>,
    pub versions: BTreeSet<String>,
    pub first_seen: Option<i64>,
}

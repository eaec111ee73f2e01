//! What the history holds: the network's figures per cycle, each node's per cycle, and what
//! is derived from them (growth over a window, a node's minimum, average and maximum).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The network's figures of one cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkHistoryRow {
    pub cycle: i64,
    pub timestamp: i64,
    pub total_pnodes: i32,
    pub online_pnodes: i32,
    pub offline_pnodes: i32,
    pub public_pnodes: i32,
    pub private_pnodes: i32,
    pub total_ip_nodes: i32,
    pub responding_ip_nodes: i32,
    pub total_storage_committed: i64,
    pub total_storage_used: i64,
    pub avg_storage_usage_percent: f64,
    pub avg_uptime_hours: f64,
    pub avg_peer_count: f64,
    pub avg_cpu_percent: f64,
    pub avg_ram_used_percent: f64,
    pub total_active_streams: i64,
    pub total_bytes_processed: i64,
    pub avg_score: f64,
    pub health_score: f64,
    pub latest_version: Option<String>,
    /// Version → online nodes running it.
    pub version_distribution: Value,
    /// The cycle's time as `YYYY-MM-DD HH:MM:SS` (UTC), as the seed writes it.
    #[serde(default)]
    pub timestamp_readable: Option<String>,
    /// Storage used over committed, in percent.
    #[serde(default)]
    pub storage_utilization_ratio: Option<f64>,
    /// How many versions the online nodes run.
    #[serde(default)]
    pub version_diversity_index: Option<f64>,
}

/// One node's figures of one cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct NodeHistoryRow {
    pub timestamp: i64,
    pub is_online: bool,
    pub version: Option<String>,
    pub uptime: Option<i64>,
    pub storage_committed: Option<i64>,
    pub storage_used: Option<i64>,
    pub storage_usage_percent: Option<f64>,
    pub peer_count: i32,
    pub peer_sources: Vec<String>,
    pub score: f64,
    pub trust_score: f64,
    pub capacity_score: f64,
    pub is_public: Option<bool>,
}

/// How much history is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryStatus {
    pub network_snapshots: i64,
    pub node_history_rows: i64,
    pub nodes_tracked: i64,
    pub oldest_timestamp: Option<i64>,
    pub newest_timestamp: Option<i64>,
}

/// `GET /api/xandeum/nodes/history-status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryStatusResponse {
    pub status: HistoryStatus,
    pub retention_days: u64,
    pub interval_seconds: u64,
    pub timestamp: i64,
}

/// `GET /api/xandeum/network/history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkHistoryResponse {
    pub history: Vec<NetworkHistoryRow>,
    pub summary: NetworkHistorySummary,
    pub timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkHistorySummary {
    pub data_points: usize,
    pub hours: i64,
    pub first_timestamp: Option<i64>,
    pub last_timestamp: Option<i64>,
    pub min_online_pnodes: Option<i32>,
    pub max_online_pnodes: Option<i32>,
    pub avg_online_pnodes: f64,
}

/// `GET /api/xandeum/network/growth`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GrowthResponse {
    pub growth_metrics: GrowthMetrics,
    pub timestamp: i64,
}

/// How the network changed over a window: from its first row to its last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum GrowthMetrics {
    Measured(Box<Growth>),
    /// No row in the window: `data_points` is 0.
    NoHistory {
        hours: i64,
        data_points: usize,
        message: String,
    },
}

/// The change of each figure over a window with rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Growth {
    pub hours: i64,
    pub data_points: usize,
    pub total_pnodes: Change,
    pub online_pnodes: Change,
    pub total_storage_committed: Change,
    pub total_storage_used: Change,
    pub avg_score: Change,
    pub health_score: Change,
}

/// One figure at the start and at the end of a window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Change {
    pub start: f64,
    pub end: f64,
    pub change: f64,
    /// `null` when the start was 0.
    pub change_percent: Option<f64>,
}

/// `GET /api/xandeum/node/{address}/history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeHistoryResponse {
    pub address: String,
    pub days: i64,
    pub data_points: usize,
    pub history: Vec<NodeHistoryRow>,
    pub timestamp: i64,
}

/// `GET /api/xandeum/node/{address}/metrics-summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricsSummary {
    pub address: String,
    pub hours: i64,
    pub data_points: usize,
    /// Share of the rows in which the node was online; `null` without rows.
    pub availability_percent: Option<f64>,
    pub score: Stats,
    pub trust_score: Stats,
    pub capacity_score: Stats,
    pub uptime: Stats,
    pub storage_used: Stats,
    pub storage_usage_percent: Stats,
    pub peer_count: Stats,
    pub versions_seen: BTreeSet<String>,
    pub timestamp: i64,
}

/// Minimum, maximum and average of one figure; all `null` when it was never known.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stats {
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub avg: Option<f64>,
}

//! Lists of nodes: the filtered page of `/pnodes`, the recommendations, a comparison, the
//! registry and the graveyard, and the prune.
//!
//! The lists are generic over how a node is written, `N`: clients read [`NodeView`]s, and the
//! server writes each node's JSON as it was serialised once per snapshot, so that a request
//! copies bytes instead of serialising nodes again.

use serde::{Deserialize, Serialize};

use super::network::{NetworkStats, SnapshotSummary};
use super::node::{NodeView, Scores};
use super::queries::{PnodeFilters, RecommendationFilters};

/// `GET /api/xandeum/pnodes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PnodesResponse<N = NodeView> {
    pub summary: SnapshotSummary,
    pub network_stats: NetworkStats,
    pub pagination: Pagination,
    pub filters: PnodeFilters,
    pub pnodes: Vec<N>,
    pub timestamp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct Pagination {
    /// Nodes that pass the filters.
    pub total: usize,
    pub limit: usize,
    pub skip: usize,
    pub returned: usize,
    pub has_more: bool,
}

/// `GET /api/xandeum/recommendations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecommendationsResponse {
    pub recommendations: Vec<Recommendation>,
    /// Online nodes.
    pub total_evaluated: usize,
    /// Online nodes that pass the filters.
    pub total_eligible: usize,
    pub filters: RecommendationFilters,
    pub timestamp: i64,
}

/// One node worth staking with, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Recommendation {
    /// 1 for the best.
    pub rank: usize,
    pub address: String,
    pub pubkey: Option<String>,
    pub score: f64,
    pub tier: String,
    pub scores: Scores,
    pub uptime_days: f64,
    pub storage_committed: Option<u64>,
    pub storage_usage_percent: Option<f64>,
    pub peer_count: usize,
    pub version: Option<String>,
    pub is_public: Option<bool>,
    pub reasons: Vec<String>,
}

/// `GET /api/xandeum/pnodes/compare`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CompareResponse {
    /// In the order asked.
    pub comparison: Vec<ComparedNode>,
    pub winners: Winners,
    pub recommendation: CompareRecommendation,
    pub summary: CompareSummary,
    pub timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComparedNode {
    pub address: String,
    pub pubkey: Option<String>,
    pub is_online: bool,
    pub score: f64,
    pub tier: String,
    pub scores: Scores,
    pub uptime: Option<u64>,
    pub version: Option<String>,
    pub storage_committed: Option<u64>,
    pub storage_used: Option<u64>,
    pub storage_usage_percent: Option<f64>,
    pub peer_count: usize,
    pub is_public: Option<bool>,
    pub consistency_score: f64,
}

/// The address of the compared node that is best at each figure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Winners {
    pub score: Option<String>,
    pub trust: Option<String>,
    pub capacity: Option<String>,
    pub uptime: Option<String>,
    pub storage_committed: Option<String>,
    pub peer_count: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CompareRecommendation {
    pub recommended_node: Option<String>,
    pub reason: Option<String>,
    pub considerations: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CompareSummary {
    pub nodes_compared: usize,
    /// Highest score minus lowest.
    pub score_spread: f64,
}

/// `GET /api/xandeum/registry`: every known node, online and offline, in address order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegistryPage<N = NodeView> {
    /// Known nodes.
    pub count: usize,
    pub skip: usize,
    pub limit: usize,
    pub items: Vec<N>,
}

/// `GET /api/xandeum/graveyard`: nodes offline for at least `threshold_days`, longest gone
/// first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GraveyardPage<N = NodeView> {
    /// Nodes in the graveyard.
    pub count: usize,
    pub threshold_days: i64,
    pub items: Vec<N>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Online,
    Offline,
}

/// `GET /api/xandeum/registry/{address}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegistryEntryResponse {
    pub entry: NodeView,
    pub status: NodeState,
    /// The seed's lightweight status of the address, as stored (absent before the first cycle
    /// that stored it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pnode_status: Option<PnodeStatus>,
}

/// The seed's `pnodes_status`: one row per address, rewritten when the status or the seed
/// that reported the node changes, and at least every few minutes while it is seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PnodeStatus {
    pub status: LightStatus,
    /// The seed (IP node) that last reported the node.
    pub last_ip: Option<String>,
    /// Unix seconds, to within the rewrite period.
    pub last_seen: i64,
    /// When the row was last written (unix seconds).
    pub updated_at: i64,
}

/// `public`, `private`, `offline`, or `unknown` (online, but not said which).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum LightStatus {
    Public,
    Private,
    Offline,
    Unknown,
}

impl LightStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            LightStatus::Public => "public",
            LightStatus::Private => "private",
            LightStatus::Offline => "offline",
            LightStatus::Unknown => "unknown",
        }
    }

    pub fn parse(text: &str) -> Option<LightStatus> {
        [
            LightStatus::Public,
            LightStatus::Private,
            LightStatus::Offline,
            LightStatus::Unknown,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum PruneStatus {
    Success,
}

/// `DELETE /api/xandeum/prune`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PruneResponse {
    pub status: PruneStatus,
    pub threshold_days: i64,
    pub deleted_count: u64,
}

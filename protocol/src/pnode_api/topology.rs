//! The two answers that depend only on the snapshot and are large (~6 and ~13 MB at 10,000
//! nodes): the server serialises them on the first request after a cycle and copies the bytes
//! after that.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::network::SnapshotSummary;
use crate::prpc::{NodeStats, ParseTally, PodReport};

/// The gossip graph: the seeds, the online pNodes, and an edge from each seed to each pNode
/// it reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkTopology {
    pub nodes: Vec<TopologyNode>,
    pub edges: Vec<TopologyEdge>,
    pub stats: TopologyStats,
}

/// `GET /api/xandeum/network/topology`: the graph and the time of the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopologyResponse {
    #[serde(flatten)]
    pub topology: NetworkTopology,
    pub timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TopologyNode {
    /// A seed (group `ip`).
    IpNode {
        id: String,
        label: String,
        group: TopologyGroup,
        properties: SeedProperties,
    },
    /// An online pNode (group `public` or `private`).
    Pnode {
        id: String,
        label: String,
        group: TopologyGroup,
        properties: PnodeProperties,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum TopologyGroup {
    Ip,
    Public,
    Private,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeedProperties {
    pub version: Option<String>,
    pub responding: bool,
    pub pod_count: Option<usize>,
    pub latency_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PnodeProperties {
    pub version: Option<String>,
    pub score: f64,
    pub tier: String,
    pub storage_committed: Option<u64>,
    pub peer_count: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    GossipConnection,
}

/// A seed reported a pNode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopologyEdge {
    /// The seed.
    pub source: String,
    /// The pNode's address.
    pub target: String,
    #[serde(rename = "type")]
    pub kind: EdgeKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopologyStats {
    pub ip_nodes: usize,
    pub pnodes: usize,
    pub edges: usize,
    pub avg_connections_per_pnode: f64,
}

/// `GET /api/xandeum/all-nodes`: each seed's answer as it came, keyed by seed.
// Generic over how the seeds are written: the server writes the map serialised once per
// snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AllNodesResponse<S = BTreeMap<String, SeedAnswer>> {
    pub summary: SnapshotSummary,
    pub nodes: S,
    pub timestamp: i64,
}

/// What one seed answered in the last cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeedAnswer {
    pub version: Option<String>,
    pub stats: Option<NodeStats>,
    /// `null` when the pod list could not be had.
    pub pods: Option<Vec<PodReport>>,
    /// `get-pods-with-stats`, or the `get-pods` fallback.
    pub pods_method: Option<String>,
    pub error: Option<String>,
    pub latency_ms: u64,
    pub polled_at: i64,
    /// What was dropped while reading the answer.
    pub rejected: ParseTally,
}

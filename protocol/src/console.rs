//! `GET /api/admin/live`: what the web console shows live, pushed to admins every couple of
//! seconds over one WebSocket.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::pnode_api::network::SnapshotSummary;
use crate::stream::InstanceConnections;

/// Most connections one `connections` message lists (the counts are always complete).
pub const MAX_LISTED_CONNECTIONS: usize = 500;

/// One frame of the admin live socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AdminLiveMessage {
    Overview(Overview),
    /// Every instance's sockets, at most [`MAX_LISTED_CONNECTIONS`] of them listed.
    Connections {
        instances: Vec<InstanceConnections>,
        producers: u64,
        consumers: u64,
        /// Whether some connections were left out of the lists.
        truncated: bool,
    },
}

/// The system at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Overview {
    pub instances: Vec<InstanceLoad>,
    pub producers: u64,
    pub consumers: u64,
    /// Messages acked to producers per second, over every instance.
    pub messages_in_per_sec: f64,
    /// Data frames queued to consumers per second, over every instance.
    pub deliveries_per_sec: f64,
    /// The pNode network as this instance serves it; absent before the first cycle.
    pub pnodes: Option<SnapshotSummary>,
    /// Registry nodes by status (`UP`, `DOWN`, …); absent when the count could not be read.
    pub registry: Option<BTreeMap<String, i64>>,
    pub timestamp: DateTime<Utc>,
}

/// One instance's load, from its latest report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceLoad {
    pub instance: String,
    pub reported_at: DateTime<Utc>,
    pub producers: u64,
    pub consumers: u64,
    pub messages_in_per_sec: f64,
    pub deliveries_per_sec: f64,
}

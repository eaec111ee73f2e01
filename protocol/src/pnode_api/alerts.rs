//! Alerts over the network (`/alerts`, `/alerts/critical`) and of one node.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::node::{Alert, AlertType};
use super::queries::AlertFilters;

/// `GET /api/xandeum/alerts` and `/alerts/critical`. Nodes with the most critical alerts come
/// first, then those with the most alerts, then by address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertsResponse {
    /// Over every alert that passes the filters, not only the listed nodes'.
    pub summary: AlertSummary,
    /// Nodes with at least one critical alert, at most `limit`.
    pub critical_nodes: Vec<CriticalNode>,
    /// Nodes with an alert, at most `limit`.
    pub nodes: Vec<NodeAlerts>,
    pub nodes_checked: usize,
    pub nodes_with_alerts: usize,
    pub filters: AlertFilters,
    pub timestamp: i64,
}

/// Alerts counted by severity and by type.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AlertSummary {
    pub total: usize,
    pub critical: usize,
    pub warning: usize,
    pub info: usize,
    pub by_type: BTreeMap<AlertType, usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CriticalNode {
    pub address: String,
    /// Every alert of the node that passes the filters.
    pub alert_count: usize,
    pub critical_alerts: Vec<Alert>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeAlerts {
    pub address: String,
    pub is_online: bool,
    pub alerts: Vec<Alert>,
}

/// `GET /api/xandeum/pnodes/{address}/alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeAlertsResponse {
    pub address: String,
    pub alerts: Vec<Alert>,
    pub summary: AlertSummary,
    pub node_info: NodeInfo,
    pub timestamp: i64,
}

/// The figures the alerts are about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeInfo {
    pub is_online: bool,
    pub version: Option<String>,
    pub uptime: Option<u64>,
    pub storage_usage_percent: Option<f64>,
    pub peer_count: usize,
    pub score: f64,
    pub tier: String,
    pub last_seen: i64,
}

//! `GET /api/admin/pollers`: each pRPC poller's live state on the instance asked.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PollersResponse {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = "uuid"))]
    pub instance: Uuid,
    /// Whether this instance holds the lease, and so polls.
    pub leader: bool,
    pub interval_seconds: u64,
    /// The cycle of the snapshot this instance serves.
    pub snapshot_cycle: i64,
    pub pollers: Vec<PollerStatus>,
}

/// Where a poller stands with its seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum PollerState {
    /// Not asked to poll yet (followers' pollers stay here).
    #[default]
    Idle,
    /// The last poll succeeded.
    Ok,
    /// The last poll failed.
    Failing,
    /// Skipping cycles after failures.
    Backoff,
}

/// One poller's health.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PollerStatus {
    pub seed: String,
    pub url: String,
    pub state: PollerState,
    pub last_attempt: Option<i64>,
    pub last_success: Option<i64>,
    pub consecutive_failures: u32,
    pub last_latency_ms: Option<u64>,
    pub last_error: Option<String>,
    pub last_pod_count: Option<usize>,
    pub last_pods_method: Option<String>,
    pub polls_total: u64,
    pub failures_total: u64,
    pub restarts: u64,
}

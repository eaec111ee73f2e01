//! Bodies of the liveness and readiness probes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `GET /health`: the process is running and serving HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthBody {
    pub status: String,
}

/// The outcome of one dependency check of `GET /ready`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckOutcome {
    /// `"ok"` or `"failed"`.
    pub status: String,
    /// How long the check took, in milliseconds.
    pub latency_ms: u64,
    /// Why the check failed; absent when it passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /ready`: 200 with `status: "ready"` when every dependency answers, otherwise 503 with
/// `code: "not_ready"` and a `message` naming the failed checks. `checks` is keyed by
/// dependency name (`postgres`, `redis`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReadyBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub checks: BTreeMap<String, CheckOutcome>,
}

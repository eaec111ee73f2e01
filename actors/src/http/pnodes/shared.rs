//! What the pNode handlers share: the clock, the served snapshot, and how the errors of the
//! checks and computations below them are answered.

use std::sync::Arc;

use actix_web::HttpResponse;
use nodegrid_protocol::error::ErrorCode;
use nodegrid_protocol::pnode_api::params::InvalidQuery;
use nodegrid_services::pnodes::api::UnknownPnode;
use nodegrid_services::pnodes::view::NetworkView;
use serde_json::value::RawValue;

use crate::http::error::ApiError;
use crate::state::AppState;

/// Unix seconds: the `timestamp` of every answer.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The served view, or 503 `not_ready` before the first snapshot.
pub fn current(state: &AppState) -> Result<Arc<NetworkView>, ApiError> {
    let view = state.pnodes.cell.view();
    if view.cycle == 0 {
        return Err(ApiError::new(
            ErrorCode::NotReady,
            "no pNode snapshot yet: the first polling cycle has not completed",
        ));
    }
    Ok(view)
}

/// A JSON object cached per snapshot, answered with `"timestamp"` added, without parsing it
/// again.
pub fn json_with_timestamp(cached: &RawValue, timestamp: i64) -> HttpResponse {
    let text = cached.get();
    let body = match text.strip_suffix('}') {
        Some(open) if open.len() > 1 => format!("{open},\"timestamp\":{timestamp}}}"),
        _ => text.to_owned(),
    };
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body)
}

impl From<InvalidQuery> for ApiError {
    fn from(error: InvalidQuery) -> ApiError {
        ApiError::validation(error.0)
    }
}

impl From<UnknownPnode> for ApiError {
    fn from(error: UnknownPnode) -> ApiError {
        ApiError::not_found(error.to_string())
    }
}

//! `/api/admin/pollers`: each pRPC poller's live state, asked of its actor.

use actix_web::{HttpResponse, web};
use nodegrid_protocol::error::ErrorBody;
use nodegrid_protocol::pnode_api::pollers::PollersResponse;

use crate::http::auth::Admin;
use crate::http::error::ApiError;
use crate::pnodes::aggregator::GetPollers;
use crate::pnodes::poller::GetStatus;
use crate::state::AppState;

/// Each poller's live state, asked of its actor, and whether this instance leads. A poller
/// that does not answer (it is restarting) is left out.
#[utoipa::path(get, path = "/api/admin/pollers", tag = "admin",
    responses(
        (status = 200, description = "Each pRPC poller's live state", body = PollersResponse),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn pollers(state: web::Data<AppState>, _admin: Admin) -> Result<HttpResponse, ApiError> {
    let (leader, pollers) = state
        .pnodes
        .aggregator
        .send(GetPollers)
        .await
        .map_err(ApiError::internal)?;
    let mut statuses = Vec::with_capacity(pollers.len());
    for poller in pollers {
        if let Ok(status) = poller.send(GetStatus).await {
            statuses.push(status);
        }
    }
    Ok(HttpResponse::Ok().json(PollersResponse {
        instance: state.instance_id,
        leader,
        interval_seconds: state.pnodes.settings.interval.as_secs(),
        snapshot_cycle: state.pnodes.cell.cycle(),
        pollers: statuses,
    }))
}

//! `/node/{address}/history`, `/node/{address}/metrics-summary` and `/nodes/history-status`:
//! the routes that read the history in Postgres.

use actix_web::{HttpResponse, web};
use nodegrid_protocol::error::ErrorBody;
use nodegrid_protocol::pnode_api::history::{
    HistoryStatusResponse, MetricsSummary, NodeHistoryResponse,
};
use nodegrid_protocol::pnode_api::queries::{DaysQuery, NodeHoursQuery};
use nodegrid_services::pnodes::api::{self, UnknownPnode};
use nodegrid_services::pnodes::store::NodeHistoryRow;

use super::shared::now;
use crate::http::error::ApiError;
use crate::state::AppState;

const DAY_SECS: i64 = 86_400;

/// The history rows of `address` since `since`; 404 when the node is neither in the snapshot
/// nor in the history.
async fn known_node_history(
    state: &AppState,
    address: &str,
    since: i64,
) -> Result<Vec<NodeHistoryRow>, ApiError> {
    let rows = state
        .pnodes
        .store
        .node_history(address, since)
        .await
        .map_err(ApiError::internal)?;
    if rows.is_empty() && state.pnodes.cell.view().node(address).is_none() {
        return Err(UnknownPnode(address.to_owned()).into());
    }
    Ok(rows)
}

#[utoipa::path(get, path = "/api/xandeum/node/{address}/history", tag = "pnodes",
    params(("address" = String, Path, description = "The pNode address, host:port"), DaysQuery),
    responses(
        (status = 200, description = "One pNode's history", body = NodeHistoryResponse),
        (status = 400, description = "`validation_failed` or `bad_request`", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown pNode", body = ErrorBody),
    )
)]
pub async fn node_history(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<DaysQuery>,
) -> Result<HttpResponse, ApiError> {
    let days = query.check()?;
    let address = path.into_inner();
    let rows = known_node_history(&state, &address, now() - days * DAY_SECS).await?;
    Ok(HttpResponse::Ok().json(api::history::node_history(address, days, rows, now())))
}

#[utoipa::path(get, path = "/api/xandeum/node/{address}/metrics-summary", tag = "pnodes",
    params(("address" = String, Path, description = "The pNode address, host:port"), NodeHoursQuery),
    responses(
        (status = 200, description = "Min, average and max of one pNode's history", body = MetricsSummary),
        (status = 400, description = "`validation_failed` or `bad_request`", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown pNode", body = ErrorBody),
    )
)]
pub async fn node_metrics_summary(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<NodeHoursQuery>,
) -> Result<HttpResponse, ApiError> {
    let hours = query.node_window()?;
    let address = path.into_inner();
    let rows = known_node_history(&state, &address, now() - hours * 3_600).await?;
    Ok(HttpResponse::Ok().json(api::history::metrics_summary(address, hours, &rows, now())))
}

#[utoipa::path(get, path = "/api/xandeum/nodes/history-status", tag = "pnodes",
    responses(
        (status = 200, description = "What the history holds", body = HistoryStatusResponse),
    )
)]
pub async fn history_status(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let status = state
        .pnodes
        .store
        .history_status()
        .await
        .map_err(ApiError::internal)?;
    let settings = &state.pnodes.settings;
    Ok(HttpResponse::Ok().json(HistoryStatusResponse {
        status,
        retention_days: settings.retention.as_secs() / 86_400,
        interval_seconds: settings.interval.as_secs(),
        timestamp: now(),
    }))
}

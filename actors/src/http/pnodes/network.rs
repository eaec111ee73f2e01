//! The overview, `/health`, `/network/*`, `/operators`, `/all-nodes` and
//! `/node/{address}/consistency`.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use nodegrid_protocol::error::ErrorBody;
use nodegrid_protocol::pnode_api::history::{GrowthResponse, NetworkHistoryResponse};
use nodegrid_protocol::pnode_api::network::{
    AnalyticsResponse, ApiOverview, ConsistencyResponse, NetworkHealthResponse,
    NodeConsistencyResponse, OperatorsResponse, SnapshotHealth, SnapshotStatus,
};
use nodegrid_protocol::pnode_api::queries::{ConsistencyQuery, HoursQuery, OperatorsQuery};
use nodegrid_protocol::pnode_api::topology::{AllNodesResponse, SeedAnswer, TopologyResponse};
use nodegrid_services::pnodes::api;
use nodegrid_services::pnodes::store::NetworkHistoryRow;

use super::shared::{current, json_with_timestamp, now};
use crate::http::error::ApiError;
use crate::state::AppState;

#[utoipa::path(get, path = "/api/xandeum/", tag = "pnodes",
    responses(
        (status = 200, description = "API overview", body = ApiOverview),
    )
)]
pub async fn overview() -> HttpResponse {
    HttpResponse::Ok().json(ApiOverview::new(now()))
}

/// healthy while the snapshot is younger than twice the interval, degraded after, unhealthy
/// (503) without one.
#[utoipa::path(get, path = "/api/xandeum/health", tag = "pnodes",
    responses(
        (status = 200, description = "Snapshot freshness", body = SnapshotHealth),
        (status = 503, description = "unhealthy: no snapshot yet", body = SnapshotHealth),
    )
)]
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let settings = &state.pnodes.settings;
    let health = api::network::snapshot_health(
        &state.pnodes.cell.view(),
        settings.interval.as_secs(),
        settings.seeds.len(),
        now(),
    );
    if health.status == SnapshotStatus::Unhealthy {
        return HttpResponse::ServiceUnavailable().json(health);
    }
    HttpResponse::Ok().json(health)
}

/// The gossip graph, serialised once per snapshot.
#[utoipa::path(get, path = "/api/xandeum/network/topology", tag = "pnodes",
    responses(
        (status = 200, description = "Seeds, pNodes and gossip connections", body = TopologyResponse),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn topology(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let view = current(&state)?;
    Ok(json_with_timestamp(view.topology_json(), now()))
}

#[utoipa::path(get, path = "/api/xandeum/network/health", tag = "pnodes",
    responses(
        (status = 200, description = "Network health score, factors and alerts", body = NetworkHealthResponse),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn network_health(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let view = current(&state)?;
    Ok(HttpResponse::Ok().json(api::network::network_health(&view, now())))
}

#[utoipa::path(get, path = "/api/xandeum/network/history", tag = "pnodes",
    params(HoursQuery),
    responses(
        (status = 200, description = "Network figures per cycle", body = NetworkHistoryResponse),
        (status = 400, description = "`validation_failed` or `bad_request`", body = ErrorBody),
    )
)]
pub async fn network_history(
    state: web::Data<AppState>,
    query: web::Query<HoursQuery>,
) -> Result<HttpResponse, ApiError> {
    let hours = query.network_window()?;
    let rows = history_rows(&state, hours).await?;
    Ok(HttpResponse::Ok().json(api::history::network_history(rows, hours, now())))
}

#[utoipa::path(get, path = "/api/xandeum/network/growth", tag = "pnodes",
    params(HoursQuery),
    responses(
        (status = 200, description = "Change over the window", body = GrowthResponse),
        (status = 400, description = "`validation_failed` or `bad_request`", body = ErrorBody),
    )
)]
pub async fn network_growth(
    state: web::Data<AppState>,
    query: web::Query<HoursQuery>,
) -> Result<HttpResponse, ApiError> {
    let hours = query.network_window()?;
    let rows = history_rows(&state, hours).await?;
    Ok(HttpResponse::Ok().json(GrowthResponse {
        growth_metrics: api::history::growth(&rows, hours),
        timestamp: now(),
    }))
}

#[utoipa::path(get, path = "/api/xandeum/network/analytics", tag = "pnodes",
    responses(
        (status = 200, description = "Current state, growth, versions, advice", body = AnalyticsResponse),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn network_analytics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    const GROWTH_HOURS: i64 = 24;
    let view = current(&state)?;
    let rows = history_rows(&state, GROWTH_HOURS).await?;
    let growth = api::history::growth(&rows, GROWTH_HOURS);
    Ok(HttpResponse::Ok().json(api::network::analytics(&view, growth, now())))
}

/// The network's history rows of the last `hours`.
async fn history_rows(state: &AppState, hours: i64) -> Result<Vec<NetworkHistoryRow>, ApiError> {
    state
        .pnodes
        .store
        .network_history(now() - hours * 3_600)
        .await
        .map_err(ApiError::internal)
}

#[utoipa::path(get, path = "/api/xandeum/network/consistency", tag = "pnodes",
    params(ConsistencyQuery),
    responses(
        (status = 200, description = "Gossip consistency and flapping nodes", body = ConsistencyResponse),
        (status = 400, description = "`validation_failed` or `bad_request`", body = ErrorBody),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn network_consistency(
    state: web::Data<AppState>,
    query: web::Query<ConsistencyQuery>,
) -> Result<HttpResponse, ApiError> {
    let request = query.check()?;
    let view = current(&state)?;
    let flapping_below = state.pnodes.settings.analytics.alerts.flapping_consistency;
    Ok(HttpResponse::Ok().json(api::network::consistency(
        &view,
        request,
        flapping_below,
        now(),
    )))
}

#[utoipa::path(get, path = "/api/xandeum/node/{address}/consistency", tag = "pnodes",
    params(("address" = String, Path, description = "The pNode address, host:port")),
    responses(
        (status = 200, description = "One pNode's gossip consistency", body = NodeConsistencyResponse),
        (status = 404, description = "`not_found`: unknown pNode", body = ErrorBody),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn node_consistency(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = current(&state)?;
    let flapping_below = state.pnodes.settings.analytics.alerts.flapping_consistency;
    let answer = api::network::node_consistency(&view, &path, flapping_below, now())?;
    Ok(HttpResponse::Ok().json(answer))
}

#[utoipa::path(get, path = "/api/xandeum/operators", tag = "pnodes",
    params(OperatorsQuery),
    responses(
        (status = 200, description = "pNodes grouped by operator pubkey", body = OperatorsResponse),
        (status = 400, description = "`validation_failed` or `bad_request`", body = ErrorBody),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn operators(
    state: web::Data<AppState>,
    query: web::Query<OperatorsQuery>,
) -> Result<HttpResponse, ApiError> {
    let request = query.check()?;
    let view = current(&state)?;
    Ok(HttpResponse::Ok().json(api::operators::operators(&view, request, now())))
}

/// Each seed's answer as it came: the seeds' part is serialised once per snapshot and copied.
#[utoipa::path(get, path = "/api/xandeum/all-nodes", tag = "pnodes",
    responses(
        (status = 200, description = "Each seed's answer as it came", body = AllNodesResponse<BTreeMap<String, SeedAnswer>>),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn all_nodes(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let view = current(&state)?;
    let now = now();
    Ok(HttpResponse::Ok().json(AllNodesResponse {
        summary: api::snapshot_summary(&view, now),
        nodes: view.seeds_json(),
        timestamp: now,
    }))
}

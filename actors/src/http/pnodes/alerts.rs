//! `/alerts`, `/alerts/critical` and `/pnodes/{address}/alerts`.

use actix_web::{HttpResponse, web};
use nodegrid_protocol::error::ErrorBody;
use nodegrid_protocol::pnode_api::alerts::{AlertsResponse, NodeAlertsResponse};
use nodegrid_protocol::pnode_api::queries::{AlertsQuery, SeverityQuery};
use nodegrid_services::pnodes::api;

use super::shared::{current, now};
use crate::http::error::ApiError;
use crate::state::AppState;

#[utoipa::path(get, path = "/api/xandeum/alerts", tag = "pnodes",
    params(AlertsQuery),
    responses(
        (status = 200, description = "Alerts over the network", body = AlertsResponse),
        (status = 400, description = "`validation_failed` or `bad_request`", body = ErrorBody),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn alerts(
    state: web::Data<AppState>,
    query: web::Query<AlertsQuery>,
) -> Result<HttpResponse, ApiError> {
    let filters = query.check()?;
    let view = current(&state)?;
    Ok(HttpResponse::Ok().json(api::alert_views::alerts(&view, filters, now())))
}

#[utoipa::path(get, path = "/api/xandeum/alerts/critical", tag = "pnodes",
    params(AlertsQuery),
    responses(
        (status = 200, description = "Critical alerts only", body = AlertsResponse),
        (status = 400, description = "`validation_failed` or `bad_request`", body = ErrorBody),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn critical_alerts(
    state: web::Data<AppState>,
    query: web::Query<AlertsQuery>,
) -> Result<HttpResponse, ApiError> {
    let filters = query.check_critical()?;
    let view = current(&state)?;
    Ok(HttpResponse::Ok().json(api::alert_views::alerts(&view, filters, now())))
}

#[utoipa::path(get, path = "/api/xandeum/pnodes/{address}/alerts", tag = "pnodes",
    params(("address" = String, Path, description = "The pNode address, host:port"), SeverityQuery),
    responses(
        (status = 200, description = "One pNode's alerts", body = NodeAlertsResponse),
        (status = 400, description = "`validation_failed` or `bad_request`", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown pNode", body = ErrorBody),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn node_alerts(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<SeverityQuery>,
) -> Result<HttpResponse, ApiError> {
    let severity = query.check()?;
    let view = current(&state)?;
    let answer = api::alert_views::node_alerts(&view, &path, severity, now())?;
    Ok(HttpResponse::Ok().json(answer))
}

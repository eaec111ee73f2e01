//! `/api/xandeum`: the Xandeum PNode Developer API (v1.1.0) surface, answered from the
//! in-memory snapshot; only history reads Postgres. Public reads, except the admin prune and
//! `/api/admin/pollers`.
//!
//! The handlers are thin: they check the query (the types of
//! `nodegrid_protocol::pnode_api`), call the pure function of `nodegrid_services::pnodes::api`
//! that computes the answer from the served view, and send the typed body.
//!
//! - [`nodes`] answers `/pnodes`, `/recommendations`, `/pnodes/compare`.
//! - [`registry`] answers `/registry`, `/registry/{address}`, `/graveyard`, `/prune`.
//! - [`network`]: the overview, `/health`, `/network/*`, `/operators`, `/all-nodes`,
//!   `/node/{address}/consistency`.
//! - [`alerts`] answers `/alerts`, `/alerts/critical`, `/pnodes/{address}/alerts`.
//! - [`history`] answers `/node/{address}/history`, `/node/{address}/metrics-summary`,
//!   `/nodes/history-status`.
//! - [`pollers`] answers `/api/admin/pollers`.
//! - [`shared`]: the clock, the served snapshot, error conversions.

pub mod alerts;
pub mod history;
pub mod network;
pub mod nodes;
pub mod pollers;
pub mod registry;
pub mod shared;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::web;
use nodegrid_services::identity::retry_after_secs;

use crate::http::auth::client_ip;
use crate::http::error::ApiError;
use crate::http::routing::{get_only as get, resource};
use crate::state::AppState;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(
            web::scope("/api/xandeum")
                .wrap(from_fn(limit_per_client))
                .service(get("", network::overview))
                .service(get("/", network::overview))
                .service(get("/health", network::health))
                .service(get("/pnodes", nodes::pnodes))
                .service(get("/pnodes/compare", nodes::compare))
                .service(get("/pnodes/{address}/alerts", alerts::node_alerts))
                .service(get("/recommendations", nodes::recommendations))
                .service(get("/registry", registry::registry))
                .service(get("/registry/{address}", registry::registry_entry))
                .service(get("/graveyard", registry::graveyard))
                .service(resource("/prune").route(web::delete().to(registry::prune)))
                .service(get("/network/topology", network::topology))
                .service(get("/network/health", network::network_health))
                .service(get("/network/history", network::network_history))
                .service(get("/network/growth", network::network_growth))
                .service(get("/network/analytics", network::network_analytics))
                .service(get("/network/consistency", network::network_consistency))
                .service(get("/operators", network::operators))
                .service(get("/all-nodes", network::all_nodes))
                .service(get("/alerts", alerts::alerts))
                .service(get("/alerts/critical", alerts::critical_alerts))
                .service(get("/node/{address}/history", history::node_history))
                .service(get(
                    "/node/{address}/metrics-summary",
                    history::node_metrics_summary,
                ))
                .service(get(
                    "/node/{address}/consistency",
                    network::node_consistency,
                ))
                .service(get("/nodes/history-status", history::history_status)),
        )
        .service(get("/api/admin/pollers", pollers::pollers));
}

/// Middleware of the `/api/xandeum` scope: the per-client limit. Answers 429 `rate_limited`
/// with `Retry-After`, counted in `nodegrid_rate_limited_total{scope="pnode_api"}`.
async fn limit_per_client(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if let Some(state) = request.app_data::<web::Data<AppState>>() {
        let limiter = &state.pnodes.api_limiter;
        if !limiter.is_off() {
            let client = client_ip(request.request(), &state.trusted_proxies);
            if let Err(retry_after) = limiter.check(client, std::time::Instant::now()) {
                metrics::counter!(nodegrid_services::identity::RATE_LIMITED_TOTAL, "scope" => "pnode_api", "key" => "ip")
                    .increment(1);
                let error = ApiError::RateLimited {
                    retry_after_secs: retry_after_secs(retry_after),
                    message: "too many requests to the pNode API from this address".to_owned(),
                };
                let response = actix_web::ResponseError::error_response(&error);
                return Ok(request.into_response(response).map_into_right_body());
            }
        }
    }
    Ok(next.call(request).await?.map_into_left_body())
}

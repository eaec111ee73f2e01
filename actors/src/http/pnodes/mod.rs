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
//! - [`graphql`] answers `/graphql` from the same view and functions as REST.
//! - [`live`] serves `/ws/pnodes`, the network's changes as they happen.
//! - [`pollers`] answers `/api/admin/pollers`.
//! - [`shared`]: the clock, the served snapshot, error conversions.

pub mod alerts;
pub mod graphql;
pub mod history;
pub mod live;
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

use nodegrid_protocol::api_tokens::ApiScope;
use nodegrid_protocol::error::ErrorCode;
use nodegrid_services::identity::api_tokens::ApiTokens;

use crate::http::auth::{bearer_token, client_ip};
use crate::http::error::ApiError;
use crate::http::routing::{get_only as get, resource};
use crate::pnodes::metrics::API_REQUESTS;
use crate::state::AppState;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(
            web::scope("/api/xandeum")
                .wrap(from_fn(limit_per_client))
                .service(get("", network::overview))
                .service(get("/", network::overview))
                .service(get("/health", network::health))
                .service(resource("/ws/pnodes").route(web::get().to(live::live)))
                .service(
                    resource("/graphql")
                        .route(web::post().to(graphql::execute))
                        .route(web::get().to(graphql::page)),
                )
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

/// Middleware of the `/api/xandeum` scope: the per-client limit, or, for a request with an API
/// token of the `xandeum:unlimited` scope, the token's own (none unless the token has a rate).
/// Answers 429 `rate_limited` with `Retry-After`, counted in
/// `nodegrid_rate_limited_total{scope="pnode_api"}`; a token that is not valid (revoked,
/// expired, unknown) is refused with 401 `token_invalid` rather than served as anonymous.
async fn limit_per_client(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if let Some(state) = request.app_data::<web::Data<AppState>>() {
        let now = std::time::Instant::now();
        let presented = bearer_token(request.request()).filter(|t| ApiTokens::is_api_token(t));
        let grant = match presented {
            Some(token) => match state
                .api_tokens
                .verify(&token, chrono::Utc::now().timestamp())
            {
                Ok(grant) => Some(grant),
                Err(_) => {
                    metrics::counter!(nodegrid_services::identity::AUTH_TOKEN_REJECTIONS_TOTAL, "reason" => "api_token").increment(1);
                    let error =
                        ApiError::new(ErrorCode::TokenInvalid, "the API token is not valid");
                    let response = actix_web::ResponseError::error_response(&error);
                    return Ok(request.into_response(response).map_into_right_body());
                }
            },
            None => None,
        };
        let limited = match grant.filter(|grant| grant.has(ApiScope::XandeumUnlimited)) {
            Some(grant) => {
                metrics::counter!(API_REQUESTS, "credential" => "api_token").increment(1);
                grant.rate_per_sec.and_then(|rate| {
                    let rate = f64::from(rate);
                    state
                        .pnodes
                        .token_limiter
                        .check_at(grant.token_id, rate, rate, now)
                        .err()
                        .map(|retry_after| {
                            (
                                retry_after,
                                "api_token",
                                "too many requests to the pNode API with this token",
                            )
                        })
                })
            }
            None => {
                metrics::counter!(API_REQUESTS, "credential" => "anonymous").increment(1);
                let client = client_ip(request.request(), &state.trusted_proxies);
                state
                    .pnodes
                    .api_limiter
                    .check(client, now)
                    .err()
                    .map(|retry_after| {
                        (
                            retry_after,
                            "ip",
                            "too many requests to the pNode API from this address",
                        )
                    })
            }
        };
        if let Some((retry_after, key, message)) = limited {
            metrics::counter!(nodegrid_services::identity::RATE_LIMITED_TOTAL, "scope" => "pnode_api", "key" => key)
                .increment(1);
            let error = ApiError::RateLimited {
                retry_after_secs: retry_after_secs(retry_after),
                message: message.to_owned(),
            };
            let response = actix_web::ResponseError::error_response(&error);
            return Ok(request.into_response(response).map_into_right_body());
        }
    }
    Ok(next.call(request).await?.map_into_left_body())
}

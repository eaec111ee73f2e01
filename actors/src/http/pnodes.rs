//! `/api/xandeum`: the Xandeum PNode Developer API (v1.1.0) surface, answered from the
//! in-memory snapshot; only history reads Postgres. Public reads, except the admin prune and
//! `/api/admin/pollers`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::{HttpRequest, HttpResponse, web};
use nodegrid_protocol::control::{ControlEnvelope, ControlEvent};
use nodegrid_protocol::error::{ErrorBody, ErrorCode};
use nodegrid_services::identity::retry_after_secs;
use nodegrid_services::pnodes::alerts::{ALERT_TYPES, Alert, Severity};
use nodegrid_services::pnodes::scoring::round2;
use nodegrid_services::pnodes::store::NodeHistoryRow;
use nodegrid_services::pnodes::view::{NetworkView, NodeView, SortKey};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use utoipa::IntoParams;

use crate::http::auth::{Admin, caller, client_ip};
use crate::http::error::ApiError;
use crate::http::resource;
use crate::pnodes::aggregator::GetPollers;
use crate::pnodes::poller::GetStatus;
use crate::state::AppState;

const API_VERSION: &str = "1.1.0";
const MAX_SKIP: usize = 10_000_000;

pub fn routes(config: &mut web::ServiceConfig) {
    use crate::http::get_only as get;
    config
        .service(
            web::scope("/api/xandeum")
                .wrap(from_fn(limit_per_client))
                .service(get("", overview))
                .service(get("/", overview))
                .service(get("/health", health))
                .service(get("/pnodes", pnodes))
                .service(get("/pnodes/compare", compare))
                .service(get("/pnodes/{address}/alerts", node_alerts))
                .service(get("/recommendations", recommendations))
                .service(get("/registry", registry))
                .service(get("/registry/{address}", registry_entry))
                .service(get("/graveyard", graveyard))
                .service(resource("/prune").route(web::delete().to(prune)))
                .service(get("/network/topology", topology))
                .service(get("/network/health", network_health))
                .service(get("/network/history", network_history))
                .service(get("/network/growth", network_growth))
                .service(get("/network/analytics", network_analytics))
                .service(get("/network/consistency", network_consistency))
                .service(get("/operators", operators))
                .service(get("/all-nodes", all_nodes))
                .service(get("/alerts", alerts))
                .service(get("/alerts/critical", critical_alerts))
                .service(get("/node/{address}/history", node_history))
                .service(get("/node/{address}/metrics-summary", node_metrics_summary))
                .service(get("/node/{address}/consistency", node_consistency))
                .service(get("/nodes/history-status", history_status)),
        )
        .service(get("/api/admin/pollers", pollers));
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

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The served view, or 503 before the first snapshot.
fn current(state: &AppState) -> Result<Arc<NetworkView>, ApiError> {
    let view = state.pnodes.cell.view();
    if view.cycle == 0 {
        return Err(ApiError::new(
            ErrorCode::NotReady,
            "no pNode snapshot yet: the first polling cycle has not completed",
        ));
    }
    Ok(view)
}

/// The node at `address` in `view` with its alerts, or 404 `not_found`.
fn known_node<'a>(
    view: &'a NetworkView,
    address: &str,
) -> Result<(&'a NodeView, &'a [Alert]), ApiError> {
    view.node(address)
        .ok_or_else(|| ApiError::not_found(format!("pNode {address} is not known")))
}

fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    name: &str,
    value: Option<T>,
    default: T,
    min: T,
    max: T,
) -> Result<T, ApiError> {
    let value = value.unwrap_or(default);
    // Written so that NaN, which compares false with everything, is refused too.
    if !(value >= min && value <= max) {
        return Err(ApiError::validation(format!(
            "{name} must be between {min} and {max}, not {value}"
        )));
    }
    Ok(value)
}

fn one_of<'a>(
    name: &str,
    value: Option<&'a str>,
    default: &'a str,
    allowed: &[&str],
) -> Result<&'a str, ApiError> {
    let value = value.unwrap_or(default);
    if !allowed.contains(&value) {
        return Err(ApiError::validation(format!(
            "{name} must be one of {}, not {value:?}",
            allowed.join(", ")
        )));
    }
    Ok(value)
}

fn snapshot_age(view: &NetworkView) -> i64 {
    now().saturating_sub(view.taken_at).max(0)
}

fn summary_json(view: &NetworkView) -> Value {
    let s = &view.summary;
    json!({
        "total_pnodes": s.total_pnodes,
        "online_pnodes": s.online_pnodes,
        "offline_pnodes": s.offline_pnodes,
        "public_pnodes": s.public_pnodes,
        "private_pnodes": s.private_pnodes,
        "total_ip_nodes": s.total_ip_nodes,
        "responding_ip_nodes": s.responding_ip_nodes,
        "snapshot_age_seconds": snapshot_age(view),
        "last_updated": view.taken_at,
        "cycle": view.cycle,
    })
}

fn network_stats_json(view: &NetworkView) -> Value {
    let s = &view.summary;
    json!({
        "total_storage_committed": s.total_storage_committed,
        "total_storage_used": s.total_storage_used,
        "avg_storage_usage_percent": s.avg_storage_usage_percent,
        "avg_uptime_hours": s.avg_uptime_hours,
        "avg_peer_count": s.avg_peer_count,
        "avg_cpu_percent": s.avg_cpu_percent,
        "avg_ram_used_percent": s.avg_ram_used_percent,
        "total_active_streams": s.total_active_streams,
        "total_bytes_processed": s.total_bytes_processed,
        "version_distribution": s.version_distribution,
        "latest_version": s.latest_version,
        "avg_score": s.avg_score,
    })
}

// ---------------------------------------------------------------------------------------------
// Overview and health

#[utoipa::path(get, path = "/api/xandeum/", tag = "pnodes",
    responses(
        (status = 200, description = "API overview", body = Object),
    )
)]
pub async fn overview() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "api_name": "Xandeum PNode Developer API (nodegrid)",
        "version": API_VERSION,
        "description": "pNode analytics served from nodegrid's in-memory snapshot",
        "core_endpoints": {
            "health": "/api/xandeum/health",
            "pnodes": "/api/xandeum/pnodes",
            "recommendations": "/api/xandeum/recommendations",
            "registry": "/api/xandeum/registry",
            "graveyard": "/api/xandeum/graveyard",
            "operators": "/api/xandeum/operators",
            "alerts": "/api/xandeum/alerts",
            "compare": "/api/xandeum/pnodes/compare",
            "network_health": "/api/xandeum/network/health",
            "network_topology": "/api/xandeum/network/topology",
            "network_history": "/api/xandeum/network/history",
            "network_growth": "/api/xandeum/network/growth",
            "network_analytics": "/api/xandeum/network/analytics",
            "network_consistency": "/api/xandeum/network/consistency",
            "all_nodes": "/api/xandeum/all-nodes",
            "node_history": "/api/xandeum/node/{address}/history",
            "history_status": "/api/xandeum/nodes/history-status",
        },
        "timestamp": now(),
    }))
}

/// healthy while the snapshot is younger than twice the interval, degraded after, unhealthy
/// (503) without one.
#[utoipa::path(get, path = "/api/xandeum/health", tag = "pnodes",
    responses(
        (status = 200, description = "Snapshot freshness", body = Object),
        (status = 503, description = "unhealthy: no snapshot yet"),
    )
)]
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let view = state.pnodes.cell.view();
    let interval = state.pnodes.settings.interval.as_secs().max(1);
    let cache_ttl = interval;
    if view.cycle == 0 {
        return HttpResponse::ServiceUnavailable().json(json!({
            "status": "unhealthy",
            "message": "no pNode snapshot yet",
            "snapshot_age_seconds": null,
            "last_updated": null,
            "cache_ttl": cache_ttl,
            "total_pnodes": 0,
            "total_ip_nodes": state.pnodes.settings.seeds.len(),
            "timestamp": now(),
        }));
    }
    let age = snapshot_age(&view);
    let stale = age >= i64::try_from(interval * 2).unwrap_or(i64::MAX);
    HttpResponse::Ok().json(json!({
        "status": if stale { "degraded" } else { "healthy" },
        "message": if stale { "the snapshot is older than two polling intervals" } else { "snapshot is fresh" },
        "snapshot_age_seconds": age,
        "last_updated": view.taken_at,
        "cache_ttl": cache_ttl,
        "total_pnodes": view.summary.online_pnodes,
        "total_ip_nodes": view.summary.total_ip_nodes,
        "cycle": view.cycle,
        "timestamp": now(),
    }))
}

// ---------------------------------------------------------------------------------------------
// pNodes

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PnodesQuery {
    /// `online` (default), `offline` or `all`.
    status: Option<String>,
    /// 1 to 1000 [default: 100].
    limit: Option<usize>,
    /// Nodes to skip [default: 0].
    skip: Option<usize>,
    /// `last_seen`, `uptime`, `score` (default), `storage_used`, `storage_usage_percent` or `first_seen`.
    sort_by: Option<String>,
    /// `asc` or `desc` (default).
    sort_order: Option<String>,
    /// Only this exact version.
    version: Option<String>,
    /// Only public (`true`) or private (`false`) nodes.
    public: Option<bool>,
    /// Only nodes scoring at least this (0 to 100).
    min_score: Option<f64>,
    /// Part of the address or pubkey, any case.
    search: Option<String>,
}

/// The filtered, sorted page of nodes. The sort orders are precomputed per cycle; a request
/// walks one of them once, filtering, and copies the page's pre-serialised nodes.
#[utoipa::path(get, path = "/api/xandeum/pnodes", tag = "pnodes",
    params(PnodesQuery),
    responses(
        (status = 200, description = "A filtered, sorted page of pNodes", body = Object),
        (status = 400, description = "`validation_failed` or `bad_request`", body = ErrorBody),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn pnodes(
    state: web::Data<AppState>,
    query: web::Query<PnodesQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let status = one_of(
        "status",
        query.status.as_deref(),
        "online",
        &["online", "offline", "all"],
    )?;
    let limit = in_range("limit", query.limit, 100, 1, 1_000)?;
    let skip = in_range("skip", query.skip, 0, 0, MAX_SKIP)?;
    let sort_name = query.sort_by.as_deref().unwrap_or("score");
    let sort = SortKey::parse(sort_name).ok_or_else(|| {
        ApiError::validation(format!(
            "sort_by must be one of {}, not {sort_name:?}",
            SortKey::NAMES
        ))
    })?;
    let order = one_of(
        "sort_order",
        query.sort_order.as_deref(),
        "desc",
        &["asc", "desc"],
    )?;
    let min_score = query.min_score;
    if min_score.is_some_and(|score| !(0.0..=100.0).contains(&score)) {
        return Err(ApiError::validation("min_score must be between 0 and 100"));
    }
    let search = query
        .search
        .as_deref()
        .map(str::to_lowercase)
        .filter(|s| !s.is_empty());
    if search.as_ref().is_some_and(|s| s.len() > 200) {
        return Err(ApiError::validation("search is at most 200 characters"));
    }
    let view = current(&state)?;
    let matches = |index: usize| {
        let node = &view.nodes[index];
        (match status {
            "online" => node.is_online,
            "offline" => !node.is_online,
            _ => true,
        }) && query
            .version
            .as_ref()
            .is_none_or(|v| node.version.as_ref() == Some(v))
            && query
                .public
                .is_none_or(|p| node.is_public.unwrap_or(false) == p)
            && min_score.is_none_or(|min| node.score >= min)
            && search
                .as_ref()
                .is_none_or(|needle| view.search_text[index].contains(needle.as_str()))
    };
    let indexes = view.orders.get(sort);
    let walk: Box<dyn Iterator<Item = &u32>> = if order == "asc" {
        Box::new(indexes.iter())
    } else {
        Box::new(indexes.iter().rev())
    };
    let mut total = 0usize;
    let mut page: Vec<usize> = Vec::with_capacity(limit.min(view.nodes.len()));
    for &index in walk {
        let index = index as usize;
        if matches(index) {
            if total >= skip && page.len() < limit {
                page.push(index);
            }
            total += 1;
        }
    }
    let filters = json!({
        "status": status, "sort_by": sort_name, "sort_order": order,
        "version": query.version, "public": query.public, "min_score": min_score, "search": query.search,
    });
    let head = json!({
        "summary": summary_json(&view),
        "network_stats": network_stats_json(&view),
        "pagination": {"total": total, "limit": limit, "skip": skip, "returned": page.len(), "has_more": skip + page.len() < total},
        "filters": filters,
    });
    // `{…head…, "pnodes":[…], "timestamp":…}` without re-serialising the nodes.
    let mut body = head.to_string();
    body.pop();
    body.push_str(",\"pnodes\":[");
    for (i, index) in page.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(view.node_json[*index].get());
    }
    let _ = write!(body, "],\"timestamp\":{}}}", now());
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecommendationsQuery {
    /// 1 to 50 [default: 10].
    limit: Option<usize>,
    /// Least uptime, in days [default: 7].
    min_uptime_days: Option<f64>,
    /// Only public nodes [default: false].
    require_public: Option<bool>,
}

#[utoipa::path(get, path = "/api/xandeum/recommendations", tag = "pnodes",
    params(RecommendationsQuery),
    responses(
        (status = 200, description = "The best online pNodes to stake with", body = Object),
        (status = 400, description = "`validation_failed` or `bad_request`", body = ErrorBody),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn recommendations(
    state: web::Data<AppState>,
    query: web::Query<RecommendationsQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = in_range("limit", query.limit, 10, 1, 50)?;
    let min_days = in_range("min_uptime_days", query.min_uptime_days, 7.0, 0.0, 3_650.0)?;
    let require_public = query.require_public.unwrap_or(false);
    let view = current(&state)?;
    let online: Vec<&NodeView> = view.nodes.iter().filter(|n| n.is_online).collect();
    let mut eligible: Vec<&NodeView> = online
        .iter()
        .copied()
        .filter(|n| n.uptime.unwrap_or(0) as f64 >= min_days * 86_400.0)
        .filter(|n| !require_public || n.is_public == Some(true))
        .collect();
    eligible.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.address.cmp(&b.address))
    });
    let recommendations: Vec<Value> = eligible
        .iter()
        .take(limit)
        .enumerate()
        .map(|(rank, node)| {
            let mut reasons = Vec::new();
            if node.scores.trust.breakdown.uptime >= 30.0 {
                reasons.push("long, stable uptime");
            }
            if node.peer_count >= 3 {
                reasons.push("well connected in gossip");
            }
            if node.scores.trust.breakdown.version_compliance > 0.0 {
                reasons.push("runs the latest version");
            }
            if node.scores.capacity.breakdown.usage_balance >= 40.0 {
                reasons.push("storage usage in the optimal range");
            }
            json!({
                "rank": rank + 1,
                "address": node.address,
                "pubkey": node.pubkey,
                "score": node.score,
                "tier": node.tier,
                "scores": node.scores,
                "uptime_days": round2(node.uptime.unwrap_or(0) as f64 / 86_400.0),
                "storage_committed": node.storage_committed,
                "storage_usage_percent": node.storage_usage_percent,
                "peer_count": node.peer_count,
                "version": node.version,
                "is_public": node.is_public,
                "reasons": reasons,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "recommendations": recommendations,
        "total_evaluated": online.len(),
        "total_eligible": eligible.len(),
        "filters": {"limit": limit, "min_uptime_days": min_days, "require_public": require_public},
        "timestamp": now(),
    })))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CompareQuery {
    /// Two to five addresses, comma-separated.
    addresses: Option<String>,
}

#[utoipa::path(get, path = "/api/xandeum/pnodes/compare", tag = "pnodes",
    params(CompareQuery),
    responses(
        (status = 200, description = "Two to five pNodes side by side", body = Object),
        (status = 400, description = "`validation_failed` or `bad_request`", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown pNode", body = ErrorBody),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn compare(
    state: web::Data<AppState>,
    query: web::Query<CompareQuery>,
) -> Result<HttpResponse, ApiError> {
    let addresses: Vec<&str> = query
        .addresses
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect();
    if !(2..=5).contains(&addresses.len()) {
        return Err(ApiError::validation(
            "addresses must name 2 to 5 pNodes, comma-separated",
        ));
    }
    let view = current(&state)?;
    let mut nodes = Vec::new();
    for address in &addresses {
        nodes.push(known_node(&view, address)?.0);
    }
    let winner = |metric: &dyn Fn(&NodeView) -> f64| {
        nodes
            .iter()
            .max_by(|a, b| metric(a).total_cmp(&metric(b)))
            .map(|n| n.address.clone())
    };
    let winners = json!({
        "score": winner(&|n| n.score),
        "trust": winner(&|n| n.scores.trust.score),
        "capacity": winner(&|n| n.scores.capacity.score),
        "uptime": winner(&|n| n.uptime.unwrap_or(0) as f64),
        "storage_committed": winner(&|n| n.storage_committed.unwrap_or(0) as f64),
        "peer_count": winner(&|n| n.peer_count as f64),
    });
    let best = nodes
        .iter()
        .max_by(|a, b| a.score.total_cmp(&b.score))
        .copied();
    let comparison: Vec<Value> = nodes
        .iter()
        .map(|n| json!({
            "address": n.address, "pubkey": n.pubkey, "is_online": n.is_online, "score": n.score,
            "tier": n.tier, "scores": n.scores, "uptime": n.uptime, "version": n.version,
            "storage_committed": n.storage_committed, "storage_used": n.storage_used,
            "storage_usage_percent": n.storage_usage_percent, "peer_count": n.peer_count,
            "is_public": n.is_public, "consistency_score": n.consistency_score,
        }))
        .collect();
    let mut considerations = Vec::new();
    if nodes.iter().any(|n| !n.is_online) {
        considerations.push("some compared nodes are offline".to_owned());
    }
    if let Some(best) = best
        && best.is_public != Some(true)
    {
        considerations.push("the recommended node is private".to_owned());
    }
    let scores: Vec<f64> = nodes.iter().map(|n| n.score).collect();
    let spread = scores.iter().cloned().fold(f64::MIN, f64::max)
        - scores.iter().cloned().fold(f64::MAX, f64::min);
    if spread < 5.0 {
        considerations.push("scores are within 5 points: other factors may decide".to_owned());
    }
    Ok(HttpResponse::Ok().json(json!({
        "comparison": comparison,
        "winners": winners,
        "recommendation": {
            "recommended_node": best.map(|n| n.address.clone()),
            "reason": best.map(|n| format!("highest composite score ({}, {})", n.score, n.tier)),
            "considerations": considerations,
        },
        "summary": {"nodes_compared": nodes.len(), "score_spread": round2(spread)},
        "timestamp": now(),
    })))
}

// ---------------------------------------------------------------------------------------------
// Registry

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1 to 1000 [default: 100].
    limit: Option<usize>,
    /// Entries to skip [default: 0].
    skip: Option<usize>,
    /// Graveyard: offline for at least this many days [default: 90].
    days: Option<i64>,
}

#[utoipa::path(get, path = "/api/xandeum/registry", tag = "pnodes",
    params(PageQuery),
    responses(
        (status = 200, description = "Every known pNode, online and offline", body = Object),
        (status = 400, description = "`validation_failed` or `bad_request`", body = ErrorBody),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn registry(
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = in_range("limit", query.limit, 100, 1, 1_000)?;
    let skip = in_range("skip", query.skip, 0, 0, MAX_SKIP)?;
    let view = current(&state)?;
    let items: Vec<&RawValue> = view
        .node_json
        .iter()
        .skip(skip)
        .take(limit)
        .map(AsRef::as_ref)
        .collect();
    Ok(HttpResponse::Ok()
        .json(json!({"count": view.nodes.len(), "skip": skip, "limit": limit, "items": items})))
}

#[utoipa::path(get, path = "/api/xandeum/registry/{address}", tag = "pnodes",
    params(("address" = String, Path, description = "The pNode address, host:port")),
    responses(
        (status = 200, description = "One registry entry", body = Object),
        (status = 404, description = "`not_found`: unknown pNode", body = ErrorBody),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn registry_entry(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = current(&state)?;
    let address = path.into_inner();
    let (node, _) = known_node(&view, &address)?;
    Ok(HttpResponse::Ok().json(json!({
        "entry": node,
        "status": if node.is_online { "online" } else { "offline" },
    })))
}

#[utoipa::path(get, path = "/api/xandeum/graveyard", tag = "pnodes",
    params(PageQuery),
    responses(
        (status = 200, description = "pNodes offline for at least `days`", body = Object),
        (status = 400, description = "`validation_failed` or `bad_request`", body = ErrorBody),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn graveyard(
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let days = in_range("days", query.days, 90, 0, 3_650)?;
    let limit = in_range("limit", query.limit, 100, 1, 1_000)?;
    let skip = in_range("skip", query.skip, 0, 0, MAX_SKIP)?;
    let view = current(&state)?;
    let threshold = days * 86_400;
    let mut dead: Vec<usize> = (0..view.nodes.len())
        .filter(|&i| {
            let node = &view.nodes[i];
            !node.is_online && node.offline_duration.unwrap_or(0) >= threshold
        })
        .collect();
    dead.sort_by_key(|&i| view.nodes[i].last_seen);
    let items: Vec<&RawValue> = dead
        .iter()
        .skip(skip)
        .take(limit)
        .map(|&i| view.node_json[i].as_ref())
        .collect();
    Ok(HttpResponse::Ok()
        .json(json!({"count": dead.len(), "threshold_days": days, "items": items})))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PruneQuery {
    /// Delete entries unseen for this many days, 1 to 3650 [default: 90].
    days: Option<i64>,
}

/// Deletes registry entries not seen for `days` (admin only; audited; every instance drops
/// them at once).
#[utoipa::path(delete, path = "/api/xandeum/prune", tag = "pnodes",
    params(PruneQuery),
    responses(
        (status = 200, description = "Deletes registry entries unseen for `days` (admins; audited)", body = Object),
        (status = 400, description = "`validation_failed` or `bad_request`", body = ErrorBody),
        (status = 401, description = "no or bad token", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn prune(
    state: web::Data<AppState>,
    request: HttpRequest,
    admin: Admin,
    query: web::Query<PruneQuery>,
) -> Result<HttpResponse, ApiError> {
    let days = in_range("days", query.days, 90, 1, 3_650)?;
    let before = now() - days * 86_400;
    let deleted = state
        .pnodes
        .store
        .prune_registry(before)
        .await
        .map_err(ApiError::internal)?;
    metrics::counter!(crate::pnodes::metrics::PRUNED, "table" => "registry").increment(deleted);
    state
        .identity
        .record_admin_action(
            caller(&request, &state),
            &admin.0,
            "pnode.prune",
            "pnode_registry",
            json!({"threshold_days": days, "deleted_count": deleted}),
        )
        .await?;
    let envelope = ControlEnvelope {
        origin: state.instance_id,
        event: ControlEvent::PnodeRegistryPruned { before },
    };
    if let Err(error) = state.bus.publish_control(&envelope).await {
        tracing::warn!(%error, "cannot announce the prune; instances drop the entries at their next snapshot");
    }
    Ok(HttpResponse::Ok()
        .json(json!({"status": "success", "threshold_days": days, "deleted_count": deleted})))
}

// ---------------------------------------------------------------------------------------------
// Network

#[utoipa::path(get, path = "/api/xandeum/network/topology", tag = "pnodes",
    responses(
        (status = 200, description = "Seeds, pNodes and gossip connections", body = Object),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn topology(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let view = current(&state)?;
    Ok(json_with_timestamp(view.topology_json()))
}

/// A cached JSON object answered with `"timestamp"` added, without parsing it again.
fn json_with_timestamp(cached: &RawValue) -> HttpResponse {
    let text = cached.get();
    let body = match text.strip_suffix('}') {
        Some(open) if open.len() > 1 => format!("{open},\"timestamp\":{}}}", now()),
        _ => text.to_owned(),
    };
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body)
}

/// Network-level alerts: what the operators of the whole network should know.
fn network_alerts(view: &NetworkView) -> Vec<Value> {
    let mut alerts = Vec::new();
    let s = &view.summary;
    if s.total_ip_nodes > 0 && s.responding_ip_nodes < s.total_ip_nodes {
        alerts.push(json!({"severity": "warning", "type": "ip_nodes_unreachable",
            "message": format!("{} of {} IP nodes did not answer", s.total_ip_nodes - s.responding_ip_nodes, s.total_ip_nodes)}));
    }
    if s.total_pnodes > 0 && (s.offline_pnodes as f64) / (s.total_pnodes as f64) > 0.2 {
        alerts.push(json!({"severity": "warning", "type": "high_offline_ratio",
            "message": format!("{} of {} pNodes are offline", s.offline_pnodes, s.total_pnodes)}));
    }
    match view.health.status.as_str() {
        "critical" => alerts.push(json!({"severity": "critical", "type": "network_health", "message": "network health is critical"})),
        "degraded" => alerts.push(json!({"severity": "warning", "type": "network_health", "message": "network health is degraded"})),
        _ => {}
    }
    alerts
}

#[utoipa::path(get, path = "/api/xandeum/network/health", tag = "pnodes",
    responses(
        (status = 200, description = "Network health score, factors and alerts", body = Object),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn network_health(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let view = current(&state)?;
    Ok(HttpResponse::Ok().json(json!({
        "health": view.health,
        "network_stats": network_stats_json(&view),
        "summary": summary_json(&view),
        "alerts": network_alerts(&view),
        "timestamp": now(),
    })))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HoursQuery {
    /// The window, in hours (history and growth: 1 to 720, metrics summary: 1 to 168) [default: 24].
    hours: Option<i64>,
}

#[utoipa::path(get, path = "/api/xandeum/network/history", tag = "pnodes",
    params(HoursQuery),
    responses(
        (status = 200, description = "Network figures per cycle", body = Object),
        (status = 400, description = "`validation_failed` or `bad_request`", body = ErrorBody),
    )
)]
pub async fn network_history(
    state: web::Data<AppState>,
    query: web::Query<HoursQuery>,
) -> Result<HttpResponse, ApiError> {
    let hours = in_range("hours", query.hours, 24, 1, 720)?;
    let rows = state
        .pnodes
        .store
        .network_history(now() - hours * 3_600)
        .await
        .map_err(ApiError::internal)?;
    let online: Vec<i32> = rows.iter().map(|r| r.online_pnodes).collect();
    let summary = json!({
        "data_points": rows.len(),
        "hours": hours,
        "first_timestamp": rows.first().map(|r| r.timestamp),
        "last_timestamp": rows.last().map(|r| r.timestamp),
        "min_online_pnodes": online.iter().min(),
        "max_online_pnodes": online.iter().max(),
        "avg_online_pnodes": if online.is_empty() { 0.0 } else { round2(online.iter().map(|&v| f64::from(v)).sum::<f64>() / online.len() as f64) },
    });
    Ok(HttpResponse::Ok().json(json!({"history": rows, "summary": summary, "timestamp": now()})))
}

fn change(first: f64, last: f64) -> Value {
    json!({
        "start": first, "end": last, "change": round2(last - first),
        "change_percent": if first == 0.0 { Value::Null } else { json!(round2((last - first) / first * 100.0)) },
    })
}

async fn growth_metrics(state: &AppState, hours: i64) -> Result<Value, ApiError> {
    let rows = state
        .pnodes
        .store
        .network_history(now() - hours * 3_600)
        .await
        .map_err(ApiError::internal)?;
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(
            json!({"hours": hours, "data_points": 0, "message": "no history in this window yet"}),
        );
    };
    Ok(json!({
        "hours": hours,
        "data_points": rows.len(),
        "total_pnodes": change(f64::from(first.total_pnodes), f64::from(last.total_pnodes)),
        "online_pnodes": change(f64::from(first.online_pnodes), f64::from(last.online_pnodes)),
        "total_storage_committed": change(first.total_storage_committed as f64, last.total_storage_committed as f64),
        "total_storage_used": change(first.total_storage_used as f64, last.total_storage_used as f64),
        "avg_score": change(first.avg_score, last.avg_score),
        "health_score": change(first.health_score, last.health_score),
    }))
}

#[utoipa::path(get, path = "/api/xandeum/network/growth", tag = "pnodes",
    params(HoursQuery),
    responses(
        (status = 200, description = "Change over the window", body = Object),
        (status = 400, description = "`validation_failed` or `bad_request`", body = ErrorBody),
    )
)]
pub async fn network_growth(
    state: web::Data<AppState>,
    query: web::Query<HoursQuery>,
) -> Result<HttpResponse, ApiError> {
    let hours = in_range("hours", query.hours, 24, 1, 720)?;
    let growth = growth_metrics(&state, hours).await?;
    Ok(HttpResponse::Ok().json(json!({"growth_metrics": growth, "timestamp": now()})))
}

#[utoipa::path(get, path = "/api/xandeum/network/analytics", tag = "pnodes",
    responses(
        (status = 200, description = "Current state, growth, versions, advice", body = Object),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn network_analytics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let view = current(&state)?;
    let growth = growth_metrics(&state, 24).await?;
    let s = &view.summary;
    let on_latest = s
        .latest_version
        .as_ref()
        .and_then(|v| s.version_distribution.get(v))
        .copied()
        .unwrap_or(0);
    let latest_share = if s.online_pnodes == 0 {
        0.0
    } else {
        round2(on_latest as f64 / s.online_pnodes as f64 * 100.0)
    };
    let mut advice = Vec::new();
    if latest_share < 80.0 {
        advice.push(format!(
            "{}% of online nodes run the latest version: encourage upgrades",
            latest_share
        ));
    }
    if s.avg_peer_count < 3.0 {
        advice
            .push("average gossip presence is under 3 seeds: connectivity can improve".to_owned());
    }
    if s.offline_pnodes > s.online_pnodes / 5 {
        advice
            .push("more than a fifth of known nodes are offline: review the graveyard".to_owned());
    }
    Ok(HttpResponse::Ok().json(json!({
        "current_state": {"summary": summary_json(&view), "network_stats": network_stats_json(&view), "health": view.health},
        "growth": growth,
        "version_analysis": {
            "latest_version": s.latest_version,
            "nodes_on_latest": on_latest,
            "latest_adoption_percent": latest_share,
            "distribution": s.version_distribution,
            "distinct_versions": s.version_distribution.len(),
        },
        "recommendations": advice,
        "timestamp": now(),
    })))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyQuery {
    /// Only nodes at or above this consistency (0 to 1).
    min_consistency: Option<f64>,
    /// `consistency_score` (default), `gossip_disappearances` or `address`.
    sort_by: Option<String>,
    /// 1 to 1000 [default: 100].
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/xandeum/network/consistency", tag = "pnodes",
    params(ConsistencyQuery),
    responses(
        (status = 200, description = "Gossip consistency and flapping nodes", body = Object),
        (status = 400, description = "`validation_failed` or `bad_request`", body = ErrorBody),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn network_consistency(
    state: web::Data<AppState>,
    query: web::Query<ConsistencyQuery>,
) -> Result<HttpResponse, ApiError> {
    let min = in_range("min_consistency", query.min_consistency, 0.0, 0.0, 1.0)?;
    let sort = one_of(
        "sort_by",
        query.sort_by.as_deref(),
        "consistency_score",
        &["consistency_score", "gossip_disappearances", "address"],
    )?;
    let limit = in_range("limit", query.limit, 100, 1, 1_000)?;
    let view = current(&state)?;
    let flapping_below = state.pnodes.settings.analytics.alerts.flapping_consistency;
    let mut nodes: Vec<&NodeView> = view
        .nodes
        .iter()
        .filter(|n| n.consistency_score >= min)
        .collect();
    match sort {
        "address" => nodes.sort_by(|a, b| a.address.cmp(&b.address)),
        "gossip_disappearances" => {
            nodes.sort_by_key(|n| std::cmp::Reverse(n.gossip_disappearances))
        }
        _ => nodes.sort_by(|a, b| {
            a.consistency_score
                .total_cmp(&b.consistency_score)
                .then_with(|| a.address.cmp(&b.address))
        }),
    }
    let brief = |n: &NodeView| {
        json!({
            "address": n.address, "consistency_score": n.consistency_score,
            "gossip_appearances": n.gossip_appearances, "gossip_disappearances": n.gossip_disappearances,
            "last_gossip_appearance": n.last_gossip_appearance, "last_gossip_drop": n.last_gossip_drop,
            "is_online": n.is_online,
        })
    };
    let flapping: Vec<Value> = view
        .nodes
        .iter()
        .filter(|n| n.consistency_score < flapping_below)
        .map(brief)
        .collect();
    let scores: Vec<f64> = view.nodes.iter().map(|n| n.consistency_score).collect();
    Ok(HttpResponse::Ok().json(json!({
        "nodes": nodes.iter().take(limit).map(|n| brief(n)).collect::<Vec<_>>(),
        "summary": {
            "total_nodes": view.nodes.len(),
            "matching": nodes.len(),
            "avg_consistency": if scores.is_empty() { 0.0 } else { round2(scores.iter().sum::<f64>() / scores.len() as f64) },
            "flapping_threshold": flapping_below,
            "flapping_count": flapping.len(),
        },
        "flapping_nodes": flapping,
        "timestamp": now(),
    })))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OperatorsQuery {
    /// 1 to 1000 [default: 100].
    limit: Option<usize>,
    /// Only operators with at least this many nodes [default: 1].
    min_nodes: Option<usize>,
}

#[utoipa::path(get, path = "/api/xandeum/operators", tag = "pnodes",
    params(OperatorsQuery),
    responses(
        (status = 200, description = "pNodes grouped by operator pubkey", body = Object),
        (status = 400, description = "`validation_failed` or `bad_request`", body = ErrorBody),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn operators(
    state: web::Data<AppState>,
    query: web::Query<OperatorsQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = in_range("limit", query.limit, 100, 1, 1_000)?;
    let min_nodes = in_range("min_nodes", query.min_nodes, 1, 1, 100_000)?;
    let view = current(&state)?;
    struct Operator<'a> {
        nodes: Vec<&'a NodeView>,
    }
    let mut by_key: HashMap<&str, Operator<'_>> = HashMap::new();
    for node in &view.nodes {
        if let Some(key) = node.pubkey.as_deref() {
            by_key
                .entry(key)
                .or_insert_with(|| Operator { nodes: Vec::new() })
                .nodes
                .push(node);
        }
    }
    let total_nodes: usize = by_key.values().map(|o| o.nodes.len()).sum();
    let largest = by_key.values().map(|o| o.nodes.len()).max().unwrap_or(0);
    let mut list: Vec<(&str, &Operator<'_>)> = by_key
        .iter()
        .filter(|(_, o)| o.nodes.len() >= min_nodes)
        .map(|(k, o)| (*k, o))
        .collect();
    list.sort_by(|a, b| {
        b.1.nodes
            .len()
            .cmp(&a.1.nodes.len())
            .then_with(|| a.0.cmp(b.0))
    });
    let operators: Vec<Value> = list
        .iter()
        .take(limit)
        .map(|(key, op)| {
            let versions: BTreeSet<&str> = op.nodes.iter().filter_map(|n| n.version.as_deref()).collect();
            json!({
                "pubkey": key,
                "node_count": op.nodes.len(),
                "online_nodes": op.nodes.iter().filter(|n| n.is_online).count(),
                "total_storage_committed": op.nodes.iter().filter_map(|n| n.storage_committed).sum::<u64>(),
                "total_storage_used": op.nodes.iter().filter_map(|n| n.storage_used).sum::<u64>(),
                "addresses": op.nodes.iter().map(|n| n.address.as_str()).collect::<Vec<_>>(),
                "versions": versions,
                "first_seen": op.nodes.iter().map(|n| n.first_seen).min(),
            })
        })
        .collect();
    let count = by_key.len();
    // 100 when every node has its own operator, falling as nodes concentrate.
    let decentralization = if total_nodes == 0 {
        0.0
    } else {
        round2(count as f64 / total_nodes as f64 * 100.0)
    };
    Ok(HttpResponse::Ok().json(json!({
        "summary": {
            "total_operators": count,
            "total_nodes": total_nodes,
            "avg_nodes_per_operator": if count == 0 { 0.0 } else { round2(total_nodes as f64 / count as f64) },
            "largest_operator_share_percent": if total_nodes == 0 { 0.0 } else { round2(largest as f64 / total_nodes as f64 * 100.0) },
            "decentralization_score": decentralization,
        },
        "operators": operators,
        "timestamp": now(),
    })))
}

#[utoipa::path(get, path = "/api/xandeum/all-nodes", tag = "pnodes",
    responses(
        (status = 200, description = "Each seed's answer as it came", body = Object),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn all_nodes(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let view = current(&state)?;
    // Spliced rather than built with `json!`, which would parse the cached seeds' JSON again.
    let body = format!(
        "{{\"summary\":{},\"nodes\":{},\"timestamp\":{}}}",
        summary_json(&view),
        view.seeds_json().get(),
        now()
    );
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

// ---------------------------------------------------------------------------------------------
// Alerts

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// `critical`, `warning` or `info`.
    severity: Option<String>,
    /// One of the ten alert types.
    alert_type: Option<String>,
    /// Nodes listed, 1 to 1000 [default: 100].
    limit: Option<usize>,
}

fn parse_severity(text: Option<&str>) -> Result<Option<Severity>, ApiError> {
    text.map(|s| {
        Severity::parse(s)
            .ok_or_else(|| ApiError::validation("severity must be one of critical, warning, info"))
    })
    .transpose()
}

fn alert_summary<'a>(alerts: impl Iterator<Item = &'a Alert>) -> Value {
    let (mut total, mut critical, mut warning, mut info) = (0, 0, 0, 0);
    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for alert in alerts {
        total += 1;
        match alert.severity {
            Severity::Critical => critical += 1,
            Severity::Warning => warning += 1,
            Severity::Info => info += 1,
        }
        *by_type.entry(alert.alert_type.as_str()).or_default() += 1;
    }
    json!({"total": total, "critical": critical, "warning": warning, "info": info, "by_type": by_type})
}

fn collect_alerts(
    state: &AppState,
    query: &AlertsQuery,
    only_critical: bool,
) -> Result<HttpResponse, ApiError> {
    // The parameter is checked on both routes, so that a typo is an error, not ignored.
    let asked = parse_severity(query.severity.as_deref())?;
    let severity = if only_critical {
        Some(Severity::Critical)
    } else {
        asked
    };
    if let Some(kind) = &query.alert_type
        && !ALERT_TYPES.contains(&kind.as_str())
    {
        return Err(ApiError::validation(format!(
            "alert_type must be one of {}",
            ALERT_TYPES.join(", ")
        )));
    }
    let limit = in_range("limit", query.limit, 100, 1, 1_000)?;
    let view = current(state)?;
    let keep = |alert: &&Alert| {
        severity.is_none_or(|s| alert.severity == s)
            && query
                .alert_type
                .as_ref()
                .is_none_or(|t| &alert.alert_type == t)
    };
    let mut with_alerts: Vec<(&NodeView, Vec<&Alert>)> = view
        .nodes
        .iter()
        .zip(&view.alerts)
        .map(|(node, alerts)| (node, alerts.iter().filter(keep).collect::<Vec<_>>()))
        .filter(|(_, alerts)| !alerts.is_empty())
        .collect();
    with_alerts.sort_by(|a, b| {
        let critical = |list: &Vec<&Alert>| {
            list.iter()
                .filter(|a| a.severity == Severity::Critical)
                .count()
        };
        critical(&b.1)
            .cmp(&critical(&a.1))
            .then_with(|| b.1.len().cmp(&a.1.len()))
            .then_with(|| a.0.address.cmp(&b.0.address))
    });
    let summary = alert_summary(
        with_alerts
            .iter()
            .flat_map(|(_, alerts)| alerts.iter().copied()),
    );
    let critical_nodes: Vec<Value> = with_alerts
        .iter()
        .filter(|(_, alerts)| alerts.iter().any(|a| a.severity == Severity::Critical))
        .take(limit)
        .map(|(node, alerts)| json!({
            "address": node.address,
            "alert_count": alerts.len(),
            "critical_alerts": alerts.iter().filter(|a| a.severity == Severity::Critical).collect::<Vec<_>>(),
        }))
        .collect();
    let nodes: Vec<Value> = with_alerts
        .iter()
        .take(limit)
        .map(|(node, alerts)| json!({"address": node.address, "is_online": node.is_online, "alerts": alerts}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "summary": summary,
        "critical_nodes": critical_nodes,
        "nodes": nodes,
        "nodes_checked": view.nodes.len(),
        "nodes_with_alerts": with_alerts.len(),
        "filters": {"severity": severity.map(Severity::as_str), "alert_type": query.alert_type, "limit": limit},
        "timestamp": now(),
    })))
}

#[utoipa::path(get, path = "/api/xandeum/alerts", tag = "pnodes",
    params(AlertsQuery),
    responses(
        (status = 200, description = "Alerts over the network", body = Object),
        (status = 400, description = "`validation_failed` or `bad_request`", body = ErrorBody),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn alerts(
    state: web::Data<AppState>,
    query: web::Query<AlertsQuery>,
) -> Result<HttpResponse, ApiError> {
    collect_alerts(&state, &query, false)
}

#[utoipa::path(get, path = "/api/xandeum/alerts/critical", tag = "pnodes",
    params(AlertsQuery),
    responses(
        (status = 200, description = "Critical alerts only", body = Object),
        (status = 400, description = "`validation_failed` or `bad_request`", body = ErrorBody),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn critical_alerts(
    state: web::Data<AppState>,
    query: web::Query<AlertsQuery>,
) -> Result<HttpResponse, ApiError> {
    collect_alerts(&state, &query, true)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeverityQuery {
    /// `critical`, `warning` or `info`.
    severity: Option<String>,
}

#[utoipa::path(get, path = "/api/xandeum/pnodes/{address}/alerts", tag = "pnodes",
    params(("address" = String, Path, description = "The pNode address, host:port"), SeverityQuery),
    responses(
        (status = 200, description = "One pNode's alerts", body = Object),
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
    let severity = parse_severity(query.severity.as_deref())?;
    let view = current(&state)?;
    let address = path.into_inner();
    let (node, alerts) = known_node(&view, &address)?;
    let alerts: Vec<&Alert> = alerts
        .iter()
        .filter(|a| severity.is_none_or(|s| a.severity == s))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "address": node.address,
        "alerts": alerts,
        "summary": alert_summary(alerts.iter().copied()),
        "node_info": {"is_online": node.is_online, "version": node.version, "uptime": node.uptime,
                      "storage_usage_percent": node.storage_usage_percent, "peer_count": node.peer_count,
                      "score": node.score, "tier": node.tier, "last_seen": node.last_seen},
        "timestamp": now(),
    })))
}

// ---------------------------------------------------------------------------------------------
// Per-node history

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DaysQuery {
    /// The window, in days, 1 to 90 [default: 7].
    days: Option<i64>,
}

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
        return Err(ApiError::not_found(format!("pNode {address} is not known")));
    }
    Ok(rows)
}

#[utoipa::path(get, path = "/api/xandeum/node/{address}/history", tag = "pnodes",
    params(("address" = String, Path, description = "The pNode address, host:port"), DaysQuery),
    responses(
        (status = 200, description = "One pNode's history", body = Object),
        (status = 400, description = "`validation_failed` or `bad_request`", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown pNode", body = ErrorBody),
    )
)]
pub async fn node_history(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<DaysQuery>,
) -> Result<HttpResponse, ApiError> {
    let days = in_range("days", query.days, 7, 1, 90)?;
    let address = path.into_inner();
    let rows = known_node_history(&state, &address, now() - days * 86_400).await?;
    Ok(HttpResponse::Ok().json(json!({
        "address": address, "days": days, "data_points": rows.len(), "history": rows, "timestamp": now(),
    })))
}

fn stats_of(values: &[f64]) -> Value {
    if values.is_empty() {
        return json!({"min": null, "max": null, "avg": null});
    }
    let min = values.iter().cloned().fold(f64::MAX, f64::min);
    let max = values.iter().cloned().fold(f64::MIN, f64::max);
    json!({"min": min, "max": max, "avg": round2(values.iter().sum::<f64>() / values.len() as f64)})
}

#[utoipa::path(get, path = "/api/xandeum/node/{address}/metrics-summary", tag = "pnodes",
    params(("address" = String, Path, description = "The pNode address, host:port"), HoursQuery),
    responses(
        (status = 200, description = "Min, average and max of one pNode's history", body = Object),
        (status = 400, description = "`validation_failed` or `bad_request`", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown pNode", body = ErrorBody),
    )
)]
pub async fn node_metrics_summary(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<HoursQuery>,
) -> Result<HttpResponse, ApiError> {
    let hours = in_range("hours", query.hours, 24, 1, 168)?;
    let address = path.into_inner();
    let rows = known_node_history(&state, &address, now() - hours * 3_600).await?;
    let online = rows.iter().filter(|r| r.is_online).count();
    let pick = |f: &dyn Fn(&NodeHistoryRow) -> Option<f64>| -> Vec<f64> {
        rows.iter().filter_map(f).collect()
    };
    Ok(HttpResponse::Ok().json(json!({
        "address": address,
        "hours": hours,
        "data_points": rows.len(),
        "availability_percent": if rows.is_empty() { Value::Null } else { json!(round2(online as f64 / rows.len() as f64 * 100.0)) },
        "score": stats_of(&pick(&|r| Some(r.score))),
        "trust_score": stats_of(&pick(&|r| Some(r.trust_score))),
        "capacity_score": stats_of(&pick(&|r| Some(r.capacity_score))),
        "uptime": stats_of(&pick(&|r| r.uptime.map(|v| v as f64))),
        "storage_used": stats_of(&pick(&|r| r.storage_used.map(|v| v as f64))),
        "storage_usage_percent": stats_of(&pick(&|r| r.storage_usage_percent)),
        "peer_count": stats_of(&pick(&|r| Some(f64::from(r.peer_count)))),
        "versions_seen": rows.iter().filter_map(|r| r.version.as_deref()).collect::<BTreeSet<_>>(),
        "timestamp": now(),
    })))
}

#[utoipa::path(get, path = "/api/xandeum/node/{address}/consistency", tag = "pnodes",
    params(("address" = String, Path, description = "The pNode address, host:port")),
    responses(
        (status = 200, description = "One pNode's gossip consistency", body = Object),
        (status = 404, description = "`not_found`: unknown pNode", body = ErrorBody),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn node_consistency(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = current(&state)?;
    let address = path.into_inner();
    let (node, _) = known_node(&view, &address)?;
    let threshold = state.pnodes.settings.analytics.alerts.flapping_consistency;
    Ok(HttpResponse::Ok().json(json!({
        "address": node.address,
        "consistency_score": node.consistency_score,
        "gossip_appearances": node.gossip_appearances,
        "gossip_disappearances": node.gossip_disappearances,
        "last_gossip_appearance": node.last_gossip_appearance,
        "last_gossip_drop": node.last_gossip_drop,
        "is_flapping": node.consistency_score < threshold,
        "flapping_threshold": threshold,
        "first_seen": node.first_seen,
        "last_seen": node.last_seen,
        "is_online": node.is_online,
        "timestamp": now(),
    })))
}

#[utoipa::path(get, path = "/api/xandeum/nodes/history-status", tag = "pnodes",
    responses(
        (status = 200, description = "What the history holds", body = Object),
    )
)]
pub async fn history_status(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let status = state
        .pnodes
        .store
        .history_status()
        .await
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(json!({
        "status": status,
        "retention_days": state.pnodes.settings.retention.as_secs() / 86_400,
        "interval_seconds": state.pnodes.settings.interval.as_secs(),
        "timestamp": now(),
    })))
}

// ---------------------------------------------------------------------------------------------
// Admin

/// Each poller's live state, asked of its actor, and whether this instance leads.
#[utoipa::path(get, path = "/api/admin/pollers", tag = "admin",
    responses(
        (status = 200, description = "Each pRPC poller's live state", body = Object),
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
    Ok(HttpResponse::Ok().json(json!({
        "instance": state.instance_id,
        "leader": leader,
        "interval_seconds": state.pnodes.settings.interval.as_secs(),
        "snapshot_cycle": state.pnodes.cell.cycle(),
        "pollers": statuses,
    })))
}

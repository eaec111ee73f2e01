//! What every route module uses to declare its routes, and the answers of paths and methods that
//! no route takes.

use actix_web::{HttpResponse, web};

use crate::http::auth::client_ip;
use crate::http::error::ApiError;
use crate::http::probes;
use crate::state::AppState;

/// `/metrics`, on the API port or on a listener of its own (`--metrics-addr`).
pub fn metrics_route(config: &mut web::ServiceConfig) {
    config.service(get_only("/metrics", probes::metrics));
}

/// A resource whose unrouted methods answer with a JSON `method_not_allowed`.
pub fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// A resource that answers GET (and HEAD) with `handler`.
pub fn get_only<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    resource(path).route(web::get().to(handler))
}

/// Answers paths that no route matches. Each client address may make only so many such
/// requests (`--not-found-rate-per-sec`): probing for paths is not free.
pub async fn not_found(
    request: actix_web::HttpRequest,
    state: Option<web::Data<AppState>>,
) -> Result<HttpResponse, ApiError> {
    if let Some(state) = state {
        let ip = client_ip(&request, &state.trusted_proxies);
        if let Err(retry_after) = state.not_found_limiter.check(ip, std::time::Instant::now()) {
            metrics::counter!(nodegrid_services::identity::RATE_LIMITED_TOTAL, "scope" => "not_found", "key" => "ip")
                .increment(1);
            return Err(ApiError::RateLimited {
                retry_after_secs: nodegrid_services::identity::retry_after_secs(retry_after),
                message: "too many requests for paths that do not exist".into(),
            });
        }
    }
    Err(ApiError::not_found("no route matches this path"))
}

/// 405 with `Allow`: the methods the route's pattern takes (from the route table the
/// OpenAPI document states; `GET` for the few undocumented resources, all of them GET-only).
async fn method_not_allowed(
    request: actix_web::HttpRequest,
    state: Option<web::Data<AppState>>,
) -> HttpResponse {
    let allowed = request
        .match_pattern()
        .and_then(|pattern| state?.allowed_methods.get(&pattern).cloned())
        .unwrap_or_else(|| "GET".to_owned());
    let mut response = actix_web::ResponseError::error_response(&ApiError::method_not_allowed());
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&allowed) {
        response
            .headers_mut()
            .insert(actix_web::http::header::ALLOW, value);
    }
    response
}

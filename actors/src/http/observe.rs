//! Request observation: one counter, one latency histogram and one log line per request.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;

use crate::metrics::{HTTP_REQUEST_DURATION_SECONDS, HTTP_REQUESTS_TOTAL};

/// The route label of requests that matched no route, so that random paths cannot grow the
/// number of metric series without bound.
const UNMATCHED_ROUTE: &str = "unmatched";
/// Characters of a request's path written to the log.
const MAX_LOGGED_PATH_CHARS: usize = 200;

/// The method as a metric label: the standard ones by name, anything else `OTHER`, so that
/// made-up methods cannot grow the number of series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Middleware (for `actix_web::middleware::from_fn`) that records every request.
pub async fn observe_request(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = method_label(request.method());
    // Copied: the router needs the request unshared (a clone of it makes routing panic). Only
    // when the line is written: at `warn` a request copies nothing for its log.
    let path: Option<String> = tracing::enabled!(tracing::Level::INFO)
        .then(|| request.path().chars().take(MAX_LOGGED_PATH_CHARS).collect());
    let outcome = next.call(request).await;
    let elapsed = started.elapsed();
    let (status, route) = match &outcome {
        Ok(response) => (
            response.status().as_u16(),
            response.request().match_pattern(),
        ),
        Err(error) => (error.as_response_error().status_code().as_u16(), None),
    };
    let route = route.unwrap_or_else(|| UNMATCHED_ROUTE.to_owned());
    count(method, &route, status, elapsed.as_secs_f64());
    let latency_ms = elapsed.as_secs_f64() * 1_000.0;
    // Probes and scrapes arrive every few seconds; keep them out of the info log.
    let path = path.as_deref().unwrap_or_default();
    if matches!(route.as_str(), "/health" | "/ready" | "/metrics") && status < 500 {
        tracing::debug!(%method, %route, %path, status, latency_ms, "request");
    } else {
        tracing::info!(%method, %route, %path, status, latency_ms, "request");
    }
    outcome
}

/// The request counter and latency histogram of one method, route and status.
struct RouteMetrics {
    requests: metrics::Counter,
    latency: metrics::Histogram,
}

thread_local! {
    /// This worker thread's handles, by method and status, then route: registering a series
    /// (building its key, hashing it, looking it up) costs more than the request it counts, so
    /// it is done once per series and thread. Bounded as the labels are: methods and routes
    /// are fixed sets, statuses three digits.
    static ROUTE_METRICS: RefCell<HashMap<(&'static str, u16), RoutesMetrics>> =
        RefCell::default();
}

/// The handles of one method and status, by route.
type RoutesMetrics = HashMap<String, RouteMetrics>;

fn count(method: &'static str, route: &str, status: u16, seconds: f64) {
    ROUTE_METRICS.with_borrow_mut(|by_method_status| {
        let by_route = by_method_status.entry((method, status)).or_default();
        if !by_route.contains_key(route) {
            let labels = [
                ("method", method.to_owned()),
                ("route", route.to_owned()),
                ("status", status.to_string()),
            ];
            let handles = RouteMetrics {
                requests: metrics::counter!(HTTP_REQUESTS_TOTAL, &labels),
                latency: metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, &labels),
            };
            by_route.insert(route.to_owned(), handles);
        }
        if let Some(handles) = by_route.get(route) {
            handles.requests.increment(1);
            handles.latency.record(seconds);
        }
    });
}

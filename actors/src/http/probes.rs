//! `/health`, `/ready` and `/metrics`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use nodegrid_protocol::error::ErrorCode;
use nodegrid_protocol::health::{CheckOutcome, HealthBody, ReadyBody};
use nodegrid_services::bus::BusError;

use crate::metrics::{
    DB_POOL_CONNECTIONS, DB_POOL_WAITING, DEPENDENCY_CHECK_DURATION_SECONDS, DEPENDENCY_UP,
    REDIS_CONNECTED,
};
use crate::state::AppState;

/// Liveness: answers while the process serves HTTP, whatever its dependencies do.
#[utoipa::path(get, path = "/health", tag = "probes",
    responses((status = 200, description = "The process serves HTTP", body = HealthBody)))]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(HealthBody {
        status: "ok".to_owned(),
    })
}

/// Readiness: checks Postgres and Redis concurrently, each within the configured timeout.
#[utoipa::path(get, path = "/ready", tag = "probes",
    responses(
        (status = 200, description = "Postgres and Redis answer", body = ReadyBody),
        (status = 503, description = "`not_ready`: a dependency failed its check", body = ReadyBody),
    ))]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let timeout = state.ready_timeout;
    let postgres = check("postgres", timeout, state.database.ping());
    let redis = check("redis", timeout, async {
        if !state.bus.is_connected() {
            return Err(BusError::Disconnected);
        }
        state.bus.ping().await
    });
    let (postgres, redis) = futures_util::join!(postgres, redis);
    let checks = BTreeMap::from([postgres, redis]);
    let failed: Vec<String> = checks
        .iter()
        .filter_map(|(name, outcome)| {
            outcome
                .error
                .as_ref()
                .map(|error| format!("{name}: {error}"))
        })
        .collect();
    if failed.is_empty() {
        HttpResponse::Ok().json(ReadyBody {
            status: Some("ready".to_owned()),
            code: None,
            message: None,
            checks,
        })
    } else {
        metrics::counter!(crate::metrics::HTTP_ERRORS_TOTAL, "code" => ErrorCode::NotReady.as_str())
            .increment(1);
        HttpResponse::ServiceUnavailable().json(ReadyBody {
            status: None,
            code: Some(ErrorCode::NotReady.as_str().to_owned()),
            message: Some(format!("not ready: {}", failed.join("; "))),
            checks,
        })
    }
}

/// Prometheus text exposition of every metric of the process.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    state.process_collector.collect();
    record_dependency_gauges(&state);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.prometheus.render())
}

async fn check<F, E>(name: &'static str, timeout: Duration, probe: F) -> (String, CheckOutcome)
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let started = Instant::now();
    let outcome = match tokio::time::timeout(timeout, probe).await {
        Ok(outcome) => outcome.map_err(|error| error.to_string()),
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    };
    let elapsed = started.elapsed();
    metrics::histogram!(DEPENDENCY_CHECK_DURATION_SECONDS, "dependency" => name)
        .record(elapsed.as_secs_f64());
    metrics::gauge!(DEPENDENCY_UP, "dependency" => name).set(if outcome.is_ok() {
        1.0
    } else {
        0.0
    });
    let latency_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    let outcome = match outcome {
        Ok(()) => CheckOutcome {
            status: "ok".to_owned(),
            latency_ms,
            error: None,
        },
        Err(error) => CheckOutcome {
            status: "failed".to_owned(),
            latency_ms,
            error: Some(error),
        },
    };
    (name.to_owned(), outcome)
}

fn record_dependency_gauges(state: &AppState) {
    let pool = state.database.status();
    let in_use = pool.size.saturating_sub(pool.available);
    metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "idle").set(pool.available as f64);
    metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "in_use").set(in_use as f64);
    metrics::gauge!(DB_POOL_CONNECTIONS, "state" => "max").set(pool.max_size as f64);
    metrics::gauge!(DB_POOL_WAITING).set(pool.waiting as f64);
    metrics::gauge!(REDIS_CONNECTED).set(if state.bus.is_connected() { 1.0 } else { 0.0 });
}

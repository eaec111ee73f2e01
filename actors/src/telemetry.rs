//! Logs and metrics set-up.
//!
//! Both are process-wide: tracing has one global subscriber and `metrics` one global recorder.
//! Installing either twice is harmless here (the second call keeps the first), which lets the
//! integration tests run many servers in one process.

use std::sync::OnceLock;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use nodegrid_services::config::LogFormat;
use tracing_subscriber::EnvFilter;

pub const HTTP_REQUESTS_TOTAL: &str = "nodegrid_http_requests_total";
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "nodegrid_http_request_duration_seconds";
pub const HTTP_ERRORS_TOTAL: &str = "nodegrid_http_errors_total";
pub const DEPENDENCY_UP: &str = "nodegrid_dependency_up";
pub const DEPENDENCY_CHECK_DURATION_SECONDS: &str = "nodegrid_dependency_check_duration_seconds";
pub const DB_POOL_CONNECTIONS: &str = "nodegrid_db_pool_connections";
pub const DB_POOL_WAITING: &str = "nodegrid_db_pool_waiting";
pub const REDIS_CONNECTED: &str = "nodegrid_redis_connected";
pub const REDIS_RECONNECTS_TOTAL: &str = "nodegrid_redis_reconnects_total";
pub const CONTROL_EVENTS_TOTAL: &str = "nodegrid_control_events_total";
pub const CONTROL_EVENTS_INVALID_TOTAL: &str = "nodegrid_control_events_invalid_total";
pub const BUS_MESSAGES_LAGGED_TOTAL: &str = "nodegrid_bus_messages_lagged_total";
pub const ACTOR_RESTARTS_TOTAL: &str = "nodegrid_actor_restarts_total";
pub const BUILD_INFO: &str = "nodegrid_build_info";

/// Latency buckets in seconds, from 0.5 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Starts writing logs in the given format, filtered by `filter` (tracing `EnvFilter` syntax).
/// A second call in the same process does nothing.
pub fn init_tracing(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|error| {
        eprintln!("nodegrid: log filter {filter:?} is not valid ({error}); using \"info\"");
        EnvFilter::new("info")
    });
    // Colours only for a person at a terminal; files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}

/// The process's Prometheus recorder, installed on first use.
pub fn prometheus() -> Result<PrometheusHandle, String> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE.get_or_init(install_recorder).clone()
}

fn install_recorder() -> Result<PrometheusHandle, String> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(HTTP_REQUEST_DURATION_SECONDS.to_owned()),
            LATENCY_BUCKETS,
        )
        .and_then(|builder| {
            builder.set_buckets_for_metric(
                Matcher::Full(DEPENDENCY_CHECK_DURATION_SECONDS.to_owned()),
                LATENCY_BUCKETS,
            )
        })
        .and_then(|builder| {
            builder.set_buckets_for_metric(
                Matcher::Full(crate::stream::metrics::PUBLISH_SECONDS.to_owned()),
                LATENCY_BUCKETS,
            )
        })
        .and_then(|builder| {
            builder.set_buckets_for_metric(
                Matcher::Full(crate::stream::metrics::DELIVERY_SECONDS.to_owned()),
                LATENCY_BUCKETS,
            )
        })
        .map_err(|error| error.to_string())?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|error| error.to_string())?;
    describe_metrics();
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}

fn describe_metrics() {
    describe_counter!(
        HTTP_REQUESTS_TOTAL,
        "HTTP requests answered, by method, route pattern and status."
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Time from request to response, by method, route pattern and status."
    );
    describe_counter!(
        HTTP_ERRORS_TOTAL,
        "HTTP error responses, by stable error code."
    );
    describe_gauge!(
        DEPENDENCY_UP,
        "1 when the dependency answered its last readiness check, else 0."
    );
    describe_histogram!(
        DEPENDENCY_CHECK_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of readiness checks, by dependency."
    );
    describe_gauge!(
        DB_POOL_CONNECTIONS,
        "Postgres pool connections, by state (idle, in_use, max)."
    );
    describe_gauge!(
        DB_POOL_WAITING,
        "Requests waiting for a pooled Postgres connection."
    );
    describe_gauge!(
        REDIS_CONNECTED,
        "1 when both Redis connections (commands and subscriber) are up, else 0."
    );
    describe_counter!(
        REDIS_RECONNECTS_TOTAL,
        "Reconnections of the Redis subscriber connection."
    );
    describe_counter!(
        CONTROL_EVENTS_TOTAL,
        "Control-channel events received, by kind."
    );
    describe_counter!(
        CONTROL_EVENTS_INVALID_TOTAL,
        "Control-channel messages that could not be decoded."
    );
    describe_counter!(
        BUS_MESSAGES_LAGGED_TOTAL,
        "Redis messages dropped because the bridge fell behind its subscriber."
    );
    describe_counter!(
        ACTOR_RESTARTS_TOTAL,
        "Restarts of supervised actors, by actor."
    );
    describe_gauge!(BUILD_INFO, "Always 1; the version label names the build.");
    crate::stream::metrics::describe();
    crate::pnodes::metrics::describe();
    describe_gauge!(
        "nodegrid_lease_leader",
        "1 while this instance holds the named leader lease, else 0."
    );
    describe_counter!(
        "nodegrid_lease_transitions_total",
        "Changes of leadership of the named lease seen by this instance."
    );
    describe_counter!(
        "nodegrid_auth_events_total",
        "Identity events: register, login, login_failed, login_blocked, refresh, refresh_reuse, logout, forbidden, block, unblock."
    );
    describe_counter!(
        "nodegrid_auth_token_rejections_total",
        "Access tokens refused, by reason (expired, invalid, blocked)."
    );
    describe_counter!(
        "nodegrid_rate_limited_total",
        "Requests refused by a rate limit, by scope and key kind (ip, user)."
    );
    describe_counter!(
        "nodegrid_rate_limit_errors_total",
        "Rate-limit checks that failed (Redis unavailable); those requests were allowed."
    );
    describe_counter!(
        "nodegrid_audit_write_errors_total",
        "Audit entries that could not be written."
    );
}

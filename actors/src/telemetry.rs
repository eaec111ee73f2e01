//! Logs and metrics set-up: the tracing subscriber, and the Prometheus recorder with every
//! area's metric descriptions (the names live with their areas: [`crate::metrics`] for the
//! runtime's own, `stream::metrics`, `pnodes::metrics`, and the services' constants).
//!
//! Both are process-wide: tracing has one global subscriber and `metrics` one global recorder.
//! Installing either twice is harmless here (the second call keeps the first), which lets the
//! integration tests run many servers in one process.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use nodegrid_services::config::LogFormat;

use crate::metrics::{
    BUILD_INFO, DEPENDENCY_CHECK_DURATION_SECONDS, HTTP_REQUEST_DURATION_SECONDS,
};
use tracing_subscriber::EnvFilter;

/// Latency buckets in seconds, from 0.5 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Libraries whose `debug` and `trace` lines carry what passes through them: query parameters
/// (a webhook's secret, a password hash), commands and their arguments, request URLs and
/// headers.
const CHATTY_DEPENDENCIES: [&str; 8] = [
    "tokio_postgres",
    "deadpool_postgres",
    "fred",
    "reqwest",
    "hyper",
    "hyper_util",
    "h2",
    "tonic",
];

/// A filter that turns on `debug` or `trace` keeps the libraries above at `info`, so that a
/// verbose log never holds a secret, unless the filter names the library itself (an operator
/// who asks for it by name gets it).
fn quieten_dependencies(filter: &str) -> String {
    let verbose = filter
        .split([',', '='])
        .any(|part| matches!(part.trim(), "debug" | "trace"));
    if !verbose {
        return filter.to_owned();
    }
    let mut quietened = filter.to_owned();
    for dependency in CHATTY_DEPENDENCIES {
        if !filter.contains(dependency) {
            quietened.push_str(&format!(",{dependency}=info"));
        }
    }
    quietened
}

/// Starts writing logs in the given format, filtered by `filter` (tracing `EnvFilter` syntax).
/// A second call in the same process does nothing.
pub fn init_tracing(format: LogFormat, filter: &str) {
    let filter = quieten_dependencies(filter);
    let filter = filter.as_str();
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

/// The metrics recorder could not be installed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot install the metrics recorder: {0}")]
pub struct MetricsSetupError(String);

/// The process's Prometheus recorder, installed on first use.
pub fn prometheus() -> Result<PrometheusHandle, MetricsSetupError> {
    static HANDLE: OnceLock<Result<PrometheusHandle, MetricsSetupError>> = OnceLock::new();
    HANDLE.get_or_init(install_recorder).clone()
}

fn install_recorder() -> Result<PrometheusHandle, MetricsSetupError> {
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
        .map_err(|error| MetricsSetupError(error.to_string()))?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|error| MetricsSetupError(error.to_string()))?;
    crate::metrics::describe();
    crate::stream::metrics::describe();
    crate::stream::writer::describe();
    crate::pnodes::metrics::describe();
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}

#[cfg(test)]
mod quiet_tests {
    use super::quieten_dependencies;

    #[test]
    fn verbose_filters_keep_chatty_libraries_at_info() {
        assert_eq!(quieten_dependencies("info"), "info");
        assert_eq!(
            quieten_dependencies("warn,nodegrid_actors=info"),
            "warn,nodegrid_actors=info"
        );
        let quiet = quieten_dependencies("debug");
        assert!(quiet.starts_with("debug,tokio_postgres=info,"), "{quiet}");
        let named = quieten_dependencies("info,tokio_postgres=debug");
        assert!(!named.contains("tokio_postgres=info"), "{named}");
        assert!(named.contains("fred=info"), "{named}");
    }
}

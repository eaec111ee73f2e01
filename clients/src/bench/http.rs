//! The `http` scenario: GET one path at a fixed total rate, open loop, and measure latency
//! from each request's scheduled time (so that a slow server cannot hide its queueing by
//! slowing the generator: no coordinated omission).
//!
//! Less the generator's own delay: a request due while its connection is free should go at
//! once, and how much later it went — tokio's timers fire on millisecond ticks, and on a
//! shared machine the generator's threads wait for a core — is the generator's doing, not
//! the server's, so it is not counted. A request due while its connection still waits for
//! the last answer counts from its scheduled time, all of it. (A thread handing out the
//! schedule within microseconds was tried instead: it cost the generator half again as much
//! CPU, taken from the server it measures.)

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::measure::{new_histogram, own_cpu, server_cpu, server_peak_rss, stolen_cpu};
use super::options::BenchOptions;
use super::plan::BenchError;
use super::raw_http::RawGet;
use super::report::Latency;

#[derive(Debug, Clone, Serialize)]
pub struct HttpReport {
    pub url: String,
    /// The headers sent with every request, `Name: value`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
    pub target_rate: f64,
    pub connections: usize,
    pub seconds: f64,
    pub requests: u64,
    pub ok: u64,
    pub achieved_rate: f64,
    pub errors: BTreeMap<String, u64>,
    pub mean_body_bytes: u64,
    pub latency_ms: Latency,
    pub bench_cpu_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_seconds: Option<f64>,
    /// CPU time the hypervisor took from this machine during the run (Linux guests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stolen_cpu_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_peak_rss_mib: Option<f64>,
}

/// How long one request may take before it counts as a `timeout`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How a worker makes its requests: over `http://` with the minimal client of
/// [`super::raw_http`], otherwise (TLS) with reqwest.
enum Getter {
    Raw(RawGet),
    Client(reqwest::Client, String),
}

impl Getter {
    /// The answer's status and body length, or the kind of failure.
    async fn get(&mut self) -> Result<(u16, usize), &'static str> {
        match self {
            Getter::Raw(raw) => raw
                .get()
                .await
                .map(|answer| (answer.status, answer.body_bytes))
                .map_err(|error| error.kind()),
            Getter::Client(client, url) => {
                let response = client.get(url.as_str()).send().await.map_err(|error| {
                    if error.is_timeout() {
                        "timeout"
                    } else {
                        "connect"
                    }
                })?;
                let status = response.status().as_u16();
                let body = response.bytes().await.map_err(|_| "body")?;
                Ok((status, body.len()))
            }
        }
    }
}

/// What one worker of an open-loop run counted.
pub(super) struct WorkerResult {
    pub histogram: Histogram<u64>,
    pub requests: u64,
    pub ok: u64,
    pub body_bytes: u64,
    pub errors: BTreeMap<String, u64>,
}

pub async fn run(options: &BenchOptions) -> Result<(), BenchError> {
    let base = options
        .target
        .first()
        .ok_or_else(|| BenchError::Setup("--target names no server".into()))?;
    let url = format!("{}{}", base.trim_end_matches('/'), options.path);
    let connections = options.connections.max(1);
    let per_worker_rate = options.rate / connections as f64;
    if per_worker_rate <= 0.0 {
        return Err(BenchError::Setup("--rate must be positive".into()));
    }
    let period = Duration::from_secs_f64(1.0 / per_worker_rate);
    let duration = Duration::from_secs(options.seconds);
    let parsed =
        reqwest::Url::parse(&url).map_err(|error| BenchError::Setup(format!("{url}: {error}")))?;
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in &options.headers {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|error| BenchError::Setup(format!("header {name}: {error}")))?;
        let value = reqwest::header::HeaderValue::from_str(value)
            .map_err(|error| BenchError::Setup(format!("header {name}: {error}")))?;
        headers.append(name, value);
    }
    // Clients are made before the schedule starts: their first requests are due then.
    let mut getters = Vec::with_capacity(connections);
    for _ in 0..connections {
        let getter = if parsed.scheme() == "http" {
            Getter::Raw(
                RawGet::new(&parsed, &options.headers, REQUEST_TIMEOUT)
                    .map_err(BenchError::Setup)?,
            )
        } else {
            let client = reqwest::Client::builder()
                .default_headers(headers.clone())
                .pool_max_idle_per_host(1)
                .timeout(REQUEST_TIMEOUT)
                .build()
                .map_err(|error| BenchError::Setup(format!("HTTP client: {error}")))?;
            Getter::Client(client, url.clone())
        };
        getters.push(getter);
    }
    let start = RunStart::now(&options.server_pid);
    let started = start.started;
    let mut workers = Vec::with_capacity(connections);
    for (index, mut getter) in getters.into_iter().enumerate() {
        let mut histogram = new_histogram()?;
        // Spread the workers' ticks over one period.
        let offset = period.mul_f64(index as f64 / connections as f64);
        workers.push(tokio::spawn(async move {
            let (mut requests, mut ok, mut body_bytes) = (0, 0, 0);
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            let mut scheduled = started + offset;
            // When the connection's last answer was in: a request is sent once both it is due
            // and the connection is free.
            let mut free_since = started;
            while scheduled < started + duration {
                tokio::time::sleep_until(scheduled.into()).await;
                let sent = Instant::now();
                let own_delay = sent.saturating_duration_since(scheduled.max(free_since));
                requests += 1;
                match getter.get().await {
                    Ok((status, bytes)) if (200..300).contains(&status) => {
                        ok += 1;
                        body_bytes += bytes as u64;
                    }
                    Ok((status, _)) => *errors.entry(status.to_string()).or_default() += 1,
                    Err(kind) => *errors.entry(kind.into()).or_default() += 1,
                }
                free_since = Instant::now();
                let latency = (free_since - scheduled).saturating_sub(own_delay);
                let _ = histogram.record((latency.as_micros().max(1) as u64).min(100_000_000));
                scheduled += period;
            }
            WorkerResult {
                histogram,
                requests,
                ok,
                body_bytes,
                errors,
            }
        }));
    }
    finish(url, options, connections, start, workers).await
}

/// What an open-loop run measures at its start, for the differences its report gives.
pub(super) struct RunStart {
    pub started: Instant,
    own_cpu: Option<f64>,
    server_cpu: Option<f64>,
    stolen_cpu: Option<f64>,
}

impl RunStart {
    pub fn now(server_pid: &[u32]) -> RunStart {
        RunStart {
            own_cpu: own_cpu(),
            server_cpu: server_cpu(server_pid),
            stolen_cpu: stolen_cpu(),
            started: Instant::now(),
        }
    }
}

/// Merges the workers of an open-loop run, and prints the report.
pub(super) async fn finish(
    url: String,
    options: &BenchOptions,
    connections: usize,
    start: RunStart,
    workers: Vec<tokio::task::JoinHandle<WorkerResult>>,
) -> Result<(), BenchError> {
    let mut total = new_histogram()?;
    let (mut requests, mut ok, mut body_bytes) = (0, 0, 0);
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for worker in workers {
        let result = worker
            .await
            .map_err(|error| BenchError::Setup(format!("worker failed: {error}")))?;
        let _ = total.add(&result.histogram);
        requests += result.requests;
        ok += result.ok;
        body_bytes += result.body_bytes;
        for (code, count) in result.errors {
            *errors.entry(code).or_default() += count;
        }
    }
    let elapsed = start.started.elapsed().as_secs_f64();
    let report = HttpReport {
        url,
        headers: options
            .headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}"))
            .collect(),
        target_rate: options.rate,
        connections,
        seconds: elapsed,
        requests,
        ok,
        achieved_rate: requests as f64 / elapsed.max(0.001),
        errors,
        mean_body_bytes: body_bytes.checked_div(ok).unwrap_or(0),
        latency_ms: Latency::of(&total),
        bench_cpu_seconds: match (start.own_cpu, own_cpu()) {
            (Some(before), Some(after)) => after - before,
            _ => 0.0,
        },
        server_cpu_seconds: match (start.server_cpu, server_cpu(&options.server_pid)) {
            (Some(before), Some(after)) => Some(after - before),
            _ => None,
        },
        server_peak_rss_mib: server_peak_rss(&options.server_pid),
        stolen_cpu_seconds: start
            .stolen_cpu
            .zip(stolen_cpu())
            .map(|(before, after)| after - before),
    };
    print(&report, options);
    Ok(())
}

fn print(report: &HttpReport, options: &BenchOptions) {
    if options.json {
        if let Ok(text) = serde_json::to_string_pretty(report) {
            println!("{text}");
        }
        return;
    }
    if options.markdown {
        println!(
            "| url | target req/s | achieved req/s | ok | errors | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | body bytes | server CPU s | stolen CPU s |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        println!(
            "| `{}`{} | {:.0} | {:.0} | {} | {:?} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
            report.url,
            report
                .headers
                .iter()
                .map(|header| format!(" with `{header}`"))
                .collect::<String>(),
            report.target_rate,
            report.achieved_rate,
            report.ok,
            report.errors,
            report.latency_ms.p50,
            report.latency_ms.p90,
            report.latency_ms.p99,
            report.latency_ms.p999,
            report.latency_ms.max,
            report.mean_body_bytes,
            report
                .server_cpu_seconds
                .map_or("-".to_owned(), |s| format!("{s:.1}")),
            report
                .stolen_cpu_seconds
                .map_or("-".to_owned(), |s| format!("{s:.2}")),
        );
        return;
    }
    println!(
        "http GET {}{}: {} requests in {:.1} s ({:.0}/s of {:.0}/s asked, {} connections), {} ok, errors {:?}",
        report.url,
        report
            .headers
            .iter()
            .map(|header| format!(" with {header}"))
            .collect::<String>(),
        report.requests,
        report.seconds,
        report.achieved_rate,
        report.target_rate,
        report.connections,
        report.ok,
        report.errors
    );
    println!(
        "  latency ms p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}; {} bytes a body; bench CPU {:.1} s; server CPU {}",
        report.latency_ms.p50,
        report.latency_ms.p90,
        report.latency_ms.p99,
        report.latency_ms.p999,
        report.latency_ms.max,
        report.mean_body_bytes,
        report.bench_cpu_seconds,
        report
            .server_cpu_seconds
            .map_or("-".to_owned(), |s| format!("{s:.1} s")),
    );
}

//! `nodegrid bench`: drives a real deployment over real sockets and reports what is needed to
//! compare runs: offered and delivered messages per second, end-to-end latency percentiles
//! (HDR histogram), errors by code, losses by sequence gaps, and the CPU and memory of the
//! server processes named by `--server-pid`. The same `fleet` and `broadcast` scenarios run
//! against an MQTT broker (`--target mqtt://…` or `--compare mqtt://…`) for a speed reference.
//!
//! It stops by itself (bounded duration and message count) and connects only to the addresses
//! it is given.

mod http;
mod mqtt;
mod nodegrid;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// P producers at R msg/s each; C consumers, each subscribed to K producers.
    Fleet,
    /// One producer, N consumers.
    Broadcast,
    /// N idle consumers held open: the server's memory per connection.
    Connections,
    /// Raise the rate until delivery falls behind or p99 passes `--max-p99-ms`.
    Max,
    /// GET `--path` at `--rate` requests a second in all, over `--connections` connections.
    Http,
}

#[derive(Debug, Clone, Args)]
pub struct BenchOptions {
    /// nodegrid base URLs (several instances: comma-separated; connections are spread over
    /// them), or `mqtt://host:port` for a broker.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:8080")]
    pub target: Vec<String>,
    /// Also run the scenario against this MQTT broker, and print both and their ratio.
    #[arg(long)]
    pub compare: Option<String>,
    #[arg(long, value_enum, default_value = "fleet")]
    pub scenario: Scenario,
    #[arg(long, default_value_t = 10)]
    pub producers: usize,
    #[arg(long, default_value_t = 10)]
    pub consumers: usize,
    /// Producers each consumer subscribes to (fleet; round-robin).
    #[arg(long, default_value_t = 1)]
    pub per_consumer: usize,
    /// Messages per second per producer.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Seconds of sending (per step for `max`).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Stop after this many messages in all, whatever the duration.
    #[arg(long, default_value_t = 10_000_000)]
    pub max_messages: u64,
    /// Extra payload bytes per message.
    #[arg(long, default_value_t = 64)]
    pub payload_bytes: usize,
    /// Loopback source addresses to spread connections over (127.0.0.1 … 127.0.0.N), so that
    /// many connections fit the port range.
    #[arg(long, default_value_t = 1)]
    pub source_addresses: u8,
    /// Server process ids whose CPU seconds and peak RSS to report.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// The compared broker's process ids, likewise.
    #[arg(long, value_delimiter = ',')]
    pub compare_pid: Vec<u32>,
    /// `max`: the p99 latency bound, in milliseconds.
    #[arg(long, default_value_t = 50.0)]
    pub max_p99_ms: f64,
    /// `http`: the path (and query) to GET.
    #[arg(long, default_value = "/api/xandeum/pnodes?limit=100")]
    pub path: String,
    /// `http`: concurrent connections the rate is spread over.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Print the report as a Markdown table: a header, then a row per target.
    #[arg(long)]
    pub markdown: bool,
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    pub scenario: Scenario,
    pub producers: usize,
    pub consumers: usize,
    pub per_consumer: usize,
    pub rate_per_producer: f64,
    pub seconds: f64,
    pub sent: u64,
    pub acked: u64,
    pub expected_deliveries: u64,
    pub delivered: u64,
    pub offered_msgs_per_sec: f64,
    pub delivered_msgs_per_sec: f64,
    pub lost: u64,
    pub seq_gaps: u64,
    pub errors: BTreeMap<String, u64>,
    pub latency_ms: Latency,
    pub bench_cpu_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_peak_rss_mib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_kib_per_connection: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// A scenario's shape, resolved.
#[derive(Debug, Clone)]
pub struct Plan {
    pub producers: usize,
    pub consumers: usize,
    pub per_consumer: usize,
    pub rate: f64,
    pub seconds: u64,
    pub max_messages: u64,
    pub payload_bytes: usize,
    pub source_addresses: u8,
}

impl Plan {
    /// Which producers consumer `index` subscribes to.
    pub fn producers_of(&self, index: usize) -> Vec<usize> {
        (0..self.per_consumer.min(self.producers))
            .map(|offset| (index + offset) % self.producers)
            .collect()
    }

    /// How many consumers subscribe to producer `producer`.
    pub fn subscribers_of(&self, producer: usize) -> u64 {
        (0..self.consumers)
            .filter(|consumer| self.producers_of(*consumer).contains(&producer))
            .count() as u64
    }

    /// The loopback address connection `index` starts from.
    pub fn source(&self, index: usize) -> std::net::IpAddr {
        let last = 1 + (index % usize::from(self.source_addresses.max(1))) as u8;
        std::net::IpAddr::from([127, 0, 0, last])
    }
}

/// Paces one producer: `rate` messages a second until the run's duration or its share of
/// `max_messages` is reached.
pub struct Pacer {
    ticker: tokio::time::Interval,
    deadline: Instant,
    cap: u64,
    count: u64,
}

impl Pacer {
    pub fn new(plan: &Plan) -> Pacer {
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate.max(0.001)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        Pacer {
            ticker,
            deadline: Instant::now() + Duration::from_secs(plan.seconds),
            cap: plan.max_messages / plan.producers.max(1) as u64,
            count: 0,
        }
    }

    /// Waits for the next message's turn; its number (from 1), or `None` when the run is over.
    pub async fn next(&mut self) -> Option<u64> {
        if Instant::now() >= self.deadline || self.count >= self.cap {
            return None;
        }
        self.ticker.tick().await;
        self.count += 1;
        Some(self.count)
    }

    /// Messages sent so far.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// Counters the drivers share while a run goes on.
#[derive(Default)]
pub struct Tally {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub delivered: AtomicU64,
    pub gaps: AtomicU64,
    pub errors: std::sync::Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    pub fn error(&self, code: &str) {
        let mut errors = self
            .errors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *errors.entry(code.to_owned()).or_default() += 1;
    }
}

/// What each consumer hands back: its latencies (µs) and the messages it got.
pub type ConsumerResult = Histogram<u64>;

/// A latency histogram: 1 µs to 100 s at 3 significant digits.
pub fn new_histogram() -> Result<Histogram<u64>, BenchError> {
    Histogram::new_with_bounds(1, 100_000_000, 3)
        .map_err(|error| BenchError::Setup(format!("histogram: {error}")))
}

pub fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros() as u64)
        .unwrap_or(0)
}

/// Reads `"key":<digits>` from a JSON text without decoding it all (the consumers' hot path).
pub fn number_after(text: &str, key: &str) -> Option<u64> {
    let start = text.find(key)? + key.len();
    let digits: &str = &text[start..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Setup(String),
}

/// Runs what the options ask for and prints the report(s).
pub async fn run(options: BenchOptions) -> Result<(), BenchError> {
    if let Err(error) = rlimit::increase_nofile_limit(1_048_576) {
        tracing::warn!(%error, "could not raise the open-file limit");
    }
    if options.scenario == Scenario::Http {
        return http::run(&options).await;
    }
    let plan = Plan {
        producers: match options.scenario {
            Scenario::Broadcast => 1,
            Scenario::Connections => 0,
            _ => options.producers.max(1),
        },
        consumers: options.consumers,
        per_consumer: match options.scenario {
            Scenario::Broadcast => 1,
            Scenario::Connections => 0,
            _ => options.per_consumer.max(1),
        },
        rate: options.rate,
        seconds: options.seconds,
        max_messages: options.max_messages,
        payload_bytes: options.payload_bytes,
        source_addresses: options.source_addresses,
    };
    let mut reports =
        vec![run_target(&options, &options.target, &plan, &options.server_pid).await?];
    if let Some(broker) = &options.compare {
        let broker = std::slice::from_ref(broker);
        reports.push(run_target(&options, broker, &plan, &options.compare_pid).await?);
    }
    if options.markdown {
        println!("{MARKDOWN_HEADER}");
        for report in &reports {
            println!("{}", markdown_row(report));
        }
        return Ok(());
    }
    if options.json {
        let text = serde_json::to_string_pretty(&reports)
            .map_err(|error| BenchError::Setup(error.to_string()))?;
        println!("{text}");
    } else {
        for report in &reports {
            print_human(report);
        }
        if let [ours, theirs] = &reports[..]
            && theirs.delivered_msgs_per_sec > 0.0
        {
            println!(
                "ratio {} / {}: delivered {:.2}×, p99 {:.2}×",
                ours.target,
                theirs.target,
                ours.delivered_msgs_per_sec / theirs.delivered_msgs_per_sec,
                ours.latency_ms.p99 / theirs.latency_ms.p99.max(0.001),
            );
        }
    }
    Ok(())
}

async fn run_target(
    options: &BenchOptions,
    targets: &[String],
    plan: &Plan,
    pids: &[u32],
) -> Result<Report, BenchError> {
    let is_mqtt = targets.iter().any(|target| target.starts_with("mqtt://"));
    if is_mqtt && options.scenario == Scenario::Connections {
        return Err(BenchError::Setup(
            "the connections scenario measures nodegrid only".into(),
        ));
    }
    if options.scenario == Scenario::Max {
        return run_max(options, targets, plan, is_mqtt, pids).await;
    }
    once(options, targets, plan, is_mqtt, pids).await
}

async fn once(
    options: &BenchOptions,
    targets: &[String],
    plan: &Plan,
    is_mqtt: bool,
    pids: &[u32],
) -> Result<Report, BenchError> {
    let server_before = server_cpu(pids);
    let rss_before = server_rss(pids);
    let bench_before = own_cpu();
    let outcome = if is_mqtt {
        mqtt::run(&targets[0], plan).await?
    } else {
        nodegrid::run(targets, plan, options.scenario, pids).await?
    };
    let mut report = outcome.report(targets.join(","), options.scenario, plan);
    report.bench_cpu_seconds = own_cpu().map_or(0.0, |after| after - bench_before.unwrap_or(0.0));
    if let (Some(before), Some(after)) = (server_before, server_cpu(pids)) {
        report.server_cpu_seconds = Some(after - before);
    }
    report.server_peak_rss_mib = server_peak_rss(pids);
    if options.scenario == Scenario::Connections
        && let (Some(before), Some(during)) = (rss_before, outcome.rss_with_connections)
        && plan.consumers > 0
    {
        report.server_kib_per_connection =
            Some((during.saturating_sub(before)) as f64 / plan.consumers as f64);
    }
    Ok(report)
}

async fn run_max(
    options: &BenchOptions,
    targets: &[String],
    plan: &Plan,
    is_mqtt: bool,
    pids: &[u32],
) -> Result<Report, BenchError> {
    let mut best: Option<Report> = None;
    let mut rate = plan.rate;
    for _ in 0..12 {
        let step = Plan {
            rate,
            ..plan.clone()
        };
        let report = once(options, targets, &step, is_mqtt, pids).await?;
        eprintln!(
            "max: {:.0} msg/s per producer → delivered {:.0}/s, p99 {:.2} ms, lost {}",
            rate, report.delivered_msgs_per_sec, report.latency_ms.p99, report.lost
        );
        let keeping_up = report.lost == 0
            && report.delivered as f64 >= 0.99 * report.expected_deliveries as f64
            && report.latency_ms.p99 <= options.max_p99_ms;
        if !keeping_up {
            break;
        }
        best = Some(report);
        rate *= 1.5;
    }
    best.ok_or_else(|| {
        BenchError::Setup("even the starting rate was too much; lower --rate".into())
    })
}

/// Waits for the producers (each answers its index and how many it sent) and then the
/// consumers, and puts together what the run measured.
pub async fn finish(
    plan: &Plan,
    tally: Arc<Tally>,
    started: Instant,
    done: Arc<std::sync::atomic::AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<(usize, u64)>>,
    readers: Vec<tokio::task::JoinHandle<Result<Histogram<u64>, BenchError>>>,
) -> Result<Outcome, BenchError> {
    let failed = |error: tokio::task::JoinError| BenchError::Setup(error.to_string());
    let mut expected = 0u64;
    for writer in writers {
        let (index, count) = writer.await.map_err(failed)?;
        expected += count * plan.subscribers_of(index);
    }
    let sending_seconds = started.elapsed().as_secs_f64();
    let mut histogram = new_histogram()?;
    for reader in readers {
        let part = reader.await.map_err(failed)??;
        let _ = histogram.add(&part);
    }
    done.store(true, Ordering::Relaxed);
    Ok(Outcome {
        tally,
        histogram,
        expected,
        sending_seconds,
        rss_with_connections: None,
    })
}

/// What a driver measured.
pub struct Outcome {
    pub tally: Arc<Tally>,
    pub histogram: Histogram<u64>,
    pub expected: u64,
    pub sending_seconds: f64,
    pub rss_with_connections: Option<u64>,
}

impl Outcome {
    fn report(&self, target: String, scenario: Scenario, plan: &Plan) -> Report {
        let sent = self.tally.sent.load(Ordering::Relaxed);
        let delivered = self.tally.delivered.load(Ordering::Relaxed);
        let seconds = self.sending_seconds.max(0.001);
        let quantile = |q: f64| self.histogram.value_at_quantile(q) as f64 / 1_000.0;
        Report {
            target,
            scenario,
            producers: plan.producers,
            consumers: plan.consumers,
            per_consumer: plan.per_consumer,
            rate_per_producer: plan.rate,
            seconds,
            sent,
            acked: self.tally.acked.load(Ordering::Relaxed),
            expected_deliveries: self.expected,
            delivered,
            offered_msgs_per_sec: (sent as f64 / seconds).round(),
            delivered_msgs_per_sec: (delivered as f64 / seconds).round(),
            lost: self.expected.saturating_sub(delivered),
            seq_gaps: self.tally.gaps.load(Ordering::Relaxed),
            errors: self
                .tally
                .errors
                .lock()
                .map(|errors| errors.clone())
                .unwrap_or_default(),
            latency_ms: if self.histogram.is_empty() {
                Latency::default()
            } else {
                Latency {
                    p50: quantile(0.5),
                    p90: quantile(0.9),
                    p99: quantile(0.99),
                    p999: quantile(0.999),
                    max: self.histogram.max() as f64 / 1_000.0,
                }
            },
            bench_cpu_seconds: 0.0,
            server_cpu_seconds: None,
            server_peak_rss_mib: None,
            server_kib_per_connection: None,
        }
    }
}

/// The header of [`markdown_row`]'s table.
pub const MARKDOWN_HEADER: &str = "| target | scenario | producers × rate | consumers × subscriptions | offered msg/s | delivered msg/s | p50 ms | p99 ms | p99.9 ms | max ms | lost | server CPU s | server peak RSS MiB | KiB/connection | bench CPU s |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";

fn markdown_row(report: &Report) -> String {
    let optional = |value: Option<f64>, digits: usize| {
        value.map_or("–".to_owned(), |value| format!("{value:.digits$}"))
    };
    format!(
        "| {} | {:?} | {} × {:.0} | {} × {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {:.1} |",
        if report.target.starts_with("mqtt://") {
            "Mosquitto"
        } else {
            "nodegrid"
        },
        report.scenario,
        report.producers,
        report.rate_per_producer,
        report.consumers,
        report.per_consumer,
        report.offered_msgs_per_sec,
        report.delivered_msgs_per_sec,
        report.latency_ms.p50,
        report.latency_ms.p99,
        report.latency_ms.p999,
        report.latency_ms.max,
        report.lost,
        optional(report.server_cpu_seconds, 1),
        optional(report.server_peak_rss_mib, 0),
        optional(report.server_kib_per_connection, 1),
        report.bench_cpu_seconds,
    )
}

fn print_human(report: &Report) {
    println!(
        "{} {:?}: {} producers × {:.0} msg/s, {} consumers × {} → sent {}, delivered {} of {} ({:.0}/s), lost {}, gaps {}",
        report.target,
        report.scenario,
        report.producers,
        report.rate_per_producer,
        report.consumers,
        report.per_consumer,
        report.sent,
        report.delivered,
        report.expected_deliveries,
        report.delivered_msgs_per_sec,
        report.lost,
        report.seq_gaps,
    );
    println!(
        "  latency ms: p50 {:.2}, p90 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2}; errors {:?}",
        report.latency_ms.p50,
        report.latency_ms.p90,
        report.latency_ms.p99,
        report.latency_ms.p999,
        report.latency_ms.max,
        report.errors
    );
    println!(
        "  bench CPU {:.1} s; server CPU {}; server peak RSS {}{}",
        report.bench_cpu_seconds,
        report
            .server_cpu_seconds
            .map_or("-".to_owned(), |seconds| format!("{seconds:.1} s")),
        report
            .server_peak_rss_mib
            .map_or("-".to_owned(), |mib| format!("{mib:.0} MiB")),
        report
            .server_kib_per_connection
            .map_or(String::new(), |kib| format!(
                "; {kib:.1} KiB per connection"
            )),
    );
}

/// A progress line on stderr every second until `done` is set.
pub fn progress(tally: Arc<Tally>, started: Instant, done: Arc<std::sync::atomic::AtomicBool>) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.tick().await;
        while !done.load(Ordering::Relaxed) {
            ticker.tick().await;
            eprint!(
                "\r{:>4.0} s  sent {:>10}  delivered {:>12}",
                started.elapsed().as_secs_f64(),
                tally.sent.load(Ordering::Relaxed),
                tally.delivered.load(Ordering::Relaxed)
            );
        }
        eprintln!();
    });
}

fn clock_ticks() -> f64 {
    100.0
}

fn cpu_of(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / clock_ticks())
}

pub(crate) fn own_cpu() -> Option<f64> {
    cpu_of("self")
}

pub(crate) fn server_cpu(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter()
        .map(|pid| cpu_of(&pid.to_string()))
        .sum::<Option<f64>>()
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|line| line.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Current RSS of the servers, in KiB.
pub fn server_rss(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|pid| status_kib(*pid, "VmRSS:")).sum()
}

pub(crate) fn server_peak_rss(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter()
        .map(|pid| status_kib(*pid, "VmHWM:"))
        .sum::<Option<u64>>()
        .map(|kib| kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_from_frames_without_decoding() {
        let text =
            r#"{"type":"data","producer_id":7,"seq":42,"ts":1,"payload":{"t":123456,"p":"x"}}"#;
        assert_eq!(number_after(text, "\"seq\":"), Some(42));
        assert_eq!(number_after(text, "\"t\":"), Some(123456));
        assert_eq!(number_after(text, "\"missing\":"), None);
    }

    #[test]
    fn consumers_spread_over_producers_and_sources() {
        let plan = Plan {
            producers: 4,
            consumers: 3,
            per_consumer: 2,
            rate: 1.0,
            seconds: 1,
            max_messages: 10,
            payload_bytes: 0,
            source_addresses: 3,
        };
        assert_eq!(plan.producers_of(3), [3, 0]);
        assert_eq!(plan.source(4).to_string(), "127.0.0.2");
    }
}

//! What a run measured, put together, and printed for people, as JSON, or as a Markdown row.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::measure::{CpuSpent, CpuWatch, new_histogram};
use super::options::Scenario;
use super::plan::{BenchError, Plan, Tally};

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
    pub redis_cpu_seconds: Option<f64>,
    /// `max`: whether the reported step kept up (false: not even the first did).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_up: Option<bool>,
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

impl Latency {
    /// The percentiles of a histogram of microseconds, in milliseconds (zeros when empty).
    pub fn of(histogram: &Histogram<u64>) -> Latency {
        if histogram.is_empty() {
            return Latency::default();
        }
        let ms = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1_000.0;
        Latency {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: histogram.max() as f64 / 1_000.0,
        }
    }
}

/// Waits for the producers (each answers its index and how many it sent) and then the
/// consumers, and puts together what the run measured.
pub async fn finish(
    plan: &Plan,
    tally: Arc<Tally>,
    cpu: CpuWatch,
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
    tally.sending_over.store(true, Ordering::Relaxed);
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
        cpu: cpu.stop(),
        rss_with_connections: None,
    })
}

/// What a driver measured.
pub struct Outcome {
    pub tally: Arc<Tally>,
    pub histogram: Histogram<u64>,
    pub expected: u64,
    pub sending_seconds: f64,
    pub cpu: CpuSpent,
    pub rss_with_connections: Option<u64>,
}

impl Outcome {
    pub(super) fn report(&self, target: String, scenario: Scenario, plan: &Plan) -> Report {
        let sent = self.tally.sent.load(Ordering::Relaxed);
        let delivered = self.tally.delivered.load(Ordering::Relaxed);
        let seconds = self.sending_seconds.max(0.001);
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
            latency_ms: Latency::of(&self.histogram),
            bench_cpu_seconds: self.cpu.own,
            server_cpu_seconds: self.cpu.server,
            redis_cpu_seconds: self.cpu.redis,
            kept_up: None,
            server_peak_rss_mib: None,
            server_kib_per_connection: None,
        }
    }
}

/// The header of [`markdown_row`]'s table.
pub const MARKDOWN_HEADER: &str = "| target | scenario | producers × rate | consumers × subscriptions | offered msg/s | delivered msg/s | p50 ms | p99 ms | p99.9 ms | max ms | lost | refused | server CPU s | server µs/delivery | Redis CPU s | server peak RSS MiB | KiB/connection | bench CPU s |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";

impl Report {
    /// Who served the run, for tables.
    pub fn side(&self) -> &'static str {
        if self.target.starts_with("mqtt+ws://") {
            "Mosquitto (WebSocket)"
        } else if self.target.starts_with("mqtt://") {
            "Mosquitto (TCP)"
        } else {
            "nodegrid"
        }
    }

    /// The server's CPU per delivered message, in µs.
    pub fn server_micros_per_delivery(&self) -> Option<f64> {
        let seconds = self.server_cpu_seconds?;
        (self.delivered > 0).then(|| seconds * 1e6 / self.delivered as f64)
    }

    /// Messages refused or failed, over every error code.
    pub fn refused(&self) -> u64 {
        self.errors.values().sum()
    }
}

pub(super) fn markdown_row(report: &Report) -> String {
    let optional = |value: Option<f64>, digits: usize| {
        value.map_or("–".to_owned(), |value| format!("{value:.digits$}"))
    };
    format!(
        "| {} | {:?}{} | {} × {:.0} | {} × {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {:.1} |",
        report.side(),
        report.scenario,
        if report.kept_up == Some(false) {
            " (first step did not keep up)"
        } else {
            ""
        },
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
        report.refused(),
        optional(report.server_cpu_seconds, 1),
        optional(report.server_micros_per_delivery(), 2),
        optional(report.redis_cpu_seconds, 1),
        optional(report.server_peak_rss_mib, 0),
        optional(report.server_kib_per_connection, 1),
        report.bench_cpu_seconds,
    )
}

/// One line comparing two runs of the same scenario: delivered rate, deliveries per server
/// CPU-second (with and without Redis) and p99, as ratios of `ours` to `theirs`.
pub(super) fn comparison(ours: &Report, theirs: &Report) -> String {
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.2}×", a / b)
        } else {
            "–".to_owned()
        }
    };
    let per_cpu = |report: &Report, with_redis: bool| {
        let cpu = report.server_cpu_seconds.unwrap_or(0.0)
            + if with_redis {
                report.redis_cpu_seconds.unwrap_or(0.0)
            } else {
                0.0
            };
        if cpu > 0.0 {
            report.delivered as f64 / cpu
        } else {
            0.0
        }
    };
    format!(
        "{:?} {} × {:.0} msg/s, {} × {}: {} vs {}: delivered {}; deliveries per server CPU-second {} ({:.0} vs {:.0}; with Redis's CPU {}); p99 {:.2} vs {:.2} ms",
        ours.scenario,
        ours.producers,
        ours.rate_per_producer,
        ours.consumers,
        ours.per_consumer,
        ours.side(),
        theirs.side(),
        ratio(ours.delivered_msgs_per_sec, theirs.delivered_msgs_per_sec),
        ratio(per_cpu(ours, false), per_cpu(theirs, false)),
        per_cpu(ours, false),
        per_cpu(theirs, false),
        ratio(per_cpu(ours, true), per_cpu(theirs, false)),
        ours.latency_ms.p99,
        theirs.latency_ms.p99,
    )
}

pub(super) fn print_human(report: &Report) {
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
        "  bench CPU {:.1} s; server CPU {}{}; Redis CPU {}; server peak RSS {}{}",
        report.bench_cpu_seconds,
        report
            .server_cpu_seconds
            .map_or("-".to_owned(), |seconds| format!("{seconds:.1} s")),
        report
            .server_micros_per_delivery()
            .map_or(String::new(), |micros| format!(
                " ({micros:.2} µs per delivery)"
            )),
        report
            .redis_cpu_seconds
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

//! The `wakeup` scenario: how late a thread wakes from a timed sleep on this machine, with no
//! server and no network — the floor under every latency the other scenarios measure here
//! (a request's latency holds at least two such wake-ups: the server's and the generator's).

use std::time::{Duration, Instant};

use serde::Serialize;

use super::measure::new_histogram;
use super::options::BenchOptions;
use super::plan::BenchError;
use super::report::Latency;

#[derive(Debug, Clone, Serialize)]
pub struct WakeupReport {
    pub rate: f64,
    pub wakeups: u64,
    /// How late each wake-up came, after the time slept to.
    pub lateness_ms: Latency,
}

/// Sleeps to `--rate` evenly spaced times a second for `--seconds` on a thread of its own and
/// measures each wake-up's lateness.
pub async fn run(options: &BenchOptions) -> Result<(), BenchError> {
    if options.rate <= 0.0 {
        return Err(BenchError::Setup("--rate must be positive".into()));
    }
    let interval = Duration::from_secs_f64(1.0 / options.rate);
    let duration = Duration::from_secs(options.seconds);
    let mut histogram = new_histogram()?;
    let measured = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut due = started + interval;
        while due - started <= duration {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let late = due.elapsed().as_micros().max(1) as u64;
            let _ = histogram.record(late.min(100_000_000));
            due += interval;
        }
        histogram
    })
    .await
    .map_err(|error| BenchError::Setup(format!("the sleeping thread failed: {error}")))?;
    let report = WakeupReport {
        rate: options.rate,
        wakeups: measured.len(),
        lateness_ms: Latency::of(&measured),
    };
    let late = &report.lateness_ms;
    if options.json {
        if let Ok(text) = serde_json::to_string_pretty(&report) {
            println!("{text}");
        }
    } else if options.markdown {
        println!(
            "| wake-ups a second | wake-ups | late p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |"
        );
        println!("|---|---|---|---|---|---|---|");
        println!(
            "| {:.0} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            report.rate, report.wakeups, late.p50, late.p90, late.p99, late.p999, late.max
        );
    } else {
        println!(
            "{} wake-ups at {:.0}/s, late by: p50 {:.3} ms, p90 {:.3}, p99 {:.3}, p99.9 {:.3}, max {:.3}",
            report.wakeups, report.rate, late.p50, late.p90, late.p99, late.p999, late.max
        );
    }
    Ok(())
}

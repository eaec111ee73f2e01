//! Measuring: latency histograms, clocks, reading numbers from frames without decoding them,
//! the progress line, and the CPU and memory of processes (from `/proc`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use super::plan::{BenchError, Tally};

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

pub(super) fn own_cpu() -> Option<f64> {
    cpu_of("self")
}

/// CPU time the machine's hypervisor gave to others while this machine's CPUs wanted to run
/// (the `steal` column of `/proc/stat`, in seconds; Linux counts it in USER_HZ, 100 a second):
/// a run whose latencies jump while it grows was waiting for the host, not for the server.
pub(super) fn stolen_cpu() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: u64 = stat
        .lines()
        .next()?
        .split_whitespace()
        .nth(8)?
        .parse()
        .ok()?;
    Some(ticks as f64 / 100.0)
}

pub(super) fn server_cpu(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter()
        .map(|pid| cpu_of(&pid.to_string()))
        .sum::<Option<f64>>()
}

/// The processes whose CPU a run reports: the server's (summed) and, beside them, Redis's.
#[derive(Debug, Clone, Default)]
pub struct Watched {
    pub server: Vec<u32>,
    pub redis: Option<u32>,
}

/// CPU seconds spent during a run's sending and delivering, not its set-up.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSpent {
    pub server: Option<f64>,
    pub redis: Option<f64>,
    pub own: f64,
}

/// CPU counters read when sending starts, to subtract at the end.
pub struct CpuWatch {
    watched: Watched,
    server: Option<f64>,
    redis: Option<f64>,
    own: Option<f64>,
}

impl CpuWatch {
    pub fn start(watched: &Watched) -> CpuWatch {
        CpuWatch {
            server: server_cpu(&watched.server),
            redis: watched.redis.and_then(|pid| cpu_of(&pid.to_string())),
            own: own_cpu(),
            watched: watched.clone(),
        }
    }

    pub fn stop(&self) -> CpuSpent {
        let since = |before: Option<f64>, after: Option<f64>| Some(after? - before?);
        CpuSpent {
            server: since(self.server, server_cpu(&self.watched.server)),
            redis: since(
                self.redis,
                self.watched.redis.and_then(|pid| cpu_of(&pid.to_string())),
            ),
            own: since(self.own, own_cpu()).unwrap_or(0.0),
        }
    }
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

pub(super) fn server_peak_rss(pids: &[u32]) -> Option<f64> {
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
}

//! A run's shape and its shared state: the plan, the pacing of producers, the counters, and
//! what can go wrong.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a consumer waits for its next frame at a time; once every producer is done, one
/// such wait in vain ends the run for it.
pub const IDLE_WAIT: Duration = Duration::from_secs(3);
/// How long a consumer waits for a frame while producers still send before it counts itself
/// stalled (an error of the run) and stops.
const STALL: Duration = Duration::from_secs(60);

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
    /// Consumers ask for batched frames (`?batch=1` on nodegrid: several messages per
    /// WebSocket frame, one per line).
    pub batch: bool,
    /// Requests in flight at once while accounts and subscriptions are set up.
    pub setup_concurrency: usize,
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
    /// Set once every producer has sent its last message.
    pub sending_over: AtomicBool,
}

impl Tally {
    pub fn error(&self, code: &str) {
        let mut errors = self
            .errors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *errors.entry(code.to_owned()).or_default() += 1;
    }

    /// A consumer waited [`IDLE_WAIT`] for a frame in vain (`idle` times in a row, counted
    /// here): whether to wait again. Not once the producers are done — the run is over — but
    /// while they still send, for up to [`STALL`] (then it counts as `consumer_stalled`), so
    /// a slow server does not end a consumer early.
    pub fn wait_again(&self, idle: &mut u32) -> bool {
        if self.sending_over.load(Ordering::Relaxed) {
            return false;
        }
        *idle += 1;
        if IDLE_WAIT * *idle >= STALL {
            self.error("consumer_stalled");
            return false;
        }
        true
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Setup(String),
}

#[cfg(test)]
mod tests {
    use super::*;

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
            batch: false,
            setup_concurrency: 1,
        };
        assert_eq!(plan.producers_of(3), [3, 0]);
        assert_eq!(plan.source(4).to_string(), "127.0.0.2");
    }
}

//! The open-loop schedule of a run: one thread hands each connection the scheduled times of
//! its requests as they come due.
//!
//! tokio's timers fire on millisecond ticks, so a worker that slept until its request's time
//! woke up to a millisecond late, and that lateness — the generator's own — was counted in
//! every latency measured from the schedule. A thread of its own sleeps to the next time and
//! hands out every time then due, waking at most once per [`GRAIN`] (a wake per request
//! would cost the generator more CPU than the server, at ten thousand a second); a worker
//! still busy with its last request finds the next time waiting, and its latency counts from
//! that time (no coordinated omission).

use std::time::{Duration, Instant};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// The schedule's thread wakes at most this often: a request is handed out at most this late.
pub const GRAIN: Duration = Duration::from_micros(250);

/// Starts the schedule of `rate` requests a second over `connections`, from `started` for
/// `duration`: request `k` is due at `started + k / rate`, on connection `k % connections`.
/// Each receiver ends once its last request is handed out.
pub fn start(
    connections: usize,
    rate: f64,
    started: Instant,
    duration: Duration,
) -> std::io::Result<Vec<UnboundedReceiver<Instant>>> {
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..connections.max(1)).map(|_| unbounded_channel()).unzip();
    let interval = 1.0 / rate.max(0.001);
    std::thread::Builder::new()
        .name("bench-schedule".into())
        .spawn(move || hand_out(&senders, interval, started, duration))?;
    Ok(receivers)
}

fn hand_out(
    senders: &[UnboundedSender<Instant>],
    interval: f64,
    started: Instant,
    duration: Duration,
) {
    let mut woke = started;
    for k in 0_u64.. {
        let offset = Duration::from_secs_f64(k as f64 * interval);
        if offset >= duration {
            return;
        }
        let due = started + offset;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due.max(woke + GRAIN) - now);
            woke = Instant::now();
        }
        let connection = (k % senders.len() as u64) as usize;
        if senders[connection].send(due).is_err() {
            // The run was abandoned.
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_connection_gets_its_share_in_order_and_on_time() {
        let started = Instant::now();
        let mut receivers = start(4, 2_000.0, started, Duration::from_millis(100)).unwrap();
        let mut all = Vec::new();
        for (connection, receiver) in receivers.iter_mut().enumerate() {
            let mut times = Vec::new();
            while let Some(due) = receiver.recv().await {
                times.push(due);
            }
            assert_eq!(times.len(), 50, "connection {connection}");
            // A connection's requests are four intervals of 500 µs apart.
            let apart = Duration::from_millis(2);
            assert!(
                times
                    .windows(2)
                    .all(|pair| (pair[1] - pair[0]).abs_diff(apart) < Duration::from_micros(1)),
                "{times:?}"
            );
            assert!(times[0] - started < Duration::from_micros(2_000));
            all.extend(times);
        }
        all.sort();
        assert_eq!(all.len(), 200);
        // Handed out no earlier than due: the last one came after the run's last due time.
        assert!(Instant::now() >= *all.last().unwrap());
    }
}

//! The webhook deliverer's task on each instance: while this instance holds the housekeeping
//! lease, it sends what the outbox holds every second (at once again while rounds come back
//! full), and prunes the delivery log hourly. Other instances only wait for the lease.

use std::time::{Duration, Instant};

use nodegrid_services::lease::Leadership;
use nodegrid_services::webhooks::delivery::Deliverer;
use tokio::sync::watch;

/// How often the leader looks for due deliveries.
const ROUND_INTERVAL: Duration = Duration::from_secs(1);
const PRUNE_EVERY: Duration = Duration::from_secs(3_600);

/// Starts the task; it ends when `stop` turns true (a round in flight finishes first).
pub fn start_deliverer(
    deliverer: Deliverer,
    leadership: watch::Receiver<Leadership>,
    mut stop: watch::Receiver<bool>,
) {
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(ROUND_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_prune: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = stop.wait_for(|stop| *stop) => break,
                _ = tick.tick() => {}
            }
            if !leadership.borrow().is_leader() {
                continue;
            }
            match deliverer.round().await {
                Ok(report) if report.delivered + report.retried + report.failed > 0 => {
                    tracing::debug!(?report, "webhook round");
                    // A full round may have left more due: go again without waiting.
                    tick.reset_immediately();
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "webhook deliveries could not be read or recorded")
                }
            }
            if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                last_prune = Some(Instant::now());
                match deliverer.prune().await {
                    Ok(0) => {}
                    Ok(rows) => tracing::info!(rows, "old webhook deliveries pruned"),
                    Err(error) => tracing::warn!(%error, "webhook delivery log pruning failed"),
                }
            }
        }
    });
}

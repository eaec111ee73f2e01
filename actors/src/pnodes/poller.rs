//! PnodePoller: one per configured seed. Asked by the aggregator once per cycle, it makes the
//! seed's three pRPC calls at once (each with its timeout) and keeps the seed's health: last
//! success, consecutive failures, latency, last error. After failures it backs off: the n-th
//! failure in a row makes it skip about 2^(n-1) - 1 cycles (at most 7).

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::FutureExt;
use nodegrid_protocol::pnode_api::pollers::{PollerState, PollerStatus};
use nodegrid_services::pnodes::Seed;
use nodegrid_services::pnodes::client::PrpcClient;
use nodegrid_services::pnodes::cycle::SeedPoll;

use super::metrics::{
    CALL_FAILURES, POLL_SECONDS, POLLER_FAILURES, POLLER_LAST_SUCCESS, POLLS, REJECTED,
};

const MAX_BACKOFF_FACTOR: u32 = 8;

pub struct PnodePoller {
    seed: Seed,
    client: PrpcClient,
    interval: Duration,
    status: PollerStatus,
    next_attempt: Option<Instant>,
}

impl PnodePoller {
    pub fn start_supervised(
        seed: Seed,
        client: PrpcClient,
        interval: Duration,
    ) -> Addr<PnodePoller> {
        Supervisor::start(move |_| PnodePoller {
            status: PollerStatus {
                seed: seed.label(),
                url: seed.rpc_url(),
                state: PollerState::Idle,
                ..PollerStatus::default()
            },
            seed,
            client,
            interval,
            next_attempt: None,
        })
    }

    fn record(
        &mut self,
        poll: &SeedPoll,
        failures: &[(&'static str, nodegrid_services::pnodes::client::CallError)],
    ) {
        let seed = self.status.seed.clone();
        self.status.polls_total += 1;
        self.status.last_attempt = Some(poll.polled_at);
        self.status.last_latency_ms = Some(poll.latency_ms);
        metrics::histogram!(POLL_SECONDS, "seed" => seed.clone())
            .record(poll.latency_ms as f64 / 1_000.0);
        for (method, error) in failures {
            metrics::counter!(CALL_FAILURES, "seed" => seed.clone(), "method" => *method, "kind" => error.kind())
                .increment(1);
        }
        if poll.tally.rejected_fields > 0 {
            metrics::counter!(REJECTED, "kind" => "field")
                .increment(u64::from(poll.tally.rejected_fields));
        }
        if poll.tally.rejected_pods > 0 {
            metrics::counter!(REJECTED, "kind" => "pod")
                .increment(u64::from(poll.tally.rejected_pods));
        }
        if poll.succeeded() {
            self.status.state = PollerState::Ok;
            self.status.consecutive_failures = 0;
            self.status.last_success = Some(poll.polled_at);
            self.status.last_error = None;
            self.status.last_pod_count = poll.pods.as_ref().map(Vec::len);
            self.status.last_pods_method.clone_from(&poll.pods_method);
            self.next_attempt = None;
            metrics::counter!(POLLS, "seed" => seed.clone(), "outcome" => "ok").increment(1);
            metrics::gauge!(POLLER_LAST_SUCCESS, "seed" => seed.clone()).set(poll.polled_at as f64);
        } else {
            self.status.state = PollerState::Failing;
            self.status.consecutive_failures += 1;
            self.status.failures_total += 1;
            self.status.last_error.clone_from(&poll.error);
            let factor = 2u32
                .saturating_pow(self.status.consecutive_failures - 1)
                .min(MAX_BACKOFF_FACTOR);
            // Half an interval early, so that the cycle due then is not missed by a hair.
            self.next_attempt = Some(Instant::now() + self.interval * factor - self.interval / 2);
            metrics::counter!(POLLS, "seed" => seed.clone(), "outcome" => "failed").increment(1);
            tracing::warn!(seed = %seed, failures = self.status.consecutive_failures, error = poll.error.as_deref().unwrap_or(""), "pRPC seed poll failed");
        }
        metrics::gauge!(POLLER_FAILURES, "seed" => seed)
            .set(f64::from(self.status.consecutive_failures));
    }
}

impl Actor for PnodePoller {
    type Context = Context<Self>;
}

impl Supervised for PnodePoller {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.status.restarts += 1;
        metrics::counter!(crate::metrics::ACTOR_RESTARTS_TOTAL, "actor" => "pnode_poller")
            .increment(1);
    }
}

/// Poll the seed now (unless backing off). `now` is the cycle's unix time.
#[derive(Message)]
#[rtype(result = "SeedPoll")]
pub struct Poll {
    pub now: i64,
}

impl Handler<Poll> for PnodePoller {
    type Result = AtomicResponse<Self, SeedPoll>;

    fn handle(&mut self, poll: Poll, _: &mut Context<Self>) -> Self::Result {
        if self.next_attempt.is_some_and(|next| Instant::now() < next) {
            self.status.state = PollerState::Backoff;
            metrics::counter!(POLLS, "seed" => self.status.seed.clone(), "outcome" => "backoff")
                .increment(1);
            let skipped = SeedPoll {
                seed: self.status.seed.clone(),
                version: None,
                stats: None,
                pods: None,
                pods_method: None,
                error: Some("backing off after failures".to_owned()),
                latency_ms: 0,
                polled_at: poll.now,
                tally: Default::default(),
            };
            return AtomicResponse::new(Box::pin(fut::ready(skipped)));
        }
        let (client, seed) = (self.client.clone(), self.seed.clone());
        let label = self.status.seed.clone();
        AtomicResponse::new(Box::pin(
            // A panic while reading an answer must not take the arbiter down: it is caught,
            // counted as a failed poll, and the actor restarts under its supervisor.
            AssertUnwindSafe(async move { client.poll(&seed, poll.now).await })
                .catch_unwind()
                .into_actor(self)
                .map(move |outcome, poller, ctx| match outcome {
                    Ok((result, failures)) => {
                        poller.record(&result, &failures);
                        result
                    }
                    Err(_) => {
                        tracing::error!(seed = %label, "pRPC poll panicked; restarting the poller");
                        let failed = SeedPoll {
                            seed: label,
                            version: None,
                            stats: None,
                            pods: None,
                            pods_method: None,
                            error: Some("the poll panicked".to_owned()),
                            latency_ms: 0,
                            polled_at: poll.now,
                            tally: Default::default(),
                        };
                        poller.record(&failed, &[]);
                        ctx.stop();
                        failed
                    }
                }),
        ))
    }
}

/// The poller's health, for the admin API.
#[derive(Message)]
#[rtype(result = "PollerStatus")]
pub struct GetStatus;

impl Handler<GetStatus> for PnodePoller {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.status.clone())
    }
}

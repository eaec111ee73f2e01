//! The HeartbeatChecker actor: on the housekeeping leader, sweeps the children every half
//! heartbeat interval and marks the silent ones late, then offline, by the mother's clock; it
//! keeps the disruption guard's state between sweeps. A follower does nothing; a new leader
//! starts with the guard released and re-engages it at its first sweep if the silence holds.

use std::time::Duration;

use actix::prelude::*;
use nodegrid_services::children::Children;
use nodegrid_services::lease::Leadership;
use tokio::sync::watch;

pub struct HeartbeatChecker {
    pub children: Children,
    pub leadership: watch::Receiver<Leadership>,
    guard_engaged: bool,
    sweeping: bool,
}

impl HeartbeatChecker {
    pub fn new(children: Children, leadership: watch::Receiver<Leadership>) -> HeartbeatChecker {
        HeartbeatChecker {
            children,
            leadership,
            guard_engaged: false,
            sweeping: false,
        }
    }

    fn interval(&self) -> Duration {
        (self.children.settings().heartbeat_interval / 2).max(Duration::from_millis(100))
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        if !self.leadership.borrow().is_leader() {
            self.guard_engaged = false;
            return;
        }
        if self.sweeping {
            return;
        }
        self.sweeping = true;
        let children = self.children.clone();
        let guard_engaged = self.guard_engaged;
        ctx.spawn(
            async move { children.sweep(guard_engaged).await }
                .into_actor(self)
                .map(|outcome, checker, _| {
                    checker.sweeping = false;
                    match outcome {
                        Ok(outcome) => {
                            if outcome.became_late + outcome.became_offline > 0 {
                                tracing::info!(
                                    late = outcome.became_late,
                                    offline = outcome.became_offline,
                                    "children fell silent"
                                );
                            }
                            checker.guard_engaged = outcome.guard_engaged;
                        }
                        Err(error) => {
                            tracing::warn!(%error, "the children sweep failed; retrying at the next one")
                        }
                    }
                }),
        );
    }
}

impl Actor for HeartbeatChecker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.interval(), |checker, ctx| checker.sweep(ctx));
    }
}

impl Supervised for HeartbeatChecker {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.sweeping = false;
    }
}

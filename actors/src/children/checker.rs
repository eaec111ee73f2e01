//! The HeartbeatChecker actor: on the housekeeping leader, sweeps the children every half
//! heartbeat interval and marks the silent ones late, then offline, by the mother's clock; it
//! keeps the disruption guard's state between sweeps. A follower does nothing; a new leader
//! starts with the guard released and re-engages it at its first sweep if the silence holds.
//! After each sweep the children whose liveness changed go into the node registry (type
//! `CHILD`, named by the child's id: `UP` online, `DEGRADED` late, `DOWN` offline or revoked),
//! whose events and webhooks follow. How far the reports reached is kept in Postgres, so a new
//! leader goes on from the last one's checkpoint rather than reporting 100,000 children again.

use std::time::Duration;

use actix::prelude::*;
use nodegrid_protocol::children::admin::ChildLiveness;
use nodegrid_protocol::registry::{NodeStatus, NodeType};
use nodegrid_services::children::Children;
use nodegrid_services::lease::Leadership;
use nodegrid_services::registry::NodeRegistry;
use tokio::sync::watch;

pub struct HeartbeatChecker {
    pub children: Children,
    pub nodes: NodeRegistry,
    pub leadership: watch::Receiver<Leadership>,
    guard_engaged: bool,
    sweeping: bool,
    /// The mother's clock at the last sweep whose changes reached the registry (`None`: not
    /// known to this leader yet; it reads the last leader's checkpoint, and reports every child
    /// when there is none).
    reported_until: Option<chrono::DateTime<chrono::Utc>>,
}

/// How a child's liveness shows in the node registry (type `CHILD`, named by the child's id).
fn registry_status(liveness: ChildLiveness) -> NodeStatus {
    match liveness {
        ChildLiveness::New => NodeStatus::Unknown,
        ChildLiveness::Online => NodeStatus::Up,
        ChildLiveness::Late => NodeStatus::Degraded,
        ChildLiveness::Offline | ChildLiveness::Revoked => NodeStatus::Down,
    }
}

impl HeartbeatChecker {
    pub fn new(
        children: Children,
        nodes: NodeRegistry,
        leadership: watch::Receiver<Leadership>,
    ) -> HeartbeatChecker {
        HeartbeatChecker {
            children,
            nodes,
            leadership,
            guard_engaged: false,
            sweeping: false,
            reported_until: None,
        }
    }

    fn interval(&self) -> Duration {
        (self.children.settings().heartbeat_interval / 2).max(Duration::from_millis(100))
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        if !self.leadership.borrow().is_leader() {
            self.guard_engaged = false;
            self.reported_until = None;
            return;
        }
        if self.sweeping {
            return;
        }
        self.sweeping = true;
        let (children, nodes) = (self.children.clone(), self.nodes.clone());
        let guard_engaged = self.guard_engaged;
        // Heartbeats commit on their own: one that started before the last sweep may have
        // committed after it, so each sweep looks back a minute more (a report that changes
        // nothing records nothing).
        let reported_until = self.reported_until;
        ctx.spawn(
            async move {
                let reported_until = match reported_until {
                    Some(at) => Some(at),
                    None => children.registry_checkpoint().await?,
                };
                let since = reported_until.map(|at| at - chrono::Duration::seconds(60));
                let outcome = children.sweep(guard_engaged, since).await?;
                let statuses: Vec<(String, NodeStatus)> = outcome
                    .changed
                    .iter()
                    .map(|(id, liveness)| (id.to_string(), registry_status(*liveness)))
                    .collect();
                let reported = match nodes.report_many(NodeType::Child, statuses).await {
                    Ok(_) => {
                        if let Some(at) = outcome.swept_at
                            && let Err(error) = children.save_registry_checkpoint(at).await
                        {
                            tracing::warn!(%error, "could not record how far children's liveness reached the registry");
                        }
                        true
                    }
                    Err(error) => {
                        tracing::warn!(%error, "children's liveness not in the node registry yet; retrying at the next sweep");
                        false
                    }
                };
                Ok::<_, nodegrid_services::children::ChildrenError>((outcome, reported))
            }
                .into_actor(self)
                .map(|result, checker, _| {
                    checker.sweeping = false;
                    match result {
                        Ok((outcome, reported)) => {
                            if reported {
                                checker.reported_until = outcome.swept_at;
                            }
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

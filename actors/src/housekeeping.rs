//! The Housekeeper actor: deployment-wide chores that one instance does, under the
//! `housekeeping` leader lease: pruning the audit log past its retention, dropping the
//! days of stored producer data past theirs, and pruning the registry's outbox to what its
//! event stream keeps.
//!
//! It runs its chores as soon as this instance becomes the leader, then every interval while it
//! stays leader; a follower does nothing. If the leader dies, the lease moves and the next
//! leader runs them.

use std::time::Duration;

use actix::prelude::*;
use nodegrid_services::identity::Identity;
use nodegrid_services::lease::Leadership;
use nodegrid_services::registry::NodeRegistry;
use nodegrid_services::streams::data::DataStore;
use tokio::sync::watch;

use crate::metrics::{AUDIT_PRUNED_TOTAL, DATA_PARTITIONS_DROPPED_TOTAL};
use crate::stream::now_millis;

/// The name of the lease whose holder does the chores.
pub const LEASE_NAME: &str = "housekeeping";
/// The lease's time to live; another instance takes over within this when the holder dies.
pub const LEASE_TTL: Duration = Duration::from_secs(30);

pub struct Housekeeper {
    pub identity: Identity,
    pub audit_retention: Duration,
    pub data: DataStore,
    pub data_retention: Duration,
    pub nodes: NodeRegistry,
    pub interval: Duration,
    pub leadership: watch::Receiver<Leadership>,
}

impl Housekeeper {
    fn run_chores(&mut self, ctx: &mut Context<Self>) {
        if !self.leadership.borrow().is_leader() {
            return;
        }
        let (identity, retention) = (self.identity.clone(), self.audit_retention);
        let data = self.data.clone();
        let nodes = self.nodes.clone();
        let data_cutoff = now_millis()
            .saturating_sub(i64::try_from(self.data_retention.as_millis()).unwrap_or(i64::MAX));
        ctx.spawn(
            async move {
                match identity.prune_audit(retention).await {
                    Ok(0) => {}
                    Ok(deleted) => {
                        metrics::counter!(AUDIT_PRUNED_TOTAL).increment(deleted);
                        tracing::info!(deleted, "pruned audit entries past their retention");
                    }
                    Err(error) => tracing::warn!(%error, "audit pruning failed; retrying later"),
                }
                match data.drop_days_before(data_cutoff).await {
                    Ok(days) if days.is_empty() => {}
                    Ok(days) => {
                        metrics::counter!(DATA_PARTITIONS_DROPPED_TOTAL)
                            .increment(days.len() as u64);
                        tracing::info!(?days, "dropped days of stored data past their retention");
                    }
                    Err(error) => {
                        tracing::warn!(%error, "dropping old stored data failed; retrying later")
                    }
                }
                match nodes.prune_events().await {
                    Ok(0) => {}
                    Ok(deleted) => {
                        tracing::info!(deleted, "pruned registry events the stream no longer keeps")
                    }
                    Err(error) => {
                        tracing::warn!(%error, "pruning registry events failed; retrying later")
                    }
                }
            }
            .into_actor(self),
        );
    }
}

impl Actor for Housekeeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Chores at once whenever this instance becomes the leader.
        ctx.add_stream(futures_util::stream::unfold(
            self.leadership.clone(),
            |mut changes| async move {
                changes.changed().await.ok()?;
                Some((LeadershipChanged, changes))
            },
        ));
        self.run_chores(ctx);
        ctx.run_interval(self.interval, |keeper, ctx| keeper.run_chores(ctx));
    }
}

impl Supervised for Housekeeper {}

struct LeadershipChanged;

impl StreamHandler<LeadershipChanged> for Housekeeper {
    fn handle(&mut self, _: LeadershipChanged, ctx: &mut Context<Self>) {
        self.run_chores(ctx);
    }
}

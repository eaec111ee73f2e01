//! Leader leases: work that must happen once per deployment (polling, sweeping, pruning) is done
//! by the one instance that holds the lease of that work.
//!
//! A lease is a Redis key `<prefix>:lease:<name>` set with `NX PX <ttl>` to the holder's id. The
//! holder renews it every third of its time to live; when the holder dies, the key expires and
//! another instance takes it within one time to live. Each acquisition increments a counter,
//! `<prefix>:lease:<name>:fence`, and hands out its value as a **fencing token**: a writer that
//! stamps its writes with the token lets the store refuse a deposed leader's late writes.
//! Check-and-set is done by Lua scripts, so that no instance renews or deletes a lease that has
//! passed to another.
//!
//! A holder that cannot renew (Redis unreachable, or the key taken) steps down at once rather
//! than hoping: two leaders are worse than none for a moment.

use std::time::Duration;

use fred::prelude::LuaInterface;
use tokio::sync::watch;

use crate::bus::{BusError, RedisBus, RedisClient};

/// Sets the lease when it is free (and returns a new fencing token), extends it when this holder
/// already has it (and returns the current token), or returns 0 when another holder has it.
const ACQUIRE_SCRIPT: &str = r#"
local current = redis.call('GET', KEYS[1])
if current == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return redis.call('INCR', KEYS[2])
elseif current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(redis.call('GET', KEYS[2]) or '0')
end
return 0
"#;

/// Extends the lease only while this holder has it; returns 1 when extended.
const RENEW_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

/// Deletes the lease only while this holder has it; returns 1 when released.
const RELEASE_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// A token that increases with every acquisition of a lease, across all holders.
pub type FencingToken = u64;

/// 1 while this instance holds the named lease (label `lease`).
pub const LEASE_LEADER: &str = "nodegrid_lease_leader";
/// Changes of leadership of the named lease seen by this instance (label `lease`).
pub const LEASE_TRANSITIONS_TOTAL: &str = "nodegrid_lease_transitions_total";

/// One named lease, as seen by one holder.
#[derive(Clone)]
pub struct LeaderLease {
    client: RedisClient,
    name: String,
    key: String,
    fence_key: String,
    holder: String,
    ttl: Duration,
}

impl LeaderLease {
    /// A lease called `name` (e.g. `pnode-poller`) held, when it is, by `holder` (the
    /// instance's id).
    pub fn new(bus: &RedisBus, name: &str, holder: &str, ttl: Duration) -> LeaderLease {
        let (key, fence_key) = bus.keys().lease(name);
        LeaderLease {
            client: bus.publisher().clone(),
            name: name.to_owned(),
            key,
            fence_key,
            holder: holder.to_owned(),
            ttl,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Takes the lease if it is free or already ours; `None` when another holder has it.
    pub async fn try_acquire(&self) -> Result<Option<FencingToken>, BusError> {
        let token: i64 = self
            .client
            .eval(
                ACQUIRE_SCRIPT,
                vec![self.key.clone(), self.fence_key.clone()],
                vec![self.holder.clone(), self.ttl_ms()],
            )
            .await?;
        Ok(u64::try_from(token).ok().filter(|token| *token > 0))
    }

    /// Extends the lease; `false` when it is no longer ours.
    pub async fn renew(&self) -> Result<bool, BusError> {
        let renewed: i64 = self
            .client
            .eval(
                RENEW_SCRIPT,
                vec![self.key.clone()],
                vec![self.holder.clone(), self.ttl_ms()],
            )
            .await?;
        Ok(renewed == 1)
    }

    /// Gives the lease up so that another instance can take it at once; `false` when it was not
    /// ours.
    pub async fn release(&self) -> Result<bool, BusError> {
        let released: i64 = self
            .client
            .eval(
                RELEASE_SCRIPT,
                vec![self.key.clone()],
                vec![self.holder.clone()],
            )
            .await?;
        Ok(released == 1)
    }

    fn ttl_ms(&self) -> String {
        self.ttl.as_millis().to_string()
    }
}

/// Whether this instance leads a piece of work right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leadership {
    Follower,
    Leader { fencing_token: FencingToken },
}

impl Leadership {
    pub fn is_leader(&self) -> bool {
        matches!(self, Leadership::Leader { .. })
    }
}

/// Keeps trying to hold a lease, and renews it while held, in a background task.
///
/// Work that must happen once watches [`LeaseKeeper::watch`] and acts only while it says
/// `Leader`. Dropping the keeper stops the task without releasing the lease (as a crash
/// would); [`LeaseKeeper::step_down`] releases it so another instance takes over at once.
pub struct LeaseKeeper {
    state: watch::Receiver<Leadership>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl LeaseKeeper {
    /// Starts the keeper task on the current tokio runtime.
    pub fn start(lease: LeaderLease) -> LeaseKeeper {
        let (state_tx, state_rx) = watch::channel(Leadership::Follower);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(keep(lease, state_tx, stop_rx));
        LeaseKeeper {
            state: state_rx,
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    /// The current leadership, updated as it changes.
    pub fn watch(&self) -> watch::Receiver<Leadership> {
        self.state.clone()
    }

    pub fn current(&self) -> Leadership {
        *self.state.borrow()
    }

    /// Stops the task and releases the lease if held.
    pub async fn step_down(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn keep(
    lease: LeaderLease,
    state: watch::Sender<Leadership>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let tick = lease.ttl() / 3;
    let labels = [("lease", lease.name().to_owned())];
    metrics::gauge!(LEASE_LEADER, &labels).set(0.0);
    loop {
        let current = *state.borrow();
        let next = match current {
            Leadership::Follower => match lease.try_acquire().await {
                Ok(Some(fencing_token)) => Leadership::Leader { fencing_token },
                Ok(None) => Leadership::Follower,
                Err(error) => {
                    tracing::debug!(lease = lease.name(), %error, "lease acquisition failed");
                    Leadership::Follower
                }
            },
            leader @ Leadership::Leader { .. } => match lease.renew().await {
                Ok(true) => leader,
                Ok(false) => {
                    tracing::warn!(lease = lease.name(), "lease lost to another holder");
                    Leadership::Follower
                }
                Err(error) => {
                    tracing::warn!(lease = lease.name(), %error, "lease renewal failed; stepping down");
                    Leadership::Follower
                }
            },
        };
        if next != current {
            tracing::info!(lease = lease.name(), leadership = ?next, "leadership changed");
            metrics::counter!(LEASE_TRANSITIONS_TOTAL, &labels).increment(1);
            metrics::gauge!(LEASE_LEADER, &labels).set(if next.is_leader() { 1.0 } else { 0.0 });
            state.send_replace(next);
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = &mut stop => break,
        }
    }
    let was_leader = state.borrow().is_leader();
    if was_leader {
        if let Err(error) = lease.release().await {
            tracing::warn!(lease = lease.name(), %error, "lease release failed; it will expire");
        }
        metrics::gauge!(LEASE_LEADER, &labels).set(0.0);
        state.send_replace(Leadership::Follower);
    }
}

//! What the heartbeat loop, the control socket and the gate share: the state machine, the
//! mother's keys, the blocked users, the counters; and [`transition`], the one way the machine
//! changes, which logs and counts a change of state and saves the state file.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, RwLock};

use nodegrid_protocol::children::lease::PublicKeyView;
use uuid::Uuid;

use super::machine::{GateState, Machine};
use super::options::ChildSettings;
use super::persist::SavedState;

/// What the heartbeat loop and the gate share.
pub struct Shared {
    pub machine: Machine,
    pub child_id: Option<Uuid>,
    pub keys: Vec<PublicKeyView>,
    pub blocked_users: HashSet<i64>,
    pub blocked_users_version: i64,
    /// The signed lease text last accepted (kept in the state file).
    pub signed_lease: Option<String>,
    pub expires_at_local: Option<chrono::DateTime<chrono::Utc>>,
    /// Counters for `/metrics`: transitions by the state reached, failures by kind.
    pub transitions: BTreeMap<&'static str, u64>,
    pub failures: BTreeMap<&'static str, u64>,
    /// Whether the control socket is open.
    pub control_connected: bool,
    /// Sessions signed in through this gate, by user, with their expiry.
    pub sessions: BTreeMap<i64, chrono::DateTime<chrono::Utc>>,
}

pub type SharedState = Arc<RwLock<Shared>>;

pub fn write(shared: &SharedState) -> std::sync::RwLockWriteGuard<'_, Shared> {
    shared.write().unwrap_or_else(|p| p.into_inner())
}

pub fn read(shared: &SharedState) -> std::sync::RwLockReadGuard<'_, Shared> {
    shared.read().unwrap_or_else(|p| p.into_inner())
}

/// Sets the machine through `change`, then logs and counts a transition and saves the state.
pub fn transition(
    shared: &SharedState,
    settings: &ChildSettings,
    change: impl FnOnce(&mut Shared),
) {
    let (before, after, reason, saved) = {
        let mut guard = write(shared);
        let before = guard.machine.state();
        change(&mut guard);
        let after = guard.machine.state();
        if before != after {
            *guard.transitions.entry(after.as_str()).or_default() += 1;
        }
        let saved = SavedState {
            child_id: guard.child_id,
            last_seq: guard.machine.last_seq(),
            failures: guard.machine.failures(),
            signed_lease: guard.signed_lease.clone(),
            expires_at_local: guard.expires_at_local,
            keys: guard.keys.clone(),
            blocked_users_version: guard.blocked_users_version,
            blocked_users: guard.blocked_users.iter().copied().collect(),
        };
        (
            before,
            after,
            guard.machine.reason().map(str::to_owned),
            saved,
        )
    };
    if before != after {
        if after == GateState::Blocked || after == GateState::Degraded {
            tracing::warn!(from = before.as_str(), to = after.as_str(), reason = ?reason, "child state changed");
        } else {
            tracing::info!(from = before.as_str(), to = after.as_str(), reason = ?reason, "child state changed");
        }
    }
    if let Err(error) = saved.save(&settings.state_file) {
        tracing::error!(%error, "cannot save the child's state");
    }
}

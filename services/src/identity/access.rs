//! Which users' tokens to refuse, held in memory so that checking a token costs no IO.
//!
//! The gate maps each user whose tokens can be refused (blocked, or whose token version was
//! raised) to their current token version and blocked flag. It is filled from Postgres at start,
//! updated by the control events every instance receives, and reloaded after a Redis reconnect
//! and periodically, so that a missed event cannot leave it wrong for long.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// A user's state as the gate knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserAccess {
    pub token_version: i32,
    pub blocked: bool,
}

/// Why the gate refused a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The user is blocked.
    Blocked,
    /// The token was issued before the user's current token version.
    Revoked,
}

#[derive(Debug, Clone, Default)]
pub struct AccessGate {
    users: Arc<RwLock<HashMap<i64, UserAccess>>>,
}

impl AccessGate {
    /// Whether a token of `user_id` issued under `token_version` may be used.
    pub fn check(&self, user_id: i64, token_version: i32) -> Result<(), Refusal> {
        let users = self
            .users
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match users.get(&user_id) {
            Some(access) if access.blocked => Err(Refusal::Blocked),
            Some(access) if token_version < access.token_version => Err(Refusal::Revoked),
            _ => Ok(()),
        }
    }

    /// Applies one change. Versions only go up, so a late event cannot undo a newer one.
    pub fn apply(&self, user_id: i64, change: UserAccess) {
        let mut users = self
            .users
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = users.entry(user_id).or_insert(change);
        if change.token_version >= entry.token_version {
            *entry = change;
        }
    }

    /// Replaces everything with a fresh load from the database.
    pub fn replace_all(&self, entries: impl IntoIterator<Item = (i64, UserAccess)>) {
        let fresh: HashMap<i64, UserAccess> = entries.into_iter().collect();
        let mut users = self
            .users
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *users = fresh;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_and_version_raises_refuse_older_tokens_only() {
        let gate = AccessGate::default();
        assert_eq!(gate.check(7, 0), Ok(()));
        gate.apply(
            7,
            UserAccess {
                token_version: 1,
                blocked: true,
            },
        );
        assert_eq!(gate.check(7, 0), Err(Refusal::Blocked));
        assert_eq!(gate.check(7, 1), Err(Refusal::Blocked));
        gate.apply(
            7,
            UserAccess {
                token_version: 1,
                blocked: false,
            },
        );
        assert_eq!(gate.check(7, 0), Err(Refusal::Revoked));
        assert_eq!(gate.check(7, 1), Ok(()));
        // A late, older event changes nothing.
        gate.apply(
            7,
            UserAccess {
                token_version: 0,
                blocked: true,
            },
        );
        assert_eq!(gate.check(7, 1), Ok(()));
    }
}

//! Which users' and sessions' tokens to refuse, held in memory so that checking a token costs no
//! IO.
//!
//! The gate maps each user whose tokens can be refused (blocked, or whose token version was
//! raised) to their current token version and blocked flag, and keeps the login sessions that
//! ended (logout, refresh-token reuse) until every access token they issued has expired. It is
//! filled from Postgres at start, updated by the control events every instance receives, and
//! reloaded after a Redis reconnect and periodically, so that a missed event cannot leave it
//! wrong for long.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use uuid::Uuid;

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
    /// The token's login session ended.
    SessionEnded,
}

#[derive(Debug, Clone, Default)]
pub struct AccessGate {
    users: Arc<RwLock<HashMap<i64, UserAccess>>>,
    /// Ended sessions, each with the Unix time after which none of its tokens is valid anyway.
    sessions: Arc<RwLock<HashMap<Uuid, u64>>>,
}

impl AccessGate {
    /// Whether a token of `user_id`, session `session_id`, issued under `token_version` may be
    /// used.
    pub fn check(&self, user_id: i64, token_version: i32, session_id: Uuid) -> Result<(), Refusal> {
        {
            let users = self
                .users
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match users.get(&user_id) {
                Some(access) if access.blocked => return Err(Refusal::Blocked),
                Some(access) if token_version < access.token_version => {
                    return Err(Refusal::Revoked);
                }
                _ => {}
            }
        }
        let sessions = self
            .sessions
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if sessions.contains_key(&session_id) {
            return Err(Refusal::SessionEnded);
        }
        Ok(())
    }

    /// Whether the user is blocked. No IO.
    pub fn is_blocked(&self, user_id: i64) -> bool {
        self.users
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&user_id)
            .is_some_and(|access| access.blocked)
    }

    /// Refuses the session's tokens until `forget_after` (Unix seconds), after which they have
    /// all expired. Entries past their time are dropped as new ones come.
    pub fn revoke_session(&self, session_id: Uuid, forget_after: u64) {
        let now = super::tokens::unix_now();
        let mut sessions = self
            .sessions
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        sessions.retain(|_, until| *until > now);
        let until = sessions.entry(session_id).or_insert(forget_after);
        *until = (*until).max(forget_after);
    }

    /// Replaces the ended sessions with a fresh load from the database.
    pub fn replace_sessions(&self, sessions: impl IntoIterator<Item = Uuid>, forget_after: u64) {
        let fresh: HashMap<Uuid, u64> = sessions
            .into_iter()
            .map(|session| (session, forget_after))
            .collect();
        *self
            .sessions
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
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
        let session = Uuid::new_v4();
        assert_eq!(gate.check(7, 0, session), Ok(()));
        gate.apply(
            7,
            UserAccess {
                token_version: 1,
                blocked: true,
            },
        );
        assert_eq!(gate.check(7, 0, session), Err(Refusal::Blocked));
        assert_eq!(gate.check(7, 1, session), Err(Refusal::Blocked));
        gate.apply(
            7,
            UserAccess {
                token_version: 1,
                blocked: false,
            },
        );
        assert_eq!(gate.check(7, 0, session), Err(Refusal::Revoked));
        assert_eq!(gate.check(7, 1, session), Ok(()));
        // A late, older event changes nothing.
        gate.apply(
            7,
            UserAccess {
                token_version: 0,
                blocked: true,
            },
        );
        assert_eq!(gate.check(7, 1, session), Ok(()));
    }

    #[test]
    fn ended_sessions_are_refused_until_their_tokens_have_expired() {
        let gate = AccessGate::default();
        let (ended, other) = (Uuid::new_v4(), Uuid::new_v4());
        let now = super::super::tokens::unix_now();
        gate.revoke_session(ended, now + 60);
        assert_eq!(gate.check(7, 0, ended), Err(Refusal::SessionEnded));
        assert_eq!(gate.check(7, 0, other), Ok(()));
        // Past its time an entry is forgotten when the next one comes.
        gate.revoke_session(Uuid::new_v4(), now.saturating_sub(1));
        gate.revoke_session(other, now + 60);
        assert_eq!(gate.sessions.read().unwrap().len(), 2);
        gate.replace_sessions([other], now + 60);
        assert_eq!(gate.check(7, 0, ended), Ok(()));
    }
}

//! Keeping the access gate current on every instance: control events applied as they come,
//! reloads from Postgres after a reconnect, and the announcements of blocks and ended sessions.

use nodegrid_protocol::control::{ControlEnvelope, ControlEvent};

use super::Identity;
use super::access::UserAccess;
use super::{store, tokens};
use crate::db::DbError;

/// Ended sessions are remembered this long past the access-token lifetime (clock skew between
/// instances, and the tokens' own leeway).
const SESSION_REVOCATION_MARGIN_SECS: u64 = 60;

impl Identity {
    /// Until when an ended session must be remembered: its last access token expires by then.
    pub(super) fn session_revocation_horizon(&self) -> u64 {
        tokens::unix_now() + self.inner.tokens.ttl().as_secs() + SESSION_REVOCATION_MARGIN_SECS
    }

    /// Reloads the access gate from Postgres.
    pub async fn reload_access(&self) -> Result<usize, DbError> {
        let client = self.inner.database.client().await?;
        let entries = store::revocations(&client).await?;
        let window = self.inner.tokens.ttl().as_secs() + SESSION_REVOCATION_MARGIN_SECS;
        let sessions = store::ended_sessions(&client, window).await?;
        drop(client);
        self.inner
            .gate
            .replace_sessions(sessions, self.session_revocation_horizon());
        let count = entries.len();
        self.inner
            .gate
            .replace_all(entries.into_iter().map(|(id, token_version, blocked)| {
                (
                    id,
                    UserAccess {
                        token_version,
                        blocked,
                    },
                )
            }));
        Ok(count)
    }

    /// Applies a control event from any instance to this instance's access gate.
    pub fn apply_control(&self, event: &ControlEvent) {
        match *event {
            ControlEvent::UserBlocked {
                user_id,
                token_version,
            } => self.inner.gate.apply(
                user_id,
                UserAccess {
                    token_version,
                    blocked: true,
                },
            ),
            ControlEvent::UserUnblocked {
                user_id,
                token_version,
            } => self.inner.gate.apply(
                user_id,
                UserAccess {
                    token_version,
                    blocked: false,
                },
            ),
            ControlEvent::SessionRevoked { session_id, .. } => self
                .inner
                .gate
                .revoke_session(session_id, self.session_revocation_horizon()),
            _ => {}
        }
    }

    /// Refuses a session's access tokens on this instance at once, and tells the others (whose
    /// registries close its sockets).
    pub(super) async fn revoke_session(&self, user_id: i64, session_id: uuid::Uuid) {
        let event = ControlEvent::SessionRevoked {
            user_id,
            session_id,
        };
        self.apply_control(&event);
        let envelope = ControlEnvelope {
            origin: self.inner.instance_id,
            event,
        };
        if let Err(error) = self.inner.bus.publish_control(&envelope).await {
            tracing::warn!(%error, user_id, "could not publish a session revocation; instances will reload it");
        }
    }

    /// Updates this instance at once and tells the others.
    pub(super) async fn announce(&self, user_id: i64, access: UserAccess) {
        self.inner.gate.apply(user_id, access);
        let event = if access.blocked {
            ControlEvent::UserBlocked {
                user_id,
                token_version: access.token_version,
            }
        } else {
            ControlEvent::UserUnblocked {
                user_id,
                token_version: access.token_version,
            }
        };
        let envelope = ControlEnvelope {
            origin: self.inner.instance_id,
            event,
        };
        // The change is committed; if Redis is down the other instances catch up on their next
        // reload of the gate (after their reconnect, or on the periodic reload).
        if let Err(error) = self.inner.bus.publish_control(&envelope).await {
            tracing::warn!(%error, user_id, "could not publish an access change; instances will reload it");
        }
    }
}

impl crate::shared_state::SharedState for Identity {
    fn name(&self) -> &'static str {
        "access_gate"
    }

    fn apply(&self, event: &ControlEvent) {
        self.apply_control(event);
    }

    fn reload(&self) -> futures_util::future::BoxFuture<'static, Result<usize, DbError>> {
        let this = self.clone();
        Box::pin(async move { this.reload_access().await })
    }
}

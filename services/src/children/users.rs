//! A client's users at its children, the mother's side: sign-in through a child, the check of
//! one user, the list of blocked users. Every answer is signed and names the child and the
//! request's nonce.

use chrono::Utc;
use nodegrid_protocol::children::lease::LeaseStatus;
use nodegrid_protocol::children::users::{
    BlockedUsersAnswer, ChildLoginRequest, ChildUser, LoginAnswer, SessionClaims, UserCheckAnswer,
    refusals, session_token,
};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use super::{Children, ChildrenError};
use crate::identity::store::AuditRecord;
use crate::identity::{Caller, Identity, IdentityError};

impl Children {
    /// `{"payload": …, "key_id": …, "signature": …}` of `payload`.
    pub(crate) fn signed_answer<T: Serialize>(&self, payload: &T) -> Result<String, ChildrenError> {
        let text = serde_json::to_string(payload).map_err(|error| {
            ChildrenError::BadRequest(format!("the answer cannot be written: {error}"))
        })?;
        let signature = self.keys.sign(text.as_bytes());
        Ok(format!(
            "{{\"payload\":{text},\"key_id\":\"{}\",\"signature\":\"{signature}\"}}",
            self.keys.current_key_id()
        ))
    }

    /// The client of a live child.
    fn client_of(
        &self,
        child_id: Uuid,
    ) -> Result<(i64, LeaseStatus, Option<String>), ChildrenError> {
        let terms = self
            .read()
            .terms(child_id, "0", Utc::now())
            .ok_or(ChildrenError::KeyInvalid)?;
        Ok((terms.client_id, terms.status, terms.reason))
    }

    /// A user of the child's client signs in through the child.
    pub async fn login_user(
        &self,
        identity: &Identity,
        caller: Caller,
        child_id: Uuid,
        nonce: &str,
        request: ChildLoginRequest,
    ) -> Result<String, ChildrenError> {
        let (client_id, status, reason) = self.client_of(child_id)?;
        let now = Utc::now();
        let refused = |reason: &str| LoginAnswer {
            child_id,
            nonce: nonce.to_owned(),
            issued_at: now,
            allowed: false,
            reason: Some(reason.to_owned()),
            user: None,
            session_token: None,
            expires_at: None,
        };
        let answer = match status {
            LeaseStatus::Blocked => refused(reason.as_deref().unwrap_or(refusals::CHILD_BLOCKED)),
            LeaseStatus::Maintenance => refused(refusals::MAINTENANCE),
            LeaseStatus::Active => {
                match identity
                    .check_credentials(caller, request.username, request.password)
                    .await
                {
                    Ok((user, _)) if user.client_id != Some(client_id) => {
                        refused(refusals::NOT_A_CLIENT_USER)
                    }
                    Ok((user, _)) => {
                        let expires_at = now
                            + chrono::Duration::from_std(self.settings.session_ttl)
                                .unwrap_or(chrono::Duration::hours(1));
                        let child_user = ChildUser {
                            id: user.id,
                            username: user.username.clone(),
                            role: user.role,
                        };
                        let claims = SessionClaims {
                            child_id,
                            client_id,
                            user: child_user.clone(),
                            issued_at: now,
                            expires_at,
                            key_id: self.keys.current_key_id().to_owned(),
                        };
                        let claims = serde_json::to_string(&claims).map_err(|error| {
                            ChildrenError::BadRequest(format!(
                                "the session cannot be written: {error}"
                            ))
                        })?;
                        let token = session_token(&claims, &self.keys.sign(claims.as_bytes()));
                        let audited = identity
                            .record(AuditRecord {
                                actor_id: Some(user.id),
                                actor: Some(user.username.clone()),
                                action: "child.user_login",
                                target: Some(format!("child:{child_id}")),
                                source_ip: Some(caller.ip.to_string()),
                                details: json!({"client_id": client_id}),
                            })
                            .await;
                        match audited {
                            Ok(()) => {}
                            Err(IdentityError::Database(error)) => return Err(error.into()),
                            Err(other) => return Err(ChildrenError::BadRequest(other.to_string())),
                        }
                        LoginAnswer {
                            child_id,
                            nonce: nonce.to_owned(),
                            issued_at: now,
                            allowed: true,
                            reason: None,
                            user: Some(child_user),
                            session_token: Some(token),
                            expires_at: Some(expires_at),
                        }
                    }
                    Err(IdentityError::InvalidCredentials) => {
                        refused(refusals::INVALID_CREDENTIALS)
                    }
                    Err(IdentityError::UserBlocked) => refused(refusals::USER_BLOCKED),
                    Err(IdentityError::RateLimited { retry_after }) => {
                        return Err(ChildrenError::RateLimited(retry_after));
                    }
                    Err(IdentityError::Database(error)) => return Err(error.into()),
                    Err(IdentityError::Bus(error)) => return Err(error.into()),
                    Err(other) => return Err(ChildrenError::BadRequest(other.to_string())),
                }
            }
        };
        self.signed_answer(&answer)
    }

    /// Whether a user may use the child now.
    pub async fn check_user(
        &self,
        child_id: Uuid,
        nonce: &str,
        user_id: i64,
    ) -> Result<String, ChildrenError> {
        let (client_id, _, _) = self.client_of(child_id)?;
        let row = {
            let client = self.database.client().await?;
            client
                .query_opt(
                    "SELECT client_id, blocked_at IS NOT NULL FROM users WHERE id = $1",
                    &[&user_id],
                )
                .await?
        };
        let reason = match row {
            None => Some(refusals::UNKNOWN_USER),
            Some(row) if row.get::<_, Option<i64>>(0) != Some(client_id) => {
                Some(refusals::NOT_A_CLIENT_USER)
            }
            Some(row) if row.get::<_, bool>(1) => Some(refusals::USER_BLOCKED),
            Some(_) => None,
        };
        self.signed_answer(&UserCheckAnswer {
            child_id,
            nonce: nonce.to_owned(),
            issued_at: Utc::now(),
            user_id,
            allowed: reason.is_none(),
            reason: reason.map(str::to_owned),
        })
    }

    /// The client's blocked users, unless the child's `since_version` is current.
    pub async fn blocked_users(
        &self,
        child_id: Uuid,
        nonce: &str,
        since_version: Option<i64>,
    ) -> Result<String, ChildrenError> {
        let (client_id, _, _) = self.client_of(child_id)?;
        let row = {
            let client = self.database.client().await?;
            client
                .query_opt(
                    "SELECT c.blocked_users_version,
                            array(SELECT u.id FROM users u
                                  WHERE u.client_id = c.id AND u.blocked_at IS NOT NULL
                                  ORDER BY u.id)
                     FROM clients c WHERE c.id = $1",
                    &[&client_id],
                )
                .await?
                .ok_or(ChildrenError::KeyInvalid)?
        };
        let version: i64 = row.get(0);
        let unchanged = since_version.is_some_and(|since| since >= version);
        self.signed_answer(&BlockedUsersAnswer {
            child_id,
            nonce: nonce.to_owned(),
            issued_at: Utc::now(),
            version,
            user_ids: if unchanged { Vec::new() } else { row.get(1) },
            unchanged,
        })
    }
}

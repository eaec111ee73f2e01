//! Login sessions: login, refresh-token rotation (with reuse detection), logout.

use chrono::Utc;
use deadpool_postgres::GenericClient;
use nodegrid_protocol::auth::{LoginRequest, RefreshRequest, TokenResponse};
use serde_json::json;

use super::rules::*;
use super::store::{self, AuditRecord, UserRow};
use super::tokens::{self, TokenSubject};
use super::{AUTH_EVENTS_TOTAL, AuthUser, Caller, Identity, IdentityError};
use crate::db::DbError;
use crate::text::escape_free_text;

impl Identity {
    pub async fn login(
        &self,
        caller: Caller,
        request: LoginRequest,
    ) -> Result<TokenResponse, IdentityError> {
        let (user, verification) = self
            .check_credentials(caller, request.username, request.password)
            .await?;
        if user.client_id.is_some() {
            self.record_quietly(AuditRecord {
                actor_id: Some(user.id),
                actor: Some(user.username.clone()),
                action: "auth.login_failed",
                target: Some(user_target(&user)),
                source_ip: Some(caller.ip.to_string()),
                details: json!({"reason": "client_user"}),
            })
            .await;
            metrics::counter!(AUTH_EVENTS_TOTAL, "event" => "login_failed").increment(1);
            return Err(IdentityError::Forbidden(
                "this account belongs to a client: sign in through one of its child nodes",
            ));
        }

        let session_id = uuid::Uuid::new_v4();
        let mut client = self.inner.database.client().await?;
        let transaction = client.transaction().await.map_err(DbError::from)?;
        // An imported bcrypt hash is replaced by Argon2id at the first login that proves the
        // password; the condition on the old hash keeps a concurrent password change. Done
        // before the share lock below: two logins holding it could not both upgrade it.
        let upgraded = match verification.upgraded {
            Some(hash) => {
                store::replace_password_hash(&transaction, user.id, &user.password_hash, &hash)
                    .await?
            }
            None => false,
        };
        // The account read before the password check may have moved to another id since (an
        // import): the session must belong to the account whose password was checked.
        if !store::lock_user_as_read(&transaction, user.id, &user.username).await? {
            return Err(IdentityError::InvalidCredentials);
        }
        let refresh_token = self
            .issue_refresh_token(&transaction, session_id, &user, "auth.login", caller)
            .await?;
        transaction.commit().await.map_err(DbError::from)?;
        drop(client);
        metrics::counter!(AUTH_EVENTS_TOTAL, "event" => "login").increment(1);
        if upgraded {
            metrics::counter!(AUTH_EVENTS_TOTAL, "event" => "password_upgraded").increment(1);
        }
        self.token_response(&user, session_id, refresh_token)
    }

    /// The account whose password this is, unless it is blocked: the rate limits, the lookup,
    /// the password check (the time of one even for a name that does not exist), and the audit
    /// of a failure. Login and a child's login of a client's user share it.
    pub async fn check_credentials(
        &self,
        caller: Caller,
        username: String,
        password: String,
    ) -> Result<(UserRow, super::passwords::Verification), IdentityError> {
        // Names are looked up as they were stored: the naming rule applies when a name is
        // created, not here (older and imported names may not follow it).
        let lookup = (!username.is_empty() && username.chars().count() <= MAX_LOOKUP_NAME_CHARS)
            .then_some(username.as_str());
        self.limit(caller, "login", lookup).await?;

        let user = match lookup {
            Some(name) => {
                let client = self.inner.database.client().await?;
                store::user_by_username(&client, name).await?
            }
            None => None,
        };
        let verification = self.check_password(password, user.clone()).await?;
        let matches = verification.matches;
        // A blocked account answers `user_blocked` whatever the password: nobody can test
        // guesses against it (the check above still took the time of one).
        let user = match user {
            Some(user) if user.blocked_at.is_some() => user,
            Some(user) if matches => user,
            _ => {
                self.record_quietly(AuditRecord {
                    actor_id: None,
                    actor: Some(escape_free_text(&username, 64)),
                    action: "auth.login_failed",
                    target: None,
                    source_ip: Some(caller.ip.to_string()),
                    details: json!({"reason": "invalid_credentials"}),
                })
                .await;
                metrics::counter!(AUTH_EVENTS_TOTAL, "event" => "login_failed").increment(1);
                return Err(IdentityError::InvalidCredentials);
            }
        };
        if user.blocked_at.is_some() {
            self.record_quietly(AuditRecord {
                actor_id: Some(user.id),
                actor: Some(user.username.clone()),
                action: "auth.login_failed",
                target: Some(user_target(&user)),
                source_ip: Some(caller.ip.to_string()),
                details: json!({"reason": "user_blocked"}),
            })
            .await;
            metrics::counter!(AUTH_EVENTS_TOTAL, "event" => "login_blocked").increment(1);
            return Err(IdentityError::UserBlocked);
        }

        Ok((user, verification))
    }

    pub async fn refresh(
        &self,
        caller: Caller,
        request: RefreshRequest,
    ) -> Result<TokenResponse, IdentityError> {
        self.limit(caller, "refresh", None).await?;
        if request.refresh_token.is_empty() || request.refresh_token.len() > 256 {
            return Err(IdentityError::TokenInvalid(
                "the refresh token is not valid",
            ));
        }
        let token_hash = tokens::refresh_token_hash(&request.refresh_token);
        let mut client = self.inner.database.client().await?;
        let transaction = client.transaction().await.map_err(DbError::from)?;
        let Some(presented) = store::refresh_token_for_update(&transaction, &token_hash).await?
        else {
            return Err(IdentityError::TokenInvalid(
                "the refresh token is not valid",
            ));
        };
        let user = store::user_by_id(&transaction, presented.user_id)
            .await?
            .ok_or(IdentityError::TokenInvalid(
                "the refresh token is not valid",
            ))?;
        // A block also revokes the user's tokens; say why rather than just "revoked".
        if user.blocked_at.is_some() {
            return Err(IdentityError::UserBlocked);
        }
        if presented.revoked_at.is_some() {
            return Err(IdentityError::TokenInvalid(
                "the refresh token has been revoked",
            ));
        }
        if presented.used_at.is_some() {
            // Someone holds a copy of a token that was already exchanged: end the session for
            // everyone who has any of its tokens.
            let revoked = store::revoke_family(&transaction, presented.family_id).await?;
            store::insert_audit(
                &transaction,
                &AuditRecord {
                    actor_id: Some(user.id),
                    actor: Some(user.username.clone()),
                    action: "auth.refresh_reuse",
                    target: Some(user_target(&user)),
                    source_ip: Some(caller.ip.to_string()),
                    details: json!({"session": presented.family_id, "revoked_tokens": revoked}),
                },
            )
            .await?;
            transaction.commit().await.map_err(DbError::from)?;
            drop(client);
            self.revoke_session(user.id, presented.family_id).await;
            metrics::counter!(AUTH_EVENTS_TOTAL, "event" => "refresh_reuse").increment(1);
            return Err(IdentityError::TokenInvalid(
                "the refresh token was already used; the session has been revoked",
            ));
        }
        if presented.expires_at <= Utc::now() {
            return Err(IdentityError::TokenExpired);
        }
        store::mark_refresh_token_used(&transaction, presented.id).await?;
        let refresh_token = self
            .issue_refresh_token(
                &transaction,
                presented.family_id,
                &user,
                "auth.refresh",
                caller,
            )
            .await?;
        transaction.commit().await.map_err(DbError::from)?;
        metrics::counter!(AUTH_EVENTS_TOTAL, "event" => "refresh").increment(1);
        self.token_response(&user, presented.family_id, refresh_token)
    }

    /// A new refresh token of `session` (a login's new family, or a refresh's next token) and
    /// its audit entry, in the caller's transaction; returns the token.
    async fn issue_refresh_token(
        &self,
        transaction: &impl GenericClient,
        session: uuid::Uuid,
        user: &UserRow,
        action: &'static str,
        caller: Caller,
    ) -> Result<String, IdentityError> {
        let refresh_token = tokens::new_refresh_token();
        store::insert_refresh_token(
            transaction,
            session,
            user.id,
            &tokens::refresh_token_hash(&refresh_token),
            self.refresh_expiry()?,
        )
        .await?;
        store::insert_audit(
            transaction,
            &AuditRecord {
                actor_id: Some(user.id),
                actor: Some(user.username.clone()),
                action,
                target: Some(user_target(user)),
                source_ip: Some(caller.ip.to_string()),
                details: json!({"session": session}),
            },
        )
        .await?;
        Ok(refresh_token)
    }

    /// Ends the session the access token belongs to: its refresh tokens stop working, its
    /// access tokens are refused on every instance, and its sockets close.
    pub async fn logout(&self, caller: Caller, user: &AuthUser) -> Result<(), IdentityError> {
        let mut client = self.inner.database.client().await?;
        let transaction = client.transaction().await.map_err(DbError::from)?;
        let revoked = store::revoke_family(&transaction, user.session_id).await?;
        store::insert_audit(
            &transaction,
            &AuditRecord {
                actor_id: Some(user.user_id),
                actor: Some(user.username.clone()),
                action: "auth.logout",
                target: Some(format!("user:{}", user.user_id)),
                source_ip: Some(caller.ip.to_string()),
                details: json!({"session": user.session_id, "revoked_tokens": revoked}),
            },
        )
        .await?;
        transaction.commit().await.map_err(DbError::from)?;
        drop(client);
        self.revoke_session(user.user_id, user.session_id).await;
        metrics::counter!(AUTH_EVENTS_TOTAL, "event" => "logout").increment(1);
        Ok(())
    }

    pub(super) fn token_response(
        &self,
        user: &UserRow,
        session_id: uuid::Uuid,
        refresh_token: String,
    ) -> Result<TokenResponse, IdentityError> {
        let access_token = self
            .inner
            .tokens
            .issue(&TokenSubject {
                user_id: user.id,
                username: user.username.clone(),
                role: user.role,
                token_version: user.token_version,
                session_id,
            })
            .map_err(|error| IdentityError::Internal(error.to_string()))?;
        Ok(TokenResponse {
            access_token,
            refresh_token,
            token_type: "Bearer".to_owned(),
            expires_in: self.inner.tokens.ttl().as_secs(),
            user_id: user.id,
            role: user.role,
        })
    }

    pub(super) fn refresh_expiry(&self) -> Result<chrono::DateTime<Utc>, IdentityError> {
        chrono::Duration::from_std(self.inner.refresh_ttl)
            .map(|ttl| Utc::now() + ttl)
            .map_err(|error| IdentityError::Internal(error.to_string()))
    }
}

//! Identity and access: users, passwords, access and refresh tokens, blocking, the audit log,
//! and the rate limits of the auth routes.
//!
//! [`Identity`] holds the rules; the HTTP handlers in `actors` only translate. All durable state
//! is in Postgres; what every instance must learn at once (a block) goes on the control channel;
//! checking an access token costs no IO ([`access::AccessGate`]).

pub mod access;
pub mod passwords;
pub mod store;
pub mod tokens;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use nodegrid_protocol::auth::{
    AuditEntry, LoginRequest, Page, RefreshRequest, RegisterRequest, Role, TokenResponse,
    UserIdentity, UserSummary,
};
use nodegrid_protocol::control::{ControlEnvelope, ControlEvent};
use serde_json::json;

use self::access::{AccessGate, Refusal, UserAccess};
use self::passwords::{PasswordCost, PasswordError, PasswordHasher, PasswordWorkers};
use self::store::{AuditFilter, AuditRecord, UserFilter, UserRow};
pub use self::tokens::AuthUser;
use self::tokens::{AccessTokens, TokenError, TokenSubject};
use crate::bus::{BusError, RedisBus};
use crate::db::{Database, DbError};
use crate::ratelimit::{Decision, RateLimiter, RateRule};
use crate::text::{escape_free_text, has_deceptive_characters};

/// The identity settings, resolved from the server's options.
#[derive(Debug, Clone)]
pub struct IdentitySettings {
    /// The key that signs access tokens.
    pub jwt_key: tokens::JwtKey,
    /// Earlier keys still accepted.
    pub jwt_previous_keys: Vec<tokens::JwtKey>,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub password_cost: PasswordCost,
    /// The shortest password accepted when one is set (existing passwords are not checked).
    pub password_min_length: usize,
    /// Per client IP, on login, register and refresh together.
    pub ip_rule: RateRule,
    /// Per username, on login and register.
    pub username_rule: RateRule,
}

/// What went wrong, in terms a client can act on.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{0}")]
    Validation(String),
    #[error("wrong username or password")]
    InvalidCredentials,
    #[error("the token has expired")]
    TokenExpired,
    #[error("{0}")]
    TokenInvalid(&'static str),
    #[error("this route needs an access token (Authorization: Bearer …)")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("this user is blocked")]
    UserBlocked,
    #[error("this username is taken")]
    UsernameTaken,
    #[error("too many requests; retry in {} s", retry_after_secs(*.retry_after))]
    RateLimited { retry_after: Duration },
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("{0}")]
    Internal(String),
}

/// The names of the identity metrics (described by the server's telemetry).
pub const AUTH_EVENTS_TOTAL: &str = "nodegrid_auth_events_total";
pub const AUTH_TOKEN_REJECTIONS_TOTAL: &str = "nodegrid_auth_token_rejections_total";
pub const RATE_LIMITED_TOTAL: &str = "nodegrid_rate_limited_total";
pub const RATE_LIMIT_ERRORS_TOTAL: &str = "nodegrid_rate_limit_errors_total";
pub const AUDIT_WRITE_ERRORS_TOTAL: &str = "nodegrid_audit_write_errors_total";

/// Ended sessions are remembered this long past the access-token lifetime (clock skew between
/// instances, and the tokens' own leeway).
const SESSION_REVOCATION_MARGIN_SECS: u64 = 60;

/// Password checks that may wait for a worker; past this, logins get `rate_limited`.
const PASSWORD_QUEUE: usize = 256;

fn password_error(error: PasswordError) -> IdentityError {
    match error {
        PasswordError::Busy => IdentityError::RateLimited {
            retry_after: Duration::from_secs(1),
        },
        other => IdentityError::Internal(other.to_string()),
    }
}

/// Whole seconds for a `Retry-After` header: rounded up, at least 1.
pub fn retry_after_secs(retry_after: Duration) -> u64 {
    retry_after.as_millis().div_ceil(1000).max(1) as u64
}

/// Who is asking, as far as the network says.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub ip: IpAddr,
}

/// A page request: 1-based page, 1 to 200 items per page (50 by default).
#[derive(Debug, Clone, Copy, Default)]
pub struct PageRequest {
    pub page: Option<u32>,
    pub per_page: Option<u32>,
}

impl PageRequest {
    const DEFAULT_PER_PAGE: u32 = 50;
    const MAX_PER_PAGE: u32 = 200;

    fn resolve(self) -> Result<(u32, u32), IdentityError> {
        let page = self.page.unwrap_or(1);
        let per_page = self.per_page.unwrap_or(Self::DEFAULT_PER_PAGE);
        if page == 0 || page > 1_000_000 {
            return Err(IdentityError::Validation(
                "page must be 1 to 1000000".into(),
            ));
        }
        if per_page == 0 || per_page > Self::MAX_PER_PAGE {
            return Err(IdentityError::Validation(format!(
                "per_page must be 1 to {}",
                Self::MAX_PER_PAGE
            )));
        }
        Ok((page, per_page))
    }
}

#[derive(Clone)]
pub struct Identity {
    inner: Arc<Inner>,
}

struct Inner {
    database: Database,
    bus: RedisBus,
    passwords: PasswordWorkers,
    tokens: AccessTokens,
    refresh_ttl: Duration,
    gate: AccessGate,
    limiter: RateLimiter,
    ip_rule: RateRule,
    username_rule: RateRule,
    password_min_length: usize,
    instance_id: uuid::Uuid,
}

impl Identity {
    pub fn new(
        settings: &IdentitySettings,
        database: Database,
        bus: RedisBus,
        instance_id: uuid::Uuid,
    ) -> Result<Identity, IdentityError> {
        let hasher = PasswordHasher::new(settings.password_cost)
            .map_err(|error| IdentityError::Internal(error.to_string()))?;
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        let passwords = PasswordWorkers::start(hasher, threads, PASSWORD_QUEUE);
        Ok(Identity {
            inner: Arc::new(Inner {
                limiter: RateLimiter::new(&bus),
                database,
                bus,
                passwords,
                tokens: AccessTokens::new(
                    &settings.jwt_key,
                    &settings.jwt_previous_keys,
                    settings.access_ttl,
                ),
                refresh_ttl: settings.refresh_ttl,
                gate: AccessGate::default(),
                ip_rule: settings.ip_rule,
                username_rule: settings.username_rule,
                password_min_length: settings.password_min_length,
                instance_id,
            }),
        })
    }

    /// Checks an access token: signature, algorithm, expiry, and the user's blocks and token
    /// version. No IO.
    pub fn authenticate(&self, token: &str) -> Result<AuthUser, IdentityError> {
        let subject = self
            .inner
            .tokens
            .verify(token)
            .map_err(|error| match error {
                TokenError::Expired => IdentityError::TokenExpired,
                TokenError::Invalid => IdentityError::TokenInvalid("the access token is not valid"),
            })?;
        match self
            .inner
            .gate
            .check(subject.user_id, subject.token_version, subject.session_id)
        {
            Ok(()) => Ok(subject),
            Err(Refusal::Blocked) => Err(IdentityError::UserBlocked),
            Err(Refusal::Revoked) => Err(IdentityError::TokenInvalid(
                "the access token has been revoked",
            )),
            Err(Refusal::SessionEnded) => Err(IdentityError::TokenInvalid(
                "the access token's session has ended (logged out)",
            )),
        }
    }

    pub async fn register(
        &self,
        caller: Caller,
        creator: Option<&AuthUser>,
        request: RegisterRequest,
    ) -> Result<UserIdentity, IdentityError> {
        let username = validate_username(&request.username)?;
        validate_password(&request.password, self.inner.password_min_length)?;
        let device_id = request
            .device_id
            .as_deref()
            .map(validate_device_id)
            .transpose()?;
        if request.role == Role::Admin && creator.is_none_or(|creator| creator.role != Role::Admin)
        {
            return Err(IdentityError::Forbidden(
                "only an admin may create an admin",
            ));
        }
        self.limit(caller, "register", Some(&username)).await?;
        // Hashing is slow by design: no pooled connection is held while it runs.
        self.ensure_username_free(&username).await?;
        let password_hash = self.hash_password(request.password).await?;
        let action = if request.role == Role::Admin {
            "admin.create"
        } else {
            "user.register"
        };
        let user = self
            .create_user(
                NewUser {
                    username: &username,
                    password_hash: &password_hash,
                    role: request.role,
                    device_id: device_id.as_deref(),
                },
                |user| AuditRecord {
                    actor_id: Some(creator.map_or(user.id, |creator| creator.user_id)),
                    actor: Some(
                        creator.map_or_else(|| user.username.clone(), |c| c.username.clone()),
                    ),
                    action,
                    target: Some(user_target(user)),
                    source_ip: Some(caller.ip.to_string()),
                    details: json!({"role": user.role}),
                },
            )
            .await?
            .ok_or(IdentityError::UsernameTaken)?;
        metrics::counter!(AUTH_EVENTS_TOTAL, "event" => "register").increment(1);
        Ok(identity_of(&user))
    }

    /// Refuses a name that is taken, before the slow work of hashing a password for it.
    async fn ensure_username_free(&self, username: &str) -> Result<(), IdentityError> {
        let client = self.inner.database.client().await?;
        if store::user_by_username(&client, username).await?.is_some() {
            return Err(IdentityError::UsernameTaken);
        }
        Ok(())
    }

    /// Inserts a user and its audit entry in one transaction, on one pooled connection;
    /// `None` when the name is taken (another request won the race).
    async fn create_user(
        &self,
        user: NewUser<'_>,
        audit: impl FnOnce(&UserRow) -> AuditRecord,
    ) -> Result<Option<UserRow>, IdentityError> {
        let mut client = self.inner.database.client().await?;
        let transaction = client.transaction().await.map_err(DbError::from)?;
        let Some(row) = store::insert_user(
            &transaction,
            user.username,
            user.password_hash,
            user.role,
            user.device_id,
        )
        .await?
        else {
            return Ok(None);
        };
        store::insert_audit(&transaction, &audit(&row)).await?;
        transaction.commit().await.map_err(DbError::from)?;
        Ok(Some(row))
    }

    pub async fn login(
        &self,
        caller: Caller,
        request: LoginRequest,
    ) -> Result<TokenResponse, IdentityError> {
        // Names are looked up as they were stored: the naming rule applies when a name is
        // created, not here (older and imported names may not follow it).
        let username = request.username;
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
        let matches = self.check_password(request.password, user.clone()).await?;
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

        let session_id = uuid::Uuid::new_v4();
        let refresh_token = tokens::new_refresh_token();
        let mut client = self.inner.database.client().await?;
        let transaction = client.transaction().await.map_err(DbError::from)?;
        store::insert_refresh_token(
            &transaction,
            session_id,
            user.id,
            &tokens::refresh_token_hash(&refresh_token),
            self.refresh_expiry()?,
        )
        .await?;
        store::insert_audit(
            &transaction,
            &AuditRecord {
                actor_id: Some(user.id),
                actor: Some(user.username.clone()),
                action: "auth.login",
                target: Some(user_target(&user)),
                source_ip: Some(caller.ip.to_string()),
                details: json!({"session": session_id}),
            },
        )
        .await?;
        transaction.commit().await.map_err(DbError::from)?;
        drop(client);
        metrics::counter!(AUTH_EVENTS_TOTAL, "event" => "login").increment(1);
        self.token_response(&user, session_id, refresh_token)
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
        let refresh_token = tokens::new_refresh_token();
        store::mark_refresh_token_used(&transaction, presented.id).await?;
        store::insert_refresh_token(
            &transaction,
            presented.family_id,
            user.id,
            &tokens::refresh_token_hash(&refresh_token),
            self.refresh_expiry()?,
        )
        .await?;
        store::insert_audit(
            &transaction,
            &AuditRecord {
                actor_id: Some(user.id),
                actor: Some(user.username.clone()),
                action: "auth.refresh",
                target: Some(user_target(&user)),
                source_ip: Some(caller.ip.to_string()),
                details: json!({"session": presented.family_id}),
            },
        )
        .await?;
        transaction.commit().await.map_err(DbError::from)?;
        metrics::counter!(AUTH_EVENTS_TOTAL, "event" => "refresh").increment(1);
        self.token_response(&user, presented.family_id, refresh_token)
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

    /// Records that an authenticated user was refused a route their role does not allow.
    pub async fn record_denied(&self, caller: Caller, user: &AuthUser, route: &str) {
        metrics::counter!(AUTH_EVENTS_TOTAL, "event" => "forbidden").increment(1);
        self.record_quietly(AuditRecord {
            actor_id: Some(user.user_id),
            actor: Some(user.username.clone()),
            action: "access.denied",
            target: Some(truncate(route, 200)),
            source_ip: Some(caller.ip.to_string()),
            details: json!({"role": user.role}),
        })
        .await;
    }

    /// Records an admin's change outside identity (e.g. a pNode registry prune).
    pub async fn record_admin_action(
        &self,
        caller: Caller,
        admin: &AuthUser,
        action: &'static str,
        target: &str,
        details: serde_json::Value,
    ) -> Result<(), IdentityError> {
        self.record(AuditRecord {
            actor_id: Some(admin.user_id),
            actor: Some(admin.username.clone()),
            action,
            target: Some(truncate(target, 200)),
            source_ip: Some(caller.ip.to_string()),
            details,
        })
        .await
    }

    /// Records that an admin read an admin view (`route`, with its query string).
    pub async fn record_admin_read(
        &self,
        caller: Caller,
        admin: &AuthUser,
        route: &str,
        query: &str,
    ) {
        self.record_quietly(AuditRecord {
            actor_id: Some(admin.user_id),
            actor: Some(admin.username.clone()),
            action: "admin.read",
            target: Some(truncate(route, 200)),
            source_ip: Some(caller.ip.to_string()),
            details: json!({"query": truncate(query, 500)}),
        })
        .await;
    }

    pub async fn list_users(
        &self,
        filter: UserFilter,
        page: PageRequest,
    ) -> Result<Page<UserSummary>, IdentityError> {
        let (page, per_page) = page.resolve()?;
        let client = self.inner.database.client().await?;
        let (users, total) = store::list_users(
            &client,
            &filter,
            i64::from(per_page),
            i64::from(page - 1) * i64::from(per_page),
        )
        .await?;
        Ok(Page {
            items: users.iter().map(UserRow::summary).collect(),
            page,
            per_page,
            total,
        })
    }

    /// Blocks a user everywhere: their refresh tokens are revoked, their access tokens refused
    /// on every instance, and (through the control event) their sockets closed.
    pub async fn block(
        &self,
        caller: Caller,
        admin: &AuthUser,
        user_id: i64,
        reason: &str,
    ) -> Result<UserSummary, IdentityError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(IdentityError::Validation(
                "reason must be 1 to 500 characters".into(),
            ));
        }
        // Kept whole, with control and direction-changing characters escaped.
        let reason = escape_free_text(reason, 500);
        let reason = reason.as_str();
        if user_id == admin.user_id {
            return Err(IdentityError::Validation(
                "an admin cannot block themselves".into(),
            ));
        }
        let audit = admin_record(
            caller,
            admin,
            "user.block",
            user_id,
            json!({"reason": reason}),
        );
        let mut client = self.inner.database.client().await?;
        let user = store::block_user(&mut client, user_id, reason, &audit).await?;
        self.access_changed(user_id, user, true).await
    }

    pub async fn unblock(
        &self,
        caller: Caller,
        admin: &AuthUser,
        user_id: i64,
    ) -> Result<UserSummary, IdentityError> {
        let audit = admin_record(caller, admin, "user.unblock", user_id, json!({}));
        let mut client = self.inner.database.client().await?;
        let user = store::unblock_user(&mut client, user_id, &audit).await?;
        self.access_changed(user_id, user, false).await
    }

    /// After a committed block or unblock: this instance's gate, every other instance, a count.
    async fn access_changed(
        &self,
        user_id: i64,
        user: Option<UserRow>,
        blocked: bool,
    ) -> Result<UserSummary, IdentityError> {
        let user = user.ok_or_else(|| IdentityError::NotFound(format!("no user {user_id}")))?;
        self.announce(
            user.id,
            UserAccess {
                token_version: user.token_version,
                blocked,
            },
        )
        .await;
        let event = if blocked { "block" } else { "unblock" };
        metrics::counter!(AUTH_EVENTS_TOTAL, "event" => event).increment(1);
        Ok(user.summary())
    }

    pub async fn audit_log(
        &self,
        filter: AuditFilter,
        page: PageRequest,
    ) -> Result<Page<AuditEntry>, IdentityError> {
        let (page, per_page) = page.resolve()?;
        let client = self.inner.database.client().await?;
        let (entries, total) = store::list_audit(
            &client,
            &filter,
            i64::from(per_page),
            i64::from(page - 1) * i64::from(per_page),
        )
        .await?;
        Ok(Page {
            items: entries,
            page,
            per_page,
            total,
        })
    }

    /// Deletes audit entries older than `retention`, in batches so that no statement holds
    /// the table long; returns how many.
    pub async fn prune_audit(&self, retention: Duration) -> Result<u64, IdentityError> {
        const BATCH: i64 = 10_000;
        let mut deleted = 0;
        loop {
            let client = self.inner.database.client().await?;
            let batch = store::prune_audit(&client, retention.as_secs(), BATCH).await?;
            deleted += batch;
            if batch < BATCH as u64 {
                return Ok(deleted);
            }
        }
    }

    /// A page of the audit log for an export: entries after `after` (by id), oldest first.
    pub async fn audit_after(
        &self,
        filter: &AuditFilter,
        after: i64,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, IdentityError> {
        let client = self.inner.database.client().await?;
        Ok(store::audit_after(&client, filter, after, limit).await?)
    }

    /// Makes sure a user called `username` with `role` exists; creates it with `password` if
    /// not. Returns whether it was created. An existing user keeps its password; one with
    /// another role is an error.
    pub async fn ensure_user(
        &self,
        username: &str,
        password: &str,
        role: Role,
        source: &str,
    ) -> Result<bool, IdentityError> {
        let username = validate_username(username)?;
        validate_password(password, self.inner.password_min_length)?;
        {
            let client = self.inner.database.client().await?;
            if let Some(existing) = store::user_by_username(&client, &username).await? {
                if existing.role != role {
                    return Err(IdentityError::Validation(format!(
                        "user {username:?} exists with role {}",
                        existing.role
                    )));
                }
                return Ok(false);
            }
        }
        let password_hash = self.hash_password(password.to_owned()).await?;
        let created = self
            .create_user(
                NewUser {
                    username: &username,
                    password_hash: &password_hash,
                    role,
                    device_id: None,
                },
                |user| AuditRecord {
                    actor_id: None,
                    actor: Some("system".into()),
                    action: if role == Role::Admin {
                        "admin.create"
                    } else {
                        "user.register"
                    },
                    target: Some(user_target(user)),
                    source_ip: None,
                    details: json!({"source": source, "role": role}),
                },
            )
            .await?;
        // `None`: another instance created it at the same moment.
        Ok(created.is_some())
    }

    /// Until when an ended session must be remembered: its last access token expires by then.
    fn session_revocation_horizon(&self) -> u64 {
        tokens::unix_now() + self.inner.tokens.ttl().as_secs() + SESSION_REVOCATION_MARGIN_SECS
    }

    /// Reloads the access gate from Postgres.
    pub async fn reload_access(&self) -> Result<usize, IdentityError> {
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
    async fn revoke_session(&self, user_id: i64, session_id: uuid::Uuid) {
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
    async fn announce(&self, user_id: i64, access: UserAccess) {
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

    async fn limit(
        &self,
        caller: Caller,
        scope: &'static str,
        username: Option<&str>,
    ) -> Result<(), IdentityError> {
        let ip = caller.ip.to_string();
        let mut checks = vec![("ip", ip.clone(), self.inner.ip_rule)];
        // Per username *and client network*: guesses against one name are bounded, but
        // someone elsewhere cannot lock its owner out by failing on purpose.
        if let Some(username) = username {
            let key = format!("{}|{}", username.to_lowercase(), client_network(caller.ip));
            checks.push(("user", key, self.inner.username_rule));
        }
        for (kind, key, rule) in checks {
            let bucket = format!("{scope}:{kind}");
            match self.inner.limiter.check(&bucket, &key, rule).await {
                Ok(Decision::Allowed) => {}
                Ok(Decision::Denied {
                    retry_after,
                    first_denial,
                }) => {
                    metrics::counter!(RATE_LIMITED_TOTAL, "scope" => scope, "key" => kind)
                        .increment(1);
                    // One audit entry per episode, so a flood cannot fill the log.
                    if first_denial {
                        self.record_quietly(AuditRecord {
                            actor_id: None,
                            actor: username.map(|name| escape_free_text(name, 64)),
                            action: "auth.rate_limited",
                            target: Some(format!("{scope}:{kind}")),
                            source_ip: Some(ip.clone()),
                            details: json!({"retry_after_ms": retry_after.as_millis() as u64}),
                        })
                        .await;
                    }
                    return Err(IdentityError::RateLimited { retry_after });
                }
                Err(error) => {
                    // Fail open: an unavailable Redis must not lock everyone out of logging in.
                    metrics::counter!(RATE_LIMIT_ERRORS_TOTAL).increment(1);
                    tracing::warn!(%error, scope, "rate limiter unavailable; allowing the request");
                }
            }
        }
        Ok(())
    }

    async fn hash_password(&self, password: String) -> Result<String, IdentityError> {
        self.inner
            .passwords
            .run(move |hasher| hasher.hash(&password))
            .await
            .map_err(password_error)?
            .map_err(|error| IdentityError::Internal(error.to_string()))
    }

    async fn check_password(
        &self,
        password: String,
        user: Option<UserRow>,
    ) -> Result<bool, IdentityError> {
        self.inner
            .passwords
            .run(move |hasher| match user {
                Some(user) => hasher.verify(&password, &user.password_hash),
                None => hasher.verify_decoy(&password),
            })
            .await
            .map_err(password_error)
    }

    fn refresh_expiry(&self) -> Result<chrono::DateTime<Utc>, IdentityError> {
        chrono::Duration::from_std(self.inner.refresh_ttl)
            .map(|ttl| Utc::now() + ttl)
            .map_err(|error| IdentityError::Internal(error.to_string()))
    }

    fn token_response(
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

    async fn record(&self, record: AuditRecord) -> Result<(), IdentityError> {
        let client = self.inner.database.client().await?;
        store::insert_audit(&client, &record).await?;
        Ok(())
    }

    /// For events on a path that already fails: a lost audit entry is logged and counted, and
    /// the caller still gets its error.
    async fn record_quietly(&self, record: AuditRecord) {
        if let Err(error) = self.record(record.clone()).await {
            metrics::counter!(AUDIT_WRITE_ERRORS_TOTAL).increment(1);
            tracing::error!(%error, action = record.action, "audit entry lost");
        }
    }
}

/// A new username: 3 to 32 characters of `[A-Za-z0-9_.-]`, starting with a letter or digit and
/// not ending with `.`. Checked when a name is created; logins look names up as stored.
pub fn validate_username(username: &str) -> Result<String, IdentityError> {
    let username = username.trim();
    let valid_chars = username
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    let starts_well = username
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let ends_well = !username.ends_with('.');
    if !(3..=32).contains(&username.len()) || !valid_chars || !starts_well || !ends_well {
        return Err(IdentityError::Validation(
            "username must be 3 to 32 characters of letters, digits, '_', '.', '-', starting with a letter or digit and not ending with '.'".into(),
        ));
    }
    Ok(username.to_owned())
}

/// Names longer than this are not looked up at login (no stored name is longer).
const MAX_LOOKUP_NAME_CHARS: usize = 255;

/// The client's network for per-username limits: its /24 (IPv4) or /64 (IPv6).
fn client_network(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            format!(
                "{:x}:{:x}:{:x}:{:x}::/64",
                segments[0], segments[1], segments[2], segments[3]
            )
        }
    }
}

/// The longest password accepted, in characters.
pub const MAX_PASSWORD_CHARS: usize = 128;
/// The default shortest password, in characters.
pub const DEFAULT_PASSWORD_MIN_LENGTH: usize = 8;

/// A new password: `min_length` to 128 characters. Only passwords being set are checked;
/// existing ones (imported, or set under an older rule) keep working.
fn validate_password(password: &str, min_length: usize) -> Result<(), IdentityError> {
    let length = password.chars().count();
    if !(min_length..=MAX_PASSWORD_CHARS).contains(&length) {
        return Err(IdentityError::Validation(format!(
            "password must be {min_length} to {MAX_PASSWORD_CHARS} characters"
        )));
    }
    Ok(())
}

/// What a new user row is made of.
struct NewUser<'a> {
    username: &'a str,
    password_hash: &'a str,
    role: Role,
    device_id: Option<&'a str>,
}

fn validate_device_id(device_id: &str) -> Result<String, IdentityError> {
    let device_id = device_id.trim();
    if device_id.is_empty() || device_id.len() > 128 || has_deceptive_characters(device_id) {
        return Err(IdentityError::Validation(
            "device_id must be 1 to 128 printable characters".into(),
        ));
    }
    Ok(device_id.to_owned())
}

/// An audit record of an admin acting on a user.
fn admin_record(
    caller: Caller,
    admin: &AuthUser,
    action: &'static str,
    user_id: i64,
    details: serde_json::Value,
) -> AuditRecord {
    audit_record(caller, admin, action, &format!("user:{user_id}"), details)
}

/// An audit record of `actor` doing `action` to `target`, for changes that other services
/// write in their own transaction.
pub fn audit_record(
    caller: Caller,
    actor: &AuthUser,
    action: &'static str,
    target: &str,
    details: serde_json::Value,
) -> AuditRecord {
    AuditRecord {
        actor_id: Some(actor.user_id),
        actor: Some(actor.username.clone()),
        action,
        target: Some(truncate(target, 200)),
        source_ip: Some(caller.ip.to_string()),
        details,
    }
}

fn identity_of(user: &UserRow) -> UserIdentity {
    UserIdentity {
        user_id: user.id,
        username: user.username.clone(),
        role: user.role,
    }
}

fn user_target(user: &UserRow) -> String {
    format!("user:{}", user.id)
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

impl crate::shared_state::SharedState for Identity {
    fn name(&self) -> &'static str {
        "access_gate"
    }

    fn apply(&self, event: &ControlEvent) {
        self.apply_control(event);
    }

    fn reload(&self) -> futures_util::future::BoxFuture<'static, Result<usize, String>> {
        let this = self.clone();
        Box::pin(async move {
            this.reload_access()
                .await
                .map_err(|error| error.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_checked_at_the_edge() {
        assert_eq!(validate_username(" ada_l ").unwrap(), "ada_l");
        for bad in ["ab", "-ada", "ada lovelace", "ädä", "ada.", &"a".repeat(33)] {
            assert!(validate_username(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_password("short", 8).is_err());
        assert!(validate_password("long enough", 8).is_ok());
        assert!(validate_password("pass123", 6).is_ok());
        assert!(validate_password(&"x".repeat(129), 6).is_err());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}

//! Identity and access: users, passwords, access and refresh tokens, blocking, the audit log,
//! and the rate limits of the auth routes.
//!
//! [`Identity`] holds the rules; the HTTP handlers in `actors` only translate. All durable state
//! is in Postgres; what every instance must learn at once (a block, an ended session) goes on
//! the control channel; checking an access token costs no IO ([`access::AccessGate`]).
//!
//! # Layout
//!
//! `Identity` is declared here with what every part uses (authentication, password work, audit
//! writes); its operations live by topic: `accounts` (register, ensure a user), `sessions`
//! (login, refresh, logout), `admin` (users, blocks, the audit log), `revocation` (keeping the
//! gate current on every instance), `limits` (rate limits). [`rules`] holds the naming and
//! password rules; [`store`] the SQL; [`tokens`], [`passwords`] and [`access`] the pieces.

pub mod access;
mod accounts;
pub mod admin;
pub mod api_tokens;
mod limits;
pub mod passwords;
mod revocation;
pub mod rules;
mod sessions;
pub mod store;
pub mod tokens;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use self::access::{AccessGate, Refusal};
use self::passwords::{PasswordCost, PasswordError, PasswordHasher, PasswordWorkers, Verification};
use self::store::{AuditRecord, UserRow};
pub use self::tokens::AuthUser;
use self::tokens::{AccessTokens, TokenError};
use crate::bus::{BusError, RedisBus};
use crate::db::{Database, DbError};
use crate::ratelimit::{RateLimiter, RateRule};

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
    // Not `transparent`: the dependency error stays in the chain, where the HTTP boundary
    // looks for it to answer 503 when Postgres or Redis is away.
    #[error("{0}")]
    Database(#[from] DbError),
    // Not `transparent`: the dependency error stays in the chain, where the HTTP boundary
    // looks for it to answer 503 when Postgres or Redis is away.
    #[error("{0}")]
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

    /// Whether an admin blocked the user. No IO.
    pub fn is_blocked(&self, user_id: i64) -> bool {
        self.inner.gate.is_blocked(user_id)
    }

    async fn hash_password(&self, password: String) -> Result<String, IdentityError> {
        self.inner
            .passwords
            .run(move |hasher| hasher.hash(&password))
            .await
            .map_err(password_error)?
            .map_err(|error| IdentityError::Internal(error.to_string()))
    }

    /// Checks a login's password (against a decoy when there is no such user, to take the same
    /// time); a match against an imported bcrypt hash brings its Argon2id replacement.
    async fn check_password(
        &self,
        password: String,
        user: Option<UserRow>,
    ) -> Result<Verification, IdentityError> {
        self.inner
            .passwords
            .run(move |hasher| match user {
                Some(user) => hasher.verify_and_upgrade(&password, &user.password_hash),
                None => Verification {
                    matches: hasher.verify_decoy(&password),
                    upgraded: None,
                },
            })
            .await
            .map_err(password_error)
    }

    pub(crate) async fn record(&self, record: AuditRecord) -> Result<(), IdentityError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}

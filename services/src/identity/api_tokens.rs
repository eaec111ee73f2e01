//! API tokens (`ngt_…`): issued by an admin, shown once, kept only as a keyed hash
//! (HMAC-SHA-256 under the deployment's pepper), revocable, each limited to its scopes.
//!
//! Every instance keeps the live tokens' hashes in memory, so checking a token is one HMAC and
//! one map lookup, no query. Issuing and revoking are written to Postgres with their audit
//! entry in one transaction, then announced on the control channel; a revocation takes effect
//! on every instance as soon as it hears the event, and on this one before the call answers.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use futures_util::future::BoxFuture;
use nodegrid_protocol::api_tokens::{
    API_TOKEN_PREFIX, ApiScope, ApiTokenCreated, ApiTokenView, CreateApiTokenRequest,
};
use nodegrid_protocol::control::{ControlEnvelope, ControlEvent};
use secrecy::{ExposeSecret, SecretString};

use crate::bus::RedisBus;
use crate::db::{Database, DbError};
use crate::identity::store::{AuditRecord, insert_audit};
use crate::keyed::{KeyedHash, keyed_hash};
use crate::shared_state::SharedState;

/// Random bytes in a token (base64url: 43 characters after the prefix).
const TOKEN_BYTES: usize = 32;
/// Characters of a token shown to admins to recognise it.
const SHOWN_PREFIX_CHARS: usize = API_TOKEN_PREFIX.len() + 8;
/// Longest text checked as a token; anything longer is refused before hashing.
const MAX_TOKEN_CHARS: usize = 128;
const MAX_NAME_CHARS: usize = 100;
/// The highest per-token rate on the pNode API.
const MAX_TOKEN_RATE_PER_SEC: u32 = 1_000_000;
/// The longest life a token is given, in days (a century). Far beyond it the expiry is a date
/// that RFC 3339 cannot write (a five-digit year), and past chrono's range the sum overflows.
const MAX_TOKEN_DAYS: u32 = 36_500;

/// A stored rate (the column allows only positive values).
fn positive_rate(stored: Option<i32>) -> Option<u32> {
    stored.and_then(|rate| u32::try_from(rate).ok())
}

/// What a valid token may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiGrant {
    pub token_id: i64,
    pub scopes: Vec<ApiScope>,
    /// With `publish`: the only producers it may publish for (`None`: any).
    pub producer_ids: Option<Vec<i64>>,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    /// With `xandeum:unlimited`: its own pNode API rate (`None`: no limit).
    pub rate_per_sec: Option<u32>,
}

impl ApiGrant {
    pub fn has(&self, scope: ApiScope) -> bool {
        self.scopes.contains(&scope)
    }

    /// Whether the token may publish for `producer_id`.
    pub fn may_publish_for(&self, producer_id: i64) -> bool {
        self.has(ApiScope::Publish)
            && self
                .producer_ids
                .as_ref()
                .is_none_or(|producers| producers.contains(&producer_id))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiTokenError {
    /// Not a token this deployment issued, revoked, or expired; the caller is not told which.
    #[error("the API token is not valid")]
    Invalid,
    #[error("{0}")]
    BadRequest(String),
    #[error("no API token {0}")]
    NotFound(i64),
    // Not `transparent`: the dependency error stays in the chain, where the HTTP boundary
    // looks for it to answer 503 when Postgres or Redis is away.
    #[error("{0}")]
    Database(#[from] DbError),
}

impl From<tokio_postgres::Error> for ApiTokenError {
    fn from(error: tokio_postgres::Error) -> Self {
        ApiTokenError::Database(error.into())
    }
}

#[derive(Clone)]
pub struct ApiTokens {
    database: Database,
    bus: RedisBus,
    instance_id: uuid::Uuid,
    key: Arc<SecretString>,
    live: Arc<RwLock<HashMap<KeyedHash, ApiGrant>>>,
}

impl ApiTokens {
    pub fn new(
        database: Database,
        bus: RedisBus,
        instance_id: uuid::Uuid,
        secret: SecretString,
    ) -> ApiTokens {
        ApiTokens {
            database,
            bus,
            instance_id,
            key: Arc::new(secret),
            live: Arc::default(),
        }
    }

    /// Whether `text` looks like an API token (rather than an access token).
    pub fn is_api_token(text: &str) -> bool {
        text.starts_with(API_TOKEN_PREFIX)
    }

    /// Checks a presented token at `now` (Unix seconds). No IO.
    pub fn verify(&self, token: &str, now: i64) -> Result<ApiGrant, ApiTokenError> {
        if !Self::is_api_token(token) || token.len() > MAX_TOKEN_CHARS {
            return Err(ApiTokenError::Invalid);
        }
        let hash = self.hash(token);
        let live = self.live.read().unwrap_or_else(|p| p.into_inner());
        match live.get(&hash) {
            Some(grant) if grant.expires_at.is_none_or(|at| at > now) => Ok(grant.clone()),
            _ => Err(ApiTokenError::Invalid),
        }
    }

    /// Issues a token; the answer holds it, this once.
    pub async fn issue(
        &self,
        request: CreateApiTokenRequest,
        created_by: i64,
        audit: AuditRecord,
    ) -> Result<ApiTokenCreated, ApiTokenError> {
        let name = request.name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            return Err(ApiTokenError::BadRequest(format!(
                "name must be 1 to {MAX_NAME_CHARS} characters"
            )));
        }
        let name = crate::text::escape_free_text(name, MAX_NAME_CHARS);
        let mut scopes = request.scopes.clone();
        scopes.sort_unstable();
        scopes.dedup();
        if scopes.is_empty() {
            return Err(ApiTokenError::BadRequest(
                "scopes must name at least one scope".into(),
            ));
        }
        if request.rate_per_sec.is_some() && !scopes.contains(&ApiScope::XandeumUnlimited) {
            return Err(ApiTokenError::BadRequest(
                "rate_per_sec goes with the xandeum:unlimited scope".into(),
            ));
        }
        if request
            .rate_per_sec
            .is_some_and(|rate| !(1..=MAX_TOKEN_RATE_PER_SEC).contains(&rate))
        {
            return Err(ApiTokenError::BadRequest(format!(
                "rate_per_sec must be 1 to {MAX_TOKEN_RATE_PER_SEC}"
            )));
        }
        if request.producer_ids.is_some() && !scopes.contains(&ApiScope::Publish) {
            return Err(ApiTokenError::BadRequest(
                "producer_ids go with the publish scope".into(),
            ));
        }
        let expires_at = match request.expires_in_days {
            Some(days) if !(1..=MAX_TOKEN_DAYS).contains(&days) => {
                return Err(ApiTokenError::BadRequest(format!(
                    "expires_in_days must be 1 to {MAX_TOKEN_DAYS}"
                )));
            }
            Some(days) => Some(Utc::now() + chrono::Duration::days(i64::from(days))),
            None => None,
        };
        let token = format!(
            "{API_TOKEN_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(rand::random::<[u8; TOKEN_BYTES]>())
        );
        let hash = self.hash(&token);
        let prefix: String = token.chars().take(SHOWN_PREFIX_CHARS).collect();
        let scope_names: Vec<String> = scopes.iter().map(|s| s.as_str().to_owned()).collect();
        let row = {
            let mut client = self.database.client().await?;
            let transaction = client.transaction().await?;
            let row = transaction
                .query_one(
                    "INSERT INTO api_tokens \
                       (name, token_hash, prefix, scopes, producer_ids, created_by, expires_at, \
                        rate_per_sec) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id, created_at",
                    &[
                        &name,
                        &hash.as_slice(),
                        &prefix,
                        &scope_names,
                        &request.producer_ids,
                        &created_by,
                        &expires_at,
                        &request
                            .rate_per_sec
                            .and_then(|rate| i32::try_from(rate).ok()),
                    ],
                )
                .await?;
            let mut audit = audit;
            audit.details["token_prefix"] = prefix.clone().into();
            insert_audit(&transaction, &audit).await?;
            transaction.commit().await?;
            row
        };
        let id: i64 = row.get(0);
        let created_at: DateTime<Utc> = row.get(1);
        let event = ControlEvent::ApiTokenIssued {
            id,
            token_hash: crate::text::hex(&hash),
            scopes: scope_names,
            producer_ids: request.producer_ids.clone(),
            expires_at: expires_at.map(|at| at.timestamp()),
            rate_per_sec: request.rate_per_sec,
        };
        self.apply(&event);
        self.announce(event).await;
        Ok(ApiTokenCreated {
            token,
            view: ApiTokenView {
                id,
                name,
                prefix,
                scopes,
                producer_ids: request.producer_ids,
                created_by: Some(created_by),
                created_at,
                expires_at,
                revoked_at: None,
                rate_per_sec: request.rate_per_sec,
            },
        })
    }

    /// Every token, newest first: never the secret.
    pub async fn list(&self) -> Result<Vec<ApiTokenView>, ApiTokenError> {
        let client = self.database.client().await?;
        let rows = client
            .query(
                "SELECT id, name, prefix, scopes, producer_ids, created_by, created_at, \
                 expires_at, revoked_at, rate_per_sec FROM api_tokens ORDER BY id DESC",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| ApiTokenView {
                id: row.get(0),
                name: row.get(1),
                prefix: row.get(2),
                scopes: row
                    .get::<_, Vec<String>>(3)
                    .iter()
                    .filter_map(|scope| ApiScope::parse(scope))
                    .collect(),
                producer_ids: row.get(4),
                created_by: row.get(5),
                created_at: row.get(6),
                expires_at: row.get(7),
                revoked_at: row.get(8),
                rate_per_sec: positive_rate(row.get(9)),
            })
            .collect())
    }

    /// Revokes a token; false if it was revoked already.
    pub async fn revoke(&self, id: i64, audit: AuditRecord) -> Result<bool, ApiTokenError> {
        let revoked = {
            let mut client = self.database.client().await?;
            let transaction = client.transaction().await?;
            let row = transaction
                .query_opt(
                    "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) \
                     WHERE id = $1 RETURNING revoked_at = now()",
                    &[&id],
                )
                .await?;
            let Some(row) = row else {
                return Err(ApiTokenError::NotFound(id));
            };
            let newly: bool = row.get(0);
            insert_audit(&transaction, &audit).await?;
            transaction.commit().await?;
            newly
        };
        let event = ControlEvent::ApiTokenRevoked { id };
        self.apply(&event);
        self.announce(event).await;
        Ok(revoked)
    }

    async fn announce(&self, event: ControlEvent) {
        let envelope = ControlEnvelope {
            origin: self.instance_id,
            event,
        };
        if let Err(error) = self.bus.publish_control(&envelope).await {
            tracing::warn!(%error, "cannot announce an API token change; other instances reload within a minute");
        }
    }

    fn hash(&self, token: &str) -> KeyedHash {
        keyed_hash(self.key.expose_secret().as_bytes(), &[token.as_bytes()])
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<KeyedHash, ApiGrant>> {
        self.live.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl SharedState for ApiTokens {
    fn name(&self) -> &'static str {
        "api tokens"
    }

    fn apply(&self, event: &ControlEvent) {
        match event {
            ControlEvent::ApiTokenIssued {
                id,
                token_hash,
                scopes,
                producer_ids,
                expires_at,
                rate_per_sec,
            } => {
                let Some(hash) = hex_decode(token_hash) else {
                    tracing::warn!(id, "an issued API token's hash is malformed; ignored");
                    return;
                };
                self.write().insert(
                    hash,
                    ApiGrant {
                        token_id: *id,
                        scopes: scopes.iter().filter_map(|s| ApiScope::parse(s)).collect(),
                        producer_ids: producer_ids.clone(),
                        expires_at: *expires_at,
                        rate_per_sec: *rate_per_sec,
                    },
                );
            }
            ControlEvent::ApiTokenRevoked { id } => {
                self.write().retain(|_, grant| grant.token_id != *id);
            }
            _ => {}
        }
    }

    fn reload(&self) -> BoxFuture<'static, Result<usize, DbError>> {
        let tokens = self.clone();
        Box::pin(async move {
            let rows = {
                let client = tokens.database.client().await?;
                client
                    .query(
                        "SELECT id, token_hash, scopes, producer_ids, expires_at, rate_per_sec \
                         FROM api_tokens \
                         WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
                        &[],
                    )
                    .await?
            };
            let fresh: HashMap<KeyedHash, ApiGrant> = rows
                .iter()
                .filter_map(|row| {
                    let hash: KeyedHash = row.get::<_, Vec<u8>>(1).try_into().ok()?;
                    let expires_at: Option<DateTime<Utc>> = row.get(4);
                    Some((
                        hash,
                        ApiGrant {
                            token_id: row.get(0),
                            scopes: row
                                .get::<_, Vec<String>>(2)
                                .iter()
                                .filter_map(|scope| ApiScope::parse(scope))
                                .collect(),
                            producer_ids: row.get(3),
                            expires_at: expires_at.map(|at| at.timestamp()),
                            rate_per_sec: positive_rate(row.get(5)),
                        },
                    ))
                })
                .collect();
            let count = fresh.len();
            *tokens.write() = fresh;
            Ok(count)
        })
    }
}

fn hex_decode(text: &str) -> Option<KeyedHash> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (index, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(text.get(2 * index..2 * index + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_travel_as_hex() {
        let hash: KeyedHash = std::array::from_fn(|index| index as u8 * 7);
        assert_eq!(hex_decode(&crate::text::hex(&hash)), Some(hash));
        assert_eq!(hex_decode("zz"), None);
    }

    #[test]
    fn a_grant_publishes_only_for_its_producers() {
        let grant = ApiGrant {
            token_id: 1,
            scopes: vec![ApiScope::Publish],
            producer_ids: Some(vec![4]),
            expires_at: None,
            rate_per_sec: None,
        };
        assert!(grant.may_publish_for(4));
        assert!(!grant.may_publish_for(5));
        let reader = ApiGrant {
            scopes: vec![ApiScope::NodesRead],
            producer_ids: None,
            ..grant
        };
        assert!(!reader.may_publish_for(4));
    }
}

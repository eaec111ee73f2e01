//! A client's users at its children: sign-in through the mother, the mother's answers about a
//! user, the list of blocked users, and the session a child's gate checks on its own.
//!
//! Every answer is a [`SignedAnswer`]: the payload's exact text, the id of the key that signed
//! it and the Ed25519 signature. Each payload names the child and echoes the request's nonce,
//! so that an answer cannot be replayed to another child or another request.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::lease::PublicKeyView;
use super::signing::{decode_public_key, verify_document};
use crate::auth::Role;

/// Every session token starts with this.
pub const SESSION_TOKEN_PREFIX: &str = "ngs.";

/// `POST /api/child/users/login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChildLoginRequest {
    pub username: String,
    pub password: String,
}

/// `POST /api/child/users/check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserCheckRequest {
    pub user_id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChildUser {
    pub id: i64,
    pub username: String,
    pub role: Role,
}

/// Why a user is refused at a child.
pub mod refusals {
    pub const INVALID_CREDENTIALS: &str = "invalid_credentials";
    pub const USER_BLOCKED: &str = "user_blocked";
    /// The user does not belong to the child's client.
    pub const NOT_A_CLIENT_USER: &str = "not_a_client_user";
    pub const UNKNOWN_USER: &str = "unknown_user";
    pub const MAINTENANCE: &str = "maintenance";
    /// The child's lease would be `blocked` (subscription, limits): its reason follows.
    pub const CHILD_BLOCKED: &str = "child_blocked";
}

/// The payload of the answer to a login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginAnswer {
    pub child_id: Uuid,
    pub nonce: String,
    pub issued_at: DateTime<Utc>,
    pub allowed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<ChildUser>,
    /// The session, signed by the mother: the child's gate checks it by itself until
    /// `expires_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// The payload of the answer to a user check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserCheckAnswer {
    pub child_id: Uuid,
    pub nonce: String,
    pub issued_at: DateTime<Utc>,
    pub user_id: i64,
    pub allowed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The payload of `GET /api/child/blocked-users`: the client's blocked users at `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BlockedUsersAnswer {
    pub child_id: Uuid,
    pub nonce: String,
    pub issued_at: DateTime<Utc>,
    pub version: i64,
    /// Every blocked user of the client (empty and `unchanged` when the child's version is
    /// current).
    pub user_ids: Vec<i64>,
    pub unchanged: bool,
}

/// An answer of the mother: `payload` is the exact text `signature` signs.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignedAnswer {
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub payload: Box<RawValue>,
    pub key_id: String,
    /// Ed25519 signature of `payload`'s text, base64url without padding.
    pub signature: String,
}

/// What a session token states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    pub child_id: Uuid,
    pub client_id: i64,
    pub user: ChildUser,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub key_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerRejection {
    #[error("not a signed answer")]
    Malformed,
    #[error("signed with an unknown key {0}")]
    UnknownKey(String),
    #[error("the signature does not match")]
    BadSignature,
    #[error("the answer is for another child or another request")]
    NotOurs,
    #[error("the session has expired")]
    Expired,
}

fn key_of<'a>(
    keys: &'a [PublicKeyView],
    key_id: &str,
) -> Result<ed25519_dalek::VerifyingKey, AnswerRejection> {
    keys.iter()
        .find(|key| key.key_id == key_id)
        .and_then(|key: &'a PublicKeyView| decode_public_key(&key.public_key))
        .ok_or_else(|| AnswerRejection::UnknownKey(key_id.to_owned()))
}

/// Checks a signed answer's signature and reads its payload.
pub fn verify_answer<T: DeserializeOwned>(
    body: &[u8],
    keys: &[PublicKeyView],
) -> Result<T, AnswerRejection> {
    let signed: SignedAnswer =
        serde_json::from_slice(body).map_err(|_| AnswerRejection::Malformed)?;
    let key = key_of(keys, &signed.key_id)?;
    if !verify_document(&key, signed.payload.get().as_bytes(), &signed.signature) {
        return Err(AnswerRejection::BadSignature);
    }
    serde_json::from_str(signed.payload.get()).map_err(|_| AnswerRejection::Malformed)
}

/// The session token of signed claims: `ngs.<claims, base64url>.<signature>`.
pub fn session_token(claims_json: &str, signature: &str) -> String {
    use base64::Engine as _;
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims_json);
    format!("{SESSION_TOKEN_PREFIX}{claims}.{signature}")
}

/// Checks a session token for `child_id` at `now`.
pub fn verify_session(
    token: &str,
    keys: &[PublicKeyView],
    child_id: Uuid,
    now: DateTime<Utc>,
) -> Result<SessionClaims, AnswerRejection> {
    use base64::Engine as _;
    if token.len() > 4_096 {
        return Err(AnswerRejection::Malformed);
    }
    let (claims_b64, signature) = token
        .strip_prefix(SESSION_TOKEN_PREFIX)
        .and_then(|rest| rest.split_once('.'))
        .ok_or(AnswerRejection::Malformed)?;
    let claims_json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims_b64)
        .map_err(|_| AnswerRejection::Malformed)?;
    let claims: SessionClaims =
        serde_json::from_slice(&claims_json).map_err(|_| AnswerRejection::Malformed)?;
    let key = key_of(keys, &claims.key_id)?;
    if !verify_document(&key, &claims_json, signature) {
        return Err(AnswerRejection::BadSignature);
    }
    if claims.child_id != child_id {
        return Err(AnswerRejection::NotOurs);
    }
    if claims.expires_at <= now {
        return Err(AnswerRejection::Expired);
    }
    Ok(claims)
}

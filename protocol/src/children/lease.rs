//! The heartbeat and the lease.
//!
//! Every interval a child sends `POST /api/child/heartbeat` ([`HeartbeatRequest`]); the mother
//! answers a [`SignedLease`]: the [`Lease`] as JSON text and the Ed25519 signature of exactly
//! that text. The lease says what the child may do until `valid_until` (the mother's clock);
//! a child that gets no new lease by then stops serving. [`verify_lease`] is every check a
//! child makes before it believes one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

pub use super::admin::VersionStatus;
use super::admin::{Maintenance, PlanLimits, SubscriptionStatus};
use super::signing::{decode_public_key, verify_document};

/// Longest `state` object a heartbeat may carry, in bytes of JSON.
pub const MAX_STATE_BYTES: usize = 4_096;

/// `POST /api/child/heartbeat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatRequest {
    /// The child's version (`1.4.2`).
    pub version: String,
    pub uptime_s: u64,
    /// Users signed in at the child now.
    pub users_active: u32,
    /// Hash of the configuration the child applies (from its last lease).
    #[serde(default)]
    pub config_hash: Option<String>,
    /// What the child wants the mother's admins to see (a JSON object, ≤ 4 KiB).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub state: serde_json::Value,
    /// Echoed in the lease, so that the child knows the answer is to this request.
    pub nonce: String,
    /// The `seq` of the last lease the child accepted (0 if none): the new one is higher.
    #[serde(default)]
    pub last_seq: u64,
}

/// What the child may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LeaseStatus {
    Active,
    /// The system is under maintenance: show `maintenance.message`, serve no one.
    Maintenance,
    /// Stop serving: `reason` says why.
    Blocked,
}

/// The client's licence as the lease states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct License {
    pub plan: String,
    pub limits: PlanLimits,
    pub features: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub status: SubscriptionStatus,
}

/// Why a lease says `blocked`.
pub mod reasons {
    pub const SUBSCRIPTION_CANCELLED: &str = "subscription_cancelled";
    pub const SUBSCRIPTION_EXPIRED: &str = "subscription_expired";
    pub const CHILDREN_LIMIT_EXCEEDED: &str = "children_limit_exceeded";
    pub const USERS_LIMIT_EXCEEDED: &str = "users_limit_exceeded";
}

/// The lease: signed by the mother, believed by the child until `valid_until`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Lease {
    pub child_id: Uuid,
    /// Strictly increasing per child: a child refuses a lease not above the last it accepted.
    pub seq: u64,
    pub issued_at: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
    /// The heartbeat's nonce, echoed.
    pub nonce: String,
    pub status: LeaseStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub version_status: VersionStatus,
    pub min_version: Option<String>,
    pub latest_version: Option<String>,
    pub maintenance: Maintenance,
    pub license: License,
    /// Changes whenever a user of the client is blocked or unblocked.
    pub blocked_users_version: i64,
    /// The client's configuration.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub config: serde_json::Value,
    pub config_hash: String,
    /// The signing key's id (`GET /api/child/public-keys`).
    pub key_id: String,
    /// Seconds between heartbeats the mother expects.
    pub heartbeat_interval_s: u64,
}

/// The heartbeat's answer: `lease` is the exact text `signature` signs.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignedLease {
    #[cfg_attr(feature = "openapi", schema(value_type = Lease))]
    pub lease: Box<RawValue>,
    /// Ed25519 signature of `lease`'s text, base64url without padding.
    pub signature: String,
}

/// One of the mother's signing keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublicKeyView {
    pub key_id: String,
    /// Always `ed25519`.
    pub algorithm: String,
    /// The 32-byte public key, base64url without padding.
    pub public_key: String,
    /// `true` for the key the mother signs with now; the others verify what it signed before.
    pub current: bool,
}

/// `GET /api/child/public-keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublicKeysResponse {
    pub keys: Vec<PublicKeyView>,
}

/// Why a child refuses a lease.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseRejection {
    #[error("the answer is not a signed lease")]
    Malformed,
    #[error("the lease is signed with an unknown key {0}")]
    UnknownKey(String),
    #[error("the lease's signature does not match")]
    BadSignature,
    #[error("the lease is for another child")]
    WrongChild,
    #[error("the lease answers another heartbeat (nonce mismatch)")]
    NonceMismatch,
    #[error("the lease's seq {seq} is not above the last accepted {last}")]
    StaleSeq { seq: u64, last: u64 },
    #[error("the lease expired")]
    Expired,
}

/// What a child expects of a lease.
pub struct Expectation<'a> {
    pub child_id: Uuid,
    /// The nonce of the heartbeat answered (`None` for a pushed lease).
    pub nonce: Option<&'a str>,
    pub last_seq: u64,
    pub now: DateTime<Utc>,
}

/// Checks a signed lease's text (the heartbeat's body) against the mother's public keys and
/// what the child expects; the lease if all holds.
pub fn verify_lease(
    body: &[u8],
    keys: &[PublicKeyView],
    expected: &Expectation<'_>,
) -> Result<Lease, LeaseRejection> {
    let signed: SignedLease =
        serde_json::from_slice(body).map_err(|_| LeaseRejection::Malformed)?;
    let lease: Lease =
        serde_json::from_str(signed.lease.get()).map_err(|_| LeaseRejection::Malformed)?;
    let key = keys
        .iter()
        .find(|key| key.key_id == lease.key_id)
        .and_then(|key| decode_public_key(&key.public_key))
        .ok_or_else(|| LeaseRejection::UnknownKey(lease.key_id.clone()))?;
    if !verify_document(&key, signed.lease.get().as_bytes(), &signed.signature) {
        return Err(LeaseRejection::BadSignature);
    }
    if lease.child_id != expected.child_id {
        return Err(LeaseRejection::WrongChild);
    }
    if expected.nonce.is_some_and(|nonce| nonce != lease.nonce) {
        return Err(LeaseRejection::NonceMismatch);
    }
    if lease.seq <= expected.last_seq {
        return Err(LeaseRejection::StaleSeq {
            seq: lease.seq,
            last: expected.last_seq,
        });
    }
    if lease.valid_until <= expected.now {
        return Err(LeaseRejection::Expired);
    }
    Ok(lease)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::signing::{encode_public_key, key_id, sign_document};
    use ed25519_dalek::SigningKey;

    fn lease(seq: u64, key: &SigningKey) -> Lease {
        let now = Utc::now();
        Lease {
            child_id: Uuid::from_u128(7),
            seq,
            issued_at: now,
            valid_until: now + chrono::Duration::seconds(300),
            nonce: "nonce-0123456789ab".into(),
            status: LeaseStatus::Active,
            reason: None,
            version_status: VersionStatus::Ok,
            min_version: None,
            latest_version: None,
            maintenance: Maintenance::default(),
            license: License {
                plan: "basic".into(),
                limits: PlanLimits {
                    max_children: 1,
                    max_users: 1,
                },
                features: vec![],
                expires_at: None,
                status: SubscriptionStatus::Active,
            },
            blocked_users_version: 0,
            config: serde_json::json!({}),
            config_hash: String::new(),
            key_id: key_id(&key.verifying_key()),
            heartbeat_interval_s: 30,
        }
    }

    fn signed(lease: &Lease, key: &SigningKey) -> Vec<u8> {
        let text = serde_json::to_string(lease).unwrap();
        let signature = sign_document(key, text.as_bytes());
        format!("{{\"lease\":{text},\"signature\":\"{signature}\"}}").into_bytes()
    }

    fn keys(key: &SigningKey) -> Vec<PublicKeyView> {
        vec![PublicKeyView {
            key_id: key_id(&key.verifying_key()),
            algorithm: "ed25519".into(),
            public_key: encode_public_key(&key.verifying_key()),
            current: true,
        }]
    }

    fn expect(last_seq: u64) -> Expectation<'static> {
        Expectation {
            child_id: Uuid::from_u128(7),
            nonce: Some("nonce-0123456789ab"),
            last_seq,
            now: Utc::now(),
        }
    }

    #[test]
    fn a_child_believes_only_a_fresh_lease_signed_for_it() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let good = lease(5, &key);
        assert_eq!(
            verify_lease(&signed(&good, &key), &keys(&key), &expect(4)).unwrap(),
            good
        );
        // Replayed or older.
        assert!(matches!(
            verify_lease(&signed(&good, &key), &keys(&key), &expect(5)),
            Err(LeaseRejection::StaleSeq { .. })
        ));
        // Tampered after signing.
        let text = String::from_utf8(signed(&good, &key)).unwrap();
        let tampered = text.replacen("\"status\":\"active\"", "\"status\":\"blocked\"", 1);
        assert_eq!(
            verify_lease(tampered.as_bytes(), &keys(&key), &expect(0)),
            Err(LeaseRejection::BadSignature)
        );
        // Signed by someone else, or with a key the child does not know.
        let stranger = SigningKey::from_bytes(&[4; 32]);
        let mut forged = good.clone();
        forged.key_id = key_id(&key.verifying_key());
        assert_eq!(
            verify_lease(&signed(&forged, &stranger), &keys(&key), &expect(0)),
            Err(LeaseRejection::BadSignature)
        );
        assert!(matches!(
            verify_lease(
                &signed(&lease(6, &stranger), &stranger),
                &keys(&key),
                &expect(0)
            ),
            Err(LeaseRejection::UnknownKey(_))
        ));
        // Another child's, another heartbeat's, an expired one.
        let mut other = good.clone();
        other.child_id = Uuid::from_u128(8);
        assert_eq!(
            verify_lease(&signed(&other, &key), &keys(&key), &expect(0)),
            Err(LeaseRejection::WrongChild)
        );
        let mut other_nonce = good.clone();
        other_nonce.nonce = "another-nonce-0000".into();
        assert_eq!(
            verify_lease(&signed(&other_nonce, &key), &keys(&key), &expect(0)),
            Err(LeaseRejection::NonceMismatch)
        );
        let mut expired = good;
        expired.valid_until = Utc::now() - chrono::Duration::seconds(1);
        assert_eq!(
            verify_lease(&signed(&expired, &key), &keys(&key), &expect(0)),
            Err(LeaseRejection::Expired)
        );
        assert_eq!(
            verify_lease(b"not json", &keys(&key), &expect(0)),
            Err(LeaseRejection::Malformed)
        );
    }
}

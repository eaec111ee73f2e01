//! A child's request checked (key, rate, timestamp, signature, single-use nonce), its
//! heartbeat written, and its lease signed.
//!
//! A heartbeat costs one Redis command (the nonce) and a share of one Postgres statement (the
//! [`writer`](super::writer) writes the heartbeats that arrive together at once: each child's
//! report, `last_heartbeat_at` and next `seq`, on the mother's clock); the lease's terms come
//! from the in-memory catalogue.

use std::time::Instant;

use chrono::{DateTime, Utc};
use nodegrid_protocol::children::lease::{HeartbeatRequest, Lease, MAX_STATE_BYTES};
use nodegrid_protocol::children::signing::{
    AUTHORIZATION_SCHEME, child_key_well_formed, nonce_well_formed, request_signature_matches,
};
use nodegrid_protocol::children::version::MAX_VERSION_CHARS;
use serde_json::json;
use uuid::Uuid;

use super::writer::HeartbeatRow;
use super::{
    CHILD_LEASES_TOTAL, CHILD_LIVENESS_CHANGES_TOTAL, CHILD_REQUESTS_TOTAL, Children, ChildrenError,
};
use crate::webhooks::{OutgoingEvent, enqueue};

/// What a child's request carries that proves it is the child's.
pub struct SignedRequest<'a> {
    /// `Authorization`.
    pub authorization: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub signature: Option<&'a str>,
    pub method: &'a str,
    pub path_and_query: &'a str,
    pub body: &'a [u8],
}

fn refused(outcome: &'static str, error: ChildrenError) -> ChildrenError {
    metrics::counter!(CHILD_REQUESTS_TOTAL, "outcome" => outcome).increment(1);
    error
}

impl Children {
    /// The child a request is from, if its key, signature, timestamp and nonce all hold.
    pub async fn authenticate(
        &self,
        request: &SignedRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<Uuid, ChildrenError> {
        let key = request
            .authorization
            .and_then(|value| value.strip_prefix(AUTHORIZATION_SCHEME))
            .and_then(|rest| rest.strip_prefix(' '))
            .map(str::trim)
            .filter(|key| child_key_well_formed(key))
            .ok_or_else(|| refused("key_invalid", ChildrenError::KeyInvalid))?;
        let child_id = self
            .read()
            .by_key
            .get(&self.keys.key_hash(key))
            .copied()
            .ok_or_else(|| refused("key_invalid", ChildrenError::KeyInvalid))?;
        if let Err(retry_after) = self.limiter.check(child_id, Instant::now()) {
            return Err(refused(
                "rate_limited",
                ChildrenError::RateLimited(retry_after),
            ));
        }
        let bad = |reason| refused("signature_invalid", ChildrenError::SignatureInvalid(reason));
        let timestamp: i64 = request
            .timestamp
            .and_then(|text| text.trim().parse().ok())
            .ok_or_else(|| {
                bad("the request has no timestamp (x-nodegrid-timestamp, Unix seconds)")
            })?;
        let skew = i64::try_from(self.settings.max_clock_skew.as_secs()).unwrap_or(i64::MAX);
        if (timestamp - now.timestamp()).abs() > skew {
            return Err(bad(
                "the request's timestamp is too far from the mother's clock",
            ));
        }
        let nonce = request
            .nonce
            .filter(|nonce| nonce_well_formed(nonce))
            .ok_or_else(|| bad("the request has no nonce of 16 to 64 of A-Z a-z 0-9 _ -"))?;
        let signature = request
            .signature
            .ok_or_else(|| bad("the request is not signed"))?;
        if !request_signature_matches(
            key,
            signature,
            request.method,
            request.path_and_query,
            timestamp,
            nonce,
            request.body,
        ) {
            return Err(bad("the request's signature does not match"));
        }
        // Kept for twice the skew: a request older than that is refused by its timestamp.
        let fresh = self
            .bus
            .claim_once(
                &self.bus.keys().child_nonce(&child_id, nonce),
                self.settings.max_clock_skew * 2,
            )
            .await?;
        if !fresh {
            return Err(refused(
                "replayed",
                ChildrenError::SignatureInvalid("the request's nonce was used before"),
            ));
        }
        Ok(child_id)
    }

    /// Writes the heartbeat and answers the signed lease: the body of the answer, exactly as
    /// signed (`{"lease": …, "signature": …}`).
    pub async fn heartbeat(
        &self,
        child_id: Uuid,
        request: HeartbeatRequest,
    ) -> Result<String, ChildrenError> {
        check(&request).map_err(|error| refused("bad_request", error))?;
        let Some(terms) = self.read().terms(child_id, &request.version, Utc::now()) else {
            // Revoked since the request was authenticated.
            return Err(refused("key_invalid", ChildrenError::KeyInvalid));
        };
        let state = if request.state.is_null() {
            json!({})
        } else {
            request.state.clone()
        };
        let written = self
            .writer
            .write(HeartbeatRow {
                child_id,
                last_seq: i64::try_from(request.last_seq)
                    .unwrap_or(i64::MAX - 1)
                    .min(i64::MAX - 1),
                version: request.version.clone(),
                config_hash: request.config_hash.clone(),
                uptime_s: i64::try_from(request.uptime_s).unwrap_or(i64::MAX),
                users_active: i32::try_from(request.users_active).unwrap_or(i32::MAX),
                state,
            })
            .await?
            .ok_or_else(|| refused("key_invalid", ChildrenError::KeyInvalid))?;
        let (seq, issued_at, valid_until) = (written.seq, written.issued_at, written.valid_until);
        let previous = written.previous;
        if previous != "online" {
            metrics::counter!(CHILD_LIVENESS_CHANGES_TOTAL, "to" => "online").increment(1);
            let event = OutgoingEvent {
                event_type: "child.online",
                data: json!({
                    "child_id": child_id,
                    "client_id": written.client_id,
                    "name": written.name,
                    "from": previous,
                    "version": request.version,
                }),
            };
            // A return to online is rare: its webhook event costs a statement of its own.
            let queued = match self.database.client().await {
                Ok(client) => enqueue(&client, &[event]).await.map(|_| ()),
                Err(error) => Err(error),
            };
            if let Err(error) = queued {
                tracing::warn!(%error, %child_id, "cannot queue the child.online webhook event");
            }
        }
        let lease = Lease {
            child_id,
            seq: u64::try_from(seq).unwrap_or(0),
            issued_at,
            valid_until,
            nonce: request.nonce,
            status: terms.status,
            reason: terms.reason,
            version_status: terms.version_status,
            min_version: terms.min_version,
            latest_version: terms.latest_version,
            maintenance: terms.maintenance,
            license: terms.license,
            blocked_users_version: terms.blocked_users_version,
            config: (*terms.config).clone(),
            config_hash: terms.config_hash,
            key_id: self.keys.current_key_id().to_owned(),
            heartbeat_interval_s: self.settings.heartbeat_interval.as_secs(),
        };
        let status = match lease.status {
            nodegrid_protocol::children::lease::LeaseStatus::Active => "active",
            nodegrid_protocol::children::lease::LeaseStatus::Maintenance => "maintenance",
            nodegrid_protocol::children::lease::LeaseStatus::Blocked => "blocked",
        };
        let text = serde_json::to_string(&lease).map_err(|error| {
            ChildrenError::BadRequest(format!("the lease cannot be written: {error}"))
        })?;
        let signature = self.keys.sign(text.as_bytes());
        metrics::counter!(CHILD_REQUESTS_TOTAL, "outcome" => "ok").increment(1);
        metrics::counter!(CHILD_LEASES_TOTAL, "status" => status).increment(1);
        Ok(format!(
            "{{\"lease\":{text},\"signature\":\"{signature}\"}}"
        ))
    }
}

fn check(request: &HeartbeatRequest) -> Result<(), ChildrenError> {
    let bad = |message: String| Err(ChildrenError::BadRequest(message));
    if request.version.trim().is_empty() || request.version.len() > MAX_VERSION_CHARS {
        return bad(format!(
            "version must be 1 to {MAX_VERSION_CHARS} characters"
        ));
    }
    if request
        .config_hash
        .as_ref()
        .is_some_and(|hash| hash.len() > 128)
    {
        return bad("config_hash must be at most 128 characters".into());
    }
    if !nonce_well_formed(&request.nonce) {
        return bad("nonce must be 16 to 64 of A-Z a-z 0-9 _ -".into());
    }
    if !(request.state.is_object() || request.state.is_null())
        || request.state.to_string().len() > MAX_STATE_BYTES
    {
        return bad(format!(
            "state must be a JSON object of at most {MAX_STATE_BYTES} bytes"
        ));
    }
    Ok(())
}

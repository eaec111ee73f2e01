//! The state file: the last lease as the mother signed it, the keys that verify it, when it
//! expires on this machine's clock, the failure count, the blocked users. Written whole to a
//! temporary file and renamed, so that a crash leaves the old one or the new one.
//!
//! A restart resumes with what is left of the lease, never more: the remaining time is the
//! lesser of the stored local expiry and the lease's own signed `valid_until`, so neither a
//! restart nor an edited file extends it (an edit that breaks the signature drops the lease).

use std::path::Path;

use chrono::{DateTime, Utc};
use nodegrid_protocol::children::lease::{Expectation, Lease, PublicKeyView, verify_lease};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SavedState {
    pub child_id: Option<Uuid>,
    pub last_seq: u64,
    pub failures: u32,
    /// The heartbeat's answer, exactly as signed.
    pub signed_lease: Option<String>,
    /// When the lease expires, on this machine's clock.
    pub expires_at_local: Option<DateTime<Utc>>,
    pub keys: Vec<PublicKeyView>,
    pub blocked_users_version: i64,
    pub blocked_users: Vec<i64>,
}

impl SavedState {
    pub fn load(path: &Path) -> Result<SavedState, String> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| {
                format!("the state file {} cannot be read: {error}", path.display())
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(SavedState::default()),
            Err(error) => Err(format!(
                "the state file {} cannot be read: {error}",
                path.display()
            )),
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_vec_pretty(self).map_err(|error| error.to_string())?;
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, text)
            .and_then(|()| std::fs::rename(&temporary, path))
            .map_err(|error| {
                format!(
                    "the state file {} cannot be written: {error}",
                    path.display()
                )
            })
    }

    /// The saved lease, if its signature still holds, with the time it has left at `now`.
    pub fn valid_lease(&self, now: DateTime<Utc>) -> Option<(Lease, std::time::Duration)> {
        let child_id = self.child_id?;
        let signed = self.signed_lease.as_ref()?;
        let lease = verify_lease(
            signed.as_bytes(),
            &self.keys,
            &Expectation {
                child_id,
                nonce: None,
                last_seq: 0,
                now,
            },
        )
        .ok()?;
        let local = self.expires_at_local?;
        let until = local.min(lease.valid_until);
        let remaining = (until - now).to_std().ok()?;
        (!remaining.is_zero()).then_some((lease, remaining))
    }
}

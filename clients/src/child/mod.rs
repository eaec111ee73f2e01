//! The child agent (`nodegrid child`): heartbeats to the mother, keeps the signed lease, and
//! answers the local application through its gate ([`gate`]) — may it serve, is this user
//! allowed, sign this user in — failing secure ([`machine`]) when the mother stays away.
//!
//! - [`options`]: flags and variables.
//! - [`machine`]: the state machine (STARTUP, ACTIVE, DEGRADED, MAINTENANCE, BLOCKED).
//! - [`mother`]: signed calls to the mother, its URLs in order.
//! - [`persist`]: the state file that survives restarts without extending the lease.
//! - [`control`]: the control socket: the mother's pushes, applied at once.
//! - [`state`]: what the heartbeat loop, the control socket and the gate share, and the
//!   transitions that log, count and save it.
//! - [`gate`]: the local HTTP API and its metrics.

pub mod control;
pub mod gate;
pub mod machine;
pub mod mother;
pub mod options;
pub mod persist;
pub mod state;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use nodegrid_protocol::children::lease::{
    Expectation, HeartbeatRequest, Lease, LeaseRejection, verify_lease,
};
use nodegrid_protocol::children::users::{BlockedUsersAnswer, verify_answer};
use rand::Rng;
use uuid::Uuid;

use self::machine::Machine;
use self::mother::{CallError, Mother};
pub use self::options::{ChildOptions, ChildSettings};
use self::persist::SavedState;
use self::state::{Shared, SharedState, read, transition, write};
use crate::device::backoff::Backoff;

/// Why a heartbeat produced no lease, by a bounded name.
#[derive(Debug)]
enum HeartbeatFailure {
    Call(CallError),
    Lease(LeaseRejection),
}

impl HeartbeatFailure {
    fn kind(&self) -> &'static str {
        match self {
            HeartbeatFailure::Call(error) => error.kind(),
            HeartbeatFailure::Lease(LeaseRejection::StaleSeq { .. }) => "stale_seq",
            HeartbeatFailure::Lease(LeaseRejection::NonceMismatch) => "nonce_mismatch",
            HeartbeatFailure::Lease(_) => "bad_lease",
        }
    }
}

impl std::fmt::Display for HeartbeatFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeartbeatFailure::Call(error) => write!(f, "{error}"),
            HeartbeatFailure::Lease(rejection) => write!(f, "the lease is refused: {rejection}"),
        }
    }
}

/// The agent: loads its state, serves the gate, heartbeats until the process ends.
pub async fn run(settings: ChildSettings) -> Result<(), String> {
    let saved = SavedState::load(&settings.state_file)?;
    let now = Instant::now();
    let machine = match saved.valid_lease(chrono::Utc::now()) {
        Some((lease, remaining)) => {
            tracing::info!(
                remaining_s = remaining.as_secs(),
                seq = lease.seq,
                "resuming with the saved lease"
            );
            Machine::restore(lease, remaining, saved.failures, now)
        }
        None => Machine::new(saved.last_seq),
    };
    tracing::info!(state = machine.state().as_str(), "child agent starting");
    let shared: SharedState = Arc::new(RwLock::new(Shared {
        machine,
        child_id: saved.child_id,
        keys: saved.keys.clone(),
        blocked_users: saved.blocked_users.iter().copied().collect(),
        blocked_users_version: saved.blocked_users_version,
        signed_lease: saved.signed_lease.clone(),
        expires_at_local: saved.expires_at_local,
        transitions: BTreeMap::new(),
        failures: BTreeMap::new(),
        sessions: BTreeMap::new(),
        control_connected: false,
    }));
    // TLS 1.3 only: what the licensing contract asks between child and mother.
    let tls = crate::tls::client_config(settings.ca_file.as_deref(), true)?;
    let mother = Arc::new(Mother::new(
        settings.mother_urls.clone(),
        settings.api_key.clone(),
        settings.request_timeout,
        Some(tls),
    )?);
    let server = gate::start(settings.gate_addr, shared.clone(), mother.clone())?;
    let server_handle = server.handle();
    actix_web::rt::spawn(server);
    tracing::info!(addr = %settings.gate_addr, "gate listening");
    let wake = Arc::new(tokio::sync::Notify::new());
    tokio::select! {
        () = heartbeat_loop(&settings, &shared, &mother, &wake) => {}
        () = control::control_loop(&settings, &shared, &mother, &wake) => {}
    }
    server_handle.stop(true).await;
    Ok(())
}

async fn heartbeat_loop(
    settings: &ChildSettings,
    shared: &SharedState,
    mother: &Mother,
    wake: &tokio::sync::Notify,
) {
    let started = Instant::now();
    let mut backoff = Backoff::new(Duration::from_secs(1), settings.interval);
    loop {
        let outcome = heartbeat_once(settings, shared, mother, started).await;
        let delay = match outcome {
            Ok((lease, text)) => {
                backoff.reset();
                let blocked_version = lease.blocked_users_version;
                transition(shared, settings, |state| {
                    let validity = (lease.valid_until - lease.issued_at)
                        .to_std()
                        .unwrap_or(Duration::ZERO);
                    state.child_id = Some(lease.child_id);
                    state.signed_lease = Some(text);
                    state.expires_at_local = chrono::Duration::from_std(validity)
                        .ok()
                        .map(|validity| chrono::Utc::now() + validity);
                    state.machine.on_lease(lease, Instant::now());
                });
                if blocked_version != read(shared).blocked_users_version {
                    refresh_blocked_users(settings, shared, mother).await;
                }
                jittered(settings.interval)
            }
            Err(failure) => {
                tracing::warn!(kind = failure.kind(), error = %failure, "heartbeat failed");
                transition(shared, settings, |state| {
                    *state.failures.entry(failure.kind()).or_default() += 1;
                    state.machine.on_failure(Instant::now());
                });
                backoff.next_delay().max(Duration::from_millis(200))
            }
        };
        // Sleep in short steps, so that a lease expiring meanwhile blocks on time; a push
        // wakes the loop for a heartbeat at once.
        let until = Instant::now() + delay;
        while Instant::now() < until {
            let step = (until - Instant::now()).min(Duration::from_millis(200));
            let woken = tokio::select! {
                () = tokio::time::sleep(step) => false,
                () = wake.notified() => true,
            };
            let expired = read(shared).machine.runs_out(Instant::now());
            if expired {
                transition(shared, settings, |state| {
                    state.machine.on_tick(Instant::now())
                });
            }
            if woken {
                break;
            }
        }
    }
}

fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(rand::rng().random_range(0.9..=1.1))
}

/// One heartbeat: the signed lease checked as the machine needs it, with its exact text.
async fn heartbeat_once(
    settings: &ChildSettings,
    shared: &SharedState,
    mother: &Mother,
    started: Instant,
) -> Result<(Lease, String), HeartbeatFailure> {
    let heartbeat_nonce = Uuid::new_v4().simple().to_string();
    let (last_seq, config_hash, users_active, child_id, state) = {
        let guard = read(shared);
        let now = chrono::Utc::now();
        (
            guard.machine.last_seq(),
            guard
                .machine
                .held()
                .map(|held| held.lease.config_hash.clone()),
            guard
                .sessions
                .values()
                .filter(|expiry| **expiry > now)
                .count(),
            guard.child_id,
            guard.machine.state(),
        )
    };
    let request = HeartbeatRequest {
        version: settings.version.clone(),
        uptime_s: started.elapsed().as_secs(),
        users_active: u32::try_from(users_active).unwrap_or(u32::MAX),
        config_hash,
        state: serde_json::json!({"gate": state.as_str()}),
        nonce: heartbeat_nonce.clone(),
        last_seq,
    };
    let body = serde_json::to_vec(&request).unwrap_or_default();
    let answer = mother
        .call(reqwest::Method::POST, "/api/child/heartbeat", Some(body))
        .await
        .map_err(HeartbeatFailure::Call)?;
    // The first lease names this child; every later one must name the same.
    let child_id = match child_id {
        Some(id) => id,
        None => serde_json::from_slice::<serde_json::Value>(&answer.body)
            .ok()
            .and_then(|body| body["lease"]["child_id"].as_str()?.parse().ok())
            .ok_or(HeartbeatFailure::Lease(LeaseRejection::Malformed))?,
    };
    let expectation = Expectation {
        child_id,
        nonce: Some(&heartbeat_nonce),
        last_seq,
        now: chrono::Utc::now(),
    };
    let keys = read(shared).keys.clone();
    let lease = match verify_lease(&answer.body, &keys, &expectation) {
        Err(LeaseRejection::UnknownKey(key_id)) => {
            // A key rotated (or a first start): fetch the keys once and check again.
            tracing::info!(%key_id, "fetching the mother's public keys");
            let keys = mother.public_keys().await.map_err(HeartbeatFailure::Call)?;
            let lease =
                verify_lease(&answer.body, &keys, &expectation).map_err(HeartbeatFailure::Lease)?;
            write(shared).keys = keys;
            lease
        }
        other => other.map_err(HeartbeatFailure::Lease)?,
    };
    let text = String::from_utf8(answer.body).unwrap_or_default();
    Ok((lease, text))
}

/// Fetches the client's blocked users when the lease says they changed.
async fn refresh_blocked_users(settings: &ChildSettings, shared: &SharedState, mother: &Mother) {
    let since = read(shared).blocked_users_version;
    let answer = match mother
        .call(
            reqwest::Method::GET,
            &format!("/api/child/blocked-users?since_version={since}"),
            None,
        )
        .await
    {
        Ok(answer) => answer,
        Err(error) => {
            tracing::warn!(%error, "cannot fetch the blocked users; retrying after the next heartbeat");
            return;
        }
    };
    let (keys, child_id) = {
        let guard = read(shared);
        (guard.keys.clone(), guard.child_id)
    };
    match verify_answer::<BlockedUsersAnswer>(&answer.body, &keys) {
        Ok(list) if Some(list.child_id) == child_id && list.nonce == answer.nonce => {
            tracing::info!(
                version = list.version,
                blocked = list.user_ids.len(),
                "blocked users updated"
            );
            transition(shared, settings, |state| {
                state.blocked_users_version = list.version;
                if !list.unchanged {
                    state.blocked_users = list.user_ids.into_iter().collect();
                }
            });
        }
        Ok(_) => tracing::warn!("a blocked-users answer for another child or request; ignored"),
        Err(rejection) => tracing::warn!(%rejection, "a blocked-users answer is refused"),
    }
}

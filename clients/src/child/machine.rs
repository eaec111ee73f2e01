//! The child's fail-secure state machine. Pure: it is told of leases, failures and the time,
//! and says what the child may do.
//!
//! ```text
//! STARTUP ──valid lease──▶ ACTIVE ◀──valid lease── DEGRADED
//!    │                      │  ▲                      ▲  │
//!    │ 3 failures            │  └─ lease: maintenance ─┘  │ 3 failed heartbeats (from ACTIVE)
//!    ▼                      ▼                            │
//! BLOCKED ◀── lease says blocked (any state) ── lease expired (ACTIVE, DEGRADED, MAINTENANCE)
//! ```
//!
//! BLOCKED is left only by a valid lease that says `active` (→ ACTIVE) or `maintenance`
//! (→ MAINTENANCE). A lease's validity is measured on the monotonic clock from when it was
//! accepted (its `valid_until - issued_at`, both on the mother's clock), so neither a skewed
//! nor a jumping wall clock moves it.

use std::time::{Duration, Instant};

use nodegrid_protocol::children::lease::{Lease, LeaseStatus};

/// Failed attempts after which STARTUP gives up and ACTIVE degrades (the seed's three).
pub const MAX_FAILURES: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GateState {
    Startup,
    Active,
    Degraded,
    Maintenance,
    Blocked,
}

impl GateState {
    pub const fn as_str(self) -> &'static str {
        match self {
            GateState::Startup => "STARTUP",
            GateState::Active => "ACTIVE",
            GateState::Degraded => "DEGRADED",
            GateState::Maintenance => "MAINTENANCE",
            GateState::Blocked => "BLOCKED",
        }
    }

    pub const ALL: [GateState; 5] = [
        GateState::Startup,
        GateState::Active,
        GateState::Degraded,
        GateState::Maintenance,
        GateState::Blocked,
    ];
}

/// Why the child is blocked without a lease saying so.
pub mod reasons {
    pub const MOTHER_UNREACHABLE: &str = "mother_unreachable";
    pub const LEASE_EXPIRED: &str = "lease_expired";
}

#[derive(Debug, Clone)]
pub struct HeldLease {
    pub lease: Lease,
    /// When it stops counting, on this process' monotonic clock.
    pub expires: Instant,
}

#[derive(Debug, Clone)]
pub struct Machine {
    state: GateState,
    reason: Option<String>,
    failures: u32,
    held: Option<HeldLease>,
    last_seq: u64,
}

impl Machine {
    /// A child with no valid lease.
    pub fn new(last_seq: u64) -> Machine {
        Machine {
            state: GateState::Startup,
            reason: None,
            failures: 0,
            held: None,
            last_seq,
        }
    }

    /// A child restarted with a lease that still has `remaining` to run: it resumes where it
    /// was (never in a fresh STARTUP grace).
    pub fn restore(lease: Lease, remaining: Duration, failures: u32, now: Instant) -> Machine {
        let last_seq = lease.seq;
        let mut machine = Machine::new(last_seq);
        machine.failures = failures;
        machine.apply_status(&lease);
        if machine.state == GateState::Active && failures >= MAX_FAILURES {
            machine.state = GateState::Degraded;
        }
        machine.held = Some(HeldLease {
            lease,
            expires: now + remaining,
        });
        machine
    }

    pub fn state(&self) -> GateState {
        self.state
    }

    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    pub fn held(&self) -> Option<&HeldLease> {
        self.held.as_ref()
    }

    /// The `seq` of the last lease accepted: a lease must be above it.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    fn apply_status(&mut self, lease: &Lease) {
        (self.state, self.reason) = match lease.status {
            LeaseStatus::Active => (GateState::Active, None),
            LeaseStatus::Maintenance => (GateState::Maintenance, lease.maintenance.message.clone()),
            LeaseStatus::Blocked => (GateState::Blocked, lease.reason.clone()),
        };
    }

    /// A lease that passed every check (signature, child, nonce, seq).
    pub fn on_lease(&mut self, lease: Lease, now: Instant) {
        let validity = (lease.valid_until - lease.issued_at)
            .to_std()
            .unwrap_or(Duration::ZERO);
        self.failures = 0;
        self.last_seq = self.last_seq.max(lease.seq);
        self.apply_status(&lease);
        self.held = Some(HeldLease {
            lease,
            expires: now + validity,
        });
    }

    /// A pushed maintenance change (signed, fresh): applied at once; the next lease confirms.
    pub fn on_maintenance(&mut self, enabled: bool, message: Option<String>, now: Instant) {
        match (enabled, self.state) {
            (true, GateState::Active | GateState::Degraded) => {
                self.state = GateState::Maintenance;
                self.reason = message;
            }
            (false, GateState::Maintenance) => {
                self.state = if self.failures >= MAX_FAILURES {
                    GateState::Degraded
                } else {
                    GateState::Active
                };
                self.reason = None;
            }
            _ => {}
        }
        self.on_tick(now);
    }

    /// A heartbeat that got no valid lease (network, timeout, 5xx, 429, a lease refused).
    pub fn on_failure(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        match self.state {
            GateState::Startup if self.failures >= MAX_FAILURES => {
                self.state = GateState::Blocked;
                self.reason = Some(reasons::MOTHER_UNREACHABLE.into());
            }
            GateState::Active | GateState::Maintenance if self.failures >= MAX_FAILURES => {
                self.state = GateState::Degraded;
            }
            _ => {}
        }
        self.on_tick(now);
    }

    /// Whether [`Self::on_tick`] at `now` would block: a serving state whose lease ran out.
    pub fn runs_out(&self, now: Instant) -> bool {
        matches!(
            self.state,
            GateState::Active | GateState::Degraded | GateState::Maintenance
        ) && self.held.as_ref().is_none_or(|held| now >= held.expires)
    }

    /// The time passes: an expired lease blocks.
    pub fn on_tick(&mut self, now: Instant) {
        if self.runs_out(now) {
            self.state = GateState::Blocked;
            self.reason = Some(reasons::LEASE_EXPIRED.into());
        }
    }

    /// How long the held lease still runs.
    pub fn remaining(&self, now: Instant) -> Option<Duration> {
        self.held
            .as_ref()
            .map(|held| held.expires.saturating_duration_since(now))
            .filter(|remaining| !remaining.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use nodegrid_protocol::children::admin::{Maintenance, PlanLimits, SubscriptionStatus};
    use nodegrid_protocol::children::lease::{License, VersionStatus};

    fn lease(seq: u64, status: LeaseStatus, ttl_secs: i64) -> Lease {
        let now = Utc::now();
        Lease {
            child_id: uuid::Uuid::nil(),
            seq,
            issued_at: now,
            valid_until: now + chrono::Duration::seconds(ttl_secs),
            nonce: String::new(),
            status,
            reason: (status == LeaseStatus::Blocked).then(|| "subscription_cancelled".into()),
            version_status: VersionStatus::Ok,
            min_version: None,
            latest_version: None,
            maintenance: Maintenance::default(),
            license: License {
                plan: "p".into(),
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
            key_id: String::new(),
            heartbeat_interval_s: 30,
        }
    }

    #[test]
    fn startup_blocks_after_three_failures_and_a_lease_activates() {
        let now = Instant::now();
        let mut machine = Machine::new(0);
        machine.on_failure(now);
        machine.on_failure(now);
        assert_eq!(machine.state(), GateState::Startup);
        machine.on_failure(now);
        assert_eq!(machine.state(), GateState::Blocked);
        assert_eq!(machine.reason(), Some(reasons::MOTHER_UNREACHABLE));
        machine.on_lease(lease(1, LeaseStatus::Active, 300), now);
        assert_eq!(machine.state(), GateState::Active);
    }

    #[test]
    fn active_degrades_after_three_failures_then_blocks_when_the_lease_runs_out() {
        let start = Instant::now();
        let mut machine = Machine::new(0);
        machine.on_lease(lease(1, LeaseStatus::Active, 300), start);
        for _ in 0..3 {
            machine.on_failure(start + Duration::from_secs(10));
        }
        assert_eq!(machine.state(), GateState::Degraded);
        machine.on_tick(start + Duration::from_secs(299));
        assert_eq!(machine.state(), GateState::Degraded);
        machine.on_tick(start + Duration::from_secs(300));
        assert_eq!(machine.state(), GateState::Blocked);
        assert_eq!(machine.reason(), Some(reasons::LEASE_EXPIRED));
        // Only a valid lease leaves BLOCKED.
        machine.on_failure(start + Duration::from_secs(301));
        assert_eq!(machine.state(), GateState::Blocked);
        machine.on_lease(
            lease(2, LeaseStatus::Maintenance, 300),
            start + Duration::from_secs(302),
        );
        assert_eq!(machine.state(), GateState::Maintenance);
    }

    #[test]
    fn a_lease_that_says_blocked_blocks_at_once() {
        let now = Instant::now();
        let mut machine = Machine::new(0);
        machine.on_lease(lease(1, LeaseStatus::Active, 300), now);
        machine.on_lease(lease(2, LeaseStatus::Blocked, 300), now);
        assert_eq!(machine.state(), GateState::Blocked);
        assert_eq!(machine.reason(), Some("subscription_cancelled"));
        assert_eq!(machine.last_seq(), 2);
    }

    #[test]
    fn a_pushed_maintenance_applies_at_once_but_never_lifts_a_block() {
        let now = Instant::now();
        let mut machine = Machine::new(0);
        machine.on_lease(lease(1, LeaseStatus::Active, 300), now);
        machine.on_maintenance(true, Some("soon back".into()), now);
        assert_eq!(machine.state(), GateState::Maintenance);
        assert_eq!(machine.reason(), Some("soon back"));
        machine.on_maintenance(false, None, now);
        assert_eq!(machine.state(), GateState::Active);
        machine.on_lease(lease(2, LeaseStatus::Blocked, 300), now);
        machine.on_maintenance(false, None, now);
        assert_eq!(machine.state(), GateState::Blocked);
    }

    #[test]
    fn a_restart_resumes_with_what_is_left_of_the_lease() {
        let now = Instant::now();
        let restored = Machine::restore(
            lease(7, LeaseStatus::Active, 300),
            Duration::from_secs(5),
            3,
            now,
        );
        assert_eq!(restored.state(), GateState::Degraded);
        assert_eq!(restored.last_seq(), 7);
        let mut restored = restored;
        restored.on_tick(now + Duration::from_secs(5));
        assert_eq!(restored.state(), GateState::Blocked);
        let fresh = Machine::restore(
            lease(7, LeaseStatus::Active, 300),
            Duration::from_secs(5),
            0,
            now,
        );
        assert_eq!(fresh.state(), GateState::Active);
    }
}

//! What every instance holds in memory to answer a heartbeat without a read: which key is
//! which child, each client's terms and plan, maintenance and the version policy. Loaded at
//! start, kept current by control events (`children_changed`), reloaded after a Redis
//! reconnect.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use nodegrid_protocol::children::admin::{
    Maintenance, PlanLimits, SubscriptionStatus, VersionPolicy,
};
use nodegrid_protocol::children::lease::{LeaseStatus, License, VersionStatus, reasons};
use nodegrid_protocol::children::version;
use uuid::Uuid;

use super::keys::KeyedHash;

#[derive(Debug, Clone, PartialEq)]
pub struct ChildEntry {
    pub client_id: i64,
    pub key_hash: KeyedHash,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClientTerms {
    pub plan_id: i64,
    pub status: SubscriptionStatus,
    pub expires_at: Option<DateTime<Utc>>,
    pub config: Arc<serde_json::Value>,
    pub config_hash: String,
    /// Children not revoked, and user accounts.
    pub children: u32,
    pub users: u32,
    /// Raised whenever one of the client's users is blocked or unblocked.
    pub blocked_users_version: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlanTerms {
    pub name: String,
    pub limits: PlanLimits,
    pub features: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Catalogue {
    pub by_key: HashMap<KeyedHash, Uuid>,
    pub children: HashMap<Uuid, ChildEntry>,
    pub clients: HashMap<i64, ClientTerms>,
    pub plans: HashMap<i64, PlanTerms>,
    pub maintenance: Maintenance,
    pub versions: VersionPolicy,
}

/// Everything a lease says that does not depend on the heartbeat's write.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseTerms {
    pub client_id: i64,
    pub status: LeaseStatus,
    pub reason: Option<String>,
    pub version_status: VersionStatus,
    pub min_version: Option<String>,
    pub latest_version: Option<String>,
    pub maintenance: Maintenance,
    pub license: License,
    pub blocked_users_version: i64,
    pub config: Arc<serde_json::Value>,
    pub config_hash: String,
}

impl Catalogue {
    /// Replaces one child's entry (`None`: it is revoked or gone).
    pub fn put_child(&mut self, id: Uuid, entry: Option<ChildEntry>) {
        if let Some(old) = self.children.remove(&id) {
            self.by_key.remove(&old.key_hash);
        }
        if let Some(entry) = entry {
            self.by_key.insert(entry.key_hash, id);
            self.children.insert(id, entry);
        }
    }

    /// What the lease of `child_id`, running `child_version`, says at `now`; `None` for a child
    /// this instance does not know.
    pub fn terms(
        &self,
        child_id: Uuid,
        child_version: &str,
        now: DateTime<Utc>,
    ) -> Option<LeaseTerms> {
        let child = self.children.get(&child_id)?;
        let client = self.clients.get(&child.client_id)?;
        let plan = self.plans.get(&client.plan_id)?;
        let reason = if client.status == SubscriptionStatus::Cancelled {
            Some(reasons::SUBSCRIPTION_CANCELLED)
        } else if client.expires_at.is_some_and(|at| at <= now) {
            Some(reasons::SUBSCRIPTION_EXPIRED)
        } else if client.children > plan.limits.max_children {
            Some(reasons::CHILDREN_LIMIT_EXCEEDED)
        } else if client.users > plan.limits.max_users {
            Some(reasons::USERS_LIMIT_EXCEEDED)
        } else {
            None
        };
        let status = match reason {
            Some(_) => LeaseStatus::Blocked,
            None if self.maintenance.enabled => LeaseStatus::Maintenance,
            None => LeaseStatus::Active,
        };
        Some(LeaseTerms {
            client_id: child.client_id,
            status,
            reason: reason.map(str::to_owned),
            version_status: version_status(&self.versions, child_version),
            min_version: self.versions.min_version.clone(),
            latest_version: self.versions.latest_version.clone(),
            maintenance: self.maintenance.clone(),
            license: License {
                plan: plan.name.clone(),
                limits: plan.limits,
                features: plan.features.clone(),
                expires_at: client.expires_at,
                status: client.status,
            },
            blocked_users_version: client.blocked_users_version,
            config: client.config.clone(),
            config_hash: client.config_hash.clone(),
        })
    }
}

/// A child's version against the policy. A version that cannot be read is below any minimum.
pub fn version_status(policy: &VersionPolicy, child_version: &str) -> VersionStatus {
    let below = |bound: &Option<String>| {
        bound
            .as_deref()
            .and_then(version::parse)
            .is_some_and(|bound| {
                version::parse(child_version)
                    .is_none_or(|child| version::compare(&child, &bound).is_lt())
            })
    };
    if below(&policy.min_version) {
        VersionStatus::UpdateRequired
    } else if below(&policy.latest_version) {
        VersionStatus::UpdateAvailable
    } else {
        VersionStatus::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(status: SubscriptionStatus, children: u32) -> (Catalogue, Uuid) {
        let mut catalogue = Catalogue::default();
        let id = Uuid::from_u128(1);
        catalogue.put_child(
            id,
            Some(ChildEntry {
                client_id: 5,
                key_hash: [1; 32],
            }),
        );
        catalogue.clients.insert(
            5,
            ClientTerms {
                plan_id: 9,
                status,
                expires_at: None,
                config: Arc::new(serde_json::json!({})),
                config_hash: "h".into(),
                children,
                users: 0,
                blocked_users_version: 0,
            },
        );
        catalogue.plans.insert(
            9,
            PlanTerms {
                name: "basic".into(),
                limits: PlanLimits {
                    max_children: 2,
                    max_users: 10,
                },
                features: vec![],
            },
        );
        (catalogue, id)
    }

    #[test]
    fn a_lease_is_blocked_by_the_subscription_or_the_limits_before_maintenance() {
        let now = Utc::now();
        let (mut catalogue, id) = sample(SubscriptionStatus::Active, 2);
        assert_eq!(
            catalogue.terms(id, "1.0", now).unwrap().status,
            LeaseStatus::Active
        );
        catalogue.maintenance.enabled = true;
        assert_eq!(
            catalogue.terms(id, "1.0", now).unwrap().status,
            LeaseStatus::Maintenance
        );
        catalogue.clients.get_mut(&5).unwrap().children = 3;
        let terms = catalogue.terms(id, "1.0", now).unwrap();
        assert_eq!(terms.status, LeaseStatus::Blocked);
        assert_eq!(
            terms.reason.as_deref(),
            Some(reasons::CHILDREN_LIMIT_EXCEEDED)
        );
        let (mut cancelled, id) = sample(SubscriptionStatus::Cancelled, 1);
        assert_eq!(
            cancelled.terms(id, "1.0", now).unwrap().reason.as_deref(),
            Some(reasons::SUBSCRIPTION_CANCELLED)
        );
        cancelled.clients.get_mut(&5).unwrap().status = SubscriptionStatus::PastDue;
        cancelled.clients.get_mut(&5).unwrap().expires_at =
            Some(now - chrono::Duration::seconds(1));
        assert_eq!(
            cancelled.terms(id, "1.0", now).unwrap().reason.as_deref(),
            Some(reasons::SUBSCRIPTION_EXPIRED)
        );
        cancelled.put_child(id, None);
        assert!(cancelled.terms(id, "1.0", now).is_none());
        assert!(cancelled.by_key.is_empty());
    }

    #[test]
    fn versions_below_the_minimum_must_update() {
        let policy = VersionPolicy {
            min_version: Some("1.2.0".into()),
            latest_version: Some("1.4.0".into()),
        };
        assert_eq!(
            version_status(&policy, "1.1.9"),
            VersionStatus::UpdateRequired
        );
        assert_eq!(
            version_status(&policy, "garbage"),
            VersionStatus::UpdateRequired
        );
        assert_eq!(
            version_status(&policy, "1.3"),
            VersionStatus::UpdateAvailable
        );
        assert_eq!(version_status(&policy, "1.4.0"), VersionStatus::Ok);
        assert_eq!(
            version_status(&VersionPolicy::default(), "x"),
            VersionStatus::Ok
        );
    }
}

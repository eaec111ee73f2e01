//! Late and offline marking, by the mother's clock (Postgres' `now()`), with the disruption
//! guard: when a large share of the heartbeating children fall silent in one sweep, the mother
//! is more likely cut off than they are all down, so nothing is marked until heartbeats return.

use std::collections::HashMap;

use nodegrid_protocol::children::admin::ChildLiveness;
use serde_json::json;

use super::{
    CHILD_DISRUPTION_GUARD, CHILD_LIVENESS_CHANGES_TOTAL, CHILDREN_GAUGE, Children, ChildrenError,
};
use crate::identity::store::{AuditRecord, insert_audit};
use crate::webhooks::{OutgoingEvent, enqueue};

/// What one sweep saw and did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SweepOutcome {
    /// Children expected to heartbeat (online or late), and those of them silent past the
    /// late threshold while still online.
    pub population: u64,
    pub newly_silent: u64,
    pub became_late: u64,
    pub became_offline: u64,
    /// Whether the guard holds marking back after this sweep.
    pub guard_engaged: bool,
    /// The mother's clock at the sweep.
    pub swept_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Children whose liveness changed since the `since` asked (all of them without one),
    /// for the node registry.
    pub changed: Vec<(uuid::Uuid, ChildLiveness)>,
}

/// The settings key of the mother's clock up to which children's liveness reached the node
/// registry: a new leader goes on from there instead of reporting every child again.
const REGISTRY_CHECKPOINT_SETTING: &str = "children.registry_reported_until";

/// Whether `newly_silent` of `population` looks like the mother being cut off.
pub fn disruption(newly_silent: u64, population: u64, share: f64, min_population: u32) -> bool {
    population >= u64::from(min_population)
        && population > 0
        && (newly_silent as f64) > share * (population as f64)
}

impl Children {
    /// Up to when (the mother's clock) the children's liveness is in the node registry, as the
    /// last leader recorded it; `None` before any report.
    pub async fn registry_checkpoint(
        &self,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, ChildrenError> {
        let client = self.database.client().await?;
        let value = super::store::setting(&client, REGISTRY_CHECKPOINT_SETTING).await?;
        // Unreadable counts as none: the next report covers every child.
        Ok(value.and_then(|value| serde_json::from_value(value).ok()))
    }

    /// Records that the liveness changes up to `at` are in the node registry.
    pub async fn save_registry_checkpoint(
        &self,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), ChildrenError> {
        let client = self.database.client().await?;
        super::store::put_setting(&client, REGISTRY_CHECKPOINT_SETTING, &json!(at)).await?;
        Ok(())
    }

    /// One sweep. `guard_engaged` is the guard's state after the previous sweep (the leader
    /// keeps it); the outcome carries the new one, and the children whose liveness changed
    /// since `since` (every child when `None`).
    pub async fn sweep(
        &self,
        guard_engaged: bool,
        since: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<SweepOutcome, ChildrenError> {
        let late_ms = self.settings.late_after().as_secs_f64() * 1000.0;
        let offline_ms = self.settings.offline_after().as_secs_f64() * 1000.0;
        let mut client = self.database.client().await?;
        let transaction = client.transaction().await?;
        let counts = transaction
            .query_one(
                "SELECT now(), count(*) FILTER (WHERE liveness IN ('online', 'late')),
                        count(*) FILTER (WHERE liveness = 'online'
                            AND last_heartbeat_at < now() - $1 * interval '1 millisecond')
                 FROM children WHERE revoked_at IS NULL",
                &[&late_ms],
            )
            .await?;
        // The transaction's clock: the same in every statement of it.
        let swept_at: chrono::DateTime<chrono::Utc> = counts.get(0);
        let population = u64::try_from(counts.get::<_, i64>(1)).unwrap_or(0);
        let newly_silent = u64::try_from(counts.get::<_, i64>(2)).unwrap_or(0);
        let engaged = disruption(
            newly_silent,
            population,
            self.settings.disruption_share,
            self.settings.disruption_min_population,
        );
        let mut outcome = SweepOutcome {
            population,
            newly_silent,
            guard_engaged: engaged,
            ..SweepOutcome::default()
        };
        if engaged != guard_engaged {
            let action = if engaged {
                "child.disruption_guard_engaged"
            } else {
                "child.disruption_guard_released"
            };
            insert_audit(
                &transaction,
                &AuditRecord {
                    actor_id: None,
                    actor: None,
                    action,
                    target: None,
                    source_ip: None,
                    details: json!({"population": population, "newly_silent": newly_silent}),
                },
            )
            .await?;
            if engaged {
                tracing::warn!(
                    population,
                    newly_silent,
                    "most children fell silent at once: the mother assumes it is cut off and marks none late or offline until heartbeats return"
                );
            } else {
                tracing::info!(
                    population,
                    newly_silent,
                    "children heartbeat again: late and offline marking resumes"
                );
            }
        }
        metrics::gauge!(CHILD_DISRUPTION_GUARD).set(if engaged { 1.0 } else { 0.0 });
        if !engaged {
            let rows = transaction
                .query(
                    "WITH changed AS (
                         UPDATE children SET
                             liveness = CASE WHEN last_heartbeat_at
                                 < now() - $2 * interval '1 millisecond'
                                 THEN 'offline' ELSE 'late' END,
                             liveness_changed_at = now()
                         WHERE revoked_at IS NULL
                           AND liveness IN ('online', 'late')
                           AND last_heartbeat_at < now() - $1 * interval '1 millisecond'
                           AND (liveness = 'online'
                                OR last_heartbeat_at < now() - $2 * interval '1 millisecond')
                         RETURNING id, client_id, name, liveness, last_heartbeat_at
                     ), audited AS (
                         INSERT INTO audit_log (action, target, details)
                         SELECT 'child.' || liveness, 'child:' || id,
                                jsonb_build_object('client_id', client_id,
                                                   'last_heartbeat_at', last_heartbeat_at)
                         FROM changed
                     )
                     SELECT id, client_id, name, liveness, last_heartbeat_at FROM changed",
                    &[&late_ms, &offline_ms],
                )
                .await?;
            let mut events = Vec::with_capacity(rows.len());
            for row in &rows {
                let liveness: String = row.get(3);
                let (event_type, counter) = if liveness == "offline" {
                    outcome.became_offline += 1;
                    ("child.offline", "offline")
                } else {
                    outcome.became_late += 1;
                    ("child.late", "late")
                };
                metrics::counter!(CHILD_LIVENESS_CHANGES_TOTAL, "to" => counter).increment(1);
                events.push(OutgoingEvent {
                    event_type,
                    data: json!({
                        "child_id": row.get::<_, uuid::Uuid>(0),
                        "client_id": row.get::<_, i64>(1),
                        "name": row.get::<_, String>(2),
                        "last_heartbeat_at": row.get::<_, Option<chrono::DateTime<chrono::Utc>>>(4),
                    }),
                });
            }
            enqueue(&transaction, &events).await?;
        }
        let changed_rows = transaction
            .query(
                "SELECT id, liveness FROM children
                 WHERE $1::timestamptz IS NULL OR liveness_changed_at >= $1",
                &[&since],
            )
            .await?;
        outcome.changed = changed_rows
            .iter()
            .filter_map(|row| {
                let liveness: String = row.get(1);
                Some((row.get(0), ChildLiveness::parse(&liveness)?))
            })
            .collect();
        outcome.swept_at = Some(swept_at);
        let by_liveness = transaction
            .query(
                "SELECT liveness, count(*) FROM children GROUP BY liveness",
                &[],
            )
            .await?;
        transaction.commit().await?;
        let mut gauges: HashMap<&'static str, f64> = [
            ChildLiveness::New,
            ChildLiveness::Online,
            ChildLiveness::Late,
            ChildLiveness::Offline,
            ChildLiveness::Revoked,
        ]
        .into_iter()
        .map(|liveness| (liveness.as_str(), 0.0))
        .collect();
        for row in &by_liveness {
            let liveness: String = row.get(0);
            if let Some(known) = ChildLiveness::parse(&liveness) {
                gauges.insert(known.as_str(), row.get::<_, i64>(1) as f64);
            }
        }
        for (liveness, count) in gauges {
            metrics::gauge!(CHILDREN_GAUGE, "liveness" => liveness).set(count);
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_needs_a_population_and_a_majority() {
        assert!(!disruption(5, 5, 0.5, 10));
        assert!(disruption(6, 10, 0.5, 10));
        assert!(!disruption(5, 10, 0.5, 10));
        assert!(!disruption(0, 0, 0.5, 0));
    }
}

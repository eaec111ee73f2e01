//! What applies to each producer's stream: the deployment's defaults (history length and age,
//! stored data), overridden per producer by an admin.
//!
//! Every instance keeps the overrides in memory, so the publish path looks its policy up
//! without a query. A change is written to Postgres with its audit entry in one transaction,
//! then announced on the control channel (the event carries the new values).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use deadpool_postgres::GenericClient;
use futures_util::future::BoxFuture;
use nodegrid_protocol::auth::Role;
use nodegrid_protocol::control::{ControlEnvelope, ControlEvent};
use nodegrid_protocol::stream::{ProducerSettingsRequest, StreamPolicy};

use crate::bus::RedisBus;
use crate::db::{Database, DbError};
use crate::identity::store::{AuditRecord, insert_audit};
use crate::shared_state::SharedState;

/// Largest history an admin may give one producer.
pub const MAX_HISTORY_MESSAGES: u32 = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("no producer {0}")]
    ProducerNotFound(i64),
    #[error("{0}")]
    Invalid(String),
    // Not `transparent`: the dependency error stays in the chain, where the HTTP boundary
    // looks for it to answer 503 when Postgres or Redis is away.
    #[error("{0}")]
    Database(#[from] DbError),
}

impl From<tokio_postgres::Error> for PolicyError {
    fn from(error: tokio_postgres::Error) -> Self {
        PolicyError::Database(error.into())
    }
}

#[derive(Clone)]
pub struct ProducerPolicies {
    database: Database,
    bus: RedisBus,
    instance_id: uuid::Uuid,
    defaults: StreamPolicy,
    overrides: Arc<RwLock<HashMap<i64, ProducerSettingsRequest>>>,
}

impl ProducerPolicies {
    pub fn new(
        database: Database,
        bus: RedisBus,
        instance_id: uuid::Uuid,
        defaults: StreamPolicy,
    ) -> ProducerPolicies {
        ProducerPolicies {
            database,
            bus,
            instance_id,
            defaults,
            overrides: Arc::default(),
        }
    }

    pub fn defaults(&self) -> StreamPolicy {
        self.defaults
    }

    /// The producer's overrides. No IO.
    pub fn overrides(&self, producer_id: i64) -> ProducerSettingsRequest {
        self.read().get(&producer_id).copied().unwrap_or_default()
    }

    /// What applies to the producer's stream. No IO.
    pub fn policy(&self, producer_id: i64) -> StreamPolicy {
        let overrides = self.overrides(producer_id);
        StreamPolicy {
            history_messages: overrides
                .history_messages
                .unwrap_or(self.defaults.history_messages),
            history_age_secs: overrides
                .history_age_secs
                .unwrap_or(self.defaults.history_age_secs),
            store_data: overrides.store_data.unwrap_or(self.defaults.store_data),
        }
    }

    /// Sets the producer's overrides (replacing earlier ones), with its audit entry, and tells
    /// every instance.
    pub async fn set(
        &self,
        producer_id: i64,
        overrides: ProducerSettingsRequest,
        audit: AuditRecord,
    ) -> Result<StreamPolicy, PolicyError> {
        if overrides
            .history_messages
            .is_some_and(|messages| messages > MAX_HISTORY_MESSAGES)
        {
            return Err(PolicyError::Invalid(format!(
                "history_messages is at most {MAX_HISTORY_MESSAGES}"
            )));
        }
        if overrides.history_age_secs == Some(0) {
            return Err(PolicyError::Invalid(
                "history_age_secs must be at least 1".into(),
            ));
        }
        let history_age = overrides
            .history_age_secs
            .map(|secs| i64::try_from(secs).unwrap_or(i64::MAX));
        let history_messages = overrides.history_messages.map(i64::from);
        {
            let mut client = self.database.client().await?;
            let transaction = client.transaction().await?;
            let role = transaction
                .query_opt(
                    "SELECT role FROM users WHERE id = $1 FOR SHARE",
                    &[&producer_id],
                )
                .await?
                .map(|row| row.get::<_, String>(0));
            if role.as_deref() != Some(Role::Producer.as_str()) {
                return Err(PolicyError::ProducerNotFound(producer_id));
            }
            transaction
                .execute(
                    "INSERT INTO producer_settings \
                       (producer_id, history_messages, history_age_secs, store_data) \
                     VALUES ($1, $2::BIGINT::INTEGER, $3, $4) \
                     ON CONFLICT (producer_id) DO UPDATE SET \
                       history_messages = EXCLUDED.history_messages, \
                       history_age_secs = EXCLUDED.history_age_secs, \
                       store_data = EXCLUDED.store_data, updated_at = now()",
                    &[
                        &producer_id,
                        &history_messages,
                        &history_age,
                        &overrides.store_data,
                    ],
                )
                .await?;
            insert_audit(&transaction, &audit).await?;
            transaction.commit().await?;
        }
        let event = ControlEvent::ProducerSettingsChanged {
            producer_id,
            history_messages: overrides.history_messages,
            history_age_secs: overrides.history_age_secs,
            store_data: overrides.store_data,
        };
        self.apply(&event);
        let envelope = ControlEnvelope {
            origin: self.instance_id,
            event,
        };
        if let Err(error) = self.bus.publish_control(&envelope).await {
            tracing::warn!(%error, producer_id, "cannot announce the producer's settings; other instances load them within a minute");
        }
        Ok(self.policy(producer_id))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<i64, ProducerSettingsRequest>> {
        self.overrides
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn replace(&self, producer_id: i64, overrides: ProducerSettingsRequest) {
        let mut map = self
            .overrides
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if overrides == ProducerSettingsRequest::default() {
            map.remove(&producer_id);
        } else {
            map.insert(producer_id, overrides);
        }
    }
}

impl SharedState for ProducerPolicies {
    fn name(&self) -> &'static str {
        "producer policies"
    }

    fn apply(&self, event: &ControlEvent) {
        if let ControlEvent::ProducerSettingsChanged {
            producer_id,
            history_messages,
            history_age_secs,
            store_data,
        } = event
        {
            self.replace(
                *producer_id,
                ProducerSettingsRequest {
                    history_messages: *history_messages,
                    history_age_secs: *history_age_secs,
                    store_data: *store_data,
                },
            );
        }
    }

    fn reload(&self) -> BoxFuture<'static, Result<usize, DbError>> {
        let policies = self.clone();
        Box::pin(async move {
            let rows = {
                let client = policies.database.client().await?;
                client
                    .query(
                        "SELECT producer_id, history_messages, history_age_secs, store_data \
                         FROM producer_settings WHERE history_messages IS NOT NULL \
                         OR history_age_secs IS NOT NULL OR store_data IS NOT NULL",
                        &[],
                    )
                    .await?
            };
            let fresh: HashMap<i64, ProducerSettingsRequest> = rows
                .iter()
                .map(|row| {
                    let messages: Option<i32> = row.get(1);
                    let age: Option<i64> = row.get(2);
                    (
                        row.get(0),
                        ProducerSettingsRequest {
                            history_messages: messages.and_then(|m| u32::try_from(m).ok()),
                            history_age_secs: age.and_then(|a| u64::try_from(a).ok()),
                            store_data: row.get(3),
                        },
                    )
                })
                .collect();
            let count = fresh.len();
            *policies
                .overrides
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
            Ok(count)
        })
    }
}

//! Durable subscriptions (Postgres) and every instance's in-memory index of them.
//!
//! The index answers "how many subscribe to producer P" (the ack's `subscriberCount`) and
//! "which producers does consumer C receive" without a query. Writes go to Postgres first, then
//! a `SubscriptionChanged` event tells every instance; the index is a set of pairs, so applying
//! an event twice changes nothing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use futures_util::future::BoxFuture;
use nodegrid_protocol::auth::Role;
use nodegrid_protocol::control::{ControlEnvelope, ControlEvent};
use nodegrid_protocol::stream::{SubscribersResponse, SubscriptionParty, SubscriptionsResponse};

use crate::bus::{BusError, RedisBus};
use crate::db::{Database, DbError};
use crate::shared_state::SharedState;

#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    #[error("no producer {0}")]
    ProducerNotFound(i64),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(String),
    // Not `transparent`: the dependency error stays in the chain, where the HTTP boundary
    // looks for it to answer 503 when Postgres or Redis is away.
    #[error("{0}")]
    Database(#[from] DbError),
    // Not `transparent`: the dependency error stays in the chain, where the HTTP boundary
    // looks for it to answer 503 when Postgres or Redis is away.
    #[error("{0}")]
    Bus(#[from] BusError),
}

impl From<tokio_postgres::Error> for SubscriptionError {
    fn from(error: tokio_postgres::Error) -> Self {
        SubscriptionError::Database(error.into())
    }
}

/// Producer → its subscribed consumers, in memory.
#[derive(Debug, Default)]
struct Index {
    by_producer: HashMap<i64, HashSet<i64>>,
}

#[derive(Clone)]
pub struct Subscriptions {
    database: Database,
    bus: RedisBus,
    instance_id: uuid::Uuid,
    index: Arc<RwLock<Index>>,
}

impl Subscriptions {
    pub fn new(database: Database, bus: RedisBus, instance_id: uuid::Uuid) -> Subscriptions {
        Subscriptions {
            database,
            bus,
            instance_id,
            index: Arc::default(),
        }
    }

    /// Active subscriptions to `producer_id`, on every instance. No IO.
    pub fn subscriber_count(&self, producer_id: i64) -> u64 {
        let index = self
            .index
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        index
            .by_producer
            .get(&producer_id)
            .map_or(0, |consumers| consumers.len() as u64)
    }

    /// Whether `consumer_id` subscribes to `producer_id`. No IO.
    pub fn is_subscribed(&self, consumer_id: i64, producer_id: i64) -> bool {
        let index = self
            .index
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        index
            .by_producer
            .get(&producer_id)
            .is_some_and(|consumers| consumers.contains(&consumer_id))
    }

    /// The producers `consumer_id` subscribes to, from Postgres (once per consumer socket).
    pub async fn producers_of(&self, consumer_id: i64) -> Result<Vec<i64>, SubscriptionError> {
        let client = self.database.client().await?;
        let rows = client
            .query(
                "SELECT producer_id FROM subscriptions WHERE consumer_id = $1",
                &[&consumer_id],
            )
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// Subscribes; returns whether the subscription is new. The producer must exist, and when
    /// its stream is private the consumer must be allowed (see [`super::access`]).
    pub async fn subscribe(
        &self,
        consumer_id: i64,
        producer_id: i64,
    ) -> Result<bool, SubscriptionError> {
        let inserted = {
            let mut client = self.database.client().await?;
            let transaction = client.transaction().await?;
            // A share lock on the producer's row: a change of its access waits for this.
            let row = transaction
                .query_opt(
                    "SELECT u.role, coalesce(s.private, false), EXISTS (SELECT 1 FROM \
                     producer_allowed_consumers a WHERE a.producer_id = u.id AND a.consumer_id = $2) \
                     FROM users u LEFT JOIN producer_settings s ON s.producer_id = u.id \
                     WHERE u.id = $1 FOR SHARE OF u",
                    &[&producer_id, &consumer_id],
                )
                .await?;
            let Some(row) = row.filter(|row| row.get::<_, String>(0) == Role::Producer.as_str())
            else {
                return Err(SubscriptionError::ProducerNotFound(producer_id));
            };
            let (private, allowed): (bool, bool) = (row.get(1), row.get(2));
            if private && !allowed {
                return Err(SubscriptionError::Forbidden(
                    "this producer's stream is private, and this consumer is not allowed",
                ));
            }
            let inserted = transaction
                .execute(
                    "INSERT INTO subscriptions (consumer_id, producer_id) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING",
                    &[&consumer_id, &producer_id],
                )
                .await?;
            transaction.commit().await?;
            inserted
        };
        // The pooled connection is back before the Redis round trip.
        self.announce(consumer_id, producer_id, true).await;
        Ok(inserted == 1)
    }

    /// Unsubscribes; returns whether a subscription was removed.
    pub async fn unsubscribe(
        &self,
        consumer_id: i64,
        producer_id: i64,
    ) -> Result<bool, SubscriptionError> {
        let removed = {
            let client = self.database.client().await?;
            client
                .execute(
                    "DELETE FROM subscriptions WHERE consumer_id = $1 AND producer_id = $2",
                    &[&consumer_id, &producer_id],
                )
                .await?
        };
        self.announce(consumer_id, producer_id, false).await;
        Ok(removed == 1)
    }

    pub async fn list_for_consumer(
        &self,
        consumer_id: i64,
    ) -> Result<SubscriptionsResponse, SubscriptionError> {
        let client = self.database.client().await?;
        let rows = client
            .query(
                "SELECT s.producer_id, u.username, s.created_at FROM subscriptions s \
                 JOIN users u ON u.id = s.producer_id WHERE s.consumer_id = $1 \
                 ORDER BY s.created_at, s.producer_id",
                &[&consumer_id],
            )
            .await?;
        Ok(SubscriptionsResponse {
            consumer_id,
            producers: rows.iter().map(party).collect(),
        })
    }

    pub async fn list_for_producer(
        &self,
        producer_id: i64,
    ) -> Result<SubscribersResponse, SubscriptionError> {
        let client = self.database.client().await?;
        ensure_producer(&client, producer_id).await?;
        let rows = client
            .query(
                "SELECT s.consumer_id, u.username, s.created_at FROM subscriptions s \
                 JOIN users u ON u.id = s.consumer_id WHERE s.producer_id = $1 \
                 ORDER BY s.created_at, s.consumer_id",
                &[&producer_id],
            )
            .await?;
        Ok(SubscribersResponse {
            producer_id,
            subscriber_count: rows.len() as u64,
            consumers: rows.iter().map(party).collect(),
        })
    }

    /// Changes this instance's index at once, then tells every instance (this one included;
    /// applying twice is harmless).
    pub(crate) async fn announce(&self, consumer_id: i64, producer_id: i64, active: bool) {
        let event = ControlEvent::SubscriptionChanged {
            consumer_id,
            producer_id,
            active,
        };
        self.apply(&event);
        let envelope = ControlEnvelope {
            origin: self.instance_id,
            event,
        };
        if let Err(error) = self.bus.publish_control(&envelope).await {
            tracing::warn!(%error, consumer_id, producer_id, "could not publish a subscription change; instances will reload it");
        }
    }
}

impl SharedState for Subscriptions {
    fn name(&self) -> &'static str {
        "subscriptions"
    }

    fn apply(&self, event: &ControlEvent) {
        let ControlEvent::SubscriptionChanged {
            consumer_id,
            producer_id,
            active,
        } = *event
        else {
            return;
        };
        let mut index = self
            .index
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if active {
            index
                .by_producer
                .entry(producer_id)
                .or_default()
                .insert(consumer_id);
        } else if let Some(consumers) = index.by_producer.get_mut(&producer_id) {
            consumers.remove(&consumer_id);
            if consumers.is_empty() {
                index.by_producer.remove(&producer_id);
            }
        }
    }

    fn reload(&self) -> BoxFuture<'static, Result<usize, DbError>> {
        let this = self.clone();
        Box::pin(async move {
            let client = this.database.client().await?;
            let rows = client
                .query("SELECT producer_id, consumer_id FROM subscriptions", &[])
                .await?;
            let mut fresh = Index::default();
            for row in &rows {
                fresh
                    .by_producer
                    .entry(row.get(0))
                    .or_default()
                    .insert(row.get(1));
            }
            let count = rows.len();
            *this
                .index
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
            Ok(count)
        })
    }
}

async fn ensure_producer(
    client: &impl GenericClient,
    producer_id: i64,
) -> Result<(), SubscriptionError> {
    let row = client
        .query_opt("SELECT role FROM users WHERE id = $1", &[&producer_id])
        .await?;
    match row.map(|row| row.get::<_, String>(0)) {
        Some(role) if role == Role::Producer.as_str() => Ok(()),
        _ => Err(SubscriptionError::ProducerNotFound(producer_id)),
    }
}

fn party(row: &tokio_postgres::Row) -> SubscriptionParty {
    let since: DateTime<Utc> = row.get(2);
    SubscriptionParty {
        user_id: row.get(0),
        username: row.get(1),
        since,
    }
}

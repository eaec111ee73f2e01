//! Who may receive a producer's stream: anyone (public, the default, as in Motience) or, when
//! the producer made it private, only the consumers the producer or an admin allowed.
//!
//! Every change locks the producer's `users` row, and a subscription takes a share lock on it,
//! so that a subscribe racing a change of access cannot leave a consumer subscribed that is no
//! longer allowed. Each change is written with its audit entry in one transaction.

use deadpool_postgres::GenericClient;
use nodegrid_protocol::auth::Role;
use nodegrid_protocol::stream::{AllowedConsumersResponse, SubscriptionParty};

use crate::db::Database;
use crate::identity::store::{AuditRecord, insert_audit};
use crate::streams::subscriptions::{SubscriptionError, Subscriptions};

#[derive(Clone)]
pub struct StreamAccess {
    database: Database,
    subscriptions: Subscriptions,
}

impl StreamAccess {
    pub fn new(database: Database, subscriptions: Subscriptions) -> StreamAccess {
        StreamAccess {
            database,
            subscriptions,
        }
    }

    /// Makes the producer's stream private or public. Going private ends the subscriptions of
    /// consumers that are not allowed (on every instance); returns their ids.
    pub async fn set_private(
        &self,
        producer_id: i64,
        private: bool,
        audit: AuditRecord,
    ) -> Result<Vec<i64>, SubscriptionError> {
        let removed = {
            let mut client = self.database.client().await?;
            let transaction = client.transaction().await?;
            lock_producer(&transaction, producer_id).await?;
            transaction
                .execute(
                    "INSERT INTO producer_settings (producer_id, private) VALUES ($1, $2) \
                     ON CONFLICT (producer_id) DO UPDATE SET private = $2, updated_at = now()",
                    &[&producer_id, &private],
                )
                .await?;
            let removed: Vec<i64> = if private {
                transaction
                    .query(
                        "DELETE FROM subscriptions s WHERE s.producer_id = $1 AND NOT EXISTS \
                         (SELECT 1 FROM producer_allowed_consumers a \
                          WHERE a.producer_id = s.producer_id AND a.consumer_id = s.consumer_id) \
                         RETURNING s.consumer_id",
                        &[&producer_id],
                    )
                    .await?
                    .iter()
                    .map(|row| row.get(0))
                    .collect()
            } else {
                Vec::new()
            };
            insert_audit(&transaction, &audit).await?;
            transaction.commit().await?;
            removed
        };
        for consumer_id in &removed {
            self.subscriptions
                .announce(*consumer_id, producer_id, false)
                .await;
        }
        Ok(removed)
    }

    /// Allows a consumer to receive the producer's stream while it is private; returns whether
    /// the allowance is new.
    pub async fn allow(
        &self,
        producer_id: i64,
        consumer_id: i64,
        audit: AuditRecord,
    ) -> Result<bool, SubscriptionError> {
        let mut client = self.database.client().await?;
        let transaction = client.transaction().await?;
        lock_producer(&transaction, producer_id).await?;
        let role = transaction
            .query_opt("SELECT role FROM users WHERE id = $1", &[&consumer_id])
            .await?
            .map(|row| row.get::<_, String>(0));
        if role.as_deref() != Some(Role::Consumer.as_str()) {
            return Err(SubscriptionError::NotFound(format!(
                "no consumer {consumer_id}"
            )));
        }
        let inserted = transaction
            .execute(
                "INSERT INTO producer_allowed_consumers (producer_id, consumer_id) \
                 VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&producer_id, &consumer_id],
            )
            .await?;
        insert_audit(&transaction, &audit).await?;
        transaction.commit().await?;
        Ok(inserted == 1)
    }

    /// Withdraws an allowance; when the stream is private, the consumer's subscription ends
    /// too. Returns whether there was an allowance.
    pub async fn disallow(
        &self,
        producer_id: i64,
        consumer_id: i64,
        audit: AuditRecord,
    ) -> Result<bool, SubscriptionError> {
        let (removed, unsubscribed) = {
            let mut client = self.database.client().await?;
            let transaction = client.transaction().await?;
            let private = lock_producer(&transaction, producer_id).await?;
            let removed = transaction
                .execute(
                    "DELETE FROM producer_allowed_consumers \
                     WHERE producer_id = $1 AND consumer_id = $2",
                    &[&producer_id, &consumer_id],
                )
                .await?;
            let unsubscribed = if private {
                transaction
                    .execute(
                        "DELETE FROM subscriptions WHERE producer_id = $1 AND consumer_id = $2",
                        &[&producer_id, &consumer_id],
                    )
                    .await?
            } else {
                0
            };
            insert_audit(&transaction, &audit).await?;
            transaction.commit().await?;
            (removed == 1, unsubscribed == 1)
        };
        if unsubscribed {
            self.subscriptions
                .announce(consumer_id, producer_id, false)
                .await;
        }
        Ok(removed)
    }

    /// Whether the stream is private, and the consumers allowed.
    pub async fn allowed(
        &self,
        producer_id: i64,
    ) -> Result<AllowedConsumersResponse, SubscriptionError> {
        let client = self.database.client().await?;
        let private = producer_privacy(&client, producer_id).await?;
        let rows = client
            .query(
                "SELECT a.consumer_id, u.username, a.created_at \
                 FROM producer_allowed_consumers a JOIN users u ON u.id = a.consumer_id \
                 WHERE a.producer_id = $1 ORDER BY a.created_at, a.consumer_id",
                &[&producer_id],
            )
            .await?;
        Ok(AllowedConsumersResponse {
            producer_id,
            private,
            consumers: rows
                .iter()
                .map(|row| SubscriptionParty {
                    user_id: row.get(0),
                    username: row.get(1),
                    since: row.get(2),
                })
                .collect(),
        })
    }
}

/// Locks the producer's row against concurrent subscriptions; returns whether its stream is
/// private. A missing producer is `ProducerNotFound`.
async fn lock_producer(
    client: &impl GenericClient,
    producer_id: i64,
) -> Result<bool, SubscriptionError> {
    let row = client
        .query_opt(
            "SELECT u.role, coalesce(s.private, false) FROM users u \
             LEFT JOIN producer_settings s ON s.producer_id = u.id \
             WHERE u.id = $1 FOR UPDATE OF u",
            &[&producer_id],
        )
        .await?;
    producer_row(row, producer_id)
}

async fn producer_privacy(
    client: &impl GenericClient,
    producer_id: i64,
) -> Result<bool, SubscriptionError> {
    let row = client
        .query_opt(
            "SELECT u.role, coalesce(s.private, false) FROM users u \
             LEFT JOIN producer_settings s ON s.producer_id = u.id WHERE u.id = $1",
            &[&producer_id],
        )
        .await?;
    producer_row(row, producer_id)
}

fn producer_row(
    row: Option<tokio_postgres::Row>,
    producer_id: i64,
) -> Result<bool, SubscriptionError> {
    match row {
        Some(row) if row.get::<_, String>(0) == Role::Producer.as_str() => Ok(row.get(1)),
        _ => Err(SubscriptionError::ProducerNotFound(producer_id)),
    }
}

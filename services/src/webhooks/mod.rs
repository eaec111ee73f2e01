//! Webhooks: admins register URLs for the events nodegrid emits (`pnode.*` from the pNode
//! cycle, `node.*` from the node registry); each event is written to a Postgres outbox in the
//! transaction that made it ([`enqueue`]), and the deliverer ([`delivery`]) sends it, signed,
//! retrying with growing delays for up to a day.
//!
//! The outbox is what makes delivery survive restarts: an event exists once its transaction
//! commits, and a delivery row stays `pending` until a 2xx answer or the retry window ends.

pub mod delivery;

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use nodegrid_protocol::webhooks::{
    CreateWebhookRequest, DeliveryStatus, DeliveryView, WebhookEvent, WebhookView, is_known_pattern,
};
use uuid::Uuid;

use crate::db::{Database, DbError};
use crate::identity::store::{AuditRecord, insert_audit};

/// Metric names.
pub const WEBHOOK_EVENTS_TOTAL: &str = "nodegrid_webhook_events_total";
pub const WEBHOOK_DELIVERIES_TOTAL: &str = "nodegrid_webhook_deliveries_total";
pub const WEBHOOK_DELIVERY_SECONDS: &str = "nodegrid_webhook_delivery_seconds";

const MAX_URL_CHARS: usize = 2_000;
const MIN_SECRET_CHARS: usize = 16;
const MAX_SECRET_CHARS: usize = 200;
const MAX_EVENT_PATTERNS: usize = 20;
const MAX_FILTER_BYTES: usize = 4_096;
/// Live webhooks a deployment may have: each costs a row per matching event.
const MAX_WEBHOOKS: i64 = 100;
/// Deliveries answered per page of `/deliveries`.
pub const MAX_DELIVERIES_PAGE: i64 = 500;

/// How webhooks are delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// Hosts a webhook may point at (lower-cased); `*` allows any. Loopback only by default:
    /// nothing leaves the machine until an operator says where it may go.
    pub allowed_hosts: Vec<String>,
    /// The first retry's delay; each further one doubles, up to an hour.
    pub retry_base: Duration,
    /// How long a delivery is retried before it is given up.
    pub retry_for: Duration,
    /// One attempt's time limit.
    pub timeout: Duration,
    /// Attempts in flight at once.
    pub concurrency: usize,
    /// Delivered and failed deliveries are kept this long.
    pub keep: Duration,
}

impl Default for WebhookSettings {
    fn default() -> WebhookSettings {
        WebhookSettings {
            allowed_hosts: vec!["127.0.0.1".into(), "localhost".into(), "[::1]".into()],
            retry_base: Duration::from_secs(10),
            retry_for: Duration::from_secs(86_400),
            timeout: Duration::from_secs(10),
            concurrency: 8,
            keep: Duration::from_secs(7 * 86_400),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    Validation(String),
    #[error("no webhook {0}")]
    NotFound(i64),
    // Not `transparent`: the dependency error stays in the chain, where the HTTP boundary
    // looks for it to answer 503 when Postgres or Redis is away.
    #[error("{0}")]
    Database(#[from] DbError),
}

impl From<tokio_postgres::Error> for WebhookError {
    fn from(error: tokio_postgres::Error) -> WebhookError {
        WebhookError::Database(DbError::from(error))
    }
}

/// An event to send to the webhooks that want it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingEvent {
    pub event_type: &'static str,
    pub data: serde_json::Value,
}

/// Writes `events` into the outbox, one delivery per webhook whose patterns select the event's
/// type and whose filters its data contains, in the caller's transaction (so the events exist
/// exactly when what made them does). Returns the deliveries written.
pub async fn enqueue(
    client: &impl GenericClient,
    events: &[OutgoingEvent],
) -> Result<u64, DbError> {
    if events.is_empty() {
        return Ok(0);
    }
    for event in events {
        metrics::counter!(WEBHOOK_EVENTS_TOTAL, "type" => event.event_type).increment(1);
    }
    // Most deployments have no webhook: then a cycle's thousands of events cost one query,
    // not their bodies' megabytes.
    let any_webhook: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM webhooks WHERE deleted_at IS NULL)",
            &[],
        )
        .await?
        .get(0);
    if !any_webhook {
        return Ok(0);
    }
    let now = Utc::now();
    let mut ids = Vec::with_capacity(events.len());
    let mut types = Vec::with_capacity(events.len());
    let mut bodies = Vec::with_capacity(events.len());
    for event in events {
        let body = WebhookEvent {
            id: Uuid::new_v4(),
            event_type: event.event_type.to_owned(),
            created_at: now,
            data: event.data.clone(),
        };
        ids.push(body.id);
        types.push(event.event_type);
        bodies.push(serde_json::to_string(&body).unwrap_or_default());
    }
    let written = client
        .execute(
            "INSERT INTO webhook_deliveries (webhook_id, event_id, event_type, body)
             SELECT w.id, e.id, e.type, e.body
             FROM unnest($1::uuid[], $2::text[], $3::text[]) AS e(id, type, body)
             JOIN webhooks w ON w.deleted_at IS NULL
              AND EXISTS (SELECT 1 FROM unnest(w.events) AS p(pattern)
                          WHERE p.pattern = '*' OR p.pattern = e.type
                             OR (p.pattern LIKE '%.*'
                                 AND starts_with(e.type, left(p.pattern, -1))))
              AND (e.body::jsonb -> 'data') @> w.filters",
            &[&ids, &types, &bodies],
        )
        .await?;
    Ok(written)
}

/// Registration, listing and the delivery log; the sending is [`delivery::Deliverer`]'s.
#[derive(Clone)]
pub struct Webhooks {
    database: Database,
    settings: WebhookSettings,
}

impl Webhooks {
    pub fn new(database: Database, settings: WebhookSettings) -> Webhooks {
        Webhooks { database, settings }
    }

    pub fn settings(&self) -> &WebhookSettings {
        &self.settings
    }

    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Checks a URL against the allowed schemes and hosts.
    pub fn check_url(&self, url: &str) -> Result<(), WebhookError> {
        if url.chars().count() > MAX_URL_CHARS {
            return Err(WebhookError::Validation(format!(
                "url is at most {MAX_URL_CHARS} characters"
            )));
        }
        let parsed = reqwest::Url::parse(url)
            .map_err(|error| WebhookError::Validation(format!("url is not a URL: {error}")))?;
        if parsed.scheme() != "http" {
            return Err(WebhookError::Validation(
                "url must be http:// (this build sends no TLS: put a TLS-terminating proxy \
                 in front of an https receiver)"
                    .into(),
            ));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(WebhookError::Validation(
                "url must not carry credentials: use the secret".into(),
            ));
        }
        let host = parsed
            .host_str()
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| WebhookError::Validation("url has no host".into()))?;
        let allowed = self
            .settings
            .allowed_hosts
            .iter()
            .any(|allowed| allowed == "*" || *allowed == host);
        if !allowed {
            return Err(WebhookError::Validation(format!(
                "webhooks may not point at {host}: the deployment allows {} \
                 (--webhook-allowed-hosts)",
                self.settings.allowed_hosts.join(", ")
            )));
        }
        Ok(())
    }

    /// Registers a webhook; the audit entry goes in the same transaction, without the secret.
    pub async fn create(
        &self,
        request: CreateWebhookRequest,
        created_by: i64,
        audit: AuditRecord,
    ) -> Result<WebhookView, WebhookError> {
        self.check_url(&request.url)?;
        let secret_chars = request.secret.chars().count();
        if !(MIN_SECRET_CHARS..=MAX_SECRET_CHARS).contains(&secret_chars) {
            return Err(WebhookError::Validation(format!(
                "secret must be {MIN_SECRET_CHARS} to {MAX_SECRET_CHARS} characters"
            )));
        }
        let mut events = request.events.clone();
        events.sort();
        events.dedup();
        if events.is_empty() || events.len() > MAX_EVENT_PATTERNS {
            return Err(WebhookError::Validation(format!(
                "events must name 1 to {MAX_EVENT_PATTERNS} event types"
            )));
        }
        if let Some(unknown) = events.iter().find(|pattern| !is_known_pattern(pattern)) {
            return Err(WebhookError::Validation(format!(
                "events: {unknown} is not an event type nodegrid emits (see \
                 nodegrid_protocol::webhooks::EVENT_TYPES; `family.*` and `*` select several)"
            )));
        }
        let filters = request
            .filters
            .unwrap_or_else(|| serde_json::Value::Object(serde_json::Map::new()));
        if nodegrid_protocol::registry::has_huge_number(&filters) {
            return Err(WebhookError::Validation(format!(
                "filters' numbers must be within ±{:e}",
                nodegrid_protocol::registry::MAX_METADATA_NUMBER
            )));
        }
        if !filters.is_object() {
            return Err(WebhookError::Validation(
                "filters must be a JSON object".into(),
            ));
        }
        if filters.to_string().len() > MAX_FILTER_BYTES {
            return Err(WebhookError::Validation(format!(
                "filters are at most {MAX_FILTER_BYTES} bytes of JSON"
            )));
        }
        let mut client = self.database.client().await?;
        let transaction = client.transaction().await?;
        // One registration at a time, so that the count below holds.
        transaction
            .execute("LOCK TABLE webhooks IN SHARE ROW EXCLUSIVE MODE", &[])
            .await?;
        let live: i64 = transaction
            .query_one(
                "SELECT count(*) FROM webhooks WHERE deleted_at IS NULL",
                &[],
            )
            .await?
            .get(0);
        if live >= MAX_WEBHOOKS {
            return Err(WebhookError::Validation(format!(
                "a deployment has at most {MAX_WEBHOOKS} webhooks: delete one first"
            )));
        }
        let row = transaction
            .query_one(
                "INSERT INTO webhooks (url, secret, events, filters, created_by)
                 VALUES ($1, $2, $3, $4, $5) RETURNING id, created_at",
                &[
                    &request.url,
                    &request.secret,
                    &events,
                    &filters,
                    &created_by,
                ],
            )
            .await?;
        let id: i64 = row.get(0);
        let mut audit = audit;
        audit.target = Some(format!("webhook:{id}"));
        insert_audit(&transaction, &audit).await?;
        transaction.commit().await?;
        Ok(WebhookView {
            id,
            url: request.url,
            events,
            filters,
            created_by: Some(created_by),
            created_at: row.get(1),
            pending: 0,
            failed: 0,
        })
    }

    /// Live webhooks, newest first, with their pending and failed counts.
    pub async fn list(&self) -> Result<Vec<WebhookView>, WebhookError> {
        self.views(None).await
    }

    pub async fn get(&self, id: i64) -> Result<WebhookView, WebhookError> {
        self.views(Some(id))
            .await?
            .pop()
            .ok_or(WebhookError::NotFound(id))
    }

    async fn views(&self, id: Option<i64>) -> Result<Vec<WebhookView>, WebhookError> {
        let client = self.database.client().await?;
        let rows = client
            .query(
                "SELECT w.id, w.url, w.events, w.filters, w.created_by, w.created_at,
                        count(d.id) FILTER (WHERE d.status = 'pending'),
                        count(d.id) FILTER (WHERE d.status = 'failed')
                 FROM webhooks w LEFT JOIN webhook_deliveries d ON d.webhook_id = w.id
                 WHERE w.deleted_at IS NULL AND ($1::int8 IS NULL OR w.id = $1)
                 GROUP BY w.id ORDER BY w.id DESC",
                &[&id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| WebhookView {
                id: row.get(0),
                url: row.get(1),
                events: row.get(2),
                filters: row.get(3),
                created_by: row.get(4),
                created_at: row.get(5),
                pending: row.get(6),
                failed: row.get(7),
            })
            .collect())
    }

    /// Deletes a webhook: nothing more is sent to it, and what was waiting is marked failed.
    pub async fn delete(&self, id: i64, audit: AuditRecord) -> Result<(), WebhookError> {
        let mut client = self.database.client().await?;
        let transaction = client.transaction().await?;
        let deleted = transaction
            .execute(
                "UPDATE webhooks SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL",
                &[&id],
            )
            .await?;
        if deleted == 0 {
            return Err(WebhookError::NotFound(id));
        }
        transaction
            .execute(
                "UPDATE webhook_deliveries SET status = 'failed', last_error = 'the webhook was deleted'
                 WHERE webhook_id = $1 AND status = 'pending'",
                &[&id],
            )
            .await?;
        insert_audit(&transaction, &audit).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// A webhook's deliveries, newest first: `before` (a delivery id) pages back.
    pub async fn deliveries(
        &self,
        id: i64,
        status: Option<DeliveryStatus>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<DeliveryView>, WebhookError> {
        let client = self.database.client().await?;
        let exists = client
            .query_opt("SELECT 1 FROM webhooks WHERE id = $1", &[&id])
            .await?;
        if exists.is_none() {
            return Err(WebhookError::NotFound(id));
        }
        let rows = client
            .query(
                "SELECT id, event_id, event_type, status, attempts, created_at, next_attempt_at,
                        delivered_at, last_status, last_error
                 FROM webhook_deliveries
                 WHERE webhook_id = $1 AND ($2::text IS NULL OR status = $2)
                   AND ($3::int8 IS NULL OR id < $3)
                 ORDER BY id DESC LIMIT $4",
                &[
                    &id,
                    &status.map(DeliveryStatus::as_str),
                    &before,
                    &limit.clamp(1, MAX_DELIVERIES_PAGE),
                ],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let status =
                    DeliveryStatus::parse(row.get::<_, &str>(3)).unwrap_or(DeliveryStatus::Pending);
                let next_attempt_at: DateTime<Utc> = row.get(6);
                DeliveryView {
                    id: row.get(0),
                    event_id: row.get(1),
                    event_type: row.get(2),
                    status,
                    attempts: row.get(4),
                    created_at: row.get(5),
                    next_attempt_at: (status == DeliveryStatus::Pending).then_some(next_attempt_at),
                    delivered_at: row.get(7),
                    last_status: row.get(8),
                    last_error: row.get(9),
                }
            })
            .collect())
    }
}

//! Webhooks: an admin registers a URL for some of the events nodegrid emits; each event is sent
//! as an HTTP POST whose body is signed with the webhook's secret.
//!
//! # Delivery
//!
//! The body is a JSON [`WebhookEvent`]. Three headers go with it:
//! - [`EVENT_HEADER`]: the event's type;
//! - [`DELIVERY_HEADER`]: the delivery's id (the same on every retry: receivers use it to
//!   drop repeats);
//! - [`SIGNATURE_HEADER`]: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with
//!   the secret>`, as Stripe signs. A receiver checks the MAC and refuses a `t` far from its
//!   clock, so that a captured request cannot be replayed later.
//!
//! A 2xx answer is a delivery; anything else, a timeout or a refused connection is retried
//! with growing delays until the retry window (a day by default) has passed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const EVENT_HEADER: &str = "Nodegrid-Event";
pub const DELIVERY_HEADER: &str = "Nodegrid-Delivery";
pub const SIGNATURE_HEADER: &str = "Nodegrid-Signature";

/// The event types nodegrid emits. A webhook names some of them, or a family (`pnode.*`), or
/// every one (`*`).
pub const EVENT_TYPES: [&str; 11] = [
    "pnode.online",
    "pnode.offline",
    "pnode.tier_changed",
    "pnode.alert_raised",
    "pnode.alert_cleared",
    "node.created",
    "node.updated",
    "node.deleted",
    "child.online",
    "child.late",
    "child.offline",
];

/// Whether `pattern` (an exact type, `family.*` or `*`) names a known event type.
pub fn is_known_pattern(pattern: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix(".*") {
        Some(family) => EVENT_TYPES
            .iter()
            .any(|known| known.split_once('.').is_some_and(|(f, _)| f == family)),
        None => EVENT_TYPES.contains(&pattern),
    }
}

/// Whether `pattern` selects `event_type`.
pub fn pattern_matches(pattern: &str, event_type: &str) -> bool {
    pattern == "*"
        || pattern == event_type
        || pattern
            .strip_suffix('*')
            .is_some_and(|prefix| prefix.ends_with('.') && event_type.starts_with(prefix))
}

/// The body of every delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookEvent {
    /// The event's id: the same for every webhook it is sent to.
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub created_at: DateTime<Utc>,
    /// What happened: for `pnode.*` a pNode change (see `pnode_api::changes::PnodeChange`),
    /// for `node.*` the registry's event.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: serde_json::Value,
}

/// `POST /api/admin/webhooks`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// Where events are POSTed: `http://host[:port]/path`, at most 2000 characters, without
    /// credentials, on a host the deployment allows (`--webhook-allowed-hosts`, by default
    /// `127.0.0.1`, `localhost` and `[::1]`: which hosts is the deployment's to say, so the
    /// pattern cannot).
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 2000,
            pattern = r"^http://[A-Za-z0-9._~:\[\]-]+([/?#][^\u0000-\u0020]*)?$",
            example = "http://127.0.0.1:9000/hooks"
        )
    )]
    pub url: String,
    /// The signing secret, 16 to 200 characters. Never shown again, never logged.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 16, max_length = 200, pattern = r"^[^\u0000]*$")
    )]
    pub secret: String,
    /// Event types, families (`pnode.*`) or `*`: 1 to 20.
    #[cfg_attr(feature = "openapi", schema(schema_with = event_patterns_schema))]
    pub events: Vec<String>,
    /// A JSON object the event's `data` must contain (as Postgres `@>` reads it), e.g.
    /// `{"node": {"address": "1.2.3.4:9001"}}`. Absent: every event of the types.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub filters: Option<serde_json::Value>,
}

impl std::fmt::Debug for CreateWebhookRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateWebhookRequest")
            .field("url", &self.url)
            .field("secret", &"***")
            .field("events", &self.events)
            .field("filters", &self.filters)
            .finish()
    }
}

/// The documented form of [`CreateWebhookRequest::events`]: each one a pattern
/// [`is_known_pattern`] accepts (every type, every family, `*`), listed from [`EVENT_TYPES`].
#[cfg(feature = "openapi")]
fn event_patterns_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    let mut patterns: Vec<String> = EVENT_TYPES.iter().map(|&known| known.to_owned()).collect();
    for known in EVENT_TYPES {
        if let Some((family, _)) = known.split_once('.') {
            let family = format!("{family}.*");
            if !patterns.contains(&family) {
                patterns.push(family);
            }
        }
    }
    patterns.push("*".to_owned());
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(patterns)),
        )
        .min_items(Some(1))
        .max_items(Some(20))
        .description(Some(
            "Event types, families (`pnode.*`) or `*`: 1 to 20 (repeats count once).",
        ))
        .build()
}

/// A webhook as admins see it: never its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookView {
    pub id: i64,
    pub url: String,
    pub events: Vec<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub filters: serde_json::Value,
    pub created_by: Option<i64>,
    pub created_at: DateTime<Utc>,
    /// Deliveries waiting to be sent or retried.
    pub pending: i64,
    /// Deliveries given up on.
    pub failed: i64,
}

/// `GET /api/admin/webhooks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhooksResponse {
    pub webhooks: Vec<WebhookView>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not yet sent, or to be retried at `next_attempt_at`.
    Pending,
    /// A 2xx answer came.
    Delivered,
    /// Given up: the retry window passed, or the webhook was deleted.
    Failed,
}

impl DeliveryStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }
}

/// One event's delivery to one webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryView {
    pub id: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
    /// The HTTP status of the last attempt, if an answer came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<i32>,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// `GET /api/admin/webhooks/{id}/deliveries`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveriesResponse {
    pub deliveries: Vec<DeliveryView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_name_types_families_or_everything() {
        assert!(is_known_pattern("pnode.offline"));
        assert!(is_known_pattern("pnode.*"));
        assert!(is_known_pattern("node.*"));
        assert!(is_known_pattern("*"));
        assert!(!is_known_pattern("pnode.exploded"));
        assert!(!is_known_pattern("pno*"));
        assert!(pattern_matches("pnode.*", "pnode.offline"));
        assert!(!pattern_matches("pnode.*", "node.created"));
        assert!(!pattern_matches("node.*", "pnode.offline"));
        assert!(pattern_matches("*", "node.deleted"));
        assert!(pattern_matches("node.created", "node.created"));
    }
}

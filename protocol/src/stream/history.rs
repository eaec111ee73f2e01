//! The REST bodies of a producer's past and of publishing without a socket: stream history,
//! stored data, the publish API and per-producer settings.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::lenient_id;
use super::server::DataFrame;

/// `GET /api/producers/{id}/history?since_seq=&limit=`: the messages after `since_seq` still
/// in the producer's history, oldest first. `T` is [`DataFrame`]; the server writes the
/// frames as they were published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryResponse<T = DataFrame> {
    pub producer_id: i64,
    /// The producer's current epoch (absent before its first message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// The producer's latest sequence number.
    pub last_seq: u64,
    /// The oldest sequence number history still holds (absent when it holds nothing): a
    /// client whose `since_seq + 1` is below it has missed messages for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seq: Option<u64>,
    /// `limit` cut the answer short: ask again with `since_seq` = the last one here.
    pub more: bool,
    pub messages: Vec<T>,
}

/// `POST /api/producers/{id}/publish`: one message (`payload`) or several, in order
/// (`payloads`, at most 1,000). Exactly one of the two.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublishRequest {
    /// Any JSON value, as a producer's data frame carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub payload: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<Object>>))]
    pub payloads: Option<Vec<Value>>,
    /// The client's message id (single form only): a resend with a recent id is acked with
    /// the original `seq` and not published again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// Most messages in one publish call.
pub const MAX_PUBLISH_BATCH: usize = 1_000;

/// The ack of one published message: the body of a single publish, and the frame a producer's
/// socket gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublishAck {
    /// Always `ack`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(rename = "subscriberCount")]
    pub subscriber_count: u64,
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// `POST /api/producers/{id}/publish` with `payloads`: one ack per message, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublishBatchResponse {
    pub producer_id: i64,
    /// The accepted messages, in order.
    pub acks: Vec<PublishAck>,
    /// How many of the last messages the producer's rate refused (0: none); send them again
    /// after `retry_after_ms`.
    #[serde(default)]
    pub rate_limited: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// `POST /api/data`, Motience's data-service call: one message of a producer. Other fields
/// (`device_id`, `timestamp`) are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DataRequest {
    /// An integer, or a string of digits.
    #[serde(deserialize_with = "lenient_id::deserialize")]
    pub producer_id: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub payload: Value,
}

/// One stored message of a producer. `T` is the payload, any JSON value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredMessage<T = Value> {
    pub seq: u64,
    pub epoch: String,
    /// When the message was accepted, in milliseconds since the Unix epoch.
    pub ts: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub payload: T,
}

/// `GET /api/producers/{id}/data`: a page of stored messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredDataPage<T = Value> {
    pub producer_id: i64,
    pub items: Vec<StoredMessage<T>>,
    /// Pass as `cursor` for the next page, with the same other parameters; absent on the last
    /// page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `PUT /api/admin/producers/{id}/settings`: overrides of the deployment's defaults for one
/// producer. An absent or `null` field follows the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProducerSettingsRequest {
    /// Messages kept in history (0: no history), at most 1 000 000.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(maximum = 1_000_000))]
    pub history_messages: Option<u32>,
    /// Seconds a message stays in history, at least 1.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub history_age_secs: Option<u64>,
    /// Whether accepted messages are stored in Postgres.
    #[serde(default)]
    pub store_data: Option<bool>,
}

/// What applies to a producer's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StreamPolicy {
    pub history_messages: u32,
    pub history_age_secs: u64,
    pub store_data: bool,
}

/// `GET`/`PUT /api/admin/producers/{id}/settings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProducerSettingsResponse {
    pub producer_id: i64,
    /// The overrides set for this producer.
    pub overrides: ProducerSettingsRequest,
    /// The overrides applied over the deployment's defaults.
    pub effective: StreamPolicy,
}

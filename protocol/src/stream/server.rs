//! Frames from the server.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A frame from the server, other than consumer data (see [`DataFrame`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// To a producer: the message was published.
    Ack {
        /// Active subscriptions to this producer, on every instance.
        #[serde(rename = "subscriberCount")]
        subscriber_count: u64,
        /// The message's sequence number.
        seq: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// To either side: a frame was refused; the socket stays open.
    Error {
        code: String,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// With `rate_limited`: when a message would be accepted again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// To a consumer: a `subscribe` frame took effect.
    Subscribed { producer_id: i64 },
    /// To a consumer: an `unsubscribe` frame took effect.
    Unsubscribed { producer_id: i64 },
    /// To either side: the token of a `refresh` frame was accepted; the socket now lives until
    /// `expires_at` (Unix seconds).
    Refreshed { expires_at: u64 },
    /// To a consumer resuming a producer: the messages `from_seq..=to_seq` of `epoch` will not
    /// come (they left the history window, or the history was reset: then `epoch` is not the
    /// one the consumer knew, and `to_seq < from_seq` when nothing of the new epoch is
    /// missing). What history still holds follows.
    Gap {
        producer_id: i64,
        from_seq: u64,
        to_seq: u64,
        epoch: String,
    },
}

/// To a consumer: one message of a producer it subscribes to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DataFrame {
    /// Always `data`.
    #[serde(rename = "type")]
    pub kind: String,
    pub producer_id: i64,
    /// Increases by one per accepted message of the producer and never repeats within an
    /// epoch.
    pub seq: u64,
    /// The producer's history epoch: it changes only when the history was lost (Redis flushed
    /// or failed over without persistence), after which `seq` may start again lower.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// Server time when the message was accepted, in milliseconds since the Unix epoch.
    pub ts: i64,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub payload: Value,
}

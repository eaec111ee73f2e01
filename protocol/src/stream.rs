//! The streaming protocol: WebSocket frames between producers, consumers and the server, the
//! subscription REST bodies, and the admin view of live connections.
//!
//! Text frames are JSON; binary frames are MessagePack maps with the same field names. The
//! server answers each connection in the encoding the client last used. Motience devices send
//! `{"type":"data","payload":…}` and read `{"type":"ack","subscriberCount":N}`; the extra
//! fields (`seq`, `id`) extend that shape without breaking it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Close codes the server uses, with the reason text it sends.
pub mod close {
    /// No pong or frame for the idle timeout.
    pub const IDLE_TIMEOUT: (u16, &str) = (4000, "idle_timeout");
    /// Too many bad frames in a short time.
    pub const TOO_MANY_ERRORS: (u16, &str) = (4002, "too_many_errors");
    /// An admin blocked the user.
    pub const USER_BLOCKED: (u16, &str) = (4003, "user_blocked");
    /// The consumer did not read and its outbound buffer overflowed.
    pub const SLOW_CONSUMER: (u16, &str) = (4008, "slow_consumer");
    /// The server is shutting down; reconnect (to another instance).
    pub const GOING_AWAY: (u16, &str) = (1001, "server_shutdown");
}

/// A frame from a client, decoded leniently by `type` so that an unknown type and a malformed
/// frame get different errors.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ClientFrame {
    #[serde(rename = "type")]
    pub kind: String,
    /// `data`: the reading; any JSON value, `null` included. Absent is an error.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub payload: Option<Value>,
    /// `data`: the client's own message id, echoed in the ack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `subscribe` / `unsubscribe`: which producer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer_id: Option<i64>,
}

/// Tells a field that is present but `null` (`Some(Value::Null)`) from one that is absent
/// (`None`, through `#[serde(default)]`).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

impl ClientFrame {
    pub fn data(payload: Value, id: Option<String>) -> ClientFrame {
        ClientFrame {
            kind: "data".into(),
            payload: Some(payload),
            id,
            producer_id: None,
        }
    }

    pub fn subscribe(producer_id: i64) -> ClientFrame {
        ClientFrame {
            kind: "subscribe".into(),
            payload: None,
            id: None,
            producer_id: Some(producer_id),
        }
    }

    pub fn unsubscribe(producer_id: i64) -> ClientFrame {
        ClientFrame {
            kind: "unsubscribe".into(),
            ..ClientFrame::subscribe(producer_id)
        }
    }
}

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
    },
    /// To a consumer: a `subscribe` frame took effect.
    Subscribed { producer_id: i64 },
    /// To a consumer: an `unsubscribe` frame took effect.
    Unsubscribed { producer_id: i64 },
}

/// To a consumer: one message of a producer it subscribes to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataFrame {
    /// Always `data`.
    #[serde(rename = "type")]
    pub kind: String,
    pub producer_id: i64,
    /// Increases by one per accepted message of the producer and never repeats.
    pub seq: u64,
    /// Server time when the message was accepted, in milliseconds since the Unix epoch.
    pub ts: i64,
    pub payload: Value,
}

/// Stable error codes of the sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamErrorCode {
    /// Not JSON / MessagePack, or fields of the wrong shape.
    BadFrame,
    /// A `type` this side of the protocol does not know.
    UnknownType,
    /// Larger than the configured frame limit.
    TooLarge,
    /// Over the producer's message rate.
    RateLimited,
    /// Not allowed for this role or user.
    Forbidden,
    /// The producer does not exist.
    ProducerNotFound,
    /// The message could not be published (Redis unavailable); it was not accepted.
    Unavailable,
    /// The server failed; the message was not accepted.
    Internal,
}

impl StreamErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            StreamErrorCode::BadFrame => "bad_frame",
            StreamErrorCode::UnknownType => "unknown_type",
            StreamErrorCode::TooLarge => "too_large",
            StreamErrorCode::RateLimited => "rate_limited",
            StreamErrorCode::Forbidden => "forbidden",
            StreamErrorCode::ProducerNotFound => "producer_not_found",
            StreamErrorCode::Unavailable => "unavailable",
            StreamErrorCode::Internal => "internal",
        }
    }
}

/// How a connection's frames are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Json,
    MessagePack,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("{0}")]
    Encode(#[from] rmp_serde::encode::Error),
}

/// Decodes a client frame in either encoding.
pub fn decode_client_frame(bytes: &[u8], encoding: Encoding) -> Result<ClientFrame, FrameError> {
    Ok(match encoding {
        Encoding::Json => serde_json::from_slice(bytes)?,
        Encoding::MessagePack => rmp_serde::from_slice(bytes)?,
    })
}

/// Encodes any frame in either encoding (MessagePack as maps with named fields).
pub fn encode_frame<T: Serialize>(frame: &T, encoding: Encoding) -> Result<Vec<u8>, FrameError> {
    Ok(match encoding {
        Encoding::Json => serde_json::to_vec(frame)?,
        Encoding::MessagePack => rmp_serde::to_vec_named(frame)?,
    })
}

/// `POST /api/subscribe` and `DELETE /api/unsubscribe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubscribeRequest {
    pub producer_id: i64,
}

/// `POST /api/subscribe` → 201 (new) or 200 (it existed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubscribeResponse {
    pub consumer_id: i64,
    pub producer_id: i64,
    /// Whether this call created the subscription.
    pub created: bool,
}

/// `DELETE /api/subscribe/{producer_id}` and `DELETE /api/unsubscribe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnsubscribeResponse {
    pub consumer_id: i64,
    pub producer_id: i64,
    /// Whether a subscription existed and was removed.
    pub removed: bool,
}

/// One side of a subscription, named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubscriptionParty {
    pub user_id: i64,
    pub username: String,
    pub since: DateTime<Utc>,
}

/// `GET /api/subscriptions/{consumerId}`: the producers a consumer subscribes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubscriptionsResponse {
    pub consumer_id: i64,
    pub producers: Vec<SubscriptionParty>,
}

/// `GET /api/subscribers/{producerId}`: the consumers subscribed to a producer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubscribersResponse {
    pub producer_id: i64,
    #[serde(rename = "subscriberCount")]
    pub subscriber_count: u64,
    pub consumers: Vec<SubscriptionParty>,
}

/// One live socket, as its registry sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectionInfo {
    /// `producer` or `consumer`.
    pub kind: String,
    pub user_id: i64,
    pub username: String,
    pub instance: String,
    pub connected_at: DateTime<Utc>,
    pub frames_in: u64,
    pub frames_out: u64,
    /// Frames waiting to be written to the socket.
    pub buffered_messages: u64,
    pub buffered_bytes: u64,
    /// Consumers: how many producers the session receives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriptions: Option<u64>,
}

/// `GET /api/admin/connections`: every instance's live sockets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectionsResponse {
    pub instances: Vec<InstanceConnections>,
    pub producers: u64,
    pub consumers: u64,
}

/// One instance's sockets, as it last reported them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceConnections {
    pub instance: String,
    pub reported_at: DateTime<Utc>,
    pub connections: Vec<ConnectionInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_motience_data_frame_decodes_and_an_ack_encodes_as_motience_reads_it() {
        let frame =
            decode_client_frame(br#"{"type":"data","payload":{"cpu":12.5}}"#, Encoding::Json)
                .unwrap();
        assert_eq!(frame.kind, "data");
        assert_eq!(frame.payload, Some(serde_json::json!({"cpu": 12.5})));
        let ack = ServerFrame::Ack {
            subscriber_count: 1,
            seq: 7,
            id: None,
        };
        let text = String::from_utf8(encode_frame(&ack, Encoding::Json).unwrap()).unwrap();
        assert_eq!(text, r#"{"type":"ack","subscriberCount":1,"seq":7}"#);
    }

    #[test]
    fn null_payloads_differ_from_missing_ones() {
        let null =
            decode_client_frame(br#"{"type":"data","payload":null}"#, Encoding::Json).unwrap();
        assert_eq!(null.payload, Some(Value::Null));
        let missing = decode_client_frame(br#"{"type":"data"}"#, Encoding::Json).unwrap();
        assert_eq!(missing.payload, None);
    }

    #[test]
    fn messagepack_frames_are_named_maps_of_the_same_shape() {
        let frame = ClientFrame::data(serde_json::json!({"t": 21}), Some("m1".into()));
        let bytes = encode_frame(&frame, Encoding::MessagePack).unwrap();
        // A map (0x8N) whose first key is "type".
        assert_eq!(bytes[0] & 0xf0, 0x80);
        assert_eq!(
            decode_client_frame(&bytes, Encoding::MessagePack).unwrap(),
            frame
        );
    }
}

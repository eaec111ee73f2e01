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
    /// A frame, or a fragmented message, declared more bytes than the hard limit.
    pub const TOO_LARGE: (u16, &str) = (1009, "too_large");
    /// A text frame was not valid UTF-8.
    pub const INVALID_UTF8: (u16, &str) = (1007, "invalid_utf8");
    /// The client broke the WebSocket protocol.
    pub const PROTOCOL_ERROR: (u16, &str) = (1002, "protocol_error");
    /// The server failed to set the socket up.
    pub const INTERNAL: (u16, &str) = (1011, "internal_error");
    /// The access token the socket runs on expired and no newer one came in a `refresh` frame.
    pub const TOKEN_EXPIRED: (u16, &str) = (4001, "token_expired");
    /// The login session the socket belongs to ended (logout, or the session was revoked).
    pub const SESSION_ENDED: (u16, &str) = (4004, "session_ended");
    /// The user already has the most sockets allowed.
    pub const TOO_MANY_SOCKETS: (u16, &str) = (4009, "too_many_sockets");
}

/// Identifiers (`producer_id`) as Motience clients send them: an integer, or a string of
/// digits (`"17"`). Anything else is refused.
pub mod lenient_id {
    use serde::de::{self, Deserializer, Visitor};
    use serde::{Deserialize, Serialize};

    /// An id read leniently; serialises as a plain integer.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
    #[serde(transparent)]
    pub struct LenientId(pub i64);

    impl<'de> Deserialize<'de> for LenientId {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(IdVisitor).map(LenientId)
        }
    }

    /// For `#[serde(deserialize_with = "lenient_id::deserialize")]` on an `i64` field.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        LenientId::deserialize(deserializer).map(|id| id.0)
    }

    struct IdVisitor;

    impl Visitor<'_> for IdVisitor {
        type Value = i64;

        fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
            formatter.write_str("an integer id (or a string of digits)")
        }

        fn visit_i64<E: de::Error>(self, value: i64) -> Result<i64, E> {
            Ok(value)
        }

        fn visit_u64<E: de::Error>(self, value: u64) -> Result<i64, E> {
            i64::try_from(value).map_err(|_| E::custom("the id is too large"))
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<i64, E> {
            let digits = !value.is_empty()
                && value.len() <= 19
                && value.bytes().all(|byte| byte.is_ascii_digit());
            if !digits {
                return Err(E::custom("expected an integer id (or a string of digits)"));
            }
            value.parse().map_err(|_| E::custom("the id is too large"))
        }
    }
}

use self::lenient_id::LenientId;

/// Every field a client frame of any type may carry, as it arrives. Unknown fields (Motience
/// devices send `device_id`, `timestamp`) are ignored. [`ClientFrame::decode`] turns it into
/// one typed frame, or a refusal whose code tells a malformed frame from an unknown type.
#[derive(Debug, Default, Deserialize)]
struct WireFrame {
    #[serde(rename = "type")]
    kind: Option<String>,
    /// `data`: the reading; any value, `null` included. Absent is an error.
    #[serde(default, deserialize_with = "present")]
    payload: Option<Value>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    producer_id: Option<LenientId>,
    #[serde(default)]
    token: Option<String>,
}

/// Tells a field that is present but `null` (`Some(Value::Null)`) from one that is absent
/// (`None`, through `#[serde(default)]`).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// Client message ids are at most this long, in bytes.
pub const MAX_CLIENT_ID_BYTES: usize = 128;

/// A frame from a client, one variant per type (the `type` field on the wire).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// A producer's reading. `id` is the client's own message id, echoed in the ack; a
    /// message resent with a recent id is acked again, not published again.
    Data {
        payload: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// A consumer starts receiving a producer, durably (as `POST /api/subscribe`).
    Subscribe { producer_id: i64 },
    /// A consumer stops receiving a producer, durably.
    Unsubscribe { producer_id: i64 },
    /// A newer access token for the open socket, so that it outlives the one it opened with.
    Refresh { token: String },
}

/// Why a client frame was refused; the socket answers with an error frame of this code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameRefusal {
    pub code: StreamErrorCode,
    pub message: String,
    /// The client's message id, when the frame carried a readable one.
    pub id: Option<String>,
}

impl FrameRefusal {
    fn bad(message: impl Into<String>, id: Option<String>) -> FrameRefusal {
        FrameRefusal {
            code: StreamErrorCode::BadFrame,
            message: message.into(),
            id,
        }
    }
}

impl ClientFrame {
    pub fn data(payload: Value, id: Option<String>) -> ClientFrame {
        ClientFrame::Data { payload, id }
    }

    pub fn subscribe(producer_id: i64) -> ClientFrame {
        ClientFrame::Subscribe { producer_id }
    }

    pub fn unsubscribe(producer_id: i64) -> ClientFrame {
        ClientFrame::Unsubscribe { producer_id }
    }

    /// The frame's `type`, as on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientFrame::Data { .. } => "data",
            ClientFrame::Subscribe { .. } => "subscribe",
            ClientFrame::Unsubscribe { .. } => "unsubscribe",
            ClientFrame::Refresh { .. } => "refresh",
        }
    }

    /// Decodes a client frame in either encoding: parse the wire shape, then check that the
    /// type is known and carries what it needs.
    pub fn decode(bytes: &[u8], encoding: Encoding) -> Result<ClientFrame, FrameRefusal> {
        let wire: WireFrame = match encoding {
            Encoding::Json => {
                let mut deserializer = serde_json::Deserializer::from_slice(bytes);
                serde_path_to_error::deserialize(&mut deserializer)
                    .map_err(|error| FrameRefusal::bad(describe_json_path_error(&error), None))?
            }
            Encoding::MessagePack => {
                let mut deserializer = rmp_serde::Deserializer::from_read_ref(bytes);
                serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
                    FrameRefusal::bad(
                        format!(
                            "not a MessagePack frame: {}",
                            describe_path(error.path().to_string(), error.inner())
                        ),
                        None,
                    )
                })?
            }
        };
        ClientFrame::from_wire(wire)
    }

    fn from_wire(wire: WireFrame) -> Result<ClientFrame, FrameRefusal> {
        let WireFrame {
            kind,
            payload,
            id,
            producer_id,
            token,
        } = wire;
        if id.as_ref().is_some_and(|id| id.len() > MAX_CLIENT_ID_BYTES) {
            return Err(FrameRefusal::bad(
                format!("id is limited to {MAX_CLIENT_ID_BYTES} bytes"),
                None,
            ));
        }
        let Some(kind) = kind else {
            return Err(FrameRefusal::bad("a frame needs a \"type\"", id));
        };
        let producer = |id: Option<String>| {
            producer_id
                .map(|producer| producer.0)
                .ok_or_else(|| FrameRefusal::bad("producer_id is required", id))
        };
        match kind.as_str() {
            "data" => match payload {
                Some(payload) => Ok(ClientFrame::Data { payload, id }),
                None => Err(FrameRefusal::bad("data frames carry a payload", id)),
            },
            "subscribe" => Ok(ClientFrame::Subscribe {
                producer_id: producer(id)?,
            }),
            "unsubscribe" => Ok(ClientFrame::Unsubscribe {
                producer_id: producer(id)?,
            }),
            "refresh" => match token {
                Some(token) if !token.is_empty() => Ok(ClientFrame::Refresh { token }),
                _ => Err(FrameRefusal::bad("refresh frames carry a token", id)),
            },
            other => Err(FrameRefusal {
                code: StreamErrorCode::UnknownType,
                message: format!(
                    "unknown frame type {:?}",
                    other.chars().take(64).collect::<String>()
                ),
                id,
            }),
        }
    }

    /// Encodes the frame (clients use it).
    pub fn encode(&self, encoding: Encoding) -> Result<Vec<u8>, FrameError> {
        encode_frame(self, encoding)
    }
}

/// A JSON decoding error in the client's terms: where, and what was wrong, without the names
/// of the server's types.
pub fn describe_json_path_error(error: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let inner = error.inner();
    match inner.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("not valid JSON: {}", plain_json_message(inner))
        }
        serde_json::error::Category::Data | serde_json::error::Category::Io => {
            describe_path(error.path().to_string(), inner)
        }
    }
}

fn describe_path(path: String, error: &impl std::fmt::Display) -> String {
    let message = plain_message(&error.to_string());
    if path == "." || path.is_empty() {
        message
    } else {
        format!("{path}: {message}")
    }
}

/// serde_json's message without its position suffix, for syntax errors.
fn plain_json_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let text = match text.rfind(" at line ") {
        Some(at) => &text[..at],
        None => &text,
    };
    format!("{text} (line {}, column {})", error.line(), error.column())
}

/// A serde message with Rust's names replaced by the client's: `struct X` is an object, the
/// integer types are integers, and positions are dropped (the path says where).
pub fn plain_message(text: &str) -> String {
    let text = match text.rfind(" at line ") {
        Some(at) => &text[..at],
        None => text,
    };
    let mut text = text.to_owned();
    if let Some(start) = text.find("struct ") {
        let end = text[start..]
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ' '))
            .map_or(text.len(), |offset| start + offset);
        text.replace_range(start..end, "a JSON object");
    }
    for (rust, plain) in [
        ("i64", "an integer"),
        ("u64", "a non-negative integer"),
        ("i32", "an integer"),
        ("u32", "a non-negative integer"),
        ("u16", "a non-negative integer"),
        ("u8", "a non-negative integer"),
        ("f64", "a number"),
        ("enum ", "one of the names "),
    ] {
        text = text.replace(rust, plain);
    }
    text
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
    /// The token of a `refresh` frame is not valid.
    TokenInvalid,
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
            StreamErrorCode::TokenInvalid => "token_invalid",
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
    /// An integer, or a string of digits as Motience clients send it.
    #[serde(deserialize_with = "lenient_id::deserialize")]
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

/// `PUT /api/producers/{id}/visibility`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VisibilityRequest {
    /// `true`: only allowed consumers may subscribe (existing subscriptions of others end).
    pub private: bool,
}

/// `PUT /api/producers/{id}/visibility` → 200.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VisibilityResponse {
    pub producer_id: i64,
    pub private: bool,
    /// Consumers whose subscriptions ended because they are not allowed.
    pub unsubscribed: Vec<i64>,
}

/// `POST /api/producers/{id}/allowed-consumers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AllowConsumerRequest {
    /// An integer, or a string of digits.
    #[serde(deserialize_with = "lenient_id::deserialize")]
    pub consumer_id: i64,
}

/// `GET /api/producers/{id}/allowed-consumers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AllowedConsumersResponse {
    pub producer_id: i64,
    pub private: bool,
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

    fn decode(text: &str) -> Result<ClientFrame, FrameRefusal> {
        ClientFrame::decode(text.as_bytes(), Encoding::Json)
    }

    #[test]
    fn a_motience_data_frame_decodes_and_an_ack_encodes_as_motience_reads_it() {
        let frame = decode(r#"{"type":"data","payload":{"cpu":12.5}}"#).unwrap();
        assert_eq!(
            frame,
            ClientFrame::data(serde_json::json!({"cpu": 12.5}), None)
        );
        let ack = ServerFrame::Ack {
            subscriber_count: 1,
            seq: 7,
            id: None,
        };
        let text = String::from_utf8(encode_frame(&ack, Encoding::Json).unwrap()).unwrap();
        assert_eq!(text, r#"{"type":"ack","subscriberCount":1,"seq":7}"#);
    }

    #[test]
    fn extra_fields_that_motience_devices_send_are_ignored() {
        let frame = decode(
            r#"{"type":"data","device_id":"pi-1","timestamp":"2025-01-01T00:00:00Z","payload":1}"#,
        )
        .unwrap();
        assert_eq!(frame, ClientFrame::data(serde_json::json!(1), None));
    }

    #[test]
    fn null_payloads_differ_from_missing_ones() {
        let null = decode(r#"{"type":"data","payload":null}"#).unwrap();
        assert_eq!(null, ClientFrame::data(Value::Null, None));
        let missing = decode(r#"{"type":"data","id":"m1"}"#).unwrap_err();
        assert_eq!(missing.code, StreamErrorCode::BadFrame);
        assert_eq!(missing.id.as_deref(), Some("m1"));
    }

    #[test]
    fn producer_ids_may_be_strings_of_digits() {
        assert_eq!(
            decode(r#"{"type":"subscribe","producer_id":"17"}"#).unwrap(),
            ClientFrame::subscribe(17)
        );
        assert_eq!(
            decode(r#"{"type":"unsubscribe","producer_id":17}"#).unwrap(),
            ClientFrame::unsubscribe(17)
        );
        for bad in [r#""17a""#, r#""""#, r#""-3""#, "1.5", "true"] {
            let refusal =
                decode(&format!(r#"{{"type":"subscribe","producer_id":{bad}}}"#)).unwrap_err();
            assert_eq!(refusal.code, StreamErrorCode::BadFrame, "{bad}");
            assert!(refusal.message.starts_with("producer_id:"), "{refusal:?}");
        }
        let body: SubscribeRequest = serde_json::from_str(r#"{"producer_id":"5"}"#).unwrap();
        assert_eq!(body.producer_id, 5);
    }

    #[test]
    fn unknown_types_and_malformed_frames_get_different_codes_in_the_clients_terms() {
        let unknown = decode(r#"{"type":"telemetry","payload":1}"#).unwrap_err();
        assert_eq!(unknown.code, StreamErrorCode::UnknownType);
        let syntax = decode("{not json").unwrap_err();
        assert_eq!(syntax.code, StreamErrorCode::BadFrame);
        assert!(syntax.message.starts_with("not valid JSON"), "{syntax:?}");
        let array = decode("[1,2]").unwrap_err();
        assert_eq!(array.code, StreamErrorCode::BadFrame);
        assert!(!array.message.contains("WireFrame"), "{array:?}");
        let wrong_type = decode(r#"{"type":"data","payload":1,"id":5}"#).unwrap_err();
        assert!(wrong_type.message.starts_with("id:"), "{wrong_type:?}");
        let untyped = decode(r#"{"payload":1}"#).unwrap_err();
        assert_eq!(untyped.code, StreamErrorCode::BadFrame);
        let long_id = decode(&format!(
            r#"{{"type":"data","payload":1,"id":"{}"}}"#,
            "x".repeat(129)
        ))
        .unwrap_err();
        assert_eq!(long_id.code, StreamErrorCode::BadFrame);
    }

    #[test]
    fn messagepack_frames_are_named_maps_of_the_same_shape() {
        let frame = ClientFrame::data(serde_json::json!({"t": 21}), Some("m1".into()));
        let bytes = frame.encode(Encoding::MessagePack).unwrap();
        // A map (0x8N) whose first key is "type".
        assert_eq!(bytes[0] & 0xf0, 0x80);
        assert_eq!(
            ClientFrame::decode(&bytes, Encoding::MessagePack).unwrap(),
            frame
        );
        let refresh = ClientFrame::Refresh {
            token: "abc".into(),
        };
        let text = String::from_utf8(refresh.encode(Encoding::Json).unwrap()).unwrap();
        assert_eq!(text, r#"{"type":"refresh","token":"abc"}"#);
        assert_eq!(decode(&text).unwrap(), refresh);
    }

    #[test]
    fn rate_limited_errors_carry_a_retry_hint() {
        let frame = ServerFrame::Error {
            code: "rate_limited".into(),
            message: "slow down".into(),
            id: None,
            retry_after_ms: Some(250),
        };
        let text = String::from_utf8(encode_frame(&frame, Encoding::Json).unwrap()).unwrap();
        assert!(text.contains(r#""retry_after_ms":250"#), "{text}");
    }
}

//! Frames from clients: read leniently as they arrive, then turned into one typed frame or a
//! refusal.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::lenient_id::LenientId;
use super::wire::{Encoding, FrameError, StreamErrorCode, encode_frame};
use crate::json_errors::{describe_json_path_error, describe_path};

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
    #[serde(default)]
    since_seq: Option<u64>,
    #[serde(default)]
    epoch: Option<String>,
}

/// Tells a field that is present but `null` (`Some(Value::Null)`) from one that is absent
/// (`None`, through `#[serde(default)]`).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// Client message ids are at most this long, in bytes.
pub const MAX_CLIENT_ID_BYTES: usize = 128;
/// Epochs are at most this long, in bytes (the server's are 16 hex digits).
pub const MAX_EPOCH_BYTES: usize = 64;

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
    /// A consumer asks for every message of a producer after `since_seq` that is still in
    /// history, then the live ones: what it missed while it was away. `epoch` is the one its
    /// last message carried; a different current epoch means the history was reset.
    Resume {
        producer_id: i64,
        since_seq: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
    },
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
            ClientFrame::Resume { .. } => "resume",
        }
    }

    /// Decodes a client frame in either encoding: parse the wire shape, then check that the
    /// type is known and carries what it needs.
    pub fn decode(bytes: &[u8], encoding: Encoding) -> Result<ClientFrame, FrameRefusal> {
        // Parsed plainly first (the path tracking costs on every frame); a frame that fails is
        // parsed again with it, to say where it is wrong.
        let wire: WireFrame = match encoding {
            Encoding::Json => match serde_json::from_slice(bytes) {
                Ok(wire) => wire,
                Err(_) => {
                    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
                    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
                        FrameRefusal::bad(describe_json_path_error(&error), None)
                    })?
                }
            },
            Encoding::MessagePack => match rmp_serde::from_slice(bytes) {
                Ok(wire) => wire,
                Err(_) => {
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
            },
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
            since_seq,
            epoch,
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
            "resume" => {
                let producer_id = producer(id.clone())?;
                let Some(since_seq) = since_seq else {
                    return Err(FrameRefusal::bad("resume frames carry since_seq", id));
                };
                if epoch
                    .as_ref()
                    .is_some_and(|epoch| epoch.len() > MAX_EPOCH_BYTES)
                {
                    return Err(FrameRefusal::bad(
                        format!("epoch is limited to {MAX_EPOCH_BYTES} bytes"),
                        id,
                    ));
                }
                Ok(ClientFrame::Resume {
                    producer_id,
                    since_seq,
                    epoch,
                })
            }
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

//! The socket's encodings, the stable error codes of error frames, and encoding any frame.

use serde::Serialize;

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
    /// A `resume` frame named a producer the consumer does not subscribe to.
    NotSubscribed,
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
            StreamErrorCode::NotSubscribed => "not_subscribed",
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

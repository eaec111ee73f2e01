//! Live streaming: the per-socket actors, their registries, and the socket and REST routes.
//!
//! - [`producer`]: `ProducerConnection`, one per producer socket: decode, validate, rate-limit,
//!   publish (which stamps `seq` and `ts`), ack.
//! - [`consumer`]: `ConsumerSession`, one per consumer socket: its subscriptions, its outbound
//!   queue, live subscribe/unsubscribe.
//! - [`registry`]: `ConnectionRegistry`, one for producers and one for consumer sessions per
//!   instance: bookkeeping, blocks, subscription changes, the admin view.
//! - [`outbox`]: the bounded outbound queue of a socket.
//! - [`routes`]: `/producer`, `/consumer`, the subscription REST API, `/api/admin/connections`.

pub mod consumer;
pub mod metrics;
pub mod outbox;
pub mod producer;
pub mod registry;
pub mod report;
pub mod routes;
pub mod socket;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::Message;
use bytes::Bytes;
use bytestring::ByteString;
use nodegrid_protocol::stream::{Encoding, ServerFrame, StreamErrorCode, encode_frame};

use self::outbox::Outgoing;

/// Identifies one socket within this instance.
pub type ConnectionId = u64;

/// A new connection id, unique within the process.
pub fn next_connection_id() -> ConnectionId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Counters a connection shares with its registry, so the admin view needs no message to it.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    pub frames_in: AtomicU64,
    pub subscriptions: AtomicU64,
}

/// Asks a connection to close with a code and reason, and stop.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct CloseConnection(pub (u16, &'static str));

/// A token bucket held by one connection (no IO, no lock: the actor owns it).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    pub fn new(per_second: f64, capacity: f64) -> TokenBucket {
        TokenBucket {
            capacity,
            per_second,
            tokens: capacity,
            at: Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Bad frames a socket may send in a burst, and how fast that allowance comes back; past it,
/// the socket is closed with 4002 `too_many_errors`.
pub fn error_budget() -> TokenBucket {
    TokenBucket::new(1.0, 20.0)
}

/// A frame for the socket in the connection's encoding.
pub fn outgoing(frame: &ServerFrame, encoding: Encoding) -> Option<Outgoing> {
    let bytes = encode_frame(frame, encoding).ok()?;
    Some(match encoding {
        Encoding::Json => Outgoing::Text(ByteString::try_from(Bytes::from(bytes)).ok()?),
        Encoding::MessagePack => Outgoing::Binary(Bytes::from(bytes)),
    })
}

/// An error frame.
pub fn error_frame(
    code: StreamErrorCode,
    message: impl Into<String>,
    id: Option<String>,
) -> ServerFrame {
    ServerFrame::Error {
        code: code.as_str().to_owned(),
        message: message.into(),
        id,
    }
}

/// Milliseconds since the Unix epoch, the `ts` of stream messages.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A producer message as this instance received it from Redis: the consumer frame's JSON text,
/// shared by every local session, and its MessagePack form, made once if any session needs it.
#[derive(Debug)]
pub struct StreamItem {
    pub producer_id: i64,
    pub json: ByteString,
    msgpack: std::sync::OnceLock<Option<Bytes>>,
}

impl StreamItem {
    pub fn new(producer_id: i64, json: ByteString) -> StreamItem {
        StreamItem {
            producer_id,
            json,
            msgpack: std::sync::OnceLock::new(),
        }
    }

    /// The frame as MessagePack (a map with the same field names).
    pub fn msgpack(&self) -> Option<Bytes> {
        self.msgpack
            .get_or_init(|| {
                let value: serde_json::Value = serde_json::from_str(&self.json).ok()?;
                rmp_serde::to_vec_named(&value).ok().map(Bytes::from)
            })
            .clone()
    }

    /// The message's `ts` field, read without decoding the whole frame: the publisher writes
    /// `{"type":"data","producer_id":…,"seq":…,"ts":…,` in that order.
    pub fn ts_millis(&self) -> Option<i64> {
        let after = self.json.split_once(",\"ts\":")?.1;
        let end = after.find(',')?;
        after[..end].parse().ok()
    }
}

/// Delivers one producer message to a session.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Deliver(pub Arc<StreamItem>);

/// How long since `instant`, for idle checks.
pub fn since(instant: Instant) -> Duration {
    Instant::now().saturating_duration_since(instant)
}

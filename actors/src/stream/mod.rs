//! Live streaming: the per-socket actors, their registries, and the socket and REST routes.
//!
//! - [`producer`]: `ProducerConnection`, one per producer socket: decode, validate, rate-limit,
//!   publish (which stamps `seq` and `ts`), ack.
//! - [`consumer`]: `ConsumerSession`, one per consumer socket: its subscriptions, its outbound
//!   queue, live subscribe/unsubscribe.
//! - [`registry`]: `ConnectionRegistry`, one for producers and one for consumer sessions per
//!   instance: bookkeeping, blocks, subscription changes, the admin view.
//! - [`fanout`]: `StreamFanout`, one per instance: subscribes each producer channel once while
//!   local sessions want it, and writes each message into those sessions' outboxes.
//! - [`outbox`]: the bounded outbound queue of a socket, which is also its response body.
//! - [`socket`]: what both socket actors share (`SocketCore`, `SocketActor`).
//! - [`ws`]: the WebSocket wire in: the handshake, and a reader that enforces the limits at
//!   frame headers.
//! - [`frame`]: the WebSocket wire out: the encoding of the server's frames.
//! - [`report`]: each instance's connections report in Redis, for the admin view.
//! - [`presence`]: producer sockets opening and closing, as their device node's status in the
//!   node registry.
//! - [`metrics`]: cached metric handles for the hot path.

pub mod consumer;
pub mod fanout;
pub mod frame;
pub mod ingest;
pub mod metrics;
pub mod outbox;
pub mod presence;
pub mod producer;
pub mod registry;
pub mod replay;
pub mod report;
pub mod socket;
pub mod writer;
pub mod ws;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::Message;
use nodegrid_protocol::stream::{Encoding, ServerFrame, StreamErrorCode};

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

/// The encoding a socket answers in (the one its client last used), shared with the fan-out,
/// which writes to the socket without asking its actor.
#[derive(Debug, Clone, Default)]
pub struct SharedEncoding(Arc<AtomicU8>);

impl SharedEncoding {
    pub fn get(&self) -> Encoding {
        match self.0.load(Ordering::Relaxed) {
            0 => Encoding::Json,
            _ => Encoding::MessagePack,
        }
    }

    pub fn set(&self, encoding: Encoding) {
        let value = match encoding {
            Encoding::Json => 0,
            Encoding::MessagePack => 1,
        };
        self.0.store(value, Ordering::Relaxed);
    }
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

    /// Takes one token if there is one; otherwise says how long until there is.
    pub fn take(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / self.per_second.max(f64::MIN_POSITIVE);
            Err(Duration::from_secs_f64(wait.min(3_600.0)))
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self) -> bool {
        self.take().is_ok()
    }
}

/// Bad frames a socket may send in a burst, and how fast that allowance comes back; past it,
/// the socket is closed with 4002 `too_many_errors`. Only frames that are wrong count: a
/// producer that is merely faster than its rate is told `rate_limited` and keeps its socket.
pub fn error_budget() -> TokenBucket {
    TokenBucket::new(1.0, 20.0)
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
        retry_after_ms: None,
    }
}

/// Milliseconds since the Unix epoch, the `ts` of stream messages.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// How long since `instant`, for idle checks.
pub fn since(instant: Instant) -> Duration {
    Instant::now().saturating_duration_since(instant)
}

//! What producer and consumer sockets share: the encoding the client last used, the outbox,
//! the error budget, keep-alive, the token's lifetime, decoding, and their counters.
//!
//! The actors own a [`SocketCore`] and keep only their own rules. A core method that returns
//! `Err(reason)` means the socket must close with that reason; the actor then stops.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix::{Actor, ActorContext, ActorFutureExt, AsyncContext, Context, SpawnHandle, WrapFuture};
use nodegrid_protocol::stream::{
    ClientFrame, Encoding, FrameRefusal, ServerFrame, StreamErrorCode, close,
};
use nodegrid_services::config::StreamLimits;

use crate::stream::frame::CloseReason;
use crate::stream::metrics::{self, RoleMetrics, STREAM};
use crate::stream::outbox::{Outbox, Outgoing, outgoing};
use crate::stream::registry::{ConnectionRegistry, Register, SocketRole};
use crate::stream::ws::{WsError, WsItem};
use crate::stream::{
    ConnectionStats, SharedEncoding, TokenBucket, error_budget, error_frame, since,
};

/// What arrived, once the core has handled what it can.
pub enum Incoming {
    /// A decoded frame for the actor.
    Frame(ClientFrame),
    /// Nothing for the actor (a ping, a pong, a refused frame).
    Handled,
    /// The client closed or went away.
    Ended,
}

pub struct SocketCore {
    role: SocketRole,
    encoding: SharedEncoding,
    outbox: Outbox,
    errors: TokenBucket,
    limits: StreamLimits,
    stats: Arc<ConnectionStats>,
    last_seen: Instant,
    closing: bool,
}

impl SocketCore {
    pub fn new(role: SocketRole, outbox: Outbox, limits: StreamLimits) -> SocketCore {
        SocketCore {
            role,
            encoding: SharedEncoding::default(),
            outbox,
            errors: error_budget(),
            limits,
            stats: Arc::default(),
            last_seen: Instant::now(),
            closing: false,
        }
    }

    pub fn encoding(&self) -> Encoding {
        self.encoding.get()
    }

    /// The encoding, shared (the fan-out writes in it).
    pub fn shared_encoding(&self) -> SharedEncoding {
        self.encoding.clone()
    }

    pub fn limits(&self) -> &StreamLimits {
        &self.limits
    }

    pub fn stats(&self) -> &Arc<ConnectionStats> {
        &self.stats
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn metrics(&self) -> &'static RoleMetrics {
        match self.role {
            SocketRole::Producer => &STREAM.producer,
            SocketRole::Consumer => &STREAM.consumer,
        }
    }

    /// Queues a frame in the connection's encoding.
    pub fn send(&mut self, frame: &ServerFrame) -> Result<(), CloseReason> {
        match outgoing(frame, self.encoding()) {
            Some(outgoing) => self.push(outgoing),
            None => Ok(()),
        }
    }

    /// Queues a frame; a full outbox means the client does not read.
    pub fn push(&mut self, outgoing: Outgoing) -> Result<(), CloseReason> {
        self.outbox.push(outgoing).map_err(|_| close::SLOW_CONSUMER)
    }

    /// Answers with an error frame that does not count against the client (a refusal of
    /// something well-formed: rate limits, unavailable, not found).
    pub fn answer_error(
        &mut self,
        code: StreamErrorCode,
        message: &str,
        id: Option<String>,
        retry_after: Option<Duration>,
    ) -> Result<(), CloseReason> {
        metrics::error(self.role.as_str(), code);
        let frame = match error_frame(code, message, id) {
            ServerFrame::Error {
                code, message, id, ..
            } => ServerFrame::Error {
                code,
                message,
                id,
                retry_after_ms: retry_after
                    .map(|wait| u64::try_from(wait.as_millis().max(1)).unwrap_or(u64::MAX)),
            },
            other => other,
        };
        self.send(&frame)
    }

    /// Answers a frame that was wrong (malformed, oversized, of an unknown type, not allowed
    /// for the role) with an error frame, and spends the error budget: a client that keeps
    /// sending wrong frames is closed with 4002.
    pub fn refuse(&mut self, refusal: FrameRefusal) -> Result<(), CloseReason> {
        self.metrics().frames_in_invalid.increment(1);
        self.answer_error(refusal.code, &refusal.message, refusal.id, None)?;
        if self.errors.try_take() {
            Ok(())
        } else {
            Err(close::TOO_MANY_ERRORS)
        }
    }

    /// Deals with one item of the socket's reader: keep-alive, limits, decoding.
    pub fn incoming(&mut self, item: Result<WsItem, WsError>) -> Result<Incoming, CloseReason> {
        self.last_seen = Instant::now();
        let (bytes, encoding) = match &item {
            Ok(WsItem::Text(text)) => (text.as_bytes().clone(), Encoding::Json),
            Ok(WsItem::Binary(bytes)) => (bytes.clone(), Encoding::MessagePack),
            Ok(WsItem::Ping(bytes)) => {
                self.push(Outgoing::Pong(bytes.clone()))?;
                return Ok(Incoming::Handled);
            }
            Ok(WsItem::Pong(_)) => return Ok(Incoming::Handled),
            Ok(WsItem::Close) => return Ok(Incoming::Ended),
            Ok(WsItem::TooLarge { declared }) => {
                self.stats.frames_in.fetch_add(1, Ordering::Relaxed);
                self.metrics().bytes_in.increment(*declared);
                self.refuse(FrameRefusal {
                    code: StreamErrorCode::TooLarge,
                    message: format!(
                        "frames are limited to {} bytes",
                        self.limits.max_frame_bytes
                    ),
                    id: None,
                })?;
                return Ok(Incoming::Handled);
            }
            Err(WsError::Io) => return Ok(Incoming::Ended),
            Err(error) => {
                tracing::debug!(%error, role = self.role.as_str(), "socket protocol error");
                return Err(error.close_reason());
            }
        };
        self.encoding.set(encoding);
        self.stats.frames_in.fetch_add(1, Ordering::Relaxed);
        self.metrics().bytes_in.increment(bytes.len() as u64);
        match ClientFrame::decode(&bytes, encoding) {
            Ok(frame) => Ok(Incoming::Frame(frame)),
            Err(refusal) => {
                self.refuse(refusal)?;
                Ok(Incoming::Handled)
            }
        }
    }

    /// The ping tick: closes a socket silent for longer than the idle timeout, pings others.
    pub fn heartbeat(&mut self) -> Result<(), CloseReason> {
        if since(self.last_seen) > self.limits.idle_timeout {
            return Err(close::IDLE_TIMEOUT);
        }
        self.push(Outgoing::Ping)
    }

    /// Starts closing the socket; false if it was already closing.
    pub fn begin_close(&mut self, reason: CloseReason) -> bool {
        if self.closing {
            return false;
        }
        self.closing = true;
        metrics::closed(self.role.as_str(), reason.1);
        self.outbox.close(reason);
        true
    }
}

impl Drop for SocketCore {
    /// An actor that stops without a reason (the client closed, or went away) still answers
    /// with a close frame, which also ends the response body.
    fn drop(&mut self) {
        if !self.closing {
            self.outbox.close((1000, ""));
        }
    }
}

/// When a socket's access token expires, and what happens then.
pub struct TokenClock {
    expires_at: Option<u64>,
    timer: Option<SpawnHandle>,
}

impl TokenClock {
    /// `expires_at` is the token's `exp` (Unix seconds); `None` when expiry is checked at
    /// connect only.
    pub fn new(expires_at: Option<u64>) -> TokenClock {
        TokenClock {
            expires_at,
            timer: None,
        }
    }

    /// (Re)arms the timer that closes the socket with 4001 when the token expires.
    pub fn arm<A: SocketActor>(&mut self, expires_at: u64, ctx: &mut Context<A>) {
        if let Some(timer) = self.timer.take() {
            ctx.cancel_future(timer);
        }
        self.expires_at = Some(expires_at);
        let now = nodegrid_services::identity::tokens::unix_now();
        let wait = Duration::from_secs(expires_at.saturating_sub(now));
        self.timer = Some(ctx.run_later(wait, |actor, ctx| {
            actor.close(close::TOKEN_EXPIRED, ctx);
        }));
    }

    pub fn expires_at(&self) -> Option<u64> {
        self.expires_at
    }
}

/// The socket actors' common behaviour over their [`SocketCore`]: they implement `core` and
/// `on_frame`, and get sending, refusing, closing and stream handling.
pub trait SocketActor: Actor<Context = Context<Self>> {
    fn core(&mut self) -> &mut SocketCore;

    /// A decoded frame from the client.
    fn on_frame(&mut self, frame: ClientFrame, ctx: &mut Context<Self>);

    fn send(&mut self, frame: &ServerFrame, ctx: &mut Context<Self>) {
        let outcome = self.core().send(frame);
        self.or_close(outcome, ctx);
    }

    fn push(&mut self, outgoing: Outgoing, ctx: &mut Context<Self>) {
        let outcome = self.core().push(outgoing);
        self.or_close(outcome, ctx);
    }

    /// Refuses a frame that was wrong (spends the error budget).
    fn refuse(&mut self, refusal: FrameRefusal, ctx: &mut Context<Self>) {
        let outcome = self.core().refuse(refusal);
        self.or_close(outcome, ctx);
    }

    /// Refuses a frame of the wrong kind for this role (spends the error budget).
    fn refuse_code(
        &mut self,
        code: StreamErrorCode,
        message: &str,
        id: Option<String>,
        ctx: &mut Context<Self>,
    ) {
        self.refuse(
            FrameRefusal {
                code,
                message: message.to_owned(),
                id,
            },
            ctx,
        );
    }

    /// Answers with an error that is not the client's fault (does not spend the budget).
    fn answer_error(
        &mut self,
        code: StreamErrorCode,
        message: &str,
        id: Option<String>,
        retry_after: Option<Duration>,
        ctx: &mut Context<Self>,
    ) {
        let outcome = self.core().answer_error(code, message, id, retry_after);
        self.or_close(outcome, ctx);
    }

    /// Closes the socket when `outcome` says it must.
    fn or_close(&mut self, outcome: Result<(), CloseReason>, ctx: &mut Context<Self>) {
        if let Err(reason) = outcome {
            self.close(reason, ctx);
        }
    }

    fn close(&mut self, reason: CloseReason, ctx: &mut Context<Self>) {
        if self.core().begin_close(reason) {
            ctx.stop();
        }
    }

    /// Registers the socket with its registry; closes it when its user has too many.
    fn register(
        &mut self,
        registry: &actix::Addr<ConnectionRegistry>,
        registration: Register,
        ctx: &mut Context<Self>,
    ) {
        ctx.spawn(
            registry
                .send(registration)
                .into_actor(self)
                .map(|registered, actor, ctx| {
                    if registered.is_err() || registered == Ok(false) {
                        actor.close(close::TOO_MANY_SOCKETS, ctx);
                    }
                }),
        );
    }

    /// One item of the socket's reader (call from `StreamHandler::handle`).
    fn on_item(&mut self, item: Result<WsItem, WsError>, ctx: &mut Context<Self>) {
        match self.core().incoming(item) {
            Ok(Incoming::Frame(frame)) => self.on_frame(frame, ctx),
            Ok(Incoming::Handled) => {}
            Ok(Incoming::Ended) => ctx.stop(),
            Err(reason) => self.close(reason, ctx),
        }
    }
}

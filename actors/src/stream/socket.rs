//! What producer and consumer sockets share: the encoding the client last used, the outbox,
//! the error budget, keep-alive, frame size and decoding, and their counters.
//!
//! The actors own a [`SocketCore`] and keep only their own rules. A core method that returns
//! `Err(reason)` means the socket must close with that reason; the actor then stops.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use actix::{Actor, ActorContext, Context};
use actix_ws::{AggregatedMessage, ProtocolError};
use nodegrid_protocol::stream::{
    ClientFrame, Encoding, ServerFrame, StreamErrorCode, close, decode_client_frame,
};
use nodegrid_services::config::StreamLimits;

use crate::stream::metrics::{self, RoleMetrics, STREAM};
use crate::stream::outbox::{Outbox, Outgoing};
use crate::stream::registry::SocketRole;
use crate::stream::{ConnectionStats, TokenBucket, error_budget, error_frame, outgoing, since};

/// A close code and the reason text sent with it.
pub type CloseReason = (u16, &'static str);

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
    encoding: Encoding,
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
            encoding: Encoding::Json,
            outbox,
            errors: error_budget(),
            limits,
            stats: Arc::default(),
            last_seen: Instant::now(),
            closing: false,
        }
    }

    pub fn encoding(&self) -> Encoding {
        self.encoding
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
        match outgoing(frame, self.encoding) {
            Some(outgoing) => self.push(outgoing),
            None => Ok(()),
        }
    }

    /// Queues a frame; a full outbox means the client does not read.
    pub fn push(&mut self, outgoing: Outgoing) -> Result<(), CloseReason> {
        self.outbox.push(outgoing).map_err(|_| close::SLOW_CONSUMER)
    }

    /// Answers a refused frame with an error frame, and spends the error budget.
    pub fn refuse(
        &mut self,
        code: StreamErrorCode,
        message: &str,
        id: Option<String>,
    ) -> Result<(), CloseReason> {
        metrics::error(self.role.as_str(), code);
        self.metrics().frames_in_invalid.increment(1);
        self.send(&error_frame(code, message, id))?;
        if self.errors.try_take() {
            Ok(())
        } else {
            Err(close::TOO_MANY_ERRORS)
        }
    }

    /// Deals with one item of the socket's stream: keep-alive, frame size, decoding.
    pub fn incoming(
        &mut self,
        item: Result<AggregatedMessage, ProtocolError>,
    ) -> Result<Incoming, CloseReason> {
        self.last_seen = Instant::now();
        let (bytes, encoding): (&[u8], Encoding) = match &item {
            Ok(AggregatedMessage::Text(text)) => (text.as_bytes().as_ref(), Encoding::Json),
            Ok(AggregatedMessage::Binary(bytes)) => (&bytes[..], Encoding::MessagePack),
            Ok(AggregatedMessage::Ping(bytes)) => {
                self.push(Outgoing::Pong(bytes.clone()))?;
                return Ok(Incoming::Handled);
            }
            Ok(AggregatedMessage::Pong(_)) => return Ok(Incoming::Handled),
            Ok(AggregatedMessage::Close(_)) | Err(ProtocolError::Io(_)) => {
                return Ok(Incoming::Ended);
            }
            Err(ProtocolError::Overflow) => return Err((1009, "too_large")),
            Err(error) => {
                tracing::debug!(%error, role = self.role.as_str(), "socket protocol error");
                return Err((1002, "protocol_error"));
            }
        };
        self.encoding = encoding;
        self.stats.frames_in.fetch_add(1, Ordering::Relaxed);
        self.metrics().bytes_in.increment(bytes.len() as u64);
        if bytes.len() > self.limits.max_frame_bytes {
            let message = format!(
                "frames are limited to {} bytes",
                self.limits.max_frame_bytes
            );
            self.refuse(StreamErrorCode::TooLarge, &message, None)?;
            return Ok(Incoming::Handled);
        }
        match decode_client_frame(bytes, encoding) {
            Ok(frame) => Ok(Incoming::Frame(frame)),
            Err(error) => {
                self.refuse(
                    StreamErrorCode::BadFrame,
                    &format!("not a frame: {error}"),
                    None,
                )?;
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

    fn refuse(
        &mut self,
        code: StreamErrorCode,
        message: &str,
        id: Option<String>,
        ctx: &mut Context<Self>,
    ) {
        let outcome = self.core().refuse(code, message, id);
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

    /// One item of the socket's stream (call from `StreamHandler::handle`).
    fn on_item(&mut self, item: Result<AggregatedMessage, ProtocolError>, ctx: &mut Context<Self>) {
        match self.core().incoming(item) {
            Ok(Incoming::Frame(frame)) => self.on_frame(frame, ctx),
            Ok(Incoming::Handled) => {}
            Ok(Incoming::Ended) => ctx.stop(),
            Err(reason) => self.close(reason, ctx),
        }
    }
}

//! ProducerConnection: one actor per producer socket.
//!
//! It decodes each frame, checks its size and the connection's rate, and publishes data
//! messages one at a time, in order, through the [`StreamPublisher`] (which stamps `seq`); only
//! then does it ack, with the subscriber count from memory. A message that could not be
//! published gets an `unavailable` error, never an ack.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use actix::prelude::*;
use actix_ws::{AggregatedMessage, ProtocolError};
use nodegrid_protocol::stream::{
    ClientFrame, Encoding, ServerFrame, StreamErrorCode, close, decode_client_frame,
};
use nodegrid_services::config::StreamLimits;
use nodegrid_services::identity::AuthUser;
use nodegrid_services::streams::publisher::StreamPublisher;
use nodegrid_services::streams::subscriptions::Subscriptions;

use crate::stream::metrics::{self, STREAM};
use crate::stream::outbox::{Outbox, Outgoing};
use crate::stream::registry::{ProducerRegistry, Register, RegisteredConnection, Unregister};
use crate::stream::{
    CloseConnection, ConnectionId, ConnectionStats, TokenBucket, error_budget, error_frame,
    next_connection_id, now_millis, outgoing, since,
};

/// Messages accepted but not yet published, per connection. Past this the producer is sending
/// faster than Redis takes them (or Redis is down) and gets `unavailable`.
const MAX_PENDING: usize = 256;
/// How often the highest sequence number is saved to Postgres while the producer streams.
const SEQ_SAVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
const ROLE: &str = "producer";

struct PendingMessage {
    payload_json: String,
    id: Option<String>,
}

pub struct ProducerConnection {
    id: ConnectionId,
    user: AuthUser,
    encoding: Encoding,
    outbox: Outbox,
    publisher: StreamPublisher,
    subscriptions: Subscriptions,
    registry: Addr<ProducerRegistry>,
    limits: StreamLimits,
    rate: TokenBucket,
    errors: TokenBucket,
    pending: VecDeque<PendingMessage>,
    publishing: bool,
    seq_seen: u64,
    seq_saved: u64,
    last_seen: Instant,
    stats: Arc<ConnectionStats>,
    stream: Option<actix_ws::AggregatedMessageStream>,
}

pub struct ProducerParts {
    pub user: AuthUser,
    pub outbox: Outbox,
    pub stream: actix_ws::AggregatedMessageStream,
    pub publisher: StreamPublisher,
    pub subscriptions: Subscriptions,
    pub registry: Addr<ProducerRegistry>,
    pub limits: StreamLimits,
    pub seq_floor: u64,
}

impl ProducerConnection {
    pub fn new(parts: ProducerParts) -> ProducerConnection {
        let limits = parts.limits;
        ProducerConnection {
            id: next_connection_id(),
            user: parts.user,
            encoding: Encoding::Json,
            outbox: parts.outbox,
            publisher: parts.publisher,
            subscriptions: parts.subscriptions,
            registry: parts.registry,
            limits,
            rate: TokenBucket::new(
                f64::from(limits.producer_rate_per_sec),
                f64::from(limits.producer_burst),
            ),
            errors: error_budget(),
            pending: VecDeque::new(),
            publishing: false,
            seq_seen: parts.seq_floor,
            seq_saved: parts.seq_floor,
            last_seen: Instant::now(),
            stats: Arc::default(),
            stream: Some(parts.stream),
        }
    }

    fn send(&mut self, frame: &ServerFrame, ctx: &mut Context<Self>) {
        let Some(outgoing) = outgoing(frame, self.encoding) else {
            return;
        };
        if self.outbox.push(outgoing).is_err() {
            self.close(close::SLOW_CONSUMER, ctx);
        }
    }

    fn refuse(
        &mut self,
        code: StreamErrorCode,
        message: &str,
        id: Option<String>,
        ctx: &mut Context<Self>,
    ) {
        metrics::error(ROLE, code);
        STREAM.producer.frames_in_invalid.increment(1);
        self.send(&error_frame(code, message, id), ctx);
        if !self.errors.try_take() {
            self.close(close::TOO_MANY_ERRORS, ctx);
        }
    }

    fn close(&mut self, reason: (u16, &'static str), ctx: &mut Context<Self>) {
        if ctx.state() == ActorState::Stopping || ctx.state() == ActorState::Stopped {
            return;
        }
        metrics::closed(ROLE, reason.1);
        self.outbox.close(reason);
        ctx.stop();
    }

    fn on_frame(&mut self, bytes: &[u8], encoding: Encoding, ctx: &mut Context<Self>) {
        self.encoding = encoding;
        self.stats.frames_in.fetch_add(1, Ordering::Relaxed);
        STREAM.producer.bytes_in.increment(bytes.len() as u64);
        if bytes.len() > self.limits.max_frame_bytes {
            let message = format!(
                "frames are limited to {} bytes",
                self.limits.max_frame_bytes
            );
            return self.refuse(StreamErrorCode::TooLarge, &message, None, ctx);
        }
        let frame = match decode_client_frame(bytes, encoding) {
            Ok(frame) => frame,
            Err(error) => {
                let message = format!("not a frame: {error}");
                return self.refuse(StreamErrorCode::BadFrame, &message, None, ctx);
            }
        };
        match frame.kind.as_str() {
            "data" => self.on_data(frame, ctx),
            "subscribe" | "unsubscribe" => self.refuse(
                StreamErrorCode::Forbidden,
                "producers do not subscribe",
                frame.id,
                ctx,
            ),
            other => {
                let message = format!("unknown frame type {other:?}; producers send \"data\"");
                self.refuse(StreamErrorCode::UnknownType, &message, frame.id, ctx);
            }
        }
    }

    fn on_data(&mut self, frame: ClientFrame, ctx: &mut Context<Self>) {
        let ClientFrame { payload, id, .. } = frame;
        let Some(payload) = payload else {
            return self.refuse(
                StreamErrorCode::BadFrame,
                "data frames carry a payload",
                id,
                ctx,
            );
        };
        if id.as_ref().is_some_and(|id| id.len() > 128) {
            return self.refuse(
                StreamErrorCode::BadFrame,
                "id is limited to 128 bytes",
                None,
                ctx,
            );
        }
        if !self.rate.try_take() {
            let message = format!(
                "limited to {} messages per second (burst {})",
                self.limits.producer_rate_per_sec, self.limits.producer_burst
            );
            return self.refuse(StreamErrorCode::RateLimited, &message, id, ctx);
        }
        if self.pending.len() >= MAX_PENDING {
            metrics::error(ROLE, StreamErrorCode::Unavailable);
            let frame = error_frame(
                StreamErrorCode::Unavailable,
                "too many messages waiting to be published",
                id,
            );
            return self.send(&frame, ctx);
        }
        let payload_json = match serde_json::to_string(&payload) {
            Ok(json) => json,
            Err(error) => {
                let message = format!("payload cannot be encoded: {error}");
                return self.refuse(StreamErrorCode::BadFrame, &message, id, ctx);
            }
        };
        STREAM.producer.frames_in_data.increment(1);
        self.pending.push_back(PendingMessage { payload_json, id });
        self.publish_next(ctx);
    }

    /// Publishes the oldest pending message, if none is in flight. One at a time keeps the
    /// producer's messages in order.
    fn publish_next(&mut self, ctx: &mut Context<Self>) {
        if self.publishing {
            return;
        }
        let Some(message) = self.pending.pop_front() else {
            return;
        };
        if !self.publisher.is_connected() {
            metrics::error(ROLE, StreamErrorCode::Unavailable);
            let frame = error_frame(
                StreamErrorCode::Unavailable,
                "the message bus is unavailable; the message was not accepted",
                message.id,
            );
            self.send(&frame, ctx);
            return self.publish_next(ctx);
        }
        self.publishing = true;
        let publisher = self.publisher.clone();
        let producer_id = self.user.user_id;
        let floor = self.seq_seen;
        async move {
            let started = Instant::now();
            let outcome = publisher
                .publish(producer_id, now_millis(), &message.payload_json, floor)
                .await;
            STREAM
                .publish_seconds
                .record(started.elapsed().as_secs_f64());
            (outcome, message.id)
        }
        .into_actor(self)
        .map(|(outcome, id), connection, ctx| {
            connection.publishing = false;
            match outcome {
                Ok(published) => {
                    connection.seq_seen = connection.seq_seen.max(published.seq);
                    let ack = ServerFrame::Ack {
                        subscriber_count: connection
                            .subscriptions
                            .subscriber_count(connection.user.user_id),
                        seq: published.seq,
                        id,
                    };
                    STREAM.acks.increment(1);
                    connection.send(&ack, ctx);
                }
                Err(error) => {
                    tracing::warn!(producer = connection.user.user_id, %error, "publish failed");
                    metrics::error(ROLE, StreamErrorCode::Unavailable);
                    let frame = error_frame(
                        StreamErrorCode::Unavailable,
                        "the message could not be published; it was not accepted",
                        id,
                    );
                    connection.send(&frame, ctx);
                }
            }
            connection.publish_next(ctx);
        })
        .spawn(ctx);
    }

    fn save_seq(&mut self, ctx: &mut Context<Self>) {
        if self.seq_seen <= self.seq_saved {
            return;
        }
        let publisher = self.publisher.clone();
        let (producer_id, seq) = (self.user.user_id, self.seq_seen);
        self.seq_saved = seq;
        ctx.spawn(
            async move {
                if let Err(error) = publisher.save_seq_floor(producer_id, seq).await {
                    tracing::warn!(producer_id, %error, "could not save the sequence floor");
                }
            }
            .into_actor(self),
        );
    }
}

impl Actor for ProducerConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(stream) = self.stream.take() {
            ctx.add_stream(stream);
        }
        self.registry.do_send(Register {
            id: self.id,
            connection: RegisteredConnection {
                user_id: self.user.user_id,
                username: self.user.username.clone(),
                connected_at: chrono::Utc::now(),
                close: ctx.address().recipient(),
                updates: None,
                stats: self.stats.clone(),
                queue: self.outbox.gauge(),
            },
        });
        ctx.run_interval(self.limits.ping_interval, |connection, ctx| {
            if since(connection.last_seen) > connection.limits.idle_timeout {
                return connection.close(close::IDLE_TIMEOUT, ctx);
            }
            if connection.outbox.push(Outgoing::Ping).is_err() {
                connection.close(close::SLOW_CONSUMER, ctx);
            }
        });
        ctx.run_interval(SEQ_SAVE_INTERVAL, |connection, ctx| {
            connection.save_seq(ctx)
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.registry.do_send(Unregister { id: self.id });
        if self.seq_seen > self.seq_saved {
            let publisher = self.publisher.clone();
            let (producer_id, seq) = (self.user.user_id, self.seq_seen);
            actix_web::rt::spawn(async move {
                let _ = publisher.save_seq_floor(producer_id, seq).await;
            });
        }
    }
}

impl StreamHandler<Result<AggregatedMessage, ProtocolError>> for ProducerConnection {
    fn handle(&mut self, item: Result<AggregatedMessage, ProtocolError>, ctx: &mut Context<Self>) {
        self.last_seen = Instant::now();
        match item {
            Ok(AggregatedMessage::Text(text)) => {
                self.on_frame(text.as_bytes(), Encoding::Json, ctx)
            }
            Ok(AggregatedMessage::Binary(bytes)) => {
                self.on_frame(&bytes, Encoding::MessagePack, ctx);
            }
            Ok(AggregatedMessage::Ping(bytes)) => {
                let _ = self.outbox.push(Outgoing::Pong(bytes));
            }
            Ok(AggregatedMessage::Pong(_)) => {}
            Ok(AggregatedMessage::Close(_)) => ctx.stop(),
            Err(ProtocolError::Io(error)) => {
                tracing::debug!(%error, "producer socket dropped");
                ctx.stop();
            }
            Err(error) => {
                tracing::debug!(%error, "producer socket protocol error");
                self.close(crate::stream::consumer::protocol_close(&error), ctx);
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<CloseConnection> for ProducerConnection {
    type Result = ();

    fn handle(&mut self, message: CloseConnection, ctx: &mut Context<Self>) {
        self.close(message.0, ctx);
    }
}

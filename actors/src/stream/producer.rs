//! ProducerConnection: one actor per producer socket.
//!
//! It decodes each frame, checks its size and the connection's rate, and publishes data
//! messages one at a time, in order, through the [`StreamPublisher`] (which stamps `seq`); only
//! then does it ack, with the subscriber count from memory. A message that could not be
//! published gets an `unavailable` error, never an ack.

use std::collections::VecDeque;
use std::time::Instant;

use actix::prelude::*;
use actix_ws::{AggregatedMessage, ProtocolError};
use nodegrid_protocol::stream::{ClientFrame, ServerFrame, StreamErrorCode};
use nodegrid_services::config::StreamLimits;
use nodegrid_services::identity::AuthUser;
use nodegrid_services::streams::publisher::StreamPublisher;
use nodegrid_services::streams::subscriptions::Subscriptions;

use crate::stream::metrics::{self, STREAM};
use crate::stream::outbox::Outbox;
use crate::stream::registry::{
    ProducerRegistry, Register, RegisteredConnection, SocketRole, Unregister,
};
use crate::stream::socket::{SocketActor, SocketCore};
use crate::stream::{
    CloseConnection, ConnectionId, TokenBucket, error_frame, next_connection_id, now_millis,
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
    core: SocketCore,
    publisher: StreamPublisher,
    subscriptions: Subscriptions,
    registry: Addr<ProducerRegistry>,
    rate: TokenBucket,
    pending: VecDeque<PendingMessage>,
    publishing: bool,
    seq_seen: u64,
    seq_saved: u64,
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
            core: SocketCore::new(SocketRole::Producer, parts.outbox, limits),
            publisher: parts.publisher,
            subscriptions: parts.subscriptions,
            registry: parts.registry,
            rate: TokenBucket::new(
                f64::from(limits.producer_rate_per_sec),
                f64::from(limits.producer_burst),
            ),
            pending: VecDeque::new(),
            publishing: false,
            seq_seen: parts.seq_floor,
            seq_saved: parts.seq_floor,
            stream: Some(parts.stream),
        }
    }

    fn handle_frame(&mut self, frame: ClientFrame, ctx: &mut Context<Self>) {
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
            let limits = self.core.limits();
            let message = format!(
                "limited to {} messages per second (burst {})",
                limits.producer_rate_per_sec, limits.producer_burst
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
                .publish(
                    producer_id,
                    now_millis(),
                    &message.payload_json,
                    message.id.as_deref(),
                    floor,
                )
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
                    if published.duplicate {
                        STREAM.duplicates.increment(1);
                    }
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
                stats: self.core.stats().clone(),
                queue: self.core.outbox().gauge(),
            },
        });
        ctx.run_interval(self.core.limits().ping_interval, |connection, ctx| {
            let outcome = connection.core.heartbeat();
            connection.or_close(outcome, ctx);
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

impl SocketActor for ProducerConnection {
    fn core(&mut self) -> &mut SocketCore {
        &mut self.core
    }

    fn on_frame(&mut self, frame: ClientFrame, ctx: &mut Context<Self>) {
        self.handle_frame(frame, ctx);
    }
}

impl StreamHandler<Result<AggregatedMessage, ProtocolError>> for ProducerConnection {
    fn handle(&mut self, item: Result<AggregatedMessage, ProtocolError>, ctx: &mut Context<Self>) {
        self.on_item(item, ctx);
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

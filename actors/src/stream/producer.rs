//! ProducerConnection: one actor per producer socket.
//!
//! It decodes each frame, checks the producer's rate, and queues data messages; the queue is
//! published in order through the [`StreamPublisher`] (which stamps `seq`), one Redis round
//! trip for all the messages that waited while the previous round trip was in flight. Only
//! then does it ack each message, with the subscriber count from memory. A message that could
//! not be published gets an `unavailable` error, never an ack.
//!
//! A producer that sends faster than Redis takes its messages is not refused: once its queue
//! holds [`PAUSE_MESSAGES`] messages or [`PAUSE_BYTES`] bytes, the socket is not read until the
//! queue is half empty, so TCP slows the sender down. Likewise a producer that does not read
//! its acks as fast as it sends is not read while its outbox is half full. A producer over its rate gets
//! `rate_limited` with a `retry_after_ms` hint and keeps its socket.

use std::collections::VecDeque;
use std::sync::Arc;

use actix::prelude::*;
use actix_web::web::Payload;
use nodegrid_protocol::stream::{ClientFrame, ServerFrame, StreamErrorCode};
use nodegrid_services::config::StreamLimits;
use nodegrid_services::identity::{AuthUser, Identity};
use nodegrid_services::streams::publisher::{
    OutgoingMessage, ProducerScript, PublishOutcome, PublishedBatch,
};
use nodegrid_services::streams::subscriptions::Subscriptions;

use crate::stream::ingest::Ingest;
use crate::stream::metrics::{STREAM, TOTALS};
use crate::stream::outbox::Outbox;
use crate::stream::registry::{
    ProducerRegistry, Register, RegisteredConnection, SocketRole, Unregister,
};
use crate::stream::socket::{SocketActor, SocketCore, TokenClock};
use crate::stream::ws::{ReadGate, WsError, WsItem, WsReader};
use crate::stream::{CloseConnection, ConnectionId, TokenBucket, next_connection_id, now_millis};

/// Accepted messages waiting to be published past which the socket is not read (or half the
/// socket's outbound buffer, if that is smaller: each waiting message is an ack to come, and
/// the reader also waits while the outbox is half full, so the acks always fit).
pub const PAUSE_MESSAGES: usize = 1_024;
/// Bytes of the same.
pub const PAUSE_BYTES: usize = 1024 * 1024;
/// Most messages published in one round trip.
const MAX_BATCH_MESSAGES: usize = 512;
/// Most bytes published in one round trip (a batch holds at least one message).
const MAX_BATCH_BYTES: usize = 512 * 1024;
/// How often the highest sequence number is saved to Postgres while the producer streams.
const SEQ_SAVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

pub struct ProducerConnection {
    id: ConnectionId,
    user: AuthUser,
    core: SocketCore,
    /// Shared with the round trips in flight (one reference count, not a deep clone, each).
    ingest: Arc<Ingest>,
    /// The publish script's fixed arguments for this producer, made once.
    script: Arc<ProducerScript>,
    subscriptions: Subscriptions,
    identity: Identity,
    registry: Addr<ProducerRegistry>,
    rate: TokenBucket,
    token: TokenClock,
    pending: VecDeque<OutgoingMessage>,
    pending_bytes: usize,
    /// The backlog (in messages) at which reading pauses.
    pause_messages: usize,
    publishing: bool,
    gate: ReadGate,
    seq_seen: u64,
    seq_saved: u64,
    reader: Option<WsReader<Payload>>,
}

pub struct ProducerParts {
    pub user: AuthUser,
    pub outbox: Outbox,
    pub reader: WsReader<Payload>,
    pub ingest: Ingest,
    pub subscriptions: Subscriptions,
    pub identity: Identity,
    pub registry: Addr<ProducerRegistry>,
    pub limits: StreamLimits,
    pub seq_floor: u64,
    /// When the socket's token expires, if expiry is enforced on open sockets.
    pub token_expires_at: Option<u64>,
}

impl ProducerConnection {
    pub fn new(parts: ProducerParts) -> ProducerConnection {
        let limits = parts.limits;
        let script = Arc::new(parts.ingest.publisher.script_for(parts.user.user_id));
        ProducerConnection {
            id: next_connection_id(),
            user: parts.user,
            core: SocketCore::new(SocketRole::Producer, parts.outbox, limits),
            script,
            ingest: Arc::new(parts.ingest),
            subscriptions: parts.subscriptions,
            identity: parts.identity,
            registry: parts.registry,
            rate: TokenBucket::new(
                f64::from(limits.producer_rate_per_sec),
                f64::from(limits.producer_burst),
            ),
            token: TokenClock::new(parts.token_expires_at),
            pending: VecDeque::new(),
            pending_bytes: 0,
            pause_messages: PAUSE_MESSAGES.min(limits.buffer_messages / 2).max(1),
            publishing: false,
            gate: parts.reader.gate(),
            seq_seen: parts.seq_floor,
            seq_saved: parts.seq_floor,
            reader: Some(parts.reader),
        }
    }

    fn on_data(&mut self, payload: serde_json::Value, id: Option<String>, ctx: &mut Context<Self>) {
        if let Err(wait) = self.rate.take() {
            let limits = self.core.limits();
            let message = format!(
                "limited to {} messages per second (burst {})",
                limits.producer_rate_per_sec, limits.producer_burst
            );
            return self.answer_error(StreamErrorCode::RateLimited, &message, id, Some(wait), ctx);
        }
        let payload_json = match serde_json::to_string(&payload) {
            Ok(json) => json,
            Err(error) => {
                let message = format!("payload cannot be encoded: {error}");
                return self.refuse_code(StreamErrorCode::BadFrame, &message, id, ctx);
            }
        };
        STREAM.producer.frames_in_data.increment(1);
        let message = OutgoingMessage::new(now_millis(), &payload_json, id);
        self.pending_bytes += message.len();
        self.pending.push_back(message);
        if self.pending.len() >= self.pause_messages || self.pending_bytes >= PAUSE_BYTES {
            self.gate.pause();
        }
        self.publish_next(ctx);
    }

    /// Publishes what is pending, if no round trip is in flight. One batch at a time keeps the
    /// producer's messages in order.
    fn publish_next(&mut self, ctx: &mut Context<Self>) {
        if self.publishing || self.pending.is_empty() {
            return;
        }
        if !self.ingest.publisher.is_connected() {
            let unpublished: Vec<OutgoingMessage> = self.pending.drain(..).collect();
            self.pending_bytes = 0;
            self.gate.resume();
            return self.refuse_unpublished(
                unpublished,
                "the message bus is unavailable; the message was not accepted",
                ctx,
            );
        }
        let mut batch = Vec::with_capacity(self.pending.len().min(MAX_BATCH_MESSAGES));
        let mut batch_bytes = 0;
        while let Some(message) = self.pending.front() {
            if !batch.is_empty()
                && (batch.len() >= MAX_BATCH_MESSAGES
                    || batch_bytes + message.len() > MAX_BATCH_BYTES)
            {
                break;
            }
            batch_bytes += message.len();
            if let Some(message) = self.pending.pop_front() {
                batch.push(message);
            }
        }
        self.publishing = true;
        let (ingest, script) = (self.ingest.clone(), self.script.clone());
        let floor = self.seq_seen;
        async move {
            let outcome = ingest.publish(&script, &batch, Some(floor)).await;
            (outcome, batch)
        }
        .into_actor(self)
        .map(move |(outcome, batch), connection, ctx| {
            connection.publishing = false;
            connection.pending_bytes = connection.pending_bytes.saturating_sub(batch_bytes);
            match outcome {
                Ok(published) => connection.acknowledge(batch, published, ctx),
                Err(error) => {
                    tracing::warn!(producer = connection.user.user_id, %error, "publish failed");
                    connection.refuse_unpublished(
                        batch,
                        "the message could not be published; it was not accepted",
                        ctx,
                    );
                }
            }
            if connection.gate.is_paused()
                && connection.pending.len() < connection.pause_messages.div_ceil(2)
                && connection.pending_bytes < PAUSE_BYTES / 2
            {
                connection.gate.resume();
            }
            connection.publish_next(ctx);
        })
        .spawn(ctx);
    }

    fn acknowledge(
        &mut self,
        batch: Vec<OutgoingMessage>,
        published: PublishedBatch,
        ctx: &mut Context<Self>,
    ) {
        let subscriber_count = self.subscriptions.subscriber_count(self.user.user_id);
        for (message, published) in batch.into_iter().zip(published.messages) {
            match published.outcome {
                PublishOutcome::Published { .. } => {}
                PublishOutcome::Duplicate => STREAM.duplicates.increment(1),
                PublishOutcome::RateLimited { retry_after_ms } => {
                    let limits = self.core.limits();
                    let text = format!(
                        "this producer is limited to {} messages per second (burst {}) across its sockets and the publish API",
                        limits.producer_rate_per_sec, limits.producer_burst
                    );
                    self.answer_error(
                        StreamErrorCode::RateLimited,
                        &text,
                        message.client_id,
                        Some(std::time::Duration::from_millis(retry_after_ms)),
                        ctx,
                    );
                    continue;
                }
            }
            self.seq_seen = self.seq_seen.max(published.seq);
            STREAM.acks.increment(1);
            TOTALS
                .acked
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.send(
                &ServerFrame::Ack {
                    subscriber_count,
                    seq: published.seq,
                    id: message.client_id,
                },
                ctx,
            );
        }
    }

    fn refuse_unpublished(
        &mut self,
        messages: Vec<OutgoingMessage>,
        reason: &str,
        ctx: &mut Context<Self>,
    ) {
        for message in messages {
            self.answer_error(
                StreamErrorCode::Unavailable,
                reason,
                message.client_id,
                None,
                ctx,
            );
        }
    }

    /// A `refresh` frame: a newer token of the same user keeps the socket open past the old
    /// token's expiry.
    fn refresh(&mut self, token: &str, ctx: &mut Context<Self>) {
        match self.identity.authenticate(token) {
            Ok(user) if user.user_id == self.user.user_id => {
                if self.token.expires_at().is_some() {
                    self.token.arm(user.expires_at, ctx);
                }
                let expires_at = user.expires_at;
                self.user = user;
                self.send(&ServerFrame::Refreshed { expires_at }, ctx);
            }
            Ok(_) => self.refuse_code(
                StreamErrorCode::Forbidden,
                "the token belongs to another user",
                None,
                ctx,
            ),
            Err(error) => self.answer_error(
                StreamErrorCode::TokenInvalid,
                &error.to_string(),
                None,
                None,
                ctx,
            ),
        }
    }

    fn save_seq(&mut self, ctx: &mut Context<Self>) {
        if self.seq_seen <= self.seq_saved {
            return;
        }
        let publisher = self.ingest.publisher.clone();
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
        if let Some(reader) = self.reader.take() {
            ctx.add_stream(reader);
        }
        let registration = Register {
            id: self.id,
            connection: RegisteredConnection {
                public_id: uuid::Uuid::new_v4(),
                user_id: self.user.user_id,
                username: self.user.username.clone(),
                session_id: self.user.session_id,
                connected_at: chrono::Utc::now(),
                close: ctx.address().recipient(),
                updates: None,
                stats: self.core.stats().clone(),
                queue: self.core.outbox().gauge(),
            },
        };
        self.register(&self.registry.clone(), registration, ctx);
        if let Some(expires_at) = self.token.expires_at() {
            self.token.arm(expires_at, ctx);
        }
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
            let publisher = self.ingest.publisher.clone();
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
        match frame {
            ClientFrame::Data { payload, id } => self.on_data(payload, id, ctx),
            ClientFrame::Refresh { token } => self.refresh(&token, ctx),
            ClientFrame::Subscribe { .. }
            | ClientFrame::Unsubscribe { .. }
            | ClientFrame::Resume { .. } => self.refuse_code(
                StreamErrorCode::Forbidden,
                "producers do not subscribe",
                None,
                ctx,
            ),
        }
    }
}

impl StreamHandler<Result<WsItem, WsError>> for ProducerConnection {
    fn handle(&mut self, item: Result<WsItem, WsError>, ctx: &mut Context<Self>) {
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

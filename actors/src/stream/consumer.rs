//! ConsumerSession: one actor per consumer socket.
//!
//! It holds the set of producers the consumer receives, asks the RedisBridge for their messages
//! (the bridge subscribes each producer channel once per instance), and queues each delivered
//! message on its outbox. A consumer that does not read fills its outbox and is closed with
//! 4008 `slow_consumer`; nobody else waits for it.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use actix::prelude::*;
use actix_ws::{AggregatedMessage, ProtocolError};
use nodegrid_protocol::stream::{ClientFrame, Encoding, ServerFrame, StreamErrorCode};
use nodegrid_services::config::StreamLimits;
use nodegrid_services::identity::AuthUser;
use nodegrid_services::streams::subscriptions::{SubscriptionError, Subscriptions};

use crate::bridge::{ChannelReady, RedisBridge, SubscribeLocal, UnsubscribeLocal};
use crate::stream::metrics::STREAM;
use crate::stream::outbox::{Outbox, Outgoing};
use crate::stream::registry::{
    Register, RegisteredConnection, SessionRegistry, SocketRole, SubscriptionUpdate, Unregister,
};
use crate::stream::socket::{SocketActor, SocketCore};
use crate::stream::{CloseConnection, ConnectionId, Deliver, error_frame, next_connection_id};

const ROLE: &str = "consumer";

pub struct ConsumerSession {
    id: ConnectionId,
    user: AuthUser,
    core: SocketCore,
    bridge: Addr<RedisBridge>,
    registry: Addr<SessionRegistry>,
    subscriptions: Subscriptions,
    receiving: HashSet<i64>,
    stream: Option<actix_ws::AggregatedMessageStream>,
}

pub struct ConsumerParts {
    pub user: AuthUser,
    pub outbox: Outbox,
    pub stream: actix_ws::AggregatedMessageStream,
    pub bridge: Addr<RedisBridge>,
    pub registry: Addr<SessionRegistry>,
    pub subscriptions: Subscriptions,
    pub limits: StreamLimits,
}

impl ConsumerSession {
    pub fn new(parts: ConsumerParts) -> ConsumerSession {
        ConsumerSession {
            id: next_connection_id(),
            user: parts.user,
            core: SocketCore::new(SocketRole::Consumer, parts.outbox, parts.limits),
            bridge: parts.bridge,
            registry: parts.registry,
            subscriptions: parts.subscriptions,
            receiving: HashSet::new(),
            stream: Some(parts.stream),
        }
    }

    /// Loads the consumer's subscriptions, after registering so that no change made meanwhile
    /// is missed (changes and the load merge: receiving is idempotent).
    fn load_subscriptions(&mut self, ctx: &mut Context<Self>) {
        let subscriptions = self.subscriptions.clone();
        let consumer_id = self.user.user_id;
        async move { subscriptions.producers_of(consumer_id).await }
            .into_actor(self)
            .map(|outcome, session, ctx| match outcome {
                Ok(producers) => {
                    for producer_id in producers {
                        session.receive(producer_id, ctx);
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "cannot load a consumer's subscriptions");
                    session.close((1011, "internal_error"), ctx);
                }
            })
            .wait(ctx);
    }

    /// Starts receiving a producer's messages (idempotent).
    fn receive(&mut self, producer_id: i64, ctx: &mut Context<Self>) {
        if !self.receiving.insert(producer_id) {
            return;
        }
        self.core
            .stats()
            .subscriptions
            .store(self.receiving.len() as u64, Ordering::Relaxed);
        self.ask_bridge(producer_id, ctx);
    }

    /// Asks the bridge for a producer's messages; it answers with `ChannelReady`.
    fn ask_bridge(&self, producer_id: i64, ctx: &mut Context<Self>) {
        let own = ctx.address();
        self.bridge.do_send(SubscribeLocal {
            producer_id,
            session: self.id,
            deliver: own.clone().recipient(),
            ready: own.clone().recipient(),
            close: own.recipient(),
        });
    }

    /// Like [`Self::receive`], and answers with a `subscribed` frame even when the session
    /// already received the producer: every `subscribe` frame gets its answer.
    fn receive_and_confirm(&mut self, producer_id: i64, ctx: &mut Context<Self>) {
        if self.receiving.contains(&producer_id) {
            // The bridge answers `ready` at once if the channel is subscribed, or when it is.
            self.ask_bridge(producer_id, ctx);
        } else {
            self.receive(producer_id, ctx);
        }
    }

    /// Stops receiving a producer's messages (idempotent).
    fn stop_receiving(&mut self, producer_id: i64, ctx: &mut Context<Self>) {
        if !self.receiving.remove(&producer_id) {
            return;
        }
        self.core
            .stats()
            .subscriptions
            .store(self.receiving.len() as u64, Ordering::Relaxed);
        self.bridge.do_send(UnsubscribeLocal {
            producer_id,
            session: self.id,
        });
        self.send(&ServerFrame::Unsubscribed { producer_id }, ctx);
    }

    fn handle_frame(&mut self, frame: ClientFrame, ctx: &mut Context<Self>) {
        match (frame.kind.as_str(), frame.producer_id) {
            ("subscribe", Some(producer_id)) => self.change(producer_id, true, ctx),
            ("unsubscribe", Some(producer_id)) => self.change(producer_id, false, ctx),
            ("subscribe" | "unsubscribe", None) => {
                self.refuse(
                    StreamErrorCode::BadFrame,
                    "producer_id is required",
                    frame.id,
                    ctx,
                );
            }
            ("data", _) => {
                self.refuse(
                    StreamErrorCode::Forbidden,
                    "consumers do not publish",
                    frame.id,
                    ctx,
                );
            }
            (other, _) => {
                let message = format!(
                    "unknown frame type {other:?}; consumers send \"subscribe\" or \"unsubscribe\""
                );
                self.refuse(StreamErrorCode::UnknownType, &message, frame.id, ctx);
            }
        }
    }

    /// A live `subscribe` / `unsubscribe` frame: the same durable change as the REST call.
    fn change(&mut self, producer_id: i64, active: bool, ctx: &mut Context<Self>) {
        STREAM.consumer.frames_in_subscription.increment(1);
        let subscriptions = self.subscriptions.clone();
        let consumer_id = self.user.user_id;
        async move {
            if active {
                subscriptions
                    .subscribe(consumer_id, producer_id)
                    .await
                    .map(|_| ())
            } else {
                subscriptions
                    .unsubscribe(consumer_id, producer_id)
                    .await
                    .map(|_| ())
            }
        }
        .into_actor(self)
        .map(move |outcome, session, ctx| match outcome {
            // The change also arrives as a control event; applying it here as well makes the
            // answer immediate on this socket.
            Ok(()) if active => session.receive_and_confirm(producer_id, ctx),
            Ok(()) => session.stop_receiving(producer_id, ctx),
            Err(SubscriptionError::ProducerNotFound(_)) => session.refuse(
                StreamErrorCode::ProducerNotFound,
                &format!("no producer {producer_id}"),
                None,
                ctx,
            ),
            Err(error) => {
                tracing::warn!(%error, producer_id, "live subscription change failed");
                crate::stream::metrics::error(ROLE, StreamErrorCode::Internal);
                let frame = error_frame(
                    StreamErrorCode::Internal,
                    "the subscription could not be changed",
                    None,
                );
                session.send(&frame, ctx);
            }
        })
        .spawn(ctx);
    }
}

impl Actor for ConsumerSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Deliveries queue here before the outbox; the bridge closes a session whose mailbox
        // is full (see RedisBridge::dispatch_stream).
        ctx.set_mailbox_capacity(self.core.limits().buffer_messages);
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
                updates: Some(ctx.address().recipient()),
                stats: self.core.stats().clone(),
                queue: self.core.outbox().gauge(),
            },
        });
        self.load_subscriptions(ctx);
        ctx.run_interval(self.core.limits().ping_interval, |session, ctx| {
            let outcome = session.core.heartbeat();
            session.or_close(outcome, ctx);
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.registry.do_send(Unregister { id: self.id });
        for producer_id in self.receiving.drain() {
            self.bridge.do_send(UnsubscribeLocal {
                producer_id,
                session: self.id,
            });
        }
    }
}

impl SocketActor for ConsumerSession {
    fn core(&mut self) -> &mut SocketCore {
        &mut self.core
    }

    fn on_frame(&mut self, frame: ClientFrame, ctx: &mut Context<Self>) {
        self.handle_frame(frame, ctx);
    }
}

impl StreamHandler<Result<AggregatedMessage, ProtocolError>> for ConsumerSession {
    fn handle(&mut self, item: Result<AggregatedMessage, ProtocolError>, ctx: &mut Context<Self>) {
        self.on_item(item, ctx);
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Deliver> for ConsumerSession {
    type Result = ();

    fn handle(&mut self, message: Deliver, ctx: &mut Context<Self>) {
        let item = message.0;
        // A message can still be on its way after an unsubscribe: drop it.
        if !self.receiving.contains(&item.producer_id) {
            return;
        }
        let outgoing = match self.core.encoding() {
            Encoding::Json => Outgoing::Text(item.json.clone()),
            Encoding::MessagePack => match item.msgpack() {
                Some(bytes) => Outgoing::Binary(bytes),
                None => return,
            },
        };
        STREAM.data_out.increment(1);
        STREAM.consumer.bytes_out.increment(item.json.len() as u64);
        self.push(outgoing, ctx);
    }
}

impl Handler<ChannelReady> for ConsumerSession {
    type Result = ();

    fn handle(&mut self, message: ChannelReady, ctx: &mut Context<Self>) {
        if self.receiving.contains(&message.producer_id) {
            self.send(
                &ServerFrame::Subscribed {
                    producer_id: message.producer_id,
                },
                ctx,
            );
        }
    }
}

impl Handler<SubscriptionUpdate> for ConsumerSession {
    type Result = ();

    fn handle(&mut self, update: SubscriptionUpdate, ctx: &mut Context<Self>) {
        if update.active {
            self.receive(update.producer_id, ctx);
        } else {
            self.stop_receiving(update.producer_id, ctx);
        }
    }
}

impl Handler<CloseConnection> for ConsumerSession {
    type Result = ();

    fn handle(&mut self, message: CloseConnection, ctx: &mut Context<Self>) {
        self.close(message.0, ctx);
    }
}

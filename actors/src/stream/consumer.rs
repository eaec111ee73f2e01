//! ConsumerSession: one actor per consumer socket.
//!
//! It holds the set of producers the consumer receives and asks the instance's fan-out for
//! their messages; the fan-out writes them straight into the session's outbox. A consumer that
//! does not read fills its outbox and is closed with 4008 `slow_consumer`; nobody else waits
//! for it.
//!
//! Resume: a consumer that comes back names, per producer, the last message it saw (a
//! `resume` frame, or `?resume=` when it connects); the fan-out sends it what history holds
//! after that, then live messages (see [`super::replay`]). Only producers it subscribes to.
//!
//! Subscription frames: every `subscribe` / `unsubscribe` frame gets exactly one answer
//! (`subscribed` / `unsubscribed`, or an error). Changes made elsewhere (the REST API, another
//! socket) and the subscriptions found at connect are announced only to consumers that asked
//! for them with `?events=subscriptions`; a Motience consumer sees data frames only.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use actix::prelude::*;
use actix_web::web::Payload;
use nodegrid_protocol::stream::{ClientFrame, ServerFrame, StreamErrorCode, close};
use nodegrid_services::config::StreamLimits;
use nodegrid_services::identity::{AuthUser, Identity};
use nodegrid_services::streams::subscriptions::{SubscriptionError, Subscriptions};

use crate::stream::fanout::{Attach, Detach, DetachAll, SessionSink, StreamFanout};
use crate::stream::metrics::STREAM;
use crate::stream::outbox::Outbox;
use crate::stream::registry::{
    Register, RegisteredConnection, SessionRegistry, SocketRole, SubscriptionUpdate, Unregister,
};
use crate::stream::replay::ResumeFrom;
use crate::stream::socket::{SocketActor, SocketCore, TokenClock};
use crate::stream::ws::{WsError, WsItem, WsReader};
use crate::stream::{CloseConnection, ConnectionId, next_connection_id};

pub struct ConsumerSession {
    id: ConnectionId,
    user: AuthUser,
    core: SocketCore,
    fanout: Addr<StreamFanout>,
    registry: Addr<SessionRegistry>,
    subscriptions: Subscriptions,
    identity: Identity,
    token: TokenClock,
    /// Producers this session receives.
    receiving: HashSet<i64>,
    /// Producers with a subscription frame in flight: its answer is that frame's, so a change
    /// event for the same producer is not announced a second time.
    frames_in_flight: HashSet<i64>,
    /// Whether the client asked for `subscribed`/`unsubscribed` frames about changes it did
    /// not make on this socket.
    subscription_events: bool,
    /// `?resume=` positions, applied when the subscriptions are loaded.
    resume_at_connect: HashMap<i64, ResumeFrom>,
    reader: Option<WsReader<Payload>>,
}

pub struct ConsumerParts {
    pub user: AuthUser,
    pub outbox: Outbox,
    pub reader: WsReader<Payload>,
    pub fanout: Addr<StreamFanout>,
    pub registry: Addr<SessionRegistry>,
    pub subscriptions: Subscriptions,
    pub identity: Identity,
    pub limits: StreamLimits,
    /// When the socket's token expires, if expiry is enforced on open sockets.
    pub token_expires_at: Option<u64>,
    pub subscription_events: bool,
    /// Positions to resume from, by producer (`?resume=`).
    pub resume: HashMap<i64, ResumeFrom>,
}

impl ConsumerSession {
    pub fn new(parts: ConsumerParts) -> ConsumerSession {
        ConsumerSession {
            id: next_connection_id(),
            user: parts.user,
            core: SocketCore::new(SocketRole::Consumer, parts.outbox, parts.limits),
            fanout: parts.fanout,
            registry: parts.registry,
            subscriptions: parts.subscriptions,
            identity: parts.identity,
            token: TokenClock::new(parts.token_expires_at),
            receiving: HashSet::new(),
            frames_in_flight: HashSet::new(),
            subscription_events: parts.subscription_events,
            resume_at_connect: parts.resume,
            reader: Some(parts.reader),
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
                        let announce = session.subscription_events;
                        let resume = session.resume_at_connect.remove(&producer_id);
                        session.receive(producer_id, announce, resume, ctx);
                    }
                    let unknown: Vec<i64> =
                        session.resume_at_connect.drain().map(|(p, _)| p).collect();
                    for producer_id in unknown {
                        session.not_subscribed(producer_id, ctx);
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "cannot load a consumer's subscriptions");
                    session.close(close::INTERNAL, ctx);
                }
            })
            .wait(ctx);
    }

    fn sink(&mut self, ctx: &mut Context<Self>) -> SessionSink {
        SessionSink {
            outbox: self.core.outbox().clone(),
            encoding: self.core.shared_encoding(),
            close: ctx.address().recipient(),
        }
    }

    /// Starts receiving a producer's messages (after `resume`, if given); false if it already
    /// did.
    fn receive(
        &mut self,
        producer_id: i64,
        announce: bool,
        resume: Option<ResumeFrom>,
        ctx: &mut Context<Self>,
    ) -> bool {
        if !self.receiving.insert(producer_id) {
            return false;
        }
        self.count_subscriptions();
        let sink = self.sink(ctx);
        self.fanout.do_send(Attach {
            producer_id,
            session: self.id,
            sink,
            announce,
            resume,
        });
        true
    }

    /// A `resume` frame: history after the position, then live. The messages this socket got
    /// live before the frame are not taken back: a client that wants each message once
    /// resumes as it connects (`?resume=`) or before the producer's first message arrives.
    fn resume(
        &mut self,
        producer_id: i64,
        since_seq: u64,
        epoch: Option<String>,
        ctx: &mut Context<Self>,
    ) {
        if !self.receiving.contains(&producer_id) {
            return self.not_subscribed(producer_id, ctx);
        }
        let sink = self.sink(ctx);
        self.fanout.do_send(Attach {
            producer_id,
            session: self.id,
            sink,
            announce: false,
            resume: Some(ResumeFrom { since_seq, epoch }),
        });
    }

    fn not_subscribed(&mut self, producer_id: i64, ctx: &mut Context<Self>) {
        self.answer_error(
            StreamErrorCode::NotSubscribed,
            &format!("this consumer does not subscribe to producer {producer_id}"),
            None,
            None,
            ctx,
        );
    }

    /// Stops receiving a producer's messages; false if it did not.
    fn stop_receiving(&mut self, producer_id: i64, announce: bool) -> bool {
        if !self.receiving.remove(&producer_id) {
            return false;
        }
        self.count_subscriptions();
        self.fanout.do_send(Detach {
            producer_id,
            session: self.id,
            announce,
        });
        true
    }

    fn count_subscriptions(&self) {
        self.core
            .stats()
            .subscriptions
            .store(self.receiving.len() as u64, Ordering::Relaxed);
    }

    /// A live `subscribe` / `unsubscribe` frame: the same durable change as the REST call,
    /// answered once.
    fn change(&mut self, producer_id: i64, active: bool, ctx: &mut Context<Self>) {
        STREAM.consumer.frames_in_subscription.increment(1);
        self.frames_in_flight.insert(producer_id);
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
        .map(move |outcome, session, ctx| {
            session.frames_in_flight.remove(&producer_id);
            match outcome {
                Ok(()) if active => {
                    if !session.receive(producer_id, true, None, ctx) {
                        // Already receiving (the change event came first): announce only.
                        let sink = session.sink(ctx);
                        session.fanout.do_send(Attach {
                            producer_id,
                            session: session.id,
                            sink,
                            announce: true,
                            resume: None,
                        });
                    }
                }
                Ok(()) => {
                    if !session.stop_receiving(producer_id, true) {
                        session.send(&ServerFrame::Unsubscribed { producer_id }, ctx);
                    }
                }
                Err(SubscriptionError::ProducerNotFound(_)) => session.answer_error(
                    StreamErrorCode::ProducerNotFound,
                    &format!("no producer {producer_id}"),
                    None,
                    None,
                    ctx,
                ),
                Err(SubscriptionError::Forbidden(reason)) => {
                    session.answer_error(StreamErrorCode::Forbidden, reason, None, None, ctx)
                }
                Err(error) => {
                    tracing::warn!(%error, producer_id, "live subscription change failed");
                    session.answer_error(
                        StreamErrorCode::Internal,
                        "the subscription could not be changed",
                        None,
                        None,
                        ctx,
                    );
                }
            }
        })
        .spawn(ctx);
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
}

impl Actor for ConsumerSession {
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
                updates: Some(ctx.address().recipient()),
                stats: self.core.stats().clone(),
                queue: self.core.outbox().gauge(),
            },
        };
        self.register(&self.registry.clone(), registration, ctx);
        if let Some(expires_at) = self.token.expires_at() {
            self.token.arm(expires_at, ctx);
        }
        self.load_subscriptions(ctx);
        ctx.run_interval(self.core.limits().ping_interval, |session, ctx| {
            let outcome = session.core.heartbeat();
            session.or_close(outcome, ctx);
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.registry.do_send(Unregister { id: self.id });
        self.fanout.do_send(DetachAll {
            session: self.id,
            producers: self.receiving.drain().collect(),
        });
    }
}

impl SocketActor for ConsumerSession {
    fn core(&mut self) -> &mut SocketCore {
        &mut self.core
    }

    fn on_frame(&mut self, frame: ClientFrame, ctx: &mut Context<Self>) {
        match frame {
            ClientFrame::Subscribe { producer_id } => self.change(producer_id, true, ctx),
            ClientFrame::Unsubscribe { producer_id } => self.change(producer_id, false, ctx),
            ClientFrame::Refresh { token } => self.refresh(&token, ctx),
            ClientFrame::Resume {
                producer_id,
                since_seq,
                epoch,
            } => self.resume(producer_id, since_seq, epoch, ctx),
            ClientFrame::Data { id, .. } => self.refuse_code(
                StreamErrorCode::Forbidden,
                "consumers do not publish",
                id,
                ctx,
            ),
        }
    }
}

impl StreamHandler<Result<WsItem, WsError>> for ConsumerSession {
    fn handle(&mut self, item: Result<WsItem, WsError>, ctx: &mut Context<Self>) {
        self.on_item(item, ctx);
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<SubscriptionUpdate> for ConsumerSession {
    type Result = ();

    fn handle(&mut self, update: SubscriptionUpdate, ctx: &mut Context<Self>) {
        let announce =
            self.subscription_events && !self.frames_in_flight.contains(&update.producer_id);
        if update.active {
            self.receive(update.producer_id, announce, None, ctx);
        } else {
            self.stop_receiving(update.producer_id, announce);
        }
    }
}

impl Handler<CloseConnection> for ConsumerSession {
    type Result = ();

    fn handle(&mut self, message: CloseConnection, ctx: &mut Context<Self>) {
        self.close(message.0, ctx);
    }
}

//! The registries of live sockets: one for producer connections, one for consumer sessions.
//!
//! A registry holds each socket's `Recipient`s and shared counters, never the socket itself. It
//! is what the admin view asks, what closes a blocked user's sockets, what tells a consumer's
//! sessions on this instance that its subscriptions changed, and what closes every socket when
//! the server shuts down.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use nodegrid_protocol::control::ControlEvent;
use nodegrid_protocol::stream::{ConnectionInfo, close};

use crate::bridge::{ControlMessage, RedisBridge, RegisterControlListener};
use crate::stream::outbox::QueueGauge;
use crate::stream::presence::Presence;
use crate::stream::{CloseConnection, ConnectionId, ConnectionStats, metrics};

/// Which sockets a registry keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketRole {
    Producer,
    Consumer,
}

impl SocketRole {
    pub const fn as_str(self) -> &'static str {
        match self {
            SocketRole::Producer => "producer",
            SocketRole::Consumer => "consumer",
        }
    }
}

/// Tells a consumer session that one of its subscriptions was created or removed.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct SubscriptionUpdate {
    pub producer_id: i64,
    pub active: bool,
}

/// What a registry knows of one socket.
pub struct RegisteredConnection {
    /// The id admins see and disconnect by: unique across instances.
    pub public_id: uuid::Uuid,
    pub user_id: i64,
    pub username: String,
    /// The login session (refresh-token family) of the token the socket opened with.
    pub session_id: uuid::Uuid,
    pub connected_at: DateTime<Utc>,
    pub close: Recipient<CloseConnection>,
    /// Consumers only.
    pub updates: Option<Recipient<SubscriptionUpdate>>,
    pub stats: Arc<ConnectionStats>,
    pub queue: Arc<QueueGauge>,
}

/// Registers a socket; answers false (and keeps nothing) when its user already has the most
/// sockets allowed, so that the socket closes itself.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Register {
    pub id: ConnectionId,
    pub connection: RegisteredConnection,
}

/// How many sockets a user has open here.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CountUserSockets {
    pub user_id: i64,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Unregister {
    pub id: ConnectionId,
}

/// The registry's sockets, for the admin view.
#[derive(Message)]
#[rtype(result = "Vec<ConnectionInfo>")]
pub struct Snapshot;

/// Closes every socket (server shutdown); answers how many were open.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CloseAll(pub (u16, &'static str));

/// One registry; the instance runs two (see [`SocketRole`]).
pub struct ConnectionRegistry {
    role: SocketRole,
    instance: String,
    /// Most sockets one user may have open on this instance (0: no limit).
    max_per_user: usize,
    bridge: Addr<RedisBridge>,
    connections: HashMap<ConnectionId, RegisteredConnection>,
    by_user: HashMap<i64, HashSet<ConnectionId>>,
    /// Producers: their device nodes follow their first socket opening and last one closing.
    presence: Option<Presence>,
}

/// The registry of producer connections.
pub type ProducerRegistry = ConnectionRegistry;
/// The registry of consumer sessions.
pub type SessionRegistry = ConnectionRegistry;

impl ConnectionRegistry {
    pub fn start(
        role: SocketRole,
        instance: String,
        max_per_user: usize,
        bridge: Addr<RedisBridge>,
        presence: Option<Presence>,
    ) -> Addr<ConnectionRegistry> {
        Supervisor::start(move |_| ConnectionRegistry {
            role,
            instance,
            max_per_user,
            bridge,
            connections: HashMap::new(),
            by_user: HashMap::new(),
            presence: presence.clone(),
        })
    }

    fn close_user(&self, user_id: i64, reason: (u16, &'static str)) {
        for id in self.by_user.get(&user_id).into_iter().flatten() {
            if let Some(connection) = self.connections.get(id) {
                connection.close.do_send(CloseConnection(reason));
            }
        }
    }

    fn update_gauge(&self) {
        let gauge = match self.role {
            SocketRole::Producer => &metrics::STREAM.producer.connections,
            SocketRole::Consumer => &metrics::STREAM.consumer.connections,
        };
        gauge.set(self.connections.len() as f64);
    }
}

impl Actor for ConnectionRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.bridge
            .do_send(RegisterControlListener(ctx.address().recipient()));
    }
}

impl Supervised for ConnectionRegistry {
    fn restarting(&mut self, _: &mut Context<Self>) {
        metrics_restart(self.role);
    }
}

fn metrics_restart(role: SocketRole) {
    ::metrics::counter!(crate::metrics::ACTOR_RESTARTS_TOTAL, "actor" => match role {
        SocketRole::Producer => "producer_registry",
        SocketRole::Consumer => "session_registry",
    })
    .increment(1);
}

impl Handler<Register> for ConnectionRegistry {
    type Result = bool;

    fn handle(&mut self, message: Register, _: &mut Context<Self>) -> bool {
        let sockets = self.by_user.entry(message.connection.user_id).or_default();
        if self.max_per_user > 0 && sockets.len() >= self.max_per_user {
            return false;
        }
        let first = sockets.is_empty();
        sockets.insert(message.id);
        if first && let Some(presence) = &self.presence {
            presence.set(&message.connection.username, true);
        }
        self.connections.insert(message.id, message.connection);
        self.update_gauge();
        true
    }
}

impl Handler<CountUserSockets> for ConnectionRegistry {
    type Result = usize;

    fn handle(&mut self, message: CountUserSockets, _: &mut Context<Self>) -> usize {
        self.by_user.get(&message.user_id).map_or(0, HashSet::len)
    }
}

impl Handler<Unregister> for ConnectionRegistry {
    type Result = ();

    fn handle(&mut self, message: Unregister, _: &mut Context<Self>) {
        if let Some(connection) = self.connections.remove(&message.id)
            && let Some(ids) = self.by_user.get_mut(&connection.user_id)
        {
            ids.remove(&message.id);
            if ids.is_empty() {
                self.by_user.remove(&connection.user_id);
                if let Some(presence) = &self.presence {
                    presence.set(&connection.username, false);
                }
            }
        }
        self.update_gauge();
    }
}

impl Handler<Snapshot> for ConnectionRegistry {
    type Result = MessageResult<Snapshot>;

    fn handle(&mut self, _: Snapshot, _: &mut Context<Self>) -> Self::Result {
        let mut connections: Vec<ConnectionInfo> = self
            .connections
            .values()
            .map(|connection| ConnectionInfo {
                id: connection.public_id,
                kind: self.role.as_str().to_owned(),
                user_id: connection.user_id,
                username: connection.username.clone(),
                instance: self.instance.clone(),
                connected_at: connection.connected_at,
                frames_in: connection.stats.frames_in.load(Ordering::Relaxed),
                frames_out: connection.queue.frames_out.load(Ordering::Relaxed),
                buffered_messages: connection.queue.messages.load(Ordering::Relaxed),
                buffered_bytes: connection.queue.bytes.load(Ordering::Relaxed),
                subscriptions: (self.role == SocketRole::Consumer)
                    .then(|| connection.stats.subscriptions.load(Ordering::Relaxed)),
            })
            .collect();
        connections.sort_by_key(|connection| (connection.connected_at, connection.user_id));
        MessageResult(connections)
    }
}

impl Handler<CloseAll> for ConnectionRegistry {
    type Result = usize;

    fn handle(&mut self, message: CloseAll, _: &mut Context<Self>) -> usize {
        for connection in self.connections.values() {
            connection.close.do_send(CloseConnection(message.0));
        }
        self.connections.len()
    }
}

impl Handler<ControlMessage> for ConnectionRegistry {
    type Result = ();

    fn handle(&mut self, message: ControlMessage, _: &mut Context<Self>) {
        match message.0.event {
            ControlEvent::UserBlocked { user_id, .. } => {
                self.close_user(user_id, close::USER_BLOCKED);
            }
            ControlEvent::ConnectionDisconnected { connection_id } => {
                if let Some(connection) = self
                    .connections
                    .values()
                    .find(|connection| connection.public_id == connection_id)
                {
                    connection
                        .close
                        .do_send(CloseConnection(close::DISCONNECTED));
                }
            }
            ControlEvent::SessionRevoked {
                user_id,
                session_id,
            } => {
                for id in self.by_user.get(&user_id).into_iter().flatten() {
                    if let Some(connection) = self
                        .connections
                        .get(id)
                        .filter(|connection| connection.session_id == session_id)
                    {
                        connection
                            .close
                            .do_send(CloseConnection(close::SESSION_ENDED));
                    }
                }
            }
            ControlEvent::SubscriptionChanged {
                consumer_id,
                producer_id,
                active,
            } if self.role == SocketRole::Consumer => {
                for id in self.by_user.get(&consumer_id).into_iter().flatten() {
                    if let Some(updates) = self
                        .connections
                        .get(id)
                        .and_then(|connection| connection.updates.as_ref())
                    {
                        updates.do_send(SubscriptionUpdate {
                            producer_id,
                            active,
                        });
                    }
                }
            }
            _ => {}
        }
    }
}

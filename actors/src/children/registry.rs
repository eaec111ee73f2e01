//! The ChildRegistry actor: this instance's children with a control socket, a [`ChildNode`]
//! each, and the admin queries about children.
//!
//! It alone hears the instance's pushes (one broadcast receiver, not one per socket) and hands
//! each to the nodes of its audience: every node, a client's, or one child's. It records in
//! Redis where each child is connected, so that any instance answers an admin with where a
//! child's socket is; the child's row (written by every heartbeat, on the mother's clock) is
//! the rest of its live state, the one view the instances and the leader's sweep share.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use nodegrid_protocol::children::admin::{ChildControl, ChildLiveness, ChildView};
use nodegrid_protocol::children::control::ControlPush;
use nodegrid_services::children::presence::ControlSocket;
use nodegrid_services::children::{
    Audience, CHILD_CONTROL_SOCKETS, CHILD_PUSHES_MISSED_TOTAL, Children, ChildrenError, Push,
    Pushed,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use uuid::Uuid;

use crate::children::node::{
    AttachSocket, ChildNode, CloseNode, ControlOut, Deliver, DetachSocket, SOCKET_QUEUE,
};

/// How often this instance records its sockets again, in case Redis lost them (a restart).
const PRESENCE_REFRESH: Duration = Duration::from_secs(30);

struct NodeEntry {
    client_id: i64,
    node: Addr<ChildNode>,
    sockets: Vec<ControlSocket>,
}

pub struct ChildRegistry {
    children: Children,
    instance: String,
    nodes: HashMap<Uuid, NodeEntry>,
    by_client: HashMap<i64, HashSet<Uuid>>,
    next_socket: u64,
}

impl ChildRegistry {
    pub fn start(children: Children, instance: String) -> Addr<ChildRegistry> {
        ChildRegistry {
            children,
            instance,
            nodes: HashMap::new(),
            by_client: HashMap::new(),
            next_socket: 0,
        }
        .start()
    }

    fn sockets(&self) -> impl Iterator<Item = &ControlSocket> {
        self.nodes.values().flat_map(|entry| &entry.sockets)
    }

    fn count_sockets(&self) {
        metrics::gauge!(CHILD_CONTROL_SOCKETS).set(self.sockets().count() as f64);
    }

    fn deliver(&self, pushed: &Pushed) {
        let send = |child: &Uuid| {
            if let Some(entry) = self.nodes.get(child) {
                entry.node.do_send(Deliver(pushed.push.clone()));
            }
        };
        match pushed.audience {
            Audience::All => self.nodes.keys().for_each(send),
            Audience::Client(client) => self
                .by_client
                .get(&client)
                .into_iter()
                .flatten()
                .for_each(send),
            Audience::Child(child) => send(&child),
        }
    }

    /// Records sockets in Redis, in the background; a failure waits for the next refresh.
    fn record(&self, sockets: Vec<ControlSocket>, ctx: &mut Context<Self>) {
        if sockets.is_empty() {
            return;
        }
        let children = self.children.clone();
        ctx.spawn(
            async move {
                if let Err(error) = children.record_controls(&sockets).await {
                    tracing::debug!(%error, "could not record where children are connected");
                }
            }
            .into_actor(self),
        );
    }

    /// Where each of `views`' children is connected: this instance's sockets as it holds them,
    /// the others' as recorded.
    fn locate(&self, views: &mut [ChildView], recorded: HashMap<Uuid, ChildControl>) {
        for view in views {
            view.control = match self
                .nodes
                .get(&view.id)
                .and_then(|entry| entry.sockets.last())
            {
                Some(socket) => Some(ChildControl {
                    instance: self.instance.clone(),
                    connected_at: socket.connected_at,
                }),
                None => recorded
                    .get(&view.id)
                    .filter(|control| control.instance != self.instance)
                    .cloned(),
            };
        }
    }
}

impl Actor for ChildRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.add_stream(BroadcastStream::new(self.children.subscribe_pushes()));
        ctx.run_interval(PRESENCE_REFRESH, |registry, ctx| {
            let sockets = registry.sockets().copied().collect();
            registry.record(sockets, ctx);
        });
    }
}

impl StreamHandler<Result<Arc<Pushed>, BroadcastStreamRecvError>> for ChildRegistry {
    fn handle(
        &mut self,
        item: Result<Arc<Pushed>, BroadcastStreamRecvError>,
        _: &mut Context<Self>,
    ) {
        match item {
            Ok(pushed) => self.deliver(&pushed),
            Err(BroadcastStreamRecvError::Lagged(missed)) => {
                // What was missed is in the lease: every child is told to heartbeat now.
                metrics::counter!(CHILD_PUSHES_MISSED_TOTAL).increment(missed);
                tracing::warn!(
                    missed,
                    "the child registry fell behind its pushes; asking every child for a heartbeat"
                );
                self.deliver(&Pushed {
                    audience: Audience::All,
                    push: Push::Frame(ControlPush::Lease),
                });
            }
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {
        // The broadcast ends only with the `Children` it belongs to, at shutdown.
    }
}

/// What the control socket handler gets: the socket's frames, and a guard that tells the
/// registry when the socket goes.
pub struct ChildSocket {
    pub frames: mpsc::Receiver<ControlOut>,
    /// Set when the node let the socket go for falling behind.
    pub lagged: Arc<AtomicBool>,
    pub guard: SocketGuard,
}

/// Detaches the socket when dropped (the socket ended, however it ended).
pub struct SocketGuard {
    registry: Addr<ChildRegistry>,
    child_id: Uuid,
    socket: u64,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.registry.do_send(DetachControl {
            child_id: self.child_id,
            socket: self.socket,
        });
    }
}

/// A control socket of `child_id` (of `client_id`) opened on this instance.
#[derive(Message)]
#[rtype(result = "ChildSocket")]
pub struct AttachControl {
    pub child_id: Uuid,
    pub client_id: i64,
}

impl Handler<AttachControl> for ChildRegistry {
    type Result = MessageResult<AttachControl>;

    fn handle(&mut self, message: AttachControl, ctx: &mut Context<Self>) -> Self::Result {
        self.next_socket += 1;
        let socket = ControlSocket {
            child_id: message.child_id,
            socket: self.next_socket,
            connected_at: Utc::now(),
        };
        let children = self.children.clone();
        let entry = self
            .nodes
            .entry(message.child_id)
            .or_insert_with(|| NodeEntry {
                client_id: message.client_id,
                node: ChildNode::new(message.child_id, children).start(),
                sockets: Vec::new(),
            });
        entry.sockets.push(socket);
        let (sender, frames) = mpsc::channel(SOCKET_QUEUE);
        let lagged = Arc::new(AtomicBool::new(false));
        entry.node.do_send(AttachSocket {
            socket: socket.socket,
            sender,
            lagged: lagged.clone(),
        });
        self.by_client
            .entry(message.client_id)
            .or_default()
            .insert(message.child_id);
        self.count_sockets();
        self.record(vec![socket], ctx);
        MessageResult(ChildSocket {
            frames,
            lagged,
            guard: SocketGuard {
                registry: ctx.address(),
                child_id: message.child_id,
                socket: socket.socket,
            },
        })
    }
}

/// A control socket closed.
#[derive(Message)]
#[rtype(result = "()")]
struct DetachControl {
    child_id: Uuid,
    socket: u64,
}

impl Handler<DetachControl> for ChildRegistry {
    type Result = ();

    fn handle(&mut self, message: DetachControl, ctx: &mut Context<Self>) {
        let Some(entry) = self.nodes.get_mut(&message.child_id) else {
            return;
        };
        let Some(position) = entry
            .sockets
            .iter()
            .position(|socket| socket.socket == message.socket)
        else {
            return;
        };
        let socket = entry.sockets.remove(position);
        entry.node.do_send(DetachSocket {
            socket: message.socket,
        });
        if entry.sockets.is_empty() {
            entry.node.do_send(CloseNode(0, ""));
            let client_id = entry.client_id;
            self.nodes.remove(&message.child_id);
            if let Some(children) = self.by_client.get_mut(&client_id) {
                children.remove(&message.child_id);
                if children.is_empty() {
                    self.by_client.remove(&client_id);
                }
            }
        }
        self.count_sockets();
        let children = self.children.clone();
        ctx.spawn(
            async move {
                if let Err(error) = children.withdraw_control(&socket).await {
                    tracing::debug!(%error, "could not withdraw a closed control socket");
                }
            }
            .into_actor(self),
        );
    }
}

/// Closes every control socket (the instance is shutting down); answers how many.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CloseControls(pub (u16, &'static str));

impl Handler<CloseControls> for ChildRegistry {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, message: CloseControls, _: &mut Context<Self>) -> Self::Result {
        let (code, reason) = message.0;
        let sockets: Vec<ControlSocket> = self.sockets().copied().collect();
        for entry in self.nodes.values() {
            entry.node.do_send(CloseNode(code, reason));
        }
        self.nodes.clear();
        self.by_client.clear();
        self.count_sockets();
        let children = self.children.clone();
        Box::pin(async move {
            for socket in &sockets {
                if children.withdraw_control(socket).await.is_err() {
                    break;
                }
            }
            sockets.len()
        })
    }
}

/// `GET /api/admin/children` (and a client's): a page of children with where each is
/// connected, and how many match.
#[derive(Message)]
#[rtype(result = "Result<(Vec<ChildView>, u64), ChildrenError>")]
pub struct ListChildren {
    pub client_id: Option<i64>,
    pub liveness: Option<ChildLiveness>,
    pub limit: i64,
    pub offset: i64,
}

impl Handler<ListChildren> for ChildRegistry {
    type Result = ResponseActFuture<Self, Result<(Vec<ChildView>, u64), ChildrenError>>;

    fn handle(&mut self, message: ListChildren, _: &mut Context<Self>) -> Self::Result {
        let children = self.children.clone();
        Box::pin(
            async move {
                let (views, total) = children
                    .list_children(
                        message.client_id,
                        message.liveness,
                        message.limit,
                        message.offset,
                    )
                    .await?;
                let recorded = recorded_controls(&children, &views).await;
                Ok::<_, ChildrenError>((views, total, recorded))
            }
            .into_actor(self)
            .map(|result, registry, _| {
                let (mut views, total, recorded) = result?;
                registry.locate(&mut views, recorded);
                Ok((views, total))
            }),
        )
    }
}

/// `GET /api/admin/children/{id}`: one child with where it is connected.
#[derive(Message)]
#[rtype(result = "Result<ChildView, ChildrenError>")]
pub struct GetChild(pub Uuid);

impl Handler<GetChild> for ChildRegistry {
    type Result = ResponseActFuture<Self, Result<ChildView, ChildrenError>>;

    fn handle(&mut self, message: GetChild, _: &mut Context<Self>) -> Self::Result {
        let children = self.children.clone();
        Box::pin(
            async move {
                let view = children.get_child(message.0).await?;
                let recorded = recorded_controls(&children, std::slice::from_ref(&view)).await;
                Ok::<_, ChildrenError>((view, recorded))
            }
            .into_actor(self)
            .map(|result, registry, _| {
                let (view, recorded) = result?;
                let mut views = [view];
                registry.locate(&mut views, recorded);
                let [view] = views;
                Ok(view)
            }),
        )
    }
}

/// Where the other instances recorded these children; nothing (this instance's own still
/// answer) when Redis cannot say.
async fn recorded_controls(
    children: &Children,
    views: &[ChildView],
) -> HashMap<Uuid, ChildControl> {
    let ids: Vec<Uuid> = views.iter().map(|view| view.id).collect();
    match children.controls_of(&ids).await {
        Ok(recorded) => recorded,
        Err(error) => {
            tracing::warn!(%error, "cannot read where children are connected");
            HashMap::new()
        }
    }
}

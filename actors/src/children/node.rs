//! The ChildNode actor: one per child that holds a control socket on this instance. A push for
//! the child is signed here once and queued to each of its sockets; a socket whose queue is full
//! is let go (it is told `lagged`; its child reconnects and heartbeats), and a revoked or
//! rotated key ends every socket. The registry starts a node with the child's first socket and
//! stops it with the last.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix::prelude::*;
use bytes::Bytes;
use nodegrid_services::children::{Children, Push};
use tokio::sync::mpsc;
use uuid::Uuid;

/// Frames a control socket may have waiting before it is let go. Pushes are rare (an admin's
/// action), so a socket this far behind is not reading.
pub const SOCKET_QUEUE: usize = 64;

/// What a control socket sends next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlOut {
    /// A signed `ControlFrame`, as JSON text.
    Frame(Bytes),
    /// A close frame with this code and reason; nothing after it.
    Close(u16, &'static str),
}

/// The node's end of a socket.
struct SocketQueue {
    socket: u64,
    sender: mpsc::Sender<ControlOut>,
    /// Set when the node let the socket go for falling behind.
    lagged: Arc<AtomicBool>,
}

pub struct ChildNode {
    child_id: Uuid,
    children: Children,
    sockets: Vec<SocketQueue>,
}

impl ChildNode {
    pub fn new(child_id: Uuid, children: Children) -> ChildNode {
        ChildNode {
            child_id,
            children,
            sockets: Vec::new(),
        }
    }

    fn send_all(&mut self, out: ControlOut) {
        let child_id = self.child_id;
        self.sockets.retain(|queue| match queue.sender.try_send(out.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                queue.lagged.store(true, Ordering::Relaxed);
                tracing::warn!(child = %child_id, "a control socket fell behind; letting it go");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }
}

impl Actor for ChildNode {
    type Context = Context<Self>;
}

/// A socket of the node's child opened: frames for it go to `sender`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AttachSocket {
    pub socket: u64,
    pub sender: mpsc::Sender<ControlOut>,
    pub lagged: Arc<AtomicBool>,
}

impl Handler<AttachSocket> for ChildNode {
    type Result = ();

    fn handle(&mut self, message: AttachSocket, _: &mut Context<Self>) {
        self.sockets.push(SocketQueue {
            socket: message.socket,
            sender: message.sender,
            lagged: message.lagged,
        });
    }
}

/// A socket closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DetachSocket {
    pub socket: u64,
}

impl Handler<DetachSocket> for ChildNode {
    type Result = ();

    fn handle(&mut self, message: DetachSocket, _: &mut Context<Self>) {
        self.sockets.retain(|queue| queue.socket != message.socket);
    }
}

/// A push for this child (the registry picked the audience).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver(pub Push);

impl Handler<Deliver> for ChildNode {
    type Result = ();

    fn handle(&mut self, message: Deliver, _: &mut Context<Self>) {
        match message.0 {
            Push::Close => self.send_all(ControlOut::Close(4001, "key_revoked")),
            Push::Frame(frame) => match self.children.sign_frame(self.child_id, &frame) {
                Ok(text) => self.send_all(ControlOut::Frame(Bytes::from(text))),
                Err(error) => {
                    tracing::error!(child = %self.child_id, %error, "cannot sign a control frame")
                }
            },
        }
    }
}

/// Ends every socket with this close (the instance is shutting down) and stops.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseNode(pub u16, pub &'static str);

impl Handler<CloseNode> for ChildNode {
    type Result = ();

    fn handle(&mut self, message: CloseNode, ctx: &mut Context<Self>) {
        if message.0 != 0 {
            self.send_all(ControlOut::Close(message.0, message.1));
        }
        ctx.stop();
    }
}

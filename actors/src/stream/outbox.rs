//! A socket's outbound side: a bounded queue in front of the WebSocket writer.
//!
//! The connection's actor never waits on the network: it pushes frames into the queue and goes
//! on. A writer task drains the queue into the socket at the pace the client reads. When the
//! client does not read, the queue fills; a push past its message or byte limit fails, and the
//! actor closes the connection (a slow consumer), so one stalled client never holds up the
//! delivery to any other.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_ws::{CloseCode, CloseReason, Session};
use bytes::Bytes;
use bytestring::ByteString;
use tokio::sync::{mpsc, oneshot};

/// How long a close frame may wait behind unread data before the connection is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// One frame to write.
#[derive(Debug, Clone)]
pub enum Outgoing {
    Text(ByteString),
    Binary(Bytes),
    Ping,
    Pong(Bytes),
}

impl Outgoing {
    fn len(&self) -> u64 {
        match self {
            Outgoing::Text(text) => text.len() as u64,
            Outgoing::Binary(bytes) => bytes.len() as u64,
            Outgoing::Ping => 0,
            Outgoing::Pong(bytes) => bytes.len() as u64,
        }
    }
}

/// The queue is full: the client is not reading fast enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

/// What is waiting to be written, shared with the registries for the admin view.
#[derive(Debug, Default)]
pub struct QueueGauge {
    pub messages: AtomicU64,
    pub bytes: AtomicU64,
    pub frames_out: AtomicU64,
}

pub struct Outbox {
    frames: mpsc::Sender<Outgoing>,
    close: Option<oneshot::Sender<(u16, &'static str)>>,
    gauge: Arc<QueueGauge>,
    max_bytes: u64,
}

impl Outbox {
    /// Starts the writer task for `session`, on the current arbiter.
    pub fn start(session: Session, max_messages: usize, max_bytes: u64) -> Outbox {
        let (frames_tx, frames_rx) = mpsc::channel(max_messages.max(1));
        let (close_tx, close_rx) = oneshot::channel();
        let gauge = Arc::new(QueueGauge::default());
        actix_web::rt::spawn(write(session, frames_rx, close_rx, gauge.clone()));
        Outbox {
            frames: frames_tx,
            close: Some(close_tx),
            gauge,
            max_bytes,
        }
    }

    /// Queues a frame, or fails when the queue is over its message or byte limit.
    pub fn push(&self, frame: Outgoing) -> Result<(), Overflow> {
        let length = frame.len();
        if self.gauge.bytes.load(Ordering::Relaxed) + length > self.max_bytes {
            return Err(Overflow);
        }
        self.frames.try_send(frame).map_err(|_| Overflow)?;
        self.gauge.messages.fetch_add(1, Ordering::Relaxed);
        self.gauge.bytes.fetch_add(length, Ordering::Relaxed);
        Ok(())
    }

    /// Drops what is still queued and closes the socket with `code` and `reason`.
    pub fn close(&mut self, (code, reason): (u16, &'static str)) {
        if let Some(close) = self.close.take() {
            let _ = close.send((code, reason));
        }
    }

    pub fn gauge(&self) -> Arc<QueueGauge> {
        self.gauge.clone()
    }
}

async fn write(
    mut session: Session,
    mut frames: mpsc::Receiver<Outgoing>,
    mut close: oneshot::Receiver<(u16, &'static str)>,
    gauge: Arc<QueueGauge>,
) {
    let closing = loop {
        let frame = tokio::select! {
            biased;
            request = &mut close => break request.ok(),
            next = frames.recv() => match next {
                Some(frame) => frame,
                None => break None,
            },
        };
        gauge.messages.fetch_sub(1, Ordering::Relaxed);
        gauge.bytes.fetch_sub(frame.len(), Ordering::Relaxed);
        // The send waits while the client does not read; a close request must still get through.
        let send = async {
            match frame {
                Outgoing::Text(text) => session.text(text).await,
                Outgoing::Binary(bytes) => session.binary(bytes).await,
                Outgoing::Ping => session.ping(b"").await,
                Outgoing::Pong(bytes) => session.pong(&bytes).await,
            }
        };
        tokio::select! {
            biased;
            request = &mut close => break request.ok(),
            sent = send => {
                if sent.is_err() {
                    return;
                }
                gauge.frames_out.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    frames.close();
    gauge.messages.store(0, Ordering::Relaxed);
    gauge.bytes.store(0, Ordering::Relaxed);
    let reason = closing.map(|(code, description)| CloseReason {
        code: CloseCode::from(code),
        description: Some(description.to_owned()),
    });
    // Behind unread data the close frame waits for the client; a client that never reads is
    // dropped without it.
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, session.close(reason)).await;
}

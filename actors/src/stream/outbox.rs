//! A socket's outbound side: one bounded queue that is also the WebSocket response's body.
//!
//! The socket's actor and the instance's fan-out push frames into the queue and go on; nobody
//! waits on the network. The HTTP layer polls the body when the connection can take more, and
//! each poll drains everything queued into one buffer: one write for all that waited. When the
//! client does not read, the queue fills; a push past its message or byte limit fails, and the
//! socket is closed as a slow consumer, so one stalled client never holds up anyone else.
//!
//! This queue is the only buffer of outbound frames nodegrid keeps per socket, so
//! `--consumer-buffer-messages` and `--consumer-buffer-bytes` bound exactly what a socket may
//! have waiting. An idle socket's queue holds no allocation beyond a few words.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::Stream;

use nodegrid_protocol::stream::{Encoding, ServerFrame, encode_frame};

use crate::stream::frame::{CloseReason, OpCode, write_close, write_frame, write_frame_header};

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
            Outgoing::Binary(bytes) | Outgoing::Pong(bytes) => bytes.len() as u64,
            Outgoing::Ping => 0,
        }
    }

    /// Whether frames of this kind are put together in a batched socket's frames.
    fn batch_kind(&self) -> Option<OpCode> {
        match self {
            Outgoing::Text(_) => Some(OpCode::Text),
            Outgoing::Binary(_) => Some(OpCode::Binary),
            Outgoing::Ping | Outgoing::Pong(_) => None,
        }
    }

    fn payload(&self) -> &[u8] {
        match self {
            Outgoing::Text(text) => text.as_bytes(),
            Outgoing::Binary(bytes) | Outgoing::Pong(bytes) => bytes,
            Outgoing::Ping => b"",
        }
    }

    fn write(&self, buffer: &mut BytesMut) {
        match self {
            Outgoing::Text(text) => write_frame(buffer, OpCode::Text, text.as_bytes()),
            Outgoing::Binary(bytes) => write_frame(buffer, OpCode::Binary, bytes),
            Outgoing::Ping => write_frame(buffer, OpCode::Ping, b""),
            Outgoing::Pong(bytes) => write_frame(buffer, OpCode::Pong, bytes),
        }
    }
}

/// A frame for the socket in the connection's encoding.
pub fn outgoing(frame: &ServerFrame, encoding: Encoding) -> Option<Outgoing> {
    let bytes = encode_frame(frame, encoding).ok()?;
    Some(match encoding {
        Encoding::Json => Outgoing::Text(ByteString::try_from(Bytes::from(bytes)).ok()?),
        Encoding::MessagePack => Outgoing::Binary(Bytes::from(bytes)),
    })
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

/// A queue that outgrew this many slots is shrunk once it is empty again, so a burst does not
/// leave an idle socket holding its peak.
const SHRINK_ABOVE_SLOTS: usize = 64;

/// The largest payload of one batched frame (a batch that would be larger goes on in the next
/// frame): small enough for any client's message limit.
pub const MAX_BATCH_FRAME_BYTES: usize = 64 * 1024;

/// Writes `frames` as a batched socket gets them: each run of consecutive text frames as one
/// text frame, one JSON text per line; each run of binary (MessagePack) frames as one binary
/// frame holding a MessagePack array of them; a lone frame, and pings and pongs, as they are.
fn write_batched(frames: &[Outgoing], buffer: &mut BytesMut) {
    let mut start = 0;
    while start < frames.len() {
        let Some(kind) = frames[start].batch_kind() else {
            frames[start].write(buffer);
            start += 1;
            continue;
        };
        let mut end = start + 1;
        let mut length = frames[start].len() as usize;
        while end < frames.len()
            && frames[end].batch_kind() == Some(kind)
            && length + 1 + frames[end].len() as usize <= MAX_BATCH_FRAME_BYTES
        {
            length += 1 + frames[end].len() as usize;
            end += 1;
        }
        let run = &frames[start..end];
        if run.len() == 1 {
            run[0].write(buffer);
        } else if kind == OpCode::Text {
            write_frame_header(buffer, kind, length);
            for (index, frame) in run.iter().enumerate() {
                if index > 0 {
                    buffer.put_u8(b'\n');
                }
                buffer.put_slice(frame.payload());
            }
        } else {
            let mut header = [0u8; 5];
            let header = msgpack_array_header(run.len(), &mut header);
            // `length` counted a separator per frame after the first; an array has none.
            let payload = length - (run.len() - 1) + header.len();
            write_frame_header(buffer, kind, payload);
            buffer.put_slice(header);
            for frame in run {
                buffer.put_slice(frame.payload());
            }
        }
        start = end;
    }
}

/// The MessagePack header of an array of `count` items, written into `space`.
fn msgpack_array_header(count: usize, space: &mut [u8; 5]) -> &[u8] {
    if count < 16 {
        space[0] = 0x90 | count as u8;
        &space[..1]
    } else if let Ok(count) = u16::try_from(count) {
        space[0] = 0xdc;
        space[1..3].copy_from_slice(&count.to_be_bytes());
        &space[..3]
    } else {
        space[0] = 0xdd;
        space[1..5].copy_from_slice(&(count as u32).to_be_bytes());
        &space[..5]
    }
}

struct Queue {
    frames: VecDeque<Outgoing>,
    bytes: u64,
    /// Set once the socket is closing: the close frame to send, until it is taken.
    close: Option<CloseReason>,
    closing: bool,
    /// The body's waker: frames are waiting.
    waker: Option<Waker>,
    /// The socket reader's waker, while it waits for room (see [`Outbox::has_room`]).
    reader_waker: Option<Waker>,
}

struct Shared {
    queue: Mutex<Queue>,
    gauge: Arc<QueueGauge>,
    max_messages: usize,
    max_bytes: u64,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The pushing side of a socket's queue. Cheap to clone and to send between threads.
#[derive(Clone)]
pub struct Outbox(Arc<Shared>);

impl Outbox {
    /// A queue bounded by `max_messages` frames and `max_bytes` bytes, and the response body
    /// that drains it.
    pub fn new(max_messages: usize, max_bytes: u64) -> (Outbox, OutboxBody) {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                frames: VecDeque::new(),
                bytes: 0,
                close: None,
                closing: false,
                waker: None,
                reader_waker: None,
            }),
            gauge: Arc::default(),
            max_messages: max_messages.max(1),
            max_bytes,
        });
        (
            Outbox(shared.clone()),
            OutboxBody {
                shared,
                spare: VecDeque::new(),
                finished: false,
                batched: false,
            },
        )
    }

    /// Queues a frame, or fails when the queue is at its message or byte limit. Frames pushed
    /// once the socket is closing are dropped.
    pub fn push(&self, frame: Outgoing) -> Result<(), Overflow> {
        let length = frame.len();
        let waker = {
            let mut queue = self.0.lock();
            if queue.closing {
                return Ok(());
            }
            if queue.frames.len() >= self.0.max_messages || queue.bytes + length > self.0.max_bytes
            {
                return Err(Overflow);
            }
            queue.frames.push_back(frame);
            queue.bytes += length;
            self.0
                .gauge
                .messages
                .store(queue.frames.len() as u64, Ordering::Relaxed);
            self.0.gauge.bytes.store(queue.bytes, Ordering::Relaxed);
            queue.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Drops what is still queued and closes the socket with `reason`; false if it was closing
    /// already.
    pub fn close(&self, reason: CloseReason) -> bool {
        let waker = {
            let mut queue = self.0.lock();
            if queue.closing {
                return false;
            }
            queue.closing = true;
            queue.frames.clear();
            queue.bytes = 0;
            queue.close = Some(reason);
            self.0.gauge.messages.store(0, Ordering::Relaxed);
            self.0.gauge.bytes.store(0, Ordering::Relaxed);
            queue.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    /// Frames that could be pushed now before the queue is full (0 once it is closing), and
    /// the bytes likewise.
    pub fn room(&self) -> (usize, u64) {
        let queue = self.0.lock();
        if queue.closing {
            return (0, 0);
        }
        (
            self.0.max_messages.saturating_sub(queue.frames.len()),
            self.0.max_bytes.saturating_sub(queue.bytes),
        )
    }

    /// The most frames, and bytes, the queue holds.
    pub fn capacity(&self) -> (usize, u64) {
        (self.0.max_messages, self.0.max_bytes)
    }

    pub fn gauge(&self) -> Arc<QueueGauge> {
        self.0.gauge.clone()
    }

    /// Whether fewer than half the queue's frames and bytes are waiting; if not, `waker` is
    /// woken once the connection has taken them. The socket's reader asks before it reads, so
    /// a client that sends faster than it reads our answers is slowed down by TCP instead of
    /// overflowing its own queue.
    pub fn has_room(&self, waker: &Waker) -> bool {
        let mut queue = self.0.lock();
        if queue.closing
            || (queue.frames.len() < self.0.max_messages / 2 && queue.bytes < self.0.max_bytes / 2)
        {
            return true;
        }
        queue.reader_waker = Some(waker.clone());
        false
    }
}

/// The WebSocket response's body: each poll drains the queue into one chunk of frames.
pub struct OutboxBody {
    shared: Arc<Shared>,
    /// The drained queue's storage, swapped back in so that a busy socket reuses it.
    spare: VecDeque<Outgoing>,
    finished: bool,
    /// What waited is put together in as few frames as possible (see [`write_batched`]).
    batched: bool,
}

impl OutboxBody {
    /// The body of a socket that asked for batched frames.
    pub fn batched(mut self) -> OutboxBody {
        self.batched = true;
        self
    }
}

impl Stream for OutboxBody {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        let (frames, bytes, close, reader) = {
            let mut queue = this.shared.lock();
            if queue.frames.is_empty() && queue.close.is_none() {
                if queue.closing {
                    this.finished = true;
                    return Poll::Ready(None);
                }
                queue.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            std::mem::swap(&mut queue.frames, &mut this.spare);
            let bytes = std::mem::take(&mut queue.bytes);
            this.shared.gauge.messages.store(0, Ordering::Relaxed);
            this.shared.gauge.bytes.store(0, Ordering::Relaxed);
            (
                this.spare.len(),
                bytes,
                queue.close.take(),
                queue.reader_waker.take(),
            )
        };
        if let Some(reader) = reader {
            reader.wake();
        }
        let mut buffer = BytesMut::with_capacity(bytes as usize + 10 * frames + 16);
        if this.batched {
            write_batched(this.spare.make_contiguous(), &mut buffer);
            this.spare.clear();
        } else {
            for frame in this.spare.drain(..) {
                frame.write(&mut buffer);
            }
        }
        if this.spare.capacity() > SHRINK_ABOVE_SLOTS {
            this.spare = VecDeque::new();
        }
        this.shared
            .gauge
            .frames_out
            .fetch_add(frames as u64, Ordering::Relaxed);
        if let Some(reason) = close {
            write_close(&mut buffer, reason);
            this.finished = true;
        }
        Poll::Ready(Some(Ok(buffer.freeze())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt as _;

    #[actix_web::test]
    async fn the_queue_is_one_bound_and_drains_into_one_chunk() {
        let (outbox, mut body) = Outbox::new(3, 1_000);
        for text in ["a", "b", "c"] {
            outbox.push(Outgoing::Text(text.into())).unwrap();
        }
        assert_eq!(outbox.push(Outgoing::Text("d".into())), Err(Overflow));
        assert_eq!(outbox.gauge().messages.load(Ordering::Relaxed), 3);
        let chunk = body.next().await.unwrap().unwrap();
        assert_eq!(&chunk[..], b"\x81\x01a\x81\x01b\x81\x01c");
        assert_eq!(outbox.gauge().frames_out.load(Ordering::Relaxed), 3);
        outbox.push(Outgoing::Text("d".into())).unwrap();
        assert!(outbox.close((4008, "slow_consumer")));
        assert!(!outbox.close((1000, "")));
        // What was queued is dropped; the close frame ends the body.
        let chunk = body.next().await.unwrap().unwrap();
        assert_eq!(chunk[0], 0x88);
        assert!(body.next().await.is_none());
        // Pushes after the close are dropped quietly.
        assert_eq!(outbox.push(Outgoing::Ping), Ok(()));
    }

    #[actix_web::test]
    async fn a_batched_body_puts_what_waited_in_one_frame_per_kind() {
        let (outbox, body) = Outbox::new(100, 10_000);
        let mut body = body.batched();
        for text in ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"] {
            outbox.push(Outgoing::Text(text.into())).unwrap();
        }
        outbox.push(Outgoing::Ping).unwrap();
        outbox.push(Outgoing::Text("{\"d\":4}".into())).unwrap();
        let chunk = body.next().await.unwrap().unwrap();
        let lines = b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}";
        let mut expected = vec![0x81, lines.len() as u8];
        expected.extend_from_slice(lines);
        expected.extend_from_slice(&[0x89, 0]);
        expected.extend_from_slice(b"\x81\x07{\"d\":4}");
        assert_eq!(&chunk[..], &expected[..]);

        // MessagePack frames become one array; the result decodes as the frames, in order.
        for number in 0..20u8 {
            let item = rmp_serde::to_vec(&number).unwrap();
            outbox.push(Outgoing::Binary(item.into())).unwrap();
        }
        let chunk = body.next().await.unwrap().unwrap();
        assert_eq!(chunk[0], 0x82);
        let decoded: Vec<u8> = rmp_serde::from_slice(&chunk[2..]).unwrap();
        assert_eq!(decoded, (0..20).collect::<Vec<u8>>());
    }

    #[test]
    fn batched_frames_stay_under_their_bound() {
        let big = "x".repeat(MAX_BATCH_FRAME_BYTES / 2);
        let frames: Vec<Outgoing> = (0..3)
            .map(|_| Outgoing::Text(big.as_str().into()))
            .collect();
        let mut buffer = BytesMut::new();
        write_batched(&frames, &mut buffer);
        // Two halves and a separator are over the bound: each goes in a frame of its own.
        let mut count = 0;
        let mut rest = &buffer[..];
        while !rest.is_empty() {
            let length = u16::from_be_bytes([rest[2], rest[3]]) as usize;
            assert!(length <= MAX_BATCH_FRAME_BYTES);
            rest = &rest[4 + length..];
            count += 1;
        }
        assert_eq!(count, 3);
    }

    #[actix_web::test]
    async fn bytes_are_bounded_too() {
        let (outbox, _body) = Outbox::new(100, 10);
        outbox.push(Outgoing::Text("12345".into())).unwrap();
        outbox.push(Outgoing::Text("12345".into())).unwrap();
        assert_eq!(outbox.push(Outgoing::Text("1".into())), Err(Overflow));
    }
}

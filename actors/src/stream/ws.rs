//! The WebSocket wire of nodegrid's sockets: the handshake, a reader that enforces the size
//! limits at each frame's header (before any payload is buffered), and the encoding of the
//! server's frames.
//!
//! actix-ws buffers every byte that has arrived before it decodes, and actix-http's frame
//! parser checks a frame's declared length only once the whole frame is there, so a client
//! declaring a huge frame could make the server buffer without bound. This reader parses the
//! header as soon as its bytes arrive: a frame (or a fragmented message's running total) over
//! the hard limit closes the socket with 1009 at once; one over the configured frame limit is
//! skipped as it streams in, never buffered, and reported so the socket can answer `too_large`.

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use actix_web::{HttpRequest, HttpResponse};
use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::Stream;
use nodegrid_protocol::stream::close;

pub use crate::stream::frame::CloseReason;
use crate::stream::outbox::Outbox;

/// What a client sent, once a whole message is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsItem {
    Text(ByteString),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    /// The client closed the connection.
    Close,
    /// A data message longer than the frame limit; its bytes were skipped, not buffered.
    TooLarge {
        declared: u64,
    },
}

/// Why the reader stopped: each maps to the close code the server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    #[error("a frame or message declared more bytes than the hard limit")]
    TooLarge,
    #[error("a text message is not valid UTF-8")]
    InvalidUtf8,
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    #[error("the connection failed")]
    Io,
}

impl WsError {
    pub fn close_reason(self) -> CloseReason {
        match self {
            WsError::TooLarge => close::TOO_LARGE,
            WsError::InvalidUtf8 => close::INVALID_UTF8,
            WsError::Protocol(_) | WsError::Io => close::PROTOCOL_ERROR,
        }
    }
}

/// The reader's two size limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Messages longer than this are skipped and reported as [`WsItem::TooLarge`].
    pub max_message_bytes: usize,
    /// Frames or messages declaring more than this close the socket (1009).
    pub hard_limit_bytes: usize,
}

impl ReadLimits {
    /// The hard limit sits well above the configured one, so that a client a little over the
    /// limit gets an error frame and keeps its socket, while one far over it is cut off.
    pub fn for_max_frame(max_frame_bytes: usize) -> ReadLimits {
        ReadLimits {
            max_message_bytes: max_frame_bytes,
            hard_limit_bytes: max_frame_bytes.saturating_mul(16).max(1024 * 1024),
        }
    }
}

/// Lets the socket's owner stop the reader for a while (backpressure: a producer whose
/// messages wait to be published is not read until they are). Single-threaded: the reader is
/// polled on its actor's thread.
#[derive(Clone, Default)]
pub struct ReadGate(Rc<GateState>);

#[derive(Default)]
struct GateState {
    closed: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl ReadGate {
    pub fn pause(&self) {
        self.0.closed.set(true);
    }

    pub fn resume(&self) {
        if self.0.closed.replace(false)
            && let Some(waker) = self.0.waker.borrow_mut().take()
        {
            waker.wake();
        }
    }

    pub fn is_paused(&self) -> bool {
        self.0.closed.get()
    }
}

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// A fragmented data message being received.
struct Message {
    text: bool,
    /// Bytes of the message so far (declared lengths of its frames).
    declared: u64,
    /// The bytes, unless the message is over the limit and being skipped.
    data: Option<BytesMut>,
}

/// A frame whose header has been read.
struct FrameHeader {
    fin: bool,
    opcode: u8,
    length: usize,
    mask: [u8; 4],
}

/// The client-to-server half of a WebSocket, over the request's payload stream.
pub struct WsReader<S> {
    payload: S,
    buffer: BytesMut,
    limits: ReadLimits,
    /// The current frame's header, once read.
    header: Option<FrameHeader>,
    /// Payload bytes of the current frame still to skip (a message over the limit).
    skipping: usize,
    /// The declared length of a skipped message, reported once its last byte is skipped.
    skipped_message: Option<u64>,
    message: Option<Message>,
    gate: ReadGate,
    /// Reading waits while this outbox is half full (the client does not take our answers).
    answers: Option<Outbox>,
    done: bool,
}

impl<S> WsReader<S> {
    pub fn new(payload: S, limits: ReadLimits) -> WsReader<S> {
        WsReader {
            payload,
            buffer: BytesMut::new(),
            limits,
            header: None,
            skipping: 0,
            skipped_message: None,
            message: None,
            gate: ReadGate::default(),
            answers: None,
            done: false,
        }
    }

    /// Reads only while `outbox` has room: see [`Outbox::has_room`].
    pub fn paced_by(mut self, outbox: Outbox) -> WsReader<S> {
        self.answers = Some(outbox);
        self
    }

    pub fn gate(&self) -> ReadGate {
        self.gate.clone()
    }

    /// Parses what the buffer holds: `Ok(Some)` for a complete item, `Ok(None)` when more bytes
    /// are needed.
    fn parse(&mut self) -> Result<Option<WsItem>, WsError> {
        loop {
            if self.skipping > 0 {
                let skipped = self.skipping.min(self.buffer.len());
                self.buffer.advance(skipped);
                self.skipping -= skipped;
                if self.skipping > 0 {
                    return Ok(None);
                }
            }
            if let Some(declared) = self.skipped_message.take() {
                return Ok(Some(WsItem::TooLarge { declared }));
            }
            if self.header.is_none() {
                match self.read_header()? {
                    Some(header) => self.header = Some(header),
                    None => return Ok(None),
                }
            }
            let Some(header) = self.header.as_ref() else {
                return Ok(None);
            };
            if header.opcode >= OP_CLOSE {
                if self.buffer.len() < header.length {
                    return Ok(None);
                }
                let Some(header) = self.header.take() else {
                    return Ok(None);
                };
                let mut payload = self.buffer.split_to(header.length);
                unmask(&mut payload, header.mask);
                return Ok(Some(match header.opcode {
                    OP_PING => WsItem::Ping(payload.freeze()),
                    OP_PONG => WsItem::Pong(payload.freeze()),
                    _ => WsItem::Close,
                }));
            }
            // A data frame: its message was checked against the limits with the header. One
            // over the frame limit is skipped as its bytes arrive.
            if self
                .message
                .as_ref()
                .is_some_and(|message| message.data.is_none())
            {
                let Some(header) = self.header.take() else {
                    return Ok(None);
                };
                self.skipping = header.length;
                if header.fin {
                    self.skipped_message = self.message.take().map(|message| message.declared);
                }
                continue;
            }
            if self.buffer.len() < header.length {
                return Ok(None);
            }
            let Some(header) = self.header.take() else {
                return Ok(None);
            };
            let mut payload = self.buffer.split_to(header.length);
            unmask(&mut payload, header.mask);
            let Some(message) = self.message.as_mut() else {
                return Err(WsError::Protocol("a continuation without a message"));
            };
            if let Some(data) = message.data.as_mut() {
                if data.is_empty() {
                    *data = payload;
                } else {
                    data.extend_from_slice(&payload);
                }
            }
            if !header.fin {
                continue;
            }
            let Some(Message { text, data, .. }) = self.message.take() else {
                return Ok(None);
            };
            let data = data.unwrap_or_default().freeze();
            return Ok(Some(if text {
                WsItem::Text(ByteString::try_from(data).map_err(|_| WsError::InvalidUtf8)?)
            } else {
                WsItem::Binary(data)
            }));
        }
    }

    /// Reads a frame header if all of it is buffered, checking it against the protocol and
    /// the limits before any of the frame's payload is read.
    fn read_header(&mut self) -> Result<Option<FrameHeader>, WsError> {
        let bytes = &self.buffer[..];
        if bytes.len() < 2 {
            return Ok(None);
        }
        let (first, second) = (bytes[0], bytes[1]);
        let fin = first & 0x80 != 0;
        if first & 0x70 != 0 {
            return Err(WsError::Protocol("reserved bits are set"));
        }
        let opcode = first & 0x0F;
        if second & 0x80 == 0 {
            return Err(WsError::Protocol("client frames must be masked"));
        }
        let (length, length_bytes) = match second & 0x7F {
            126 => {
                if bytes.len() < 4 {
                    return Ok(None);
                }
                (u64::from(u16::from_be_bytes([bytes[2], bytes[3]])), 2)
            }
            127 => {
                if bytes.len() < 10 {
                    return Ok(None);
                }
                let mut length = [0u8; 8];
                length.copy_from_slice(&bytes[2..10]);
                (u64::from_be_bytes(length), 8)
            }
            short => (u64::from(short), 0),
        };
        let header_length = 2 + length_bytes + 4;
        if bytes.len() < header_length {
            return Ok(None);
        }
        match opcode {
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin || length > 125 {
                    return Err(WsError::Protocol(
                        "control frames are short and unfragmented",
                    ));
                }
            }
            OP_TEXT | OP_BINARY | OP_CONTINUATION => {
                let starts_message = opcode != OP_CONTINUATION;
                if starts_message == self.message.is_some() {
                    return Err(WsError::Protocol(if starts_message {
                        "a new message before the last one ended"
                    } else {
                        "a continuation without a message"
                    }));
                }
                let so_far = self.message.as_ref().map_or(0, |message| message.declared);
                let declared = so_far.saturating_add(length);
                if declared > self.limits.hard_limit_bytes as u64 {
                    return Err(WsError::TooLarge);
                }
                let over_limit = declared > self.limits.max_message_bytes as u64;
                let message = self.message.get_or_insert_with(|| Message {
                    text: opcode == OP_TEXT,
                    declared: 0,
                    data: Some(BytesMut::new()),
                });
                message.declared = declared;
                if over_limit {
                    message.data = None;
                }
            }
            _ => return Err(WsError::Protocol("unknown opcode")),
        }
        let mut mask = [0u8; 4];
        mask.copy_from_slice(&bytes[header_length - 4..header_length]);
        self.buffer.advance(header_length);
        Ok(Some(FrameHeader {
            fin,
            opcode,
            // Within the hard limit (data) or 125 (control): fits.
            length: usize::try_from(length).map_err(|_| WsError::TooLarge)?,
            mask,
        }))
    }
}

impl<S, E> Stream for WsReader<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    type Item = Result<WsItem, WsError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if this.gate.is_paused() {
                *this.gate.0.waker.borrow_mut() = Some(cx.waker().clone());
                return Poll::Pending;
            }
            if let Some(outbox) = &this.answers
                && !outbox.has_room(cx.waker())
            {
                return Poll::Pending;
            }
            match this.parse() {
                Ok(Some(item)) => {
                    if item == WsItem::Close {
                        this.done = true;
                    }
                    return Poll::Ready(Some(Ok(item)));
                }
                Ok(None) => {}
                Err(error) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(error)));
                }
            }
            match Pin::new(&mut this.payload).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    if this.buffer.is_empty() && this.skipping == 0 {
                        this.buffer = BytesMut::from(chunk);
                    } else {
                        this.buffer.extend_from_slice(&chunk);
                    }
                }
                Poll::Ready(Some(Err(_))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(WsError::Io)));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// XORs the client's mask into the payload, eight bytes at a time where it can.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (index, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[index % 4];
    }
}

/// Completes the WebSocket handshake: the 101 response whose body streams `body`. A request
/// that is not a WebSocket upgrade is the error.
pub fn handshake<B>(request: &HttpRequest, body: B) -> Result<HttpResponse, actix_web::Error>
where
    B: Stream<Item = Result<Bytes, actix_web::Error>> + 'static,
{
    let mut response = actix_http::ws::handshake(request.head()).map_err(|error| {
        let refusal = HttpResponse::from(actix_http::Response::from(&error));
        actix_web::error::InternalError::from_response(error, refusal)
    })?;
    let response = response.message_body(actix_web::body::BoxBody::new(
        actix_web::body::BodyStream::new(body),
    ))?;
    Ok(HttpResponse::from(response))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt as _;

    fn masked(fin: bool, opcode: u8, payload: &[u8], declared: Option<u64>) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
        let length = declared.unwrap_or(payload.len() as u64);
        if length < 126 {
            frame.push(0x80 | length as u8);
        } else if length <= 0xFFFF {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(length as u16).to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&length.to_be_bytes());
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }

    async fn read_all(chunks: Vec<Vec<u8>>, limits: ReadLimits) -> Vec<Result<WsItem, WsError>> {
        let stream = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|chunk| Ok::<_, std::io::Error>(Bytes::from(chunk))),
        );
        WsReader::new(stream, limits).collect().await
    }

    const LIMITS: ReadLimits = ReadLimits {
        max_message_bytes: 16,
        hard_limit_bytes: 64,
    };

    #[actix_web::test]
    async fn frames_split_anywhere_and_fragments_are_aggregated() {
        let mut bytes = masked(true, OP_TEXT, b"hello", None);
        bytes.extend(masked(false, OP_BINARY, b"ab", None));
        bytes.extend(masked(true, OP_PING, b"p", None));
        bytes.extend(masked(true, OP_CONTINUATION, b"cd", None));
        // One byte at a time.
        let chunks = bytes.iter().map(|byte| vec![*byte]).collect();
        let items = read_all(chunks, LIMITS).await;
        assert_eq!(
            items,
            vec![
                Ok(WsItem::Text("hello".into())),
                Ok(WsItem::Ping(Bytes::from_static(b"p"))),
                Ok(WsItem::Binary(Bytes::from_static(b"abcd"))),
            ]
        );
    }

    #[actix_web::test]
    async fn a_message_over_the_limit_is_skipped_and_reported() {
        let mut bytes = masked(false, OP_TEXT, &[b'x'; 10], None);
        bytes.extend(masked(true, OP_CONTINUATION, &[b'y'; 10], None));
        bytes.extend(masked(true, OP_TEXT, b"next", None));
        let items = read_all(vec![bytes], LIMITS).await;
        assert_eq!(
            items,
            vec![
                Ok(WsItem::TooLarge { declared: 20 }),
                Ok(WsItem::Text("next".into()))
            ]
        );
    }

    #[actix_web::test]
    async fn a_huge_declared_length_closes_before_its_payload_is_read() {
        // Only the header arrives: the reader refuses without waiting for 2^40 bytes.
        let header = masked(true, OP_BINARY, &[], Some(1 << 40));
        let items = read_all(vec![header], LIMITS).await;
        assert_eq!(items, vec![Err(WsError::TooLarge)]);
        // A fragmented message whose running total passes the hard limit.
        let mut bytes = masked(false, OP_BINARY, &[0; 40], None);
        bytes.extend(masked(false, OP_CONTINUATION, &[], Some(40)));
        let items = read_all(vec![bytes], LIMITS).await;
        assert_eq!(items, vec![Err(WsError::TooLarge)]);
    }

    #[actix_web::test]
    async fn protocol_violations_and_bad_utf8_are_errors() {
        let items = read_all(vec![masked(true, OP_TEXT, &[0xff, 0xfe], None)], LIMITS).await;
        assert_eq!(items, vec![Err(WsError::InvalidUtf8)]);
        let mut unmasked = masked(true, OP_TEXT, b"a", None);
        unmasked[1] &= 0x7f;
        let items = read_all(vec![unmasked], LIMITS).await;
        assert!(matches!(items[..], [Err(WsError::Protocol(_))]));
        let items = read_all(vec![masked(true, OP_CONTINUATION, b"a", None)], LIMITS).await;
        assert!(matches!(items[..], [Err(WsError::Protocol(_))]));
        let items = read_all(vec![masked(false, OP_PING, b"a", None)], LIMITS).await;
        assert!(matches!(items[..], [Err(WsError::Protocol(_))]));
    }
}

//! Push-only WebSockets (`/api/nodes/watch`, `/api/xandeum/ws/pnodes`): the server sends JSON
//! text frames from a stream and pings on a timer. What the client sends is read only to see
//! it go (a close frame, the connection's end, a frame over a small limit), so that a socket
//! the client has left gives its place back at once rather than at the next write. The socket
//! ends with the stream, with a close frame when the stream says why.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt as _};

use crate::stream::frame::{OpCode, write_frame};
use crate::stream::ws::{ReadLimits, WsItem, WsReader};

/// The largest frame a push socket's client may send (it has nothing to say but pongs).
const CLIENT_FRAME_BYTES: usize = 1_024;

/// How often a push socket is pinged, so that proxies keep it and dead peers are noticed.
pub const PING_INTERVAL: Duration = Duration::from_secs(30);

/// What a push socket sends next.
pub enum Push {
    /// A text frame of this JSON.
    Json(Bytes),
    /// A close frame with this code and reason; nothing after it.
    Close((u16, &'static str)),
}

/// Answers the upgrade with a socket that sends `items` until they end or one is a close.
pub fn push_socket<S>(
    request: &HttpRequest,
    payload: web::Payload,
    items: S,
) -> Result<HttpResponse, actix_web::Error>
where
    S: Stream<Item = Push> + 'static,
{
    let client_gone = async move {
        let mut frames = WsReader::new(payload, ReadLimits::for_max_frame(CLIENT_FRAME_BYTES));
        while let Some(frame) = frames.next().await {
            if matches!(frame, Ok(WsItem::Close) | Err(_)) {
                break;
            }
        }
    };
    // Each item is one frame; `None` marks the end, so that the pings stop with the items.
    let frames = items
        .map(|item| match item {
            Push::Json(json) => {
                let mut buffer = BytesMut::with_capacity(json.len() + 10);
                write_frame(&mut buffer, OpCode::Text, &json);
                (Some(buffer.freeze()), false)
            }
            Push::Close((code, reason)) => {
                let mut payload = code.to_be_bytes().to_vec();
                payload.extend_from_slice(reason.as_bytes());
                let mut buffer = BytesMut::with_capacity(payload.len() + 4);
                write_frame(&mut buffer, OpCode::Close, &payload);
                (Some(buffer.freeze()), true)
            }
        })
        .scan(false, |closed, (frame, closing)| {
            let out = if *closed { None } else { Some(frame) };
            *closed |= closing;
            std::future::ready(out)
        })
        .chain(futures_util::stream::once(async { None }));
    let pings = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval_at(
        tokio::time::Instant::now() + PING_INTERVAL,
        PING_INTERVAL,
    ))
    .map(|_| {
        let mut buffer = BytesMut::with_capacity(2);
        write_frame(&mut buffer, OpCode::Ping, b"");
        Some(buffer.freeze())
    });
    let body = futures_util::stream::select(frames, pings)
        .take_until(Box::pin(client_gone))
        .take_while(|frame: &Option<Bytes>| std::future::ready(frame.is_some()))
        .filter_map(std::future::ready)
        .map(Ok::<Bytes, actix_web::Error>);
    // Not an upgrade (or a broken one): the JSON error every route answers with.
    crate::stream::ws::handshake(request, body).map_err(|error| {
        crate::http::error::ApiError::bad_request(format!("not a WebSocket upgrade: {error}"))
            .into()
    })
}

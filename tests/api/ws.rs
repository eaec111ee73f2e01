//! A small WebSocket client for the streaming tests, over real sockets.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::TestApp;

/// How long a test waits for one frame.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// What arrived on a socket.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Json(Value),
    MessagePack(Value),
    Closed { code: u16, reason: String },
}

impl Frame {
    pub fn value(&self) -> &Value {
        match self {
            Frame::Json(value) | Frame::MessagePack(value) => value,
            Frame::Closed { .. } => panic!("expected a frame, got {self:?}"),
        }
    }
}

pub struct Ws {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// How a test authenticates the socket.
pub enum Token<'a> {
    Query(&'a str),
    Header(&'a str),
}

/// Opens `path` (`/producer` or `/consumer`); `Err` carries the HTTP status of a refused upgrade.
pub async fn connect(app: &TestApp, path: &str, token: Token<'_>) -> Result<Ws, u16> {
    connect_with_buffer(app, path, token, None).await
}

/// Like [`connect`], with a receive buffer of `receive_buffer` bytes (a small one makes a
/// reader that stops reading stall the server quickly).
pub async fn connect_with_buffer(
    app: &TestApp,
    path: &str,
    token: Token<'_>,
    receive_buffer: Option<u32>,
) -> Result<Ws, u16> {
    connect_to(app.port, path, token, receive_buffer, &[]).await
}

/// Opens `path` on the server at `port`, with `headers` added to the upgrade request.
pub async fn connect_to(
    port: u16,
    path: &str,
    token: Token<'_>,
    receive_buffer: Option<u32>,
    headers: &[(&'static str, &str)],
) -> Result<Ws, u16> {
    let url = match token {
        Token::Query(token) => {
            let separator = if path.contains('?') { '&' } else { '?' };
            format!("ws://127.0.0.1:{port}{path}{separator}token={token}")
        }
        Token::Header(_) => format!("ws://127.0.0.1:{port}{path}"),
    };
    let mut request = url.into_client_request().unwrap();
    if let Token::Header(token) = token {
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    }
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(size) = receive_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let tcp = socket
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap();
    match tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(tcp)).await {
        Ok((stream, _)) => Ok(Ws { stream }),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(error) => panic!("websocket handshake failed: {error}"),
    }
}

impl Ws {
    pub async fn send_json(&mut self, value: &Value) {
        self.send_text(&value.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream
            .send(Message::Text(text.into()))
            .await
            .expect("send text");
    }

    pub async fn send_msgpack(&mut self, value: &Value) {
        let bytes = rmp_serde::to_vec_named(value).unwrap();
        self.stream
            .send(Message::Binary(bytes.into()))
            .await
            .expect("send binary");
    }

    /// The next data-carrying frame or the close, skipping pings.
    pub async fn next(&mut self) -> Frame {
        self.next_within(FRAME_TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("no frame within {FRAME_TIMEOUT:?}"))
    }

    /// The next frame if one arrives within `timeout`.
    pub async fn next_within(&mut self, timeout: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let message = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()?;
            match message {
                Some(Ok(Message::Text(text))) => {
                    return Some(Frame::Json(serde_json::from_str(&text).unwrap()));
                }
                Some(Ok(Message::Binary(bytes))) => {
                    return Some(Frame::MessagePack(rmp_serde::from_slice(&bytes).unwrap()));
                }
                Some(Ok(Message::Close(close))) => {
                    let (code, reason) = close
                        .map(|close| (u16::from(close.code), close.reason.to_string()))
                        .unwrap_or((u16::from(CloseCode::Status), String::new()));
                    return Some(Frame::Closed { code, reason });
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => {
                    return Some(Frame::Closed {
                        code: 1006,
                        reason: "connection dropped".into(),
                    });
                }
            }
        }
    }

    /// The next text frame as it came, skipping other frames (a batched socket's text frames
    /// carry several JSON texts, one per line).
    pub async fn next_raw_text(&mut self) -> String {
        let deadline = tokio::time::Instant::now() + FRAME_TIMEOUT;
        loop {
            let message = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .unwrap_or_else(|_| panic!("no text frame within {FRAME_TIMEOUT:?}"));
            match message {
                Some(Ok(Message::Text(text))) => return text.to_string(),
                Some(Ok(Message::Close(close))) => panic!("closed: {close:?}"),
                Some(Ok(_)) => continue,
                Some(Err(error)) => panic!("socket failed: {error}"),
                None => panic!("socket ended"),
            }
        }
    }

    /// The next frame whose `type` is `kind`, skipping others (such as `subscribed`).
    pub async fn next_of_type(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next().await;
            if let Frame::Closed { .. } = frame {
                panic!("closed while waiting for {kind}: {frame:?}");
            }
            if frame.value()["type"] == kind {
                return frame.value().clone();
            }
        }
    }

    /// Waits for the socket to close; returns the code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            if let Frame::Closed { code, reason } = self.next().await {
                return (code, reason);
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}

//! Clients that misbehave on purpose: raw TCP, for what well-behaved HTTP and WebSocket
//! libraries will not send (huge declared frames, trickled bodies, made-up methods).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a raw client waits for an answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// Connects to the server on loopback.
pub async fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect")
}

/// Reads until the end of an HTTP response head; returns the status and the head.
pub async fn read_head(stream: &mut TcpStream) -> (u16, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    tokio::time::timeout(ANSWER_TIMEOUT, async {
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
    })
    .await
    .expect("an answer in time");
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, head)
}

/// Sends `request` (a whole HTTP/1.1 request, head and body) and reads the answer's head and
/// body (by Content-Length).
pub async fn request(port: u16, request: &[u8]) -> (u16, String, String) {
    let mut stream = connect(port).await;
    stream.write_all(request).await.expect("send");
    let (status, head) = read_head(&mut stream).await;
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    let _ = tokio::time::timeout(ANSWER_TIMEOUT, stream.read_exact(&mut body)).await;
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

/// Opens a WebSocket on `path` by hand; returns the stream right after the 101.
pub async fn websocket(port: u16, path: &str) -> TcpStream {
    let mut stream = connect(port).await;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let (status, head) = read_head(&mut stream).await;
    assert_eq!(status, 101, "{head}");
    stream
}

/// A masked client frame header: `opcode`, `fin`, and a declared payload length.
pub fn frame_header(fin: bool, opcode: u8, length: u64) -> Vec<u8> {
    let mut header = vec![if fin { 0x80 } else { 0 } | opcode];
    if length < 126 {
        header.push(0x80 | length as u8);
    } else if length <= 0xFFFF {
        header.push(0x80 | 126);
        header.extend_from_slice(&(length as u16).to_be_bytes());
    } else {
        header.push(0x80 | 127);
        header.extend_from_slice(&length.to_be_bytes());
    }
    // A zero mask: the payload goes as it is.
    header.extend_from_slice(&[0, 0, 0, 0]);
    header
}

/// Writes zeros until the server stops taking them or `limit` bytes went out; returns how many
/// were written.
pub async fn stream_zeros(stream: &mut TcpStream, limit: usize) -> usize {
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0;
    while written < limit {
        match tokio::time::timeout(Duration::from_secs(5), stream.write_all(&chunk)).await {
            Ok(Ok(())) => written += chunk.len(),
            _ => break,
        }
    }
    written
}

/// Reads frames until a close frame; returns its code (None when the connection just ends).
pub async fn close_code(stream: &mut TcpStream) -> Option<u16> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
    loop {
        // Server frames are unmasked: a small header, then the payload.
        while buffer.len() >= 2 {
            let opcode = buffer[0] & 0x0F;
            let (length, start) = match buffer[1] & 0x7F {
                126 if buffer.len() >= 4 => {
                    (usize::from(u16::from_be_bytes([buffer[2], buffer[3]])), 4)
                }
                127 if buffer.len() >= 10 => {
                    let mut bytes = [0u8; 8];
                    bytes.copy_from_slice(&buffer[2..10]);
                    (u64::from_be_bytes(bytes) as usize, 10)
                }
                126 | 127 => break,
                short => (usize::from(short), 2),
            };
            if buffer.len() < start + length {
                break;
            }
            if opcode == 0x8 {
                return (length >= 2)
                    .then(|| u16::from_be_bytes([buffer[start], buffer[start + 1]]));
            }
            buffer.drain(..start + length);
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(read)) => buffer.extend_from_slice(&chunk[..read]),
            Err(_) => panic!("no close frame within {ANSWER_TIMEOUT:?}"),
        }
    }
}

/// The resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix("VmRSS:")?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

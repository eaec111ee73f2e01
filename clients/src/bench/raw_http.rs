//! A minimal HTTP/1.1 client for the `http` scenario over plain `http://`: one keep-alive
//! connection, a request written from bytes made once, the answer's head parsed and its body
//! counted, never copied out or decoded. A general client (connection pool, a task per
//! connection, a body assembled per answer) costs the generator more CPU per request than the
//! server spends answering, and on one machine that CPU is taken from the server measured.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest answer head accepted.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Headers parsed at most.
const MAX_HEADERS: usize = 64;
/// Read buffer of a connection.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Why a request got no answer; `kind` names it in the report.
#[derive(Debug, thiserror::Error)]
pub enum RawError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("the connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server closed the connection")]
    Closed,
    #[error("the answer's head is not HTTP/1.1: {0}")]
    Head(String),
    #[error("timed out")]
    Timeout,
}

impl RawError {
    pub fn kind(&self) -> &'static str {
        match self {
            RawError::Connect(_) => "connect",
            RawError::Io(_) | RawError::Closed => "body",
            RawError::Head(_) => "head",
            RawError::Timeout => "timeout",
        }
    }
}

/// What came back: the status and the body's length as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawAnswer {
    pub status: u16,
    pub body_bytes: usize,
}

/// One GET, made again and again over one connection (reopened after a failure).
pub struct RawGet {
    address: String,
    request: Vec<u8>,
    timeout: Duration,
    connection: Option<TcpStream>,
    buffer: Vec<u8>,
}

impl RawGet {
    /// `url` must be `http://host:port/path`; `headers` are sent with every request.
    pub fn new(
        url: &reqwest::Url,
        headers: &[(String, String)],
        timeout: Duration,
    ) -> Result<RawGet, String> {
        if url.scheme() != "http" {
            return Err(format!("{url} is not plain http"));
        }
        let host = url
            .host_str()
            .ok_or_else(|| format!("{url} names no host"))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("{url} names no port"))?;
        let mut target = url.path().to_owned();
        if let Some(query) = url.query() {
            target.push('?');
            target.push_str(query);
        }
        let mut request = format!("GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        Ok(RawGet {
            address: format!("{host}:{port}"),
            request: request.into_bytes(),
            timeout,
            connection: None,
            buffer: vec![0; READ_BUFFER_BYTES],
        })
    }

    /// Sends the request and reads the whole answer. A failed request's connection is closed
    /// (the next one opens another).
    pub async fn get(&mut self) -> Result<RawAnswer, RawError> {
        let outcome = match tokio::time::timeout(self.timeout, self.exchange()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(RawError::Timeout),
        };
        match outcome {
            Ok((answer, keep_alive)) => {
                if !keep_alive {
                    self.connection = None;
                }
                Ok(answer)
            }
            Err(error) => {
                self.connection = None;
                Err(error)
            }
        }
    }

    async fn exchange(&mut self) -> Result<(RawAnswer, bool), RawError> {
        if self.connection.is_none() {
            let stream = TcpStream::connect(&self.address)
                .await
                .map_err(RawError::Connect)?;
            stream.set_nodelay(true).map_err(RawError::Connect)?;
            self.connection = Some(stream);
        }
        let Some(stream) = self.connection.as_mut() else {
            return Err(RawError::Closed);
        };
        stream.write_all(&self.request).await?;
        // The head: read until it parses (it may arrive with part of the body).
        let mut filled = 0;
        let (status, length, keep_alive, head_bytes) = loop {
            let read = stream.read(&mut self.buffer[filled..]).await?;
            if read == 0 {
                return Err(RawError::Closed);
            }
            filled += read;
            if let Some(head) = parse_head(&self.buffer[..filled])? {
                break head;
            }
            if filled >= MAX_HEAD_BYTES.min(self.buffer.len()) {
                return Err(RawError::Head("longer than 16 KiB".into()));
            }
        };
        // The body: counted as it arrives.
        let mut remaining = length.saturating_sub(filled - head_bytes);
        while remaining > 0 {
            let read = stream.read(&mut self.buffer[..]).await?;
            if read == 0 {
                return Err(RawError::Closed);
            }
            remaining = remaining.saturating_sub(read);
        }
        Ok((
            RawAnswer {
                status,
                body_bytes: length,
            },
            keep_alive,
        ))
    }
}

/// Status, body length, keep-alive and head length, once the head is complete.
fn parse_head(bytes: &[u8]) -> Result<Option<(u16, usize, bool, usize)>, RawError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head_bytes = match response.parse(bytes) {
        Ok(httparse::Status::Complete(head_bytes)) => head_bytes,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(RawError::Head(error.to_string())),
    };
    let status = response.code.unwrap_or(0);
    let (mut length, mut keep_alive) = (None, true);
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(header.value)
                .ok()
                .and_then(|text| text.trim().parse::<usize>().ok());
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(RawError::Head("a body without Content-Length".into()));
        } else if header.name.eq_ignore_ascii_case("connection") {
            keep_alive = !header.value.eq_ignore_ascii_case(b"close");
        }
    }
    let length = match (length, status) {
        (Some(length), _) => length,
        // Answers that carry no body.
        (None, 204 | 304) | (None, 100..=199) => 0,
        (None, _) => return Err(RawError::Head("no Content-Length".into())),
    };
    Ok(Some((status, length, keep_alive, head_bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_read_once_complete() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-encoding: gzip\r\n\r\nhel";
        assert!(parse_head(&head[..20]).unwrap().is_none());
        let (status, length, keep_alive, head_bytes) = parse_head(head).unwrap().unwrap();
        assert_eq!((status, length, keep_alive), (200, 5, true));
        assert_eq!(&head[head_bytes..], b"hel");
        let close = b"HTTP/1.1 429 Too Many\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        assert!(!parse_head(close).unwrap().unwrap().2);
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        assert!(parse_head(chunked).is_err());
    }
}

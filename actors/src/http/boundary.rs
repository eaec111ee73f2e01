//! What every request passes before it reaches a route: the checks that hold before any of its
//! bytes are trusted or buffered.
//!
//! - A connection over its client's connection limit is answered 429 `too_many_connections`
//!   and closed ([`ConnectionCounter`]).
//! - A NUL character anywhere in the (percent-decoded) path or query is refused with 400
//!   `validation_failed`: Postgres text cannot hold it, and no name or value needs it.
//! - A compressed body (`Content-Encoding` other than `identity`) is refused with 415: a few
//!   kilobytes of gzip can decode to gigabytes before a size limit applies.
//! - A body must arrive within `--body-timeout-secs`; one that does not gets 408 and the
//!   connection closes, so a client cannot hold connections with a trickle of bytes.

use std::collections::HashMap;
use std::future::Future as _;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::HttpMessage as _;
use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::middleware::Next;
use bytes::Bytes;
use futures_util::Stream;
use ipnet::IpNet;
use nodegrid_protocol::error::ErrorCode;

use crate::http::error::ApiError;

/// Middleware (for `actix_web::middleware::from_fn`) that applies the checks above.
pub async fn check_request(
    mut request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if request
        .conn_data::<ConnectionSlot>()
        .is_some_and(|slot| slot.over_limit)
    {
        return Err(ApiError::new(
            ErrorCode::TooManyConnections,
            "this address has too many connections open",
        )
        .into());
    }
    if has_nul(request.path()) || has_nul(request.query_string()) {
        return Err(ApiError::validation(
            "the path or query contains a NUL character (%00); text may not contain it",
        )
        .into());
    }
    let encoded = request
        .headers()
        .get(header::CONTENT_ENCODING)
        .is_some_and(|value| !value.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "request bodies must not be compressed (Content-Encoding)",
        )
        .into());
    }
    if has_body(&request)
        && let Some(timeout) = request
            .app_data::<actix_web::web::Data<BodyTimeout>>()
            .map(|timeout| timeout.0)
    {
        let payload = request.take_payload();
        request.set_payload(Payload::Stream {
            payload: Box::pin(TimedPayload {
                inner: payload,
                deadline: Box::pin(tokio::time::sleep(timeout)),
            }),
        });
    }
    next.call(request).await
}

/// How long a request body may take, shared with the middleware as app data.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

/// Whether the percent-decoded text holds a NUL.
fn has_nul(text: &str) -> bool {
    text.contains('\0') || percent_encoding::percent_decode_str(text).any(|byte| byte == 0)
}

/// Requests that carry a body (not a WebSocket upgrade, whose "body" is the socket).
fn has_body(request: &ServiceRequest) -> bool {
    if request.headers().contains_key(header::UPGRADE) {
        return false;
    }
    let length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    length.is_some_and(|length| length > 0)
        || request.headers().contains_key(header::TRANSFER_ENCODING)
}

/// A request body that fails with `TimedOut` when it has not ended by its deadline.
struct TimedPayload {
    inner: Payload,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Stream for TimedPayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the body did not arrive in time",
                ))))),
                Poll::Pending => Poll::Pending,
            },
            ready => ready,
        }
    }
}

/// Counts open connections per client address, so that one address cannot hold them all.
/// A connection over the limit is still accepted (there is no hook to refuse it earlier), but
/// its first request is answered 429 and the connection closed.
#[derive(Clone)]
pub struct ConnectionCounter {
    limit: usize,
    trusted_proxies: Arc<Vec<IpNet>>,
    open: OpenConnections,
}

/// Open connections per client address.
type OpenConnections = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// One connection's place in the count, kept in the connection's data and released when the
/// connection ends.
pub struct ConnectionSlot {
    counted: Option<(IpAddr, OpenConnections)>,
    over_limit: bool,
}

impl ConnectionCounter {
    /// `limit` connections per address (0: no limit); trusted proxies are not counted, since
    /// all their clients share their address.
    pub fn new(limit: usize, trusted_proxies: Vec<IpNet>) -> ConnectionCounter {
        ConnectionCounter {
            limit,
            trusted_proxies: Arc::new(trusted_proxies),
            open: Arc::default(),
        }
    }

    /// Counts a new connection from `peer`.
    pub fn open(&self, peer: IpAddr) -> ConnectionSlot {
        if self.limit == 0 || self.trusted_proxies.iter().any(|net| net.contains(&peer)) {
            return ConnectionSlot {
                counted: None,
                over_limit: false,
            };
        }
        let count = {
            let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
            let count = open.entry(peer).or_default();
            *count += 1;
            *count
        };
        ConnectionSlot {
            counted: Some((peer, self.open.clone())),
            over_limit: count > self.limit,
        }
    }

    /// Connections counted for `peer` now.
    pub fn count(&self, peer: IpAddr) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&peer)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Some((peer, open)) = self.counted.take() {
            let mut open = open.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(count) = open.get_mut(&peer) {
                *count -= 1;
                if *count == 0 {
                    open.remove(&peer);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_per_address_and_released() {
        let counter = ConnectionCounter::new(2, vec!["10.0.0.0/8".parse().unwrap()]);
        let client = IpAddr::from([192, 0, 2, 1]);
        let first = counter.open(client);
        let second = counter.open(client);
        let third = counter.open(client);
        assert!(!first.over_limit && !second.over_limit && third.over_limit);
        drop(third);
        drop(first);
        assert_eq!(counter.count(client), 1);
        assert!(!counter.open(client).over_limit);
        let proxy = IpAddr::from([10, 0, 0, 1]);
        let slots: Vec<_> = (0..5).map(|_| counter.open(proxy)).collect();
        assert!(
            slots.iter().all(|slot| !slot.over_limit),
            "proxies are not counted"
        );
        assert!(has_nul("/a%00b") && has_nul("x=\0") && !has_nul("/a%20b"));
    }
}

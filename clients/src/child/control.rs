//! The control socket: the mother pushes what its admins do (maintenance, versions, user
//! blocks, changed terms) and the child applies it at once, then heartbeats for the lease that
//! states it. Every frame is signed; one that does not verify, names another child or is
//! stale is dropped. The socket reconnects with backoff, to the mother's URLs in order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use nodegrid_protocol::children::control::{ControlFrame, ControlPush};
use nodegrid_protocol::children::users::verify_answer;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::mother::Mother;
use super::options::ChildSettings;
use super::state::{SharedState, read, transition, write};
use crate::device::backoff::Backoff;

/// How old a pushed frame may be.
const MAX_FRAME_AGE: chrono::Duration = chrono::Duration::minutes(5);

pub async fn control_loop(
    settings: &ChildSettings,
    shared: &SharedState,
    mother: &Mother,
    wake: &Arc<Notify>,
) {
    let mut backoff = Backoff::new(
        Duration::from_millis(500),
        settings.interval.max(Duration::from_secs(5)),
    );
    loop {
        // The socket names no child: it waits for the first lease, which does.
        if read(shared).child_id.is_none() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        for base in mother.urls() {
            let url = format!("{base}/api/child/control");
            if let Some(connected_for) = listen(settings, shared, mother, wake, &url).await
                && connected_for > Duration::from_secs(1)
            {
                backoff.reset();
            }
        }
        tokio::time::sleep(backoff.next_delay().max(Duration::from_millis(100))).await;
    }
}

/// One connection: how long it was open, `None` if it did not open.
async fn listen(
    settings: &ChildSettings,
    shared: &SharedState,
    mother: &Mother,
    wake: &Arc<Notify>,
    url: &str,
) -> Option<Duration> {
    let headers = mother.signed_headers("GET", url, b"")?;
    let ws_url = url
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    let mut request = ws_url.into_client_request().ok()?;
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(name, HeaderValue::from_str(&value).ok()?);
    }
    let connector = mother.tls().map(tokio_tungstenite::Connector::Rustls);
    let connected = tokio::time::timeout(
        settings.request_timeout,
        tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector),
    )
    .await;
    let mut socket = match connected {
        Ok(Ok((socket, _))) => socket,
        Ok(Err(error)) => {
            tracing::debug!(%error, "the control socket did not open");
            return None;
        }
        Err(_) => return None,
    };
    let opened = Instant::now();
    tracing::info!("control socket open");
    write(shared).control_connected = true;
    // A socket opened after a gap may have missed pushes: heartbeat for the current lease.
    wake.notify_one();
    while let Some(message) = socket.next().await {
        match message {
            Ok(Message::Text(text)) => apply(settings, shared, wake, text.as_bytes()),
            Ok(Message::Close(frame)) => {
                tracing::info!(?frame, "the mother closed the control socket");
                break;
            }
            Ok(_) => {}
            Err(error) => {
                tracing::info!(%error, "the control socket ended");
                break;
            }
        }
    }
    write(shared).control_connected = false;
    Some(opened.elapsed())
}

fn apply(settings: &ChildSettings, shared: &SharedState, wake: &Arc<Notify>, text: &[u8]) {
    let (keys, child_id) = {
        let guard = read(shared);
        (guard.keys.clone(), guard.child_id)
    };
    let frame = match verify_answer::<ControlFrame>(text, &keys) {
        Ok(frame) => frame,
        Err(rejection) => {
            // A key this child does not know yet: the heartbeat fetches the keys.
            tracing::warn!(%rejection, "a pushed frame is refused");
            wake.notify_one();
            return;
        }
    };
    let age = chrono::Utc::now() - frame.issued_at;
    if Some(frame.child_id) != child_id || age > MAX_FRAME_AGE || -age > MAX_FRAME_AGE {
        tracing::warn!("a pushed frame for another child, or stale; dropped");
        return;
    }
    tracing::info!(push = frame.push.kind(), "pushed by the mother");
    transition(shared, settings, |state| match frame.push {
        ControlPush::Maintenance { maintenance } => {
            state
                .machine
                .on_maintenance(maintenance.enabled, maintenance.message, Instant::now());
        }
        ControlPush::Block {
            user_id,
            blocked_users_version,
        } => {
            state.blocked_users.insert(user_id);
            state.sessions.remove(&user_id);
            if blocked_users_version == state.blocked_users_version + 1 {
                state.blocked_users_version = blocked_users_version;
            }
        }
        ControlPush::Unblock {
            user_id,
            blocked_users_version,
        } => {
            state.blocked_users.remove(&user_id);
            if blocked_users_version == state.blocked_users_version + 1 {
                state.blocked_users_version = blocked_users_version;
            }
        }
        ControlPush::Version { .. } | ControlPush::Lease => {}
    });
    // Whatever it was, the lease states it with authority: heartbeat now.
    wake.notify_one();
}

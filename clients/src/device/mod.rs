//! `nodegrid device`: the agent an IoT device runs.
//!
//! It logs in (or uses a given token), refreshes the access token before it expires, opens the
//! producer socket and sends one reading of the machine (CPU, load, memory, swap, disk, network,
//! uptime, temperature where there is a sensor) per interval. Readings wait in a bounded buffer
//! until the server acks them: while the socket is down they accumulate (the oldest dropped
//! first, and the count of dropped readings travels in the next reading), and on reconnect they
//! are sent again in order. Reconnects back off exponentially with full jitter.
//!
//! # Layout
//!
//! [`options`] (options, settings, errors), `session` (the token and its renewal), `backoff`,
//! `backlog` (readings waiting for acks), `sampler` (the machine's readings); the loop is here.

mod backlog;
pub(crate) mod backoff;
pub mod options;
mod sampler;
mod session;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use nodegrid_protocol::stream::{ClientFrame, Encoding, encode_frame};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use self::backlog::Backlog;
pub use self::backoff::Backoff;
pub use self::options::{Credentials, DeviceEncoding, DeviceError, DeviceOptions, DeviceSettings};
use self::sampler::Sampler;
use self::session::Session;

/// Runs the agent until `--once` is done, or the server refuses it.
pub async fn run(settings: DeviceSettings) -> Result<(), DeviceError> {
    // A private authority: one TLS configuration for the logins and the socket.
    let tls = match &settings.ca_file {
        Some(path) => {
            Some(crate::tls::client_config(Some(path), false).map_err(DeviceError::Config)?)
        }
        None => None,
    };
    let mut http = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if let Some(config) = &tls {
        http = http.use_preconfigured_tls(rustls::ClientConfig::clone(config));
    }
    let http = http
        .build()
        .map_err(|error| DeviceError::Failed(error.to_string()))?;
    let mut sampler = Sampler::new()?;
    let mut backoff = Backoff::new(settings.backoff_initial, settings.backoff_max);
    let mut session = Session::open(&http, &settings, &mut backoff).await?;
    // Ids are unique across runs of the agent (the server remembers recent ids to drop resends):
    // this run's start time, then the reading's number.
    let run_id = format!(
        "{:x}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_micros())
            .unwrap_or(0)
    );
    let mut backlog = Backlog::new(
        run_id.clone(),
        settings.buffer_messages,
        settings.buffer_bytes,
    );
    let mut number = 0u64;
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sample = |backlog: &mut Backlog, sampler: &mut Sampler| -> Result<(), DeviceError> {
        number += 1;
        let reading = sampler.reading(&settings.device_id);
        let frame = ClientFrame::data(reading.clone(), Some(format!("{run_id}-{number}")));
        let bytes = encode_frame(&frame, settings.encoding)
            .map_err(|error| DeviceError::Failed(format!("cannot encode a reading: {error}")))?;
        backlog.push(number, reading, bytes);
        Ok(())
    };

    loop {
        session.renew_if_due(&http, &settings, &mut backoff).await?;
        let url = format!("{}?token={}", settings.websocket_url, session.access_token);
        let connector = tls.clone().map(tokio_tungstenite::Connector::Rustls);
        match tokio_tungstenite::connect_async_tls_with_config(url.as_str(), None, false, connector)
            .await
        {
            Ok((socket, _)) => {
                tracing::info!(url = %settings.websocket_url, "connected");
                backoff.reset();
                backlog.sent = 0;
                let mut renewal = Renewal {
                    http: &http,
                    session: &mut session,
                    backoff: &mut backoff,
                };
                let outcome = stream(
                    socket,
                    &settings,
                    &mut backlog,
                    &mut ticker,
                    &mut sampler,
                    &mut sample,
                    &mut renewal,
                )
                .await?;
                if outcome == Streamed::Done {
                    return Ok(());
                }
                tracing::warn!(buffered = backlog.readings.len(), "disconnected");
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                match response.status().as_u16() {
                    401 => {
                        tracing::warn!("the server refused the token; logging in again");
                        session.renew_at = Some(Instant::now());
                    }
                    403 => {
                        return Err(DeviceError::Refused("not a producer, or blocked".into()));
                    }
                    status => tracing::warn!(status, "socket upgrade refused"),
                }
            }
            Err(error) => tracing::warn!(%error, "cannot connect"),
        }
        if settings.once {
            return Err(DeviceError::Failed("the reading was not acked".into()));
        }
        let delay = backoff.next_delay();
        tracing::info!(delay_ms = delay.as_millis() as u64, "reconnecting");
        let pause = tokio::time::sleep(delay);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = &mut pause => break,
                _ = ticker.tick() => sample(&mut backlog, &mut sampler)?,
            }
        }
    }
}

/// What `stream` needs to renew the access token while the socket is open, so that the refresh
/// chain never lapses on a long-lived connection.
struct Renewal<'a> {
    http: &'a reqwest::Client,
    session: &'a mut Session,
    backoff: &'a mut Backoff,
}

#[derive(Debug, PartialEq, Eq)]
enum Streamed {
    Done,
    Disconnected,
}

async fn stream<S>(
    socket: tokio_tungstenite::WebSocketStream<S>,
    settings: &DeviceSettings,
    backlog: &mut Backlog,
    ticker: &mut tokio::time::Interval,
    sampler: &mut Sampler,
    sample: &mut impl FnMut(&mut Backlog, &mut Sampler) -> Result<(), DeviceError>,
    renewal: &mut Renewal<'_>,
) -> Result<Streamed, DeviceError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut incoming) = socket.split();
    loop {
        // Everything not yet sent on this socket goes out, oldest first.
        while backlog.sent < backlog.readings.len() {
            let frame = backlog.frame_to_send(backlog.sent, settings.encoding)?;
            let message = match settings.encoding {
                Encoding::Json => match String::from_utf8(frame) {
                    Ok(text) => Message::Text(text.into()),
                    Err(_) => return Err(DeviceError::Failed("a reading is not UTF-8".into())),
                },
                Encoding::MessagePack => Message::Binary(frame.into()),
            };
            if sink.send(message).await.is_err() {
                return Ok(Streamed::Disconnected);
            }
            backlog.sent += 1;
        }
        if settings.once && backlog.readings.is_empty() && backlog.sent == 0 {
            sample(backlog, sampler)?;
            continue;
        }
        let renew_at = renewal.session.renew_at.map(tokio::time::Instant::from_std);
        tokio::select! {
            _ = ticker.tick(), if !settings.once => sample(backlog, sampler)?,
            _ = sleep_until_some(renew_at) => {
                renewal
                    .session
                    .renew_if_due(renewal.http, settings, renewal.backoff)
                    .await?;
                // The open socket lives on the new token, not until the old one expires.
                let refresh = ClientFrame::Refresh {
                    token: renewal.session.access_token.clone(),
                };
                let frame = refresh
                    .encode(settings.encoding)
                    .map_err(|error| DeviceError::Failed(error.to_string()))?;
                let message = match settings.encoding {
                    Encoding::Json => Message::Text(String::from_utf8_lossy(&frame).into_owned().into()),
                    Encoding::MessagePack => Message::Binary(frame.into()),
                };
                if sink.send(message).await.is_err() {
                    return Ok(Streamed::Disconnected);
                }
            }
            message = incoming.next() => {
                let frame = match message {
                    Some(Ok(Message::Text(text))) => serde_json::from_str::<Value>(&text).ok(),
                    Some(Ok(Message::Binary(bytes))) => rmp_serde::from_slice::<Value>(&bytes).ok(),
                    Some(Ok(Message::Close(close))) => {
                        tracing::warn!(?close, "the server closed the socket");
                        if close.is_some_and(|close| u16::from(close.code) == 4003) {
                            return Err(DeviceError::Refused("user_blocked".into()));
                        }
                        return Ok(Streamed::Disconnected);
                    }
                    Some(Ok(_)) => None,
                    Some(Err(_)) | None => return Ok(Streamed::Disconnected),
                };
                let Some(frame) = frame else { continue };
                let id = frame["id"]
                    .as_str()
                    .and_then(|id| id.rsplit_once('-'))
                    .and_then(|(_, number)| number.parse::<u64>().ok());
                match (frame["type"].as_str(), id) {
                    (Some("ack"), Some(number)) => {
                        tracing::debug!(number, seq = %frame["seq"], subscribers = %frame["subscriberCount"], "acked");
                        backlog.acked(number);
                        if settings.once && backlog.readings.is_empty() {
                            tracing::info!(seq = %frame["seq"], "reading acked");
                            return Ok(Streamed::Done);
                        }
                    }
                    (Some("error"), _) => {
                        tracing::warn!(code = %frame["code"], message = %frame["message"], "the server refused a reading");
                        // A refused reading will not be acked; do not keep it.
                        if let Some(number) = id {
                            backlog.acked(number);
                        }
                        if settings.once {
                            return Err(DeviceError::Failed(format!("refused: {}", frame["code"])));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

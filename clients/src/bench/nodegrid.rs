//! The nodegrid driver: users and subscriptions through the REST API, producers and consumers
//! over WebSockets, connections spread over the targets and the loopback source addresses.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::measure::{micros_now, new_histogram, number_after, progress, server_rss};
use super::options::Scenario;
use super::plan::{BenchError, Pacer, Plan, Tally};
use super::report::{Outcome, finish};

const PASSWORD: &str = "bench-password-1";
type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

fn setup(error: impl std::fmt::Display) -> BenchError {
    BenchError::Setup(error.to_string())
}

async fn account(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    role: &str,
) -> Result<(i64, String), BenchError> {
    let response = http
        .post(format!("{base}/api/auth/register"))
        .json(&json!({"username": name, "password": PASSWORD, "role": role}))
        .send()
        .await
        .map_err(setup)?;
    if !response.status().is_success() {
        return Err(setup(format!(
            "register {name}: {} (run the server with NODEGRID_AUTH_IP_PER_MINUTE=0 NODEGRID_AUTH_USERNAME_PER_MINUTE=0)",
            response.status()
        )));
    }
    let login: Value = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"username": name, "password": PASSWORD}))
        .send()
        .await
        .map_err(setup)?
        .json()
        .await
        .map_err(setup)?;
    let token = login["access_token"]
        .as_str()
        .ok_or_else(|| setup(format!("login {name}: {login}")))?;
    let user_id = login["user_id"]
        .as_i64()
        .ok_or_else(|| setup(format!("login {name}: {login}")))?;
    Ok((user_id, token.to_owned()))
}

/// Opens a socket from `source` to `url`.
async fn open(url: &str, source: std::net::IpAddr) -> Result<Socket, BenchError> {
    let request = url.into_client_request().map_err(setup)?;
    let host = request.uri().host().unwrap_or("127.0.0.1").to_owned();
    let port = request.uri().port_u16().unwrap_or(80);
    let address: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(setup)?
        .next()
        .ok_or_else(|| setup(format!("cannot resolve {host}")))?;
    let socket = TcpSocket::new_v4().map_err(setup)?;
    socket.bind(SocketAddr::new(source, 0)).map_err(setup)?;
    let stream = socket.connect(address).await.map_err(setup)?;
    stream.set_nodelay(true).map_err(setup)?;
    let (socket, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream))
        .await
        .map_err(setup)?;
    Ok(socket)
}

pub async fn run(
    targets: &[String],
    plan: &Plan,
    scenario: Scenario,
    server_pids: &[u32],
) -> Result<Outcome, BenchError> {
    let bases: Vec<String> = targets
        .iter()
        .map(|target| target.trim_end_matches('/').to_owned())
        .collect();
    let socket_base = |index: usize| bases[index % bases.len()].replacen("http", "ws", 1);
    let http = reqwest::Client::new();
    let run_id = format!("{:x}", micros_now() % 0xffff_ffff);

    let mut producers = Vec::with_capacity(plan.producers);
    for index in 0..plan.producers {
        let base = &bases[index % bases.len()];
        producers.push(account(&http, base, &format!("bp{run_id}-{index}"), "producer").await?);
    }
    let mut consumers = Vec::with_capacity(plan.consumers);
    for index in 0..plan.consumers {
        let base = &bases[index % bases.len()];
        let (_, token) = account(&http, base, &format!("bc{run_id}-{index}"), "consumer").await?;
        let wanted = plan.producers_of(index);
        for producer in &wanted {
            let status = http
                .post(format!("{base}/api/subscribe"))
                .bearer_auth(&token)
                .json(&json!({"producer_id": producers[*producer].0}))
                .send()
                .await
                .map_err(setup)?
                .status();
            if !status.is_success() {
                return Err(setup(format!("subscribe: {status}")));
            }
        }
        consumers.push((token, wanted.len()));
    }

    // Consumers first, each ready once every subscription is confirmed.
    let tally = Arc::new(Tally::default());
    let mut sockets = Vec::with_capacity(consumers.len());
    for (index, (token, subscriptions)) in consumers.iter().enumerate() {
        let mut socket = open(
            &format!(
                "{}/consumer?events=subscriptions&token={token}",
                socket_base(index)
            ),
            plan.source(index),
        )
        .await?;
        let mut waiting = *subscriptions;
        while waiting > 0 {
            match socket.next().await {
                Some(Ok(Message::Text(text))) if text.contains("\"subscribed\"") => waiting -= 1,
                Some(Ok(_)) => {}
                _ => return Err(setup("a consumer socket closed during set-up")),
            }
        }
        sockets.push(socket);
    }

    if scenario == Scenario::Connections {
        // Let the server settle, read its memory with every socket open, hold, close.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = server_rss(server_pids);
        let held = Instant::now();
        tokio::time::sleep(Duration::from_secs(plan.seconds)).await;
        drop(sockets);
        return Ok(Outcome {
            tally,
            histogram: new_histogram()?,
            expected: 0,
            sending_seconds: held.elapsed().as_secs_f64(),
            rss_with_connections: rss,
        });
    }

    let idle = Duration::from_secs(3);
    let mut readers = Vec::with_capacity(sockets.len());
    for mut socket in sockets {
        let tally = tally.clone();
        readers.push(tokio::spawn(async move {
            let mut histogram = new_histogram()?;
            let mut last_seq: HashMap<u64, u64> = HashMap::new();
            while let Ok(Some(Ok(message))) = tokio::time::timeout(idle, socket.next()).await {
                let Message::Text(text) = message else {
                    continue;
                };
                if !text.starts_with("{\"type\":\"data\"") {
                    continue;
                }
                let now = micros_now();
                if let Some(sent) = number_after(&text, "\"t\":") {
                    let _ = histogram.record(now.saturating_sub(sent).max(1));
                }
                tally.delivered.fetch_add(1, Ordering::Relaxed);
                let producer = number_after(&text, "\"producer_id\":").unwrap_or(0);
                let seq = number_after(&text, "\"seq\":").unwrap_or(0);
                if let Some(previous) = last_seq.insert(producer, seq) {
                    tally
                        .gaps
                        .fetch_add(seq.saturating_sub(previous + 1), Ordering::Relaxed);
                }
            }
            Ok::<_, BenchError>(histogram)
        }));
    }

    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    progress(tally.clone(), started, done.clone());
    let mut writers = Vec::with_capacity(producers.len());
    for (index, (_, token)) in producers.iter().enumerate() {
        let socket = open(
            &format!("{}/producer?token={token}", socket_base(index)),
            plan.source(plan.consumers + index),
        )
        .await?;
        let (mut sink, mut incoming) = socket.split();
        let acks = tally.clone();
        tokio::spawn(async move {
            while let Some(Ok(Message::Text(text))) = incoming.next().await {
                if text.starts_with("{\"type\":\"ack\"") {
                    acks.acked.fetch_add(1, Ordering::Relaxed);
                } else if let Ok(frame) = serde_json::from_str::<Value>(&text)
                    && let Some(code) = frame["code"].as_str()
                {
                    acks.error(code);
                }
            }
        });
        let tally = tally.clone();
        let plan = plan.clone();
        writers.push(tokio::spawn(async move {
            let padding = "x".repeat(plan.payload_bytes);
            let mut pacer = Pacer::new(&plan);
            while pacer.next().await.is_some() {
                let frame = format!(
                    r#"{{"type":"data","payload":{{"t":{},"pad":"{padding}"}}}}"#,
                    micros_now()
                );
                if sink.send(Message::Text(frame.into())).await.is_err() {
                    tally.error("producer_disconnected");
                    break;
                }
                tally.sent.fetch_add(1, Ordering::Relaxed);
            }
            (index, pacer.count())
        }));
    }
    finish(plan, tally, started, done, writers, readers).await
}

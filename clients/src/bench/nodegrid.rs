//! The nodegrid driver: users and subscriptions through the REST API, producers and consumers
//! over WebSockets, connections spread over the targets and the loopback source addresses.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt, TryStreamExt, stream};
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::measure::{
    CpuSpent, CpuWatch, Watched, micros_now, new_histogram, number_after, progress, server_rss,
};
use super::options::Scenario;
use super::plan::{BenchError, IDLE_WAIT, Pacer, Plan, Tally};
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

async fn subscribe(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    producer_id: i64,
) -> Result<(), BenchError> {
    let status = http
        .post(format!("{base}/api/subscribe"))
        .bearer_auth(token)
        .json(&json!({"producer_id": producer_id}))
        .send()
        .await
        .map_err(setup)?
        .status();
    if !status.is_success() {
        return Err(setup(format!("subscribe: {status}")));
    }
    Ok(())
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

/// Idle sockets (`connections`) share an account per this many: the server's default cap of
/// sockets per user.
const IDLE_SOCKETS_PER_ACCOUNT: usize = 100;

pub async fn run(
    targets: &[String],
    plan: &Plan,
    scenario: Scenario,
    watched: &Watched,
) -> Result<Outcome, BenchError> {
    let bases: Vec<String> = targets
        .iter()
        .map(|target| target.trim_end_matches('/').to_owned())
        .collect();
    let base = |index: usize| bases[index % bases.len()].as_str();
    let socket_base = |index: usize| base(index).replacen("http", "ws", 1);
    let http = reqwest::Client::new();
    let run_id = format!("{:x}", micros_now() % 0xffff_ffff);
    let concurrency = plan.setup_concurrency;

    let producers: Vec<(i64, String)> = stream::iter(0..plan.producers)
        .map(|index| {
            let (http, name) = (&http, format!("bp{run_id}-{index}"));
            async move { account(http, base(index), &name, "producer").await }
        })
        .buffered(concurrency)
        .try_collect()
        .await?;
    let idle = scenario == Scenario::Connections;
    let accounts = if idle {
        plan.consumers.div_ceil(IDLE_SOCKETS_PER_ACCOUNT)
    } else {
        plan.consumers
    };
    let consumer_tokens: Vec<String> = stream::iter(0..accounts)
        .map(|index| {
            let (http, name, producers) = (&http, format!("bc{run_id}-{index}"), &producers);
            async move {
                let (_, token) = account(http, base(index), &name, "consumer").await?;
                for producer in plan.producers_of(index) {
                    subscribe(http, base(index), &token, producers[producer].0).await?;
                }
                Ok::<_, BenchError>(token)
            }
        })
        .buffered(concurrency)
        .try_collect()
        .await?;

    // Consumers first, each ready once every subscription is confirmed.
    let batch = if plan.batch { "&batch=1" } else { "" };
    let sockets: Vec<Socket> = stream::iter(0..plan.consumers)
        .map(|index| {
            let (token, subscriptions) = if idle {
                (&consumer_tokens[index / IDLE_SOCKETS_PER_ACCOUNT], 0)
            } else {
                (&consumer_tokens[index], plan.producers_of(index).len())
            };
            let url = format!(
                "{}/consumer?events=subscriptions{batch}&token={token}",
                socket_base(index)
            );
            async move {
                let mut socket = open(&url, plan.source(index)).await?;
                let mut waiting = subscriptions;
                while waiting > 0 {
                    match socket.next().await {
                        Some(Ok(Message::Text(text))) => {
                            waiting = waiting.saturating_sub(text.matches("\"subscribed\"").count())
                        }
                        Some(Ok(_)) => {}
                        _ => return Err(setup("a consumer socket closed during set-up")),
                    }
                }
                Ok(socket)
            }
        })
        .buffered(concurrency)
        .try_collect()
        .await?;

    let tally = Arc::new(Tally::default());
    if idle {
        // Let the server settle, read its memory with every socket open, hold, close.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = server_rss(&watched.server);
        let held = Instant::now();
        tokio::time::sleep(Duration::from_secs(plan.seconds)).await;
        drop(sockets);
        return Ok(Outcome {
            tally,
            histogram: new_histogram()?,
            expected: 0,
            sending_seconds: held.elapsed().as_secs_f64(),
            cpu: CpuSpent::default(),
            rss_with_connections: rss,
        });
    }

    let mut readers = Vec::with_capacity(sockets.len());
    for mut socket in sockets {
        let tally = tally.clone();
        readers.push(tokio::spawn(async move {
            let mut histogram = new_histogram()?;
            let mut last_seq: HashMap<u64, u64> = HashMap::new();
            let mut idle = 0;
            loop {
                let Ok(item) = tokio::time::timeout(IDLE_WAIT, socket.next()).await else {
                    if tally.wait_again(&mut idle) {
                        continue;
                    }
                    break;
                };
                idle = 0;
                let text = match item {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(frame))) => {
                        let code = frame.map_or(1005, |frame| u16::from(frame.code));
                        tally.error(&format!("consumer_closed_{code}"));
                        break;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) => {
                        tally.error("consumer_read_failed");
                        break;
                    }
                    None => break,
                };
                // A batched frame holds one message per line.
                for line in text.split('\n') {
                    if !line.starts_with("{\"type\":\"data\"") {
                        continue;
                    }
                    let now = micros_now();
                    if let Some(sent) = number_after(line, "\"t\":") {
                        let _ = histogram.record(now.saturating_sub(sent).max(1));
                    }
                    tally.delivered.fetch_add(1, Ordering::Relaxed);
                    let producer = number_after(line, "\"producer_id\":").unwrap_or(0);
                    let seq = number_after(line, "\"seq\":").unwrap_or(0);
                    if let Some(previous) = last_seq.insert(producer, seq) {
                        tally
                            .gaps
                            .fetch_add(seq.saturating_sub(previous + 1), Ordering::Relaxed);
                    }
                }
            }
            Ok::<_, BenchError>(histogram)
        }));
    }

    let producer_sockets: Vec<Socket> = stream::iter(producers.iter().enumerate())
        .map(|(index, (_, token))| {
            let url = format!("{}/producer?token={token}", socket_base(index));
            async move { open(&url, plan.source(plan.consumers + index)).await }
        })
        .buffered(concurrency)
        .try_collect()
        .await?;
    let cpu = CpuWatch::start(watched);
    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    progress(tally.clone(), started, done.clone());
    let mut writers = Vec::with_capacity(producers.len());
    for (index, socket) in producer_sockets.into_iter().enumerate() {
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
    finish(plan, tally, cpu, started, done, writers, readers).await
}

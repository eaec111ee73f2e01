//! A first end-to-end measurement of streaming: P producers at R messages/s each, C consumers
//! each subscribed to K producers, over real sockets against a running nodegrid. Reports the
//! offered and delivered message rates, end-to-end latency percentiles (send time to receipt,
//! both on this machine's clock) and losses (sequence gaps). The full load tool is
//! `nodegrid bench` (its own issue); this is the probe that gave BENCHMARKS.md its first figure.
//!
//! The server must not rate-limit logins from one address for the set-up:
//!   NODEGRID_AUTH_IP_PER_MINUTE=0 NODEGRID_AUTH_USERNAME_PER_MINUTE=0 target/release/nodegrid serve
//!   cargo run --release --example stream_bench -- --producers 20 --consumers 20 --per-consumer 5 --rate 100 --seconds 15

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser, Debug, Clone)]
struct Options {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, default_value_t = 10)]
    producers: usize,
    #[arg(long, default_value_t = 10)]
    consumers: usize,
    /// Producers each consumer subscribes to (round-robin).
    #[arg(long, default_value_t = 1)]
    per_consumer: usize,
    /// Messages per second per producer.
    #[arg(long, default_value_t = 50)]
    rate: u32,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Extra payload bytes per message.
    #[arg(long, default_value_t = 64)]
    payload_bytes: usize,
}

fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros() as u64)
        .unwrap_or(0)
}

async fn account(http: &reqwest::Client, base: &str, name: &str, role: &str) -> (i64, String) {
    let password = "bench-password-1";
    let response = http
        .post(format!("{base}/api/auth/register"))
        .json(&json!({"username": name, "password": password, "role": role}))
        .send()
        .await
        .expect("register");
    assert!(
        response.status().is_success(),
        "register {name}: {}",
        response.status()
    );
    let login: Value = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"username": name, "password": password}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login body");
    let token = login["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    (login["user_id"].as_i64().expect("user id"), token)
}

fn percentile(sorted: &[u64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index] as f64 / 1_000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let options = Options::parse();
    let base = options.url.trim_end_matches('/').to_owned();
    let ws_base = base.replacen("http", "ws", 1);
    let http = reqwest::Client::new();
    let run = format!("{:x}", micros_now() % 0xffff_ffff);

    let mut producers = Vec::new();
    for index in 0..options.producers {
        producers.push(account(&http, &base, &format!("bp{run}-{index}"), "producer").await);
    }
    let mut consumers = Vec::new();
    for index in 0..options.consumers {
        let (id, token) = account(&http, &base, &format!("bc{run}-{index}"), "consumer").await;
        let mut subscribed = Vec::new();
        for offset in 0..options.per_consumer.min(options.producers) {
            let (producer_id, _) = &producers[(index + offset) % options.producers];
            let status = http
                .post(format!("{base}/api/subscribe"))
                .bearer_auth(&token)
                .json(&json!({"producer_id": producer_id}))
                .send()
                .await
                .expect("subscribe")
                .status();
            assert!(status.is_success(), "subscribe: {status}");
            subscribed.push(*producer_id);
        }
        consumers.push((id, token, subscribed));
    }
    let subscribers_of: HashMap<i64, u64> = consumers
        .iter()
        .flat_map(|(_, _, producers)| producers.iter().copied())
        .fold(HashMap::new(), |mut counts, producer| {
            *counts.entry(producer).or_default() += 1;
            counts
        });

    // Consumers first, each ready once every subscription is confirmed.
    let delivered = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for (_, token, subscribed) in &consumers {
        let (mut socket, _) =
            tokio_tungstenite::connect_async(format!("{ws_base}/consumer?token={token}"))
                .await
                .expect("consumer socket");
        let mut waiting = subscribed.len();
        while waiting > 0 {
            if let Some(Ok(Message::Text(text))) = socket.next().await
                && text.contains("\"subscribed\"")
            {
                waiting -= 1;
            }
        }
        let delivered = delivered.clone();
        readers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut last_seq: HashMap<i64, u64> = HashMap::new();
            let mut gaps = 0u64;
            while let Ok(Some(Ok(message))) =
                tokio::time::timeout(Duration::from_secs(3), socket.next()).await
            {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(frame) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if frame["type"] != "data" {
                    continue;
                }
                let now = micros_now();
                let sent = frame["payload"]["t"].as_u64().unwrap_or(now);
                latencies.push(now.saturating_sub(sent));
                delivered.fetch_add(1, Ordering::Relaxed);
                let producer = frame["producer_id"].as_i64().unwrap_or(0);
                let seq = frame["seq"].as_u64().unwrap_or(0);
                if let Some(previous) = last_seq.insert(producer, seq) {
                    gaps += seq.saturating_sub(previous + 1);
                }
            }
            (latencies, gaps)
        }));
    }

    let sent = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut writers = Vec::new();
    for (producer_id, token) in &producers {
        let (socket, _) =
            tokio_tungstenite::connect_async(format!("{ws_base}/producer?token={token}"))
                .await
                .expect("producer socket");
        let (mut sink, mut stream) = socket.split();
        let (acked, errors) = (acked.clone(), errors.clone());
        tokio::spawn(async move {
            while let Some(Ok(Message::Text(text))) = stream.next().await {
                if text.contains("\"ack\"") {
                    acked.fetch_add(1, Ordering::Relaxed);
                } else if text.contains("\"error\"") {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let sent = sent.clone();
        let options = options.clone();
        let producer_id = *producer_id;
        writers.push(tokio::spawn(async move {
            let padding = "x".repeat(options.payload_bytes);
            let mut ticker =
                tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(options.rate)));
            let deadline = Instant::now() + Duration::from_secs(options.seconds);
            let mut count = 0u64;
            while Instant::now() < deadline {
                ticker.tick().await;
                let frame = json!({"type": "data", "payload": {"t": micros_now(), "p": producer_id, "pad": padding}});
                if sink.send(Message::Text(frame.to_string().into())).await.is_err() {
                    break;
                }
                count += 1;
                sent.fetch_add(1, Ordering::Relaxed);
            }
            (producer_id, count)
        }));
    }
    let mut expected = 0u64;
    for writer in writers {
        let (producer_id, count) = writer.await.expect("producer task");
        expected += count * subscribers_of.get(&producer_id).copied().unwrap_or(0);
    }
    let sending_time = started.elapsed().as_secs_f64();
    let mut latencies = Vec::new();
    let mut gaps = 0;
    for reader in readers {
        let (mut some, some_gaps) = reader.await.expect("consumer task");
        latencies.append(&mut some);
        gaps += some_gaps;
    }
    latencies.sort_unstable();
    let delivered = delivered.load(Ordering::Relaxed);
    let report = json!({
        "producers": options.producers,
        "consumers": options.consumers,
        "per_consumer": options.per_consumer,
        "rate_per_producer": options.rate,
        "seconds": options.seconds,
        "sent": sent.load(Ordering::Relaxed),
        "acked": acked.load(Ordering::Relaxed),
        "errors": errors.load(Ordering::Relaxed),
        "offered_msgs_per_sec": (sent.load(Ordering::Relaxed) as f64 / sending_time).round(),
        "expected_deliveries": expected,
        "delivered": delivered,
        "delivered_msgs_per_sec": (delivered as f64 / sending_time).round(),
        "lost": expected.saturating_sub(delivered),
        "seq_gaps": gaps,
        "latency_ms": {
            "p50": percentile(&latencies, 0.50),
            "p90": percentile(&latencies, 0.90),
            "p99": percentile(&latencies, 0.99),
            "max": percentile(&latencies, 1.0),
        },
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
}

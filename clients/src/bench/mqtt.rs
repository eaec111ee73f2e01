//! The MQTT driver: the same fleet and broadcast shapes against a broker, one topic per
//! producer, QoS 0, no authentication (the broker's speed is the reference, not its features).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, Transport};

use super::measure::{CpuWatch, Watched, micros_now, new_histogram, number_after, progress};
use super::plan::{BenchError, IDLE_WAIT, Pacer, Plan, Tally};
use super::report::{Outcome, finish};

fn setup(error: impl std::fmt::Display) -> BenchError {
    BenchError::Setup(error.to_string())
}

/// A client's options for `target`: `mqtt://host:port` (TCP) or `mqtt+ws://host:port/path`
/// (WebSocket).
fn options(id: String, target: &str) -> Result<MqttOptions, BenchError> {
    let mut options = if let Some(rest) = target.strip_prefix("mqtt+ws://") {
        let (authority, _) = rest.split_once('/').unwrap_or((rest, ""));
        let port = match authority.rsplit_once(':') {
            Some((_, port)) => port.parse().map_err(setup)?,
            None => 80,
        };
        let mut options = MqttOptions::new(id, format!("ws://{rest}"), port);
        options.set_transport(Transport::Ws);
        options
    } else {
        let rest = target.strip_prefix("mqtt://").ok_or_else(|| {
            setup(format!(
                "{target} is neither mqtt://host:port nor mqtt+ws://host:port/path"
            ))
        })?;
        let (host, port) = rest.rsplit_once(':').unwrap_or((rest, "1883"));
        let port: u16 = port.trim_end_matches('/').parse().map_err(setup)?;
        MqttOptions::new(id, host, port)
    };
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(1024 * 1024, 1024 * 1024);
    Ok(options)
}

pub async fn run(target: &str, plan: &Plan, watched: &Watched) -> Result<Outcome, BenchError> {
    let run_id = format!("{:x}", micros_now() % 0xffff_ffff);
    let topic = |producer: usize| format!("nodegrid-bench/{run_id}/{producer}");
    let tally = Arc::new(Tally::default());
    let ready = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::with_capacity(plan.consumers);
    for index in 0..plan.consumers {
        let (client, mut events) =
            AsyncClient::new(options(format!("bc{run_id}-{index}"), target)?, 1_024);
        let wanted = plan.producers_of(index);
        for producer in &wanted {
            client
                .subscribe(topic(*producer), QoS::AtMostOnce)
                .await
                .map_err(setup)?;
        }
        let (tally, ready, wanted) = (tally.clone(), ready.clone(), wanted.len());
        readers.push(tokio::spawn(async move {
            let _keep = client;
            let mut histogram = new_histogram()?;
            let mut last_seq: HashMap<String, u64> = HashMap::new();
            let mut acked = 0;
            let mut idle = 0;
            loop {
                let Ok(event) = tokio::time::timeout(IDLE_WAIT, events.poll()).await else {
                    if tally.wait_again(&mut idle) {
                        continue;
                    }
                    break;
                };
                idle = 0;
                let Ok(event) = event else {
                    tally.error("consumer_read_failed");
                    break;
                };
                match event {
                    Event::Incoming(Packet::SubAck(_)) => {
                        acked += 1;
                        if acked == wanted {
                            ready.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Event::Incoming(Packet::Publish(publish)) => {
                        let now = micros_now();
                        let text = String::from_utf8_lossy(&publish.payload);
                        if let Some(sent) = number_after(&text, "\"t\":") {
                            let _ = histogram.record(now.saturating_sub(sent).max(1));
                        }
                        tally.delivered.fetch_add(1, Ordering::Relaxed);
                        let seq = number_after(&text, "\"s\":").unwrap_or(0);
                        if let Some(previous) = last_seq.insert(publish.topic, seq) {
                            tally
                                .gaps
                                .fetch_add(seq.saturating_sub(previous + 1), Ordering::Relaxed);
                        }
                    }
                    _ => {}
                }
            }
            Ok::<_, BenchError>(histogram)
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while ready.load(Ordering::SeqCst) < plan.consumers {
        if Instant::now() > deadline {
            return Err(setup(
                "MQTT subscriptions were not acknowledged within 30 s",
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let cpu = CpuWatch::start(watched);
    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    progress(tally.clone(), started, done.clone());
    let mut writers = Vec::with_capacity(plan.producers);
    for index in 0..plan.producers {
        let (client, mut events) =
            AsyncClient::new(options(format!("bp{run_id}-{index}"), target)?, 1_024);
        let driver = tokio::spawn(async move { while events.poll().await.is_ok() {} });
        let (tally, plan, topic) = (tally.clone(), plan.clone(), topic(index));
        writers.push(tokio::spawn(async move {
            let padding = "x".repeat(plan.payload_bytes);
            let mut pacer = Pacer::new(&plan);
            while let Some(count) = pacer.next().await {
                let payload = format!(r#"{{"t":{},"s":{count},"pad":"{padding}"}}"#, micros_now());
                if client
                    .publish(topic.as_str(), QoS::AtMostOnce, false, payload)
                    .await
                    .is_err()
                {
                    tally.error("publish_failed");
                    break;
                }
                tally.sent.fetch_add(1, Ordering::Relaxed);
            }
            let count = pacer.count();
            // QoS 0 has no acks: let the event loop flush what is queued before leaving.
            let _ = client.disconnect().await;
            if tokio::time::timeout(Duration::from_secs(5), driver)
                .await
                .is_err()
            {
                tally.error("flush_timeout");
            }
            (index, count)
        }));
    }
    let outcome = finish(plan, tally, cpu, started, done, writers, readers).await?;
    // QoS 0 has no acks; count what was sent, now that every producer is done.
    let sent = outcome.tally.sent.load(Ordering::Relaxed);
    outcome.tally.acked.store(sent, Ordering::Relaxed);
    Ok(outcome)
}

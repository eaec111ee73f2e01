//! Nothing lost: a consumer that drops (its socket, or its whole instance) resumes on another
//! instance and gets every message exactly once, in order; what left the history window is
//! reported as a gap, a reset history as a new epoch; the history is also served over HTTP.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use nodegrid_protocol::auth::Role;
use nodegrid_services::config::Settings;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, eventually, fresh_database, spawn_app_with, spawn_server_process, test_settings,
};
use crate::streaming::{send_data, subscribe, user};
use crate::ws::{Frame, Token, Ws, connect, connect_to};

/// Test settings with a producer rate no test here reaches.
pub(crate) fn fast_settings(database_url: &str) -> Settings {
    let mut settings = test_settings(database_url);
    settings.stream.producer_rate_per_sec = 1_000_000;
    settings.stream.producer_burst = 1_000_000;
    settings
}

/// Two instances sharing one database and one Redis prefix, with fast producers.
async fn two_fast_instances() -> (TestApp, TestApp, String) {
    let database = Arc::new(fresh_database().await);
    let a = fast_settings(&database.url);
    let mut b = fast_settings(&database.url);
    b.redis_prefix = a.redis_prefix.clone();
    let prefix = a.redis_prefix.clone();
    (
        spawn_app_with(database.clone(), a).await,
        spawn_app_with(database, b).await,
        prefix,
    )
}

/// What a consumer has seen, per producer: the last sequence number and epoch. Every data
/// frame must follow the last one by exactly one, unless a gap frame said why not.
#[derive(Debug, Default)]
struct Seen {
    last: BTreeMap<i64, u64>,
    epoch: BTreeMap<i64, String>,
    gaps: Vec<Value>,
    data: u64,
}

impl Seen {
    /// Takes one frame; returns the data frame's `(producer, seq)`.
    fn take(&mut self, frame: &Value) -> Option<(i64, u64)> {
        let producer = frame["producer_id"].as_i64()?;
        match frame["type"].as_str()? {
            "data" => {
                let seq = frame["seq"].as_u64().unwrap();
                let last = self.last.get(&producer).copied().unwrap_or(0);
                assert_eq!(
                    seq,
                    last + 1,
                    "producer {producer}: after {last} came {seq} (a duplicate or a gap)"
                );
                let epoch = frame["epoch"]
                    .as_str()
                    .expect("data frames carry the epoch");
                if let Some(known) = self.epoch.get(&producer) {
                    assert_eq!(known, epoch, "the epoch changed without a gap frame");
                }
                self.epoch.insert(producer, epoch.to_owned());
                self.last.insert(producer, seq);
                self.data += 1;
                Some((producer, seq))
            }
            "gap" => {
                let from = frame["from_seq"].as_u64().unwrap();
                let to = frame["to_seq"].as_u64().unwrap();
                let epoch = frame["epoch"].as_str().unwrap().to_owned();
                let last = self.last.get(&producer).copied().unwrap_or(0);
                if self.epoch.get(&producer) == Some(&epoch) {
                    assert_eq!(from, last + 1, "a gap starts right after what was seen");
                }
                self.last.insert(producer, to);
                self.epoch.insert(producer, epoch);
                self.gaps.push(frame.clone());
                None
            }
            _ => None,
        }
    }

    /// `?resume=` for everything seen so far.
    fn resume_query(&self) -> String {
        self.last
            .iter()
            .map(|(producer, seq)| match self.epoch.get(producer) {
                Some(epoch) => format!("{producer}:{seq}:{epoch}"),
                None => format!("{producer}:{seq}"),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Reads frames into `seen` until `done` says so; panics on a close.
async fn read_until(socket: &mut Ws, seen: &mut Seen, mut done: impl FnMut(&Seen) -> bool) {
    while !done(seen) {
        match socket.next().await {
            Frame::Closed { code, reason } => panic!("closed ({code} {reason}) while reading"),
            frame => {
                seen.take(frame.value());
            }
        }
    }
}

/// A producer that publishes on its socket until told to stop; the task's answer is the last
/// sequence number acked.
fn publish_until_stopped(
    mut producer: Ws,
    stop: Rc<AtomicBool>,
    acked: Rc<AtomicU64>,
) -> tokio::task::JoinHandle<u64> {
    actix_web::rt::spawn(async move {
        let mut last = 0;
        let mut count = 0u64;
        while !stop.load(Ordering::SeqCst) {
            count += 1;
            let ack = send_data(&mut producer, json!({"n": count})).await;
            last = ack["seq"].as_u64().unwrap();
            acked.store(last, Ordering::SeqCst);
        }
        producer.close().await;
        last
    })
}

#[actix_web::test]
async fn a_consumer_whose_socket_drops_resumes_on_the_other_instance_exactly_once_in_order() {
    let (a, b, _) = two_fast_instances().await;
    let (producer_id, producer_token) = user(&a, "resume-producer", Role::Producer).await;
    let (_, consumer_token) = user(&a, "resume-consumer", Role::Consumer).await;
    assert_eq!(subscribe(&a, &consumer_token, producer_id).await, 201);
    let mut consumer = connect(
        &b,
        "/consumer?events=subscriptions",
        Token::Query(&consumer_token),
    )
    .await
    .unwrap();
    consumer.next_of_type("subscribed").await;

    let producer = connect(&a, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();
    let (stop, acked) = (Rc::new(AtomicBool::new(false)), Rc::new(AtomicU64::new(0)));
    let publishing = publish_until_stopped(producer, stop.clone(), acked.clone());

    let mut seen = Seen::default();
    read_until(&mut consumer, &mut seen, |seen| seen.data >= 100).await;
    consumer.close().await;
    // The producer goes on while the consumer is away: at least 200 messages it will miss.
    let away_from = seen.last[&producer_id];
    eventually(
        "the producer publishes on",
        Duration::from_secs(20),
        || async { (acked.load(Ordering::SeqCst) >= away_from + 200).then_some(()) },
    )
    .await;

    let path = format!("/consumer?resume={}", seen.resume_query());
    let mut consumer = connect(&a, &path, Token::Query(&consumer_token))
        .await
        .unwrap();
    // The producer keeps publishing through the replay; stop it once the consumer is live.
    let resumed_at = acked.load(Ordering::SeqCst);
    read_until(&mut consumer, &mut seen, |seen| {
        seen.last.get(&producer_id).copied().unwrap_or(0) >= resumed_at + 50
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let last = publishing.await.unwrap();
    read_until(&mut consumer, &mut seen, |seen| {
        seen.last[&producer_id] >= last
    })
    .await;

    assert!(
        seen.gaps.is_empty(),
        "no gap within the window: {:?}",
        seen.gaps
    );
    assert_eq!(seen.data, last, "every message exactly once");
    assert!(
        consumer
            .next_within(Duration::from_millis(300))
            .await
            .is_none(),
        "nothing after the last message"
    );
    a.shut_down().await.unwrap();
    b.shut_down().await.unwrap();
}

#[actix_web::test]
async fn a_consumer_whose_instance_is_killed_resumes_on_another_exactly_once_in_order() {
    let database = Arc::new(fresh_database().await);
    let settings = fast_settings(&database.url);
    let prefix = settings.redis_prefix.clone();
    let a = spawn_app_with(database.clone(), settings).await;
    let mut b = spawn_server_process(&database.url, &prefix);
    let (producer_id, producer_token) = user(&a, "killed-producer", Role::Producer).await;
    let (_, consumer_token) = user(&a, "killed-consumer", Role::Consumer).await;
    assert_eq!(subscribe(&a, &consumer_token, producer_id).await, 201);
    let mut consumer = connect_to(
        b.port,
        "/consumer?events=subscriptions",
        Token::Query(&consumer_token),
        None,
        &[],
    )
    .await
    .unwrap();
    consumer.next_of_type("subscribed").await;

    let producer = connect(&a, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();
    let (stop, acked) = (Rc::new(AtomicBool::new(false)), Rc::new(AtomicU64::new(0)));
    let publishing = publish_until_stopped(producer, stop.clone(), acked.clone());

    let mut seen = Seen::default();
    read_until(&mut consumer, &mut seen, |seen| seen.data >= 50).await;
    b.signal("KILL");
    let _ = b.wait_exit(Duration::from_secs(10));
    // The consumer learns of it as a dropped connection, after whatever was in flight.
    loop {
        match consumer.next().await {
            Frame::Closed { .. } => break,
            frame => {
                seen.take(frame.value());
            }
        }
    }

    let path = format!("/consumer?resume={}", seen.resume_query());
    let mut consumer = connect(&a, &path, Token::Query(&consumer_token))
        .await
        .unwrap();
    let resumed_at = acked.load(Ordering::SeqCst);
    read_until(&mut consumer, &mut seen, |seen| {
        seen.last[&producer_id] >= resumed_at + 50
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let last = publishing.await.unwrap();
    read_until(&mut consumer, &mut seen, |seen| {
        seen.last[&producer_id] >= last
    })
    .await;
    assert!(
        seen.gaps.is_empty(),
        "no gap within the window: {:?}",
        seen.gaps
    );
    assert_eq!(seen.data, last, "every message exactly once");
    a.shut_down().await.unwrap();
}

#[actix_web::test]
async fn resuming_past_the_window_reports_the_gap_then_sends_the_rest() {
    let database = Arc::new(fresh_database().await);
    let mut settings = fast_settings(&database.url);
    settings.stream_defaults.history_messages = 10;
    let app = spawn_app_with(database, settings).await;
    let (producer_id, producer_token) = user(&app, "window-producer", Role::Producer).await;
    let (_, consumer_token) = user(&app, "window-consumer", Role::Consumer).await;
    assert_eq!(subscribe(&app, &consumer_token, producer_id).await, 201);
    let mut producer = connect(&app, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();
    for n in 1..=30 {
        let ack = send_data(&mut producer, json!(n)).await;
        assert_eq!(ack["seq"], n);
    }
    // The epoch, as a consumer would have it from its last data frame.
    let history: Value = app
        .get_with(
            &format!("/api/producers/{producer_id}/history?since_seq=29"),
            &consumer_token,
        )
        .await
        .json()
        .await
        .unwrap();
    let epoch = history["epoch"].as_str().unwrap().to_owned();
    assert_eq!(history["messages"][0]["epoch"], epoch.as_str());

    let path = format!("/consumer?resume={producer_id}:5:{epoch}");
    let mut consumer = connect(&app, &path, Token::Query(&consumer_token))
        .await
        .unwrap();
    let gap = consumer.next().await.value().clone();
    assert_eq!(
        gap,
        json!({"type": "gap", "producer_id": producer_id, "from_seq": 6, "to_seq": 20, "epoch": epoch})
    );
    for seq in 21..=30 {
        let frame = consumer.next_of_type("data").await;
        assert_eq!(frame["seq"], seq);
        assert_eq!(frame["payload"], seq);
    }
    let live = send_data(&mut producer, json!("live")).await;
    let frame = consumer.next_of_type("data").await;
    assert_eq!(
        (frame["seq"].clone(), frame["payload"].clone()),
        (live["seq"].clone(), json!("live"))
    );
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn a_reset_history_is_reported_as_a_new_epoch() {
    let database = Arc::new(fresh_database().await);
    let settings = fast_settings(&database.url);
    let app = spawn_app_with(database, settings).await;
    let (producer_id, producer_token) = user(&app, "epoch-producer", Role::Producer).await;
    let (_, consumer_token) = user(&app, "epoch-consumer", Role::Consumer).await;
    assert_eq!(subscribe(&app, &consumer_token, producer_id).await, 201);
    let mut producer = connect(&app, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();
    let mut consumer = connect(
        &app,
        "/consumer?events=subscriptions",
        Token::Query(&consumer_token),
    )
    .await
    .unwrap();
    consumer.next_of_type("subscribed").await;
    for n in 1..=5 {
        send_data(&mut producer, json!(n)).await;
    }
    let mut seen = Seen::default();
    read_until(&mut consumer, &mut seen, |seen| seen.data == 5).await;
    consumer.close().await;
    let old_epoch = seen.epoch[&producer_id].clone();

    // Redis loses the producer's stream state, as a flush or a failover without persistence
    // would.
    use fred::interfaces::KeysInterface as _;
    let keys = app.bus.keys();
    let _: i64 = app
        .bus
        .publisher()
        .del(vec![
            keys.producer_seq(producer_id),
            keys.producer_epoch(producer_id),
            keys.producer_history(producer_id),
        ])
        .await
        .unwrap();
    for n in 6..=8 {
        send_data(&mut producer, json!(n)).await;
    }

    let path = format!("/consumer?resume={}", seen.resume_query());
    let mut consumer = connect(&app, &path, Token::Query(&consumer_token))
        .await
        .unwrap();
    let gap = consumer.next().await.value().clone();
    assert_eq!(gap["type"], "gap", "{gap}");
    let new_epoch = gap["epoch"].as_str().unwrap().to_owned();
    assert_ne!(new_epoch, old_epoch, "the epoch changed");
    seen.take(&gap);
    // Everything the new epoch holds follows, in order.
    read_until(&mut consumer, &mut seen, |seen| seen.data == 8).await;
    assert_eq!(seen.epoch[&producer_id], new_epoch);
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn a_resume_frame_sends_history_then_live_and_refuses_other_producers() {
    let database = Arc::new(fresh_database().await);
    let app = spawn_app_with(database.clone(), fast_settings(&database.url)).await;
    let (producer_id, producer_token) = user(&app, "frame-producer", Role::Producer).await;
    let (other_id, _) = user(&app, "frame-other", Role::Producer).await;
    let (_, consumer_token) = user(&app, "frame-consumer", Role::Consumer).await;
    assert_eq!(subscribe(&app, &consumer_token, producer_id).await, 201);
    let mut producer = connect(&app, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();
    for n in 1..=5 {
        send_data(&mut producer, json!(n)).await;
    }
    let mut consumer = connect(&app, "/consumer", Token::Query(&consumer_token))
        .await
        .unwrap();
    consumer
        .send_json(&json!({"type": "resume", "producer_id": producer_id, "since_seq": 2}))
        .await;
    for seq in 3..=5 {
        assert_eq!(consumer.next_of_type("data").await["seq"], seq);
    }
    send_data(&mut producer, json!("live")).await;
    assert_eq!(consumer.next_of_type("data").await["seq"], 6);

    consumer
        .send_json(&json!({"type": "resume", "producer_id": other_id, "since_seq": 0}))
        .await;
    let error = consumer.next_of_type("error").await;
    assert_eq!(error["code"], "not_subscribed");
    consumer
        .send_json(&json!({"type": "resume", "producer_id": producer_id}))
        .await;
    assert_eq!(consumer.next_of_type("error").await["code"], "bad_frame");

    // A malformed ?resume= is refused before the upgrade.
    for bad in ["x", "1", "1:2:3:4", "1:-4"] {
        let refused = connect(
            &app,
            &format!("/consumer?resume={bad}"),
            Token::Query(&consumer_token),
        )
        .await;
        assert_eq!(refused.err(), Some(400), "{bad}");
    }
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn history_over_http_is_for_the_producer_its_subscribers_and_admins() {
    let database = Arc::new(fresh_database().await);
    let app = spawn_app_with(database.clone(), fast_settings(&database.url)).await;
    let (producer_id, producer_token) = user(&app, "http-producer", Role::Producer).await;
    let (_, subscriber) = user(&app, "http-subscriber", Role::Consumer).await;
    let (_, stranger) = user(&app, "http-stranger", Role::Consumer).await;
    let (_, other_producer) = user(&app, "http-other", Role::Producer).await;
    assert_eq!(subscribe(&app, &subscriber, producer_id).await, 201);
    let mut producer = connect(&app, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();
    for n in 1..=12 {
        send_data(&mut producer, json!({"n": n, "nul": "a\u{0}b"})).await;
    }
    let admin = app.admin_token().await;
    for token in [&producer_token, &subscriber, &admin] {
        let response = app
            .get_with(
                &format!("/api/producers/{producer_id}/history?since_seq=4&limit=5"),
                token,
            )
            .await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["producer_id"], producer_id);
        assert_eq!(body["last_seq"], 12);
        assert_eq!(body["first_seq"], 1);
        assert_eq!(body["more"], true);
        let seqs: Vec<u64> = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, [5, 6, 7, 8, 9]);
        assert_eq!(
            body["messages"][0]["payload"],
            json!({"n": 5, "nul": "a\u{0}b"})
        );
        assert_eq!(body["messages"][0]["type"], "data");
    }
    for token in [&stranger, &other_producer] {
        let response = app
            .get_with(&format!("/api/producers/{producer_id}/history"), token)
            .await;
        assert_eq!(response.status(), 403);
    }
    let response = app
        .get_with(
            &format!("/api/producers/{producer_id}/history?limit=0"),
            &producer_token,
        )
        .await;
    assert_eq!(response.status(), 400);
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn consumers_reconnecting_at_random_points_see_every_sequence_without_gaps() {
    const PRODUCERS: usize = 10;
    const MESSAGES: u64 = 1_000;
    const CONSUMERS: usize = 3;
    let seed: u64 = rand::random();
    eprintln!("randomized resume test: seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let (a, b, _) = two_fast_instances().await;
    let apps = [&a, &b];
    let mut producer_ids = Vec::new();
    let mut publishers = Vec::new();
    let mut consumer_tokens = Vec::new();
    for index in 0..CONSUMERS {
        consumer_tokens.push(
            user(&a, &format!("random-consumer-{index}"), Role::Consumer)
                .await
                .1,
        );
    }
    for index in 0..PRODUCERS {
        let (producer_id, token) =
            user(&a, &format!("random-producer-{index}"), Role::Producer).await;
        for consumer in &consumer_tokens {
            assert_eq!(subscribe(&a, consumer, producer_id).await, 201);
        }
        producer_ids.push(producer_id);
        let app = apps[index % 2];
        let mut producer = connect(app, "/producer", Token::Query(&token))
            .await
            .unwrap();
        publishers.push(actix_web::rt::spawn(async move {
            // Bursts of 50, then their acks: the producer streams while consumers come and go.
            let mut sent = 0;
            while sent < MESSAGES {
                let burst = 50.min(MESSAGES - sent);
                for n in 0..burst {
                    producer
                        .send_json(&json!({"type": "data", "payload": {"n": sent + n}}))
                        .await;
                }
                for _ in 0..burst {
                    producer.next_of_type("ack").await;
                }
                sent += burst;
            }
            producer.close().await;
        }));
    }

    let mut readers = Vec::new();
    for token in consumer_tokens {
        let plan: Vec<(usize, usize)> = (0..40)
            .map(|_| (rng.random_range(0..2), rng.random_range(1..400)))
            .collect();
        let (a_port, b_port) = (a.port, b.port);
        let expected = producer_ids.len();
        let producers = producer_ids.clone();
        readers.push(actix_web::rt::spawn(async move {
            // From the first message of every producer: the first connect resumes from 0.
            let mut seen = Seen::default();
            for producer_id in producers {
                seen.last.insert(producer_id, 0);
            }
            let ports = [a_port, b_port];
            let complete = |seen: &Seen| {
                seen.last.len() == expected && seen.last.values().all(|&last| last >= MESSAGES)
            };
            let mut reconnects = 0;
            for (instance, frames) in plan.into_iter().chain(std::iter::repeat((0, usize::MAX))) {
                let path = format!("/consumer?resume={}", seen.resume_query());
                let mut socket =
                    connect_to(ports[instance], &path, Token::Query(&token), None, &[])
                        .await
                        .unwrap();
                reconnects += 1;
                for _ in 0..frames {
                    if complete(&seen) {
                        break;
                    }
                    match socket.next().await {
                        Frame::Closed { code, reason } => panic!("closed: {code} {reason}"),
                        frame => {
                            seen.take(frame.value());
                        }
                    }
                }
                socket.close().await;
                if complete(&seen) {
                    break;
                }
            }
            (seen, reconnects)
        }));
    }
    for publisher in publishers {
        publisher.await.unwrap();
    }
    for reader in readers {
        let (seen, reconnects) = tokio::time::timeout(Duration::from_secs(120), reader)
            .await
            .expect("every consumer catches up")
            .unwrap();
        assert!(reconnects > 1, "the consumer reconnected (seed {seed})");
        for producer_id in &producer_ids {
            assert_eq!(seen.last[producer_id], MESSAGES, "seed {seed}");
        }
        // Within the window nothing is lost, so no gap was needed.
        assert!(seen.gaps.is_empty(), "seed {seed}: {:?}", seen.gaps);
        assert_eq!(seen.data, MESSAGES * PRODUCERS as u64, "seed {seed}");
    }
    a.shut_down().await.unwrap();
    b.shut_down().await.unwrap();
}

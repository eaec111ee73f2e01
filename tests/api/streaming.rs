//! Live streaming over real sockets, Redis and Postgres: producers, consumers, subscriptions,
//! fan-out across instances, limits and failures.

use std::sync::Arc;
use std::time::Duration;

use nodegrid_protocol::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{
    PASSWORD, TestApp, eventually, fresh_database, spawn_app, spawn_app_with, test_settings,
};
use crate::private::OwnRedis;
use crate::ws::{Frame, Token, Ws, connect, connect_with_buffer};

/// A user of `role` and an access token of theirs.
pub(crate) async fn user(app: &TestApp, username: &str, role: Role) -> (i64, String) {
    let user = app.register(username, role).await;
    let tokens = app.login(username, PASSWORD).await;
    (user.user_id, tokens.access_token)
}

pub(crate) async fn subscribe(app: &TestApp, token: &str, producer_id: i64) -> u16 {
    app.post(
        "/api/subscribe",
        &json!({"producer_id": producer_id}),
        Some(token),
    )
    .await
    .status()
    .as_u16()
}

/// Opens a consumer socket and waits until it receives each of `producers`.
async fn consumer(app: &TestApp, token: &str, producers: &[i64]) -> Ws {
    let mut socket = connect(app, "/consumer?events=subscriptions", Token::Query(token))
        .await
        .unwrap();
    for _ in producers {
        let frame = socket.next_of_type("subscribed").await;
        assert!(producers.contains(&frame["producer_id"].as_i64().unwrap()));
    }
    socket
}

pub(crate) async fn send_data(producer: &mut Ws, payload: Value) -> Value {
    producer
        .send_json(&json!({"type": "data", "payload": payload}))
        .await;
    producer.next_of_type("ack").await
}

/// Publishes `payloads` as one batch through the publish API: one script call, so their
/// messages reach every subscriber back to back.
async fn publish_burst(app: &TestApp, producer_id: i64, token: &str, payloads: Vec<Value>) {
    let response = app
        .post(
            &format!("/api/producers/{producer_id}/publish"),
            &json!({ "payloads": payloads }),
            Some(token),
        )
        .await;
    assert_eq!(response.status(), 200);
}

/// Two instances sharing one database and one Redis prefix.
async fn two_instances() -> (TestApp, TestApp) {
    let database = Arc::new(fresh_database().await);
    let a = test_settings(&database.url);
    let mut b = test_settings(&database.url);
    b.redis_prefix = a.redis_prefix.clone();
    (
        spawn_app_with(database.clone(), a).await,
        spawn_app_with(database, b).await,
    )
}

#[actix_web::test]
async fn a_motience_client_streams_to_a_subscribed_consumer() {
    let app = spawn_app().await;
    let (producer_id, producer_token) = user(&app, "pi-1", Role::Producer).await;
    let (consumer_id, consumer_token) = user(&app, "dashboard", Role::Consumer).await;
    assert_eq!(subscribe(&app, &consumer_token, producer_id).await, 201);
    assert_eq!(subscribe(&app, &consumer_token, producer_id).await, 200);

    let mut dashboard = consumer(&app, &consumer_token, &[producer_id]).await;
    // Exactly what a Motience device does: token in the query, a bare data frame.
    let mut device = connect(&app, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();
    device
        .send_text(r#"{"type":"data","payload":{"cpu":12.5,"temp":48}}"#)
        .await;
    let ack = device.next_of_type("ack").await;
    assert_eq!(ack, json!({"type": "ack", "subscriberCount": 1, "seq": 1}));

    let data = dashboard.next_of_type("data").await;
    assert_eq!(data["producer_id"], producer_id);
    assert_eq!(data["seq"], 1);
    assert_eq!(data["payload"], json!({"cpu": 12.5, "temp": 48}));
    let ts = data["ts"].as_i64().unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    assert!((now - 60_000..=now).contains(&ts), "ts {ts} is server time");

    // The REST views.
    let response = app
        .get_with(
            &format!("/api/subscriptions/{consumer_id}"),
            &consumer_token,
        )
        .await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["producers"][0]["user_id"], producer_id);
    let response = app
        .get_with(&format!("/api/subscribers/{producer_id}"), &producer_token)
        .await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["subscriberCount"], 1);
    assert_eq!(body["consumers"][0]["username"], "dashboard");
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn messages_cross_instances_in_json_and_messagepack() {
    let (a, b) = two_instances().await;
    let (producer_id, producer_token) = user(&a, "sensor", Role::Producer).await;
    let (_, json_token) = user(&a, "json-app", Role::Consumer).await;
    let (_, msgpack_token) = user(&a, "msgpack-app", Role::Consumer).await;
    assert_eq!(subscribe(&a, &json_token, producer_id).await, 201);
    assert_eq!(subscribe(&a, &msgpack_token, producer_id).await, 201);

    let mut json_app = consumer(&b, &json_token, &[producer_id]).await;
    let mut msgpack_app = consumer(&b, &msgpack_token, &[producer_id]).await;
    // A binary frame switches the session to MessagePack (subscribing again is harmless).
    msgpack_app
        .send_msgpack(&json!({"type": "subscribe", "producer_id": producer_id}))
        .await;
    match msgpack_app.next().await {
        Frame::MessagePack(value) => assert_eq!(value["type"], "subscribed"),
        other => panic!("expected a MessagePack frame, got {other:?}"),
    }

    let mut producer = connect(&a, "/producer", Token::Header(&producer_token))
        .await
        .unwrap();
    producer
        .send_msgpack(&json!({"type": "data", "payload": {"v": [1, 2, 3]}, "id": "m-1"}))
        .await;
    match producer.next().await {
        Frame::MessagePack(ack) => {
            assert_eq!(
                ack,
                json!({"type": "ack", "subscriberCount": 2, "seq": 1, "id": "m-1"})
            );
        }
        other => panic!("expected a MessagePack ack, got {other:?}"),
    }
    match json_app.next().await {
        Frame::Json(data) => {
            assert_eq!(data["payload"], json!({"v": [1, 2, 3]}));
            assert_eq!(data["seq"], 1);
        }
        other => panic!("expected JSON data, got {other:?}"),
    }
    match msgpack_app.next().await {
        Frame::MessagePack(data) => {
            assert_eq!(data["type"], "data");
            assert_eq!(data["producer_id"], producer_id);
            assert_eq!(data["payload"], json!({"v": [1, 2, 3]}));
        }
        other => panic!("expected MessagePack data, got {other:?}"),
    }
    a.shut_down().await.unwrap();
    b.shut_down().await.unwrap();
}

/// `?batch=1`: what waits for the socket comes in as few frames as there are bursts, one JSON
/// text per line; every message arrives once, in order. Anything but 0/1 is refused.
#[actix_web::test]
async fn a_batched_consumer_gets_every_message_once_in_order_one_per_line() {
    let app = spawn_app().await;
    let (producer_id, producer_token) = user(&app, "burst", Role::Producer).await;
    let (_, token) = user(&app, "batched-app", Role::Consumer).await;
    assert_eq!(subscribe(&app, &token, producer_id).await, 201);
    assert_eq!(
        connect(&app, "/consumer?batch=2", Token::Query(&token))
            .await
            .err(),
        Some(400)
    );
    let mut socket = connect(
        &app,
        "/consumer?batch=1&events=subscriptions",
        Token::Query(&token),
    )
    .await
    .unwrap();
    let first = socket.next_raw_text().await;
    assert!(first.contains("\"subscribed\""), "{first}");

    const MESSAGES: u64 = 150;
    for round in 0..2 {
        let payloads = (0..MESSAGES / 2).map(|index| json!({"round": round, "index": index}));
        publish_burst(&app, producer_id, &producer_token, payloads.collect()).await;
    }
    let mut seqs = Vec::new();
    let mut frames = 0;
    while (seqs.len() as u64) < MESSAGES {
        let text = socket.next_raw_text().await;
        frames += 1;
        for line in text.split('\n') {
            let frame: Value = serde_json::from_str(line).unwrap();
            assert_eq!(frame["type"], "data", "{line}");
            seqs.push(frame["seq"].as_u64().unwrap());
        }
    }
    assert_eq!(seqs, (1..=MESSAGES).collect::<Vec<_>>());
    assert!(frames <= MESSAGES, "{frames} frames");
    // Nothing more comes: no message was sent twice.
    assert!(
        socket
            .next_within(Duration::from_millis(300))
            .await
            .is_none()
    );
    app.shut_down().await.unwrap();
}

/// A fan-out that falls behind its Redis subscriber loses nothing: here the subscriber holds
/// 16 messages and bursts of 100 arrive at once, so most are dropped before the fan-out reads
/// them (counted as lagged), and the sessions get them from history, once each, in order.
#[actix_web::test]
async fn a_fanout_that_falls_behind_its_subscriber_catches_up_from_history() {
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.redis_subscriber_buffer = 16;
    settings.stream.producer_rate_per_sec = 100_000;
    settings.stream.producer_burst = 100_000;
    let app = spawn_app_with(database, settings).await;
    let (producer_id, producer_token) = user(&app, "flood", Role::Producer).await;
    let (_, token) = user(&app, "steady-reader", Role::Consumer).await;
    assert_eq!(subscribe(&app, &token, producer_id).await, 201);
    let mut reader = consumer(&app, &token, &[producer_id]).await;

    const BURSTS: u64 = 5;
    const BURST: u64 = 100;
    for burst in 0..BURSTS {
        let payloads = (0..BURST).map(|index| json!([burst, index]));
        publish_burst(&app, producer_id, &producer_token, payloads.collect()).await;
    }
    let mut seqs = Vec::new();
    while (seqs.len() as u64) < BURSTS * BURST {
        seqs.push(reader.next_of_type("data").await["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs, (1..=BURSTS * BURST).collect::<Vec<_>>());
    assert!(
        reader
            .next_within(Duration::from_millis(300))
            .await
            .is_none(),
        "a message came twice"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let counter = |name: &str| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(
        counter("nodegrid_bus_messages_lagged_total") > 0.0,
        "the fan-out never fell behind: the test did not test the catch-up"
    );
    assert!(counter("nodegrid_stream_catch_ups_total") > 0.0);
    app.shut_down().await.unwrap();
}

/// A consumer's `subscribed` frame means the instance's subscription is live in Redis (its
/// probe came back), so a message published right after it arrives; the probes that every
/// instance publishes on a channel it subscribes never reach a consumer.
#[actix_web::test]
async fn a_subscription_is_live_when_announced_and_probes_never_reach_consumers() {
    let (a, b) = two_instances().await;
    let (producer_id, producer_token) = user(&a, "probed", Role::Producer).await;
    let (_, on_a) = user(&a, "probed-on-a", Role::Consumer).await;
    let (_, on_b) = user(&a, "probed-on-b", Role::Consumer).await;
    assert_eq!(subscribe(&a, &on_a, producer_id).await, 201);
    assert_eq!(subscribe(&a, &on_b, producer_id).await, 201);
    let mut producer = connect(&a, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();
    // Each instance's probe also reaches the other's subscriber; one more, as a third
    // instance would send it.
    let mut consumer_a = consumer(&a, &on_a, &[producer_id]).await;
    let mut consumer_b = consumer(&b, &on_b, &[producer_id]).await;
    let channel = a.bus.keys().producer_channel(producer_id);
    a.bus.publish_probe(&channel, 42).await.unwrap();

    let ack = send_data(&mut producer, json!("first")).await;
    assert_eq!(ack["subscriberCount"], 2);
    for socket in [&mut consumer_a, &mut consumer_b] {
        let frame = socket.next().await.value().clone();
        assert_eq!(
            (frame["type"].as_str(), frame["seq"].as_u64()),
            (Some("data"), Some(1))
        );
        assert!(
            socket
                .next_within(Duration::from_millis(300))
                .await
                .is_none(),
            "nothing but the message"
        );
    }
    a.shut_down().await.unwrap();
    b.shut_down().await.unwrap();
}

#[actix_web::test]
async fn subscriber_counts_follow_subscribe_and_unsubscribe() {
    let (a, b) = two_instances().await;
    let (producer_id, producer_token) = user(&a, "meter", Role::Producer).await;
    let (_, first) = user(&a, "first", Role::Consumer).await;
    let (_, second) = user(&a, "second", Role::Consumer).await;
    let mut producer = connect(&a, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();

    assert_eq!(
        send_data(&mut producer, json!(1)).await["subscriberCount"],
        0
    );
    assert_eq!(subscribe(&a, &first, producer_id).await, 201);
    assert_eq!(
        send_data(&mut producer, json!(2)).await["subscriberCount"],
        1
    );
    assert_eq!(subscribe(&a, &second, producer_id).await, 201);
    assert_eq!(
        send_data(&mut producer, json!(3)).await["subscriberCount"],
        2
    );
    let response = a
        .http
        .delete(format!("{}/api/subscribe/{producer_id}", a.address))
        .bearer_auth(&first)
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["removed"], true);
    assert_eq!(
        send_data(&mut producer, json!(4)).await["subscriberCount"],
        1
    );

    // A change made on the other instance reaches this one through the control channel.
    let response = b
        .http
        .delete(format!("{}/api/unsubscribe", b.address))
        .bearer_auth(&second)
        .json(&json!({"producer_id": producer_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let producer = tokio::sync::Mutex::new(producer);
    eventually(
        "instance a counts no subscriber",
        Duration::from_secs(10),
        || async {
            let mut producer = producer.lock().await;
            let ack = send_data(&mut producer, json!("probe")).await;
            (ack["subscriberCount"] == 0).then_some(())
        },
    )
    .await;
    a.shut_down().await.unwrap();
    b.shut_down().await.unwrap();
}

#[actix_web::test]
async fn subscriptions_take_effect_on_an_open_socket_of_another_instance() {
    let (a, b) = two_instances().await;
    let (producer_id, producer_token) = user(&a, "cam", Role::Producer).await;
    let (_, consumer_token) = user(&a, "viewer", Role::Consumer).await;
    let mut viewer = consumer(&b, &consumer_token, &[]).await;
    let mut producer = connect(&a, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();

    // REST on a, socket on b: no reconnect needed.
    assert_eq!(subscribe(&a, &consumer_token, producer_id).await, 201);
    let subscribed = viewer.next_of_type("subscribed").await;
    assert_eq!(subscribed["producer_id"], producer_id);
    let ack = send_data(&mut producer, json!({"frame": 1})).await;
    assert_eq!(viewer.next_of_type("data").await["seq"], ack["seq"]);

    // Unsubscribed (Motience's form): delivery stops.
    let response = a
        .http
        .delete(format!("{}/api/unsubscribe", a.address))
        .bearer_auth(&consumer_token)
        .json(&json!({"producer_id": producer_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        viewer.next_of_type("unsubscribed").await["producer_id"],
        producer_id
    );
    let missed = send_data(&mut producer, json!({"frame": 2})).await;

    // Subscribed again, live, from the socket itself: the next data is newer than the missed one.
    viewer
        .send_json(&json!({"type": "subscribe", "producer_id": producer_id}))
        .await;
    viewer.next_of_type("subscribed").await;
    let ack = send_data(&mut producer, json!({"frame": 3})).await;
    let mut data = viewer.next_of_type("data").await;
    // A Redis Cluster carries a message to the other primaries after its publish returned: the
    // missed one may still reach b after the new subscription, in order, before the next.
    if fred::interfaces::ClientLike::is_clustered(a.bus.publisher()) && data["seq"] == missed["seq"]
    {
        data = viewer.next_of_type("data").await;
    }
    assert_eq!(data["seq"], ack["seq"]);
    assert!(data["seq"].as_u64() > missed["seq"].as_u64());
    assert_eq!(data["payload"], json!({"frame": 3}));
    a.shut_down().await.unwrap();
    b.shut_down().await.unwrap();
}

#[actix_web::test]
async fn sequence_numbers_keep_order_across_reconnects_and_restarts() {
    let database = Arc::new(fresh_database().await);
    let settings = test_settings(&database.url);
    let app = spawn_app_with(database.clone(), settings.clone()).await;
    let (producer_id, producer_token) = user(&app, "ordered", Role::Producer).await;
    let (_, consumer_token) = user(&app, "reader", Role::Consumer).await;
    assert_eq!(subscribe(&app, &consumer_token, producer_id).await, 201);
    let mut reader = consumer(&app, &consumer_token, &[producer_id]).await;

    let mut producer = connect(&app, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();
    for index in 0..50 {
        producer
            .send_json(&json!({"type": "data", "payload": index, "id": format!("m{index}")}))
            .await;
    }
    for index in 0..50u64 {
        let ack = producer.next_of_type("ack").await;
        assert_eq!(ack["seq"], index + 1);
        assert_eq!(ack["id"], format!("m{index}"));
    }
    for index in 0..50u64 {
        let data = reader.next_of_type("data").await;
        assert_eq!(data["seq"], index + 1);
        assert_eq!(data["payload"], index);
    }
    producer.close().await;

    // A new connection continues the sequence.
    let mut producer = connect(&app, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();
    assert_eq!(
        send_data(&mut producer, json!("after reconnect")).await["seq"],
        51
    );
    producer.close().await;
    reader.close().await;
    app.shut_down().await.unwrap();

    // So does a new server on the same database and Redis.
    let app = spawn_app_with(database.clone(), settings).await;
    let producer_token = app.login("ordered", PASSWORD).await.access_token;
    let mut producer = connect(&app, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();
    assert_eq!(
        send_data(&mut producer, json!("after restart")).await["seq"],
        52
    );
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn bad_frames_get_typed_errors_and_the_socket_stays_open() {
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.stream.max_frame_bytes = 1024;
    settings.stream.producer_rate_per_sec = 1;
    settings.stream.producer_burst = 3;
    let app = spawn_app_with(database, settings).await;
    let (_, producer_token) = user(&app, "noisy", Role::Producer).await;
    let (_, consumer_token) = user(&app, "picky", Role::Consumer).await;
    let mut producer = connect(&app, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();

    async fn error_code(socket: &mut Ws) -> String {
        let frame = socket.next_of_type("error").await;
        assert!(
            frame["message"]
                .as_str()
                .is_some_and(|text| !text.is_empty())
        );
        frame["code"].as_str().unwrap().to_owned()
    }
    producer.send_text("{not json").await;
    assert_eq!(error_code(&mut producer).await, "bad_frame");
    producer.send_json(&json!({"type": "data"})).await;
    assert_eq!(error_code(&mut producer).await, "bad_frame");
    producer
        .send_json(&json!({"type": "telemetry", "payload": 1}))
        .await;
    assert_eq!(error_code(&mut producer).await, "unknown_type");
    producer
        .send_json(&json!({"type": "data", "payload": "x".repeat(2048)}))
        .await;
    assert_eq!(error_code(&mut producer).await, "too_large");
    producer
        .send_json(&json!({"type": "subscribe", "producer_id": 1}))
        .await;
    assert_eq!(error_code(&mut producer).await, "forbidden");
    // The burst is 3: the fourth message in a row is refused, with its id.
    for index in 0..3 {
        assert_eq!(send_data(&mut producer, json!(index)).await["type"], "ack");
    }
    producer
        .send_json(&json!({"type": "data", "payload": 4, "id": "too-fast"}))
        .await;
    let refused = producer.next_of_type("error").await;
    assert_eq!(refused["code"], "rate_limited");
    assert_eq!(refused["id"], "too-fast");

    let mut consumer = connect(&app, "/consumer", Token::Query(&consumer_token))
        .await
        .unwrap();
    consumer
        .send_json(&json!({"type": "data", "payload": 1}))
        .await;
    assert_eq!(error_code(&mut consumer).await, "forbidden");
    consumer
        .send_json(&json!({"type": "subscribe", "producer_id": 999_999}))
        .await;
    assert_eq!(error_code(&mut consumer).await, "producer_not_found");
    assert_eq!(
        app.post(
            "/api/subscribe",
            &json!({"producer_id": 999_999}),
            Some(&consumer_token)
        )
        .await
        .status(),
        404
    );

    // Sustained abuse closes the socket with 4002.
    for _ in 0..30 {
        consumer.send_text("garbage").await;
    }
    assert_eq!(consumer.closed().await, (4002, "too_many_errors".into()));

    let metrics = app.get("/metrics").await.text().await.unwrap();
    for code in [
        "bad_frame",
        "unknown_type",
        "too_large",
        "rate_limited",
        "forbidden",
    ] {
        assert!(
            metrics.contains(&format!("code=\"{code}\"")),
            "no {code} in metrics"
        );
    }
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn sockets_refuse_bad_tokens_and_wrong_roles_before_the_upgrade() {
    let app = spawn_app().await;
    let (_, producer_token) = user(&app, "dev-x", Role::Producer).await;
    let (_, consumer_token) = user(&app, "app-x", Role::Consumer).await;
    assert_eq!(
        connect(&app, "/producer", Token::Query("not-a-token"))
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        connect(&app, "/producer", Token::Query(&consumer_token))
            .await
            .err(),
        Some(403)
    );
    assert_eq!(
        connect(&app, "/consumer", Token::Header(&producer_token))
            .await
            .err(),
        Some(403)
    );
    let response = app
        .post(
            "/api/subscribe",
            &json!({"producer_id": 1}),
            Some(&producer_token),
        )
        .await;
    assert_eq!(response.status(), 403);
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn a_slow_consumer_is_cut_off_while_others_get_everything() {
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.stream.producer_rate_per_sec = 100_000;
    settings.stream.producer_burst = 100_000;
    settings.stream.buffer_messages = 128;
    settings.stream.buffer_bytes = 512 * 1024;
    let app = spawn_app_with(database, settings).await;
    let (producer_id, producer_token) = user(&app, "firehose", Role::Producer).await;
    let (_, fast_token) = user(&app, "fast", Role::Consumer).await;
    let (_, slow_token) = user(&app, "slow", Role::Consumer).await;
    assert_eq!(subscribe(&app, &fast_token, producer_id).await, 201);
    assert_eq!(subscribe(&app, &slow_token, producer_id).await, 201);

    let mut slow = connect_with_buffer(
        &app,
        "/consumer?events=subscriptions",
        Token::Query(&slow_token),
        Some(4096),
    )
    .await
    .unwrap();
    slow.next_of_type("subscribed").await;
    // From here on the slow consumer reads nothing until the server gives up on it.
    let mut fast = consumer(&app, &fast_token, &[producer_id]).await;
    let mut producer = connect(&app, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();

    const MESSAGES: u64 = 3_000;
    let reader = tokio::spawn(async move {
        let mut expected = 1;
        while expected <= MESSAGES {
            let data = fast.next_of_type("data").await;
            assert_eq!(data["seq"], expected, "the fast consumer misses nothing");
            expected += 1;
        }
        fast
    });
    let filler = "x".repeat(4_000);
    // In batches, reading the acks in between: the producer is a reader too, with the same
    // outbound limit.
    for batch in 0..MESSAGES / 30 {
        for index in batch * 30..(batch + 1) * 30 {
            producer
                .send_json(&json!({"type": "data", "payload": {"n": index, "fill": filler}}))
                .await;
        }
        for _ in 0..30 {
            assert_eq!(producer.next_of_type("ack").await["type"], "ack");
        }
    }
    let fast = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the fast consumer gets everything")
        .unwrap();

    eventually(
        "the slow consumer is cut off",
        Duration::from_secs(20),
        || async {
            let metrics = app.get("/metrics").await.text().await.unwrap();
            metrics
                .contains(r#"nodegrid_ws_closes_total{role="consumer",reason="slow_consumer"}"#)
                .then_some(())
        },
    )
    .await;
    // Reading now, it finds what was already on the wire, then the close.
    assert_eq!(slow.closed().await, (4008, "slow_consumer".into()));
    fast.close().await;
    app.shut_down().await.unwrap();
}

/// The one buffer of a consumer socket is `--consumer-buffer-messages` frames: once that many
/// wait (the kernel's buffers being full), the next message closes the socket, not one more
/// buffer's worth later.
#[actix_web::test]
async fn a_consumer_socket_buffers_exactly_the_configured_number_of_frames() {
    const LIMIT: u64 = 24;
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.stream.producer_rate_per_sec = 100_000;
    settings.stream.producer_burst = 100_000;
    settings.stream.buffer_messages = LIMIT as usize;
    settings.stream.buffer_bytes = 64 * 1024 * 1024;
    // No pings in the queue while the test counts frames.
    settings.stream.ping_interval = Duration::from_secs(3_000);
    settings.stream.idle_timeout = Duration::from_secs(3_600);
    let app = spawn_app_with(database, settings).await;
    let (producer_id, producer_token) = user(&app, "counted", Role::Producer).await;
    let (_, stalled_token) = user(&app, "stalled", Role::Consumer).await;
    assert_eq!(subscribe(&app, &stalled_token, producer_id).await, 201);
    let admin = app.admin_token().await;
    let stalled = connect_with_buffer(
        &app,
        "/consumer?events=subscriptions",
        Token::Query(&stalled_token),
        Some(4096),
    )
    .await
    .unwrap();
    let mut producer = connect(&app, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();
    let stalled_view = || async {
        let view: Value = app
            .get_with("/api/admin/connections", &admin)
            .await
            .json()
            .await
            .unwrap();
        view["instances"][0]["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|connection| connection["kind"] == "consumer")
            .cloned()
    };
    eventually(
        "the stalled consumer is registered",
        Duration::from_secs(10),
        || async { stalled_view().await.map(|_| ()) },
    )
    .await;
    let filler = "y".repeat(16_000);
    let mut sent = 0u64;
    // One message at a time, until the socket's queue holds exactly the limit: everything sent
    // is either written to the connection (`frames_out`) or waiting (`buffered_messages`).
    loop {
        assert!(sent < 10_000, "the queue never filled");
        send_data(&mut producer, json!({"n": sent, "fill": filler})).await;
        sent += 1;
        let view = eventually(
            "the message reaches the stalled socket",
            Duration::from_secs(10),
            || async {
                let view = stalled_view().await?;
                let accounted =
                    view["frames_out"].as_u64()? + view["buffered_messages"].as_u64()?;
                // The `subscribed` frame was written too.
                (accounted == sent + 1).then_some(view)
            },
        )
        .await;
        let buffered = view["buffered_messages"].as_u64().unwrap();
        assert!(buffered <= LIMIT, "{view}");
        if buffered == LIMIT {
            break;
        }
    }
    // One more, and the socket is closed: there is no second buffer behind the first.
    send_data(&mut producer, json!({"n": sent})).await;
    eventually(
        "the stalled consumer is closed",
        Duration::from_secs(10),
        || async { stalled_view().await.is_none().then_some(()) },
    )
    .await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"nodegrid_ws_closes_total{role="consumer",reason="slow_consumer"}"#)
    );
    stalled.close().await;
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn blocking_a_user_closes_their_sockets_on_every_instance() {
    let (a, b) = two_instances().await;
    let (producer_id, producer_token) = user(&a, "stolen", Role::Producer).await;
    let (consumer_id, consumer_token) = user(&a, "leaker", Role::Consumer).await;
    assert_eq!(subscribe(&a, &consumer_token, producer_id).await, 201);
    let mut producer_on_a = connect(&a, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();
    let mut producer_on_b = connect(&b, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();
    let mut consumer_on_b = consumer(&b, &consumer_token, &[producer_id]).await;
    send_data(&mut producer_on_a, json!(1)).await;

    let admin = a.admin_token().await;
    for user_id in [producer_id, consumer_id] {
        let response = a
            .post(
                &format!("/api/admin/users/{user_id}/block"),
                &json!({"reason": "compromised"}),
                Some(&admin),
            )
            .await;
        assert_eq!(response.status(), 200);
    }
    for socket in [&mut producer_on_a, &mut producer_on_b, &mut consumer_on_b] {
        assert_eq!(socket.closed().await, (4003, "user_blocked".into()));
    }
    // And they cannot come back.
    assert_eq!(
        connect(&b, "/producer", Token::Query(&producer_token))
            .await
            .err(),
        Some(403)
    );
    a.shut_down().await.unwrap();
    b.shut_down().await.unwrap();
}

#[actix_web::test]
async fn admins_see_live_connections_of_every_instance() {
    let (a, b) = two_instances().await;
    let (producer_id, producer_token) = user(&a, "visible-dev", Role::Producer).await;
    let (_, consumer_token) = user(&a, "visible-app", Role::Consumer).await;
    assert_eq!(subscribe(&a, &consumer_token, producer_id).await, 201);
    let mut producer = connect(&a, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();
    let _consumer = consumer(&b, &consumer_token, &[producer_id]).await;
    send_data(&mut producer, json!("hello")).await;

    let admin = a.admin_token().await;
    let view = eventually("both instances report", Duration::from_secs(10), || async {
        let view: Value = a
            .get_with("/api/admin/connections", &admin)
            .await
            .json()
            .await
            .unwrap();
        (view["producers"] == 1 && view["consumers"] == 1).then_some(view)
    })
    .await;
    let instances = view["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 2, "{view:#}");
    let connections: Vec<&Value> = instances
        .iter()
        .flat_map(|instance| instance["connections"].as_array().unwrap())
        .collect();
    let producer_view = connections
        .iter()
        .find(|connection| connection["kind"] == "producer")
        .unwrap();
    assert_eq!(producer_view["username"], "visible-dev");
    assert_eq!(producer_view["frames_in"], 1);
    let consumer_view = connections
        .iter()
        .find(|connection| connection["kind"] == "consumer")
        .unwrap();
    assert_eq!(consumer_view["subscriptions"], 1);
    assert_ne!(producer_view["instance"], consumer_view["instance"]);

    let (_, curious) = user(&a, "not-admin", Role::Consumer).await;
    assert_eq!(
        a.get_with("/api/admin/connections", &curious)
            .await
            .status(),
        403
    );
    a.shut_down().await.unwrap();
    b.shut_down().await.unwrap();
}

#[actix_web::test]
async fn delivery_survives_redis_going_away_and_coming_back() {
    let port = crate::helpers::closed_port();
    let mut redis = OwnRedis::start(port).await;
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.redis_url = format!("redis://127.0.0.1:{port}");
    settings.ready_timeout = Duration::from_millis(500);
    let app = spawn_app_with(database, settings).await;
    let (producer_id, producer_token) = user(&app, "steady", Role::Producer).await;
    let (_, consumer_token) = user(&app, "patient", Role::Consumer).await;
    assert_eq!(subscribe(&app, &consumer_token, producer_id).await, 201);
    let mut reader = consumer(&app, &consumer_token, &[producer_id]).await;
    let mut producer = connect(&app, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();
    let first = send_data(&mut producer, json!("before")).await;
    assert_eq!(reader.next_of_type("data").await["seq"], first["seq"]);

    redis.stop();
    eventually("/ready reports Redis", Duration::from_secs(10), || async {
        let response = app.get("/ready").await;
        (response.status() == 503).then_some(())
    })
    .await;
    // Never an ack for a message that was not published.
    producer
        .send_json(&json!({"type": "data", "payload": "during", "id": "lost"}))
        .await;
    let frame = producer.next().await;
    assert_eq!(frame.value()["type"], "error", "{frame:?}");
    assert_eq!(frame.value()["code"], "unavailable");
    assert_eq!(frame.value()["id"], "lost");

    let _redis = OwnRedis::start(port).await;
    // The producer's socket stayed open; once Redis is back, messages flow again, end to end,
    // with sequence numbers that went on from where they were.
    let sockets = tokio::sync::Mutex::new((producer, reader));
    let delivered = eventually(
        "delivery resumes once Redis is back",
        Duration::from_secs(30),
        || async {
            let (producer, reader) = &mut *sockets.lock().await;
            producer
                .send_json(&json!({"type": "data", "payload": "after"}))
                .await;
            let frame = producer.next().await;
            if frame.value()["type"] != "ack" {
                return None;
            }
            assert!(frame.value()["seq"].as_u64() > first["seq"].as_u64());
            match reader.next_within(Duration::from_millis(500)).await {
                Some(Frame::Json(data)) if data["type"] == "data" => Some(data),
                _ => None,
            }
        },
    )
    .await;
    assert!(delivered["seq"].as_u64() > first["seq"].as_u64());
    // Each of the instance's Redis connections comes back on its own backoff: ready once all
    // have.
    eventually(
        "/ready once every Redis connection is back",
        Duration::from_secs(10),
        || async { (app.get("/ready").await.status() == 200).then_some(()) },
    )
    .await;
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn silent_sockets_are_closed_after_the_idle_timeout() {
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.stream.ping_interval = Duration::from_millis(300);
    settings.stream.idle_timeout = Duration::from_secs(1);
    let app = spawn_app_with(database, settings).await;
    let (_, consumer_token) = user(&app, "sleepy", Role::Consumer).await;
    // Not reading means not answering pings.
    let mut sleepy = connect(&app, "/consumer", Token::Query(&consumer_token))
        .await
        .unwrap();
    eventually(
        "the idle socket is closed",
        Duration::from_secs(10),
        || async {
            let metrics = app.get("/metrics").await.text().await.unwrap();
            metrics
                .contains(r#"nodegrid_ws_closes_total{role="consumer",reason="idle_timeout"}"#)
                .then_some(())
        },
    )
    .await;
    assert_eq!(sleepy.closed().await, (4000, "idle_timeout".into()));
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn streaming_is_measured() {
    let app = spawn_app().await;
    let (producer_id, producer_token) = user(&app, "measured", Role::Producer).await;
    let (_, consumer_token) = user(&app, "watcher", Role::Consumer).await;
    assert_eq!(subscribe(&app, &consumer_token, producer_id).await, 201);
    let mut reader = consumer(&app, &consumer_token, &[producer_id]).await;
    let mut producer = connect(&app, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();
    send_data(&mut producer, json!({"x": 1})).await;
    reader.next_of_type("data").await;

    let metrics = app.get("/metrics").await.text().await.unwrap();
    for expected in [
        r#"nodegrid_ws_connections{role="producer"}"#,
        r#"nodegrid_ws_connections{role="consumer"}"#,
        r#"nodegrid_ws_frames_in_total{role="producer",type="data"}"#,
        r#"nodegrid_ws_frames_out_total{role="producer",type="ack"}"#,
        r#"nodegrid_ws_frames_out_total{role="consumer",type="data"}"#,
        r#"nodegrid_ws_bytes_in_total{role="producer"}"#,
        "nodegrid_stream_publish_duration_seconds_bucket",
        "nodegrid_stream_delivery_latency_seconds_bucket",
        "nodegrid_stream_bus_messages_total",
    ] {
        assert!(metrics.contains(expected), "/metrics lacks {expected}");
    }
    crate::probes::assert_valid_exposition(&metrics);
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn shutdown_closes_sockets_with_1001() {
    let app = spawn_app().await;
    let (_, consumer_token) = user(&app, "leaving", Role::Consumer).await;
    let (_, producer_token) = user(&app, "leaving-dev", Role::Producer).await;
    let mut reader = connect(&app, "/consumer", Token::Query(&consumer_token))
        .await
        .unwrap();
    let mut producer = connect(&app, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();
    // Both sockets are registered once they answer.
    producer.send_json(&json!({"type": "hello"})).await;
    producer.next_of_type("error").await;
    reader.send_json(&json!({"type": "hello"})).await;
    reader.next_of_type("error").await;

    let shutdown = tokio::spawn(app.shut_down());
    assert_eq!(reader.closed().await, (1001, "server_shutdown".into()));
    assert_eq!(producer.closed().await, (1001, "server_shutdown".into()));
    shutdown.await.unwrap().unwrap();
}

#[actix_web::test]
async fn an_instance_subscribes_each_producer_channel_once_while_it_is_needed() {
    let app = spawn_app().await;
    let (producer_id, _) = user(&app, "shared-dev", Role::Producer).await;
    let (_, first_token) = user(&app, "first-reader", Role::Consumer).await;
    let (_, second_token) = user(&app, "second-reader", Role::Consumer).await;
    assert_eq!(subscribe(&app, &first_token, producer_id).await, 201);
    assert_eq!(subscribe(&app, &second_token, producer_id).await, 201);
    let channel = app.bus.keys().producer_channel(producer_id);
    let subscribers = |app: &TestApp| {
        let (bus, channel) = (app.bus.clone(), channel.clone());
        async move {
            crate::helpers::channel_subscribers(&bus, &channel)
                .await
                .expect("Redis answers")
        }
    };

    let first = consumer(&app, &first_token, &[producer_id]).await;
    assert_eq!(subscribers(&app).await, 1);
    let second = consumer(&app, &second_token, &[producer_id]).await;
    assert_eq!(
        subscribers(&app).await,
        1,
        "one Redis subscription for both sessions"
    );
    first.close().await;
    second.close().await;
    eventually(
        "the channel is released",
        Duration::from_secs(10),
        || async { (subscribers(&app).await == 0).then_some(()) },
    )
    .await;

    // Unknown producers are 404 on the REST views too.
    let admin = app.admin_token().await;
    let response = app.get_with("/api/subscribers/999999", &admin).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "producer_not_found");
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn a_message_resent_with_the_same_id_is_published_once() {
    let app = spawn_app().await;
    let (producer_id, producer_token) = user(&app, "resender", Role::Producer).await;
    let (_, consumer_token) = user(&app, "once-reader", Role::Consumer).await;
    assert_eq!(subscribe(&app, &consumer_token, producer_id).await, 201);
    let mut reader = consumer(&app, &consumer_token, &[producer_id]).await;
    let mut producer = connect(&app, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();

    let frame = json!({"type": "data", "payload": "reading", "id": "r-1"});
    producer.send_json(&frame).await;
    let first = producer.next_of_type("ack").await;
    // A reconnecting client that lost the ack sends it again.
    producer.close().await;
    let mut producer = connect(&app, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();
    producer.send_json(&frame).await;
    let again = producer.next_of_type("ack").await;
    assert_eq!(again["seq"], first["seq"]);
    assert_eq!(again["id"], "r-1");
    let next = send_data(&mut producer, json!("next")).await;

    assert_eq!(reader.next_of_type("data").await["seq"], first["seq"]);
    let data = reader.next_of_type("data").await;
    assert_eq!(
        data["seq"], next["seq"],
        "the resend was not delivered again"
    );
    app.shut_down().await.unwrap();
}

/// A gateway or a fast sensor sends a burst back to back: every message is accepted, acked in
/// order with strictly increasing `seq`, and delivered in order.
#[actix_web::test]
async fn a_burst_of_five_thousand_frames_is_acked_and_delivered_in_order() {
    const MESSAGES: u64 = 5_000;
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.stream.producer_rate_per_sec = 1_000_000;
    settings.stream.producer_burst = 1_000_000;
    settings.stream.buffer_messages = 2 * MESSAGES as usize;
    settings.stream.buffer_bytes = 64 * 1024 * 1024;
    let app = spawn_app_with(database, settings).await;
    let (producer_id, producer_token) = user(&app, "gateway", Role::Producer).await;
    let (_, consumer_token) = user(&app, "archive", Role::Consumer).await;
    assert_eq!(subscribe(&app, &consumer_token, producer_id).await, 201);
    let mut reader = consumer(&app, &consumer_token, &[producer_id]).await;
    let mut producer = connect(&app, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();

    let payload = "p".repeat(80);
    for index in 0..MESSAGES {
        producer
            .send_json(&json!({"type": "data", "payload": {"i": index, "p": payload}}))
            .await;
    }
    let mut last_seq = 0;
    for _ in 0..MESSAGES {
        let frame = producer.next().await;
        let ack = frame.value();
        assert_eq!(ack["type"], "ack", "refused: {ack}");
        let seq = ack["seq"].as_u64().unwrap();
        assert!(seq > last_seq, "seq {seq} after {last_seq}");
        last_seq = seq;
    }
    for index in 0..MESSAGES {
        let data = reader.next_of_type("data").await;
        assert_eq!(data["payload"]["i"], index, "in order");
        assert_eq!(data["seq"], index + 1);
    }
    // Nothing was refused: every answer above was an ack. (The metrics are the test process's,
    // shared with tests that take Redis away, so they cannot say it for this server alone.)
    app.shut_down().await.unwrap();
}

/// Fast is not abusive: a producer over its rate is told when to retry and keeps its socket;
/// malformed frames still close it.
#[actix_web::test]
async fn a_rate_limited_producer_keeps_its_socket_and_learns_when_to_retry() {
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.stream.producer_rate_per_sec = 5;
    settings.stream.producer_burst = 5;
    let app = spawn_app_with(database, settings).await;
    let (_, producer_token) = user(&app, "eager", Role::Producer).await;
    let mut producer = connect(&app, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();
    // Far more than the error budget (20) of refusals in a row.
    for index in 0..60 {
        producer
            .send_json(&json!({"type": "data", "payload": index, "id": format!("m{index}")}))
            .await;
    }
    let (mut acks, mut limited, mut retry_after_ms) = (0, 0, 0);
    for _ in 0..60 {
        let frame = producer.next().await;
        let frame = frame.value();
        match frame["type"].as_str() {
            Some("ack") => acks += 1,
            Some("error") => {
                assert_eq!(frame["code"], "rate_limited", "{frame}");
                let retry = frame["retry_after_ms"].as_u64().unwrap();
                assert!((1..=1_000).contains(&retry), "{frame}");
                retry_after_ms = retry_after_ms.max(retry);
                limited += 1;
            }
            other => panic!("unexpected {other:?}: {frame}"),
        }
    }
    assert_eq!(acks, 5);
    assert_eq!(limited, 55);
    // Still open: after the hint, the next message is accepted.
    tokio::time::sleep(Duration::from_millis(retry_after_ms)).await;
    assert_eq!(
        send_data(&mut producer, json!("later")).await["type"],
        "ack"
    );

    // Malformed frames are another matter.
    for _ in 0..30 {
        producer.send_text("{broken").await;
    }
    assert_eq!(producer.closed().await, (4002, "too_many_errors".into()));
    app.shut_down().await.unwrap();
}

//! Stored producer data: written off the publish path, paged back, kept across restarts, and
//! never lost silently while Postgres is away.

use std::sync::Arc;
use std::time::Duration;

use nodegrid_protocol::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{
    PASSWORD, TestApp, eventually, fresh_database, spawn_app_with, spawn_server_process_with,
    unique_prefix,
};
use crate::history::fast_settings;
use crate::outage::{Relay, postgres_target, through_relay};
use crate::streaming::{send_data, subscribe, user};
use crate::ws::{Token, connect, connect_to};

/// Every stored message of `producer_id`, page by page (ascending), as `token` reads them.
pub(crate) async fn stored(
    app: &TestApp,
    token: &str,
    producer_id: i64,
    query: &str,
) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/producers/{producer_id}/data?limit=100&{query}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let response = app.get_with(&path, token).await;
        assert_eq!(response.status(), 200, "{path}");
        let page: Value = response.json().await.unwrap();
        let batch = page["items"].as_array().unwrap();
        assert!(batch.len() <= 100);
        items.extend(batch.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
}

fn seqs(items: &[Value]) -> Vec<u64> {
    items
        .iter()
        .map(|item| item["seq"].as_u64().unwrap())
        .collect()
}

#[actix_web::test]
async fn stored_data_pages_correctly_and_survives_a_restart() {
    let database = Arc::new(fresh_database().await);
    let mut settings = fast_settings(&database.url);
    settings.stream_defaults.store_data = true;
    let app = spawn_app_with(database.clone(), settings.clone()).await;
    let (producer_id, producer_token) = user(&app, "stored-producer", Role::Producer).await;
    let (_, subscriber) = user(&app, "stored-subscriber", Role::Consumer).await;
    let (_, stranger) = user(&app, "stored-stranger", Role::Consumer).await;
    assert_eq!(subscribe(&app, &subscriber, producer_id).await, 201);
    let mut producer = connect(&app, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();
    // A string with NUL in it: jsonb would refuse it; stored data keeps it exactly.
    send_data(&mut producer, json!({"n": 1, "text": "before\u{0}after"})).await;
    for n in 2..=250 {
        send_data(&mut producer, json!({"n": n})).await;
    }
    eventually(
        "every message is stored",
        Duration::from_secs(20),
        || async {
            (stored(&app, &producer_token, producer_id, "").await.len() == 250).then_some(())
        },
    )
    .await;
    producer.close().await;
    app.shut_down().await.unwrap();

    // Another process's life: the data is still there.
    let mut settings = settings;
    settings.redis_prefix = unique_prefix();
    let app = spawn_app_with(database, settings).await;
    let items = stored(&app, &subscriber, producer_id, "").await;
    assert_eq!(seqs(&items), (1..=250).collect::<Vec<_>>());
    assert_eq!(
        items[0]["payload"],
        json!({"n": 1, "text": "before\u{0}after"})
    );
    assert_eq!(items[249]["payload"], json!({"n": 250}));
    assert!(items.iter().all(|item| item["epoch"] == items[0]["epoch"]));

    let newest: Value = app
        .get_with(
            &format!("/api/producers/{producer_id}/data?order=desc&limit=3"),
            &subscriber,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seqs(newest["items"].as_array().unwrap()), [250, 249, 248]);
    // A time window: from message 100's time (inclusive) to message 201's (exclusive). Several
    // messages may share a millisecond, so the window is checked against the timestamps.
    let (since, until) = (
        items[99]["ts"].as_i64().unwrap(),
        items[200]["ts"].as_i64().unwrap(),
    );
    let window = stored(
        &app,
        &subscriber,
        producer_id,
        &format!("since={since}&until={until}"),
    )
    .await;
    let expected: Vec<u64> = items
        .iter()
        .filter(|item| (since..until).contains(&item["ts"].as_i64().unwrap()))
        .map(|item| item["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs(&window), expected);
    assert!(window.len() >= 100);

    assert_eq!(
        app.get_with(&format!("/api/producers/{producer_id}/data"), &stranger)
            .await
            .status(),
        403
    );
    for bad in ["order=up", "cursor=nope", "limit=5000", "since=yesterday"] {
        let response = app
            .get_with(
                &format!("/api/producers/{producer_id}/data?{bad}"),
                &subscriber,
            )
            .await;
        assert_eq!(response.status(), 400, "{bad}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "validation_failed");
    }
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn while_postgres_is_away_accepted_messages_wait_and_are_stored_when_it_is_back() {
    let database = Arc::new(fresh_database().await);
    let relay = Relay::start(postgres_target(&database.url)).await;
    let mut settings = fast_settings(&through_relay(&database.url, relay.port));
    settings.stream_defaults.store_data = true;
    settings.ready_timeout = Duration::from_millis(500);
    let app = spawn_app_with(database.clone(), settings).await;
    let (producer_id, producer_token) = user(&app, "outage-producer", Role::Producer).await;
    let mut producer = connect(&app, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();
    for n in 1..=50 {
        send_data(&mut producer, json!(n)).await;
    }
    eventually(
        "the first messages are stored",
        Duration::from_secs(20),
        || async {
            (stored(&app, &producer_token, producer_id, "").await.len() == 50).then_some(())
        },
    )
    .await;

    relay.cut().await;
    eventually(
        "/ready reports Postgres",
        Duration::from_secs(10),
        || async { (app.get("/ready").await.status() == 503).then_some(()) },
    )
    .await;
    // Publishing does not wait on Postgres: every message is acked while it is away.
    for n in 51..=150 {
        let ack = send_data(&mut producer, json!(n)).await;
        assert_eq!(ack["seq"], n);
    }
    relay.restore();
    let items = eventually(
        "the messages accepted during the outage are stored",
        Duration::from_secs(30),
        || async {
            let response = app
                .get_with(
                    &format!("/api/producers/{producer_id}/data?limit=1000"),
                    &producer_token,
                )
                .await;
            if response.status() != 200 {
                return None;
            }
            let page: Value = response.json().await.ok()?;
            let items = page["items"].as_array()?.clone();
            (items.len() == 150).then_some(items)
        },
    )
    .await;
    assert_eq!(seqs(&items), (1..=150).collect::<Vec<_>>());
    app.shut_down().await.unwrap();
}

/// A user of the server process at `port`, and their access token.
async fn process_user(port: u16, username: &str, role: Role) -> (i64, String) {
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let registered: Value = http
        .post(format!("{base}/api/auth/register"))
        .json(&json!({"username": username, "password": PASSWORD, "role": role}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let login: Value = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"username": username, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        registered["user_id"].as_i64().unwrap(),
        login["access_token"].as_str().unwrap().to_owned(),
    )
}

#[actix_web::test]
async fn past_its_buffer_the_writer_drops_counts_and_logs_exactly_what() {
    let database = fresh_database().await;
    let relay = Relay::start(postgres_target(&database.url)).await;
    let server = spawn_server_process_with(
        &through_relay(&database.url, relay.port),
        &unique_prefix(),
        0,
        &[
            ("NODEGRID_STORE_DATA", "true"),
            ("NODEGRID_DATA_WRITER_BUFFER_ROWS", "40"),
            ("NODEGRID_PRODUCER_RATE_PER_SEC", "100000"),
            ("NODEGRID_PRODUCER_BURST", "100000"),
        ],
    );
    let (producer_id, token) = process_user(server.port, "bounded-producer", Role::Producer).await;
    let mut producer = connect_to(server.port, "/producer", Token::Query(&token), None, &[])
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let data_url = format!(
        "http://127.0.0.1:{}/api/producers/{producer_id}/data?limit=1000",
        server.port
    );
    let stored_count = || async {
        let response = http.get(&data_url).bearer_auth(&token).send().await.ok()?;
        let page: Value = response.json().await.ok()?;
        Some(page["items"].as_array()?.len())
    };
    for n in 1..=10 {
        send_data(&mut producer, json!(n)).await;
    }
    eventually(
        "the first messages are stored",
        Duration::from_secs(20),
        || async { (stored_count().await == Some(10)).then_some(()) },
    )
    .await;

    relay.cut().await;
    for n in 11..=110 {
        send_data(&mut producer, json!(n)).await;
    }
    // 40 wait in the writer's queue; the 60 after them are dropped, and the log says which.
    let line = eventually("the drop is logged", Duration::from_secs(10), || async {
        server.drain_log().into_iter().find_map(|line| {
            let event: Value = serde_json::from_str(&line).ok()?;
            (event["dropped"].is_u64()).then_some(event)
        })
    })
    .await;
    assert_eq!(line["producer_id"], producer_id);
    assert_eq!(line["dropped"], 60);
    assert_eq!(line["first_seq"], 51);
    assert_eq!(line["last_seq"], 110);
    assert_eq!(line["level"], "ERROR");

    relay.restore();
    eventually(
        "the queued messages are stored",
        Duration::from_secs(30),
        || async { (stored_count().await == Some(50)).then_some(()) },
    )
    .await;
    let metrics = http
        .get(format!("http://127.0.0.1:{}/metrics", server.port))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|line| line == "nodegrid_data_rows_dropped_total 60"),
        "{metrics}"
    );
}

#[actix_web::test]
async fn days_past_the_retention_are_dropped_by_the_housekeeper() {
    let database = Arc::new(fresh_database().await);
    let mut settings = fast_settings(&database.url);
    settings.stream_defaults.store_data = true;
    settings.housekeeping_interval = Duration::from_millis(300);
    let app = spawn_app_with(database.clone(), settings).await;
    let (producer_id, token) = user(&app, "retained-producer", Role::Producer).await;
    let mut producer = connect(&app, "/producer", Token::Query(&token))
        .await
        .unwrap();
    send_data(&mut producer, json!("today")).await;
    eventually(
        "today's message is stored",
        Duration::from_secs(20),
        || async { (stored(&app, &token, producer_id, "").await.len() == 1).then_some(()) },
    )
    .await;

    // A day 40 days ago, as an older deployment would have left it.
    let client = crate::helpers::connect(&database.url).await;
    let day_ms: i64 = 86_400_000;
    let old_day = (chrono::Utc::now().timestamp_millis() / day_ms) - 40;
    let name = format!(
        "producer_data_d{}",
        chrono::DateTime::from_timestamp(old_day * 86_400, 0)
            .unwrap()
            .format("%Y%m%d")
    );
    client
        .batch_execute(&format!(
            "CREATE TABLE {name} PARTITION OF producer_data FOR VALUES FROM ({}) TO ({}); \
             INSERT INTO producer_data VALUES ({producer_id}, {}, 1, 'old', '\"old\"')",
            old_day * day_ms,
            (old_day + 1) * day_ms,
            old_day * day_ms + 5
        ))
        .await
        .unwrap();
    let partitions = || async {
        client
            .query(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
                 JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'producer_data'",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<_, String>(0))
            .collect::<Vec<_>>()
    };
    assert!(partitions().await.contains(&name));
    eventually(
        "the old day is dropped",
        Duration::from_secs(20),
        || async { (!partitions().await.contains(&name)).then_some(()) },
    )
    .await;
    // Today's stays.
    assert_eq!(partitions().await.len(), 1);
    assert_eq!(stored(&app, &token, producer_id, "").await.len(), 1);
    app.shut_down().await.unwrap();
}

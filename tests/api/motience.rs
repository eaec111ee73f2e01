//! Motience clients work unchanged: the quick start's requests and frames, replayed as they are
//! with only the base URL changed.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    TestApp, channel_subscribers, eventually, fresh_database, spawn_app, spawn_app_with,
    test_settings,
};
use crate::ws::{Frame, Token, connect};

/// Waits until this instance has subscribed the producer's channel, so that a consumer that
/// asked for no subscription events is known to be live.
pub(crate) async fn until_channel_is_live(app: &TestApp, producer_id: i64) {
    let channel = app.bus.keys().producer_channel(producer_id);
    eventually(
        "the producer's channel is live",
        Duration::from_secs(10),
        || {
            let (bus, channel) = (app.bus.clone(), channel.clone());
            async move { (channel_subscribers(&bus, &channel).await? > 0).then_some(()) }
        },
    )
    .await;
}

#[actix_web::test]
async fn the_motience_quick_start_runs_unchanged_but_for_the_base_url() {
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    // Motience's quick start registers `pass123`; a deployment of its devices allows it.
    settings.password_min_length = 6;
    let app = spawn_app_with(database, settings).await;

    // Authentication Platform (was :3001).
    let response = app
        .post(
            "/api/auth/register",
            &json!({"username": "producer1", "password": "pass123", "role": "producer", "device_id": "raspberry-pi-001"}),
            None,
        )
        .await;
    assert_eq!(response.status(), 201);
    let producer: Value = response.json().await.unwrap();
    let producer_id = producer["user_id"].as_i64().unwrap();
    let response = app
        .post(
            "/api/auth/register",
            &json!({"username": "consumer1", "password": "pass123", "role": "consumer"}),
            None,
        )
        .await;
    assert_eq!(response.status(), 201);
    let consumer: Value = response.json().await.unwrap();
    let consumer_id = consumer["user_id"].as_i64().unwrap();
    let login = |username: &'static str| {
        let app = &app;
        async move {
            let response = app
                .post(
                    "/api/auth/login",
                    &json!({"username": username, "password": "pass123"}),
                    None,
                )
                .await;
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.unwrap();
            assert!(body["refresh_token"].is_string());
            body["access_token"].as_str().unwrap().to_owned()
        }
    };
    let producer_token = login("producer1").await;
    let consumer_token = login("consumer1").await;
    let verified: Value = app
        .get_with("/api/auth/verify", &producer_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(verified["username"], "producer1");

    // Subscription Manager (was :3002): the id as the clients send it, a string of digits.
    let response = app
        .post(
            "/api/subscribe",
            &json!({"producer_id": producer_id.to_string()}),
            Some(&consumer_token),
        )
        .await;
    assert_eq!(response.status(), 201);
    let subscriptions: Value = app
        .get_with(
            &format!("/api/subscriptions/{consumer_id}"),
            &consumer_token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(subscriptions["producers"][0]["user_id"], producer_id);
    let subscribers: Value = app
        .get_with(&format!("/api/subscribers/{producer_id}"), &producer_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(subscribers["subscriberCount"], 1);

    // WebSocket Server 2 (was :8002), then WebSocket Server 1 (was :8001).
    let mut consumer_socket = connect(&app, "/consumer", Token::Query(&consumer_token))
        .await
        .unwrap();
    until_channel_is_live(&app, producer_id).await;
    let mut producer_socket = connect(&app, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();
    // The device's frame carries extras beside the payload; they are ignored.
    producer_socket
        .send_text(
            r#"{"type":"data","device_id":"raspberry-pi-001","timestamp":"2025-10-29T19:46:59Z","payload":{"cpu_usage":23.5,"memory_usage":61.2,"temperature":48.3}}"#,
        )
        .await;
    let ack = producer_socket.next().await;
    assert_eq!(ack.value()["type"], "ack", "{ack:?}");
    assert_eq!(ack.value()["subscriberCount"], 1);

    // The consumer sees data frames only: its first frame is the reading.
    match consumer_socket.next().await {
        Frame::Json(data) => {
            assert_eq!(data["type"], "data");
            assert_eq!(
                data["payload"],
                json!({"cpu_usage": 23.5, "memory_usage": 61.2, "temperature": 48.3})
            );
        }
        other => panic!("expected a data frame, got {other:?}"),
    }
    assert!(
        consumer_socket
            .next_within(Duration::from_millis(300))
            .await
            .is_none(),
        "nothing but the data"
    );
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn passwords_shorter_than_the_minimum_are_refused_when_set() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/api/auth/register",
            &json!({"username": "short-pw", "password": "pass123", "role": "producer"}),
            None,
        )
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "validation_failed");
    assert!(
        body["message"].as_str().unwrap().contains("8 to 128"),
        "{body}"
    );
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn producer_ids_as_strings_are_accepted_in_bodies_and_frames() {
    let app = spawn_app().await;
    let producer = app
        .register("string-id-source", nodegrid_protocol::auth::Role::Producer)
        .await;
    app.register("string-id-reader", nodegrid_protocol::auth::Role::Consumer)
        .await;
    let token = app
        .login("string-id-reader", crate::helpers::PASSWORD)
        .await
        .access_token;
    let mut socket = connect(&app, "/consumer", Token::Query(&token))
        .await
        .unwrap();
    socket
        .send_json(&json!({"type": "subscribe", "producer_id": producer.user_id.to_string()}))
        .await;
    let subscribed = socket.next_of_type("subscribed").await;
    assert_eq!(subscribed["producer_id"], producer.user_id);
    let response = app
        .http
        .delete(format!("{}/api/unsubscribe", app.address))
        .bearer_auth(&token)
        .json(&json!({"producer_id": producer.user_id.to_string()}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["removed"], true);
    // Not digits: a clear error naming the field.
    let response = app
        .post(
            "/api/subscribe",
            &json!({"producer_id": "seventeen"}),
            Some(&token),
        )
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "validation_failed");
    assert!(
        body["message"].as_str().unwrap().contains("producer_id"),
        "{body}"
    );
    app.shut_down().await.unwrap();
}

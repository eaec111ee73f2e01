//! What the server shows, and to whom: sockets per user, `/metrics` on a listener of its own,
//! private streams, secrets kept out of the audit log, and the audit log's retention and
//! export.

use std::sync::Arc;
use std::time::Duration;

use nodegrid_protocol::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{
    PASSWORD, TestApp, eventually, fresh_database, spawn_app, spawn_app_with, test_settings,
};
use crate::ws::{Token, connect};

async fn user(app: &TestApp, name: &str, role: Role) -> (i64, String) {
    let user = app.register(name, role).await;
    (user.user_id, app.login(name, PASSWORD).await.access_token)
}

#[actix_web::test]
async fn a_user_may_hold_only_so_many_sockets() {
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.stream.max_sockets_per_user = 2;
    let app = spawn_app_with(database, settings).await;
    let (_, token) = user(&app, "many-tabs", Role::Consumer).await;
    let mut first = connect(&app, "/consumer", Token::Query(&token))
        .await
        .unwrap();
    let mut second = connect(&app, "/consumer", Token::Query(&token))
        .await
        .unwrap();
    // Registered once they answer.
    for socket in [&mut first, &mut second] {
        socket.send_json(&json!({"type": "nonsense"})).await;
        socket.next_of_type("error").await;
    }
    assert_eq!(
        connect(&app, "/consumer", Token::Query(&token)).await.err(),
        Some(429)
    );
    first.close().await;
    eventually("a place again", Duration::from_secs(10), || async {
        connect(&app, "/consumer", Token::Query(&token)).await.ok()
    })
    .await;
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn metrics_can_move_to_a_listener_of_their_own() {
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    let app = spawn_app_with(database, settings).await;
    assert_eq!(
        app.get("/metrics").await.status(),
        404,
        "not on the API port"
    );
    let port = app.metrics_port.expect("a metrics listener");
    let metrics = app
        .http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics
            .text()
            .await
            .unwrap()
            .contains("nodegrid_build_info")
    );
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn a_private_stream_is_received_only_by_allowed_consumers() {
    let app = spawn_app().await;
    let (producer_id, producer) = user(&app, "secretive", Role::Producer).await;
    let (early_id, early) = user(&app, "early-bird", Role::Consumer).await;
    let (friend_id, friend) = user(&app, "friend", Role::Consumer).await;
    let (_, stranger) = user(&app, "stranger", Role::Consumer).await;
    let subscribe = |token: &str| {
        let request = app
            .http
            .post(format!("{}/api/subscribe", app.address))
            .bearer_auth(token)
            .json(&json!({"producer_id": producer_id}));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    // Public by default, as in Motience.
    assert_eq!(subscribe(&early).await, 201);
    let mut early_socket = connect(&app, "/consumer?events=subscriptions", Token::Query(&early))
        .await
        .unwrap();
    early_socket.next_of_type("subscribed").await;

    // Only the producer (or an admin) changes it.
    let put = |token: &str, private: bool| {
        let request = app
            .http
            .put(format!(
                "{}/api/producers/{producer_id}/visibility",
                app.address
            ))
            .bearer_auth(token)
            .json(&json!({"private": private}));
        async move { request.send().await.unwrap() }
    };
    assert_eq!(put(&stranger, true).await.status(), 403);
    let response = put(&producer, true).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["unsubscribed"],
        json!([early_id]),
        "not allowed: unsubscribed"
    );
    assert_eq!(
        early_socket.next_of_type("unsubscribed").await["producer_id"],
        producer_id
    );

    assert_eq!(subscribe(&stranger).await, 403);
    let response = app
        .post(
            &format!("/api/producers/{producer_id}/allowed-consumers"),
            &json!({"consumer_id": friend_id}),
            Some(&producer),
        )
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(subscribe(&friend).await, 201);
    let listed: Value = app
        .get_with(
            &format!("/api/producers/{producer_id}/allowed-consumers"),
            &producer,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["private"], true);
    assert_eq!(listed["consumers"][0]["user_id"], friend_id);

    // Withdrawing the allowance ends the subscription too.
    let response = app
        .http
        .delete(format!(
            "{}/api/producers/{producer_id}/allowed-consumers/{friend_id}",
            app.address
        ))
        .bearer_auth(&producer)
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["removed"], true);
    let subscriptions: Value = app
        .get_with(&format!("/api/subscribers/{producer_id}"), &producer)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(subscriptions["subscriberCount"], 0);
    let admin = app.admin_token().await;
    let entries = app.audit_with(&admin, "action=producer.visibility").await;
    assert_eq!(entries.len(), 1);
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn tokens_in_query_strings_never_reach_the_audit_log() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    // The token travels in the query, as sockets and some clients send it.
    let response = app
        .get(&format!("/api/admin/users?token={admin}&role=producer"))
        .await;
    assert_eq!(response.status(), 200);
    let reads = app.audit_with(&admin, "action=admin.read").await;
    let users_read = reads
        .iter()
        .find(|entry| entry["target"] == "/api/admin/users")
        .expect("the read is audited");
    assert_eq!(users_read["details"]["query"], "token=***&role=producer");
    let export = app
        .http
        .get(format!("{}/api/admin/audit/export", app.address))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!export.contains(&admin), "the token is nowhere in the log");
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn the_audit_log_is_exported_as_json_lines_and_pruned_past_its_retention() {
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.housekeeping_interval = Duration::from_millis(500);
    let client = crate::helpers::connect(&database.url).await;
    let app = spawn_app_with(database, settings).await;
    client
        .execute(
            "INSERT INTO audit_log (at, actor, action, details) VALUES \
             (now() - interval '400 days', 'ancient', 'test.old', '{}'), \
             (now() - interval '300 days', 'recent', 'test.kept', '{}')",
            &[],
        )
        .await
        .unwrap();
    eventually(
        "the leader prunes entries past 365 days",
        Duration::from_secs(20),
        || async {
            let old: i64 = client
                .query_one(
                    "SELECT count(*) FROM audit_log WHERE action = 'test.old'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            (old == 0).then_some(())
        },
    )
    .await;
    let kept: i64 = client
        .query_one(
            "SELECT count(*) FROM audit_log WHERE action = 'test.kept'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 1);

    let admin = app.admin_token().await;
    let response = app
        .http
        .get(format!(
            "{}/api/admin/audit/export?action=auth.login",
            app.address
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/x-ndjson"
    );
    let text = response.text().await.unwrap();
    let entries: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(!entries.is_empty());
    assert!(entries.iter().all(|entry| entry["action"] == "auth.login"));
    let ids: Vec<i64> = entries
        .iter()
        .map(|entry| entry["id"].as_i64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "oldest first");
    // Non-admins get no export.
    let (_, consumer) = user(&app, "curious-exporter", Role::Consumer).await;
    let response = app.get_with("/api/admin/audit/export", &consumer).await;
    assert_eq!(response.status(), 403);
    app.shut_down().await.unwrap();
}

//! Publishing without a socket, and who may: the producer, admins, API tokens with the
//! `publish` scope; one rate per producer across its sockets and the API; per-producer
//! settings; and what browsers get (CORS, security headers, socket origins).

use std::sync::Arc;
use std::time::Duration;

use nodegrid_protocol::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually, fresh_database, spawn_app_with, test_settings};
use crate::history::fast_settings;
use crate::streaming::{send_data, subscribe, user};
use crate::ws::{Token, connect, connect_to};

async fn publish(app: &TestApp, producer_id: i64, body: &Value, token: &str) -> reqwest::Response {
    app.post(
        &format!("/api/producers/{producer_id}/publish"),
        body,
        Some(token),
    )
    .await
}

async fn issue_token(app: &TestApp, admin: &str, body: Value) -> Value {
    let response = app.post("/api/admin/api-tokens", &body, Some(admin)).await;
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

#[actix_web::test]
async fn backends_publish_single_messages_and_batches_in_order() {
    let database = Arc::new(fresh_database().await);
    let app = spawn_app_with(database.clone(), fast_settings(&database.url)).await;
    let (producer_id, producer_token) = user(&app, "api-producer", Role::Producer).await;
    let (_, consumer_token) = user(&app, "api-consumer", Role::Consumer).await;
    assert_eq!(subscribe(&app, &consumer_token, producer_id).await, 201);
    let mut consumer = connect(
        &app,
        "/consumer?events=subscriptions",
        Token::Query(&consumer_token),
    )
    .await
    .unwrap();
    consumer.next_of_type("subscribed").await;

    let response = publish(
        &app,
        producer_id,
        &json!({"payload": {"t": 1}, "id": "m1"}),
        &producer_token,
    )
    .await;
    assert_eq!(response.status(), 200);
    let ack: Value = response.json().await.unwrap();
    assert_eq!(
        ack,
        json!({"type": "ack", "subscriberCount": 1, "seq": 1, "id": "m1"})
    );
    let frame = consumer.next_of_type("data").await;
    assert_eq!(
        (frame["seq"].clone(), frame["payload"].clone()),
        (json!(1), json!({"t": 1}))
    );

    // A resend with the same id is acked again with the same seq, not published again.
    let again: Value = publish(
        &app,
        producer_id,
        &json!({"payload": {"t": 1}, "id": "m1"}),
        &producer_token,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(again["seq"], 1);

    let response = publish(
        &app,
        producer_id,
        &json!({"payloads": ["a", "b", {"c": [1]}]}),
        &producer_token,
    )
    .await;
    assert_eq!(response.status(), 200);
    let batch: Value = response.json().await.unwrap();
    let acked: Vec<u64> = batch["acks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(acked, [2, 3, 4]);
    assert_eq!(batch["rate_limited"], 0);
    for (seq, payload) in [(2, json!("a")), (3, json!("b")), (4, json!({"c": [1]}))] {
        let frame = consumer.next_of_type("data").await;
        assert_eq!(
            (frame["seq"].clone(), frame["payload"].clone()),
            (json!(seq), payload)
        );
    }

    // Motience's data-service call, with its extra fields and a string id.
    let response = app
        .post(
            "/api/data",
            &json!({"producer_id": producer_id.to_string(), "payload": 42, "device_id": "pi-1", "timestamp": 1}),
            Some(&producer_token),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(consumer.next_of_type("data").await["payload"], 42);

    // Bodies that do not say what to publish, or say too much.
    let mut too_many = Vec::new();
    too_many.resize(1_001, json!(1));
    let too_large = "x".repeat(70 * 1024);
    for body in [
        json!({}),
        json!({"payload": 1, "payloads": [1]}),
        json!({"payloads": []}),
        json!({"payloads": too_many}),
        json!({"payload": too_large}),
        json!({"payloads": [1], "id": "x"}),
    ] {
        let response = publish(&app, producer_id, &body, &producer_token).await;
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["code"], "validation_failed");
    }
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn only_the_producer_admins_and_publish_tokens_may_publish_and_revocation_holds_everywhere() {
    let database = Arc::new(fresh_database().await);
    let a_settings = fast_settings(&database.url);
    let mut b_settings = fast_settings(&database.url);
    b_settings.redis_prefix = a_settings.redis_prefix.clone();
    let a = spawn_app_with(database.clone(), a_settings).await;
    let b = spawn_app_with(database, b_settings).await;
    let (producer_id, _) = user(&a, "guarded-producer", Role::Producer).await;
    let (other_id, other_token) = user(&a, "other-producer", Role::Producer).await;
    let (consumer_id, consumer_token) = user(&a, "guarded-consumer", Role::Consumer).await;
    let admin = a.admin_token().await;
    let body = json!({"payload": "x"});

    assert_eq!(
        publish(&a, producer_id, &body, &other_token).await.status(),
        403
    );
    assert_eq!(
        publish(&a, producer_id, &body, &consumer_token)
            .await
            .status(),
        403
    );
    assert_eq!(
        a.http
            .post(format!("{}/api/producers/{producer_id}/publish", a.address))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(publish(&a, producer_id, &body, &admin).await.status(), 200);
    let missing = publish(&a, 987_654, &body, &admin).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["code"],
        "producer_not_found"
    );
    assert_eq!(publish(&a, consumer_id, &body, &admin).await.status(), 404);

    let issued = issue_token(
        &a,
        &admin,
        json!({"name": "backend", "scopes": ["publish"], "producer_ids": [producer_id]}),
    )
    .await;
    let token = issued["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("ngt_"));
    assert!(token.starts_with(issued["prefix"].as_str().unwrap()));
    let reader = issue_token(
        &a,
        &admin,
        json!({"name": "reader", "scopes": ["nodes:read"]}),
    )
    .await;

    // The token works on both instances, for its producer only.
    for app in [&a, &b] {
        let on_b = eventually("the token is known", Duration::from_secs(10), || async {
            let response = publish(app, producer_id, &body, &token).await;
            (response.status() == 200).then_some(response)
        })
        .await;
        assert_eq!(on_b.json::<Value>().await.unwrap()["type"], "ack");
        assert_eq!(publish(app, other_id, &body, &token).await.status(), 403);
    }
    assert_eq!(
        publish(&a, producer_id, &body, reader["token"].as_str().unwrap())
            .await
            .status(),
        403
    );
    assert_eq!(
        publish(&a, producer_id, &body, "ngt_not-a-real-token")
            .await
            .status(),
        401
    );

    // Admins see tokens without their secret; issuing and revoking are audited, secret-free.
    let list = a
        .get_with("/api/admin/api-tokens", &admin)
        .await
        .text()
        .await
        .unwrap();
    assert!(list.contains("backend") && !list.contains(&token), "{list}");
    let id = issued["id"].as_i64().unwrap();
    let revoked = a
        .http
        .delete(format!("{}/api/admin/api-tokens/{id}", a.address))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    for app in [&a, &b] {
        eventually(
            "the revocation reaches the instance",
            Duration::from_secs(10),
            || async {
                (publish(app, producer_id, &body, &token).await.status() == 401).then_some(())
            },
        )
        .await;
    }
    let audit = a.audit("action=api_token.issue").await;
    assert!(!audit.is_empty());
    let audit_text = serde_json::to_string(&a.audit("").await).unwrap();
    assert!(
        !audit_text.contains(&token),
        "the audit log never holds a token"
    );
    assert_eq!(a.audit("action=api_token.revoke").await.len(), 1);
    // Only admins issue tokens.
    assert_eq!(
        a.post(
            "/api/admin/api-tokens",
            &json!({"name": "x", "scopes": ["publish"]}),
            Some(&other_token)
        )
        .await
        .status(),
        403
    );
    for bad in [
        json!({"name": "", "scopes": ["publish"]}),
        json!({"name": "x", "scopes": []}),
        json!({"name": "x", "scopes": ["launch"]}),
        json!({"name": "x", "scopes": ["nodes:read"], "producer_ids": [1]}),
    ] {
        let response = a.post("/api/admin/api-tokens", &bad, Some(&admin)).await;
        assert_eq!(response.status(), 400, "{bad}");
    }
    a.shut_down().await.unwrap();
    b.shut_down().await.unwrap();
}

#[actix_web::test]
async fn one_rate_per_producer_across_its_sockets_and_the_api() {
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.stream.producer_rate_per_sec = 1;
    settings.stream.producer_burst = 10;
    let app = spawn_app_with(database, settings).await;
    let (producer_id, token) = user(&app, "rated-producer", Role::Producer).await;
    let mut first = connect(&app, "/producer", Token::Query(&token))
        .await
        .unwrap();
    let mut second = connect(&app, "/producer", Token::Query(&token))
        .await
        .unwrap();
    for n in 0..5 {
        send_data(&mut first, json!(n)).await;
        send_data(&mut second, json!(n)).await;
    }
    // Ten taken between the two sockets: the burst is spent for both, and for the API.
    second
        .send_json(&json!({"type": "data", "payload": "over", "id": "o1"}))
        .await;
    let refused = second.next_of_type("error").await;
    assert_eq!(refused["code"], "rate_limited");
    assert_eq!(refused["id"], "o1");
    assert!(refused["retry_after_ms"].as_u64().unwrap() > 0);
    let response = publish(&app, producer_id, &json!({"payload": 1}), &token).await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn an_admin_sets_a_producers_history_on_every_instance_and_it_is_audited() {
    let database = Arc::new(fresh_database().await);
    let a_settings = fast_settings(&database.url);
    let mut b_settings = fast_settings(&database.url);
    b_settings.redis_prefix = a_settings.redis_prefix.clone();
    let a = spawn_app_with(database.clone(), a_settings).await;
    let b = spawn_app_with(database, b_settings).await;
    let (producer_id, token) = user(&a, "tuned-producer", Role::Producer).await;
    let admin = a.admin_token().await;
    let path = format!("/api/admin/producers/{producer_id}/settings");
    let response = a
        .http
        .put(format!("{}{path}", a.address))
        .bearer_auth(&admin)
        .json(&json!({"history_messages": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["effective"]["history_messages"], 5);
    assert_eq!(body["effective"]["history_age_secs"], 86_400);
    assert_eq!(body["effective"]["store_data"], false);
    eventually(
        "the other instance applies it",
        Duration::from_secs(10),
        || async {
            let view: Value = b.get_with(&path, &admin).await.json().await.ok()?;
            (view["effective"]["history_messages"] == 5).then_some(())
        },
    )
    .await;
    for n in 1..=12 {
        let response = publish(&b, producer_id, &json!({"payload": n}), &token).await;
        assert_eq!(response.status(), 200);
    }
    let history: Value = b
        .get_with(&format!("/api/producers/{producer_id}/history"), &token)
        .await
        .json()
        .await
        .unwrap();
    let seqs: Vec<u64> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [8, 9, 10, 11, 12]);
    assert_eq!(history["first_seq"], 8);
    assert_eq!(a.audit("action=producer.settings").await.len(), 1);
    assert_eq!(
        a.http
            .put(format!("{}{path}", a.address))
            .bearer_auth(&token)
            .json(&json!({"history_messages": 5}))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    a.shut_down().await.unwrap();
    b.shut_down().await.unwrap();
}

#[actix_web::test]
async fn browsers_get_cors_for_allowed_origins_security_headers_and_origin_checked_sockets() {
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.cors_allowed_origins = vec!["https://dash.example".to_owned()];
    let app = spawn_app_with(database, settings).await;
    let (_, token) = user(&app, "browser-consumer", Role::Consumer).await;

    let preflight = |origin: &'static str| {
        app.http
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/api/auth/login", app.address),
            )
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "content-type")
            .send()
    };
    let allowed = preflight("https://dash.example").await.unwrap();
    assert_eq!(allowed.status(), 204);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://dash.example"
    );
    assert!(
        allowed.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(
        !refused
            .headers()
            .contains_key("access-control-allow-origin")
    );

    for (origin, expected) in [
        ("https://dash.example", true),
        ("https://evil.example", false),
    ] {
        let response = app
            .http
            .get(format!("{}/health", app.address))
            .header("Origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response
                .headers()
                .contains_key("access-control-allow-origin"),
            expected
        );
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert_eq!(response.headers()["x-frame-options"], "DENY");
        assert!(
            response.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
    }
    let docs = app.get("/api-docs/").await;
    assert!(
        docs.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );

    let path = "/consumer";
    assert_eq!(
        connect_to(
            app.port,
            path,
            Token::Query(&token),
            None,
            &[("Origin", "https://evil.example")]
        )
        .await
        .err(),
        Some(403)
    );
    for origin in [
        "https://dash.example",
        &format!("http://127.0.0.1:{}", app.port),
    ] {
        connect_to(
            app.port,
            path,
            Token::Query(&token),
            None,
            &[("Origin", origin)],
        )
        .await
        .unwrap()
        .close()
        .await;
    }
    app.shut_down().await.unwrap();
}

//! More concurrent callers than pooled connections: no request may hold one connection while it
//! waits for another, so every request answers (no pool timeouts) and every change leaves
//! exactly one audit entry.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use nodegrid_protocol::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, fresh_database, spawn_app_with, test_settings};

const CALLERS: usize = 200;
/// A bound on the whole burst, so that a deadlock fails the test instead of hanging it.
const BURST_BOUND: Duration = Duration::from_secs(90);

async fn small_pool_app() -> (TestApp, tokio_postgres::Client) {
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.database_pool_size = 2;
    let client = crate::helpers::connect(&database.url).await;
    (spawn_app_with(database, settings).await, client)
}

/// Runs the requests all at once and returns their statuses and bodies.
async fn burst<F>(requests: Vec<F>) -> Vec<(u16, Value)>
where
    F: std::future::Future<Output = reqwest::Response>,
{
    tokio::time::timeout(
        BURST_BOUND,
        join_all(requests.into_iter().map(|request| async move {
            let response = request.await;
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        })),
    )
    .await
    .expect("every request answers")
}

/// A POST that owns what it sends, so that many can wait at once.
fn post(
    app: &TestApp,
    path: &str,
    body: Value,
    token: Option<&str>,
) -> impl std::future::Future<Output = reqwest::Response> + use<> {
    let mut request = app.http.post(format!("{}{path}", app.address)).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    async move { request.send().await.unwrap() }
}

async fn audit_count(client: &tokio_postgres::Client, action: &str, actor_prefix: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM audit_log WHERE action = $1 AND actor LIKE $2 || '%'",
            &[&action, &actor_prefix],
        )
        .await
        .unwrap()
        .get(0)
}

async fn register_all(app: &TestApp, prefix: &str, role: Role) -> Vec<(u16, Value)> {
    burst(
        (0..CALLERS)
            .map(|index| {
                post(
                    app,
                    "/api/auth/register",
                    json!({"username": format!("{prefix}{index}"), "password": PASSWORD, "role": role}),
                    None,
                )
            })
            .collect(),
    )
    .await
}

fn assert_all(answers: &[(u16, Value)], status: u16) {
    let wrong: Vec<&(u16, Value)> = answers.iter().filter(|(got, _)| *got != status).collect();
    assert!(
        wrong.is_empty(),
        "{} of {} answered otherwise, e.g. {:?}",
        wrong.len(),
        answers.len(),
        wrong.first()
    );
}

#[actix_web::test]
async fn concurrent_registrations_and_logins_never_exhaust_a_small_pool() {
    let (app, client) = small_pool_app().await;
    let answers = register_all(&app, "reg-", Role::Producer).await;
    assert_all(&answers, 201);
    assert_eq!(
        audit_count(&client, "user.register", "reg-").await,
        CALLERS as i64
    );
    let users: i64 = client
        .query_one(
            "SELECT count(*) FROM users WHERE username LIKE 'reg-%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(users, CALLERS as i64, "a user for every 201, and no other");

    let logins = burst(
        (0..CALLERS)
            .map(|index| {
                post(
                    &app,
                    "/api/auth/login",
                    json!({"username": format!("reg-{index}"), "password": PASSWORD}),
                    None,
                )
            })
            .collect(),
    )
    .await;
    assert_all(&logins, 200);
    assert_eq!(
        audit_count(&client, "auth.login", "reg-").await,
        CALLERS as i64
    );

    // Every refresh token once, all at once.
    let refreshes = burst(
        logins
            .iter()
            .map(|(_, body)| {
                post(
                    &app,
                    "/api/auth/refresh",
                    json!({"refresh_token": body["refresh_token"]}),
                    None,
                )
            })
            .collect(),
    )
    .await;
    assert_all(&refreshes, 200);
    assert_eq!(
        audit_count(&client, "auth.refresh", "reg-").await,
        CALLERS as i64
    );

    // And every session ends, all at once.
    let logouts = burst(
        refreshes
            .iter()
            .map(|(_, body)| {
                let token = body["access_token"].as_str().unwrap().to_owned();
                let request = app
                    .http
                    .post(format!("{}/api/auth/logout", app.address))
                    .bearer_auth(token);
                async move { request.send().await.unwrap() }
            })
            .collect(),
    )
    .await;
    assert_all(&logouts, 204);
    assert_eq!(
        audit_count(&client, "auth.logout", "reg-").await,
        CALLERS as i64
    );
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn concurrent_subscribes_and_unsubscribes_never_exhaust_a_small_pool() {
    let (app, client) = small_pool_app().await;
    let producer = app.register("sub-source", Role::Producer).await;
    assert_all(&register_all(&app, "sub-", Role::Consumer).await, 201);
    let tokens: Vec<String> = burst(
        (0..CALLERS)
            .map(|index| {
                post(
                    &app,
                    "/api/auth/login",
                    json!({"username": format!("sub-{index}"), "password": PASSWORD}),
                    None,
                )
            })
            .collect(),
    )
    .await
    .into_iter()
    .map(|(status, body)| {
        assert_eq!(status, 200);
        body["access_token"].as_str().unwrap().to_owned()
    })
    .collect();

    let subscribed = burst(
        tokens
            .iter()
            .map(|token| {
                post(
                    &app,
                    "/api/subscribe",
                    json!({"producer_id": producer.user_id}),
                    Some(token),
                )
            })
            .collect(),
    )
    .await;
    assert_all(&subscribed, 201);
    let rows: i64 = client
        .query_one(
            "SELECT count(*) FROM subscriptions WHERE producer_id = $1",
            &[&producer.user_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, CALLERS as i64);
    let admin = app.admin_token().await;
    let body: Value = app
        .get_with(&format!("/api/subscribers/{}", producer.user_id), &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["subscriberCount"], CALLERS as u64);

    // Every subscription ended at once (Motience's form).
    let unsubscribed = burst(
        tokens
            .iter()
            .map(|token| {
                let request = app
                    .http
                    .delete(format!("{}/api/unsubscribe", app.address))
                    .bearer_auth(token)
                    .json(&json!({"producer_id": producer.user_id}));
                async move { request.send().await.unwrap() }
            })
            .collect(),
    )
    .await;
    assert_all(&unsubscribed, 200);
    let rows: i64 = client
        .query_one(
            "SELECT count(*) FROM subscriptions WHERE producer_id = $1",
            &[&producer.user_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0);
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn concurrent_webhook_registrations_and_token_issues_hold_their_limits_on_a_small_pool() {
    let (app, client) = small_pool_app().await;
    let admin = app.admin_token().await;
    // 150 registrations at once against a limit of 100 live webhooks: exactly 100 succeed,
    // the rest are refused with the reason, and each success has its audit entry.
    let answers = burst(
        (0..150)
            .map(|index| {
                post(
                    &app,
                    "/api/admin/webhooks",
                    json!({"url": format!("http://127.0.0.1:9/hook/{index}"),
                           "secret": "a-concurrent-secret-0123", "events": ["pnode.*"]}),
                    Some(&admin),
                )
            })
            .collect(),
    )
    .await;
    let created = answers.iter().filter(|(status, _)| *status == 201).count();
    let refused: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status != 201)
        .collect();
    assert_eq!(created, 100, "{refused:?}");
    assert!(
        refused.iter().all(|(status, body)| *status == 400
            && body["message"]
                .as_str()
                .unwrap_or("")
                .contains("at most 100")),
        "{refused:?}"
    );
    assert_eq!(audit_count(&client, "webhook.create", "").await, 100);
    // API tokens for the pNode API, issued at once by the same admin.
    let answers = burst(
        (0..CALLERS)
            .map(|index| {
                post(
                    &app,
                    "/api/admin/api-tokens",
                    json!({"name": format!("dashboard {index}"), "scopes": ["xandeum:unlimited"],
                           "rate_per_sec": 100}),
                    Some(&admin),
                )
            })
            .collect(),
    )
    .await;
    assert!(answers.iter().all(|(status, _)| *status == 201));
    assert_eq!(
        audit_count(&client, "api_token.issue", "").await,
        CALLERS as i64
    );
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn concurrent_blocks_registry_changes_and_prunes_never_exhaust_a_small_pool() {
    let (app, client) = small_pool_app().await;
    let admin = app.admin_token().await;
    let answers = register_all(&app, "blk-", Role::Consumer).await;
    assert_all(&answers, 201);
    // Every user blocked at once by one admin.
    let blocks = burst(
        answers
            .iter()
            .map(|(_, body)| {
                let id = body["user_id"].as_i64().unwrap();
                post(
                    &app,
                    &format!("/api/admin/users/{id}/block"),
                    json!({"reason": "concurrency"}),
                    Some(&admin),
                )
            })
            .collect(),
    )
    .await;
    assert!(
        blocks
            .iter()
            .all(|(status, _)| *status == 200 || *status == 204),
        "{:?}",
        blocks
            .iter()
            .find(|(status, _)| *status != 200 && *status != 204)
    );
    assert_eq!(audit_count(&client, "user.block", "").await, CALLERS as i64);
    let blocked: i64 = client
        .query_one(
            "SELECT count(*) FROM users WHERE username LIKE 'blk-%' AND blocked_at IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(blocked, CALLERS as i64);

    // Registry nodes created at once, each with its audit entry and its outbox event.
    let created = burst(
        (0..CALLERS)
            .map(|index| {
                post(
                    &app,
                    "/api/nodes",
                    json!({"type": "VM", "name": format!("burst-{index}")}),
                    Some(&admin),
                )
            })
            .collect(),
    )
    .await;
    assert_all(&created, 201);
    assert_eq!(
        audit_count(&client, "node.create", "").await,
        CALLERS as i64
    );
    let events: i64 = client
        .query_one(
            "SELECT count(*) FROM node_events WHERE event_type = 'CREATED'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(events >= CALLERS as i64, "{events} outbox events");

    // pNode prunes at once: each answers and is audited.
    let prunes = burst(
        (0..40)
            .map(|_| {
                let request = app
                    .http
                    .delete(format!("{}/api/xandeum/prune?days=90", app.address))
                    .bearer_auth(&admin);
                async move { request.send().await.unwrap() }
            })
            .collect(),
    )
    .await;
    assert_all(&prunes, 200);
    assert_eq!(audit_count(&client, "pnode.prune", "").await, 40);
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn two_thousand_sockets_opened_at_once_all_open_on_a_small_pool() {
    const SOCKETS: usize = 2_000;
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.database_pool_size = 2;
    settings.stream.max_sockets_per_user = 0;
    let app = spawn_app_with(database, settings).await;
    app.register("many-sockets", Role::Consumer).await;
    let token = app.long_lived_token("many-sockets").await;
    let opened = tokio::time::timeout(
        BURST_BOUND,
        join_all(
            (0..SOCKETS)
                .map(|_| crate::ws::connect(&app, "/consumer", crate::ws::Token::Query(&token))),
        ),
    )
    .await
    .expect("every upgrade answers");
    let refused: Vec<u16> = opened
        .iter()
        .filter_map(|socket| socket.as_ref().err().copied())
        .collect();
    assert!(
        refused.is_empty(),
        "{} refused: {:?}",
        refused.len(),
        refused.first()
    );
    // The server counts them all, and every one still answers after the burst.
    let gauge =
        crate::helpers::eventually("2,000 open consumers", Duration::from_secs(30), || async {
            let metrics = app.get("/metrics").await.text().await.unwrap();
            metrics
                .lines()
                .find_map(|line| line.strip_prefix(r#"nodegrid_ws_connections{role="consumer"} "#))
                .and_then(|value| value.parse::<f64>().ok())
                .filter(|count| *count >= SOCKETS as f64)
        })
        .await;
    assert!(gauge >= SOCKETS as f64);
    let mut sockets: Vec<_> = opened.into_iter().map(Result::unwrap).collect();
    let last = sockets.last_mut().unwrap();
    last.send_json(&json!({"type": "subscribe", "producer_id": 1}))
        .await;
    let answer = last.next().await;
    assert!(
        !matches!(answer, crate::ws::Frame::Closed { .. }),
        "a late socket still answers: {answer:?}"
    );
    join_all(sockets.into_iter().map(|socket| socket.close())).await;
    app.shut_down().await.unwrap();
}

//! Accounts and sessions over time: blocked accounts that give nothing away, lock-outs nobody
//! else can cause, sockets that end with their session or their token, and signing keys that
//! rotate.

use std::sync::Arc;
use std::time::Duration;

use nodegrid_protocol::auth::Role;
use nodegrid_services::config::WsTokenExpiry;
use nodegrid_services::identity::tokens::JwtKey;
use nodegrid_services::ratelimit::RateRule;
use serde_json::{Value, json};

use crate::helpers::{
    PASSWORD, TEST_JWT_SECRET, TestApp, fresh_database, spawn_app, spawn_app_with, test_settings,
};
use crate::ws::{Token, connect};

async fn error_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

async fn login(
    app: &TestApp,
    username: &str,
    password: &str,
    from: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .http
        .post(format!("{}/api/auth/login", app.address))
        .json(&json!({"username": username, "password": password}));
    if let Some(from) = from {
        request = request.header("X-Forwarded-For", from);
    }
    request.send().await.unwrap()
}

#[actix_web::test]
async fn a_blocked_account_answers_the_same_whatever_the_password() {
    let app = spawn_app().await;
    let user = app.register("frozen", Role::Producer).await;
    let admin = app.admin_token().await;
    let response = app
        .post(
            &format!("/api/admin/users/{}/block", user.user_id),
            &json!({"reason": "lost device"}),
            Some(&admin),
        )
        .await;
    assert_eq!(response.status(), 200);
    let right = error_code(login(&app, "frozen", PASSWORD, None).await).await;
    let wrong = error_code(login(&app, "frozen", "not-the-password", None).await).await;
    assert_eq!(right, (403, "user_blocked".into()));
    assert_eq!(wrong, right, "no oracle for guessed passwords");
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn failing_on_purpose_from_elsewhere_does_not_lock_the_owner_out() {
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.auth_username_rule = RateRule {
        per_minute: 3,
        burst: 3,
    };
    // The test's requests come through a "proxy" on loopback, from two client networks.
    settings.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let app = spawn_app_with(database, settings).await;
    app.register("owner", Role::Consumer).await;
    let attacker = "127.0.1.66";
    let mut refused = 0;
    for _ in 0..6 {
        let (status, code) = error_code(login(&app, "owner", "guess", Some(attacker)).await).await;
        if status == 429 {
            assert_eq!(code, "rate_limited");
            refused += 1;
        }
    }
    assert!(refused >= 3, "guessing from one network is limited");
    // The owner, on another network, logs in.
    let response = login(&app, "owner", PASSWORD, Some("127.0.2.7")).await;
    assert_eq!(response.status(), 200);
    app.shut_down().await.unwrap();
}

/// Two instances sharing one database and one Redis prefix.
async fn two_instances(
    tune: impl Fn(&mut nodegrid_services::config::Settings),
) -> (TestApp, TestApp) {
    let database = Arc::new(fresh_database().await);
    let mut a = test_settings(&database.url);
    tune(&mut a);
    let mut b = a.clone();
    b.redis_prefix = a.redis_prefix.clone();
    (
        spawn_app_with(database.clone(), a).await,
        spawn_app_with(database, b).await,
    )
}

#[actix_web::test]
async fn logout_ends_the_session_its_tokens_and_its_sockets_on_every_instance() {
    let (a, b) = two_instances(|_| {}).await;
    a.register("leaving-dev", Role::Producer).await;
    let session = a.login("leaving-dev", PASSWORD).await;
    let other_session = a.login("leaving-dev", PASSWORD).await;
    let mut on_a = connect(&a, "/producer", Token::Query(&session.access_token))
        .await
        .unwrap();
    let mut on_b = connect(&b, "/producer", Token::Query(&session.access_token))
        .await
        .unwrap();
    let mut other = connect(&b, "/producer", Token::Query(&other_session.access_token))
        .await
        .unwrap();
    // All registered once they answer.
    for socket in [&mut on_a, &mut on_b, &mut other] {
        socket
            .send_json(&json!({"type": "data", "payload": 1}))
            .await;
        socket.next_of_type("ack").await;
    }
    let response = a
        .http
        .post(format!("{}/api/auth/logout", a.address))
        .bearer_auth(&session.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    for socket in [&mut on_a, &mut on_b] {
        assert_eq!(socket.closed().await, (4004, "session_ended".into()));
    }
    // The access token is refused everywhere from now on; the other session lives on.
    for app in [&a, &b] {
        let response = app
            .get_with("/api/auth/verify", &session.access_token)
            .await;
        assert_eq!(error_code(response).await, (401, "token_invalid".into()));
        let response = app
            .get_with("/api/auth/verify", &other_session.access_token)
            .await;
        assert_eq!(response.status(), 200);
    }
    other
        .send_json(&json!({"type": "data", "payload": 2}))
        .await;
    assert_eq!(other.next_of_type("ack").await["type"], "ack");
    a.shut_down().await.unwrap();
    b.shut_down().await.unwrap();
}

#[actix_web::test]
async fn sockets_close_when_their_token_expires_unless_a_newer_one_came() {
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.access_token_ttl = Duration::from_secs(2);
    let app = spawn_app_with(database, settings).await;
    app.register("expiring", Role::Producer).await;
    let first = app.login("expiring", PASSWORD).await;
    let second = app.login("expiring", PASSWORD).await;
    let mut lapsing = connect(&app, "/producer", Token::Query(&first.access_token))
        .await
        .unwrap();
    let mut renewed = connect(&app, "/producer", Token::Query(&second.access_token))
        .await
        .unwrap();
    // A newer token for the second socket, before the first one runs out.
    let response = app
        .post(
            "/api/auth/refresh",
            &json!({"refresh_token": second.refresh_token}),
            None,
        )
        .await;
    let newer: Value = response.json().await.unwrap();
    renewed
        .send_json(&json!({"type": "refresh", "token": newer["access_token"]}))
        .await;
    let refreshed = renewed.next_of_type("refreshed").await;
    assert!(refreshed["expires_at"].as_u64().unwrap() > 0);

    assert_eq!(lapsing.closed().await, (4001, "token_expired".into()));
    // Past the first token's expiry, the renewed socket still works.
    renewed
        .send_json(&json!({"type": "data", "payload": "still here"}))
        .await;
    assert_eq!(renewed.next_of_type("ack").await["type"], "ack");
    // A token that is not valid is refused, and the socket stays.
    renewed
        .send_json(&json!({"type": "refresh", "token": "nonsense"}))
        .await;
    assert_eq!(renewed.next_of_type("error").await["code"], "token_invalid");
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn with_connect_only_expiry_a_socket_outlives_its_token() {
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.access_token_ttl = Duration::from_secs(1);
    settings.stream.token_expiry = WsTokenExpiry::ConnectOnly;
    let app = spawn_app_with(database, settings).await;
    app.register("motience-device", Role::Producer).await;
    let tokens = app.login("motience-device", PASSWORD).await;
    let mut device = connect(&app, "/producer", Token::Query(&tokens.access_token))
        .await
        .unwrap();
    // Wait out the token, by its own clock: verify refuses it once it has expired.
    crate::helpers::eventually("the token expires", Duration::from_secs(15), || async {
        let response = app.get_with("/api/auth/verify", &tokens.access_token).await;
        (response.status() == 401).then_some(())
    })
    .await;
    device
        .send_json(&json!({"type": "data", "payload": 1}))
        .await;
    assert_eq!(device.next_of_type("ack").await["type"], "ack");
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn signing_keys_rotate_without_logging_anyone_out() {
    let database = Arc::new(fresh_database().await);
    let old = test_settings(&database.url);
    let prefix = old.redis_prefix.clone();
    let before = spawn_app_with(database.clone(), old.clone()).await;
    before.register("rotating", Role::Consumer).await;
    let issued_before = before.login("rotating", PASSWORD).await.access_token;

    // The next deployment signs with k2 and still accepts k1.
    let mut rotated = old.clone();
    rotated.redis_prefix = prefix;
    rotated.jwt_secret = Some("the-next-secret-0123456789abcdef012345".into());
    rotated.jwt_key_id = "k2".into();
    rotated.jwt_previous_keys = vec![JwtKey {
        id: "k1".into(),
        secret: TEST_JWT_SECRET.into(),
    }];
    let after = spawn_app_with(database.clone(), rotated.clone()).await;
    let response = after.get_with("/api/auth/verify", &issued_before).await;
    assert_eq!(
        response.status(),
        200,
        "a token of the previous key still works"
    );
    let issued_after = after.login("rotating", PASSWORD).await.access_token;
    let header = jsonwebtoken::decode_header(&issued_after).unwrap();
    assert_eq!(header.kid.as_deref(), Some("k2"));
    // The old deployment does not know k2.
    let response = before.get_with("/api/auth/verify", &issued_after).await;
    assert_eq!(error_code(response).await, (401, "token_invalid".into()));

    // Once k1 is retired, its tokens stop working.
    let mut retired = rotated;
    retired.jwt_previous_keys = Vec::new();
    let later = spawn_app_with(database, retired).await;
    let response = later.get_with("/api/auth/verify", &issued_before).await;
    assert_eq!(error_code(response).await, (401, "token_invalid".into()));
    assert_eq!(
        later
            .get_with("/api/auth/verify", &issued_after)
            .await
            .status(),
        200
    );
    for app in [before, after, later] {
        app.shut_down().await.unwrap();
    }
}

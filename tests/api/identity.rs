//! Identity and access against real servers: the Motience auth flow, token checks, refresh
//! rotation with reuse detection, blocks across instances, admin routes, rate limits, audit.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use nodegrid_protocol::auth::{Role, TokenResponse, UserIdentity};
use nodegrid_protocol::error::ErrorBody;
use nodegrid_services::identity::tokens::{AccessTokens, JwtKey, TokenSubject, unix_now};
use nodegrid_services::ratelimit::RateRule;
use serde_json::{Value, json};

use crate::helpers::{
    PASSWORD, TEST_JWT_SECRET, TestApp, eventually, fresh_database, spawn_app, spawn_app_with,
    test_settings,
};

async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: ErrorBody = response.json().await.expect("a JSON error body");
    (status, body.code)
}

async fn refresh(app: &TestApp, refresh_token: &str) -> reqwest::Response {
    app.post(
        "/api/auth/refresh",
        &json!({"refresh_token": refresh_token}),
        None,
    )
    .await
}

fn has_action(entries: &[Value], action: &str) -> bool {
    entries.iter().any(|entry| entry["action"] == action)
}

#[actix_web::test]
async fn register_login_verify_refresh_logout() {
    let app = spawn_app().await;
    let user = app.register("sensor-7", Role::Producer).await;
    assert_eq!(user.username, "sensor-7");
    assert_eq!(user.role, Role::Producer);

    let tokens = app.login("sensor-7", PASSWORD).await;
    assert_eq!(tokens.token_type, "Bearer");
    assert_eq!(tokens.expires_in, 3600);
    assert_eq!(tokens.user_id, user.user_id);
    assert_eq!(tokens.role, Role::Producer);

    let response = app.get_with("/api/auth/verify", &tokens.access_token).await;
    assert_eq!(response.status(), 200);
    let verified: UserIdentity = response.json().await.unwrap();
    assert_eq!(verified, user);

    // The query form, as Motience devices send it on sockets, works too.
    let response = app
        .get(&format!("/api/auth/verify?token={}", tokens.access_token))
        .await;
    assert_eq!(response.status(), 200);

    let response = refresh(&app, &tokens.refresh_token).await;
    assert_eq!(response.status(), 200);
    let renewed: TokenResponse = response.json().await.unwrap();
    assert_ne!(renewed.refresh_token, tokens.refresh_token);
    assert_eq!(
        app.get_with("/api/auth/verify", &renewed.access_token)
            .await
            .status(),
        200
    );

    let response = app
        .post("/api/auth/logout", &json!({}), Some(&renewed.access_token))
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(
        error_of(refresh(&app, &renewed.refresh_token).await).await,
        (401, "token_invalid".into())
    );

    let entries = app.audit("actor=sensor-7").await;
    for action in ["user.register", "auth.login", "auth.refresh", "auth.logout"] {
        assert!(has_action(&entries, action), "no {action} in {entries:#?}");
    }
    // Secrets never reach the audit log.
    let text = serde_json::to_string(&entries).unwrap();
    assert!(!text.contains(PASSWORD));
    assert!(!text.contains(&tokens.refresh_token));
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn a_hundred_concurrent_registrations_of_one_name_make_one_user() {
    let app = spawn_app().await;
    let mut attempts = Vec::new();
    for index in 0..100 {
        let http = app.http.clone();
        let url = format!("{}/api/auth/register", app.address);
        // Case varies: names are compared without it.
        let username = if index % 2 == 0 { "Twin" } else { "twin" };
        attempts.push(tokio::spawn(async move {
            http.post(url)
                .json(&json!({"username": username, "password": PASSWORD, "role": "consumer"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for attempt in attempts {
        statuses.push(attempt.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|status| **status == 201).count(), 1);
    assert_eq!(statuses.iter().filter(|status| **status == 409).count(), 99);

    let response = app
        .post(
            "/api/auth/register",
            &json!({"username": "TWIN", "password": PASSWORD, "role": "producer"}),
            None,
        )
        .await;
    assert_eq!(error_of(response).await, (409, "username_taken".into()));
    // Login ignores case too.
    app.login("tWiN", PASSWORD).await;
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn wrong_passwords_and_unknown_users_get_the_same_answer_and_are_audited() {
    let app = spawn_app().await;
    app.register("ada", Role::Consumer).await;
    for (username, password) in [("ada", "not-the-password"), ("nobody", PASSWORD)] {
        let response = app
            .post(
                "/api/auth/login",
                &json!({"username": username, "password": password}),
                None,
            )
            .await;
        assert_eq!(
            error_of(response).await,
            (401, "invalid_credentials".into())
        );
    }
    let failures = app.audit("action=auth.login_failed").await;
    assert_eq!(failures.len(), 2, "{failures:#?}");
    assert!(
        failures
            .iter()
            .all(|entry| entry["source_ip"] == "127.0.0.1")
    );
    assert!(failures.iter().any(|entry| entry["actor"] == "nobody"));
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn malformed_requests_are_typed_errors() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"username": "ok-name", "password": "short", "role": "consumer"}),
            "validation_failed",
        ),
        (
            json!({"username": "x", "password": PASSWORD, "role": "consumer"}),
            "validation_failed",
        ),
        (
            json!({"username": "ok-name", "password": PASSWORD, "role": "root"}),
            "validation_failed",
        ),
        (
            json!({"username": "ok-name", "role": "consumer"}),
            "validation_failed",
        ),
    ];
    for (body, code) in cases {
        let response = app.post("/api/auth/register", &body, None).await;
        assert_eq!(error_of(response).await, (400, code.into()), "{body}");
    }
    let response = app
        .http
        .post(format!("{}/api/auth/login", app.address))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await, (400, "bad_request".into()));
    let response = app.get("/api/auth/verify").await;
    assert_eq!(error_of(response).await, (401, "unauthenticated".into()));
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn expired_tampered_and_foreign_algorithm_tokens_are_refused() {
    let app = spawn_app().await;
    let user = app.register("eve-target", Role::Consumer).await;
    let tokens = app.login("eve-target", PASSWORD).await;
    let signer = AccessTokens::new(
        &JwtKey {
            id: "k1".into(),
            secret: TEST_JWT_SECRET.into(),
        },
        &[],
        Duration::from_secs(3600),
    );
    let subject = TokenSubject {
        user_id: user.user_id,
        username: user.username.clone(),
        role: Role::Consumer,
        token_version: 0,
        session_id: uuid::Uuid::new_v4(),
    };

    let now = unix_now();
    let expired = signer.issue_at(&subject, now - 7200, now - 3600).unwrap();
    let response = app.get_with("/api/auth/verify", &expired).await;
    assert_eq!(error_of(response).await, (401, "token_expired".into()));

    // A changed payload (the role raised to admin) breaks the signature.
    let parts: Vec<&str> = tokens.access_token.split('.').collect();
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&engine.decode(parts[1]).unwrap()).unwrap();
    claims["role"] = json!("admin");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        engine.encode(serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    let response = app.get_with("/api/admin/users", &forged).await;
    assert_eq!(error_of(response).await, (401, "token_invalid".into()));

    // The right secret with another algorithm, and no algorithm at all.
    let hs512 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &claims,
        &EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let unsigned = format!(
        "{}.{}.",
        engine.encode(br#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    for token in [hs512.as_str(), unsigned.as_str(), "garbage"] {
        let response = app.get_with("/api/auth/verify", token).await;
        assert_eq!(
            error_of(response).await,
            (401, "token_invalid".into()),
            "{token}"
        );
    }
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn reusing_a_refresh_token_revokes_its_whole_family() {
    let app = spawn_app().await;
    app.register("rotator", Role::Producer).await;
    let first = app.login("rotator", PASSWORD).await;
    let response = refresh(&app, &first.refresh_token).await;
    assert_eq!(response.status(), 200);
    let second: TokenResponse = response.json().await.unwrap();

    // The old token again: reuse. It is refused and the family dies with it.
    let response = refresh(&app, &first.refresh_token).await;
    assert_eq!(error_of(response).await, (401, "token_invalid".into()));
    let response = refresh(&app, &second.refresh_token).await;
    assert_eq!(error_of(response).await, (401, "token_invalid".into()));

    // Another session of the same user is untouched.
    let other = app.login("rotator", PASSWORD).await;
    assert_eq!(refresh(&app, &other.refresh_token).await.status(), 200);

    let reuse = app.audit("action=auth.refresh_reuse").await;
    assert_eq!(reuse.len(), 1, "{reuse:#?}");
    assert_eq!(reuse[0]["actor"], "rotator");
    // Both tokens of the family: the reused one and its successor.
    assert_eq!(reuse[0]["details"]["revoked_tokens"], 2);
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn a_block_on_one_instance_is_enforced_by_the_other() {
    let database = Arc::new(fresh_database().await);
    let settings_a = test_settings(&database.url);
    let mut settings_b = test_settings(&database.url);
    settings_b.redis_prefix = settings_a.redis_prefix.clone();
    let a = spawn_app_with(database.clone(), settings_a).await;
    let b = spawn_app_with(database.clone(), settings_b).await;

    let user = a.register("mallory", Role::Consumer).await;
    let before = a.login("mallory", PASSWORD).await;
    assert_eq!(
        b.get_with("/api/auth/verify", &before.access_token)
            .await
            .status(),
        200
    );

    let admin = b.admin_token().await;
    let response = b
        .post(
            &format!("/api/admin/users/{}/block", user.user_id),
            &json!({"reason": "abuse"}),
            Some(&admin),
        )
        .await;
    assert_eq!(response.status(), 200);
    let blocked: Value = response.json().await.unwrap();
    assert_eq!(blocked["blocked"], true);
    assert_eq!(blocked["blocked_reason"], "abuse");

    // Instance a learns of it through the control channel, without a database query per
    // request.
    eventually(
        "a refuses the old token",
        Duration::from_secs(5),
        || async {
            let response = a.get_with("/api/auth/verify", &before.access_token).await;
            (response.status() == 403).then_some(())
        },
    )
    .await;
    let response = a.get_with("/api/auth/verify", &before.access_token).await;
    assert_eq!(error_of(response).await, (403, "user_blocked".into()));
    for app in [&a, &b] {
        let response = app
            .post(
                "/api/auth/login",
                &json!({"username": "mallory", "password": PASSWORD}),
                None,
            )
            .await;
        assert_eq!(error_of(response).await, (403, "user_blocked".into()));
        let response = refresh(app, &before.refresh_token).await;
        assert_eq!(error_of(response).await, (403, "user_blocked".into()));
    }

    // Unblocked: logins work again, but tokens from before the block stay dead.
    let response = a
        .post(
            &format!("/api/admin/users/{}/unblock", user.user_id),
            &json!({}),
            Some(&a.admin_token().await),
        )
        .await;
    assert_eq!(response.status(), 200);
    let after = b.login("mallory", PASSWORD).await;
    for app in [&a, &b] {
        eventually(
            "unblock reaches the instance",
            Duration::from_secs(5),
            || async {
                let response = app.get_with("/api/auth/verify", &after.access_token).await;
                (response.status() == 200).then_some(())
            },
        )
        .await;
        let response = app.get_with("/api/auth/verify", &before.access_token).await;
        assert_eq!(error_of(response).await, (401, "token_invalid".into()));
    }

    let entries = a.audit("action=user.block").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["actor"], "root");
    assert_eq!(entries[0]["target"], format!("user:{}", user.user_id));
    assert_eq!(entries[0]["details"]["reason"], "abuse");
    assert!(has_action(
        &a.audit("action=user.unblock").await,
        "user.unblock"
    ));
    assert!(has_action(
        &a.audit("action=auth.login_failed").await,
        "auth.login_failed"
    ));
    a.shut_down().await.unwrap();
    b.shut_down().await.unwrap();
}

#[actix_web::test]
async fn admin_routes_refuse_other_roles_and_audit_the_attempt() {
    let app = spawn_app().await;
    app.register("curious", Role::Consumer).await;
    let consumer = app.login("curious", PASSWORD).await;
    for (method, path) in [
        ("GET", "/api/admin/users"),
        ("GET", "/api/admin/audit"),
        ("POST", "/api/admin/users/1/block"),
        ("POST", "/api/admin/users/1/unblock"),
    ] {
        let response = if method == "GET" {
            app.get_with(path, &consumer.access_token).await
        } else {
            app.post(path, &json!({"reason": "x"}), Some(&consumer.access_token))
                .await
        };
        assert_eq!(
            error_of(response).await,
            (403, "forbidden".into()),
            "{path}"
        );
        let response = app.get(path).await;
        assert_eq!(
            response.status().as_u16() / 100,
            4,
            "{path} without a token"
        );
    }
    // Audited beside the refusal, which does not wait for it.
    let denied = crate::helpers::eventually(
        "the four refusals audited",
        std::time::Duration::from_secs(10),
        || async {
            let denied = app.audit("action=access.denied").await;
            (denied.len() >= 4).then_some(denied)
        },
    )
    .await;
    assert_eq!(denied.len(), 4, "{denied:#?}");
    assert!(denied.iter().all(|entry| entry["actor"] == "curious"));
    assert!(
        denied
            .iter()
            .any(|entry| entry["target"] == "/api/admin/users/{id}/block")
    );
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn only_an_admin_creates_an_admin() {
    let app = spawn_app().await;
    let body = json!({"username": "second-root", "password": PASSWORD, "role": "admin"});
    let response = app.post("/api/auth/register", &body, None).await;
    assert_eq!(error_of(response).await, (403, "forbidden".into()));
    app.register("pleb", Role::Consumer).await;
    let pleb = app.login("pleb", PASSWORD).await;
    let response = app
        .post("/api/auth/register", &body, Some(&pleb.access_token))
        .await;
    assert_eq!(error_of(response).await, (403, "forbidden".into()));

    let admin = app.admin_token().await;
    let response = app.post("/api/auth/register", &body, Some(&admin)).await;
    assert_eq!(response.status(), 201);
    let created = app.audit("action=admin.create").await;
    // The configured admin at start-up, and this one.
    assert_eq!(created.len(), 2, "{created:#?}");
    assert_eq!(created[0]["actor"], "root");
    assert_eq!(created[1]["actor"], "system");
    app.login("second-root", PASSWORD).await;
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn admins_page_and_filter_users_and_the_audit_log() {
    let app = spawn_app().await;
    for index in 0..5 {
        app.register(&format!("producer-{index}"), Role::Producer)
            .await;
    }
    app.register("consumer-0", Role::Consumer).await;
    let admin = app.admin_token().await;

    let response = app
        .get_with("/api/admin/users?role=producer&per_page=2&page=2", &admin)
        .await;
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.unwrap();
    assert_eq!(page["total"], 5);
    assert_eq!(page["page"], 2);
    let names: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["producer-2", "producer-3"]);

    let response = app.get_with("/api/admin/users?blocked=true", &admin).await;
    let page: Value = response.json().await.unwrap();
    assert_eq!(page["total"], 0);

    let response = app.get_with("/api/admin/users?per_page=1000", &admin).await;
    assert_eq!(error_of(response).await, (400, "validation_failed".into()));
    let response = app.get_with("/api/admin/users?role=wizard", &admin).await;
    assert_eq!(error_of(response).await, (400, "bad_request".into()));

    let entries = app.audit("action=user.register").await;
    assert_eq!(entries.len(), 6);
    let ids: Vec<i64> = entries
        .iter()
        .map(|entry| entry["id"].as_i64().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] > pair[1]),
        "newest first: {ids:?}"
    );
    assert_eq!(entries[0]["actor"], "consumer-0");
    // Reading is an admin action too.
    let reads = app.audit("action=admin.read").await;
    assert!(
        reads
            .iter()
            .any(|entry| entry["target"] == "/api/admin/users"
                && entry["details"]["query"] == "role=producer&per_page=2&page=2")
    );
    let future = "2999-01-01T00:00:00Z";
    assert!(app.audit(&format!("since={future}")).await.is_empty());
    assert!(!app.audit(&format!("until={future}")).await.is_empty());
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn rate_limits_answer_429_with_retry_after_across_instances() {
    let database = Arc::new(fresh_database().await);
    let mut settings_a = test_settings(&database.url);
    settings_a.auth_ip_rule = RateRule {
        per_minute: 1,
        burst: 4,
    };
    let settings_b = settings_a.clone();
    let a = spawn_app_with(database.clone(), settings_a).await;
    let b = spawn_app_with(database.clone(), settings_b).await;
    // The admin's login, for reading the audit log later, takes the first token.
    let admin = a.admin_token().await;

    let body = json!({"username": "nobody-here", "password": "wrong-password"});
    // Three tries fit the burst, whichever instance takes them...
    for app in [&a, &b, &a] {
        let response = app.post("/api/auth/login", &body, None).await;
        assert_eq!(response.status(), 401);
    }
    // ...the fourth does not, on either.
    for app in [&b, &a] {
        let response = app.post("/api/auth/login", &body, None).await;
        assert_eq!(response.status(), 429);
        let retry_after: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        assert_eq!(error_of(response).await, (429, "rate_limited".into()));
    }
    // One audit entry per episode, not per refused try.
    let limited = a.audit_with(&admin, "action=auth.rate_limited").await;
    assert_eq!(limited.len(), 1, "{limited:#?}");
    let metrics = a.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("nodegrid_rate_limited_total"), "{metrics}");
    a.shut_down().await.unwrap();
    b.shut_down().await.unwrap();
}

#[actix_web::test]
async fn per_username_limits_stop_guessing_from_many_addresses() {
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.auth_username_rule = RateRule {
        per_minute: 1,
        burst: 2,
    };
    // The test client is a trusted proxy, so each forwarded address is a client of its own.
    settings.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let app = spawn_app_with(database.clone(), settings).await;
    let mut statuses = Vec::new();
    for index in 0..3 {
        let response = app
            .http
            .post(format!("{}/api/auth/login", app.address))
            .header("X-Forwarded-For", format!("198.51.100.{index}"))
            .json(&json!({"username": "target", "password": "guess-number-x"}))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 429]);
    let failures = app.audit("action=auth.login_failed").await;
    let addresses: Vec<&str> = failures
        .iter()
        .map(|entry| entry["source_ip"].as_str().unwrap())
        .collect();
    assert_eq!(addresses, ["198.51.100.1", "198.51.100.0"]);
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn the_configured_admin_exists_and_the_api_is_documented() {
    let app = spawn_app().await;
    app.admin_token().await;

    let response = app.get("/api-docs/openapi.json").await;
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    for path in [
        "/api/auth/register",
        "/api/auth/login",
        "/api/auth/refresh",
        "/api/auth/verify",
        "/api/auth/logout",
        "/api/admin/users",
        "/api/admin/users/{id}/block",
        "/api/admin/users/{id}/unblock",
        "/api/admin/audit",
        "/api/admin/pollers",
        "/api/xandeum/pnodes",
        "/api/xandeum/registry/{address}",
        "/api/xandeum/prune",
        "/api/xandeum/node/{address}/history",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is not documented");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

    let response = app
        .http
        .get(format!("{}/api-docs/", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("swagger"));
    let response = app.get("/api-docs").await;
    assert_eq!(response.status(), 200, "/api-docs redirects to the UI");
    app.shut_down().await.unwrap();
}

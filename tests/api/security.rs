//! What an attacker or a careless client sends at the boundary: frames declaring huge lengths,
//! compressed bodies, made-up methods, NUL bytes, trickled bodies, too many connections, and
//! bodies of the wrong shape. Each is refused before it costs memory, with a typed error.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{
    PASSWORD, ServerProcess, TEST_ADMIN, TEST_ADMIN_PASSWORD, TestApp, eventually, fresh_database,
    spawn_app, spawn_app_with, spawn_server_process_with, test_settings, unique_prefix,
};
use crate::raw;
use crate::ws::{Token, connect};

/// A server process (whose memory the test can read) and an HTTP client for it.
struct Process {
    server: ServerProcess,
    base: String,
    http: reqwest::Client,
    // Dropped after the server.
    _database: crate::helpers::TestDatabase,
}

async fn process(env: &[(&str, &str)]) -> Process {
    let database = fresh_database().await;
    let mut all = vec![
        ("NODEGRID_ADMIN_USERNAME", TEST_ADMIN),
        ("NODEGRID_ADMIN_PASSWORD", TEST_ADMIN_PASSWORD),
    ];
    all.extend_from_slice(env);
    let server = spawn_server_process_with(&database.url, &unique_prefix(), 0, &all);
    Process {
        base: format!("http://127.0.0.1:{}", server.port),
        server,
        http: reqwest::Client::new(),
        _database: database,
    }
}

impl Process {
    async fn user(&self, name: &str, role: &str) -> String {
        let response = self
            .http
            .post(format!("{}/api/auth/register", self.base))
            .json(&json!({"username": name, "password": PASSWORD, "role": role}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let login: Value = self
            .http
            .post(format!("{}/api/auth/login", self.base))
            .json(&json!({"username": name, "password": PASSWORD}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        login["access_token"].as_str().unwrap().to_owned()
    }

    fn rss_kib(&self) -> u64 {
        raw::rss_kib(self.server.child.id())
    }
}

/// RSS may grow this much for the whole attack, at most (a bomb would take hundreds of MiB).
const RSS_GROWTH_BOUND_KIB: u64 = 40 * 1024;

#[tokio::test]
async fn frames_declaring_huge_lengths_are_refused_at_their_header_on_every_socket() {
    let server = process(&[]).await;
    let producer = server.user("bomb-producer", "producer").await;
    let consumer = server.user("bomb-consumer", "consumer").await;
    let before = server.rss_kib();

    // One frame declaring a terabyte: the close comes before any of its payload is read.
    let mut socket =
        raw::websocket(server.server.port, &format!("/producer?token={producer}")).await;
    socket
        .write_all(&raw::frame_header(true, 0x2, 1 << 40))
        .await
        .unwrap();
    assert_eq!(raw::close_code(&mut socket).await, Some(1009));
    let written = raw::stream_zeros(&mut socket, 256 * 1024 * 1024).await;

    // A fragmented message whose running total passes the limit, on a consumer socket.
    let mut socket =
        raw::websocket(server.server.port, &format!("/consumer?token={consumer}")).await;
    socket
        .write_all(&raw::frame_header(false, 0x1, 600 * 1024))
        .await
        .unwrap();
    socket.write_all(&vec![b' '; 600 * 1024]).await.unwrap();
    socket
        .write_all(&raw::frame_header(false, 0x0, 600 * 1024))
        .await
        .unwrap();
    assert_eq!(raw::close_code(&mut socket).await, Some(1009));
    raw::stream_zeros(&mut socket, 64 * 1024 * 1024).await;

    let growth = server.rss_kib().saturating_sub(before);
    assert!(
        growth < RSS_GROWTH_BOUND_KIB,
        "RSS grew {growth} KiB while {written} bytes were thrown at a closed frame"
    );
}

#[tokio::test]
async fn compressed_bodies_are_refused_before_anything_is_decoded() {
    let server = process(&[]).await;
    let before = server.rss_kib();
    // What a gzip bomb looks like on the wire: a small body that claims to be compressed.
    let body = vec![0x1fu8; 65 * 1024];
    let mut attempts = Vec::new();
    for encoding in [
        "gzip", "gzip", "gzip", "gzip", "deflate", "deflate", "br", "gzip",
    ] {
        let request = server
            .http
            .post(format!("{}/api/auth/login", server.base))
            .header("Content-Type", "application/json")
            .header("Content-Encoding", encoding)
            .body(body.clone());
        attempts.push(async move { request.send().await.unwrap() });
    }
    for response in futures_util::future::join_all(attempts).await {
        assert_eq!(response.status(), 415);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "unsupported_media_type");
    }
    let growth = server.rss_kib().saturating_sub(before);
    assert!(growth < RSS_GROWTH_BOUND_KIB, "RSS grew {growth} KiB");
}

#[tokio::test]
async fn made_up_methods_and_paths_do_not_grow_the_metrics_and_are_rate_limited() {
    let server = process(&[]).await;
    let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
    for index in 0..300 {
        let method: String = std::iter::repeat_n(char::from(b'A' + (index % 26) as u8), 8_000)
            .chain(index.to_string().chars())
            .collect();
        let request = format!(
            "{method} /no-such-path-{index} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        );
        let (status, _, _) = raw::request(server.server.port, request.as_bytes()).await;
        *statuses.entry(status).or_default() += 1;
    }
    assert!(
        statuses.get(&429).copied().unwrap_or(0) > 0,
        "unmatched requests count toward a per-address limit: {statuses:?}"
    );
    let metrics = server
        .http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.len() < 200_000,
        "/metrics is {} bytes",
        metrics.len()
    );
    assert!(metrics.contains(r#"method="OTHER""#), "{statuses:?}");
    for line in metrics.lines().filter(|line| line.contains("method=\"")) {
        let method = line
            .split("method=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert!(
            method.len() <= 7,
            "an unbounded label: {}",
            &line[..line.len().min(200)]
        );
    }
    assert!(!metrics.contains("no-such-path"), "paths are not labels");
}

#[actix_web::test]
async fn nul_bytes_are_refused_at_the_boundary_and_odd_text_is_escaped() {
    let app = spawn_app().await;
    let code = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        (status, body["code"].as_str().unwrap_or_default().to_owned())
    };
    let validation = (400, "validation_failed".to_owned());
    // A path segment, no login needed.
    assert_eq!(
        code(app.get("/api/xandeum/node/%00/history").await).await,
        validation
    );
    let admin = app.admin_token().await;
    // A query parameter.
    assert_eq!(
        code(app.get_with("/api/admin/audit?actor=%00", &admin).await).await,
        validation
    );
    // A text field of a body: the block is refused and not applied.
    let victim = app
        .register("nul-victim", nodegrid_protocol::auth::Role::Producer)
        .await;
    let response = app
        .post(
            &format!("/api/admin/users/{}/block", victim.user_id),
            &json!({"reason": "stolen\u{0}device"}),
            Some(&admin),
        )
        .await;
    assert_eq!(code(response).await, validation);
    assert_eq!(
        app.post(
            "/api/auth/login",
            &json!({"username": "nul-victim", "password": PASSWORD}),
            None
        )
        .await
        .status(),
        200,
        "not blocked"
    );
    assert_eq!(
        code(
            app.post(
                "/api/auth/login",
                &json!({"username": "nul\u{0}victim", "password": PASSWORD}),
                None
            )
            .await
        )
        .await,
        validation
    );

    // Free text keeps everything, with control and direction characters escaped.
    let response = app
        .post(
            &format!("/api/admin/users/{}/block", victim.user_id),
            &json!({"reason": "evil\u{202E}txt\u{7}"}),
            Some(&admin),
        )
        .await;
    assert_eq!(response.status(), 200);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["blocked_reason"], "evil\\u{202e}txt\\u{7}");

    // A failed login with an odd name is still audited, escaped.
    let response = app
        .post(
            "/api/auth/login",
            &json!({"username": "root\u{202E}nimda\u{1b}[2J", "password": "x"}),
            None,
        )
        .await;
    assert_eq!(code(response).await, (401, "invalid_credentials".into()));
    let failures = app.audit_with(&admin, "action=auth.login_failed").await;
    assert!(
        failures
            .iter()
            .any(|entry| entry["actor"] == "root\\u{202e}nimda\\u{1b}[2J"),
        "{failures:?}"
    );

    // New names follow the rule; a device id may not hide text either.
    for body in [
        json!({"username": "trailing.", "password": PASSWORD, "role": "producer"}),
        json!({"username": "bidi-device", "password": PASSWORD, "role": "producer", "device_id": "pi\u{202E}1"}),
    ] {
        assert_eq!(
            code(app.post("/api/auth/register", &body, None).await).await,
            validation
        );
    }
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn slow_bodies_time_out_and_connections_per_address_are_capped() {
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.http_limits.body_timeout = Duration::from_secs(1);
    settings.http_limits.max_connections_per_ip = 3;
    let app = spawn_app_with(database, settings).await;

    // One byte of a hundred, then nothing: 408, and the connection closes.
    let mut slow = raw::connect(app.port).await;
    slow.write_all(
        b"POST /api/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    let (status, head) = raw::read_head(&mut slow).await;
    assert_eq!(status, 408, "{head}");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(raw::ANSWER_TIMEOUT, slow.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the connection is closed after the 408");
    drop(slow);

    // Three connections from this address are fine; the fourth is told and closed.
    let held: Vec<_> = futures_util::future::join_all((0..3).map(|_| raw::connect(app.port))).await;
    eventually("the three are counted", Duration::from_secs(10), || async {
        let (status, _, body) = raw::request(
            app.port,
            b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )
        .await;
        (status == 429 && body.contains("too_many_connections")).then_some(())
    })
    .await;
    drop(held);
    eventually(
        "room again once they close",
        Duration::from_secs(10),
        || async {
            let (status, _, _) = raw::request(
                app.port,
                b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            )
            .await;
            (status == 200).then_some(())
        },
    )
    .await;
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn bodies_of_the_wrong_shape_get_errors_in_the_clients_terms() {
    let app = spawn_app().await;
    let error = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        (
            status,
            body["code"].as_str().unwrap().to_owned(),
            body["message"].as_str().unwrap().to_owned(),
        )
    };
    // An array where an object belongs.
    let (status, code, message) = error(
        app.post(
            "/api/auth/register",
            &json!(["ada", PASSWORD, "producer"]),
            None,
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "validation_failed"));
    assert!(message.contains("JSON object"), "{message}");
    // A field of the wrong type: named, in the client's words.
    let (status, code, message) = error(
        app.post(
            "/api/auth/register",
            &json!({"username": "typed", "password": 5, "role": "producer"}),
            None,
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "validation_failed"));
    assert!(message.starts_with("password:"), "{message}");
    for internal in ["RegisterRequest", "not valid JSON", "struct"] {
        assert!(!message.contains(internal), "{message}");
    }
    // Unreadable JSON is another thing.
    let response = app
        .http
        .post(format!("{}/api/auth/login", app.address))
        .header("Content-Type", "application/json")
        .body("{\"username\": ")
        .send()
        .await
        .unwrap();
    let (status, code, message) = error(response).await;
    assert_eq!((status, code.as_str()), (400, "bad_request"));
    assert!(message.starts_with("not valid JSON"), "{message}");

    // NaN and unknown names in query parameters.
    for path in [
        "/api/xandeum/network/consistency?min_consistency=NaN",
        "/api/xandeum/recommendations?min_uptime_days=NaN",
        "/api/xandeum/pnodes?min_score=NaN",
        "/api/xandeum/alerts/critical?severity=bogus",
        "/api/xandeum/alerts?severity=bogus",
    ] {
        let (status, code, _) = error(app.get(path).await).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "validation_failed"),
            "{path}"
        );
    }
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn sockets_close_1007_on_bad_utf8_and_answer_each_subscribe_frame_once() {
    let app = spawn_app().await;
    let producer = app
        .register("once-source", nodegrid_protocol::auth::Role::Producer)
        .await;
    app.register("once-reader", nodegrid_protocol::auth::Role::Consumer)
        .await;
    let token = app.login("once-reader", PASSWORD).await.access_token;

    let mut socket = raw::websocket(app.port, &format!("/consumer?token={token}")).await;
    let mut frame = raw::frame_header(true, 0x1, 2);
    frame.extend_from_slice(&[0xff, 0xfe]);
    socket.write_all(&frame).await.unwrap();
    assert_eq!(raw::close_code(&mut socket).await, Some(1007));

    // A live subscribe gets one answer, even though its change event also comes back.
    let mut socket = connect(&app, "/consumer?events=subscriptions", Token::Query(&token))
        .await
        .unwrap();
    socket
        .send_json(&json!({"type": "subscribe", "producer_id": producer.user_id}))
        .await;
    socket.next_of_type("subscribed").await;
    assert!(
        socket
            .next_within(Duration::from_millis(700))
            .await
            .is_none(),
        "a second answer"
    );
    let app: TestApp = app;
    app.shut_down().await.unwrap();
}

/// Every secret a deployment handles, used the ways clients use them, with the server logging
/// everything it logs at `debug`: none appears in the log.
#[actix_web::test]
async fn no_secret_reaches_the_log_even_at_debug() {
    let database = fresh_database().await;
    let admin_password = "admin-password-that-must-not-leak";
    let mut server = spawn_server_process_with(
        &database.url,
        &unique_prefix(),
        0,
        &[
            ("NODEGRID_LOG", "debug"),
            ("NODEGRID_ADMIN_USERNAME", "root"),
            ("NODEGRID_ADMIN_PASSWORD", admin_password),
        ],
    );
    let base = format!("http://127.0.0.1:{}", server.port);
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value, token: Option<&str>| {
        let mut request = http.post(format!("{base}{path}")).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let password = "user-password-that-must-not-leak";
    let registered = post(
        "/api/auth/register",
        json!({"username": "leaky", "password": password, "role": "producer"}),
        None,
    )
    .await
    .unwrap();
    assert_eq!(registered.status(), 201);
    let login: Value = post(
        "/api/auth/login",
        json!({"username": "leaky", "password": password}),
        None,
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let access = login["access_token"].as_str().unwrap().to_owned();
    let refresh = login["refresh_token"].as_str().unwrap().to_owned();
    let wrong = post(
        "/api/auth/login",
        json!({"username": "leaky", "password": "a-wrong-password-that-must-not-leak"}),
        None,
    )
    .await
    .unwrap();
    assert_eq!(wrong.status(), 401);
    let refreshed: Value = post("/api/auth/refresh", json!({"refresh_token": refresh}), None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let admin: Value = post(
        "/api/auth/login",
        json!({"username": "root", "password": admin_password}),
        None,
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let admin = admin["access_token"].as_str().unwrap().to_owned();
    let issued: Value = post(
        "/api/admin/api-tokens",
        json!({"name": "dash", "scopes": ["xandeum:unlimited"]}),
        Some(&admin),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let api_token = issued["token"].as_str().unwrap().to_owned();
    let webhook_secret = "webhook-secret-that-must-not-leak";
    let hooked = post(
        "/api/admin/webhooks",
        json!({"url": "http://127.0.0.1:9/hook?key=query-key-that-must-not-leak",
               "secret": webhook_secret, "events": ["*"]}),
        Some(&admin),
    )
    .await
    .unwrap();
    assert_eq!(hooked.status(), 201);
    // Tokens where clients put them: a header, and the query string of a socket's URL.
    let _ = http
        .get(format!("{base}/api/xandeum/health"))
        .bearer_auth(&api_token)
        .send()
        .await
        .unwrap();
    let _ = http
        .get(format!("{base}/api/auth/verify?token={access}"))
        .send()
        .await
        .unwrap();
    let _ = http
        .get(format!("{base}/consumer?token={access}"))
        .send()
        .await
        .unwrap();
    server.signal("TERM");
    server.wait_exit(Duration::from_secs(20));
    let log = server.drain_log().join("\n");
    assert!(log.contains("\"level\":\"DEBUG\""), "the log was at debug");
    for (what, secret) in [
        ("the admin's password", admin_password),
        ("a user's password", password),
        ("a wrong password", "a-wrong-password-that-must-not-leak"),
        ("an access token", access.as_str()),
        ("a refresh token", refresh.as_str()),
        (
            "a rotated refresh token",
            refreshed["refresh_token"].as_str().unwrap_or("-"),
        ),
        ("an admin's access token", admin.as_str()),
        ("an API token", api_token.as_str()),
        ("a webhook secret", webhook_secret),
        ("a key in a webhook's URL", "query-key-that-must-not-leak"),
        ("the JWT secret", crate::helpers::TEST_JWT_SECRET),
    ] {
        assert!(!log.contains(secret), "{what} is in the log");
    }
}

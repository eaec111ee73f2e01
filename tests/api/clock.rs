//! A clock that jumped: one instance runs two hours ahead (libfaketime, wall clock only; its
//! timers keep the real monotonic clock). Tokens are judged on each instance's own clock, so
//! the two refuse each other's tokens with a clear answer instead of stretching lifetimes;
//! leases live in Redis with Redis's time to live, so there is still exactly one leader.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    PASSWORD, eventually, fresh_database, spawn_server_process_with, unique_prefix,
};
use crate::reliability::{Outcome, record};

const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

async fn call(
    http: &reqwest::Client,
    port: u16,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http.request(method, format!("http://127.0.0.1:{port}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn leader_of(http: &reqwest::Client, port: u16) -> bool {
    let metrics = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics.contains(r#"nodegrid_lease_leader{lease="housekeeping"} 1"#)
}

#[actix_web::test]
async fn an_instance_whose_clock_jumped_ahead_refuses_and_is_refused_and_leads_alone() {
    if !std::path::Path::new(FAKETIME).exists() {
        assert!(
            std::env::var_os("NODEGRID_REQUIRE_FAKETIME").is_none(),
            "libfaketime is required but missing ({FAKETIME})"
        );
        eprintln!("libfaketime is not installed; the clock-jump test is skipped");
        return;
    }
    let database = fresh_database().await;
    let prefix = unique_prefix();
    let (url, prefix_ref) = (database.url.clone(), prefix.clone());
    let (normal, ahead) = std::thread::scope(|scope| {
        let normal = scope.spawn(|| spawn_server_process_with(&url, &prefix_ref, 0, &[]));
        let ahead = scope.spawn(|| {
            spawn_server_process_with(
                &url,
                &prefix_ref,
                0,
                &[
                    ("LD_PRELOAD", FAKETIME),
                    ("FAKETIME", "+2h"),
                    ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
                    ("FAKETIME_NO_CACHE", "1"),
                ],
            )
        });
        (normal.join().unwrap(), ahead.join().unwrap())
    });
    let http = reqwest::Client::new();
    let (status, _) = call(
        &http,
        normal.port,
        reqwest::Method::POST,
        "/api/auth/register",
        None,
        Some(json!({"username": "clockwatcher", "password": PASSWORD, "role": "consumer"})),
    )
    .await;
    assert_eq!(status, 201);
    let login = |port| {
        let http = http.clone();
        async move {
            let (status, body) = call(
                &http,
                port,
                reqwest::Method::POST,
                "/api/auth/login",
                None,
                Some(json!({"username": "clockwatcher", "password": PASSWORD})),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            body["access_token"].as_str().unwrap().to_owned()
        }
    };
    let from_normal = login(normal.port).await;
    let from_ahead = login(ahead.port).await;
    let verify = |port, token: String| {
        let http = http.clone();
        async move {
            let (status, body) = call(
                &http,
                port,
                reqwest::Method::GET,
                "/api/auth/verify",
                Some(&token),
                None,
            )
            .await;
            (status, body["code"].as_str().unwrap_or("").to_owned())
        }
    };
    // Each instance accepts its own tokens.
    assert_eq!(verify(normal.port, from_normal.clone()).await.0, 200);
    assert_eq!(verify(ahead.port, from_ahead.clone()).await.0, 200);
    // Two hours ahead, a one-hour token from the other instance has expired.
    assert_eq!(
        verify(ahead.port, from_normal.clone()).await,
        (401, "token_expired".to_owned())
    );
    // A token issued two hours ahead is not taken as valid for three hours here.
    assert_eq!(
        verify(normal.port, from_ahead.clone()).await,
        (401, "token_invalid".to_owned())
    );

    // The housekeeping lease: exactly one holder, whatever the wall clocks say.
    eventually("one housekeeping leader", Duration::from_secs(30), || {
        let http = http.clone();
        let (a, b) = (normal.port, ahead.port);
        async move { (leader_of(&http, a).await ^ leader_of(&http, b).await).then_some(()) }
    })
    .await;
    for _ in 0..3 {
        let (a, b) = (
            leader_of(&http, normal.port).await,
            leader_of(&http, ahead.port).await,
        );
        assert!(a ^ b, "both or neither lead: {a} {b}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    record(Outcome {
        fault: "Clock jump: one of two instances two hours ahead (libfaketime)",
        happened: "each instance judges tokens on its own clock: the one ahead answers the \
                   other's access tokens `token_expired`, the other refuses access tokens \
                   issued in its future as `token_invalid` (no access-token lifetime \
                   stretched; refresh tokens keep the expiry their issuer wrote); one \
                   housekeeping leader throughout (leases expire on Redis's clock)"
            .to_owned(),
        lost: 0,
        recovered_in: None,
        test: "clock::an_instance_whose_clock_jumped_ahead_refuses_and_is_refused_and_leads_alone",
    });
    drop(normal);
    drop(ahead);
}

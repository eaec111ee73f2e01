//! Graceful shutdown drains in-flight requests, refuses new ones, and then stops.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};

use crate::helpers::{fresh_database, spawn_app_with_routes, test_settings};

/// How long the test's slow route takes: long enough to be in flight when shutdown starts.
const SLOW: Duration = Duration::from_millis(1_500);

/// Signalled by the slow route when it starts handling a request.
static SLOW_STARTED: tokio::sync::Notify = tokio::sync::Notify::const_new();

fn slow_route(config: &mut web::ServiceConfig) {
    config.route(
        "/test/slow",
        web::get().to(|| async {
            SLOW_STARTED.notify_one();
            tokio::time::sleep(SLOW).await;
            HttpResponse::Ok().body("finished")
        }),
    );
}

#[actix_web::test]
async fn shutdown_lets_in_flight_requests_finish_and_refuses_new_ones() {
    let database = Arc::new(fresh_database().await);
    let app =
        spawn_app_with_routes(database.clone(), test_settings(&database.url), slow_route).await;
    let address = app.address.clone();
    let http = app.http.clone();

    let started = Instant::now();
    let in_flight = tokio::spawn({
        let http = http.clone();
        let address = address.clone();
        async move { http.get(format!("{address}/test/slow")).send().await }
    });
    tokio::time::timeout(Duration::from_secs(10), SLOW_STARTED.notified())
        .await
        .expect("the slow request reaches its handler");

    let shutdown = tokio::spawn(app.shut_down());

    let response = in_flight
        .await
        .unwrap()
        .expect("in-flight request completes");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "finished");
    assert!(started.elapsed() >= SLOW);

    shutdown.await.unwrap().expect("clean shutdown");
    let refused = reqwest::Client::new()
        .get(format!("{address}/health"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(refused.is_err(), "no new request is served after shutdown");
}

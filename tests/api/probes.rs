use std::time::Duration;

use nodegrid_protocol::error::ErrorBody;
use nodegrid_protocol::health::ReadyBody;

use crate::helpers::{closed_port, fresh_database, spawn_app, spawn_app_with, test_settings};

#[actix_web::test]
async fn health_answers_ok() {
    let app = spawn_app().await;
    let response = app.get("/health").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"status": "ok"}));
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn ready_is_200_when_postgres_and_redis_answer() {
    let app = spawn_app().await;
    let response = app.get("/ready").await;
    assert_eq!(response.status(), 200);
    let body: ReadyBody = response.json().await.unwrap();
    assert_eq!(body.status.as_deref(), Some("ready"));
    assert_eq!(body.checks["postgres"].status, "ok");
    assert_eq!(body.checks["redis"].status, "ok");
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn ready_is_503_naming_redis_when_redis_is_unreachable() {
    let database = std::sync::Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.redis_url = format!("redis://127.0.0.1:{}", closed_port());
    settings.ready_timeout = Duration::from_millis(300);
    // The server starts although Redis is down, and says so.
    let app = spawn_app_with(database, settings).await;
    let health = app.get("/health").await;
    assert_eq!(health.status(), 200);

    let response = app.get("/ready").await;
    assert_eq!(response.status(), 503);
    let body: ReadyBody = response.json().await.unwrap();
    assert_eq!(body.code.as_deref(), Some("not_ready"));
    assert!(
        body.message.as_deref().unwrap_or("").contains("redis"),
        "{body:?}"
    );
    assert_eq!(body.checks["redis"].status, "failed");
    assert!(body.checks["redis"].error.is_some());
    assert_eq!(body.checks["postgres"].status, "ok");
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn errors_are_json_with_a_stable_code() {
    let app = spawn_app().await;

    let response = app.get("/no/such/route").await;
    assert_eq!(response.status(), 404);
    let body: ErrorBody = response.json().await.unwrap();
    assert_eq!(body.code, "not_found");
    assert!(!body.message.is_empty());

    let response = app
        .http
        .delete(format!("{}/health", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(
        response.headers()["allow"],
        "GET",
        "RFC 9110: a 405 says what is allowed"
    );
    let body: ErrorBody = response.json().await.unwrap();
    assert_eq!(body.code, "method_not_allowed");
    let response = app
        .http
        .put(format!("{}/api/admin/webhooks/7", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "DELETE, GET");
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn metrics_expose_http_process_and_dependency_metrics() {
    let app = spawn_app().await;
    assert_eq!(app.get("/health").await.status(), 200);
    assert_eq!(app.get("/ready").await.status(), 200);
    assert_eq!(app.get("/missing").await.status(), 404);

    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.unwrap();

    for expected in [
        r#"nodegrid_http_requests_total{method="GET",route="/health",status="200"}"#,
        r#"nodegrid_http_requests_total{method="GET",route="unmatched",status="404"}"#,
        r#"nodegrid_http_request_duration_seconds_bucket{method="GET",route="/health",status="200",le="0.005"}"#,
        r#"nodegrid_http_errors_total{code="not_found"}"#,
        r#"nodegrid_dependency_up{dependency="postgres"} 1"#,
        r#"nodegrid_dependency_up{dependency="redis"} 1"#,
        "nodegrid_db_pool_connections{state=\"max\"}",
        "nodegrid_redis_connected 1",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(
            text.contains(expected),
            "/metrics lacks {expected}:\n{text}"
        );
    }
    assert_valid_exposition(&text);
    app.shut_down().await.unwrap();
}

/// Every sample line is `name{labels} value` with a numeric value, every family has HELP and
/// TYPE, and, when promtool is available, `promtool check metrics` accepts the text.
pub fn assert_valid_exposition(text: &str) {
    let mut typed = std::collections::HashSet::new();
    let mut helped = std::collections::HashSet::new();
    for line in text.lines().filter(|line| !line.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.insert(rest.split(' ').next().unwrap().to_owned());
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap().to_owned());
        } else {
            let (series, value) = line.rsplit_once(' ').expect("sample has a value");
            assert!(value.parse::<f64>().is_ok(), "bad value in {line}");
            let name = series.split('{').next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix)
                        .filter(|base| typed.contains(*base))
                })
                .unwrap_or(name);
            assert!(typed.contains(family), "no TYPE for {family}");
            assert!(helped.contains(family), "no HELP for {family}");
        }
    }

    let promtool = std::env::var("NODEGRID_PROMTOOL").unwrap_or_else(|_| "promtool".to_owned());
    match std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(mut child) => {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let output = child.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "promtool check metrics refused /metrics:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Err(error) => {
            assert!(
                std::env::var_os("NODEGRID_REQUIRE_PROMTOOL").is_none(),
                "promtool is required but cannot run ({promtool}): {error}"
            );
            eprintln!("promtool not found ({error}); checked the exposition format only");
        }
    }
}

/// The alerting rules in `compose/prometheus/` are valid and pass their unit tests
/// (`promtool check rules`, `promtool test rules`).
#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/../compose/prometheus");
    let promtool = std::env::var("NODEGRID_PROMTOOL").unwrap_or_else(|_| "promtool".to_owned());
    for args in [
        ["check", "rules", "rules.yml"],
        ["test", "rules", "rules.test.yml"],
    ] {
        match std::process::Command::new(&promtool)
            .args(args)
            .current_dir(folder)
            .output()
        {
            Ok(output) => assert!(
                output.status.success(),
                "promtool {}:\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(error) => {
                assert!(
                    std::env::var_os("NODEGRID_REQUIRE_PROMTOOL").is_none(),
                    "promtool is required but cannot run ({promtool}): {error}"
                );
                eprintln!("promtool not found ({error}); the alert rules were not checked");
                return;
            }
        }
    }
}

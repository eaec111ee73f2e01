use std::sync::Arc;
use std::time::Duration;

use nodegrid_protocol::health::ReadyBody;
use nodegrid_services::db::Database;

use crate::helpers::{connect, fresh_database, spawn_app_with, test_settings};

async fn history(url: &str) -> Vec<i32> {
    let client = connect(url).await;
    client
        .query(
            "SELECT version FROM refinery_schema_history ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[actix_web::test]
async fn migrations_apply_once_and_twice_in_a_row_is_a_no_op() {
    let database = fresh_database().await;
    let db = Database::connect(&database.url, 2).await.unwrap();

    let first = db.migrate().await.unwrap();
    assert_eq!(first.applied, Database::known_migrations());
    assert!(!first.applied.is_empty());

    let second = db.migrate().await.unwrap();
    assert!(second.applied.is_empty(), "{second:?}");
    assert_eq!(history(&database.url).await, Database::known_migrations());

    // The schema is really there.
    let client = connect(&database.url).await;
    client
        .execute(
            "INSERT INTO settings (key, value) VALUES ('maintenance', 'false')",
            &[],
        )
        .await
        .unwrap();
    db.close();
}

#[actix_web::test]
async fn concurrent_migrations_apply_each_version_once() {
    let database = fresh_database().await;
    let mut runs = Vec::new();
    for _ in 0..4 {
        let url = database.url.clone();
        runs.push(tokio::spawn(async move {
            let db = Database::connect(&url, 1).await.unwrap();
            let report = db.migrate().await.unwrap();
            db.close();
            report.applied
        }));
    }
    let mut applied = Vec::new();
    for run in runs {
        applied.extend(run.await.unwrap());
    }
    applied.sort_unstable();
    assert_eq!(applied, Database::known_migrations());
    assert_eq!(history(&database.url).await, Database::known_migrations());
}

#[actix_web::test]
async fn two_instances_start_against_one_fresh_database_at_once() {
    let database = Arc::new(fresh_database().await);
    let first = test_settings(&database.url);
    let mut second = test_settings(&database.url);
    second.redis_prefix = first.redis_prefix.clone();

    let (a, b) = futures_util::join!(
        spawn_app_with(database.clone(), first),
        spawn_app_with(database.clone(), second)
    );
    assert_ne!(a.port, b.port);
    for app in [&a, &b] {
        let response = app.get("/ready").await;
        assert_eq!(response.status(), 200);
        let body: ReadyBody = response.json().await.unwrap();
        assert_eq!(body.status.as_deref(), Some("ready"));
    }
    assert_eq!(history(&database.url).await, Database::known_migrations());
    tokio::time::timeout(Duration::from_secs(20), async {
        a.shut_down().await.unwrap();
        b.shut_down().await.unwrap();
    })
    .await
    .unwrap();
}

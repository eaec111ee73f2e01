//! `nodegrid import motience`: a Motience database (its own schema, bcrypt hashes, subscriptions
//! in every state, stored data) moved into a running nodegrid, then used by Motience's clients
//! with nothing changed but the base URL.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    TEST_ADMIN, TEST_ADMIN_PASSWORD, TestApp, connect as connect_db, eventually, fresh_database,
    redis_url, spawn_app_with, test_settings,
};
use crate::motience::until_channel_is_live;
use crate::stored::stored;
use crate::streaming::send_data;
use crate::ws::{Frame, Token, connect};

const MOTIENCE_SCHEMA: &str = include_str!("../fixtures/motience-init-db.sql");

/// What `nodegrid import motience` printed and how it ended.
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs the import as an operator would, against the app's database and Redis prefix.
async fn import(app: &TestApp, target_url: &str, source_url: &str, extra: &[&str]) -> Run {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_nodegrid"))
        .args(["import", "motience", "--from", source_url])
        .args(extra)
        .env("NODEGRID_DATABASE_URL", target_url)
        .env("NODEGRID_REDIS_URL", redis_url())
        .env("NODEGRID_REDIS_PREFIX", app.bus.keys().prefix())
        .env("NODEGRID_LOG", "warn")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("the import ends within a minute")
        .expect("the import runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    eprintln!("{stdout}{stderr}");
    Run {
        success: output.status.success(),
        stdout,
        stderr,
    }
}

/// A Motience database: two producers (one named against nodegrid's naming rule), two
/// consumers, a consumer whose name differs from another only by case, one whose name a
/// nodegrid user already has, one with a hash nodegrid cannot verify; subscriptions active,
/// inactive and pending; stored readings, one of them older than the retention.
async fn motience_database() -> crate::helpers::TestDatabase {
    let source = fresh_database().await;
    let client = connect_db(&source.url).await;
    client.batch_execute(MOTIENCE_SCHEMA).await.unwrap();
    // Motience hashes with cost 10 ($2b$10$…); the test's other users are cheaper to verify.
    let sensor_hash = bcrypt::hash("pass123", 10).unwrap();
    assert!(sensor_hash.starts_with("$2b$10$"), "{sensor_hash}");
    let cheap = |password: &str| bcrypt::hash(password, 4).unwrap();
    let users: [(i32, &str, String, &str, Option<&str>); 7] = [
        (
            1,
            "sensor-Alpha",
            sensor_hash,
            "producer",
            Some("raspberry-pi-001"),
        ),
        (2, "viewer", cheap("viewer-pass"), "consumer", None),
        (3, "Viewer", cheap("other-pass"), "consumer", None),
        (
            4,
            "legacy",
            "5f4dcc3b5aa765d61d8327deb882cf99".into(),
            "consumer",
            None,
        ),
        (5, "taken", cheap("taken-pass"), "consumer", None),
        (
            7,
            "pump station #2",
            cheap("pump-pass"),
            "producer",
            Some("plc-7"),
        ),
        (8, "night shift", cheap("night-pass"), "consumer", None),
    ];
    for (id, username, hash, role, device) in &users {
        client
            .execute(
                "INSERT INTO users (id, username, password_hash, role, device_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, '2025-10-29 19:46:59')",
                &[id, username, hash, role, device],
            )
            .await
            .unwrap();
    }
    client
        .batch_execute(
            "SELECT setval('users_id_seq', 8);
             INSERT INTO subscriptions (consumer_id, producer_id, status) VALUES
                 (2, 1, 'active'), (2, 7, 'pending'), (8, 7, 'active'), (8, 1, 'inactive'),
                 (3, 1, 'active'), (5, 7, 'active');
             INSERT INTO data_history (producer_id, device_id, payload, timestamp) VALUES
                 (1, 'raspberry-pi-001', '{\"temperature\": 48.3}', now() - interval '2 hours'),
                 (1, 'raspberry-pi-001', '{\"temperature\": 48.9}', now() - interval '1 hour'),
                 (7, 'plc-7', '{\"pressure\": 2.1}', now() - interval '30 minutes'),
                 (1, 'raspberry-pi-001', '{\"temperature\": 12.0}', now() - interval '40 days'),
                 (4, 'legacy-box', '{\"old\": true}', now() - interval '3 hours');",
        )
        .await
        .unwrap();
    source
}

async fn login(app: &TestApp, username: &str, password: &str) -> reqwest::Response {
    app.post(
        "/api/auth/login",
        &json!({"username": username, "password": password}),
        None,
    )
    .await
}

async fn access_token(app: &TestApp, username: &str, password: &str) -> String {
    let response = login(app, username, password).await;
    assert_eq!(response.status(), 200, "{username} logs in");
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

#[actix_web::test]
async fn a_motience_deployment_moves_over_with_its_ids_passwords_and_subscriptions() {
    let source = motience_database().await;
    let target = Arc::new(fresh_database().await);
    let target_url = target.url.clone();
    let mut settings = test_settings(&target.url);
    // More logins at once than pooled connections, below.
    settings.database_pool_size = 2;
    let app = spawn_app_with(target, settings).await;
    let db = connect_db(&target_url).await;

    // Before the import: the bootstrap admin holds id 1, a nodegrid user id 2 under a name a
    // Motience user also has (other case).
    let admin_before: i64 = db
        .query_one("SELECT id FROM users WHERE username = $1", &[&TEST_ADMIN])
        .await
        .unwrap()
        .get(0);
    assert_eq!(admin_before, 1);
    let registered = app
        .post(
            "/api/auth/register",
            &json!({"username": "TAKEN", "password": "a-good-password", "role": "consumer"}),
            None,
        )
        .await;
    assert_eq!(registered.status(), 201);
    let old_admin_token = app.admin_token().await;
    let users_before: i64 = db
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);

    // A dry run prints the summary and writes nothing.
    let dry = import(
        &app,
        &target_url,
        &source.url,
        &["--dry-run", "--data-history"],
    )
    .await;
    assert!(dry.success);
    assert!(dry.stdout.contains("dry run"), "{}", dry.stdout);
    assert!(
        dry.stdout
            .contains("users:         4 imported, 0 unchanged, 3 skipped"),
        "{}",
        dry.stdout
    );
    let users_after_dry: i64 = db
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(users_after_dry, users_before);
    assert_eq!(
        db.query_one("SELECT id FROM users WHERE username = $1", &[&TEST_ADMIN])
            .await
            .unwrap()
            .get::<_, i64>(0),
        1
    );

    // The import.
    let run = import(&app, &target_url, &source.url, &["--data-history"]).await;
    assert!(run.success, "{}", run.stdout);
    let out = &run.stdout;
    assert!(
        out.contains("users:         4 imported, 0 unchanged, 3 skipped"),
        "{out}"
    );
    assert!(
        out.contains("subscriptions: 2 imported, 0 unchanged, 4 skipped"),
        "{out}"
    );
    assert!(
        out.contains("data rows:     3 imported, 0 unchanged, 2 skipped"),
        "{out}"
    );
    assert!(
        out.contains("moved nodegrid account \"root\" from id 1 to id 9"),
        "{out}"
    );
    assert!(
        out.contains("moved nodegrid account \"TAKEN\" from id 2 to id 10"),
        "{out}"
    );
    // Every skipped row is named with its reason.
    for expected in [
        "conflict: users 3: username \"Viewer\" differs only by case from \"viewer\" (user 2)",
        "skipped: users 4: unknown password hash format",
        "conflict: users 5: username \"taken\" is taken in nodegrid by user 2 (\"TAKEN\")",
        "skipped: subscriptions 2: status \"pending\"",
        "skipped: subscriptions 4: status \"inactive\"",
        "skipped: subscriptions 5: consumer 3 is not an imported consumer",
        "skipped: data_history 4: 1 row(s) of producer 4",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in\n{out}");
    }
    assert!(
        !out.contains("pass123") && !out.contains("5f4dcc3b") && !out.contains("$2b$04$"),
        "no password or hash printed"
    );

    // The ids are Motience's; the new accounts' ids follow every imported one.
    let rows = db
        .query(
            "SELECT id, username, role, device_id, imported_from, created_at::TEXT FROM users \
             ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let listed: Vec<(i64, String)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    assert_eq!(
        listed,
        vec![
            (1, "sensor-Alpha".to_owned()),
            (2, "viewer".to_owned()),
            (7, "pump station #2".to_owned()),
            (8, "night shift".to_owned()),
            (9, TEST_ADMIN.to_owned()),
            (10, "TAKEN".to_owned()),
        ]
    );
    assert_eq!(
        rows[0].get::<_, Option<String>>(3).as_deref(),
        Some("raspberry-pi-001")
    );
    let origin = rows[0].get::<_, Option<String>>(4).unwrap();
    assert!(origin.starts_with("motience:127.0.0.1:"), "{origin}");
    assert!(
        !origin.contains("postgres@"),
        "no user or password in {origin}"
    );
    assert!(rows[0].get::<_, String>(5).starts_with("2025-10-29"));
    let newcomer = app
        .post(
            "/api/auth/register",
            &json!({"username": "newcomer", "password": "a-good-password", "role": "consumer"}),
            None,
        )
        .await;
    assert_eq!(newcomer.status(), 201);
    let newcomer: Value = newcomer.json().await.unwrap();
    assert!(newcomer["user_id"].as_i64().unwrap() > 10, "{newcomer}");

    // The moved admin logs in at its new id; its token from before the import, which names
    // id 1, is refused now that id 1 is the Motience producer's.
    eventually(
        "the admin's old token is refused",
        Duration::from_secs(10),
        || async {
            let response = app.get_with("/api/admin/users", &old_admin_token).await;
            (response.status() == 401).then_some(())
        },
    )
    .await;
    let admin = access_token(&app, TEST_ADMIN, TEST_ADMIN_PASSWORD).await;
    let me: Value = app
        .get_with("/api/auth/verify", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["user_id"], 9);
    assert_eq!(app.get_with("/api/admin/users", &admin).await.status(), 200);

    // Motience's quick start, unchanged but for the base URL: the device logs in with its
    // original password (eight logins at once, over a pool of two connections).
    let logins =
        futures_util::future::join_all((0..8).map(|_| login(&app, "sensor-Alpha", "pass123")))
            .await;
    for response in logins {
        assert_eq!(response.status(), 200);
    }
    assert_eq!(login(&app, "sensor-Alpha", "pass124").await.status(), 401);
    let hash: String = db
        .query_one("SELECT password_hash FROM users WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        hash.starts_with("$argon2id$"),
        "upgraded at first login: {hash}"
    );
    let producer_token = access_token(&app, "sensor-Alpha", "pass123").await;
    let consumer_token = access_token(&app, "viewer", "viewer-pass").await;
    let verified: Value = app
        .get_with("/api/auth/verify", &producer_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(verified["user_id"], 1);
    let subscriptions: Value = app
        .get_with("/api/subscriptions/2", &consumer_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        subscriptions["producers"][0]["user_id"], 1,
        "{subscriptions}"
    );

    let mut consumer = connect(&app, "/consumer", Token::Query(&consumer_token))
        .await
        .unwrap();
    until_channel_is_live(&app, 1).await;
    let mut producer = connect(&app, "/producer", Token::Query(&producer_token))
        .await
        .unwrap();
    let ack = send_data(&mut producer, json!({"temperature": 49.1})).await;
    assert_eq!(ack["subscriberCount"], 1, "{ack}");
    match consumer.next().await {
        Frame::Json(data) => {
            assert_eq!(data["type"], "data");
            assert_eq!(data["producer_id"], 1, "the Motience id: {data}");
            assert_eq!(data["payload"], json!({"temperature": 49.1}));
        }
        other => panic!("expected a data frame, got {other:?}"),
    }

    // The stored readings, the one past the retention left out.
    let readings = stored(&app, &producer_token, 1, "").await;
    let payloads: Vec<&Value> = readings.iter().map(|item| &item["payload"]).collect();
    assert_eq!(
        payloads,
        vec![&json!({"temperature": 48.3}), &json!({"temperature": 48.9})]
    );
    assert_eq!(readings[0]["epoch"], "motience");

    // The import is audited once.
    let audited = app.audit_with(&admin, "action=import.motience").await;
    assert_eq!(audited.len(), 1, "{audited:?}");

    // A second run changes nothing.
    let again = import(&app, &target_url, &source.url, &["--data-history"]).await;
    assert!(again.success);
    assert!(
        again
            .stdout
            .contains("users:         0 imported, 4 unchanged, 3 skipped"),
        "{}",
        again.stdout
    );
    assert!(
        again
            .stdout
            .contains("subscriptions: 0 imported, 2 unchanged, 4 skipped"),
        "{}",
        again.stdout
    );
    assert!(
        again.stdout.contains("data rows:     0 imported"),
        "{}",
        again.stdout
    );
    assert!(
        again.stdout.trim_end().ends_with("changes: 0"),
        "{}",
        again.stdout
    );
    assert_eq!(
        app.audit_with(&admin, "action=import.motience").await.len(),
        1
    );
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn a_renamed_user_is_reported_and_an_id_imported_from_another_database_stops_the_import() {
    let source = motience_database().await;
    let target = Arc::new(fresh_database().await);
    let target_url = target.url.clone();
    let app = spawn_app_with(target.clone(), test_settings(&target.url)).await;
    let db = connect_db(&target_url).await;
    assert!(import(&app, &target_url, &source.url, &[]).await.success);

    // The same Motience renames user 1 and gains user 20: the rename is reported and skipped,
    // the newcomer imported.
    let source_db = connect_db(&source.url).await;
    source_db
        .batch_execute(
            "UPDATE users SET username = 'sensor-Beta' WHERE id = 1;
             INSERT INTO users (id, username, password_hash, role)
                 VALUES (20, 'late-joiner', '$2b$04$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz01234', 'consumer');",
        )
        .await
        .unwrap();
    let again = import(&app, &target_url, &source.url, &[]).await;
    assert!(again.success, "{}", again.stdout);
    assert!(
        again.stdout.contains(
            "conflict: users 1: renamed in Motience from \"sensor-Alpha\" to \"sensor-Beta\""
        ),
        "{}",
        again.stdout
    );
    assert!(
        again.stdout.contains("users:         1 imported"),
        "{}",
        again.stdout
    );

    // Another Motience database whose id 1 is someone else: the import stops, nothing written.
    let other = motience_database().await;
    connect_db(&other.url)
        .await
        .batch_execute(
            "UPDATE users SET username = 'someone-else' WHERE id = 1;
             INSERT INTO users (id, username, password_hash, role)
                 VALUES (30, 'brand-new', '$2b$04$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz01234', 'consumer');",
        )
        .await
        .unwrap();
    let before: Vec<(i64, String)> = db
        .query("SELECT id, username FROM users ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let run = import(&app, &target_url, &other.url, &[]).await;
    assert!(!run.success, "a collision fails the command");
    assert!(
        run.stdout.contains(
            "collision: users 1: id 1 belongs to \"sensor-Alpha\", imported earlier from motience:"
        ),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("nothing was written"), "{}", run.stdout);
    let after: Vec<(i64, String)> = db
        .query("SELECT id, username FROM users ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(before, after, "not even the new user was written");
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn a_database_that_is_not_motience_is_refused_clearly() {
    let source = fresh_database().await;
    let target = Arc::new(fresh_database().await);
    let target_url = target.url.clone();
    let app = spawn_app_with(target.clone(), test_settings(&target.url)).await;
    let run = import(&app, &target_url, &source.url, &[]).await;
    assert!(!run.success);
    assert!(
        run.stderr
            .contains("the source is not a Motience database: relation \"users\" does not exist"),
        "{}",
        run.stderr
    );
    app.shut_down().await.unwrap();
}

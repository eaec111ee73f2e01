//! The device agent (`nodegrid device`) as a device runs it: the built binary against a real
//! server, configured with Motience's plugin variables.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nodegrid_protocol::auth::Role;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::broadcast;

use crate::helpers::{PASSWORD, TestApp, spawn_app};
use crate::ws::{Token, Ws, connect};

/// A consumer subscribed to a new producer account `device_user`, with its socket open.
async fn watcher(app: &TestApp, device_user: &str) -> Ws {
    let producer = app.register(device_user, Role::Producer).await;
    app.register("watcher", Role::Consumer).await;
    let token = app.long_lived_token("watcher").await;
    let response = app
        .post(
            "/api/subscribe",
            &json!({"producer_id": producer.user_id}),
            Some(&token),
        )
        .await;
    assert_eq!(response.status(), 201);
    let mut socket = connect(app, "/consumer?events=subscriptions", Token::Query(&token))
        .await
        .unwrap();
    socket.next_of_type("subscribed").await;
    socket
}

fn agent(app: &TestApp, socket_port: u16, username: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_nodegrid"));
    command
        .arg("device")
        .args(extra)
        .env("DEVICE_ID", "pi-01")
        .env("USERNAME", username)
        .env("PASSWORD", PASSWORD)
        .env("AUTH_URL", format!("{}/api/auth", app.address))
        .env(
            "WEBSOCKET_URL",
            format!("ws://127.0.0.1:{socket_port}/producer"),
        )
        .env("NODEGRID_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

#[actix_web::test]
async fn once_sends_one_reading_of_the_machine_and_exits() {
    let app = spawn_app().await;
    let mut watcher = watcher(&app, "kitchen-pi").await;
    for encoding in ["json", "msgpack"] {
        let output = agent(
            &app,
            app.port,
            "kitchen-pi",
            &["--once", "--encoding", encoding],
        )
        .output()
        .await
        .unwrap();
        assert!(
            output.status.success(),
            "{encoding}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let data = watcher.next_of_type("data").await;
        let reading = &data["payload"];
        assert_eq!(reading["device_id"], "pi-01");
        assert!(reading["timestamp"].as_u64().unwrap() > 1_700_000_000_000);
        assert!(reading["cpu_percent"].is_number());
        assert!(reading["memory"]["total"].as_u64().unwrap() > 0);
        assert!(reading["disk"]["total"].is_number());
        assert!(reading["network"]["received_bytes"].is_number());
        assert!(reading["uptime_secs"].as_u64().unwrap() > 0);
    }
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn bad_credentials_are_a_clear_message_and_a_non_zero_exit() {
    let app = spawn_app().await;
    app.register("real-pi", Role::Producer).await;
    let output = agent(&app, app.port, "real-pi", &["--once"])
        .env("PASSWORD", "not-the-password")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refused the credentials (invalid_credentials)"),
        "{stderr}"
    );

    app.register("an-app", Role::Consumer).await;
    let output = agent(&app, app.port, "an-app", &["--once"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "a consumer cannot stream");
    app.shut_down().await.unwrap();
}

/// A TCP relay the test can cut: while down it drops every connection and refuses new ones.
struct Relay {
    port: u16,
    up: Arc<AtomicBool>,
    cut: broadcast::Sender<()>,
}

impl Relay {
    async fn start(target: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let (cut, _) = broadcast::channel(4);
        let (accept_up, accept_cut) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    continue;
                }
                let mut cut = accept_cut.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.recv() => {}
                    }
                });
            }
        });
        Relay { port, up, cut }
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        let _ = self.cut.send(());
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[actix_web::test]
async fn readings_wait_through_an_outage_and_arrive_in_order() {
    let app = spawn_app().await;
    let mut watcher = watcher(&app, "field-pi").await;
    let relay = Relay::start(app.port).await;
    let mut agent: Child = agent(&app, relay.port, "field-pi", &[])
        .env("SEND_INTERVAL_SECS", "0.1")
        .env("NODEGRID_DEVICE_BACKOFF_INITIAL_MS", "50")
        .env("NODEGRID_DEVICE_BACKOFF_MAX_MS", "200")
        .env("NODEGRID_DEVICE_BUFFER_MESSAGES", "5")
        .spawn()
        .unwrap();

    let mut timestamps = Vec::new();
    for _ in 0..3 {
        let data = watcher.next_of_type("data").await;
        timestamps.push(data["payload"]["timestamp"].as_u64().unwrap());
    }
    // Readings are taken while the network is gone; five fit the buffer. The agent says when
    // it starts dropping the oldest; once it has dropped eight, the network comes back.
    relay.down();
    let mut log = tokio::io::BufReader::new(agent.stderr.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = log.next_line().await {
            if line.contains("the backlog is full") && line.contains("dropped=8") {
                break;
            }
        }
    })
    .await
    .expect("the agent drops readings while the network is down");
    relay.up();

    let mut dropped = None;
    while dropped.is_none() {
        let data: Value = watcher.next_of_type("data").await;
        timestamps.push(data["payload"]["timestamp"].as_u64().unwrap());
        dropped = data["payload"]["dropped"].as_u64();
    }
    assert!(dropped.unwrap() >= 5, "dropped {dropped:?}");
    // A few more after the outage, then check the order of everything received.
    for _ in 0..3 {
        let data = watcher.next_of_type("data").await;
        timestamps.push(data["payload"]["timestamp"].as_u64().unwrap());
    }
    assert!(
        timestamps.windows(2).all(|pair| pair[0] < pair[1]),
        "readings arrive in order: {timestamps:?}"
    );
    agent.kill().await.unwrap();
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn the_agent_refreshes_its_token_while_it_streams() {
    let database = Arc::new(crate::helpers::fresh_database().await);
    let mut settings = crate::helpers::test_settings(&database.url);
    // Short enough to pass within the test, long enough that the agent's renewal (at four
    // fifths of the lifetime) has a second of margin on a loaded machine.
    settings.access_token_ttl = Duration::from_secs(5);
    let app = crate::helpers::spawn_app_with(database, settings).await;
    let mut watcher = watcher(&app, "long-lived-pi").await;
    let mut agent: Child = agent(&app, app.port, "long-lived-pi", &[])
        .env("SEND_INTERVAL_SECS", "0.2")
        .spawn()
        .unwrap();
    let first = watcher.next_of_type("data").await;
    let admin = app
        .long_lived_token_with(
            crate::helpers::TEST_ADMIN,
            crate::helpers::TEST_ADMIN_PASSWORD,
        )
        .await;
    let producer_socket = || async {
        let view: Value = app
            .get_with("/api/admin/connections", &admin)
            .await
            .json()
            .await
            .unwrap();
        view["instances"][0]["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|connection| connection["username"] == "long-lived-pi")
            .map(|connection| connection["connected_at"].clone())
    };
    let connected_at = crate::helpers::eventually(
        "the agent's socket is listed",
        Duration::from_secs(10),
        || async { producer_socket().await },
    )
    .await;
    crate::helpers::eventually(
        "a refresh by the agent",
        Duration::from_secs(20),
        || async {
            let entries = app
                .audit_with(&admin, "action=auth.refresh&actor=long-lived-pi")
                .await;
            (!entries.is_empty()).then_some(())
        },
    )
    .await;
    // Readings keep coming on the same socket well past the first token's expiry (5 s): the
    // agent sent the new token in a `refresh` frame, so the socket was not closed with 4001.
    let first_sent = first["payload"]["timestamp"].as_u64().unwrap();
    loop {
        let data = watcher.next_of_type("data").await;
        if data["payload"]["timestamp"].as_u64().unwrap() > first_sent + 7_000 {
            break;
        }
    }
    assert_eq!(
        producer_socket().await,
        Some(connected_at),
        "the same socket"
    );
    agent.kill().await.unwrap();
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn after_a_server_restart_the_agent_flushes_its_buffer_in_order_without_duplicates() {
    // The consumer stays on an in-process instance; the agent streams to a server process that
    // is restarted mid-run, on the same port, sharing the database and Redis.
    let database = Arc::new(crate::helpers::fresh_database().await);
    let settings = crate::helpers::test_settings(&database.url);
    let prefix = settings.redis_prefix.clone();
    let app = crate::helpers::spawn_app_with(database.clone(), settings).await;
    let mut watcher = watcher(&app, "restart-pi").await;
    let port = crate::helpers::closed_port();
    let mut server = crate::helpers::spawn_server_process_on(&database.url, &prefix, port);
    let server_address = format!("http://127.0.0.1:{port}");
    let mut agent: Child = agent(&app, port, "restart-pi", &[])
        .env("AUTH_URL", &server_address)
        .env("SEND_INTERVAL_SECS", "0.1")
        .env("NODEGRID_DEVICE_BACKOFF_INITIAL_MS", "50")
        .env("NODEGRID_DEVICE_BACKOFF_MAX_MS", "200")
        .spawn()
        .unwrap();

    let mut timestamps = Vec::new();
    for _ in 0..3 {
        let data = watcher.next_of_type("data").await;
        timestamps.push(data["payload"]["timestamp"].as_u64().unwrap());
    }
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(15)).code(), Some(0));
    let before_restart = timestamps.len();
    let _server = crate::helpers::spawn_server_process_on(&database.url, &prefix, port);

    for _ in 0..15 {
        let data = watcher.next_of_type("data").await;
        timestamps.push(data["payload"]["timestamp"].as_u64().unwrap());
    }
    assert!(
        timestamps.windows(2).all(|pair| pair[0] < pair[1]),
        "in order and without duplicates across the restart: {timestamps:?}"
    );
    // Readings taken while the server was away arrived too: the gap after the restart is
    // filled, not skipped (readings are 100 ms apart).
    let largest_gap = timestamps[before_restart - 1..]
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .max()
        .unwrap();
    assert!(
        largest_gap < 1_000,
        "a reading went missing: {timestamps:?}"
    );
    agent.kill().await.unwrap();
    app.shut_down().await.unwrap();
}

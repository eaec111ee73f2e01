//! Faults under load, each against a Redis or PostgreSQL of the test's own that it kills and
//! starts again (the machine's shared ones go on serving the rest of the suite). What each saw
//! goes into `RELIABILITY.md` (see `reliability.rs`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nodegrid_protocol::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{
    PASSWORD, TestApp, closed_port, eventually, fresh_database, spawn_app_with, test_settings,
};
use crate::private::{OwnPostgres, OwnRedis};
use crate::reliability::{Outcome, record};
use crate::ws::{Frame, Token, connect};

const PRODUCERS: usize = 100;

/// What the producers heard back, message by message.
#[derive(Default)]
struct Answers {
    /// (message id, when acked).
    acked: Vec<(String, Instant)>,
    /// Messages refused with `unavailable` (never acked).
    refused: u64,
    /// Producers (by index) with an ack after the given moment.
    acked_since: Vec<Option<Instant>>,
}

async fn signed_in(app: &TestApp, name: &str, role: Role) -> (i64, String) {
    app.register(name, role).await;
    let tokens = app.login(name, PASSWORD).await;
    (tokens.user_id, tokens.access_token)
}

#[actix_web::test]
async fn a_hundred_producers_ride_out_a_redis_restart() {
    let port = closed_port();
    let mut redis = OwnRedis::start(port).await;
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.redis_url = format!("redis://127.0.0.1:{port}");
    settings.ready_timeout = Duration::from_millis(500);
    let app = spawn_app_with(database, settings).await;

    // One consumer of a hundred producers.
    let (_, consumer_token) = signed_in(&app, "fault-consumer", Role::Consumer).await;
    let mut producers = Vec::new();
    for n in 0..PRODUCERS {
        producers.push(signed_in(&app, &format!("fault-producer-{n}"), Role::Producer).await);
    }
    let mut consumer = connect(&app, "/consumer", Token::Header(&consumer_token))
        .await
        .unwrap();
    for (id, _) in &producers {
        consumer
            .send_json(&json!({"type": "subscribe", "producer_id": id}))
            .await;
    }
    for _ in 0..PRODUCERS {
        assert_eq!(
            consumer.next_of_type("subscribed").await["type"],
            "subscribed"
        );
    }
    let delivered: Arc<Mutex<HashSet<String>>> = Arc::default();
    let reading = {
        let delivered = delivered.clone();
        actix_web::rt::spawn(async move {
            while let Some(frame) = consumer.next_within(Duration::from_secs(60)).await {
                match frame {
                    Frame::Json(frame) if frame["type"] == "data" => {
                        if let Some(id) = frame["payload"]["id"].as_str() {
                            delivered.lock().unwrap().insert(id.to_owned());
                        }
                    }
                    Frame::Closed { code, reason } => {
                        panic!("the consumer closed: {code} {reason}")
                    }
                    _ => {}
                }
            }
        })
    };

    // Each producer sends a message every 100 ms and waits for its answer.
    let answers = Arc::new(Mutex::new(Answers {
        acked_since: vec![None; PRODUCERS],
        ..Answers::default()
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let mut sending = Vec::new();
    for (index, (_, token)) in producers.iter().enumerate() {
        let mut socket = connect(&app, "/producer", Token::Header(token))
            .await
            .unwrap();
        let (answers, stop) = (answers.clone(), stop.clone());
        sending.push(actix_web::rt::spawn(async move {
            let mut k = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let id = format!("p{index}-{k}");
                k += 1;
                socket
                    .send_json(&json!({"type": "data", "payload": {"id": id}, "id": id}))
                    .await;
                let frame = socket
                    .next_within(Duration::from_secs(15))
                    .await
                    .unwrap_or_else(|| panic!("no answer to {id}"));
                let frame = frame.value().clone();
                {
                    let mut answers = answers.lock().unwrap();
                    match frame["type"].as_str() {
                        Some("ack") => {
                            answers.acked.push((id, Instant::now()));
                            answers.acked_since[index] = Some(Instant::now());
                        }
                        Some("error") if frame["code"] == "unavailable" => answers.refused += 1,
                        _ => panic!("unexpected answer to {id}: {frame}"),
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
    }
    let all_acked_after = |moment: Instant| {
        let answers = answers.clone();
        move || {
            let all = answers
                .lock()
                .unwrap()
                .acked_since
                .iter()
                .all(|at| at.is_some_and(|at| at > moment));
            async move { all.then_some(()) }
        }
    };
    eventually(
        "every producer acked",
        Duration::from_secs(30),
        all_acked_after(Instant::now()),
    )
    .await;

    // Redis dies. Nothing is acked that was not published; /ready says so.
    redis.stop();
    let killed = Instant::now();
    eventually("/ready reports Redis", Duration::from_secs(10), || async {
        (app.get("/ready").await.status() == 503).then_some(())
    })
    .await;
    eventually(
        "producers told `unavailable`",
        Duration::from_secs(15),
        || {
            let refused = answers.lock().unwrap().refused;
            async move { (refused >= PRODUCERS as u64).then_some(()) }
        },
    )
    .await;

    // Redis comes back, empty. Every producer is acked again, without a restart of nodegrid.
    let _redis = OwnRedis::start(port).await;
    let restarted = Instant::now();
    eventually(
        "every producer acked after the restart",
        Duration::from_secs(30),
        all_acked_after(restarted),
    )
    .await;
    let recovered_in = restarted.elapsed();
    eventually("/ready is 200 again", Duration::from_secs(10), || async {
        (app.get("/ready").await.status() == 200).then_some(())
    })
    .await;
    // A second of steady traffic, then stop.
    let steady = Instant::now();
    eventually(
        "a second of traffic",
        Duration::from_secs(10),
        all_acked_after(steady + Duration::from_secs(1)),
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for task in sending {
        task.await.unwrap();
    }

    // Every acked message reached the consumer, but those Redis held when it was killed: an
    // ack means "published to Redis", and a Redis without persistence that dies before
    // passing a message on takes it along (its history too). Those are the messages acked in
    // the moment before the kill; none acked earlier or after the restart may be missing.
    let acked: Vec<(String, Instant)> = answers.lock().unwrap().acked.clone();
    let missing = || {
        let delivered = delivered.lock().unwrap();
        acked
            .iter()
            .filter(|(id, _)| !delivered.contains(id))
            .cloned()
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while missing().iter().any(|(_, at)| *at > restarted) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let missing = missing();
    let in_flight = Duration::from_secs(1);
    let (at_the_kill, lost): (Vec<_>, Vec<_>) = missing.iter().partition(|(_, at)| {
        *at < restarted
            && (at.saturating_duration_since(killed) < in_flight)
            && killed.saturating_duration_since(*at) < in_flight
    });
    let refused = answers.lock().unwrap().refused;
    record(Outcome {
        fault: "Redis killed (SIGKILL) and restarted empty while 100 producers publish",
        happened: format!(
            "{} messages acked, {refused} refused `unavailable` while it was down (never \
             acked); /ready 503 during the outage; every producer acked again without a \
             restart; sessions caught up from history on what was published before their \
             channels were subscribed again. {}",
            acked.len(),
            if at_the_kill.is_empty() {
                "Every acked message was delivered".to_owned()
            } else {
                format!(
                    "{} acked in the moment of the kill were still in Redis and went with it \
                     (no persistence); every other acked message was delivered",
                    at_the_kill.len()
                )
            },
        ),
        lost: lost.len() as u64,
        recovered_in: Some(recovered_in),
        test: "faults::a_hundred_producers_ride_out_a_redis_restart",
    });
    assert!(
        lost.is_empty(),
        "acked but never delivered: {} of {} ({:?}…)",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(
        at_the_kill.len() <= PRODUCERS,
        "at most one message per producer is in flight"
    );
    // What was published while the channels were not subscribed came from history.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("nodegrid_stream_catch_ups_total"),
        "the sessions caught up after the reconnect"
    );
    reading.abort();
    app.shut_down().await.unwrap();
}

/// Calls that need the database, answered while it is away: (what, status, code).
async fn rest_calls(app: &TestApp, admin: &str) -> Vec<(&'static str, u16, String)> {
    let mut answers = Vec::new();
    let started = Instant::now();
    let login = app
        .post(
            "/api/auth/login",
            &json!({"username": "pg-consumer", "password": PASSWORD}),
            None,
        )
        .await;
    answers.push(("login", login.status().as_u16(), code(login).await));
    let users = app.get_with("/api/admin/users", admin).await;
    answers.push(("admin users", users.status().as_u16(), code(users).await));
    let register = app
        .post("/api/auth/register", &json!({"username": format!("late-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]), "password": PASSWORD, "role": "consumer"}), None)
        .await;
    answers.push(("register", register.status().as_u16(), code(register).await));
    let nodes = app.get_with("/api/nodes", admin).await;
    answers.push(("registry list", nodes.status().as_u16(), code(nodes).await));
    // Bounded: an away database is an answer, not a hang.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the calls took {:?}",
        started.elapsed()
    );
    answers
}

async fn code(response: reqwest::Response) -> String {
    response
        .json::<Value>()
        .await
        .ok()
        .and_then(|body| body["code"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[actix_web::test]
async fn while_postgres_restarts_rest_answers_503_and_sockets_stay_up() {
    let postgres = OwnPostgres::start(closed_port()).await;
    // The shared server's test database is only kept alive; nodegrid runs on the private one.
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&postgres.url("postgres"));
    settings.ready_timeout = Duration::from_millis(500);
    let app = spawn_app_with(database, settings).await;
    let (producer_id, producer_token) = signed_in(&app, "pg-producer", Role::Producer).await;
    let (_, consumer_token) = signed_in(&app, "pg-consumer", Role::Consumer).await;
    let admin = app.admin_token().await;
    let mut consumer = connect(&app, "/consumer", Token::Header(&consumer_token))
        .await
        .unwrap();
    consumer
        .send_json(&json!({"type": "subscribe", "producer_id": producer_id}))
        .await;
    consumer.next_of_type("subscribed").await;
    let mut producer = connect(&app, "/producer", Token::Header(&producer_token))
        .await
        .unwrap();

    // PostgreSQL stops as a crash would.
    postgres.kill();
    let killed = Instant::now();
    eventually(
        "/ready reports Postgres",
        Duration::from_secs(10),
        || async { (app.get("/ready").await.status() == 503).then_some(()) },
    )
    .await;
    // REST answers 503 `not_ready`, never 500, never a hang.
    let answers = rest_calls(&app, &admin).await;
    for (what, status, code) in &answers {
        assert_eq!(
            (*status, code.as_str()),
            (503, "not_ready"),
            "{what} while Postgres is away: {answers:?}"
        );
    }
    // The sockets stay up, and streaming goes on: it needs Redis, not Postgres.
    for n in 0..5 {
        producer
            .send_json(&json!({"type": "data", "payload": {"n": n}}))
            .await;
        assert_eq!(producer.next().await.value()["type"], "ack");
        assert_eq!(consumer.next_of_type("data").await["payload"]["n"], n);
    }

    // PostgreSQL is back: REST recovers without a restart of nodegrid.
    postgres.resume().await;
    let resumed = Instant::now();
    eventually("REST answers again", Duration::from_secs(30), || async {
        let users = app.get_with("/api/admin/users", &admin).await;
        (users.status() == 200).then_some(())
    })
    .await;
    let recovered_in = resumed.elapsed();
    let login = app
        .post(
            "/api/auth/login",
            &json!({"username": "pg-consumer", "password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(login.status(), 200);
    assert_eq!(app.get("/ready").await.status(), 200);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"nodegrid_dependency_unavailable_answers_total{dependency="postgres"}"#),
        "the 503s are counted"
    );
    record(Outcome {
        fault: "PostgreSQL stopped (immediate) and started again while sockets stream",
        happened: format!(
            "REST answered 503 `not_ready` ({} calls checked: login, register, admin, registry), \
             /ready 503; producer and consumer sockets stayed up and streamed; down {} ms",
            answers.len(),
            (resumed - killed).as_millis()
        ),
        lost: 0,
        recovered_in: Some(recovered_in),
        test: "faults::while_postgres_restarts_rest_answers_503_and_sockets_stay_up",
    });
    app.shut_down().await.unwrap();
}

/// A network namespace joined to this one by a veth pair, with `tc netem` on both ends; gone
/// when dropped. `None` where namespaces or `tc` cannot be used (not root, no capability).
struct SlowLink {
    namespace: String,
    host: String,
    guest_ip: String,
    host_ip: String,
}

impl SlowLink {
    fn create(netem: &[&str]) -> Option<SlowLink> {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let n = u16::from_str_radix(&id[..4], 16).unwrap_or(0);
        let subnet = format!("10.{}.{}", 200 + (n % 50), (n >> 6) % 256);
        let link = SlowLink {
            namespace: format!("ngt{id}"),
            host: format!("ngh{id}"),
            guest_ip: format!("{subnet}.2"),
            host_ip: format!("{subnet}.1"),
        };
        let guest = format!("ngg{id}");
        let run = |args: &[&str]| {
            std::process::Command::new("ip")
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        };
        if !run(&["netns", "add", &link.namespace]) {
            return None;
        }
        let ns = link.namespace.clone();
        let in_ns = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns];
            all.extend_from_slice(args);
            run(&all)
        };
        let host_cidr = format!("{}/30", link.host_ip);
        let guest_cidr = format!("{}/30", link.guest_ip);
        let mut guest_netem = vec!["tc", "qdisc", "add", "dev", &guest, "root", "netem"];
        guest_netem.extend_from_slice(netem);
        let mut host_netem = vec!["qdisc", "add", "dev", &link.host, "root", "netem"];
        host_netem.extend_from_slice(netem);
        let ready = run(&[
            "link", "add", &link.host, "type", "veth", "peer", "name", &guest,
        ]) && run(&["link", "set", &guest, "netns", &link.namespace])
            && run(&["addr", "add", &host_cidr, "dev", &link.host])
            && run(&["link", "set", &link.host, "up"])
            && in_ns(&["ip", "addr", "add", &guest_cidr, "dev", &guest])
            && in_ns(&["ip", "link", "set", &guest, "up"])
            && in_ns(&["ip", "link", "set", "lo", "up"])
            && in_ns(&guest_netem)
            && std::process::Command::new("tc")
                .args(&host_netem)
                .status()
                .is_ok_and(|status| status.success());
        // Dropped (and cleaned up) if any step failed.
        ready.then_some(link)
    }
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.namespace])
            .status();
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.host])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

#[actix_web::test]
async fn over_a_slow_lossy_link_every_message_arrives_once_in_order() {
    // Where the kernel has netem: 40 ms ± 10 ms each way and 2 % loss on a veth pair, the load
    // generator in a namespace of its own. Elsewhere: a relay on loopback that holds every
    // chunk 40 ms and every 50th another 200 ms (a retransmission, in order).
    let link = SlowLink::create(&["delay", "40ms", "10ms", "loss", "2%"]);
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    if let Some(link) = &link {
        settings.http_addr = format!("{}:0", link.host_ip).parse().unwrap();
    }
    let app = spawn_app_with(database, settings).await;
    let mut relay = None;
    let (mut command, how) = match &link {
        Some(link) => {
            let mut command = tokio::process::Command::new("ip");
            command
                .args(["netns", "exec", &link.namespace])
                .arg(env!("CARGO_BIN_EXE_nodegrid"))
                .arg("bench")
                .args(["--target", &format!("http://{}:{}", link.host_ip, app.port)]);
            (
                command,
                "`tc netem` 40 ± 10 ms each way and 2 % loss on a veth pair",
            )
        }
        None => {
            let slow = crate::outage::Relay::start_slow(
                format!("127.0.0.1:{}", app.port),
                crate::outage::Slowness {
                    delay: Duration::from_millis(40),
                    stall_every: 50,
                    stall: Duration::from_millis(200),
                },
            )
            .await;
            let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_nodegrid"));
            command
                .arg("bench")
                .args(["--target", &format!("http://127.0.0.1:{}", slow.port)]);
            relay = Some(slow);
            (
                command,
                "no netem here: a relay holding every chunk 40 ms each way, every 50th 200 ms more",
            )
        }
    };
    let output = command
        .args([
            "--scenario",
            "fleet",
            "--producers",
            "4",
            "--consumers",
            "4",
        ])
        .args([
            "--per-consumer",
            "2",
            "--rate",
            "20",
            "--seconds",
            "4",
            "--json",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reports: Value = serde_json::from_slice(&output.stdout).unwrap();
    let report = &reports[0];
    let sent = report["sent"].as_u64().unwrap();
    assert!(sent > 0, "{report:#}");
    assert_eq!(report["acked"], sent, "{report:#}");
    assert_eq!(
        report["delivered"], report["expected_deliveries"],
        "{report:#}"
    );
    assert_eq!(report["lost"], 0, "{report:#}");
    assert_eq!(report["seq_gaps"], 0, "{report:#}");
    // The link was slow: the delay is in every delivery (this checks the fault, not speed).
    let p50 = report["latency_ms"]["p50"].as_f64().unwrap();
    assert!(p50 >= 30.0, "the slow link was not in effect: p50 {p50} ms");
    record(Outcome {
        fault: "Slow, lossy network",
        happened: format!(
            "{how}: {sent} messages from 4 producers to 4 consumers, all acked, all {} \
             deliveries made, no `seq` gap; latency p50 {p50:.0} ms, p99 {:.0} ms",
            report["delivered"],
            report["latency_ms"]["p99"].as_f64().unwrap_or_default()
        ),
        lost: 0,
        recovered_in: None,
        test: "faults::over_a_slow_lossy_link_every_message_arrives_once_in_order",
    });
    drop(relay);
    drop(link);
    app.shut_down().await.unwrap();
}

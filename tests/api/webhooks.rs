//! Webhooks: registration and its checks, signed deliveries of pNode and registry events to a
//! receiver on loopback, retries, and an outbox that survives an instance restart.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use hmac::{Hmac, KeyInit, Mac};
use nodegrid_clients::pnode_sim::{PnodeSim, Scripted, SimOptions};
use nodegrid_protocol::prpc::METHOD_GET_PODS_WITH_STATS;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{eventually, fresh_database, spawn_app_with, test_settings};
use crate::pnodes::{first_cycle, run_cycle};

const SECRET: &str = "whsec-test-0123456789abcdef";

/// What the receiver got: headers of interest and the body as sent.
#[derive(Debug, Clone)]
struct Received {
    delivery: String,
    event: String,
    signature: String,
    body: String,
}

/// A receiver on loopback that answers 500 to its first `failures` requests, then 200.
struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
    server: actix_web::dev::ServerHandle,
}

#[derive(Clone)]
struct ReceiverState {
    received: Arc<Mutex<Vec<Received>>>,
    failures: usize,
}

async fn receive(
    state: web::Data<ReceiverState>,
    request: HttpRequest,
    body: String,
) -> HttpResponse {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut received = state.received.lock().unwrap();
    received.push(Received {
        delivery: header("Nodegrid-Delivery"),
        event: header("Nodegrid-Event"),
        signature: header("Nodegrid-Signature"),
        body,
    });
    if received.len() <= state.failures {
        HttpResponse::InternalServerError().finish()
    } else {
        HttpResponse::Ok().finish()
    }
}

/// Runs on a thread and actix System of its own, so that the instances the test stops and
/// starts cannot take it down with them.
fn start_receiver(failures: usize) -> Receiver {
    let received = Arc::new(Mutex::new(Vec::new()));
    let state = ReceiverState {
        received: received.clone(),
        failures,
    };
    let (started_tx, started) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(web::Data::new(state.clone()))
                    .route("/hook", web::post().to(receive))
            })
            .workers(1)
            .disable_signals()
            .bind("127.0.0.1:0")
            .unwrap();
            let port = server.addrs()[0].port();
            let server = server.run();
            started_tx.send((port, server.handle())).unwrap();
            let _ = server.await;
        });
    });
    let (port, server) = started.recv().unwrap();
    Receiver {
        url: format!("http://127.0.0.1:{port}/hook"),
        received,
        server,
    }
}

impl Receiver {
    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// Checks `Nodegrid-Signature` the way a receiver would: `t=…,v1=…`, HMAC-SHA256 of
/// `"<t>.<body>"` with the secret, `t` close to now.
fn signature_is_valid(received: &Received, secret: &str) -> bool {
    let Some((t, v1)) = received
        .signature
        .split_once(',')
        .and_then(|(t, v1)| Some((t.strip_prefix("t=")?, v1.strip_prefix("v1=")?)))
    else {
        return false;
    };
    let Ok(timestamp) = t.parse::<i64>() else {
        return false;
    };
    if (chrono::Utc::now().timestamp() - timestamp).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{}", received.body).as_bytes());
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    expected == v1
}

fn pods(addresses: &[&str]) -> Scripted {
    let pods: Vec<Value> = addresses
        .iter()
        .map(|address| json!({"address": address, "uptime": 2_592_000, "is_public": true}))
        .collect();
    Scripted::Result(json!({"pods": pods}))
}

#[actix_web::test]
async fn a_signed_pnode_event_survives_a_failing_receiver_and_an_instance_restart() {
    let receiver = start_receiver(2);
    let sim = PnodeSim::start(SimOptions {
        seeds: 1,
        pods: 0,
        ..SimOptions::default()
    })
    .unwrap();
    sim.script(0, METHOD_GET_PODS_WITH_STATS, pods(&["10.4.0.1:9001"]));
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.pnodes.seeds = vec![nodegrid_services::pnodes::Seed::parse(&sim.seeds()[0]).unwrap()];
    settings.pnodes.interval = Duration::from_secs(3_600);
    // Retries a second apart (then two): time enough to stop the instance between them.
    settings.webhooks.retry_base = Duration::from_secs(1);
    let app = spawn_app_with(database.clone(), settings.clone()).await;
    let admin = app.admin_token().await;

    // Registration is checked: an outside host, an unknown event, a short secret, a user.
    for (body, needle) in [
        (
            json!({"url": "http://hooks.example.com/x", "secret": SECRET, "events": ["pnode.*"]}),
            "may not point at",
        ),
        (
            json!({"url": receiver.url, "secret": SECRET, "events": ["pnode.exploded"]}),
            "not an event type",
        ),
        (
            json!({"url": receiver.url, "secret": "short", "events": ["pnode.*"]}),
            "secret must be",
        ),
        (
            json!({"url": "https://127.0.0.1/x", "secret": SECRET, "events": ["*"]}),
            "http://",
        ),
        (
            json!({"url": receiver.url, "secret": SECRET, "events": ["*"], "filters": [1]}),
            "JSON object",
        ),
    ] {
        let response = app.post("/api/admin/webhooks", &body, Some(&admin)).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["code"], "validation_failed");
        assert!(
            error["message"].as_str().unwrap().contains(needle),
            "{error}"
        );
    }
    app.register("hook-user", nodegrid_protocol::auth::Role::Consumer)
        .await;
    let user = app.long_lived_token("hook-user").await;
    let forbidden = app
        .post(
            "/api/admin/webhooks",
            &json!({"url": receiver.url, "secret": SECRET, "events": ["*"]}),
            Some(&user),
        )
        .await;
    assert_eq!(forbidden.status(), 403);

    let created = app
        .post(
            "/api/admin/webhooks",
            &json!({"url": receiver.url, "secret": SECRET, "events": ["pnode.online", "pnode.offline"]}),
            Some(&admin),
        )
        .await;
    assert_eq!(created.status(), 201);
    let webhook: Value = created.json().await.unwrap();
    assert!(webhook.get("secret").is_none(), "the secret is never shown");
    let id = webhook["id"].as_i64().unwrap();
    let audit = app.audit_with(&admin, "action=webhook.create").await;
    assert_eq!(audit.len(), 1);
    assert!(
        !audit[0].to_string().contains(SECRET),
        "the secret is not audited"
    );

    // The first cycle ran before the webhook existed; a node appearing now is an event.
    first_cycle(&app).await;
    sim.script(
        0,
        METHOD_GET_PODS_WITH_STATS,
        pods(&["10.4.0.1:9001", "10.4.0.2:9001"]),
    );
    run_cycle(&app).await;

    // Two refusals, then this instance stops with the delivery still waiting.
    eventually("two failed attempts", Duration::from_secs(15), || {
        let count = receiver.received().len();
        async move { (count >= 2).then_some(()) }
    })
    .await;
    app.shut_down().await.unwrap();
    let client = crate::helpers::connect(&database.url).await;
    let row = client
        .query_one(
            "SELECT status, attempts FROM webhook_deliveries WHERE webhook_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let (status, attempts): (String, i32) = (row.get(0), row.get(1));
    assert_eq!(
        (status.as_str(), attempts),
        ("pending", 2),
        "the outbox kept it"
    );

    // Another instance of the deployment takes over and delivers it.
    let app = spawn_app_with(database.clone(), settings).await;
    let admin = app.admin_token().await;
    let deliveries = eventually("the delivery", Duration::from_secs(20), || {
        let (app, admin) = (&app, admin.clone());
        async move {
            let page: Value = app
                .get_with(&format!("/api/admin/webhooks/{id}/deliveries"), &admin)
                .await
                .json()
                .await
                .ok()?;
            (page["deliveries"][0]["status"] == "delivered").then_some(page)
        }
    })
    .await;
    let delivery = &deliveries["deliveries"][0];
    assert_eq!(deliveries["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(
        delivery["attempts"],
        3,
        "{deliveries} {:?}",
        receiver.received()
    );
    assert_eq!(delivery["last_status"], 200);
    assert_eq!(delivery["event_type"], "pnode.online");

    let received = receiver.received();
    assert_eq!(received.len(), 3);
    for attempt in &received {
        assert!(signature_is_valid(attempt, SECRET), "{attempt:?}");
        assert!(!signature_is_valid(attempt, "another-secret-0123"));
        assert_eq!(attempt.delivery, received[0].delivery, "one delivery id");
        assert_eq!(attempt.body, received[0].body, "the same bytes every time");
        assert_eq!(attempt.event, "pnode.online");
    }
    let event: Value = serde_json::from_str(&received[2].body).unwrap();
    assert_eq!(event["type"], "pnode.online");
    assert_eq!(event["data"]["change"], "appeared");
    assert_eq!(event["data"]["node"]["address"], "10.4.0.2:9001");
    assert_eq!(
        event["id"].as_str().unwrap(),
        delivery["event_id"].as_str().unwrap()
    );

    // Listing and deletion.
    let listed: Value = app
        .get_with("/api/admin/webhooks", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["webhooks"][0]["id"], id);
    assert_eq!(listed["webhooks"][0]["pending"], 0);
    let deleted = app
        .http
        .delete(format!("{}/api/admin/webhooks/{id}", app.address))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        app.get_with(&format!("/api/admin/webhooks/{id}"), &admin)
            .await
            .status(),
        404
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    // The recorder is shared by every test in this process: at least this one delivery.
    let delivered: f64 = metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix("nodegrid_webhook_deliveries_total{outcome=\"delivered\"} ")
        })
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0);
    assert!(delivered >= 1.0, "{delivered}");
    app.shut_down().await.unwrap();
    receiver.server.stop(true).await;
    sim.stop().await;
}

#[actix_web::test]
async fn registry_changes_reach_the_webhooks_whose_filters_they_match() {
    let receiver = start_receiver(0);
    let database = Arc::new(fresh_database().await);
    let app = spawn_app_with(database.clone(), test_settings(&database.url)).await;
    let admin = app.admin_token().await;
    let created = app
        .post(
            "/api/admin/webhooks",
            &json!({"url": receiver.url, "secret": SECRET, "events": ["node.*"],
                    "filters": {"node": {"type": "VM"}}}),
            Some(&admin),
        )
        .await;
    assert_eq!(created.status(), 201);
    for (name, node_type) in [("hooked-vm", "VM"), ("ignored-metal", "BAREMETAL")] {
        let response = app
            .post(
                "/api/nodes",
                &json!({"type": node_type, "name": name}),
                Some(&admin),
            )
            .await;
        assert_eq!(response.status(), 201);
    }
    let received = eventually("the VM's event", Duration::from_secs(15), || {
        let received = receiver.received();
        async move { (!received.is_empty()).then_some(received) }
    })
    .await;
    let event: Value = serde_json::from_str(&received[0].body).unwrap();
    assert_eq!(event["type"], "node.created");
    assert_eq!(event["data"]["node"]["name"], "hooked-vm");
    assert!(signature_is_valid(&received[0], SECRET));
    // The bare-metal node matched no filter: no delivery row was ever written for it.
    let client = crate::helpers::connect(&database.url).await;
    let rows: i64 = client
        .query_one("SELECT count(*) FROM webhook_deliveries", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
    app.shut_down().await.unwrap();
    receiver.server.stop(true).await;
}

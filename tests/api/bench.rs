//! The load generator (`nodegrid bench`) against a real server and a real MQTT broker. These
//! check what it counts, never how fast anything is.

use serde_json::Value;
use tokio::process::Command;

use crate::helpers::spawn_app;

async fn bench(args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_nodegrid"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn mqtt_url() -> String {
    std::env::var("NODEGRID_TEST_MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into())
}

#[actix_web::test]
async fn fleet_against_nodegrid_counts_every_delivery() {
    let app = spawn_app().await;
    let pid = std::process::id().to_string();
    let reports = bench(&[
        "--target",
        &app.address,
        "--scenario",
        "fleet",
        "--producers",
        "2",
        "--consumers",
        "3",
        "--per-consumer",
        "2",
        "--rate",
        "20",
        "--seconds",
        "1",
        "--server-pid",
        &pid,
    ])
    .await;
    let report = &reports[0];
    assert_eq!(report["scenario"], "fleet");
    let sent = report["sent"].as_u64().unwrap();
    assert!(sent >= 2, "{report:#}");
    assert_eq!(report["acked"], sent);
    // Three consumers over two producers, two each: every producer has three subscribers.
    assert_eq!(report["expected_deliveries"], sent * 3);
    assert_eq!(report["delivered"], report["expected_deliveries"]);
    assert_eq!(report["lost"], 0);
    assert_eq!(report["seq_gaps"], 0);
    assert!(report["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
    assert!(report["server_cpu_seconds"].is_number());
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn the_same_broadcast_runs_against_mqtt_for_comparison() {
    let app = spawn_app().await;
    let reports = bench(&[
        "--target",
        &app.address,
        "--compare",
        &mqtt_url(),
        "--scenario",
        "broadcast",
        "--consumers",
        "3",
        "--rate",
        "20",
        "--seconds",
        "1",
    ])
    .await;
    assert_eq!(reports.as_array().unwrap().len(), 2);
    for report in reports.as_array().unwrap() {
        assert_eq!(report["producers"], 1);
        assert_eq!(
            report["delivered"], report["expected_deliveries"],
            "{report:#}"
        );
        assert_eq!(report["lost"], 0);
    }
    assert!(
        reports[1]["target"]
            .as_str()
            .unwrap()
            .starts_with("mqtt://")
    );
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn batched_consumers_count_every_delivery() {
    let app = spawn_app().await;
    let reports = bench(&[
        "--target",
        &app.address,
        "--scenario",
        "fleet",
        "--producers",
        "2",
        "--consumers",
        "3",
        "--per-consumer",
        "2",
        "--rate",
        "50",
        "--seconds",
        "1",
        "--batch",
    ])
    .await;
    let report = &reports[0];
    let sent = report["sent"].as_u64().unwrap();
    assert!(sent >= 2, "{report:#}");
    assert_eq!(report["expected_deliveries"], sent * 3);
    assert_eq!(
        report["delivered"], report["expected_deliveries"],
        "{report:#}"
    );
    assert_eq!(report["seq_gaps"], 0);
    app.shut_down().await.unwrap();
}

/// A Mosquitto of the test's own with a WebSocket listener on loopback, stopped on drop.
struct WebSocketBroker {
    child: std::process::Child,
    port: u16,
    config: std::path::PathBuf,
}

impl WebSocketBroker {
    fn start() -> WebSocketBroker {
        let free_port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let (tcp_port, port) = (free_port(), free_port());
        let config =
            std::env::temp_dir().join(format!("nodegrid-mosquitto-{}.conf", uuid::Uuid::new_v4()));
        // Mosquitto 2.0 starts a WebSocket listener only beside a plain one; `lo` keeps the
        // WebSocket listener on loopback (it takes an interface, not an address).
        std::fs::write(
            &config,
            format!(
                "listener {tcp_port} 127.0.0.1\nlistener {port} lo\nprotocol websockets\nallow_anonymous true\npersistence false\n"
            ),
        )
        .unwrap();
        let child = std::process::Command::new("mosquitto")
            .arg("-c")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mosquitto is installed by scripts/test.sh");
        WebSocketBroker {
            child,
            port,
            config,
        }
    }

    async fn wait_listening(&self) {
        let address = format!("127.0.0.1:{}", self.port);
        crate::helpers::eventually(
            "mosquitto's WebSocket listener",
            std::time::Duration::from_secs(10),
            || {
                let address = address.clone();
                async move {
                    tokio::net::TcpStream::connect(&address)
                        .await
                        .ok()
                        .map(|_| ())
                }
            },
        )
        .await;
    }
}

impl Drop for WebSocketBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

#[actix_web::test]
async fn the_comparison_runs_over_mqtt_on_websockets_too() {
    let broker = WebSocketBroker::start();
    broker.wait_listening().await;
    let app = spawn_app().await;
    let pid = std::process::id().to_string();
    let reports = bench(&[
        "--target",
        &app.address,
        "--server-pid",
        &pid,
        "--compare",
        &format!("mqtt+ws://127.0.0.1:{}/mqtt", broker.port),
        "--compare-pid",
        &broker.child.id().to_string(),
        "--scenario",
        "fleet",
        "--producers",
        "2",
        "--consumers",
        "2",
        "--rate",
        "20",
        "--seconds",
        "1",
    ])
    .await;
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), 2);
    for report in reports {
        assert_eq!(report["lost"], 0, "{report:#}");
        assert_eq!(
            report["delivered"], report["expected_deliveries"],
            "{report:#}"
        );
        assert!(report["delivered"].as_u64().unwrap() > 0, "{report:#}");
        // CPU is counted over the sending and delivering only, for both sides.
        assert!(report["server_cpu_seconds"].is_number(), "{report:#}");
    }
    assert!(
        reports[1]["target"]
            .as_str()
            .unwrap()
            .starts_with("mqtt+ws://")
    );
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn connections_reports_memory_per_idle_connection() {
    let app = spawn_app().await;
    let pid = std::process::id().to_string();
    let reports = bench(&[
        "--target",
        &app.address,
        "--scenario",
        "connections",
        "--consumers",
        "20",
        "--source-addresses",
        "2",
        "--seconds",
        "1",
        "--server-pid",
        &pid,
    ])
    .await;
    let report = &reports[0];
    assert_eq!(report["consumers"], 20);
    assert!(
        report["server_kib_per_connection"].is_number(),
        "{report:#}"
    );
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn heartbeats_provisions_children_and_measures_their_signed_heartbeats() {
    let app = spawn_app().await;
    let report = bench(&[
        "--target",
        &app.address,
        "--scenario",
        "heartbeats",
        "--children",
        "20",
        "--rate",
        "100",
        "--seconds",
        "2",
        "--connections",
        "4",
        "--admin-username",
        crate::helpers::TEST_ADMIN,
        "--admin-password",
        crate::helpers::TEST_ADMIN_PASSWORD,
    ])
    .await;
    let requests = report["requests"].as_u64().unwrap();
    assert!(requests >= 100, "{report}");
    assert_eq!(report["ok"].as_u64(), Some(requests), "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn the_http_scenario_counts_every_answer_and_its_bytes() {
    let app = spawn_app().await;
    let expected = app.get("/health").await.bytes().await.unwrap().len() as u64;
    let report = bench(&[
        "--target",
        &app.address,
        "--scenario",
        "http",
        "--path",
        "/health",
        "--rate",
        "200",
        "--connections",
        "4",
        "--seconds",
        "1",
        "--header",
        "Accept-Encoding: gzip",
        // As `scripts/bench-pnodes.sh` runs it: the generator on one thread.
        "--threads",
        "1",
    ])
    .await;
    // The schedule is exact: rate × seconds requests, however late some are.
    let requests = report["requests"].as_u64().unwrap();
    assert_eq!(requests, 200, "{report:#}");
    assert_eq!(report["ok"], requests, "{report:#}");
    assert_eq!(report["errors"], serde_json::json!({}));
    assert_eq!(report["mean_body_bytes"], expected);
    // What the hypervisor took meanwhile, read from /proc/stat: never negative.
    assert!(
        report["stolen_cpu_seconds"].as_f64().unwrap() >= 0.0,
        "{report:#}"
    );
    assert_eq!(
        report["headers"],
        serde_json::json!(["Accept-Encoding: gzip"])
    );
    // Answers other than 2xx are counted by status, and the connection goes on.
    let missing = bench(&[
        "--target",
        &app.address,
        "--scenario",
        "http",
        "--path",
        "/no/such/path",
        "--rate",
        "20",
        "--connections",
        "2",
        "--seconds",
        "1",
    ])
    .await;
    let requests = missing["requests"].as_u64().unwrap();
    assert_eq!(missing["ok"], 0);
    let counted: u64 = missing["errors"]
        .as_object()
        .unwrap()
        .values()
        .map(|count| count.as_u64().unwrap())
        .sum();
    assert_eq!(counted, requests, "{missing:#}");
    assert!(
        missing["errors"]["404"].as_u64().unwrap() > 0,
        "{missing:#}"
    );
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn the_wakeup_scenario_measures_every_wake_up_of_its_schedule() {
    let report = bench(&["--scenario", "wakeup", "--rate", "500", "--seconds", "1"]).await;
    assert_eq!(report["wakeups"], 500, "{report:#}");
    let late = &report["lateness_ms"];
    let p50 = late["p50"].as_f64().unwrap();
    assert!(p50 > 0.0, "{report:#}");
    assert!(late["max"].as_f64().unwrap() >= p50, "{report:#}");
}

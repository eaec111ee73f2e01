//! The pNode network live: the change socket on every instance, the seed's stored fields and
//! lightweight status, and API tokens that lift the per-address limit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use nodegrid_clients::pnode_sim::{PnodeSim, Scripted, SimOptions};
use nodegrid_protocol::prpc::METHOD_GET_PODS_WITH_STATS;
use nodegrid_services::config::Settings;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, TestDatabase, eventually, fresh_database, spawn_app_with, test_settings,
};
use crate::pnodes::{first_cycle, run_cycle, settings_for};
use crate::ws::{Frame, Token, Ws, connect};

const PUBLIC: &str = "10.3.0.1:9001";
const PRIVATE: &str = "10.3.0.2:9001";

fn pods(list: &[(&str, bool)]) -> Scripted {
    let pods: Vec<Value> = list
        .iter()
        .map(|(address, public)| {
            json!({"address": address, "uptime": 2_592_000, "is_public": public, "version": "0.8.0",
                   "pubkey": format!("key-{address}"), "storage_committed": 1u64 << 40,
                   "storage_used": 1u64 << 38})
        })
        .collect();
    Scripted::Result(json!({"pods": pods}))
}

/// The pNode tests' settings, polling `sim` every `interval`.
fn settings(database: &TestDatabase, sim: &PnodeSim, interval: Duration) -> Settings {
    let mut settings = settings_for(database, sim);
    settings.pnodes.interval = interval;
    settings
}

/// Rows of per-node history stored so far.
async fn rows(app: &TestApp) -> i64 {
    let status: Value = app
        .get("/api/xandeum/nodes/history-status")
        .await
        .json()
        .await
        .unwrap();
    status["status"]["node_history_rows"].as_i64().unwrap()
}

/// The next `cycle` message on a live socket (snapshots skipped).
async fn next_cycle(socket: &mut Ws) -> Value {
    loop {
        match socket.next().await {
            Frame::Json(message) if message["type"] == "cycle" => return message,
            Frame::Json(_) => continue,
            other => panic!("the live socket ended: {other:?}"),
        }
    }
}

fn change_names(message: &Value) -> Vec<(String, String)> {
    message["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| {
            (
                change["change"].as_str().unwrap().to_owned(),
                change["node"]["address"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[actix_web::test]
async fn live_sockets_on_both_instances_get_each_cycles_changes_and_only_those_their_filters_pass()
{
    let sim = PnodeSim::start(SimOptions {
        seeds: 1,
        pods: 0,
        ..SimOptions::default()
    })
    .unwrap();
    sim.script(
        0,
        METHOD_GET_PODS_WITH_STATS,
        pods(&[(PUBLIC, true), (PRIVATE, false)]),
    );
    let database = Arc::new(fresh_database().await);
    // One-second cycles: a node out of gossip is offline two seconds later.
    let settings = settings(&database, &sim, Duration::from_secs(1));
    let a = spawn_app_with(database.clone(), settings.clone()).await;
    let b = spawn_app_with(database.clone(), settings).await;
    first_cycle(&a).await;

    // Refused before the upgrade: a filter out of range.
    assert_eq!(
        connect(
            &a,
            "/api/xandeum/ws/pnodes?min_score=500",
            Token::Header("")
        )
        .await
        .err(),
        Some(400)
    );
    // What each cycle's record says changed, as the instance serving it saw it.
    let mut served = a.pnodes.cell.updates();
    let mut sockets = Vec::new();
    for (app, path) in [
        (&a, "/api/xandeum/ws/pnodes"),
        (&b, "/api/xandeum/ws/pnodes"),
        (&b, "/api/xandeum/ws/pnodes?status=offline"),
    ] {
        let mut socket = connect(app, path, Token::Header("")).await.unwrap();
        let first = socket.next().await;
        assert_eq!(first.value()["type"], "snapshot", "{first:?}");
        assert!(first.value()["summary"]["total_pnodes"].is_u64());
        sockets.push(socket);
    }

    // The private node leaves gossip; within a few one-second cycles it is offline.
    sim.script(0, METHOD_GET_PODS_WITH_STATS, pods(&[(PUBLIC, true)]));
    type Changes = Vec<(String, String, bool)>;
    let mut records: HashMap<i64, Changes> = HashMap::new();
    let went_offline = eventually(
        "the private node's offline cycle",
        Duration::from_secs(20),
        || {
            let mut found = None;
            while let Ok(cycle) = served.try_recv() {
                let changes: Changes = cycle
                    .changes
                    .iter()
                    .map(|change| {
                        let kind = serde_json::to_value(change.change).unwrap();
                        (
                            kind.as_str().unwrap().to_owned(),
                            change.node.address.clone(),
                            change.node.is_online,
                        )
                    })
                    .collect();
                if changes
                    .iter()
                    .any(|(kind, address, _)| kind == "went_offline" && address == PRIVATE)
                {
                    found = Some(cycle.cycle);
                }
                records.insert(cycle.cycle, changes);
            }
            async move { found }
        },
    )
    .await;

    // Every socket, on the leader and on the follower, is sent each cycle it sees with exactly
    // the record's changes that pass its filter, up to the cycle the node went offline.
    for (index, socket) in sockets.iter_mut().enumerate() {
        let offline_only = index == 2;
        loop {
            let message = next_cycle(socket).await;
            let cycle = message["summary"]["cycle"].as_i64().unwrap();
            if index == 0 {
                assert_eq!(
                    message["previous_cycle"].as_i64(),
                    Some(cycle - 1),
                    "the leader's sockets are told every cycle"
                );
            }
            // A follower may announce a cycle the leader served before the test listened.
            let Some(recorded) = records.get(&cycle) else {
                assert!(
                    records.keys().all(|&later| later > cycle),
                    "cycle {cycle} was not recorded"
                );
                continue;
            };
            let expected: Vec<(String, String)> = recorded
                .iter()
                .filter(|(_, _, online)| !offline_only || !online)
                .map(|(kind, address, _)| (kind.clone(), address.clone()))
                .collect();
            assert_eq!(
                change_names(&message),
                expected,
                "socket {index}, cycle {cycle}"
            );
            if cycle >= went_offline {
                break;
            }
        }
    }
    a.shut_down().await.unwrap();
    b.shut_down().await.unwrap();
    sim.stop().await;
}

#[actix_web::test]
async fn history_rows_carry_the_seeds_fields_and_registry_entries_their_stored_status() {
    let sim = PnodeSim::start(SimOptions {
        seeds: 1,
        pods: 0,
        ..SimOptions::default()
    })
    .unwrap();
    sim.script(
        0,
        METHOD_GET_PODS_WITH_STATS,
        pods(&[(PUBLIC, true), (PRIVATE, false)]),
    );
    let database = Arc::new(fresh_database().await);
    let app = spawn_app_with(
        database.clone(),
        settings(&database, &sim, Duration::from_secs(3_600)),
    )
    .await;
    first_cycle(&app).await;

    let history: Value = app
        .get("/api/xandeum/network/history?hours=1")
        .await
        .json()
        .await
        .unwrap();
    let row = &history["history"][0];
    let readable = row["timestamp_readable"].as_str().unwrap();
    let expected = chrono::DateTime::from_timestamp(row["timestamp"].as_i64().unwrap(), 0)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    assert_eq!(readable, expected);
    assert_eq!(row["storage_utilization_ratio"], 25.0, "2^38 of 2^40");
    assert_eq!(row["version_diversity_index"], 1.0, "one version");

    let seed = &sim.seeds()[0];
    for (address, status) in [(PUBLIC, "public"), (PRIVATE, "private")] {
        let entry: Value = app
            .get(&format!("/api/xandeum/registry/{address}"))
            .await
            .json()
            .await
            .unwrap();
        let stored = &entry["pnode_status"];
        assert_eq!(stored["status"], status, "{entry}");
        assert_eq!(stored["last_ip"], seed.as_str());
        assert_eq!(stored["last_seen"], entry["entry"]["last_seen"]);
        assert!(stored["updated_at"].as_i64().unwrap() > 0);
    }

    // A cycle in which nothing changed writes its record and network row, and no node row.
    assert_eq!(rows(&app).await, 2);
    let report = run_cycle(&app).await;
    assert_eq!(report.outcome, "written");
    assert_eq!(rows(&app).await, 2, "no node changed");
    let history: Value = app
        .get("/api/xandeum/network/history?hours=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        history["summary"]["data_points"], 2,
        "a network row per cycle"
    );
    // One node moves to another version: its row, and only its row, is written at once (a
    // change of figures alone would wait a minute).
    sim.script(
        0,
        METHOD_GET_PODS_WITH_STATS,
        Scripted::Result(json!({"pods": [
            {"address": PUBLIC, "uptime": 2_592_000, "is_public": true, "version": "0.8.1",
             "pubkey": format!("key-{PUBLIC}"), "storage_committed": 1u64 << 40, "storage_used": 1u64 << 38},
            {"address": PRIVATE, "uptime": 2_592_000, "is_public": false, "version": "0.8.0",
             "pubkey": format!("key-{PRIVATE}"), "storage_committed": 1u64 << 40, "storage_used": 1u64 << 38},
        ]})),
    );
    run_cycle(&app).await;
    assert_eq!(rows(&app).await, 3);
    app.shut_down().await.unwrap();
    sim.stop().await;
}

#[actix_web::test]
async fn an_unlimited_token_lifts_the_per_address_limit_and_a_revoked_one_is_refused() {
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.pnodes.api_rate_per_sec = 1;
    settings.pnodes.api_burst = 2;
    let app = spawn_app_with(database, settings).await;
    let admin = app.admin_token().await;
    let issue = |body: Value| {
        let (app, admin) = (&app, admin.clone());
        async move {
            let response = app.post("/api/admin/api-tokens", &body, Some(&admin)).await;
            assert_eq!(response.status(), 201);
            response.json::<Value>().await.unwrap()
        }
    };
    let unlimited = issue(json!({"name": "dashboard", "scopes": ["xandeum:unlimited"]})).await;
    let metered =
        issue(json!({"name": "metered", "scopes": ["xandeum:unlimited"], "rate_per_sec": 3})).await;
    assert_eq!(metered["rate_per_sec"], 3);
    let other = issue(json!({"name": "reader", "scopes": ["nodes:read"]})).await;
    let refused = app
        .post(
            "/api/admin/api-tokens",
            &json!({"name": "bad", "scopes": ["nodes:read"], "rate_per_sec": 3}),
            Some(&admin),
        )
        .await;
    assert_eq!(refused.status(), 400, "a rate goes with xandeum:unlimited");
    // A century at most: further on, the expiry is a date RFC 3339 cannot write.
    let longest =
        issue(json!({"name": "century", "scopes": ["nodes:read"], "expires_in_days": 36_500}))
            .await;
    assert!(
        longest["expires_at"].as_str().unwrap().starts_with('2'),
        "{longest}"
    );
    let too_long = app
        .post(
            "/api/admin/api-tokens",
            &json!({"name": "forever", "scopes": ["nodes:read"], "expires_in_days": 31_804_296}),
            Some(&admin),
        )
        .await;
    assert_eq!(too_long.status(), 400);

    let health = |token: Option<String>| {
        let app = &app;
        async move {
            let mut request = app.http.get(format!("{}/api/xandeum/health", app.address));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };
    // Anonymous: a burst of 2, then 429 (the health route answers 503 before a snapshot; the
    // limit comes first either way).
    let mut anonymous = Vec::new();
    for _ in 0..4 {
        anonymous.push(health(None).await.0);
    }
    assert_eq!(
        anonymous.iter().filter(|&&s| s == 429).count(),
        2,
        "{anonymous:?}"
    );
    // A token without the scope is limited like anyone at that address.
    assert_eq!(
        health(Some(other["token"].as_str().unwrap().into()))
            .await
            .0,
        429
    );
    // The unlimited token is not limited at all.
    for _ in 0..30 {
        assert_ne!(
            health(Some(unlimited["token"].as_str().unwrap().into()))
                .await
                .0,
            429
        );
    }
    // The metered one by its own bucket of 3.
    let mut metered_statuses = Vec::new();
    for _ in 0..6 {
        metered_statuses.push(
            health(Some(metered["token"].as_str().unwrap().into()))
                .await
                .0,
        );
    }
    assert!(
        metered_statuses[..3].iter().all(|&s| s != 429)
            && metered_statuses.iter().filter(|&&s| s == 429).count() >= 2,
        "{metered_statuses:?}"
    );
    // Revoked: refused outright, not served as anonymous.
    let id = unlimited["id"].as_i64().unwrap();
    let revoked = app
        .http
        .delete(format!("{}/api/admin/api-tokens/{id}", app.address))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    let (status, body) = health(Some(unlimited["token"].as_str().unwrap().into())).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("token_invalid"))
    );

    let metrics = app.get("/metrics").await.text().await.unwrap();
    for needle in [
        "nodegrid_pnode_api_requests_total{credential=\"api_token\"}",
        "nodegrid_pnode_api_requests_total{credential=\"anonymous\"}",
        "nodegrid_rate_limited_total{scope=\"pnode_api\",key=\"api_token\"}",
    ] {
        assert!(metrics.contains(needle), "{needle} missing");
    }
    app.shut_down().await.unwrap();
}

/// Runs a GraphQL query; the JSON answer.
async fn graphql(app: &TestApp, query: &str) -> Value {
    let response = app
        .post("/api/xandeum/graphql", &json!({"query": query}), None)
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[actix_web::test]
async fn graphql_answers_what_rest_answers_for_the_same_questions() {
    let sim = PnodeSim::start(SimOptions {
        seeds: 3,
        pods: 150,
        seed: 11,
        ..SimOptions::default()
    })
    .unwrap();
    let database = Arc::new(fresh_database().await);
    let app = spawn_app_with(
        database.clone(),
        settings(&database, &sim, Duration::from_secs(3_600)),
    )
    .await;
    first_cycle(&app).await;

    // The same page, filters and order.
    let rest: Value = app
        .get("/api/xandeum/pnodes?status=all&limit=20&skip=3&sort_by=uptime&sort_order=asc&min_score=5")
        .await
        .json()
        .await
        .unwrap();
    let answer = graphql(
        &app,
        r#"{ pnodes(status: "all", limit: 20, skip: 3, sortBy: "uptime", sortOrder: "asc", minScore: 5) {
              pagination { total returned hasMore }
              summary { onlinePnodes cycle }
              pnodes { address score tier uptime storageUsed isOnline
                       scores { trust { score breakdown { uptime } } stakeConfidence { rating } } } } }"#,
    )
    .await;
    assert!(answer.get("errors").is_none(), "{answer}");
    let page = &answer["data"]["pnodes"];
    assert_eq!(page["pagination"]["total"], rest["pagination"]["total"]);
    assert_eq!(page["pagination"]["returned"], 20);
    assert_eq!(
        page["pagination"]["hasMore"],
        rest["pagination"]["has_more"]
    );
    assert_eq!(
        page["summary"]["onlinePnodes"],
        rest["summary"]["online_pnodes"]
    );
    let rest_nodes = rest["pnodes"].as_array().unwrap();
    let graph_nodes = page["pnodes"].as_array().unwrap();
    assert_eq!(graph_nodes.len(), rest_nodes.len());
    for (graph, rest) in graph_nodes.iter().zip(rest_nodes) {
        assert_eq!(graph["address"], rest["address"]);
        assert_eq!(graph["score"], rest["score"]);
        assert_eq!(graph["tier"], rest["tier"]);
        assert_eq!(graph["uptime"], rest["uptime"]);
        assert_eq!(graph["storageUsed"], rest["storage_used"]);
        assert_eq!(graph["isOnline"], rest["is_online"]);
        assert_eq!(
            graph["scores"]["trust"]["breakdown"]["uptime"],
            rest["scores"]["trust"]["breakdown"]["uptime"]
        );
        assert_eq!(
            graph["scores"]["stakeConfidence"]["rating"],
            rest["scores"]["stake_confidence"]["rating"]
        );
    }

    // The network.
    let health: Value = app
        .get("/api/xandeum/network/health")
        .await
        .json()
        .await
        .unwrap();
    let network = graphql(
        &app,
        "{ network { summary { totalPnodes onlinePnodes } health { healthScore status factors { availability } } versionDistribution } }",
    )
    .await;
    let network = &network["data"]["network"];
    assert_eq!(
        network["health"]["healthScore"],
        health["health"]["health_score"]
    );
    assert_eq!(network["health"]["status"], health["health"]["status"]);
    assert_eq!(
        network["health"]["factors"]["availability"],
        health["health"]["factors"]["availability"]
    );
    assert_eq!(
        network["summary"]["totalPnodes"],
        health["summary"]["total_pnodes"]
    );
    assert_eq!(
        network["versionDistribution"],
        health["network_stats"]["version_distribution"]
    );

    // One node, its alerts and its history.
    let address = rest_nodes[0]["address"].as_str().unwrap();
    let alerts: Value = app
        .get(&format!("/api/xandeum/pnodes/{address}/alerts"))
        .await
        .json()
        .await
        .unwrap();
    let history: Value = app
        .get(&format!("/api/xandeum/node/{address}/history?days=1"))
        .await
        .json()
        .await
        .unwrap();
    let node = graphql(
        &app,
        &format!(
            r#"{{ pnode(address: "{address}") {{ address score alerts {{ type severity message }}
                   history(days: 1) {{ timestamp score isOnline }} }} }}"#
        ),
    )
    .await;
    let node = &node["data"]["pnode"];
    assert_eq!(node["address"], address);
    let rest_alerts: Vec<(&Value, &Value)> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|alert| (&alert["type"], &alert["message"]))
        .collect();
    let graph_alerts: Vec<Value> = node["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|alert| {
            json!([
                alert["type"].as_str().unwrap().to_lowercase(),
                alert["message"]
            ])
        })
        .collect();
    assert_eq!(
        graph_alerts,
        rest_alerts
            .iter()
            .map(|(kind, message)| json!([kind, message]))
            .collect::<Vec<_>>()
    );
    let rest_history = history["history"].as_array().unwrap();
    let graph_history = node["history"].as_array().unwrap();
    assert_eq!(graph_history.len(), rest_history.len());
    assert!(!graph_history.is_empty(), "the first cycle wrote a row");
    assert_eq!(graph_history[0]["score"], rest_history[0]["score"]);
    let unknown = graphql(
        &app,
        r#"{ pnode(address: "10.255.255.255:1") { address } }"#,
    )
    .await;
    assert_eq!(unknown["data"]["pnode"], Value::Null);

    // The same checks as REST, answered as GraphQL errors with the REST code.
    let rest_refusal: Value = app
        .get("/api/xandeum/pnodes?status=sideways")
        .await
        .json()
        .await
        .unwrap();
    let refused = graphql(
        &app,
        r#"{ pnodes(status: "sideways") { pagination { total } } }"#,
    )
    .await;
    let error = &refused["errors"][0];
    assert_eq!(error["extensions"]["code"], "validation_failed");
    assert_eq!(error["message"], rest_refusal["message"]);
    // Too deep a query is refused before it runs.
    let deep = graphql(
        &app,
        "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { name } } } } } } } } }",
    )
    .await;
    assert!(
        deep["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("nested too deep"),
        "{deep}"
    );
    // Aliases cannot multiply a request into many history queries.
    let histories: String = (0..6)
        .map(|n| {
            format!(r#"h{n}: pnode(address: "{address}") {{ history(days: 90) {{ timestamp }} }} "#)
        })
        .collect();
    let costly = graphql(&app, &format!("{{ {histories} }}")).await;
    assert!(costly["data"].is_null(), "{costly}");
    assert!(
        costly["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("complex"),
        "{costly}"
    );
    // The query page is served with its own policy and nothing from elsewhere.
    let page = app.get("/api/xandeum/graphql").await;
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("connect-src 'self'"), "{policy}");
    let html = page.text().await.unwrap();
    assert!(html.contains("pNode GraphQL") && !html.contains("https://"));

    app.shut_down().await.unwrap();
    sim.stop().await;
}

/// Runs Debian's Chromium headless on `url` with `extra` arguments; its stdout and stderr.
/// `None` when no Chromium is installed and none is required (`NODEGRID_REQUIRE_CHROMIUM`).
fn chromium(url: &str, extra: &[&str]) -> Option<(String, String)> {
    let program = std::env::var("NODEGRID_CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
    let profile = std::env::temp_dir().join(format!("nodegrid-chromium-{}", uuid::Uuid::new_v4()));
    let mut command = std::process::Command::new(&program);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            assert!(
                std::env::var_os("NODEGRID_REQUIRE_CHROMIUM").is_none(),
                "chromium is required but cannot run ({program}): {error}"
            );
            eprintln!("chromium not found ({error}); the page was not checked in a browser");
            return None;
        }
    };
    // Bounded: a browser that hangs is killed after a minute.
    let id = child.id();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        let _ = std::process::Command::new("kill")
            .arg("-9")
            .arg(id.to_string())
            .status();
    });
    let output = child.wait_with_output().expect("chromium ran");
    drop(watchdog);
    let _ = std::fs::remove_dir_all(&profile);
    Some((
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

#[actix_web::test]
async fn the_graphql_page_runs_a_query_in_a_real_browser() {
    let sim = PnodeSim::start(SimOptions {
        seeds: 2,
        pods: 40,
        ..SimOptions::default()
    })
    .unwrap();
    let database = Arc::new(fresh_database().await);
    let app = spawn_app_with(
        database.clone(),
        settings(&database, &sim, Duration::from_secs(3_600)),
    )
    .await;
    first_cycle(&app).await;
    let url = format!("{}/api/xandeum/graphql?run=1", app.address);
    let page = url.clone();
    // The browser blocks; it runs beside the server's System.
    let dumped = tokio::task::spawn_blocking(move || {
        chromium(&page, &["--virtual-time-budget=10000", "--dump-dom"])
    })
    .await
    .unwrap();
    let Some((dom, log)) = dumped else {
        app.shut_down().await.unwrap();
        sim.stop().await;
        return;
    };
    // The example query ran and its answer is on the page; the schema was listed.
    assert!(
        dom.contains("&quot;healthScore&quot;") || dom.contains("\"healthScore\""),
        "{dom}"
    );
    assert!(dom.contains("&quot;pagination&quot;") || dom.contains("\"pagination\""));
    assert!(
        dom.contains("pnodes(status: String"),
        "the schema's fields: {dom}"
    );
    assert!(dom.contains("200 in "), "the status line: {dom}");
    for refusal in ["Uncaught", "Content Security Policy", "Refused to"] {
        assert!(!log.contains(refusal), "the console says {refusal}: {log}");
    }
    // A screenshot to look at, kept with the build's files (not committed).
    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join("graphql-page.png");
    let argument = format!("--screenshot={}", shot.display());
    tokio::task::spawn_blocking(move || {
        chromium(
            &url,
            &[
                "--virtual-time-budget=10000",
                "--window-size=1280,800",
                &argument,
            ],
        )
    })
    .await
    .unwrap();
    assert!(shot.exists(), "a screenshot at {}", shot.display());
    app.shut_down().await.unwrap();
    sim.stop().await;
}

#[actix_web::test]
async fn one_address_holds_only_so_many_live_sockets() {
    let database = std::sync::Arc::new(fresh_database().await);
    let app = spawn_app_with(database.clone(), test_settings(&database.url)).await;
    let mut open = Vec::new();
    for _ in 0..nodegrid_actors::pnodes::LIVE_SOCKETS_PER_ADDRESS {
        let mut socket = connect(&app, "/api/xandeum/ws/pnodes", Token::Header(""))
            .await
            .unwrap();
        assert_eq!(socket.next().await.value()["type"], "snapshot");
        open.push(socket);
    }
    assert_eq!(
        connect(&app, "/api/xandeum/ws/pnodes", Token::Header(""))
            .await
            .err(),
        Some(429)
    );
    // One closes: its place is free again.
    open.pop().unwrap().close().await;
    eventually("a place freed", Duration::from_secs(10), || async {
        connect(&app, "/api/xandeum/ws/pnodes", Token::Header(""))
            .await
            .ok()
    })
    .await;
    app.shut_down().await.unwrap();
}

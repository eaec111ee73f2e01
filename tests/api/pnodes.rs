//! pNode analytics against the pRPC simulator: parsing, merge, consistency, scores, alerts,
//! retention, the `/api/xandeum` surface, seed failures, and two instances with one leader.

use std::sync::Arc;
use std::time::Duration;

use nodegrid_actors::pnodes::aggregator::{CycleReport, RunCycle};
use nodegrid_clients::pnode_sim::{PnodeSim, Scripted, SimOptions};
use nodegrid_protocol::prpc::METHOD_GET_PODS_WITH_STATS;
use nodegrid_services::config::Settings;
use nodegrid_services::db::Database;
use serde_json::{Value, json};

use crate::helpers::{
    TEST_ADMIN, TEST_ADMIN_PASSWORD, TestApp, TestDatabase, eventually, fresh_database,
    spawn_app_with, spawn_server_process_with, test_settings, unique_prefix,
};

const GIB: u64 = 1024 * 1024 * 1024;

fn sim(options: SimOptions) -> PnodeSim {
    PnodeSim::start(options).expect("simulator starts")
}

/// Settings polling `sim` with an interval long enough that only the first cycle and the
/// test's own run by themselves.
pub(crate) fn settings_for(database: &TestDatabase, sim: &PnodeSim) -> Settings {
    let mut settings = test_settings(&database.url);
    settings.pnodes.seeds = sim
        .seeds()
        .iter()
        .map(|seed| nodegrid_services::pnodes::Seed::parse(seed).unwrap())
        .collect();
    settings.pnodes.interval = Duration::from_secs(3_600);
    settings.pnodes.rpc_timeout = Duration::from_millis(500);
    settings
}

/// Waits for the first cycle (run when the instance becomes leader).
pub(crate) async fn first_cycle(app: &TestApp) {
    let cell = app.pnodes.cell.clone();
    eventually("the first pNode cycle", Duration::from_secs(15), || {
        let cycle = cell.cycle();
        async move { (cycle >= 1).then_some(()) }
    })
    .await;
}

/// Runs one more cycle by hand, once the aggregator has finished the one it is in (a cycle
/// is served before its registry report and prune are done, and a busy aggregator refuses).
pub(crate) async fn run_cycle(app: &TestApp) -> CycleReport {
    let aggregator = app.pnodes.aggregator.clone();
    eventually("a cycle run by hand", Duration::from_secs(15), || {
        let aggregator = aggregator.clone();
        async move { aggregator.send(RunCycle).await.ok()?.ok() }
    })
    .await
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app.get(path).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn metrics(app: &TestApp) -> String {
    app.get("/metrics").await.text().await.unwrap()
}

/// The sum of a counter's samples whose labels contain `labels`.
fn counter(metrics: &str, name: &str, labels: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(name) && line.contains(labels))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn addresses(body: &Value) -> Vec<String> {
    body["pnodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| node["address"].as_str().unwrap().to_owned())
        .collect()
}

#[actix_web::test]
async fn merged_nodes_match_what_the_seeds_reported_and_every_endpoint_answers() {
    let sim = sim(SimOptions {
        seeds: 5,
        pods: 150,
        seed: 7,
        legacy_seed: Some(3),
        ..SimOptions::default()
    });
    let database = Arc::new(fresh_database().await);
    let app = spawn_app_with(database.clone(), settings_for(&database, &sim)).await;
    first_cycle(&app).await;

    // The raw per-seed view and the merged view agree: each address once, its peer_sources
    // exactly the seeds whose lists hold it.
    let (status, raw) = get(&app, "/api/xandeum/all-nodes").await;
    assert_eq!(status, 200);
    let mut reported: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (seed, answer) in raw["nodes"].as_object().unwrap() {
        for pod in answer["pods"].as_array().unwrap() {
            reported
                .entry(pod["address"].as_str().unwrap().to_owned())
                .or_default()
                .push(seed.clone());
        }
    }
    for (seed, answer) in raw["nodes"].as_object().unwrap() {
        // Even seeds answer get-stats flat, odd ones nested: both are read.
        assert!(
            answer["stats"]["uptime"].is_u64(),
            "{seed}: {}",
            answer["stats"]
        );
        assert!(answer["stats"]["ram_total"].is_u64(), "{seed}");
    }
    let legacy = &sim.seeds()[3];
    assert_eq!(
        raw["nodes"][legacy]["pods_method"], "get-pods",
        "fallback used"
    );
    let (status, body) = get(&app, "/api/xandeum/pnodes?status=all&limit=1000").await;
    assert_eq!(status, 200);
    assert_eq!(body["pagination"]["total"], reported.len());
    for node in body["pnodes"].as_array().unwrap() {
        let mut expected = reported[node["address"].as_str().unwrap()].clone();
        expected.sort();
        let sources: Vec<String> = serde_json::from_value(node["peer_sources"].clone()).unwrap();
        assert_eq!(sources, expected, "peer_sources of {}", node["address"]);
        assert_eq!(node["peer_count"], expected.len());
    }
    // The generated data carries wrong types (uptime -1, rpc_port "6000"): refused and counted.
    let text = metrics(&app).await;
    assert!(counter(&text, "nodegrid_pnode_rejected_total", "kind=\"field\"") > 0.0);
    crate::probes::assert_valid_exposition(&text);

    // Every route answers with its documented top-level fields.
    let one = body["pnodes"][0]["address"].as_str().unwrap().to_owned();
    let two = body["pnodes"][1]["address"].as_str().unwrap().to_owned();
    let routes: Vec<(String, &[&str])> = vec![
        (
            "/api/xandeum/".into(),
            &["api_name", "version", "core_endpoints"],
        ),
        (
            "/api/xandeum/health".into(),
            &[
                "status",
                "message",
                "snapshot_age_seconds",
                "last_updated",
                "cache_ttl",
                "total_pnodes",
                "total_ip_nodes",
                "timestamp",
            ],
        ),
        (
            "/api/xandeum/pnodes".into(),
            &[
                "summary",
                "network_stats",
                "pagination",
                "filters",
                "pnodes",
                "timestamp",
            ],
        ),
        (
            "/api/xandeum/recommendations?min_uptime_days=0".into(),
            &["recommendations", "total_evaluated", "filters", "timestamp"],
        ),
        (format!("/api/xandeum/registry/{one}"), &["entry", "status"]),
        ("/api/xandeum/registry".into(), &["count", "items"]),
        (
            "/api/xandeum/graveyard".into(),
            &["count", "threshold_days", "items"],
        ),
        (
            "/api/xandeum/network/topology".into(),
            &["nodes", "edges", "stats"],
        ),
        (
            "/api/xandeum/network/health".into(),
            &["health", "network_stats", "summary", "alerts", "timestamp"],
        ),
        ("/api/xandeum/operators".into(), &["summary", "operators"]),
        (
            "/api/xandeum/network/history?hours=1".into(),
            &["history", "summary"],
        ),
        (
            "/api/xandeum/network/growth?hours=1".into(),
            &["growth_metrics", "timestamp"],
        ),
        (
            "/api/xandeum/network/analytics".into(),
            &[
                "current_state",
                "growth",
                "version_analysis",
                "recommendations",
            ],
        ),
        (
            "/api/xandeum/network/consistency".into(),
            &["nodes", "summary", "flapping_nodes"],
        ),
        ("/api/xandeum/all-nodes".into(), &["summary", "nodes"]),
        (
            format!("/api/xandeum/node/{one}/history?days=1"),
            &["history"],
        ),
        (
            format!("/api/xandeum/node/{one}/metrics-summary?hours=1"),
            &["data_points", "score"],
        ),
        (
            format!("/api/xandeum/node/{one}/consistency"),
            &["consistency_score", "gossip_appearances"],
        ),
        ("/api/xandeum/nodes/history-status".into(), &["status"]),
        (
            "/api/xandeum/alerts".into(),
            &[
                "summary",
                "critical_nodes",
                "nodes_checked",
                "nodes_with_alerts",
                "filters",
                "timestamp",
            ],
        ),
        (
            "/api/xandeum/alerts/critical".into(),
            &["summary", "critical_nodes"],
        ),
        (
            format!("/api/xandeum/pnodes/{one}/alerts"),
            &["address", "alerts", "summary", "node_info", "timestamp"],
        ),
        (
            format!("/api/xandeum/pnodes/compare?addresses={one},{two}"),
            &[
                "comparison",
                "winners",
                "recommendation",
                "summary",
                "timestamp",
            ],
        ),
    ];
    for (path, fields) in routes {
        let (status, body) = get(&app, &path).await;
        assert_eq!(status, 200, "{path}: {body}");
        for field in fields {
            assert!(body.get(field).is_some(), "{path} lacks {field}: {body}");
        }
    }
    let (_, topology) = get(&app, "/api/xandeum/network/topology").await;
    let edges = topology["edges"].as_array().unwrap().len();
    let expected_edges: usize = reported.values().map(Vec::len).sum();
    assert_eq!(edges, expected_edges, "one gossip edge per (seed, pod)");
    let (_, history) = get(&app, &format!("/api/xandeum/node/{one}/history?days=1")).await;
    assert_eq!(history["data_points"], 1, "one row per node per cycle");
    sim.stop().await;
}

/// Three seeds report hand-written pods; the merge, scores and alerts are computed by hand in
/// the comments.
#[actix_web::test]
async fn a_fixture_merges_scores_and_alerts_as_computed_by_hand() {
    let sim = sim(SimOptions {
        seeds: 3,
        pods: 0,
        ..SimOptions::default()
    });
    let now = chrono::Utc::now().timestamp();
    let a = |seen: i64, extra: Value| {
        let mut pod =
            json!({"address": "10.1.0.1:9001", "last_seen_timestamp": now - seen, "pubkey": "opA"});
        pod.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        pod
    };
    let pods =
        |list: Vec<Value>| Scripted::Result(json!({"pods": list, "total_count": list.len()}));
    // A: seen by all three; seed 1 is newest and wins; seed 2's null committed is filled.
    // B: only seed 0. C: seeds 0 and 1, nothing but nulls and wrong types. Two broken pods.
    sim.script(0, METHOD_GET_PODS_WITH_STATS, pods(vec![
        a(30, json!({"version": "0.7.0", "uptime": 1_296_000, "is_public": false})),
        json!({"address": "10.1.0.2:9001", "last_seen_timestamp": now, "version": "0.7.0", "uptime": 1_800,
               "storage_committed": 200 * GIB, "storage_used": 6 * GIB, "storage_usage_percent": 3.0, "pubkey": "opB"}),
        json!({"address": "10.1.0.3:9001", "uptime": "x", "storage_used": -5, "version": null, "pubkey": null}),
        json!({"address": 12}),
        json!({"pubkey": "nobody"}),
    ]));
    sim.script(1, METHOD_GET_PODS_WITH_STATS, pods(vec![
        a(5, json!({"version": "0.8.0", "uptime": 1_296_000, "storage_committed": 60 * GIB,
                     "storage_used": 57 * GIB, "storage_usage_percent": 96.0, "is_public": true, "rpc_port": 6000})),
        json!({"address": "10.1.0.3:9001", "uptime": "x", "storage_used": -5}),
    ]));
    sim.script(
        2,
        METHOD_GET_PODS_WITH_STATS,
        pods(vec![a(
            10,
            json!({"version": "0.8.0", "storage_committed": null}),
        )]),
    );
    let database = Arc::new(fresh_database().await);
    let mut settings = settings_for(&database, &sim);
    settings.pnodes.latest_version = Some("0.8.0".into());
    let app = spawn_app_with(database.clone(), settings).await;
    first_cycle(&app).await;

    let (_, body) = get(&app, "/api/xandeum/registry/10.1.0.1:9001").await;
    let a = &body["entry"];
    assert_eq!(a["version"], "0.8.0", "the newest report wins");
    assert_eq!(a["is_public"], true);
    assert_eq!(
        a["storage_committed"],
        60 * GIB,
        "filled from another report"
    );
    let mut seeds = sim.seeds();
    seeds.sort();
    assert_eq!(a["peer_sources"], json!(seeds), "all three seeds");
    // Trust: uptime 15/30*40 = 20, gossip 3/3*30 = 30, version 20, consistency 10 = 80.
    assert_eq!(a["scores"]["trust"]["score"], 80.0);
    // Capacity: committed 60/100*30 = 18, 96 % is outside the 20-80 % band: 0, growth
    // unknown 0.5*30 = 15.
    assert_eq!(a["scores"]["capacity"]["score"], 33.0);
    // Composite: 80*0.6 + 33*0.4 = 61.2: medium risk.
    assert_eq!(a["score"], 61.2);
    assert_eq!(a["tier"], "medium_risk");
    assert_eq!(a["scores"]["stake_confidence"]["color"], "#f59e0b");

    let (_, b) = get(&app, "/api/xandeum/registry/10.1.0.2:9001").await;
    let b = &b["entry"];
    // Trust: uptime 1800 s = 0.0208 d → 0.03; gossip 1/3*30 = 10; version 0; consistency 10.
    assert_eq!(b["scores"]["trust"]["score"], 20.03);
    // Capacity: 200 GiB → 30; 3 % is outside the band: 0; growth 15. Composite
    // 20.03*0.6 + 45*0.4 = 30.018.
    assert_eq!(b["scores"]["capacity"]["score"], 45.0);
    assert_eq!(b["score"], 30.02);
    assert_eq!(b["tier"], "high_risk");

    let (_, c) = get(&app, "/api/xandeum/registry/10.1.0.3:9001").await;
    assert_eq!(c["entry"]["uptime"], Value::Null, "wrong types are dropped");
    assert_eq!(c["entry"]["storage_used"], Value::Null);
    assert_eq!(c["entry"]["peer_count"], 2);

    // Alerts: A storage_critical; B low_uptime, version_behind, isolated, underutilized;
    // C weak_connectivity.
    let alert_types = |body: &Value| -> Vec<String> {
        let mut types: Vec<String> = body["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|alert| alert["type"].as_str().unwrap().to_owned())
            .collect();
        types.sort();
        types
    };
    let (_, alerts) = get(&app, "/api/xandeum/pnodes/10.1.0.1:9001/alerts").await;
    assert_eq!(alert_types(&alerts), ["storage_critical"]);
    let (_, alerts) = get(&app, "/api/xandeum/pnodes/10.1.0.2:9001/alerts").await;
    assert_eq!(
        alert_types(&alerts),
        ["isolated", "low_uptime", "underutilized", "version_behind"]
    );
    assert_eq!(alerts["summary"]["critical"], 2);
    let (_, alerts) = get(&app, "/api/xandeum/pnodes/10.1.0.3:9001/alerts").await;
    assert_eq!(alert_types(&alerts), ["weak_connectivity"]);
    let (_, all) = get(&app, "/api/xandeum/alerts?severity=critical").await;
    assert_eq!(all["summary"]["critical"], 3);
    assert_eq!(
        all["summary"]["by_type"],
        json!({"isolated": 1, "low_uptime": 1, "storage_critical": 1})
    );
    assert_eq!(all["nodes_with_alerts"], 2);

    let (_, compare) = get(
        &app,
        "/api/xandeum/pnodes/compare?addresses=10.1.0.1:9001,10.1.0.2:9001",
    )
    .await;
    assert_eq!(
        compare["recommendation"]["recommended_node"],
        "10.1.0.1:9001"
    );
    assert_eq!(compare["winners"]["storage_committed"], "10.1.0.2:9001");
    let (_, operators) = get(&app, "/api/xandeum/operators").await;
    assert_eq!(operators["summary"]["total_operators"], 2);

    // Each cycle counts the two broken pods (other tests only add to the shared counter).
    let rejected = |text: String| counter(&text, "nodegrid_pnode_rejected_total", "kind=\"pod\"");
    let before = rejected(metrics(&app).await);
    run_cycle(&app).await;
    let after = rejected(metrics(&app).await);
    assert!(after - before >= 2.0, "the two broken pods are counted");
    sim.stop().await;
}

#[actix_web::test]
async fn gossip_consistency_counts_appearances_and_drops_over_cycles() {
    let sim = sim(SimOptions {
        seeds: 1,
        pods: 0,
        ..SimOptions::default()
    });
    let pods = |list: &[&str]| {
        let pods: Vec<Value> = list
            .iter()
            .map(|a| json!({"address": a, "uptime": 864_000}))
            .collect();
        Scripted::Result(json!({"pods": pods}))
    };
    sim.script(
        0,
        METHOD_GET_PODS_WITH_STATS,
        pods(&["10.2.0.1:9001", "10.2.0.2:9001"]),
    );
    let database = Arc::new(fresh_database().await);
    let app = spawn_app_with(database.clone(), settings_for(&database, &sim)).await;
    first_cycle(&app).await;
    let (_, first) = get(&app, "/api/xandeum/pnodes?status=all").await;
    let mut cycle = first["summary"]["cycle"].as_i64().unwrap();
    for present in [
        &["10.2.0.1:9001"][..],
        &["10.2.0.1:9001", "10.2.0.2:9001"],
        &["10.2.0.1:9001"],
    ] {
        sim.script(0, METHOD_GET_PODS_WITH_STATS, pods(present));
        assert_eq!(run_cycle(&app).await.outcome, "written");
        // Answers are shared per query and second, never across cycles (cycles here run
        // several to a second).
        cycle += 1;
        let (_, page) = get(&app, "/api/xandeum/pnodes?status=all").await;
        assert_eq!(page["summary"]["cycle"], cycle);
        assert_eq!(page["pagination"]["total"], 2);
        let (_, again) = get(&app, "/api/xandeum/pnodes?status=all").await;
        assert_eq!(again["summary"]["cycle"], cycle);
    }
    let (_, steady) = get(&app, "/api/xandeum/node/10.2.0.1:9001/consistency").await;
    assert_eq!(steady["gossip_appearances"], 4);
    assert_eq!(steady["gossip_disappearances"], 0);
    assert_eq!(steady["consistency_score"], 1.0);
    let (_, flapping) = get(&app, "/api/xandeum/node/10.2.0.2:9001/consistency").await;
    assert_eq!(flapping["gossip_appearances"], 2);
    assert_eq!(flapping["gossip_disappearances"], 2);
    assert_eq!(flapping["consistency_score"], 0.5);
    assert_eq!(flapping["is_flapping"], true);
    let (_, network) = get(&app, "/api/xandeum/network/consistency").await;
    let flappers: Vec<&str> = network["flapping_nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["address"].as_str().unwrap())
        .collect();
    assert_eq!(flappers, ["10.2.0.2:9001"]);
    let (_, alerts) = get(&app, "/api/xandeum/alerts?alert_type=gossip_flapping").await;
    assert_eq!(alerts["summary"]["total"], 1);
    let (_, history) = get(&app, "/api/xandeum/network/history?hours=1").await;
    assert_eq!(
        history["summary"]["data_points"], 4,
        "one network row per cycle"
    );
    // The registry table agrees: a new leader would go on counting from it.
    let client = crate::helpers::connect(&database.url).await;
    let row = client
        .query_one(
            "SELECT gossip_appearances, gossip_disappearances, present, consistency_score
             FROM pnode_registry WHERE address = '10.2.0.2:9001'",
            &[],
        )
        .await
        .unwrap();
    let stored: (i64, i64, bool, f64) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(stored, (2, 2, false, 0.5));
    sim.stop().await;
}

#[actix_web::test]
async fn offline_nodes_reach_the_graveyard_and_an_admin_prunes_them_on_every_instance() {
    let sim = sim(SimOptions {
        seeds: 2,
        pods: 20,
        ..SimOptions::default()
    });
    let database = Arc::new(fresh_database().await);
    // Before the server starts: a node gone for 100 days, one gone for 4, and 40-day-old
    // history that retention must remove.
    let db = Database::connect(&database.url, 1).await.unwrap();
    db.migrate().await.unwrap();
    let client = db.client().await.unwrap();
    let now = chrono::Utc::now().timestamp();
    for (address, days) in [("10.9.9.9:9001", 100), ("10.9.9.8:9001", 4)] {
        client.execute(
            "INSERT INTO pnode_registry (address, first_seen, last_seen, last_checked, gossip_appearances, present)
             VALUES ($1, $2, $3, $3, 10, false)",
            &[&address, &(now - 200 * 86_400), &(now - days * 86_400)],
        ).await.unwrap();
    }
    client.execute(
        "INSERT INTO pnode_network_history (cycle, taken_at, total_pnodes, online_pnodes, offline_pnodes,
             public_pnodes, private_pnodes, total_ip_nodes, responding_ip_nodes, total_storage_committed,
             total_storage_used, avg_storage_usage_percent, avg_uptime_hours, avg_peer_count, avg_cpu_percent,
             avg_ram_used_percent, total_active_streams, total_bytes_processed, avg_score, health_score,
             version_distribution)
         VALUES (0, $1, 1, 1, 0, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '{}')",
        &[&(now - 40 * 86_400)],
    ).await.unwrap();
    client.execute(
        "INSERT INTO pnode_node_history (address, taken_at, is_online, peer_count, peer_sources, score, trust_score, capacity_score)
         VALUES ('10.9.9.9:9001', $1, true, 1, '{}', 1, 1, 1)",
        &[&(now - 40 * 86_400)],
    ).await.unwrap();
    drop(client);
    db.close();

    let settings = settings_for(&database, &sim);
    let app = spawn_app_with(database.clone(), settings.clone()).await;
    first_cycle(&app).await;
    let (_, offline) = get(&app, "/api/xandeum/pnodes?status=offline").await;
    let mut gone = addresses(&offline);
    gone.sort();
    assert_eq!(gone, ["10.9.9.8:9001", "10.9.9.9:9001"]);
    assert_eq!(offline["pagination"]["total"], 2);
    for node in offline["pnodes"].as_array().unwrap() {
        assert_eq!(node["score"], 0.0);
        assert_eq!(node["tier"], "offline");
        assert!(node["offline_duration"].as_i64().unwrap() >= 4 * 86_400);
    }
    let (_, alerts) = get(&app, "/api/xandeum/alerts?alert_type=offline").await;
    assert_eq!(alerts["summary"]["critical"], 1);
    assert_eq!(alerts["summary"]["warning"], 1);
    let (_, graveyard) = get(&app, "/api/xandeum/graveyard?days=90").await;
    assert_eq!(graveyard["count"], 1);
    assert_eq!(graveyard["items"][0]["address"], "10.9.9.9:9001");
    let (_, graveyard) = get(&app, "/api/xandeum/graveyard?days=3").await;
    assert_eq!(graveyard["count"], 2);
    // Retention ran with the first cycle.
    let (_, status) = get(&app, "/api/xandeum/nodes/history-status").await;
    assert!(
        status["status"]["oldest_timestamp"].as_i64().unwrap() > now - 86_400,
        "{status}"
    );

    // A second instance loads the stored snapshot at start.
    let mut follower_settings = settings.clone();
    follower_settings.http_addr = "127.0.0.1:0".parse().unwrap();
    let follower = spawn_app_with(database.clone(), follower_settings).await;
    let (status, _) = eventually(
        "the follower serves the snapshot",
        Duration::from_secs(10),
        || async {
            let (status, body) = get(&follower, "/api/xandeum/registry/10.9.9.9:9001").await;
            (status == 200).then_some((status, body))
        },
    )
    .await;
    assert_eq!(status, 200);

    // Prune: admins only, audited, and gone on both instances.
    let response = app
        .http
        .delete(format!("{}/api/xandeum/prune?days=90", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let token = app
        .login(TEST_ADMIN, TEST_ADMIN_PASSWORD)
        .await
        .access_token;
    let response = app
        .http
        .delete(format!("{}/api/xandeum/prune?days=0", app.address))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let response = app
        .http
        .delete(format!("{}/api/xandeum/prune?days=90", app.address))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"status": "success", "threshold_days": 90, "deleted_count": 1})
    );
    for instance in [&app, &follower] {
        eventually(
            "the pruned node is gone",
            Duration::from_secs(10),
            || async {
                let (status, _) = get(instance, "/api/xandeum/registry/10.9.9.9:9001").await;
                (status == 404).then_some(())
            },
        )
        .await;
        let (status, _) = get(instance, "/api/xandeum/registry/10.9.9.8:9001").await;
        assert_eq!(status, 200, "younger offline nodes stay");
    }
    // The next cycle does not bring it back.
    run_cycle(&app).await;
    let (status, _) = get(&app, "/api/xandeum/registry/10.9.9.9:9001").await;
    assert_eq!(status, 404);
    let audit = app.audit_with(&token, "action=pnode.prune").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["details"]["deleted_count"], 1);
    sim.stop().await;
}

#[actix_web::test]
async fn a_page_is_sent_gzip_encoded_to_clients_that_accept_it() {
    let sim = sim(SimOptions {
        seeds: 2,
        pods: 300,
        seed: 8,
        ..SimOptions::default()
    });
    let database = Arc::new(fresh_database().await);
    let app = spawn_app_with(database.clone(), settings_for(&database, &sim)).await;
    first_cycle(&app).await;
    let path = "/api/xandeum/pnodes?status=all&limit=100";
    let fetch = |accept: &'static str| {
        let request = app.http.get(format!("{}{path}", app.address));
        let request = if accept.is_empty() {
            request
        } else {
            request.header("accept-encoding", accept)
        };
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            let headers = response.headers().clone();
            let vary = headers
                .get_all("vary")
                .iter()
                .map(|value| value.to_str().unwrap().to_ascii_lowercase())
                .collect::<Vec<_>>()
                .join(", ");
            assert!(vary.contains("accept-encoding"), "Vary: {vary}");
            let encoding = headers
                .get("content-encoding")
                .map(|value| value.to_str().unwrap().to_owned());
            (encoding, response.bytes().await.unwrap())
        }
    };
    let (plain_encoding, plain) = fetch("").await;
    assert_eq!(plain_encoding, None);
    let (encoding, compressed) = fetch("br, gzip, deflate").await;
    assert_eq!(encoding.as_deref(), Some("gzip"));
    assert!(
        compressed.len() * 4 < plain.len(),
        "{} bytes compressed of {}",
        compressed.len(),
        plain.len()
    );
    let mut decoded = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&compressed[..]),
        &mut decoded,
    )
    .unwrap();
    let (plain, decoded): (Value, Value) = (
        serde_json::from_slice(&plain).unwrap(),
        serde_json::from_slice(&decoded).unwrap(),
    );
    // The same page; only the answer's clock may have moved on by a second.
    assert_eq!(decoded["pnodes"], plain["pnodes"]);
    assert_eq!(decoded["pagination"], plain["pagination"]);
    assert_eq!(decoded["pnodes"].as_array().unwrap().len(), 100);
    // gzip refused, or not offered: the page as it is.
    for accept in ["gzip;q=0", "identity", "br"] {
        let (encoding, body) = fetch(accept).await;
        assert_eq!(encoding, None, "Accept-Encoding: {accept}");
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["pnodes"], plain["pnodes"], "Accept-Encoding: {accept}");
    }
    sim.stop().await;
}

#[actix_web::test]
async fn hot_pages_are_made_ahead_and_answer_for_their_own_second() {
    let sim = sim(SimOptions {
        seeds: 2,
        pods: 300,
        seed: 9,
        ..SimOptions::default()
    });
    let database = Arc::new(fresh_database().await);
    let app = spawn_app_with(database.clone(), settings_for(&database, &sim)).await;
    first_cycle(&app).await;
    let path = "/api/xandeum/pnodes?status=all&limit=50&sort_by=uptime";
    let made_ahead = || async {
        counter(
            &metrics(&app).await,
            "nodegrid_pnode_pages_made_total",
            "by=\"ahead\"",
        )
    };
    let before = made_ahead().await;
    let (_, reference) = get(&app, path).await;
    // Asked ~20 times a second, gzip-encoded, for a few seconds: the page is hot, made ahead
    // for each next second; every answer is the page of the second it was asked in.
    let mut answered = 0;
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < until || made_ahead().await <= before {
        assert!(
            answered < 400,
            "no page was made ahead in {answered} requests"
        );
        let asked = chrono::Utc::now().timestamp();
        let response = app
            .http
            .get(format!("{}{path}", app.address))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["content-encoding"], "gzip");
        let compressed = response.bytes().await.unwrap();
        let answered_at = chrono::Utc::now().timestamp();
        let mut decoded = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&compressed[..]),
            &mut decoded,
        )
        .unwrap();
        let page: Value = serde_json::from_slice(&decoded).unwrap();
        let timestamp = page["timestamp"].as_i64().unwrap();
        assert!(
            (asked..=answered_at).contains(&timestamp),
            "asked in {asked}, answered in {answered_at}, the page is of {timestamp}"
        );
        assert_eq!(page["pnodes"], reference["pnodes"]);
        assert_eq!(page["pagination"], reference["pagination"]);
        answered += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim.stop().await;
}

#[actix_web::test]
async fn filters_sorting_and_pagination_are_consistent_and_validated() {
    let sim = sim(SimOptions {
        seeds: 3,
        pods: 120,
        seed: 3,
        ..SimOptions::default()
    });
    let database = Arc::new(fresh_database().await);
    let app = spawn_app_with(database.clone(), settings_for(&database, &sim)).await;
    first_cycle(&app).await;

    let (_, full) = get(
        &app,
        "/api/xandeum/pnodes?status=all&sort_by=uptime&sort_order=asc&limit=1000",
    )
    .await;
    let total = full["pagination"]["total"].as_u64().unwrap() as usize;
    assert!(total > 100);
    let uptimes: Vec<i64> = full["pnodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["uptime"].as_i64().unwrap_or(-1))
        .collect();
    assert!(
        uptimes.windows(2).all(|w| w[0] <= w[1]),
        "sorted by uptime ascending"
    );
    let mut paged = Vec::new();
    for skip in (0..total).step_by(25) {
        let (_, page) = get(
            &app,
            &format!(
                "/api/xandeum/pnodes?status=all&sort_by=uptime&sort_order=asc&limit=25&skip={skip}"
            ),
        )
        .await;
        assert_eq!(page["pagination"]["returned"], (total - skip).min(25));
        paged.extend(addresses(&page));
    }
    assert_eq!(paged, addresses(&full), "pages add up to the whole list");

    let (_, by_score) = get(&app, "/api/xandeum/pnodes?sort_by=score&limit=1000").await;
    let scores: Vec<f64> = by_score["pnodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["score"].as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "score descending by default"
    );

    let distribution = full["network_stats"]["version_distribution"]
        .as_object()
        .unwrap()
        .clone();
    let (version, count) = distribution
        .iter()
        .find(|(v, _)| v.as_str() != "unknown")
        .unwrap();
    let (_, filtered) = get(
        &app,
        &format!("/api/xandeum/pnodes?version={version}&limit=1000"),
    )
    .await;
    assert_eq!(&filtered["pagination"]["total"], count);
    let (_, public) = get(&app, "/api/xandeum/pnodes?public=true&limit=1000").await;
    assert!(
        public["pnodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["is_public"] == true)
    );
    assert_eq!(
        public["pagination"]["total"],
        full["summary"]["public_pnodes"]
    );
    let (_, good) = get(&app, "/api/xandeum/pnodes?min_score=80&limit=1000").await;
    assert!(
        good["pnodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["score"].as_f64().unwrap() >= 80.0)
    );
    let (_, found) = get(&app, "/api/xandeum/pnodes?search=10.0.0.11&status=all").await;
    assert!(addresses(&found).iter().all(|a| a.contains("10.0.0.11")));
    assert!(!addresses(&found).is_empty());

    for bad in [
        "limit=0",
        "limit=5000",
        "skip=-1",
        "status=sleeping",
        "sort_by=name",
        "sort_order=sideways",
        "min_score=200",
        "public=maybe",
    ] {
        let (status, body) = get(&app, &format!("/api/xandeum/pnodes?{bad}")).await;
        assert_eq!(status, 400, "{bad}");
        assert!(
            ["validation_failed", "bad_request"].contains(&body["code"].as_str().unwrap()),
            "{bad}: {body}"
        );
    }
    for bad in [
        "/api/xandeum/recommendations?limit=51",
        "/api/xandeum/network/history?hours=721",
        "/api/xandeum/alerts?severity=loud",
        "/api/xandeum/alerts?alert_type=meteor",
        "/api/xandeum/pnodes/compare?addresses=only-one:1",
        "/api/xandeum/node/x:1/history?days=91",
    ] {
        let (status, body) = get(&app, bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["code"], "validation_failed");
    }
    let (status, body) = get(&app, "/api/xandeum/registry/10.255.255.255:1").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let (status, body) = get(&app, "/api/xandeum/no-such-route").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let response = app
        .http
        .delete(format!("{}/api/xandeum/pnodes", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    sim.stop().await;
}

#[actix_web::test]
async fn failing_seeds_are_reported_backed_off_and_do_not_stop_the_cycle() {
    let sim = sim(SimOptions {
        seeds: 5,
        pods: 40,
        ..SimOptions::default()
    });
    sim.script(1, "get-stats", Scripted::Delay(Duration::from_secs(3)));
    sim.script(
        1,
        METHOD_GET_PODS_WITH_STATS,
        Scripted::Delay(Duration::from_secs(3)),
    );
    sim.script(2, METHOD_GET_PODS_WITH_STATS, Scripted::Status(502));
    sim.script(
        3,
        METHOD_GET_PODS_WITH_STATS,
        Scripted::Raw("<html>oops</html>".into()),
    );
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"result":{{"pods":[],"pad":"{}"}}}}"#,
        "x".repeat(100_000)
    );
    sim.script(4, METHOD_GET_PODS_WITH_STATS, Scripted::Raw(huge));
    let database = Arc::new(fresh_database().await);
    let mut settings = settings_for(&database, &sim);
    settings.pnodes.rpc_timeout = Duration::from_millis(300);
    settings.pnodes.max_answer_bytes = 64 * 1024;
    let app = spawn_app_with(database.clone(), settings).await;
    first_cycle(&app).await;

    let (_, body) = get(&app, "/api/xandeum/pnodes?status=all&limit=1000").await;
    assert_eq!(body["summary"]["responding_ip_nodes"], 1);
    assert!(body["pagination"]["total"].as_u64().unwrap() > 0);
    let good_seed = &sim.seeds()[0];
    for node in body["pnodes"].as_array().unwrap() {
        assert_eq!(node["peer_sources"], json!([good_seed]));
    }
    let token = app.admin_token().await;
    let pollers: Value = app
        .get_with("/api/admin/pollers", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pollers["leader"], true);
    let states: Vec<(String, u64)> = pollers["pollers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["state"].as_str().unwrap().to_owned(),
                p["consecutive_failures"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(states[0], ("ok".to_owned(), 0));
    for state in &states[1..] {
        assert_eq!(state, &("failing".to_owned(), 1));
    }
    assert!(
        pollers["pollers"][1]["last_error"]
            .as_str()
            .unwrap()
            .contains("timed out")
    );
    assert!(pollers["pollers"][0]["last_latency_ms"].is_u64());
    let text = metrics(&app).await;
    for kind in ["timeout", "http_status", "not_json", "too_large"] {
        assert!(
            counter(
                &text,
                "nodegrid_pnode_call_failures_total",
                &format!("kind=\"{kind}\"")
            ) > 0.0,
            "{kind}"
        );
    }
    // Right after a failure the failing seeds back off: the next cycle does not call them.
    let before = sim.requests();
    let report = run_cycle(&app).await;
    assert_eq!(
        (report.outcome, report.seeds_ok, report.seeds_failed),
        ("written", 1, 4)
    );
    assert_eq!(
        sim.requests() - before,
        3,
        "only the healthy seed was called"
    );
    let pollers: Value = app
        .get_with("/api/admin/pollers", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pollers["pollers"][2]["state"], "backoff");
    let text = metrics(&app).await;
    assert!(counter(&text, "nodegrid_pnode_polls_total", "outcome=\"backoff\"") >= 4.0);
    sim.stop().await;
}

#[actix_web::test]
async fn two_instances_share_one_leader_and_the_survivor_takes_over_when_it_dies() {
    let sim = sim(SimOptions {
        seeds: 3,
        pods: 60,
        ..SimOptions::default()
    });
    let database = fresh_database().await;
    let prefix = unique_prefix();
    let seeds = sim.seeds().join(",");
    let env = [
        ("NODEGRID_PNODE_SEEDS", seeds.as_str()),
        ("NODEGRID_PNODE_INTERVAL", "1"),
        ("NODEGRID_ADMIN_USERNAME", TEST_ADMIN),
        ("NODEGRID_ADMIN_PASSWORD", TEST_ADMIN_PASSWORD),
    ];
    let mut instances = vec![
        spawn_server_process_with(&database.url, &prefix, 0, &env),
        spawn_server_process_with(&database.url, &prefix, 0, &env),
    ];
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let base = |port: u16| format!("http://127.0.0.1:{port}");
    let token: String = {
        let response = http
            .post(format!("{}/api/auth/login", base(instances[0].port)))
            .json(&json!({"username": TEST_ADMIN, "password": TEST_ADMIN_PASSWORD}))
            .send()
            .await
            .unwrap();
        response.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let leaders = |ports: Vec<u16>| {
        let (http, token) = (http.clone(), token.clone());
        async move {
            let mut flags = Vec::new();
            for port in ports {
                let body: Value = http
                    .get(format!("{}/api/admin/pollers", base(port)))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                flags.push((body["leader"].as_bool()?, body["snapshot_cycle"].as_i64()?));
            }
            Some(flags)
        }
    };
    let ports: Vec<u16> = instances.iter().map(|i| i.port).collect();
    // One leader; both serve the same snapshot.
    let leader = eventually(
        "exactly one leader, cycles running",
        Duration::from_secs(20),
        || {
            let check = leaders(ports.clone());
            async move {
                let flags = check.await?;
                let count = flags.iter().filter(|(leader, _)| *leader).count();
                (count == 1 && flags.iter().all(|(_, cycle)| *cycle >= 2))
                    .then(|| flags.iter().position(|(l, _)| *l))?
            }
        },
    )
    .await;
    let same = eventually(
        "both instances answer with the same snapshot",
        Duration::from_secs(20),
        || {
            let http = http.clone();
            let ports = ports.clone();
            async move {
                let mut bodies = Vec::new();
                for port in &ports {
                    let mut body: Value = http
                        .get(format!(
                            "{}/api/xandeum/pnodes?status=all&limit=1000",
                            base(*port)
                        ))
                        .send()
                        .await
                        .ok()?
                        .json()
                        .await
                        .ok()?;
                    body.as_object_mut()?.remove("timestamp");
                    body["summary"]
                        .as_object_mut()?
                        .remove("snapshot_age_seconds");
                    bodies.push(body);
                }
                (bodies[0] == bodies[1]).then(|| bodies.remove(0))
            }
        },
    )
    .await;
    assert!(same["pagination"]["total"].as_u64().unwrap() > 0);
    // Only the leader polls: the follower's pollers have never been asked.
    let follower: Value = http
        .get(format!("{}/api/admin/pollers", base(ports[1 - leader])))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(follower["leader"], false);
    for poller in follower["pollers"].as_array().unwrap() {
        assert_eq!(
            (poller["state"].as_str(), poller["polls_total"].as_u64()),
            (Some("idle"), Some(0))
        );
    }

    // The leader dies without a word; the other takes over within one lease period (3 s).
    let dead = instances.remove(leader);
    dead.signal("KILL");
    drop(dead);
    let survivor = instances[0].port;
    let (_, cycle_before) = leaders(vec![survivor]).await.unwrap()[0];
    let started = std::time::Instant::now();
    eventually(
        "the survivor leads and writes new cycles",
        Duration::from_secs(15),
        || {
            let check = leaders(vec![survivor]);
            async move {
                let (leader, cycle) = check.await?[0];
                (leader && cycle > cycle_before + 1).then_some(())
            }
        },
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took over in {:?}",
        started.elapsed()
    );
    let body: Value = http
        .get(format!("{}/api/xandeum/health", base(survivor)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "healthy");
    sim.stop().await;
}

/// What a simulated seed answers to `method`, with the clock-driven timestamps removed.
async fn ask(seed: &str, method: &str) -> Value {
    let mut answer: Value = reqwest::Client::new()
        .post(format!("http://{seed}/rpc"))
        .json(&json!({"jsonrpc": "2.0", "method": method, "id": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    if let Some(pods) = answer["result"]["pods"].as_array_mut() {
        for pod in pods {
            pod.as_object_mut().unwrap().remove("last_seen_timestamp");
        }
    }
    answer["result"].take()
}

#[actix_web::test]
async fn the_simulator_is_deterministic_per_seed_and_churns_by_round() {
    let options = SimOptions {
        seeds: 3,
        pods: 200,
        seed: 42,
        ..SimOptions::default()
    };
    let (one, two) = (sim(options.clone()), sim(options));
    let other = sim(SimOptions {
        seeds: 3,
        pods: 200,
        seed: 43,
        ..SimOptions::default()
    });
    for seed in 0..3 {
        let a = ask(&one.seeds()[seed], METHOD_GET_PODS_WITH_STATS).await;
        assert_eq!(
            a,
            ask(&two.seeds()[seed], METHOD_GET_PODS_WITH_STATS).await,
            "same --seed, same world"
        );
        assert_ne!(
            a,
            ask(&other.seeds()[seed], METHOD_GET_PODS_WITH_STATS).await
        );
    }
    // Seeds see different subsets of the pods.
    let count = |answer: &Value| answer["pods"].as_array().unwrap().len();
    let first = ask(&one.seeds()[0], METHOD_GET_PODS_WITH_STATS).await;
    let second = ask(&one.seeds()[1], METHOD_GET_PODS_WITH_STATS).await;
    assert_ne!(first["pods"], second["pods"]);
    assert!(count(&first) < 200 && count(&first) > 50);
    // Rounds later, some pods have come or gone and storage has grown.
    let used = |answer: &Value, address: &str| -> Option<u64> {
        answer["pods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|pod| pod["address"] == address)?["storage_used"]
            .as_u64()
    };
    one.set_round(10);
    let later = ask(&one.seeds()[0], METHOD_GET_PODS_WITH_STATS).await;
    let addresses = |answer: &Value| -> std::collections::BTreeSet<String> {
        answer["pods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["address"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_ne!(addresses(&first), addresses(&later), "churn between rounds");
    let stable = "10.0.0.0:9001";
    assert!(
        used(&later, stable).unwrap() > used(&first, stable).unwrap(),
        "storage grows"
    );
    // Both get-stats shapes are served.
    assert!(ask(&one.seeds()[0], "get-stats").await["uptime"].is_u64());
    assert!(ask(&one.seeds()[1], "get-stats").await["stats"]["uptime"].is_u64());
    for sim in [one, two, other] {
        sim.stop().await;
    }
}

#[actix_web::test]
async fn when_no_seed_answers_the_snapshot_is_kept_and_health_turns_degraded() {
    let sim = sim(SimOptions {
        seeds: 1,
        pods: 30,
        ..SimOptions::default()
    });
    let database = Arc::new(fresh_database().await);
    let mut settings = settings_for(&database, &sim);
    settings.pnodes.interval = Duration::from_secs(1);
    let app = spawn_app_with(database.clone(), settings).await;
    first_cycle(&app).await;
    let (status, health) = get(&app, "/api/xandeum/health").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("healthy")));
    let (_, before) = get(&app, "/api/xandeum/pnodes?status=all&limit=1000").await;

    sim.script(0, METHOD_GET_PODS_WITH_STATS, Scripted::Status(500));
    let degraded = eventually("health turns degraded", Duration::from_secs(15), || async {
        let (status, body) = get(&app, "/api/xandeum/health").await;
        (status == 200 && body["status"] == "degraded").then_some(body)
    })
    .await;
    assert!(degraded["snapshot_age_seconds"].as_i64().unwrap() >= 2);
    let (_, after) = get(&app, "/api/xandeum/pnodes?status=all&limit=1000").await;
    assert_eq!(
        after["pnodes"], before["pnodes"],
        "the last good snapshot is served as it was"
    );
    let text = metrics(&app).await;
    assert!(counter(&text, "nodegrid_pnode_cycles_total", "outcome=\"skipped\"") >= 1.0);
    sim.stop().await;
}

#[actix_web::test]
async fn the_public_api_is_rate_limited_per_client_address() {
    let sim = sim(SimOptions {
        seeds: 1,
        pods: 5,
        ..SimOptions::default()
    });
    let database = Arc::new(fresh_database().await);
    let mut settings = settings_for(&database, &sim);
    settings.pnodes.api_rate_per_sec = 1;
    settings.pnodes.api_burst = 3;
    let app = spawn_app_with(database.clone(), settings).await;
    for _ in 0..3 {
        assert_ne!(app.get("/api/xandeum/").await.status(), 429);
    }
    let refused = app.get("/api/xandeum/pnodes").await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().get("retry-after").is_some());
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");
    // Other routes are not counted against it.
    assert_eq!(app.get("/health").await.status(), 200);
    let text = metrics(&app).await;
    assert!(counter(&text, "nodegrid_rate_limited_total", "scope=\"pnode_api\"") >= 1.0);
    sim.stop().await;
}

/// Each pNode is a `PNODE` node of the registry, its status following the cycle; a cycle that
/// changes no status records no registry event.
#[actix_web::test]
async fn pnodes_are_registry_nodes_and_an_unchanged_cycle_records_no_event() {
    let sim = sim(SimOptions {
        seeds: 2,
        pods: 30,
        seed: 11,
        round_secs: 0,
        ..SimOptions::default()
    });
    let database = Arc::new(fresh_database().await);
    let app = spawn_app_with(database.clone(), settings_for(&database, &sim)).await;
    first_cycle(&app).await;
    let report = run_cycle(&app).await;
    let admin = app.admin_token().await;
    let (_, all) = get(&app, "/api/xandeum/pnodes?status=all&limit=1000").await;
    let expected = all["pnodes"].as_array().unwrap().len();
    assert!(expected > 0, "{report:?}");
    let page: Value = app
        .get_with("/api/nodes?type=PNODE&page_size=1000", &admin)
        .await
        .json()
        .await
        .unwrap();
    let nodes = page["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), expected);
    for node in nodes {
        let address = node["name"].as_str().unwrap();
        let pnode = all["pnodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|pnode| pnode["address"] == address)
            .unwrap_or_else(|| panic!("{address} is not a pNode"));
        let online = pnode["is_online"].as_bool().unwrap();
        assert_eq!(node["status"] == "DOWN", !online, "{node} vs {pnode}");
    }
    let db = crate::helpers::connect(&database.url).await;
    let events = || async {
        db.query_one("SELECT count(*) FROM node_events", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let before = events().await;
    assert_eq!(before, expected as i64, "one CREATED per pNode");
    run_cycle(&app).await;
    assert_eq!(events().await, before, "nothing changed, nothing recorded");
    app.shut_down().await.unwrap();
}

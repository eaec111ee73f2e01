//! The `heartbeats` scenario: provisions `--children` children (a plan and a client of its
//! own), then sends their signed heartbeats at a fixed total rate, open loop, each child in
//! turn, and measures latency from each heartbeat's scheduled time. One lease in ten is
//! verified as a child would (signature, child, nonce, seq), so that a fast wrong answer
//! counts as an error.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use nodegrid_protocol::children::lease::{
    Expectation, HeartbeatRequest, PublicKeysResponse, verify_lease,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::http::{RunStart, WorkerResult, finish};
use super::measure::new_histogram;
use super::options::BenchOptions;
use super::plan::BenchError;
use crate::child::mother::Mother;

fn setup(message: impl std::fmt::Display) -> BenchError {
    BenchError::Setup(message.to_string())
}

async fn admin_post(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: Value,
) -> Result<Value, BenchError> {
    let response = http
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .map_err(setup)?;
    let status = response.status();
    let body: Value = response.json().await.map_err(setup)?;
    if !status.is_success() {
        return Err(setup(format!("{url}: {status} {body}")));
    }
    Ok(body)
}

/// A plan and a client for the run, and `count` children: `(id, key)`.
async fn provision(
    base: &str,
    options: &BenchOptions,
    count: usize,
) -> Result<Vec<(Uuid, String)>, BenchError> {
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"username": options.admin_username, "password": options.admin_password}))
        .send()
        .await
        .map_err(setup)?
        .json()
        .await
        .map_err(setup)?;
    let token = login["access_token"]
        .as_str()
        .ok_or_else(|| setup(format!("the admin cannot sign in: {login}")))?
        .to_owned();
    let run = Uuid::new_v4().simple().to_string();
    let plan = admin_post(
        &http,
        &format!("{base}/api/admin/plans"),
        &token,
        json!({"name": format!("bench-{run}"), "limits": {"max_children": count, "max_users": 0}}),
    )
    .await?;
    let client = admin_post(
        &http,
        &format!("{base}/api/admin/clients"),
        &token,
        json!({"name": format!("bench-{run}"), "plan_id": plan["id"], "subscription": {"status": "active"}}),
    )
    .await?;
    let url = format!("{base}/api/admin/clients/{}/children", client["id"]);
    let children: Vec<Result<(Uuid, String), BenchError>> = futures_util::stream::iter(0..count)
        .map(|index| {
            let (http, url, token) = (&http, &url, &token);
            async move {
                let issued =
                    admin_post(http, url, token, json!({"name": format!("bench-{index}")})).await?;
                let id = issued["child"]["id"]
                    .as_str()
                    .and_then(|id| id.parse().ok())
                    .ok_or_else(|| setup("no child id"))?;
                let key = issued["api_key"]
                    .as_str()
                    .ok_or_else(|| setup("no key"))?
                    .to_owned();
                Ok((id, key))
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    children.into_iter().collect()
}

pub async fn run(options: &BenchOptions) -> Result<(), BenchError> {
    let base = options
        .target
        .first()
        .ok_or_else(|| setup("--target names no server"))?
        .trim_end_matches('/')
        .to_owned();
    if options.rate <= 0.0 || options.children == 0 {
        return Err(setup("--rate and --children must be positive"));
    }
    let provisioning = Instant::now();
    let children = Arc::new(provision(&base, options, options.children).await?);
    eprintln!(
        "provisioned {} children in {:.1} s",
        children.len(),
        provisioning.elapsed().as_secs_f64()
    );
    let keys = reqwest::get(format!("{base}/api/child/public-keys"))
        .await
        .map_err(setup)?
        .json::<PublicKeysResponse>()
        .await
        .map_err(setup)?
        .keys;
    let keys = Arc::new(keys);
    let connections = options.connections.max(1);
    let period = Duration::from_secs_f64(connections as f64 / options.rate);
    let duration = Duration::from_secs(options.seconds);
    let start = RunStart::now(&options.server_pid);
    let started = start.started;
    let mut workers = Vec::with_capacity(connections);
    for worker in 0..connections {
        let (children, keys, base) = (children.clone(), keys.clone(), base.clone());
        let mut histogram = new_histogram()?;
        let offset = period.mul_f64(worker as f64 / connections as f64);
        workers.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default();
            let mothers: Vec<Mother> = children
                .iter()
                .skip(worker)
                .step_by(connections)
                .map(|(_, key)| Mother::with_client(http.clone(), vec![base.clone()], key.clone()))
                .collect();
            let mut last_seq: BTreeMap<Uuid, u64> = BTreeMap::new();
            let (mut requests, mut ok) = (0u64, 0u64);
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            let mut scheduled = started + offset;
            // Each worker takes every `connections`-th child.
            let mine: Vec<usize> = (worker..children.len()).step_by(connections).collect();
            let mut turn = 0usize;
            while scheduled < started + duration && !mine.is_empty() {
                tokio::time::sleep_until(scheduled.into()).await;
                let (child_id, _) = &children[mine[turn % mine.len()]];
                let mother = &mothers[turn % mine.len()];
                turn += 1;
                requests += 1;
                let nonce = Uuid::new_v4().simple().to_string();
                let seq = last_seq.get(child_id).copied().unwrap_or(0);
                let body = serde_json::to_vec(&HeartbeatRequest {
                    version: "1.0.0".into(),
                    uptime_s: started.elapsed().as_secs(),
                    users_active: 0,
                    config_hash: None,
                    state: json!({}),
                    nonce: nonce.clone(),
                    last_seq: seq,
                })
                .unwrap_or_default();
                match mother
                    .call(reqwest::Method::POST, "/api/child/heartbeat", Some(body))
                    .await
                {
                    Ok(answer) if requests % 10 == 0 => {
                        let expected = Expectation {
                            child_id: *child_id,
                            nonce: Some(&nonce),
                            last_seq: seq,
                            now: chrono::Utc::now(),
                        };
                        match verify_lease(&answer.body, &keys, &expected) {
                            Ok(lease) => {
                                last_seq.insert(*child_id, lease.seq);
                                ok += 1;
                            }
                            Err(_) => *errors.entry("bad_lease".into()).or_default() += 1,
                        }
                    }
                    Ok(_) => ok += 1,
                    Err(error) => *errors.entry(error.kind().into()).or_default() += 1,
                }
                let latency = scheduled.elapsed().as_micros().max(1) as u64;
                let _ = histogram.record(latency.min(100_000_000));
                scheduled += period;
            }
            WorkerResult {
                histogram,
                requests,
                ok,
                body_bytes: 0,
                errors,
            }
        }));
    }
    let url = format!("{base}/api/child/heartbeat ({} children)", children.len());
    finish(url, options, connections, start, workers).await
}

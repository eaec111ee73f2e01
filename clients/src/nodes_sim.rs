//! `nodegrid sim nodes`: the Node Status Platform's demo-sim. Creates nodes, then changes
//! their status at a steady rate while watchers follow every event, over gRPC; reports the
//! update and event latencies, whether every watcher saw every event, and how long a page of
//! `ListNodes` takes at that many nodes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use nodegrid_protocol::registry::grpc;
use rand::Rng as _;
use tokio::sync::Mutex;

use crate::nodes::{Backend, CALL_TIMEOUT, Client, NodesError};
use crate::sensor::parse_duration;

#[derive(Debug, Clone, Args)]
pub struct NodesSimOptions {
    #[command(flatten)]
    pub backend: Backend,
    /// Nodes to create (names `sim-<run>-<n>`).
    #[arg(long, default_value_t = 10_000)]
    pub nodes: usize,
    /// Status changes per second.
    #[arg(long, default_value_t = 200)]
    pub update_qps: u32,
    /// Watchers following every event.
    #[arg(long, default_value_t = 50)]
    pub watchers: usize,
    /// How long to change statuses.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Creations in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Delete the created nodes at the end.
    #[arg(long)]
    pub cleanup: bool,
    /// Print the results as a Markdown table row.
    #[arg(long)]
    pub markdown: bool,
}

/// Microseconds, 1 µs to 100 s.
fn histogram() -> Result<Histogram<u64>, NodesError> {
    Histogram::new_with_bounds(1, 100_000_000, 3)
        .map_err(|error| NodesError::Print(format!("histogram: {error}")))
}

fn ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1_000.0
}

/// Runs the simulation and prints its report.
pub async fn run(options: NodesSimOptions) -> Result<(), NodesError> {
    let client = Client::connect(&options.backend).await?;
    let run_id: u32 = rand::rng().random();
    let kinds = [
        grpc::NodeType::Baremetal,
        grpc::NodeType::Vm,
        grpc::NodeType::Container,
        grpc::NodeType::Custom,
    ];

    // Create the nodes, `concurrency` at a time.
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let ids = Arc::new(Mutex::new(Vec::with_capacity(options.nodes)));
    let mut creators = Vec::new();
    for _ in 0..options.concurrency.max(1) {
        let (mut client, next, ids) = (client.clone(), next.clone(), ids.clone());
        let total = options.nodes as u64;
        creators.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return Ok::<(), NodesError>(());
                }
                let node = grpc::Node {
                    r#type: kinds[(n % kinds.len() as u64) as usize] as i32,
                    name: format!("sim-{run_id:08x}-{n}"),
                    status: grpc::NodeStatus::Up as i32,
                    labels: [
                        ("sim".to_owned(), format!("{run_id:08x}")),
                        ("rack".to_owned(), format!("r{}", n % 40)),
                    ]
                    .into_iter()
                    .collect(),
                    ..grpc::Node::default()
                };
                let created = client
                    .inner
                    .create_node(client.request(
                        grpc::CreateNodeRequest { node: Some(node) },
                        Some(CALL_TIMEOUT),
                    ))
                    .await
                    .map_err(NodesError::Call)?
                    .into_inner();
                ids.lock().await.push(created.id);
            }
        }));
    }
    for creator in creators {
        creator
            .await
            .map_err(|error| NodesError::Print(error.to_string()))??;
    }
    let created_secs = started.elapsed().as_secs_f64();
    let ids: Vec<String> = ids.lock().await.clone();
    eprintln!(
        "created {} nodes in {created_secs:.1} s ({:.0}/s)",
        ids.len(),
        ids.len() as f64 / created_secs
    );

    // Watchers: every event of this run, and its latency from the server's timestamp.
    let (stop, _) = tokio::sync::watch::channel(false);
    let mut watchers = Vec::new();
    let mut counters = Vec::new();
    for _ in 0..options.watchers {
        let mut client = client.clone();
        let request = grpc::WatchEventsRequest {
            label_selector: format!("sim={run_id:08x}"),
            ..grpc::WatchEventsRequest::default()
        };
        let mut stream = client
            .inner
            .watch_events(client.request(request, None))
            .await
            .map_err(NodesError::Call)?
            .into_inner();
        let seen = Arc::new(AtomicU64::new(0));
        counters.push(seen.clone());
        let mut latency = histogram()?;
        let mut stopped = stop.subscribe();
        watchers.push(tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    _ = stopped.changed() => break,
                    event = stream.message() => event,
                };
                let Ok(Some(event)) = event else { break };
                if event.event_type != grpc::EventType::Updated as i32 {
                    continue;
                }
                seen.fetch_add(1, Ordering::Relaxed);
                if let Some(ts) = event.ts.as_ref().and_then(grpc::time_of) {
                    let micros = (chrono::Utc::now() - ts).num_microseconds().unwrap_or(0);
                    let _ = latency.record(u64::try_from(micros).unwrap_or(0).max(1));
                }
            }
            latency
        }));
    }

    // Status changes at a steady rate (open loop), each one a change: the nodes in turn, and
    // each pass sets the other of DOWN and DEGRADED (all start UP).
    let mut updaters = Vec::new();
    let period = Duration::from_secs_f64(1.0 / f64::from(options.update_qps.max(1)));
    let deadline = Instant::now() + options.duration;
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let update_latency = Arc::new(Mutex::new(histogram()?));
    let ids = Arc::new(ids);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut turn = 0usize;
    while Instant::now() < deadline && !ids.is_empty() {
        ticker.tick().await;
        let index = turn % ids.len();
        let status = if (turn / ids.len()).is_multiple_of(2) {
            grpc::NodeStatus::Down
        } else {
            grpc::NodeStatus::Degraded
        };
        turn += 1;
        let (mut client, ids) = (client.clone(), ids.clone());
        let (sent, failed, update_latency) = (sent.clone(), failed.clone(), update_latency.clone());
        updaters.push(tokio::spawn(async move {
            let request = grpc::UpdateNodeRequest {
                node: Some(grpc::Node {
                    id: ids[index].clone(),
                    status: status as i32,
                    ..grpc::Node::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["status".into()],
                }),
            };
            let began = Instant::now();
            match client
                .inner
                .update_node(client.request(request, Some(CALL_TIMEOUT)))
                .await
            {
                Ok(_) => {
                    sent.fetch_add(1, Ordering::Relaxed);
                    let micros = began.elapsed().as_micros() as u64;
                    let _ = update_latency.lock().await.record(micros.max(1));
                }
                Err(_) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for updater in updaters {
        let _ = updater.await;
    }
    let elapsed = options.duration.as_secs_f64();
    let acked = sent.load(Ordering::Relaxed);
    // Every watcher should see every acked change; wait for them (at most 10 s), then stop.
    let waited = Instant::now();
    while counters
        .iter()
        .any(|seen| seen.load(Ordering::Relaxed) < acked)
        && waited.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(true);
    let mut event_latency = histogram()?;
    for watcher in watchers {
        if let Ok(latency) = watcher.await {
            let _ = event_latency.add(&latency);
        }
    }
    let seen: Vec<u64> = counters
        .iter()
        .map(|seen| seen.load(Ordering::Relaxed))
        .collect();
    let complete = seen.iter().filter(|seen| **seen >= acked).count();

    // ListNodes at this size: 20 pages of 100, filtered.
    let mut list_latency = histogram()?;
    let mut client_for_list = client.clone();
    for _ in 0..20 {
        let began = Instant::now();
        client_for_list
            .inner
            .list_nodes(client_for_list.request(
                grpc::ListNodesRequest {
                    status: grpc::NodeStatus::Up as i32,
                    label_selector: format!("sim={run_id:08x}"),
                    page_size: 100,
                    ..grpc::ListNodesRequest::default()
                },
                Some(CALL_TIMEOUT),
            ))
            .await
            .map_err(NodesError::Call)?;
        let _ = list_latency.record((began.elapsed().as_micros() as u64).max(1));
    }

    let update_latency = update_latency.lock().await.clone();
    let failed = failed.load(Ordering::Relaxed);
    if options.markdown {
        println!(
            "| {} | {:.0} | {} ({:.0}/s) | {} | {:.2} / {:.2} | {} | {complete} of {} | {:.2} / {:.2} | {:.2} / {:.2} |",
            ids.len(),
            ids.len() as f64 / created_secs,
            acked,
            acked as f64 / elapsed,
            failed,
            ms(&update_latency, 0.5),
            ms(&update_latency, 0.99),
            options.watchers,
            options.watchers,
            ms(&event_latency, 0.5),
            ms(&event_latency, 0.99),
            ms(&list_latency, 0.5),
            ms(&list_latency, 0.99),
        );
    } else {
        println!(
            "nodes {} · updates acked {acked} ({:.0}/s), failed {failed} · update p50 {:.2} ms p99 {:.2} ms · watchers that saw every update: {complete} of {} (min {} events) · event p50 {:.2} ms p99 {:.2} ms · ListNodes(100) p50 {:.2} ms p99 {:.2} ms",
            ids.len(),
            acked as f64 / elapsed,
            ms(&update_latency, 0.5),
            ms(&update_latency, 0.99),
            options.watchers,
            seen.iter().min().copied().unwrap_or(0),
            ms(&event_latency, 0.5),
            ms(&event_latency, 0.99),
            ms(&list_latency, 0.5),
            ms(&list_latency, 0.99),
        );
    }

    if options.cleanup {
        for id in ids.iter() {
            let mut client = client.clone();
            let _ = client
                .inner
                .delete_node(client.request(
                    grpc::DeleteNodeRequest { id: id.clone() },
                    Some(CALL_TIMEOUT),
                ))
                .await;
        }
    }
    Ok(())
}

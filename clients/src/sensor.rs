//! `nodegrid sensor`: watches one thing and keeps its node in the registry current, as the
//! Node Status Platform's sensors do: register the node at start, check every interval, report
//! a status only when it changes (plus a keep-alive now and then), back off while the server is
//! unreachable, and exit cleanly on SIGTERM or SIGINT.
//!
//! - `http`: `UP` on a 2xx answer within `--slow-ms`, `DEGRADED` on a slower 2xx, `DOWN` on any
//!   other answer, an error or a timeout.
//! - `system`: this machine's CPU, memory and disk use against `--degraded-percent` and
//!   `--down-percent`.

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use nodegrid_protocol::registry::{NodeStatus, grpc};
use serde_json::json;

use crate::nodes::{Backend, CALL_TIMEOUT, Client, NodesError, node_type};

/// The longest wait between attempts to reach a server that does not answer.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Args)]
pub struct SensorOptions {
    #[command(flatten)]
    pub backend: Backend,
    #[command(subcommand)]
    pub kind: SensorKind,
}

/// What every sensor takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// The node's name (registered at start when missing).
    #[arg(long)]
    pub node: String,
    /// The node's type when the sensor registers it.
    #[arg(long = "type", default_value = "BAREMETAL")]
    pub node_type: String,
    /// Time between checks (`30s`, `5m`, `500ms`).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Time after which an unchanged status is reported again.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub keepalive: Duration,
    /// Check once, report, and exit.
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum SensorKind {
    /// An HTTP endpoint: UP on 2xx in time, DEGRADED when slow, DOWN otherwise.
    Http {
        /// The URL to GET.
        #[arg(long)]
        url: String,
        /// A 2xx slower than this is DEGRADED.
        #[arg(long, default_value_t = 1_000)]
        slow_ms: u64,
        /// No answer within this is DOWN.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        timeout: Duration,
        #[command(flatten)]
        common: Common,
    },
    /// This machine: CPU, memory and disk use.
    System {
        /// Any use above this is DEGRADED.
        #[arg(long, default_value_t = 85.0)]
        degraded_percent: f64,
        /// Any use above this is DOWN.
        #[arg(long, default_value_t = 98.0)]
        down_percent: f64,
        #[command(flatten)]
        common: Common,
    },
}

/// `30s`, `5m`, `1h`, `500ms`, or a number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (30s, 5m, 500ms)"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1_000.0,
        "m" => value * 60.0,
        "h" => value * 3_600.0,
        _ => return Err(format!("{text:?}: the unit is ms, s, m or h")),
    };
    if !(0.001..=86_400.0).contains(&seconds) {
        return Err(format!("{text:?} is not between 1 ms and a day"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// One check's outcome: the status and what to say about it.
struct Check {
    status: NodeStatus,
    detail: serde_json::Value,
}

enum Probe {
    Http {
        client: reqwest::Client,
        url: String,
        slow: Duration,
    },
    System {
        system: Box<sysinfo::System>,
        disks: sysinfo::Disks,
        degraded: f64,
        down: f64,
    },
}

impl Probe {
    async fn check(&mut self) -> Check {
        match self {
            Probe::Http { client, url, slow } => {
                let started = Instant::now();
                let outcome = client.get(url.as_str()).send().await;
                let elapsed = started.elapsed();
                let latency_ms = elapsed.as_millis() as u64;
                match outcome {
                    Ok(response) if response.status().is_success() => Check {
                        status: if elapsed > *slow {
                            NodeStatus::Degraded
                        } else {
                            NodeStatus::Up
                        },
                        detail: json!({"http_status": response.status().as_u16(), "latency_ms": latency_ms}),
                    },
                    Ok(response) => Check {
                        status: NodeStatus::Down,
                        detail: json!({"http_status": response.status().as_u16(), "latency_ms": latency_ms}),
                    },
                    Err(error) => Check {
                        status: NodeStatus::Down,
                        detail: json!({
                            "error": if error.is_timeout() { "timeout" } else if error.is_connect() { "connect" } else { "request" },
                        }),
                    },
                }
            }
            Probe::System {
                system,
                disks,
                degraded,
                down,
            } => {
                system.refresh_cpu_usage();
                system.refresh_memory();
                disks.refresh(true);
                let cpu = f64::from(system.global_cpu_usage());
                let percent = |used: u64, total: u64| {
                    if total == 0 {
                        0.0
                    } else {
                        used as f64 * 100.0 / total as f64
                    }
                };
                let memory = percent(system.used_memory(), system.total_memory());
                let disk = disks
                    .into_iter()
                    .map(|disk| {
                        percent(
                            disk.total_space().saturating_sub(disk.available_space()),
                            disk.total_space(),
                        )
                    })
                    .fold(0.0, f64::max);
                let worst = cpu.max(memory).max(disk);
                Check {
                    status: if worst > *down {
                        NodeStatus::Down
                    } else if worst > *degraded {
                        NodeStatus::Degraded
                    } else {
                        NodeStatus::Up
                    },
                    detail: json!({
                        "cpu_percent": (cpu * 10.0).round() / 10.0,
                        "memory_percent": (memory * 10.0).round() / 10.0,
                        "disk_percent": (disk * 10.0).round() / 10.0,
                    }),
                }
            }
        }
    }
}

/// Runs a sensor until SIGTERM or SIGINT (or once, with `--once`).
pub async fn run(options: SensorOptions) -> Result<(), NodesError> {
    let (probe, common) = match options.kind {
        SensorKind::Http {
            url,
            slow_ms,
            timeout,
            common,
        } => {
            let client = reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .map_err(|error| {
                    NodesError::Usage(format!("cannot build the HTTP client: {error}"))
                })?;
            (
                Probe::Http {
                    client,
                    url,
                    slow: Duration::from_millis(slow_ms),
                },
                common,
            )
        }
        SensorKind::System {
            degraded_percent,
            down_percent,
            common,
        } => {
            let unreadable = |error: sysinfo::Error| {
                NodesError::Usage(format!("cannot read this machine: {error}"))
            };
            (
                Probe::System {
                    system: Box::new(sysinfo::System::new().map_err(unreadable)?),
                    disks: sysinfo::Disks::new_with_refreshed_list().map_err(unreadable)?,
                    degraded: degraded_percent,
                    down: down_percent,
                },
                common,
            )
        }
    };
    let kind = node_type(&common.node_type)?;
    let mut sensor = Sensor {
        backend: options.backend,
        client: None,
        node_id: None,
        kind,
        name: common.node.clone(),
        probe,
        last: None,
        backoff: Duration::ZERO,
    };
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        let next = Instant::now() + common.interval;
        sensor.round(common.keepalive).await;
        if common.once {
            return sensor.outcome();
        }
        let wait = next
            .saturating_duration_since(Instant::now())
            .max(sensor.backoff);
        tokio::select! {
            _ = &mut stop => {
                tracing::info!(node = %sensor.name, "stopping");
                return Ok(());
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

struct Sensor {
    backend: Backend,
    client: Option<Client>,
    node_id: Option<String>,
    kind: i32,
    name: String,
    probe: Probe,
    /// The last status the server acknowledged, and when.
    last: Option<(NodeStatus, Instant)>,
    backoff: Duration,
    // The last error, for `--once`.
}

impl Sensor {
    fn outcome(&self) -> Result<(), NodesError> {
        match self.last {
            Some(_) => Ok(()),
            None => Err(NodesError::Connect {
                addr: self.backend.addr.clone(),
                reason: "the status could not be reported".into(),
            }),
        }
    }

    /// One check, reported if it changed or the keep-alive is due; errors back off.
    async fn round(&mut self, keepalive: Duration) {
        let check = self.probe.check().await;
        let due = match self.last {
            Some((status, at)) => status != check.status || at.elapsed() >= keepalive,
            None => true,
        };
        if !due {
            return;
        }
        match self.report(&check).await {
            Ok(()) => {
                self.backoff = Duration::ZERO;
                self.last = Some((check.status, Instant::now()));
            }
            Err(error) => {
                self.backoff = (self.backoff * 2).clamp(Duration::from_secs(1), MAX_BACKOFF);
                tracing::warn!(%error, node = %self.name, retry_in = ?self.backoff, "cannot report");
                if matches!(error, NodesError::Connect { .. }) {
                    self.client = None;
                }
            }
        }
    }

    async fn report(&mut self, check: &Check) -> Result<(), NodesError> {
        if self.client.is_none() {
            self.client = Some(Client::connect(&self.backend).await?);
        }
        let Some(client) = self.client.as_mut() else {
            return Ok(());
        };
        let id = match &self.node_id {
            Some(id) => id.clone(),
            None => {
                let id = register(client, self.kind, &self.name).await?;
                tracing::info!(node = %self.name, %id, "registered");
                self.node_id = Some(id.clone());
                id
            }
        };
        let node = grpc::Node {
            id,
            status: grpc::NodeStatus::from(check.status) as i32,
            metadata_json: json!({"sensor": check.detail}).to_string(),
            ..grpc::Node::default()
        };
        let request = grpc::UpdateNodeRequest {
            node: Some(node),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["status".into(), "metadata".into()],
            }),
        };
        let outcome = client
            .inner
            .update_node(client.request(request, Some(CALL_TIMEOUT)))
            .await;
        match outcome {
            Ok(_) => {
                tracing::info!(node = %self.name, status = check.status.as_str(), "reported");
                Ok(())
            }
            Err(status) if status.code() == tonic::Code::NotFound => {
                // Deleted meanwhile: register it again next round.
                self.node_id = None;
                Err(NodesError::Call(status))
            }
            Err(status) => Err(NodesError::Call(status)),
        }
    }
}

/// The id of the node of `kind` named `name`, created when missing.
async fn register(client: &mut Client, kind: i32, name: &str) -> Result<String, NodesError> {
    for _ in 0..2 {
        // Name search matches parts of names: page through the matches for this exact one.
        let mut page_token = String::new();
        loop {
            let page = client
                .inner
                .list_nodes(client.request(
                    grpc::ListNodesRequest {
                        r#type: kind,
                        name_contains: name.to_owned(),
                        page_size: 1000,
                        page_token: page_token.clone(),
                        ..grpc::ListNodesRequest::default()
                    },
                    Some(CALL_TIMEOUT),
                ))
                .await
                .map_err(NodesError::Call)?
                .into_inner();
            if let Some(node) = page.nodes.into_iter().find(|node| node.name == name) {
                return Ok(node.id);
            }
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        let created = client
            .inner
            .create_node(client.request(
                grpc::CreateNodeRequest {
                    node: Some(grpc::Node {
                        r#type: kind,
                        name: name.to_owned(),
                        ..grpc::Node::default()
                    }),
                },
                Some(CALL_TIMEOUT),
            ))
            .await;
        match created {
            Ok(node) => return Ok(node.into_inner().id),
            // Another sensor registered it at the same moment: look it up again.
            Err(status) if status.code() == tonic::Code::AlreadyExists => continue,
            Err(status) => return Err(NodesError::Call(status)),
        }
    }
    Err(NodesError::Usage(format!("cannot register node {name:?}")))
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut terminate), Ok(mut interrupt)) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        }
        _ => std::future::pending::<()>().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        for bad in ["", "fast", "5 minutes", "0s", "2d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}

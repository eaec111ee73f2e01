//! The options of `nodegrid bench`.

use clap::{Args, ValueEnum};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// P producers at R msg/s each; C consumers, each subscribed to K producers.
    Fleet,
    /// One producer, N consumers.
    Broadcast,
    /// N idle consumers held open: the server's memory per connection.
    Connections,
    /// Raise the rate until delivery falls behind or p99 passes `--max-p99-ms`.
    Max,
    /// GET `--path` at `--rate` requests a second in all, over `--connections` connections.
    Http,
    /// Signed child heartbeats at `--rate` a second in all, over `--children` children it
    /// provisions first (needs an admin's credentials), over `--connections` connections.
    Heartbeats,
    /// No server: how late a thread wakes from a timed sleep on this machine, `--rate` times a
    /// second for `--seconds` — the floor under the latencies the other scenarios measure.
    Wakeup,
}

#[derive(Debug, Clone, Args)]
pub struct BenchOptions {
    /// nodegrid base URLs (several instances: comma-separated; connections are spread over
    /// them), or a broker: `mqtt://host:port` (MQTT over TCP) or `mqtt+ws://host:port/path`
    /// (MQTT over WebSocket, the transport nodegrid's sockets use).
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:8080")]
    pub target: Vec<String>,
    /// Also run the scenario against this MQTT broker (`mqtt://` or `mqtt+ws://`), and print
    /// both and their ratios.
    #[arg(long)]
    pub compare: Option<String>,
    #[arg(long, value_enum, default_value = "fleet")]
    pub scenario: Scenario,
    #[arg(long, default_value_t = 10)]
    pub producers: usize,
    #[arg(long, default_value_t = 10)]
    pub consumers: usize,
    /// Producers each consumer subscribes to (fleet; round-robin).
    #[arg(long, default_value_t = 1)]
    pub per_consumer: usize,
    /// Messages per second per producer.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Seconds of sending (per step for `max`).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Stop after this many messages in all, whatever the duration.
    #[arg(long, default_value_t = 10_000_000)]
    pub max_messages: u64,
    /// Extra payload bytes per message.
    #[arg(long, default_value_t = 64)]
    pub payload_bytes: usize,
    /// Loopback source addresses to spread connections over (127.0.0.1 … 127.0.0.N), so that
    /// many connections fit the port range.
    #[arg(long, default_value_t = 1)]
    pub source_addresses: u8,
    /// Server process ids whose CPU seconds and peak RSS to report.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// The compared broker's process ids, likewise.
    #[arg(long, value_delimiter = ',')]
    pub compare_pid: Vec<u32>,
    /// Redis's process id: its CPU seconds are reported beside nodegrid's.
    #[arg(long)]
    pub redis_pid: Option<u32>,
    /// Consumers ask nodegrid for batched frames (`?batch=1`: the messages waiting for a
    /// socket go in one WebSocket frame, one JSON text per line) and read them as such.
    #[arg(long)]
    pub batch: bool,
    /// Requests in flight at once while users and subscriptions are set up.
    #[arg(long, default_value_t = 32)]
    pub setup_concurrency: usize,
    /// `max`: the p99 latency bound, in milliseconds.
    #[arg(long, default_value_t = 50.0)]
    pub max_p99_ms: f64,
    /// `http`: the path (and query) to GET.
    #[arg(long, default_value = "/api/xandeum/pnodes?limit=100")]
    pub path: String,
    /// `http`: a header sent with every request, `Name: value` (repeatable), e.g.
    /// `--header 'Accept-Encoding: gzip'` to be answered compressed; bodies are counted as
    /// they arrive, not decoded.
    #[arg(long = "header", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// `http`: concurrent connections the rate is spread over.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// `heartbeats`: the children provisioned and heartbeating in turn.
    #[arg(long, default_value_t = 1_000)]
    pub children: usize,
    /// `heartbeats`: the admin who provisions the children.
    #[arg(long, env = "NODEGRID_BENCH_ADMIN_USERNAME", default_value = "admin")]
    pub admin_username: String,
    #[arg(
        long,
        env = "NODEGRID_BENCH_ADMIN_PASSWORD",
        hide_env_values = true,
        default_value = ""
    )]
    pub admin_password: String,
    /// Threads the generator runs on (default: one per core). On the server's own machine
    /// fewer threads take less of its CPU: `http` at 10,000 requests a second needs about a
    /// fifth of one core, and on one thread spends a quarter less than on two (no hand-overs
    /// between threads).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Print the report as a Markdown table: a header, then a row per target.
    #[arg(long)]
    pub markdown: bool,
}

/// `Name: value` → (name, value).
fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not `Name: value`"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("`{text}` names no header"));
    }
    Ok((name.to_owned(), value.trim().to_owned()))
}

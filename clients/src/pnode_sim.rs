//! `nodegrid sim pnodes`: a pRPC server that plays N seed nodes (one loopback port each)
//! gossiping M pods, deterministic for a given `--seed` and round.
//!
//! The world changes by rounds (every `round_secs`, or by hand in tests): a tenth of the pods
//! come and go, each seed sees its own subset, storage grows, uptime climbs. The data carries
//! what real networks send: a version mix, nulls, wrong types, impossible values, seeds that
//! answer the flat and the nested `get-stats`. Chosen seeds misbehave: one times out, one
//! answers JSON-RPC errors, one does not know `get-pods-with-stats`. Tests can also replace
//! any answer of any seed with their own.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use nodegrid_protocol::prpc::{
    METHOD_GET_PODS, METHOD_GET_PODS_WITH_STATS, METHOD_GET_STATS, METHOD_GET_VERSION,
    METHOD_NOT_FOUND,
};
use serde_json::{Value, json};

pub const LATEST_VERSION: &str = "0.8.0-trynet.20251208141952.3b3bb24";
const OLDER_VERSION: &str = "0.7.3-trynet.20251101093000.1a2b3c4";
const OLDEST_VERSION: &str = "0.6.0";
const GIB: u64 = 1024 * 1024 * 1024;

/// How the simulated network looks and misbehaves.
#[derive(Debug, Clone, clap::Args)]
pub struct SimOptions {
    /// Seed nodes to play, one port each.
    #[arg(long, default_value_t = 9)]
    pub seeds: usize,
    /// Pods in the gossip.
    #[arg(long, default_value_t = 120)]
    pub pods: usize,
    /// Randomness seed: the same seed and round give the same answers.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port of the first seed; the others follow. 0: free ports.
    #[arg(long, default_value_t = 16000)]
    pub base_port: u16,
    /// Seconds per round of churn; 0: rounds change only by hand.
    #[arg(long, default_value_t = 30)]
    pub round_secs: u64,
    /// Index of a seed that answers only after `--timeout-delay-ms`.
    #[arg(long)]
    pub timeout_seed: Option<usize>,
    /// How long the slow seed takes.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_delay_ms: u64,
    /// Index of a seed that answers every call with a JSON-RPC error.
    #[arg(long)]
    pub error_seed: Option<usize>,
    /// Index of a seed that does not know `get-pods-with-stats` (answers `get-pods`).
    #[arg(long)]
    pub legacy_seed: Option<usize>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            seeds: 9,
            pods: 120,
            seed: 1,
            host: IpAddr::from([127, 0, 0, 1]),
            base_port: 0,
            round_secs: 0,
            timeout_seed: None,
            timeout_delay_ms: 10_000,
            error_seed: None,
            legacy_seed: None,
        }
    }
}

/// A replacement answer for one seed and method.
#[derive(Debug, Clone)]
pub enum Scripted {
    /// Answer `{"jsonrpc":"2.0","id":1,"result":<value>}`.
    Result(Value),
    /// Answer this whole body as it is.
    Raw(String),
    /// Answer after this long (with what would have been answered).
    Delay(Duration),
    /// Answer this HTTP status with an empty body.
    Status(u16),
}

struct World {
    options: SimOptions,
    ports: Vec<u16>,
    started: Instant,
    manual_round: AtomicU64,
    scripted: RwLock<HashMap<(usize, String), Scripted>>,
    requests: AtomicU64,
}

/// A running simulator.
pub struct PnodeSim {
    world: Arc<World>,
    handle: ServerHandle,
}

impl PnodeSim {
    /// Binds every seed's port and starts serving (on the current actix/tokio runtime).
    pub fn start(options: SimOptions) -> std::io::Result<PnodeSim> {
        let mut listeners = Vec::with_capacity(options.seeds);
        for i in 0..options.seeds {
            let port = if options.base_port == 0 {
                0
            } else {
                options
                    .base_port
                    .saturating_add(u16::try_from(i).unwrap_or(u16::MAX))
            };
            listeners.push(TcpListener::bind(SocketAddr::new(options.host, port))?);
        }
        let ports = listeners
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<std::io::Result<Vec<_>>>()?;
        let world = Arc::new(World {
            options,
            ports,
            started: Instant::now(),
            manual_round: AtomicU64::new(0),
            scripted: RwLock::new(HashMap::new()),
            requests: AtomicU64::new(0),
        });
        let data = web::Data::from(world.clone());
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(64 * 1024))
                .route("/rpc", web::post().to(answer))
        })
        .workers(2)
        .disable_signals()
        .shutdown_timeout(1);
        for listener in listeners {
            server = server.listen(listener)?;
        }
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Ok(PnodeSim { world, handle })
    }

    /// `host:port` of every seed, in order.
    pub fn seeds(&self) -> Vec<String> {
        self.world
            .ports
            .iter()
            .map(|port| format!("{}:{port}", self.world.options.host))
            .collect()
    }

    /// Moves the world to `round` (on top of the rounds that time has made).
    pub fn set_round(&self, round: u64) {
        self.world.manual_round.store(round, Ordering::SeqCst);
    }

    /// Replaces seed `seed`'s answer to `method` until [`Self::clear_script`].
    pub fn script(&self, seed: usize, method: &str, answer: Scripted) {
        self.world
            .scripted
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((seed, method.to_owned()), answer);
    }

    pub fn clear_script(&self, seed: usize, method: &str) {
        self.world
            .scripted
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(seed, method.to_owned()));
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.world.requests.load(Ordering::Relaxed)
    }

    pub async fn stop(&self) {
        self.handle.stop(true).await;
    }
}

async fn answer(world: web::Data<World>, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    world.requests.fetch_add(1, Ordering::Relaxed);
    let port = request.app_config().local_addr().port();
    let Some(seed) = world.ports.iter().position(|p| *p == port) else {
        return HttpResponse::NotFound().finish();
    };
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let method = request
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let id = request.get("id").cloned().unwrap_or(json!(1));
    let scripted = world
        .scripted
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&(seed, method.clone()))
        .cloned();
    match scripted {
        Some(Scripted::Result(result)) => {
            return HttpResponse::Ok().json(json!({"jsonrpc":"2.0","id":id,"result":result}));
        }
        Some(Scripted::Raw(body)) => {
            return HttpResponse::Ok()
                .content_type("application/json")
                .body(body);
        }
        Some(Scripted::Status(code)) => {
            return HttpResponse::build(
                actix_web::http::StatusCode::from_u16(code)
                    .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
            )
            .finish();
        }
        Some(Scripted::Delay(delay)) => tokio::time::sleep(delay).await,
        None => {}
    }
    let options = &world.options;
    if options.timeout_seed == Some(seed) {
        tokio::time::sleep(Duration::from_millis(options.timeout_delay_ms)).await;
    }
    let rpc_error = |code: i64, message: &str| {
        HttpResponse::Ok()
            .json(json!({"jsonrpc":"2.0","id":id,"error":{"code":code,"message":message}}))
    };
    if options.error_seed == Some(seed) {
        return rpc_error(-32603, "Internal error");
    }
    let round = world.round();
    let result = match method.as_str() {
        METHOD_GET_VERSION => json!({"version": seed_version(options, seed)}),
        METHOD_GET_STATS => seed_stats(options, seed, round),
        METHOD_GET_PODS_WITH_STATS if options.legacy_seed == Some(seed) => {
            return rpc_error(METHOD_NOT_FOUND, "Method not found");
        }
        METHOD_GET_PODS_WITH_STATS => world.pods(seed, round, true),
        METHOD_GET_PODS => world.pods(seed, round, false),
        _ => return rpc_error(METHOD_NOT_FOUND, "Method not found"),
    };
    HttpResponse::Ok().json(json!({"jsonrpc":"2.0","id":id,"result":result}))
}

/// splitmix64 over the inputs: deterministic, well spread.
fn mix(parts: &[u64]) -> u64 {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for part in parts {
        state ^= part
            .wrapping_add(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(state << 6);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        state = z ^ (z >> 31);
    }
    state
}

fn seed_version(options: &SimOptions, seed: usize) -> &'static str {
    if mix(&[options.seed, seed as u64, 1]).is_multiple_of(5) {
        OLDER_VERSION
    } else {
        LATEST_VERSION
    }
}

fn seed_stats(options: &SimOptions, seed: usize, round: u64) -> Value {
    let h = mix(&[options.seed, seed as u64, 2]);
    let ram_total = (8 + h % 24) * GIB;
    let figures = json!({
        "active_streams": h % 5,
        "cpu_percent": (h % 2_000) as f64 / 100.0,
        "current_index": round,
        "file_size": (100 + h % 900) * GIB,
        "last_updated": chrono::Utc::now().timestamp(),
        "packets_received": 1_000 + round * 97 + h % 1_000,
        "packets_sent": 900 + round * 91 + h % 1_000,
        "ram_total": ram_total,
        "ram_used": ram_total / 100 * (10 + h % 60),
        "total_bytes": round * 4_096 + h % 100_000,
        "total_pages": round,
        "uptime": 86_400 + round * 30 + h % 1_000_000,
    });
    if seed % 2 == 1 {
        // The older documented shape.
        json!({
            "metadata": {"total_bytes": figures["total_bytes"], "total_pages": figures["total_pages"],
                          "last_updated": figures["last_updated"]},
            "stats": {"cpu_percent": figures["cpu_percent"], "ram_used": figures["ram_used"],
                      "ram_total": figures["ram_total"], "uptime": figures["uptime"],
                      "packets_received": figures["packets_received"], "packets_sent": figures["packets_sent"],
                      "active_streams": figures["active_streams"]},
            "file_size": figures["file_size"],
        })
    } else {
        figures
    }
}

impl World {
    fn round(&self) -> u64 {
        let by_time = match self.options.round_secs {
            0 => 0,
            secs => self.started.elapsed().as_secs() / secs,
        };
        by_time + self.manual_round.load(Ordering::SeqCst)
    }

    fn pods(&self, seed: usize, round: u64, with_stats: bool) -> Value {
        let options = &self.options;
        let seeds = options.seeds.max(1) as u64;
        let now = chrono::Utc::now().timestamp();
        let mut pods = Vec::new();
        for i in 0..options.pods as u64 {
            let h = mix(&[options.seed, i]);
            // A tenth of the pods churn: absent for a third of the 2-round epochs.
            if i % 10 == 9 && mix(&[options.seed, i, round / 2, 3]).is_multiple_of(3) {
                continue;
            }
            // Each pod is seen by its home seed and by others with probability 0.45.
            let home = i % seeds == seed as u64;
            if !home && mix(&[options.seed, i, seed as u64, 4]) % 100 >= 45 {
                continue;
            }
            let address = format!("10.{}.{}.{}:9001", (i >> 16) & 255, (i >> 8) & 255, i & 255);
            let operator = h % (options.pods as u64 / 3 + 1);
            let pubkey = format!(
                "Pk{:016x}{:08x}",
                mix(&[options.seed, operator, 5]),
                operator
            );
            let version = match h % 10 {
                0..=6 => LATEST_VERSION,
                7 | 8 => OLDER_VERSION,
                _ => OLDEST_VERSION,
            };
            let last_seen = now - (mix(&[options.seed, i, seed as u64, round, 6]) % 20) as i64;
            let mut pod = json!({
                "address": address,
                "last_seen_timestamp": last_seen,
                "pubkey": pubkey,
                "version": version,
            });
            if with_stats {
                let committed = (100 + h % 900) * GIB;
                let used_percent: f64 = match i % 97 {
                    1 => 97.0,
                    2 | 3 => 88.0,
                    _ => (h % 6_000) as f64 / 100.0,
                };
                let used = ((committed as f64) * used_percent / 100.0) as u64 + round * 1_048_576;
                let uptime = if i % 31 == 4 {
                    1_200 + round * 30
                } else {
                    3_600 * (1 + h % 1_200) + round * 30
                };
                let object = pod.as_object_mut();
                if let Some(object) = object {
                    object.insert("is_public".into(), json!(h % 5 < 3));
                    object.insert("rpc_port".into(), json!(6000));
                    object.insert("storage_committed".into(), json!(committed));
                    object.insert("storage_used".into(), json!(used));
                    object.insert(
                        "storage_usage_percent".into(),
                        json!((used as f64 / committed as f64 * 100.0).min(100.0)),
                    );
                    object.insert("uptime".into(), json!(uptime));
                    // What real gossip also carries: nulls, missing fields, wrong types.
                    if i % 20 == 7 {
                        object.insert("storage_committed".into(), Value::Null);
                        object.insert("storage_used".into(), Value::Null);
                        object.insert("storage_usage_percent".into(), Value::Null);
                    }
                    if i % 25 == 3 {
                        object.remove("version");
                    }
                    if i % 30 == 11 {
                        object.insert("is_public".into(), Value::Null);
                    }
                    if i % 50 == 13 {
                        object.insert("uptime".into(), json!(-1));
                        object.insert("rpc_port".into(), json!("6000"));
                    }
                }
            }
            pods.push(pod);
        }
        let count = pods.len();
        json!({"pods": pods, "total_count": count})
    }
}

//! pNode analytics at runtime: a [`poller::PnodePoller`] per seed, the
//! [`aggregator::PnodeAggregator`] that runs the cycle on the leader and keeps every instance's
//! snapshot current, the [`SnapshotCell`] the API reads, the thread that makes its hot pages
//! ahead ([`pages`]), and the GraphQL schema over it ([`graphql`]).

pub mod aggregator;
pub mod cell;
pub mod graphql;
pub mod metrics;
pub mod pages;
pub mod poller;

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use nodegrid_services::bus::RedisBus;
use nodegrid_services::db::Database;
use nodegrid_services::lease::{LeaderLease, LeaseKeeper};
use nodegrid_services::pnodes::PnodeSettings;
use nodegrid_services::pnodes::client::{ClientSetupError, PrpcClient};
use nodegrid_services::pnodes::store::PnodeStore;
use nodegrid_services::ratelimit::LocalRateLimiter;
use nodegrid_services::registry::NodeRegistry;
use uuid::Uuid;

use self::aggregator::{AggregatorContext, PnodeAggregator};
pub use self::cell::SnapshotCell;
use self::poller::PnodePoller;
use crate::bridge::RedisBridge;

/// Clients the API limiter keeps buckets for at most.
const API_LIMITER_MAX_CLIENTS: usize = 100_000;
/// API tokens the per-token limiter keeps buckets for at most.
const API_LIMITER_MAX_TOKENS: usize = 10_000;

/// The name of the lease whose holder polls and writes.
pub const LEASE_NAME: &str = "pnode-aggregator";

/// What the HTTP handlers need of the pNode side.
#[derive(Clone)]
pub struct PnodeRuntime {
    pub cell: SnapshotCell,
    pub store: PnodeStore,
    pub aggregator: Addr<PnodeAggregator>,
    pub settings: PnodeSettings,
    /// Per-client limit of the public `/api/xandeum` routes.
    pub api_limiter: Arc<LocalRateLimiter>,
    /// Per-token limit of API tokens with `xandeum:unlimited` and a rate of their own.
    pub token_limiter: Arc<LocalRateLimiter<i64>>,
    /// Open `/api/xandeum/ws/pnodes` sockets.
    pub live_sockets: Arc<LiveSockets>,
}

/// Open `/api/xandeum/ws/pnodes` sockets: in all, and per client address.
#[derive(Default)]
pub struct LiveSockets {
    pub open: std::sync::Mutex<(usize, std::collections::HashMap<std::net::IpAddr, usize>)>,
}

/// Live sockets one client address may hold on an instance.
pub const LIVE_SOCKETS_PER_ADDRESS: usize = 32;

/// How long the pNode lease lives: twice the interval, between 3 and 30 seconds. A dead
/// leader's work is taken over within that.
pub fn lease_ttl(interval: Duration) -> Duration {
    (interval * 2).clamp(Duration::from_secs(3), Duration::from_secs(30))
}

/// Starts the pollers (when seeds are configured), the lease keeper and the aggregator.
pub fn start(
    settings: &PnodeSettings,
    database: Database,
    bus: RedisBus,
    bridge: Addr<RedisBridge>,
    instance_id: Uuid,
    nodes: NodeRegistry,
) -> Result<(PnodeRuntime, Option<LeaseKeeper>), ClientSetupError> {
    let store = PnodeStore::new(database);
    let cell = SnapshotCell::default();
    pages::start(&cell);
    let (pollers, keeper) = if settings.seeds.is_empty() {
        tracing::info!(
            "pNode polling is off: no pRPC seeds are configured (set --pnode-seeds or NODEGRID_PNODE_SEEDS to host[:port] seeds, or to the preset xandeum-public, to turn it on)"
        );
        (Vec::new(), None)
    } else {
        let client = PrpcClient::new(settings.rpc_timeout, settings.max_answer_bytes)?;
        let pollers = settings
            .seeds
            .iter()
            .map(|seed| {
                PnodePoller::start_supervised(seed.clone(), client.clone(), settings.interval)
            })
            .collect();
        let lease = LeaderLease::new(
            &bus,
            LEASE_NAME,
            &instance_id.to_string(),
            lease_ttl(settings.interval),
        );
        (pollers, Some(LeaseKeeper::start(lease)))
    };
    let aggregator = PnodeAggregator::start(
        AggregatorContext {
            settings: settings.clone(),
            store: store.clone(),
            cell: cell.clone(),
            bus,
            instance_id,
            nodes,
            reported: std::sync::Mutex::default(),
            writes: std::sync::Mutex::default(),
        },
        pollers,
        bridge,
        keeper.as_ref().map(LeaseKeeper::watch),
    );
    Ok((
        PnodeRuntime {
            cell,
            store,
            aggregator,
            settings: settings.clone(),
            api_limiter: Arc::new(LocalRateLimiter::new(
                settings.api_rate_per_sec,
                settings.api_burst,
                API_LIMITER_MAX_CLIENTS,
            )),
            token_limiter: Arc::new(LocalRateLimiter::new(0, 0, API_LIMITER_MAX_TOKENS)),
            live_sockets: Arc::default(),
        },
        keeper,
    ))
}

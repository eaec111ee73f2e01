//! pNode analytics at runtime: a [`poller::PnodePoller`] per seed, the
//! [`aggregator::PnodeAggregator`] that runs the cycle on the leader and keeps every instance's
//! snapshot current, the [`SnapshotCell`] the API reads, the `/api/xandeum` routes, and the
//! pRPC simulator.

pub mod aggregator;
pub mod metrics;
pub mod poller;
pub mod routes;

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use actix::Addr;
use nodegrid_services::bus::RedisBus;
use nodegrid_services::db::Database;
use nodegrid_services::lease::{LeaderLease, LeaseKeeper};
use nodegrid_services::pnodes::PnodeSettings;
use nodegrid_services::pnodes::client::PrpcClient;
use nodegrid_services::pnodes::store::PnodeStore;
use nodegrid_services::pnodes::view::{NetworkView, SnapshotRecord};
use nodegrid_services::ratelimit::LocalRateLimiter;
use uuid::Uuid;

use self::aggregator::{AggregatorContext, PnodeAggregator};
use self::poller::PnodePoller;
use crate::bridge::RedisBridge;

/// Clients the API limiter keeps buckets for at most.
const API_LIMITER_MAX_CLIENTS: usize = 100_000;

/// The name of the lease whose holder polls and writes.
pub const LEASE_NAME: &str = "pnode-aggregator";

#[derive(Default)]
struct Served {
    record: Option<Arc<SnapshotRecord>>,
    view: Arc<NetworkView>,
}

/// The snapshot this instance serves. Readers clone an `Arc` under a read lock held for no
/// longer than that; no lock is held across an await.
#[derive(Clone, Default)]
pub struct SnapshotCell(Arc<RwLock<Served>>);

impl SnapshotCell {
    pub fn view(&self) -> Arc<NetworkView> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .view
            .clone()
    }

    pub fn record(&self) -> Option<Arc<SnapshotRecord>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .record
            .clone()
    }

    /// The cycle served (0 before any).
    pub fn cycle(&self) -> i64 {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .view
            .cycle
    }

    pub fn set(&self, record: Arc<SnapshotRecord>, view: Arc<NetworkView>) {
        observe(&view);
        let mut served = self.0.write().unwrap_or_else(PoisonError::into_inner);
        *served = Served {
            record: Some(record),
            view,
        };
    }

    /// Serves `view` when it is of a newer cycle than the one served.
    pub fn set_if_newer(&self, record: Arc<SnapshotRecord>, view: Arc<NetworkView>) {
        self.offer(record, view, |offered, served| offered > served);
    }

    /// Serves `view` (an edit of a cycle, e.g. pruned) unless a newer cycle is served by now.
    pub fn set_unless_older(&self, record: Arc<SnapshotRecord>, view: Arc<NetworkView>) {
        self.offer(record, view, |offered, served| offered >= served);
    }

    fn offer(
        &self,
        record: Arc<SnapshotRecord>,
        view: Arc<NetworkView>,
        take: fn(i64, i64) -> bool,
    ) {
        let mut served = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if take(view.cycle, served.view.cycle) {
            observe(&view);
            *served = Served {
                record: Some(record),
                view,
            };
        }
    }
}

fn observe(view: &NetworkView) {
    ::metrics::gauge!(metrics::NODES, "status" => "online").set(view.summary.online_pnodes as f64);
    ::metrics::gauge!(metrics::NODES, "status" => "offline")
        .set(view.summary.offline_pnodes as f64);
    ::metrics::gauge!(metrics::SNAPSHOT_CYCLE).set(view.cycle as f64);
    let age = chrono::Utc::now().timestamp().saturating_sub(view.taken_at);
    ::metrics::gauge!(metrics::SNAPSHOT_AGE).set(age as f64);
}

/// What the HTTP handlers need of the pNode side.
#[derive(Clone)]
pub struct PnodeRuntime {
    pub cell: SnapshotCell,
    pub store: PnodeStore,
    pub aggregator: Addr<PnodeAggregator>,
    pub settings: PnodeSettings,
    /// Per-client limit of the public `/api/xandeum` routes.
    pub api_limiter: Arc<LocalRateLimiter>,
}

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
) -> Result<(PnodeRuntime, Option<LeaseKeeper>), String> {
    let store = PnodeStore::new(database);
    let cell = SnapshotCell::default();
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
        },
        keeper,
    ))
}

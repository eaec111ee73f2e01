//! PnodeAggregator: one per instance. While this instance holds the `pnode-aggregator` lease it
//! runs the cycle every interval: ask every poller, merge into the registry, build the view,
//! write the cycle to Postgres (fenced), serve it, and tell the other instances. On the other
//! instances it keeps the served snapshot current: on the control event, after a Redis
//! reconnect, and by a cheap cycle-number check every interval.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::future::join_all;
use nodegrid_protocol::control::{ControlEnvelope, ControlEvent};
use nodegrid_protocol::pnode_api::node::Severity;
use nodegrid_protocol::registry::{NodeStatus, NodeType};
use nodegrid_services::bus::RedisBus;
use nodegrid_services::lease::Leadership;
use nodegrid_services::pnodes::PnodeSettings;
use nodegrid_services::pnodes::background;
use nodegrid_services::pnodes::changes;
use nodegrid_services::pnodes::cycle::{CycleStats, Registry, SeedPoll, apply_cycle};
use nodegrid_services::pnodes::store::{
    CycleWrite, PnodeStore, StoreError, WriteOutcome, encode_record_head, finish_record,
};
use nodegrid_services::pnodes::view::{NetworkView, SnapshotRecord};
use nodegrid_services::pnodes::writes::{CycleWrites, STEADY_WRITE_EVERY_SECS, WriteTracker};
use nodegrid_services::registry::NodeRegistry;
use serde::Serialize;
use tokio::sync::watch;
use uuid::Uuid;

use super::cell::SnapshotCell;
use super::metrics::{CYCLE_SECONDS, CYCLES, PRUNED};
use super::poller::{PnodePoller, Poll};
use crate::bridge::{
    BusReconnected, ControlMessage, RedisBridge, listen_to_control_and_reconnects,
};

/// History older than the retention is pruned at most this often.
const PRUNE_EVERY: Duration = Duration::from_secs(3_600);

/// What the aggregator shares with the futures it runs.
pub struct AggregatorContext {
    pub settings: PnodeSettings,
    pub store: PnodeStore,
    pub cell: SnapshotCell,
    pub bus: RedisBus,
    pub instance_id: Uuid,
    /// The node registry, where each pNode is a `PNODE` node, and the statuses this leader
    /// reported to it last (only changes are reported).
    pub nodes: NodeRegistry,
    pub reported: std::sync::Mutex<HashMap<String, NodeStatus>>,
    /// What this leader wrote besides the records (only changes are written again).
    pub writes: std::sync::Mutex<WriteTracker>,
}

/// What one cycle did.
#[derive(Debug, Clone, Serialize)]
pub struct CycleReport {
    pub cycle: i64,
    pub outcome: &'static str,
    pub seeds_ok: usize,
    pub seeds_failed: usize,
    pub unique_pods: usize,
    pub new_nodes: usize,
    pub disappeared: usize,
    /// Merge, scores and view, after polling.
    pub duration_ms: u64,
    /// Of which the Postgres transaction.
    pub write_ms: u64,
}

pub struct PnodeAggregator {
    context: Arc<AggregatorContext>,
    pollers: Vec<Addr<PnodePoller>>,
    bridge: Addr<RedisBridge>,
    leadership: Option<watch::Receiver<Leadership>>,
    /// The working registry, held only while leading.
    registry: Option<Registry>,
    cycle: i64,
    busy: bool,
    refreshing: bool,
    last_prune: Option<Instant>,
}

impl PnodeAggregator {
    pub fn start(
        context: AggregatorContext,
        pollers: Vec<Addr<PnodePoller>>,
        bridge: Addr<RedisBridge>,
        leadership: Option<watch::Receiver<Leadership>>,
    ) -> Addr<PnodeAggregator> {
        let context = Arc::new(context);
        Supervisor::start(move |_| PnodeAggregator {
            context,
            pollers,
            bridge,
            leadership,
            registry: None,
            cycle: 0,
            busy: false,
            refreshing: false,
            last_prune: None,
        })
    }

    fn leadership(&self) -> Leadership {
        self.leadership
            .as_ref()
            .map(|rx| *rx.borrow())
            .unwrap_or(Leadership::Follower)
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        match self.leadership() {
            Leadership::Leader { .. } => {
                ctx.spawn(self.run_cycle().map(|_, _, _| ()));
            }
            Leadership::Follower => {
                // A deposed leader's registry may be stale by the time it leads again, and so
                // may what it remembers writing.
                self.registry = None;
                self.context
                    .writes
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .clear();
                self.refresh(ctx, None);
            }
        }
    }

    /// Loads the stored snapshot when it is newer than the served one (or `known_cycle` says
    /// a newer one exists).
    fn refresh(&mut self, ctx: &mut Context<Self>, known_cycle: Option<i64>) {
        if self.refreshing || self.busy {
            return;
        }
        let served = self.context.cell.cycle();
        if known_cycle.is_some_and(|cycle| cycle <= served) {
            return;
        }
        self.refreshing = true;
        let context = self.context.clone();
        ctx.spawn(
            async move {
                let stored = context
                    .store
                    .snapshot_cycle()
                    .await
                    .map_err(|e| e.to_string())?;
                if stored <= context.cell.cycle() {
                    return Ok(false);
                }
                let Some(record) = context
                    .store
                    .load_snapshot()
                    .await
                    .map_err(|e| e.to_string())?
                else {
                    return Ok(false);
                };
                publish_record(&context, record, Serve::IfNewer).await;
                Ok::<bool, String>(true)
            }
            .into_actor(self)
            .map(|result, aggregator, _| {
                aggregator.refreshing = false;
                match result {
                    Ok(true) => tracing::debug!(
                        cycle = aggregator.context.cell.cycle(),
                        "loaded the stored pNode snapshot"
                    ),
                    Ok(false) => {}
                    Err(error) => tracing::warn!(%error, "cannot load the stored pNode snapshot"),
                }
            }),
        );
    }

    fn run_cycle(&mut self) -> ResponseActFuture<Self, Result<CycleReport, CycleError>> {
        let Leadership::Leader { fencing_token } = self.leadership() else {
            return Box::pin(fut::ready(Err(CycleError::NotLeader)));
        };
        if self.busy {
            return Box::pin(fut::ready(Err(CycleError::Busy)));
        }
        self.busy = true;
        let context = self.context.clone();
        let pollers = self.pollers.clone();
        let registry = self.registry.take();
        let cycle = self.cycle;
        let prune_due = self
            .last_prune
            .is_none_or(|last| last.elapsed() >= PRUNE_EVERY);
        Box::pin(
            async move {
                let (registry, cycle, previous) = match registry {
                    // Leading on: the served view is this leader's last cycle.
                    Some(registry) => (registry, cycle, context.cell.view()),
                    None => match resume_from_store(&context).await {
                        Ok(resumed) => resumed,
                        Err(error) => return (None, cycle, Err(CycleError::Store(error))),
                    },
                };
                cycle_once(
                    &context,
                    &pollers,
                    registry,
                    cycle,
                    previous,
                    fencing_token,
                    prune_due,
                )
                .await
            }
            .into_actor(self)
            .map(move |(registry, cycle, result), aggregator, _| {
                aggregator.busy = false;
                aggregator.registry = registry;
                aggregator.cycle = cycle;
                if let Ok(report) = &result
                    && report.outcome == "written"
                    && prune_due
                {
                    aggregator.last_prune = Some(Instant::now());
                }
                if let Err(error) = &result {
                    metrics::counter!(CYCLES, "outcome" => "failed").increment(1);
                    tracing::warn!(%error, "pNode cycle failed");
                }
                result
            }),
        )
    }
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Runs a cycle's computation on a thread of its own below the request threads (see
/// [`background`]): the cycle can wait some milliseconds, a request should not. `None` if it
/// panicked.
async fn on_cycle_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    background::run("pnode-cycle", work).await
}

/// Unchanged rows a cycle may write: twice what goes round every node once per steady period
/// at this interval (so a backlog drains), and at least a hundred.
fn steady_budget(nodes: usize, interval: Duration) -> usize {
    let per_period = (STEADY_WRITE_EVERY_SECS as u64 / interval.as_secs().max(1)).max(1) as usize;
    (nodes.div_ceil(per_period) * 2).max(100)
}

/// What a new leader goes on from: the registry table overlaid with the stored snapshot's
/// entries (exact as of its cycle; the table is written more coarsely), the stored cycle, and
/// the snapshot's view (the one the next cycle's changes are counted against).
async fn resume_from_store(
    context: &Arc<AggregatorContext>,
) -> Result<(Registry, i64, Arc<NetworkView>), StoreError> {
    let mut registry = context.store.load_registry().await?;
    let Some(record) = context.store.load_snapshot().await? else {
        return Ok((registry, 0, Arc::new(NetworkView::default())));
    };
    for entry in &record.entries {
        registry.insert(entry.address.clone(), entry.clone());
    }
    let cycle = record.cycle;
    let served = context.cell.view();
    if served.cycle == cycle {
        return Ok((registry, cycle, served));
    }
    let settings = context.settings.clone();
    // Without the stored view the next cycle's changes would be counted from nothing (every
    // node "appeared"): a failure here fails the cycle, which is retried.
    let view = on_cycle_thread(move || {
        NetworkView::build(
            &record,
            &settings.analytics,
            settings.latest_version.as_deref(),
        )
    })
    .await
    .ok_or_else(|| StoreError::Codec("the stored snapshot's view could not be built".into()))?;
    Ok((registry, cycle, Arc::new(view)))
}

/// Polls, merges, builds, writes. Returns the registry to keep (none when fenced), the cycle
/// number reached, and the report.
async fn cycle_once(
    context: &Arc<AggregatorContext>,
    pollers: &[Addr<PnodePoller>],
    registry: Registry,
    cycle: i64,
    previous: Arc<NetworkView>,
    fencing_token: u64,
    prune_due: bool,
) -> (Option<Registry>, i64, Result<CycleReport, CycleError>) {
    let now = unix_now();
    let polls: Vec<SeedPoll> = join_all(pollers.iter().map(|poller| poller.send(Poll { now })))
        .await
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    let started = Instant::now();
    let settings = context.settings.clone();
    let next_cycle = cycle + 1;
    let retention = i64::try_from(context.settings.retention.as_secs()).unwrap_or(i64::MAX);
    let planner = context.clone();
    let built = on_cycle_thread(move || {
        let mut registry = registry;
        let mut clock = Instant::now();
        let mut lap = move || {
            let elapsed = clock.elapsed().as_millis() as u64;
            clock = Instant::now();
            elapsed
        };
        let stats = apply_cycle(&mut registry, &polls, now);
        let merge_ms = lap();
        if stats.skipped {
            return (registry, stats, None);
        }
        let mut record = SnapshotRecord {
            cycle: next_cycle,
            taken_at: now,
            interval_secs: settings.interval.as_secs(),
            seeds: polls,
            entries: registry.values().cloned().collect(),
            previous_cycle: previous.cycle,
            changes: Vec::new(),
        };
        // The record's bulk is encoded on a second thread while the view and the changes are
        // computed: both only read it.
        let (head, view, changes, view_ms) = std::thread::scope(|scope| {
            let head = scope.spawn(|| encode_record_head(&record));
            let view = NetworkView::build(
                &record,
                &settings.analytics,
                settings.latest_version.as_deref(),
            );
            let view_ms = lap();
            let changes = changes::diff(&previous, &view);
            let head = head
                .join()
                .unwrap_or_else(|_| Err(StoreError::Codec("the encoder panicked".into())));
            (head, view, changes, view_ms)
        });
        record.changes = changes;
        let events = changes::events(&record.changes);
        let diff_ms = lap();
        // The rest of the record, and its compression.
        let encoded = head.and_then(|head| finish_record(head, &record));
        let encode_ms = lap();
        // Which rows the transaction writes (hashing every node's fields): planned here, not
        // on the actor's thread, and only for a record that can be written.
        let writes = match &encoded {
            Ok(_) => planner
                .writes
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .plan(
                    &record.entries,
                    &view,
                    now,
                    now.saturating_sub(retention),
                    steady_budget(record.entries.len(), settings.interval),
                ),
            Err(_) => CycleWrites::default(),
        };
        let plan_ms = lap();
        tracing::debug!(
            merge_ms,
            view_ms,
            diff_ms,
            encode_ms,
            plan_ms,
            "pNode cycle computed"
        );
        (
            registry,
            stats,
            Some((record, view, events, encoded, writes)),
        )
    })
    .await;
    let Some((registry, stats, built)) = built else {
        return (None, cycle, Err(CycleError::ComputationPanicked));
    };
    let report = |outcome, stats: &CycleStats, cycle| CycleReport {
        cycle,
        outcome,
        seeds_ok: stats.seeds_ok,
        seeds_failed: stats.seeds_failed,
        unique_pods: stats.unique_pods,
        new_nodes: stats.new_nodes,
        disappeared: stats.disappeared,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        write_ms: 0,
    };
    let Some((record, view, events, encoded, writes)) = built else {
        metrics::counter!(CYCLES, "outcome" => "skipped").increment(1);
        tracing::warn!(
            seeds = stats.seeds_failed,
            "no pRPC seed answered; the snapshot is kept as it was"
        );
        return (Some(registry), cycle, Ok(report("skipped", &stats, cycle)));
    };
    let write_started = Instant::now();
    let encoded = match encoded {
        Ok(encoded) => encoded,
        Err(error) => return (Some(registry), cycle, Err(CycleError::Store(error))),
    };
    let written = context
        .store
        .write_cycle(
            CycleWrite {
                record: &record,
                encoded: &encoded,
                view: &view,
                writes: &writes,
                events: &events,
            },
            fencing_token,
        )
        .await;
    if !matches!(written, Ok(WriteOutcome::Written)) {
        context
            .writes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .forget(&writes, &record.entries, &view);
    }
    match written {
        Ok(WriteOutcome::Written) => {}
        Ok(WriteOutcome::Fenced) => {
            metrics::counter!(CYCLES, "outcome" => "fenced").increment(1);
            tracing::warn!(
                cycle = next_cycle,
                "a newer pNode leader has written; dropping this cycle"
            );
            return (None, cycle, Ok(report("fenced", &stats, cycle)));
        }
        Err(error) => return (Some(registry), cycle, Err(CycleError::Store(error))),
    }
    let elapsed = started.elapsed();
    metrics::histogram!(CYCLE_SECONDS).record(elapsed.as_secs_f64());
    metrics::counter!(CYCLES, "outcome" => "written").increment(1);
    tracing::info!(
        cycle = next_cycle,
        seeds_ok = stats.seeds_ok,
        seeds_failed = stats.seeds_failed,
        pods = stats.unique_pods,
        new = stats.new_nodes,
        disappeared = stats.disappeared,
        changes = record.changes.len(),
        events = events.len(),
        registry_rows = writes.registry.len(),
        history_rows = writes.history.len(),
        ms = elapsed.as_millis() as u64,
        write_ms = write_started.elapsed().as_millis() as u64,
        "pNode cycle written"
    );
    let view = Arc::new(view);
    context.cell.set(Arc::new(record), view.clone());
    let envelope = ControlEnvelope {
        origin: context.instance_id,
        event: ControlEvent::PnodeSnapshotUpdated { cycle: next_cycle },
    };
    if let Err(error) = context.bus.publish_control(&envelope).await {
        tracing::warn!(%error, "cannot announce the new pNode snapshot; followers will find it by polling");
    }
    if prune_due {
        match context
            .store
            .prune_history(now.saturating_sub(retention))
            .await
        {
            Ok((network, nodes)) => {
                metrics::counter!(PRUNED, "table" => "network_history").increment(network);
                metrics::counter!(PRUNED, "table" => "node_history").increment(nodes);
            }
            Err(error) => tracing::warn!(%error, "pNode history retention failed"),
        }
    }
    report_to_registry(context, &view).await;
    (
        Some(registry),
        next_cycle,
        Ok(report("written", &stats, next_cycle)),
    )
}

/// Reports the pNodes whose status changed since the last cycle to the node registry (online
/// `UP`, with a critical alert `DEGRADED`, offline `DOWN`); after the cycle is served, so that
/// the API never waits for it.
async fn report_to_registry(context: &Arc<AggregatorContext>, view: &NetworkView) {
    let changes: Vec<(String, NodeStatus)> = {
        let mut reported = context
            .reported
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        view.nodes
            .iter()
            .zip(&view.alerts)
            .filter_map(|(node, alerts)| {
                let status = if !node.is_online {
                    NodeStatus::Down
                } else if alerts
                    .iter()
                    .any(|alert| alert.severity == Severity::Critical)
                {
                    NodeStatus::Degraded
                } else {
                    NodeStatus::Up
                };
                // Looked up first: ten thousand unchanged nodes a cycle copy no address.
                if reported.get(node.address.as_str()) == Some(&status) {
                    return None;
                }
                reported.insert(node.address.clone(), status);
                Some((node.address.clone(), status))
            })
            .collect()
    };
    if changes.is_empty() {
        return;
    }
    let names: Vec<String> = changes.iter().map(|(name, _)| name.clone()).collect();
    match context.nodes.report_many(NodeType::Pnode, changes).await {
        Ok(events) => tracing::debug!(events, "pNode statuses reported to the registry"),
        Err(error) => {
            tracing::warn!(%error, "could not report pNode statuses to the registry; the next cycle retries");
            let mut reported = context
                .reported
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for name in names {
                reported.remove(&name);
            }
        }
    }
}

/// Whether a built view replaces the served one only when it is of a newer cycle.
#[derive(Clone, Copy)]
enum Serve {
    IfNewer,
    /// The same cycle, edited (a prune), unless a newer one arrived meanwhile.
    UnlessOlder,
}

/// Builds the view of `record` off the actor thread and serves it.
async fn publish_record(context: &Arc<AggregatorContext>, record: SnapshotRecord, serve: Serve) {
    let settings = context.settings.clone();
    let built = on_cycle_thread(move || {
        let view = NetworkView::build(
            &record,
            &settings.analytics,
            settings.latest_version.as_deref(),
        );
        (record, view)
    })
    .await;
    if let Some((record, view)) = built {
        let (record, view) = (Arc::new(record), Arc::new(view));
        match serve {
            Serve::IfNewer => context.cell.set_if_newer(record, view),
            Serve::UnlessOlder => context.cell.set_unless_older(record, view),
        }
    }
}

impl Actor for PnodeAggregator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        listen_to_control_and_reconnects(&self.bridge, ctx.address());
        self.refresh(ctx, None);
        ctx.run_interval(self.context.settings.interval, |aggregator, ctx| {
            aggregator.tick(ctx)
        });
        if let Some(mut leadership) = self.leadership.clone() {
            // Start a cycle as soon as this instance becomes the leader, not an interval later.
            ctx.spawn(
                async move { leadership.wait_for(Leadership::is_leader).await.is_ok() }
                    .into_actor(self)
                    .map(|became_leader, aggregator, ctx| {
                        if became_leader {
                            aggregator.tick(ctx);
                        }
                    }),
            );
        }
    }
}

impl Supervised for PnodeAggregator {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.busy = false;
        self.refreshing = false;
        self.registry = None;
        metrics::counter!(crate::metrics::ACTOR_RESTARTS_TOTAL, "actor" => "pnode_aggregator")
            .increment(1);
    }
}

impl Handler<ControlMessage> for PnodeAggregator {
    type Result = ();

    fn handle(&mut self, message: ControlMessage, ctx: &mut Context<Self>) {
        match message.0.event {
            ControlEvent::PnodeSnapshotUpdated { cycle } if !self.leadership().is_leader() => {
                self.refresh(ctx, Some(cycle));
            }
            ControlEvent::PnodeRegistryPruned { before } => {
                if let Some(registry) = &mut self.registry {
                    registry.retain(|_, entry| entry.last_seen >= before);
                }
                // What was written of the pruned addresses is forgotten with them (the next
                // cycle writes the others' rows once more).
                self.context
                    .writes
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .clear();
                if let Some(record) = self.context.cell.record() {
                    let mut record = (*record).clone();
                    record.entries.retain(|entry| entry.last_seen >= before);
                    let context = self.context.clone();
                    ctx.spawn(
                        async move { publish_record(&context, record, Serve::UnlessOlder).await }
                            .into_actor(self),
                    );
                }
            }
            _ => {}
        }
    }
}

impl Handler<BusReconnected> for PnodeAggregator {
    type Result = ();

    fn handle(&mut self, _: BusReconnected, ctx: &mut Context<Self>) {
        if !self.leadership().is_leader() {
            self.refresh(ctx, None);
        }
    }
}

/// Why a cycle did not run to the end.
#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    #[error("this instance does not hold the pNode lease")]
    NotLeader,
    #[error("a cycle is already running")]
    Busy,
    #[error("the pNode store: {0}")]
    Store(#[from] StoreError),
    #[error("the cycle's computation panicked")]
    ComputationPanicked,
}

/// Runs a cycle now (when leading): for tests and operators who cannot wait an interval.
#[derive(Message)]
#[rtype(result = "Result<CycleReport, CycleError>")]
pub struct RunCycle;

impl Handler<RunCycle> for PnodeAggregator {
    type Result = ResponseActFuture<Self, Result<CycleReport, CycleError>>;

    fn handle(&mut self, _: RunCycle, _: &mut Context<Self>) -> Self::Result {
        self.run_cycle()
    }
}

/// Whether this instance leads the pNode work, and the pollers' addresses.
#[derive(Message)]
#[rtype(result = "(bool, Vec<Addr<PnodePoller>>)")]
pub struct GetPollers;

impl Handler<GetPollers> for PnodeAggregator {
    type Result = MessageResult<GetPollers>;

    fn handle(&mut self, _: GetPollers, _: &mut Context<Self>) -> Self::Result {
        MessageResult((self.leadership().is_leader(), self.pollers.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_cycle_computes_at_a_lower_priority() {
        let stat = on_cycle_thread(|| std::fs::read_to_string("/proc/thread-self/stat").ok())
            .await
            .flatten()
            .expect("the thread's /proc entry");
        // After the command name, field 19 of the line is the niceness.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .expect("stat line")
            .1
            .split_whitespace()
            .collect();
        assert_eq!(fields[16], "19", "{stat}");
    }
}

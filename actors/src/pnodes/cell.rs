//! The snapshot an instance serves: the latest `NetworkView` (and the record it was built
//! from), swapped whole when a newer cycle arrives, and announced to this instance's live
//! sockets.

use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use nodegrid_protocol::pnode_api::changes::{PnodeChange, PnodeSocketMessage};
use nodegrid_protocol::pnode_api::network::SnapshotSummary;
use nodegrid_services::pnodes::api::snapshot_summary;
use nodegrid_services::pnodes::background::{Retirable, retire};
use nodegrid_services::pnodes::view::{NetworkView, SnapshotRecord};
use tokio::sync::broadcast;

use crate::pnodes::metrics;

/// Cycles a live socket may fall behind before it is sent a fresh snapshot instead.
const UPDATES_BUFFERED: usize = 16;

#[derive(Default)]
struct Served {
    record: Option<Arc<SnapshotRecord>>,
    view: Arc<NetworkView>,
}

impl Retirable for Served {
    fn still_read(&self) -> bool {
        self.view.still_read() || self.record.as_ref().is_some_and(Retirable::still_read)
    }
}

/// A newly served cycle, as the live sockets need it: small (a socket that falls behind holds
/// these, not whole snapshots), and encoded once for every socket without filters.
pub struct CycleServed {
    pub cycle: i64,
    pub previous_cycle: i64,
    pub summary: SnapshotSummary,
    pub changes: Vec<PnodeChange>,
    /// The `cycle` message with every change, as JSON.
    pub unfiltered: Bytes,
    /// Unix seconds, when this instance served the cycle.
    pub served_at: i64,
}

impl CycleServed {
    fn of(record: &SnapshotRecord, view: &NetworkView) -> CycleServed {
        let served_at = chrono::Utc::now().timestamp();
        let summary = snapshot_summary(view, served_at);
        let message = PnodeSocketMessage::Cycle {
            summary: summary.clone(),
            previous_cycle: record.previous_cycle,
            changes: record.changes.clone(),
            timestamp: served_at,
        };
        CycleServed {
            cycle: record.cycle,
            previous_cycle: record.previous_cycle,
            summary,
            changes: record.changes.clone(),
            unfiltered: Bytes::from(serde_json::to_vec(&message).unwrap_or_default()),
            served_at,
        }
    }
}

/// The snapshot this instance serves. Readers clone an `Arc` under a read lock held for no
/// longer than that; no lock is held across an await.
#[derive(Clone)]
pub struct SnapshotCell {
    served: Arc<RwLock<Served>>,
    updates: broadcast::Sender<Arc<CycleServed>>,
    swaps: Arc<Swaps>,
}

/// How many times the served snapshot was replaced, for threads that wait for it.
#[derive(Default)]
struct Swaps {
    count: Mutex<u64>,
    changed: Condvar,
}

impl Swaps {
    fn happened(&self) {
        *self.count.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.changed.notify_all();
    }
}

/// A cell seen from a thread of its own, which must not keep it alive: see
/// [`SnapshotCell::watch`].
pub struct CellWatch {
    served: Weak<RwLock<Served>>,
    swaps: Arc<Swaps>,
}

impl CellWatch {
    /// The served view; `None` once the cell is gone.
    pub fn view(&self) -> Option<Arc<NetworkView>> {
        let served = self.served.upgrade()?;
        let view = served
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .view
            .clone();
        Some(view)
    }

    /// Waits until the snapshot is replaced after the `seen`-th replacement, or `timeout`
    /// passes; returns the number of replacements so far.
    pub fn wait_for_swap(&self, seen: u64, timeout: Duration) -> u64 {
        let count = self
            .swaps
            .count
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (count, _) = self
            .swaps
            .changed
            .wait_timeout_while(count, timeout, |count| *count == seen)
            .unwrap_or_else(PoisonError::into_inner);
        *count
    }
}

impl Default for SnapshotCell {
    fn default() -> SnapshotCell {
        SnapshotCell {
            served: Arc::default(),
            updates: broadcast::channel(UPDATES_BUFFERED).0,
            swaps: Arc::default(),
        }
    }
}

impl SnapshotCell {
    /// A handle for a thread that follows the served snapshot without keeping the cell alive.
    pub fn watch(&self) -> CellWatch {
        CellWatch {
            served: Arc::downgrade(&self.served),
            swaps: self.swaps.clone(),
        }
    }

    /// Each cycle served from now on.
    pub fn updates(&self) -> broadcast::Receiver<Arc<CycleServed>> {
        self.updates.subscribe()
    }

    /// Tells the live sockets, if any is open.
    fn announce(&self, record: &SnapshotRecord, view: &NetworkView) {
        if self.updates.receiver_count() > 0 {
            let _ = self.updates.send(Arc::new(CycleServed::of(record, view)));
        }
    }

    pub fn view(&self) -> Arc<NetworkView> {
        self.served
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .view
            .clone()
    }

    pub fn record(&self) -> Option<Arc<SnapshotRecord>> {
        self.served
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .record
            .clone()
    }

    /// The cycle served (0 before any).
    pub fn cycle(&self) -> i64 {
        self.served
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .view
            .cycle
    }

    pub fn set(&self, record: Arc<SnapshotRecord>, view: Arc<NetworkView>) {
        observe(&view);
        let replaced = std::mem::replace(
            &mut *self.served.write().unwrap_or_else(PoisonError::into_inner),
            Served {
                record: Some(record.clone()),
                view: view.clone(),
            },
        );
        retire(Box::new(replaced));
        self.swaps.happened();
        self.announce(&record, &view);
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
        let (newer, replaced) = {
            let mut served = self.served.write().unwrap_or_else(PoisonError::into_inner);
            if !take(view.cycle, served.view.cycle) {
                return;
            }
            let newer = view.cycle > served.view.cycle;
            let replaced = std::mem::replace(
                &mut *served,
                Served {
                    record: Some(record.clone()),
                    view: view.clone(),
                },
            );
            (newer, replaced)
        };
        // Freed after the lock is let go, and not by a request: see `retire`.
        retire(Box::new(replaced));
        self.swaps.happened();
        observe(&view);
        // An edit of the served cycle (a prune) is not a cycle of its own.
        if newer {
            self.announce(&record, &view);
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

//! The snapshot an instance serves: the latest `NetworkView` (and the record it was built
//! from), swapped whole when a newer cycle arrives.

use std::sync::{Arc, PoisonError, RwLock};

use nodegrid_services::pnodes::view::{NetworkView, SnapshotRecord};

use crate::pnodes::metrics;

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

//! The answers of the pNode API, computed from the served [`NetworkView`] (and, for history,
//! from the rows the store read), as pure functions returning the protocol's bodies. The HTTP
//! handlers check the query, call one of these, and send what it returns.
//!
//! `now` (unix seconds) is always a parameter, so that every answer is a function of its
//! inputs.
//!
//! - [`nodes`] answers `/pnodes` and `/recommendations`.
//! - [`compare`] answers `/pnodes/compare`.
//! - [`registry`] answers `/registry`, `/registry/{address}`, `/graveyard`.
//! - [`network`]: snapshot health, network health and its alerts, analytics, consistency.
//! - [`operators`]: nodes grouped by operator pubkey.
//! - [`alert_views`]: alerts over the network and of one node.
//! - [`history`]: network history, growth, one node's history and metrics summary.

pub mod alert_views;
pub mod compare;
pub mod history;
pub mod network;
pub mod nodes;
pub mod operators;
pub mod page_cache;
pub mod registry;

use nodegrid_protocol::pnode_api::network::{NetworkStats, SnapshotSummary};

use super::alerts::Alert;
use super::view::{NetworkView, NodeView};

/// A pNode that neither the snapshot nor (for history) the history knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pNode {0} is not known")]
pub struct UnknownPnode(pub String);

/// The node at `address` with its alerts.
pub fn known_node<'a>(
    view: &'a NetworkView,
    address: &str,
) -> Result<(&'a NodeView, &'a [Alert]), UnknownPnode> {
    view.node(address)
        .ok_or_else(|| UnknownPnode(address.to_owned()))
}

/// Seconds since the snapshot was taken (never negative, whatever the clocks).
pub fn snapshot_age(view: &NetworkView, now: i64) -> i64 {
    now.saturating_sub(view.taken_at).max(0)
}

pub fn snapshot_summary(view: &NetworkView, now: i64) -> SnapshotSummary {
    let summary = &view.summary;
    SnapshotSummary {
        total_pnodes: summary.total_pnodes,
        online_pnodes: summary.online_pnodes,
        offline_pnodes: summary.offline_pnodes,
        public_pnodes: summary.public_pnodes,
        private_pnodes: summary.private_pnodes,
        total_ip_nodes: summary.total_ip_nodes,
        responding_ip_nodes: summary.responding_ip_nodes,
        snapshot_age_seconds: snapshot_age(view, now),
        last_updated: view.taken_at,
        cycle: view.cycle,
    }
}

pub fn network_stats(view: &NetworkView) -> NetworkStats {
    let summary = &view.summary;
    NetworkStats {
        total_storage_committed: summary.total_storage_committed,
        total_storage_used: summary.total_storage_used,
        avg_storage_usage_percent: summary.avg_storage_usage_percent,
        avg_uptime_hours: summary.avg_uptime_hours,
        avg_peer_count: summary.avg_peer_count,
        avg_cpu_percent: summary.avg_cpu_percent,
        avg_ram_used_percent: summary.avg_ram_used_percent,
        total_active_streams: summary.total_active_streams,
        total_bytes_processed: summary.total_bytes_processed,
        version_distribution: summary.version_distribution.clone(),
        latest_version: summary.latest_version.clone(),
        avg_score: summary.avg_score,
    }
}

/// A small network for the tests of the answers: what three seeds reported, built into a
/// view exactly as the aggregator builds it.
#[cfg(test)]
mod fixture {
    use nodegrid_protocol::prpc::PodReport;

    use crate::pnodes::AnalyticsConfig;
    use crate::pnodes::cycle::{RegistryEntry, SeedPoll};
    use crate::pnodes::view::{NetworkView, SnapshotRecord};

    pub const NOW: i64 = 1_800_000_000;
    pub const GIB: u64 = 1024 * 1024 * 1024;

    /// An online node seen by `peers` of the seeds `s0`, `s1`, `s2`.
    pub fn entry(address: &str, pubkey: Option<&str>, peers: usize) -> RegistryEntry {
        RegistryEntry {
            address: address.to_owned(),
            pubkey: pubkey.map(str::to_owned),
            version: Some("0.8.0".to_owned()),
            is_public: Some(true),
            storage_committed: Some(100 * GIB),
            storage_used: Some(50 * GIB),
            storage_usage_percent: Some(50.0),
            uptime: Some(30 * 86_400),
            first_seen: NOW - 40 * 86_400,
            last_seen: NOW,
            last_checked: NOW,
            peer_sources: ["s0", "s1", "s2"][..peers]
                .iter()
                .map(|seed| (*seed).to_owned())
                .collect(),
            gossip_appearances: 10,
            ..RegistryEntry::default()
        }
    }

    /// A node last seen `days` ago.
    pub fn gone(address: &str, days: i64) -> RegistryEntry {
        RegistryEntry {
            last_seen: NOW - days * 86_400,
            last_checked: NOW - days * 86_400,
            peer_sources: Vec::new(),
            ..entry(address, None, 0)
        }
    }

    pub fn seed(label: &str, pods: Option<Vec<PodReport>>) -> SeedPoll {
        SeedPoll {
            seed: label.to_owned(),
            version: Some("0.8.0".to_owned()),
            stats: None,
            pods,
            pods_method: Some("get-pods-with-stats".to_owned()),
            error: None,
            latency_ms: 12,
            polled_at: NOW,
            tally: Default::default(),
        }
    }

    pub fn view_of(entries: Vec<RegistryEntry>) -> NetworkView {
        let record = SnapshotRecord {
            cycle: 3,
            taken_at: NOW,
            interval_secs: 60,
            seeds: vec![
                seed("s0", Some(Vec::new())),
                seed("s1", Some(Vec::new())),
                seed("s2", None),
            ],
            entries,
            ..SnapshotRecord::default()
        };
        NetworkView::build(&record, &AnalyticsConfig::default(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{NOW, entry, gone, view_of};
    use super::*;

    #[test]
    fn the_summary_counts_the_snapshot_and_its_age() {
        let view = view_of(vec![
            entry("10.0.0.1:9001", None, 3),
            gone("10.0.0.2:9001", 5),
        ]);
        let summary = snapshot_summary(&view, NOW + 30);
        assert_eq!((summary.total_pnodes, summary.online_pnodes), (2, 1));
        assert_eq!(
            (summary.total_ip_nodes, summary.responding_ip_nodes),
            (3, 2)
        );
        assert_eq!(summary.snapshot_age_seconds, 30);
        assert_eq!(snapshot_age(&view, NOW - 10), 0, "never negative");
        assert_eq!(
            known_node(&view, "nowhere:1").err(),
            Some(UnknownPnode("nowhere:1".to_owned()))
        );
        assert_eq!(
            network_stats(&view).total_storage_committed,
            100 * 1024 * 1024 * 1024
        );
    }
}

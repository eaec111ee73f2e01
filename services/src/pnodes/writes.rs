//! What a cycle writes to Postgres beyond its snapshot record: only what changed.
//!
//! The snapshot record (rewritten whole every cycle) holds every entry exactly; the
//! `pnode_registry` table, the per-node history and the lightweight statuses are written for a
//! node when something worth keeping changed, and otherwise at least every
//! [`STEADY_WRITE_EVERY_SECS`] while the node is seen, so their `last_seen` is coarser than the
//! record's. A new leader goes on from the table overlaid with the record.
//!
//! The leader remembers what it wrote ([`WriteTracker`]); a failed write is forgotten so that
//! the next cycle writes it again, and a deposed leader forgets everything.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use nodegrid_protocol::pnode_api::nodes::LightStatus;

use super::cycle::RegistryEntry;
use super::view::{NetworkView, NodeView};

/// A node that changes nothing worth keeping is still written this often (seconds).
pub const STEADY_WRITE_EVERY_SECS: i64 = 300;
/// A node's history rows are at least this far apart (seconds) when only its figures changed
/// (storage, score, peers); going on- or offline, or another version, is written at once.
pub const HISTORY_SPACING_SECS: i64 = 60;

/// One address's lightweight status, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRow {
    pub address: String,
    pub status: LightStatus,
    pub last_ip: Option<String>,
    pub last_seen: i64,
}

/// The seed's status of a node: offline, else public or private as it says, else unknown; and
/// the seed that reported it (the first, in label order).
pub fn light_status(node: &NodeView) -> (LightStatus, Option<String>) {
    let status = match (node.is_online, node.is_public) {
        (false, _) => LightStatus::Offline,
        (true, Some(true)) => LightStatus::Public,
        (true, Some(false)) => LightStatus::Private,
        (true, None) => LightStatus::Unknown,
    };
    (status, node.peer_sources.first().cloned())
}

/// What one cycle writes besides the record: indexes into the record's entries and the view's
/// nodes, and the changed statuses.
#[derive(Debug, Default)]
pub struct CycleWrites {
    pub registry: Vec<usize>,
    pub history: Vec<usize>,
    pub statuses: Vec<StatusRow>,
}

/// When each kind of row of an address was written, and what it held.
#[derive(Debug, Clone, Copy)]
struct Written {
    fingerprint: u64,
    /// History only: what is written at once when it changes (presence, version).
    state: u64,
    at: i64,
}

/// What this leader wrote, by address.
#[derive(Debug, Default)]
pub struct WriteTracker {
    registry: HashMap<String, Written>,
    history: HashMap<String, Written>,
    statuses: HashMap<String, Written>,
}

fn fingerprint(write: impl FnOnce(&mut std::collections::hash_map::DefaultHasher)) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    write(&mut hasher);
    hasher.finish()
}

/// Why a row is to be written, if it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// Never written, or something worth keeping changed: written this cycle.
    Changed,
    /// Unchanged, but the steady write is due since `since`: written when the cycle's budget
    /// allows, oldest first, so that a deployment's steady writes spread over the cycles
    /// rather than all landing in one.
    Steady { since: i64 },
}

fn due(written: Option<&Written>, fingerprint: u64, at: i64) -> Option<Due> {
    match written {
        None => Some(Due::Changed),
        Some(written) if written.fingerprint != fingerprint => Some(Due::Changed),
        Some(written) if at >= written.at + STEADY_WRITE_EVERY_SECS => {
            Some(Due::Steady { since: written.at })
        }
        Some(_) => None,
    }
}

/// [`due`] for history rows: a new state at once, new figures no sooner than
/// [`HISTORY_SPACING_SECS`] after the last row.
fn history_due(written: Option<&Written>, state: u64, figures: u64, at: i64) -> Option<Due> {
    match written {
        None => Some(Due::Changed),
        Some(written) if written.state != state => Some(Due::Changed),
        Some(written)
            if written.fingerprint != figures && at >= written.at + HISTORY_SPACING_SECS =>
        {
            Some(Due::Changed)
        }
        Some(written) if at >= written.at + STEADY_WRITE_EVERY_SECS => {
            Some(Due::Steady { since: written.at })
        }
        Some(_) => None,
    }
}

/// The rows to write of one kind: every changed one, and the longest-waiting steady ones up to
/// `budget`.
fn choose(mut candidates: Vec<(usize, Due)>, budget: usize) -> Vec<usize> {
    let steady_since = |due: &Due| match due {
        Due::Changed => i64::MIN,
        Due::Steady { since } => *since,
    };
    candidates.sort_by_key(|(index, due)| (steady_since(due), *index));
    let changed = candidates
        .iter()
        .filter(|(_, due)| *due == Due::Changed)
        .count();
    candidates.truncate(changed + budget);
    let mut chosen: Vec<usize> = candidates.into_iter().map(|(index, _)| index).collect();
    chosen.sort_unstable();
    chosen
}

impl WriteTracker {
    /// Decides what a cycle writes and notes it as written (call [`Self::forget`] when the
    /// write fails). `history_cutoff`: nodes last seen before it get no history row.
    /// `steady_budget`: unchanged rows written at most, per kind (enough to go round every
    /// node within the steady period at the deployment's interval).
    pub fn plan(
        &mut self,
        entries: &[RegistryEntry],
        view: &NetworkView,
        taken_at: i64,
        history_cutoff: i64,
        steady_budget: usize,
    ) -> CycleWrites {
        let mut registry = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            // Only what this cycle touched: a node long gone changes nothing.
            if entry.last_seen != taken_at && entry.last_gossip_drop != Some(taken_at) {
                continue;
            }
            let print = registry_fingerprint(entry);
            if let Some(due) = due(self.registry.get(&entry.address), print, entry.last_seen) {
                registry.push((index, due));
            }
        }
        let mut history = Vec::new();
        let mut statuses = Vec::new();
        for (index, node) in view.nodes.iter().enumerate() {
            if node.last_seen >= history_cutoff {
                let (state, figures) = history_fingerprints(node);
                let written = self.history.get(&node.address);
                match history_due(written, state, figures, taken_at) {
                    // An offline node's history says so once; nothing moves while it is gone.
                    Some(Due::Steady { .. }) if !node.is_online => {}
                    Some(due) => history.push((index, due)),
                    None => {}
                }
            }
            let (status, last_ip) = light_status(node);
            let print = fingerprint(|h| {
                status.hash(h);
                last_ip.hash(h);
            });
            if let Some(due) = due(self.statuses.get(&node.address), print, node.last_seen) {
                statuses.push((index, due));
            }
        }
        let writes = CycleWrites {
            registry: choose(registry, steady_budget),
            history: choose(history, steady_budget),
            statuses: choose(statuses, steady_budget)
                .into_iter()
                .map(|index| {
                    let node = &view.nodes[index];
                    let (status, last_ip) = light_status(node);
                    StatusRow {
                        address: node.address.clone(),
                        status,
                        last_ip,
                        last_seen: node.last_seen,
                    }
                })
                .collect(),
        };
        for &index in &writes.registry {
            let entry = &entries[index];
            let written = Written {
                fingerprint: registry_fingerprint(entry),
                state: 0,
                at: entry.last_seen,
            };
            self.registry.insert(entry.address.clone(), written);
        }
        for &index in &writes.history {
            let node = &view.nodes[index];
            let (state, figures) = history_fingerprints(node);
            let written = Written {
                fingerprint: figures,
                state,
                at: taken_at,
            };
            self.history.insert(node.address.clone(), written);
        }
        for row in &writes.statuses {
            let written = Written {
                fingerprint: fingerprint(|h| {
                    row.status.hash(h);
                    row.last_ip.hash(h);
                }),
                state: 0,
                at: row.last_seen,
            };
            self.statuses.insert(row.address.clone(), written);
        }
        writes
    }

    /// Forgets a plan's rows (its write failed): the next cycle writes them again.
    pub fn forget(&mut self, writes: &CycleWrites, entries: &[RegistryEntry], view: &NetworkView) {
        for &index in &writes.registry {
            self.registry.remove(&entries[index].address);
        }
        for &index in &writes.history {
            self.history.remove(&view.nodes[index].address);
        }
        for row in &writes.statuses {
            self.statuses.remove(&row.address);
        }
    }

    /// Forgets everything (this instance stopped leading: another may have written since).
    pub fn clear(&mut self) {
        *self = WriteTracker::default();
    }
}

/// What makes a registry row worth writing again: the node's identity and its presence in
/// gossip. Clocks, counters and figures that move with every report (`last_seen`, uptime,
/// storage, appearances) are brought up to date by the steady write; the record and the
/// history have them exactly.
fn registry_fingerprint(entry: &RegistryEntry) -> u64 {
    fingerprint(|h| {
        entry.pubkey.hash(h);
        entry.version.hash(h);
        entry.is_public.hash(h);
        entry.rpc_port.hash(h);
        entry.present.hash(h);
        entry.peer_sources.hash(h);
        entry.source_ips.hash(h);
        entry.gossip_disappearances.hash(h);
        entry.last_gossip_drop.hash(h);
        entry.last_gossip_appearance.hash(h);
    })
}

/// What makes a history row worth writing: its state (presence, version), and the figures a
/// chart shows, but uptime (which grows every cycle); the score to the hundredth, as shown.
fn history_fingerprints(node: &NodeView) -> (u64, u64) {
    let state = fingerprint(|h| {
        node.is_online.hash(h);
        node.version.hash(h);
    });
    let figures = fingerprint(|h| {
        node.storage_committed.hash(h);
        node.storage_used.hash(h);
        node.peer_count.hash(h);
        node.peer_sources.hash(h);
        node.is_public.hash(h);
        ((node.score * 100.0).round() as i64).hash(h);
        ((node.scores.trust.score * 100.0).round() as i64).hash(h);
        ((node.scores.capacity.score * 100.0).round() as i64).hash(h);
    });
    (state, figures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pnodes::AnalyticsConfig;
    use crate::pnodes::cycle::{Registry, SeedPoll, apply_cycle};
    use crate::pnodes::view::SnapshotRecord;
    use nodegrid_protocol::prpc::{ParseTally, PodReport};

    fn cycle(
        registry: &mut Registry,
        pods: &[(&str, u64)],
        now: i64,
    ) -> (Vec<RegistryEntry>, NetworkView) {
        let poll = SeedPoll {
            seed: "s".into(),
            version: None,
            stats: None,
            pods: Some(
                pods.iter()
                    .map(|(address, used)| PodReport {
                        address: (*address).to_owned(),
                        uptime: Some(now as u64),
                        storage_used: Some(*used),
                        is_public: Some(true),
                        ..PodReport::default()
                    })
                    .collect(),
            ),
            pods_method: None,
            error: None,
            latency_ms: 0,
            polled_at: now,
            tally: ParseTally::default(),
        };
        apply_cycle(registry, &[poll], now);
        let mut entries: Vec<RegistryEntry> = registry.values().cloned().collect();
        entries.sort_by(|a, b| a.address.cmp(&b.address));
        let record = SnapshotRecord {
            cycle: now,
            taken_at: now,
            interval_secs: 10,
            entries: entries.clone(),
            ..SnapshotRecord::default()
        };
        (
            entries,
            NetworkView::build(&record, &AnalyticsConfig::default(), None),
        )
    }

    #[test]
    fn only_changes_are_written_until_the_steady_write_is_due() {
        let mut registry = Registry::new();
        let mut tracker = WriteTracker::default();
        let (entries, view) = cycle(&mut registry, &[("a:1", 10), ("b:1", 10)], 1_000);
        let first = tracker.plan(&entries, &view, 1_000, 0, 100);
        assert_eq!(
            (
                first.registry.len(),
                first.history.len(),
                first.statuses.len()
            ),
            (2, 2, 2)
        );

        // Ten seconds on, only b's storage moved (uptime grew for both: not a change): too
        // soon for its history; a minute on, its history shows it. The registry row waits for
        // its steady write.
        let (entries, view) = cycle(&mut registry, &[("a:1", 10), ("b:1", 20)], 1_010);
        let early = tracker.plan(&entries, &view, 1_010, 0, 100);
        assert!(early.history.is_empty() && early.registry.is_empty());
        let (entries, view) = cycle(&mut registry, &[("a:1", 10), ("b:1", 20)], 1_060);
        let second = tracker.plan(&entries, &view, 1_060, 0, 100);
        let history_rows: Vec<&str> = second
            .history
            .iter()
            .map(|&i| view.nodes[i].address.as_str())
            .collect();
        assert_eq!(history_rows, ["b:1"]);
        assert!(second.registry.is_empty());
        assert!(second.statuses.is_empty());

        // A failed write is forgotten and written again.
        tracker.forget(&second, &entries, &view);
        let (entries, view) = cycle(&mut registry, &[("a:1", 10), ("b:1", 20)], 1_070);
        let retried = tracker.plan(&entries, &view, 1_070, 0, 100);
        assert_eq!(retried.history.len(), 1);

        // Five minutes after the first write, every row seen is due again; a budget of one
        // takes one now and the other next cycle.
        let later = 1_000 + STEADY_WRITE_EVERY_SECS;
        let (entries, view) = cycle(&mut registry, &[("a:1", 10), ("b:1", 20)], later);
        let steady = tracker.plan(&entries, &view, later, 0, 1);
        assert_eq!(steady.registry.len(), 1);
        assert_eq!(steady.statuses.len(), 1);
        let (entries, view) = cycle(&mut registry, &[("a:1", 10), ("b:1", 20)], later + 10);
        let next = tracker.plan(&entries, &view, later + 10, 0, 1);
        assert_eq!(next.registry.len(), 1);
        assert_ne!(
            entries[next.registry[0]].address,
            entries[steady.registry[0]].address
        );
        assert!(
            tracker
                .plan(&entries, &view, later + 10, 0, 1)
                .registry
                .is_empty()
        );
    }
}

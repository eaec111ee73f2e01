//! One aggregation cycle: what the seeds answered, merged into the registry.
//!
//! - Pods are merged by address: the report with the newest `last_seen_timestamp` wins, and
//!   fields it leaves unknown are filled from the other reports; `peer_sources` are the seeds
//!   that reported the pod in this cycle, `source_ips` every seed that ever did.
//! - Gossip consistency: every cycle a node is in gossip counts one appearance; a node that was
//!   in gossip and is no longer counts one disappearance, but only when at least one seed that
//!   reported it before answered this cycle (a seed that is down is not the node's fault).
//!   `consistency_score = appearances / (appearances + disappearances)`.
//! - A cycle in which no seed answered changes nothing.

use std::collections::{BTreeSet, HashMap};

use nodegrid_protocol::prpc::{NodeStats, ParseTally, PodReport};
use serde::{Deserialize, Serialize};

/// What one seed answered in one cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedPoll {
    /// The seed's label (see [`super::Seed::label`]).
    pub seed: String,
    pub version: Option<String>,
    pub stats: Option<NodeStats>,
    /// `None` when the pod list could not be had.
    pub pods: Option<Vec<PodReport>>,
    /// Which method gave the pods: `get-pods-with-stats` or the `get-pods` fallback.
    pub pods_method: Option<String>,
    pub error: Option<String>,
    pub latency_ms: u64,
    pub polled_at: i64,
    pub tally: ParseTally,
}

impl SeedPoll {
    pub fn succeeded(&self) -> bool {
        self.pods.is_some()
    }
}

/// Everything known of one pNode, kept across cycles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RegistryEntry {
    pub address: String,
    pub pubkey: Option<String>,
    pub version: Option<String>,
    pub last_seen_timestamp: Option<i64>,
    pub is_public: Option<bool>,
    pub rpc_port: Option<u16>,
    pub storage_committed: Option<u64>,
    pub storage_used: Option<u64>,
    pub storage_usage_percent: Option<f64>,
    pub uptime: Option<u64>,
    /// When this deployment first saw the node in gossip (unix seconds).
    pub first_seen: i64,
    /// The last cycle in which the node was in gossip.
    pub last_seen: i64,
    /// The last cycle that looked for it.
    pub last_checked: i64,
    /// Seeds that reported the node in the last cycle that saw it.
    pub peer_sources: Vec<String>,
    /// Every seed that ever reported it.
    pub source_ips: Vec<String>,
    pub gossip_appearances: u64,
    pub gossip_disappearances: u64,
    pub last_gossip_appearance: Option<i64>,
    pub last_gossip_drop: Option<i64>,
    /// Whether the node was in gossip in the last cycle.
    pub present: bool,
    /// `storage_used` one cycle earlier, for the growth trend.
    pub storage_used_previous: Option<u64>,
}

impl RegistryEntry {
    pub fn consistency_score(&self) -> f64 {
        let total = self.gossip_appearances + self.gossip_disappearances;
        if total == 0 {
            1.0
        } else {
            self.gossip_appearances as f64 / total as f64
        }
    }

    /// 1 when storage grew since the last cycle, 0 when it shrank, 0.5 when flat or unknown.
    pub fn growth_trend(&self) -> f64 {
        match (self.storage_used_previous, self.storage_used) {
            (Some(before), Some(now)) if now > before => 1.0,
            (Some(before), Some(now)) if now < before => 0.0,
            _ => 0.5,
        }
    }
}

/// All known pNodes by address.
pub type Registry = HashMap<String, RegistryEntry>;

/// What a cycle did, for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CycleStats {
    pub seeds_ok: usize,
    pub seeds_failed: usize,
    pub pods_reported: usize,
    pub unique_pods: usize,
    pub new_nodes: usize,
    pub disappeared: usize,
    /// No seed answered: the registry was left alone.
    pub skipped: bool,
}

/// Merges the pods of every seed that answered: the winning report and who reported it.
pub fn merge_reports(polls: &[SeedPoll]) -> HashMap<String, (PodReport, BTreeSet<String>)> {
    let mut merged: HashMap<String, (PodReport, BTreeSet<String>)> = HashMap::new();
    for poll in polls {
        let Some(pods) = &poll.pods else { continue };
        for pod in pods {
            match merged.get_mut(&pod.address) {
                None => {
                    merged.insert(
                        pod.address.clone(),
                        (pod.clone(), BTreeSet::from([poll.seed.clone()])),
                    );
                }
                Some((best, sources)) => {
                    sources.insert(poll.seed.clone());
                    if pod.last_seen_timestamp > best.last_seen_timestamp {
                        let older = std::mem::replace(best, pod.clone());
                        fill_unknown(best, &older);
                    } else {
                        fill_unknown(best, pod);
                    }
                }
            }
        }
    }
    merged
}

fn fill_unknown(best: &mut PodReport, other: &PodReport) {
    fn fill<T: Clone>(slot: &mut Option<T>, other: &Option<T>) {
        if slot.is_none() {
            slot.clone_from(other);
        }
    }
    fill(&mut best.pubkey, &other.pubkey);
    fill(&mut best.version, &other.version);
    fill(&mut best.last_seen_timestamp, &other.last_seen_timestamp);
    fill(&mut best.is_public, &other.is_public);
    fill(&mut best.rpc_port, &other.rpc_port);
    fill(&mut best.storage_committed, &other.storage_committed);
    fill(&mut best.storage_used, &other.storage_used);
    fill(
        &mut best.storage_usage_percent,
        &other.storage_usage_percent,
    );
    fill(&mut best.uptime, &other.uptime);
}

/// Applies one cycle's answers to the registry at time `now` (unix seconds).
pub fn apply_cycle(registry: &mut Registry, polls: &[SeedPoll], now: i64) -> CycleStats {
    let answered: BTreeSet<&str> = polls
        .iter()
        .filter(|poll| poll.succeeded())
        .map(|poll| poll.seed.as_str())
        .collect();
    let mut stats = CycleStats {
        seeds_ok: answered.len(),
        seeds_failed: polls.len() - answered.len(),
        pods_reported: polls
            .iter()
            .filter_map(|poll| poll.pods.as_ref())
            .map(Vec::len)
            .sum(),
        ..CycleStats::default()
    };
    if answered.is_empty() {
        stats.skipped = true;
        return stats;
    }
    let merged = merge_reports(polls);
    stats.unique_pods = merged.len();
    let seen: std::collections::HashSet<String> = merged.keys().cloned().collect();
    for (address, (pod, sources)) in merged {
        let entry = registry.entry(address).or_insert_with(|| {
            stats.new_nodes += 1;
            RegistryEntry {
                address: pod.address.clone(),
                first_seen: now,
                ..RegistryEntry::default()
            }
        });
        entry.storage_used_previous = entry.storage_used;
        overwrite_known(entry, &pod);
        entry.peer_sources = sources.iter().cloned().collect();
        for source in sources {
            if !entry.source_ips.contains(&source) {
                entry.source_ips.push(source);
            }
        }
        entry.source_ips.sort();
        entry.gossip_appearances += 1;
        if !entry.present {
            entry.last_gossip_appearance = Some(now);
        }
        entry.present = true;
        entry.last_seen = now;
        entry.last_checked = now;
    }
    for entry in registry.values_mut() {
        if seen.contains(&entry.address) {
            continue;
        }
        entry.last_checked = now;
        let heard_from_a_source = entry
            .peer_sources
            .iter()
            .any(|source| answered.contains(source.as_str()));
        if entry.present && heard_from_a_source {
            entry.present = false;
            entry.gossip_disappearances += 1;
            entry.last_gossip_drop = Some(now);
            entry.peer_sources.clear();
            stats.disappeared += 1;
        }
    }
    stats
}

fn overwrite_known(entry: &mut RegistryEntry, pod: &PodReport) {
    fn set<T: Clone>(slot: &mut Option<T>, value: &Option<T>) {
        if value.is_some() {
            slot.clone_from(value);
        }
    }
    set(&mut entry.pubkey, &pod.pubkey);
    set(&mut entry.version, &pod.version);
    set(&mut entry.last_seen_timestamp, &pod.last_seen_timestamp);
    set(&mut entry.is_public, &pod.is_public);
    set(&mut entry.rpc_port, &pod.rpc_port);
    set(&mut entry.storage_committed, &pod.storage_committed);
    set(&mut entry.storage_used, &pod.storage_used);
    set(&mut entry.storage_usage_percent, &pod.storage_usage_percent);
    set(&mut entry.uptime, &pod.uptime);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(address: &str, seen: Option<i64>, used: Option<u64>) -> PodReport {
        PodReport {
            address: address.to_owned(),
            last_seen_timestamp: seen,
            storage_used: used,
            ..PodReport::default()
        }
    }

    fn poll(seed: &str, pods: Option<Vec<PodReport>>) -> SeedPoll {
        SeedPoll {
            seed: seed.to_owned(),
            version: None,
            stats: None,
            pods,
            pods_method: None,
            error: None,
            latency_ms: 0,
            polled_at: 0,
            tally: ParseTally::default(),
        }
    }

    #[test]
    fn the_newest_report_wins_and_unknown_fields_are_filled_from_the_others() {
        let mut newest = pod("a:1", Some(2_000_000_000), None);
        newest.version = Some("0.8.0".into());
        let mut older = pod("a:1", Some(1_900_000_000), Some(77));
        older.version = Some("0.7.0".into());
        let merged = merge_reports(&[
            poll("s1", Some(vec![older])),
            poll("s2", Some(vec![newest])),
            poll("s3", Some(vec![pod("b:1", None, None)])),
            poll("s4", None),
        ]);
        let (best, sources) = &merged["a:1"];
        assert_eq!(best.version.as_deref(), Some("0.8.0"));
        assert_eq!(best.storage_used, Some(77));
        assert_eq!(sources.iter().collect::<Vec<_>>(), ["s1", "s2"]);
        assert_eq!(merged.len(), 2);
    }

    #[test]
    fn consistency_counts_appearances_and_disappearances_over_cycles() {
        let mut registry = Registry::new();
        let seen = || poll("s1", Some(vec![pod("a:1", None, None)]));
        let unseen = || poll("s1", Some(vec![]));
        for (now, answer) in [(10, seen()), (20, seen()), (30, unseen()), (40, seen())] {
            apply_cycle(&mut registry, &[answer], now);
        }
        let entry = &registry["a:1"];
        assert_eq!(entry.gossip_appearances, 3);
        assert_eq!(entry.gossip_disappearances, 1);
        assert_eq!(entry.consistency_score(), 0.75);
        assert_eq!(entry.first_seen, 10);
        assert_eq!(entry.last_seen, 40);
        assert_eq!(entry.last_gossip_drop, Some(30));
        assert_eq!(entry.last_gossip_appearance, Some(40));
    }

    #[test]
    fn a_node_is_not_counted_gone_when_only_its_seeds_failed() {
        let mut registry = Registry::new();
        apply_cycle(
            &mut registry,
            &[
                poll("s1", Some(vec![pod("a:1", None, None)])),
                poll("s2", Some(vec![])),
            ],
            10,
        );
        let stats = apply_cycle(
            &mut registry,
            &[poll("s1", None), poll("s2", Some(vec![]))],
            20,
        );
        assert_eq!(stats.disappeared, 0);
        assert_eq!(registry["a:1"].gossip_disappearances, 0);
        assert_eq!(registry["a:1"].last_seen, 10);
        let skipped = apply_cycle(&mut registry, &[poll("s1", None)], 30);
        assert!(skipped.skipped);
        assert_eq!(registry["a:1"].last_checked, 20);
    }

    #[test]
    fn cycles_within_the_same_second_still_count_drops() {
        let mut registry = Registry::new();
        let with = |pods: Vec<PodReport>| [poll("s1", Some(pods))];
        apply_cycle(&mut registry, &with(vec![pod("a:1", None, None)]), 5);
        let stats = apply_cycle(&mut registry, &with(vec![]), 5);
        assert_eq!(stats.disappeared, 1);
        assert_eq!(registry["a:1"].gossip_disappearances, 1);
    }

    #[test]
    fn growth_follows_storage_between_cycles() {
        let mut registry = Registry::new();
        for (now, used) in [(1, 100), (2, 150)] {
            apply_cycle(
                &mut registry,
                &[poll("s", Some(vec![pod("a:1", None, Some(used))]))],
                now,
            );
        }
        assert_eq!(registry["a:1"].growth_trend(), 1.0);
        apply_cycle(
            &mut registry,
            &[poll("s", Some(vec![pod("a:1", None, Some(90))]))],
            3,
        );
        assert_eq!(registry["a:1"].growth_trend(), 0.0);
        apply_cycle(
            &mut registry,
            &[poll("s", Some(vec![pod("a:1", None, None)]))],
            4,
        );
        assert_eq!(registry["a:1"].growth_trend(), 0.5, "unknown now: flat");
    }
}

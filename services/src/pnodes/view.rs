//! The network view: what the API answers from, built from one stored snapshot record by a
//! pure function, so that the leader and every follower derive the same answers from the same
//! record. Scores, alerts, each node's JSON and the sort orders are computed once per cycle,
//! never per request.

use std::collections::{BTreeMap, HashMap};

pub use nodegrid_protocol::pnode_api::changes::PnodeChange;
pub use nodegrid_protocol::pnode_api::node::NodeView;
use nodegrid_protocol::pnode_api::params::PnodeSortKey;
use nodegrid_protocol::pnode_api::topology::{
    EdgeKind, NetworkTopology, PnodeProperties, SeedAnswer, SeedProperties, TopologyEdge,
    TopologyGroup, TopologyNode, TopologyStats,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::AnalyticsConfig;
use super::alerts::{Alert, AlertInputs, node_alerts};
use super::cycle::{RegistryEntry, SeedPoll};
use super::scoring::{
    HealthInputs, NetworkHealth, ScoreInputs, all_scores, network_health, round2,
};

/// What the leader stores per cycle and every instance builds its view from.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub cycle: i64,
    /// When the cycle ran (unix seconds).
    pub taken_at: i64,
    pub interval_secs: u64,
    pub seeds: Vec<SeedPoll>,
    pub entries: Vec<RegistryEntry>,
    /// The cycle `changes` are counted from (records written before changes were kept: 0).
    #[serde(default)]
    pub previous_cycle: i64,
    /// What changed since `previous_cycle`, node by node (see [`super::changes`]).
    #[serde(default)]
    pub changes: Vec<PnodeChange>,
}

/// Totals and averages of the network; the online nodes' unless named otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct NetworkSummary {
    pub total_pnodes: usize,
    pub online_pnodes: usize,
    pub offline_pnodes: usize,
    pub public_pnodes: usize,
    pub private_pnodes: usize,
    pub total_ip_nodes: usize,
    pub responding_ip_nodes: usize,
    pub total_storage_committed: u64,
    pub total_storage_used: u64,
    pub avg_storage_usage_percent: f64,
    pub avg_uptime_hours: f64,
    pub avg_peer_count: f64,
    pub avg_cpu_percent: f64,
    pub avg_ram_used_percent: f64,
    pub total_active_streams: u64,
    pub total_bytes_processed: u64,
    pub version_distribution: BTreeMap<String, usize>,
    pub latest_version: Option<String>,
    pub avg_score: f64,
    pub last_updated: i64,
}

/// Node indexes in ascending order of each sortable field (missing values first).
#[derive(Debug, Clone, Default)]
pub struct SortOrders {
    pub last_seen: Vec<u32>,
    pub uptime: Vec<u32>,
    pub score: Vec<u32>,
    pub storage_used: Vec<u32>,
    pub storage_usage_percent: Vec<u32>,
    pub first_seen: Vec<u32>,
}

impl SortOrders {
    pub fn get(&self, key: PnodeSortKey) -> &[u32] {
        match key {
            PnodeSortKey::LastSeen => &self.last_seen,
            PnodeSortKey::Uptime => &self.uptime,
            PnodeSortKey::Score => &self.score,
            PnodeSortKey::StorageUsed => &self.storage_used,
            PnodeSortKey::StorageUsagePercent => &self.storage_usage_percent,
            PnodeSortKey::FirstSeen => &self.first_seen,
        }
    }
}

/// The whole network as the API sees it after one cycle.
#[derive(Debug, Default)]
pub struct NetworkView {
    pub cycle: i64,
    pub taken_at: i64,
    pub interval_secs: u64,
    /// Nodes in address order, online and offline.
    pub nodes: Vec<NodeView>,
    /// Each node's JSON, serialised once.
    pub node_json: Vec<Box<RawValue>>,
    /// Each node's alerts.
    pub alerts: Vec<Vec<Alert>>,
    pub index: HashMap<String, usize>,
    /// Each node's address and pubkey, lower-cased, for `search=` without a per-request
    /// allocation per node.
    pub search_text: Vec<String>,
    pub orders: SortOrders,
    pub summary: NetworkSummary,
    pub health: NetworkHealth,
    pub seeds: Vec<SeedPoll>,
    /// The per-seed view (`/all-nodes`), serialised on first use: ~40,000 pod reports at
    /// 10,000 nodes are too many to serialise again for every request.
    seeds_json: std::sync::OnceLock<Box<RawValue>>,
    /// The gossip graph (`/network/topology`), likewise.
    topology_json: std::sync::OnceLock<Box<RawValue>>,
    /// `/pnodes` answers serialised in the current second.
    pub pages: crate::pnodes::api::page_cache::PageCache,
}

/// Serialises what `build` makes into `cell` the first time; returns the cached JSON after.
fn cached<T: Serialize>(
    cell: &std::sync::OnceLock<Box<RawValue>>,
    build: impl FnOnce() -> T,
) -> &RawValue {
    cell.get_or_init(|| serde_json::value::to_raw_value(&build()).unwrap_or_default())
}

impl NetworkView {
    /// Each seed's answer as it came, keyed by seed (a `BTreeMap<String, SeedAnswer>`).
    pub fn seeds_json(&self) -> &RawValue {
        cached(&self.seeds_json, || {
            self.seeds
                .iter()
                .map(|seed| {
                    let answer = SeedAnswer {
                        version: seed.version.clone(),
                        stats: seed.stats.clone(),
                        pods: seed.pods.clone(),
                        pods_method: seed.pods_method.clone(),
                        error: seed.error.clone(),
                        latency_ms: seed.latency_ms,
                        polled_at: seed.polled_at,
                        rejected: seed.tally,
                    };
                    (seed.seed.clone(), answer)
                })
                .collect::<BTreeMap<String, SeedAnswer>>()
        })
    }

    /// The gossip graph (a [`NetworkTopology`]): the seeds as `ip_node`s, the online pNodes as
    /// `pnode`s (`group` public or private), and one `gossip_connection` per seed that
    /// reported a pNode.
    pub fn topology_json(&self) -> &RawValue {
        cached(&self.topology_json, || self.topology())
    }

    fn topology(&self) -> NetworkTopology {
        let mut nodes: Vec<TopologyNode> = self
            .seeds
            .iter()
            .map(|seed| TopologyNode::IpNode {
                id: seed.seed.clone(),
                label: seed.seed.clone(),
                group: TopologyGroup::Ip,
                properties: SeedProperties {
                    version: seed.version.clone(),
                    responding: seed.succeeded(),
                    pod_count: seed.pods.as_ref().map(Vec::len),
                    latency_ms: seed.latency_ms,
                },
            })
            .collect();
        let mut edges = Vec::new();
        for node in self.nodes.iter().filter(|n| n.is_online) {
            nodes.push(TopologyNode::Pnode {
                id: node.address.clone(),
                label: node.address.clone(),
                group: if node.is_public == Some(true) {
                    TopologyGroup::Public
                } else {
                    TopologyGroup::Private
                },
                properties: PnodeProperties {
                    version: node.version.clone(),
                    score: node.score,
                    tier: node.tier.clone(),
                    storage_committed: node.storage_committed,
                    peer_count: node.peer_count,
                },
            });
            for source in &node.peer_sources {
                edges.push(TopologyEdge {
                    source: source.clone(),
                    target: node.address.clone(),
                    kind: EdgeKind::GossipConnection,
                });
            }
        }
        let pnodes = nodes.len() - self.seeds.len();
        let average = if pnodes == 0 {
            0.0
        } else {
            round2(edges.len() as f64 / pnodes as f64)
        };
        NetworkTopology {
            stats: TopologyStats {
                ip_nodes: self.seeds.len(),
                pnodes,
                edges: edges.len(),
                avg_connections_per_pnode: average,
            },
            nodes,
            edges,
        }
    }

    pub fn node(&self, address: &str) -> Option<(&NodeView, &[Alert])> {
        let index = *self.index.get(address)?;
        Some((self.nodes.get(index)?, self.alerts.get(index)?.as_slice()))
    }

    /// Builds the view of `record`. Offline means not in gossip for more than twice the
    /// interval; offline nodes score 0 and have the tier `offline`.
    pub fn build(
        record: &SnapshotRecord,
        config: &AnalyticsConfig,
        latest_override: Option<&str>,
    ) -> NetworkView {
        let offline_after = i64::try_from(record.interval_secs.max(1) * 2).unwrap_or(i64::MAX);
        let now = record.taken_at;
        let is_online =
            |entry: &RegistryEntry| now.saturating_sub(entry.last_seen) <= offline_after;

        let mut version_distribution: BTreeMap<String, usize> = BTreeMap::new();
        for entry in record.entries.iter().filter(|entry| is_online(entry)) {
            let version = entry
                .version
                .clone()
                .unwrap_or_else(|| "unknown".to_owned());
            *version_distribution.entry(version).or_default() += 1;
        }
        let most_common = version_distribution
            .iter()
            .filter(|(version, _)| version.as_str() != "unknown")
            .max_by(|a, b| a.1.cmp(b.1).then_with(|| a.0.cmp(b.0)))
            .map(|(version, count)| (version.clone(), *count));
        let latest_version = latest_override
            .map(str::to_owned)
            .or_else(|| most_common.as_ref().map(|(version, _)| version.clone()));

        let mut entries: Vec<&RegistryEntry> = record.entries.iter().collect();
        entries.sort_by(|a, b| a.address.cmp(&b.address));
        let mut nodes = Vec::with_capacity(entries.len());
        let mut alerts = Vec::with_capacity(entries.len());
        for entry in entries {
            let online = is_online(entry);
            let consistency = entry.consistency_score();
            let scores = all_scores(
                &ScoreInputs {
                    uptime_secs: entry.uptime,
                    peer_count: entry.peer_sources.len(),
                    version: entry.version.as_deref(),
                    latest_version: latest_version.as_deref(),
                    consistency: Some(consistency),
                    storage_committed: entry.storage_committed,
                    storage_usage_percent: entry.storage_usage_percent,
                    growth_trend: Some(entry.growth_trend()),
                },
                &config.scoring,
            );
            let offline_duration = (!online).then(|| now.saturating_sub(entry.last_seen));
            alerts.push(node_alerts(
                &AlertInputs {
                    is_online: online,
                    offline_duration_secs: offline_duration.unwrap_or(0),
                    uptime_secs: entry.uptime,
                    storage_usage_percent: entry.storage_usage_percent,
                    version: entry.version.as_deref(),
                    latest_version: latest_version.as_deref(),
                    peer_count: entry.peer_sources.len(),
                    consistency,
                },
                &config.alerts,
            ));
            let (score, tier) = if online {
                (
                    scores.stake_confidence.composite_score,
                    scores.stake_confidence.rating.clone(),
                )
            } else {
                (0.0, "offline".to_owned())
            };
            nodes.push(NodeView {
                address: entry.address.clone(),
                pubkey: entry.pubkey.clone(),
                is_online: online,
                last_seen: entry.last_seen,
                last_checked: entry.last_checked,
                last_seen_timestamp: entry.last_seen_timestamp,
                version: entry.version.clone(),
                uptime: entry.uptime,
                is_public: entry.is_public,
                rpc_port: entry.rpc_port,
                storage_committed: entry.storage_committed,
                storage_used: entry.storage_used,
                storage_usage_percent: entry.storage_usage_percent,
                peer_count: if online { entry.peer_sources.len() } else { 0 },
                peer_sources: if online {
                    entry.peer_sources.clone()
                } else {
                    Vec::new()
                },
                first_seen: entry.first_seen,
                source_ips: entry.source_ips.clone(),
                gossip_appearances: entry.gossip_appearances,
                gossip_disappearances: entry.gossip_disappearances,
                last_gossip_appearance: entry.last_gossip_appearance,
                last_gossip_drop: entry.last_gossip_drop,
                consistency_score: round2(consistency),
                offline_duration,
                scores,
                score,
                tier,
            });
        }

        let summary = summarise(record, &nodes, version_distribution, latest_version);
        let online_nodes: Vec<&NodeView> = nodes.iter().filter(|node| node.is_online).collect();
        let health = network_health(
            &HealthInputs {
                total_nodes: nodes.len(),
                online_nodes: online_nodes.len(),
                most_common_version_nodes: most_common.map(|(_, count)| count).unwrap_or(0),
                composite_sum: online_nodes
                    .iter()
                    .map(|node| node.scores.stake_confidence.composite_score)
                    .sum(),
                peer_count_sum: online_nodes.iter().map(|node| node.peer_count).sum(),
            },
            &config.scoring,
        );
        let node_json = nodes
            .iter()
            .map(|node| serde_json::value::to_raw_value(node).unwrap_or_default())
            .collect();
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| (node.address.clone(), i))
            .collect();
        let orders = sort_orders(&nodes);
        let search_text = nodes
            .iter()
            .map(|node| {
                format!("{} {}", node.address, node.pubkey.as_deref().unwrap_or("")).to_lowercase()
            })
            .collect();
        NetworkView {
            search_text,
            cycle: record.cycle,
            taken_at: record.taken_at,
            interval_secs: record.interval_secs,
            nodes,
            node_json,
            alerts,
            index,
            orders,
            summary,
            health,
            seeds: record.seeds.clone(),
            seeds_json: std::sync::OnceLock::new(),
            topology_json: std::sync::OnceLock::new(),
            pages: Default::default(),
        }
    }
}

fn summarise(
    record: &SnapshotRecord,
    nodes: &[NodeView],
    version_distribution: BTreeMap<String, usize>,
    latest_version: Option<String>,
) -> NetworkSummary {
    let online: Vec<&NodeView> = nodes.iter().filter(|node| node.is_online).collect();
    let average = |values: Vec<f64>| {
        if values.is_empty() {
            0.0
        } else {
            round2(values.iter().sum::<f64>() / values.len() as f64)
        }
    };
    let stats: Vec<_> = record
        .seeds
        .iter()
        .filter_map(|seed| seed.stats.as_ref())
        .collect();
    NetworkSummary {
        total_pnodes: nodes.len(),
        online_pnodes: online.len(),
        offline_pnodes: nodes.len() - online.len(),
        public_pnodes: online.iter().filter(|n| n.is_public == Some(true)).count(),
        private_pnodes: online.iter().filter(|n| n.is_public != Some(true)).count(),
        total_ip_nodes: record.seeds.len(),
        responding_ip_nodes: record.seeds.iter().filter(|s| s.succeeded()).count(),
        total_storage_committed: online.iter().filter_map(|n| n.storage_committed).sum(),
        total_storage_used: online.iter().filter_map(|n| n.storage_used).sum(),
        avg_storage_usage_percent: average(
            online
                .iter()
                .filter_map(|n| n.storage_usage_percent)
                .collect(),
        ),
        avg_uptime_hours: average(
            online
                .iter()
                .filter_map(|n| n.uptime)
                .map(|secs| secs as f64 / 3_600.0)
                .collect(),
        ),
        avg_peer_count: average(online.iter().map(|n| n.peer_count as f64).collect()),
        avg_cpu_percent: average(stats.iter().filter_map(|s| s.cpu_percent).collect()),
        avg_ram_used_percent: average(
            stats
                .iter()
                .filter_map(|s| match (s.ram_used, s.ram_total) {
                    (Some(used), Some(total)) if total > 0 => {
                        Some(used as f64 / total as f64 * 100.0)
                    }
                    _ => None,
                })
                .collect(),
        ),
        total_active_streams: stats.iter().filter_map(|s| s.active_streams).sum(),
        total_bytes_processed: stats.iter().filter_map(|s| s.total_bytes).sum(),
        version_distribution,
        latest_version,
        avg_score: average(online.iter().map(|n| n.score).collect()),
        last_updated: record.taken_at,
    }
}

fn sort_orders(nodes: &[NodeView]) -> SortOrders {
    fn order<K: PartialOrd>(nodes: &[NodeView], key: impl Fn(&NodeView) -> K) -> Vec<u32> {
        let mut indexes: Vec<u32> = (0..nodes.len() as u32).collect();
        indexes.sort_by(|a, b| {
            key(&nodes[*a as usize])
                .partial_cmp(&key(&nodes[*b as usize]))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        indexes
    }
    SortOrders {
        last_seen: order(nodes, |n| n.last_seen),
        uptime: order(nodes, |n| n.uptime),
        score: order(nodes, |n| n.score),
        storage_used: order(nodes, |n| n.storage_used),
        storage_usage_percent: order(nodes, |n| n.storage_usage_percent.unwrap_or(-1.0)),
        first_seen: order(nodes, |n| n.first_seen),
    }
}

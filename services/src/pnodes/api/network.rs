//! The network as a whole: how fresh the snapshot is, the network's health and the alerts it
//! raises, the analytics page, and gossip consistency.

use nodegrid_protocol::pnode_api::history::GrowthMetrics;
use nodegrid_protocol::pnode_api::network::{
    AnalyticsResponse, ConsistencyResponse, ConsistencySummary, CurrentState, GossipConsistency,
    NetworkAlert, NetworkAlertType, NetworkHealthResponse, NodeConsistencyResponse, SnapshotHealth,
    SnapshotStatus, VersionAnalysis,
};
use nodegrid_protocol::pnode_api::node::Severity;
use nodegrid_protocol::pnode_api::params::ConsistencySortKey;
use nodegrid_protocol::pnode_api::queries::ConsistencyRequest;

use super::{UnknownPnode, known_node, network_stats, snapshot_age, snapshot_summary};
use crate::pnodes::scoring::round2;
use crate::pnodes::view::{NetworkView, NodeView};

/// Above this share of offline nodes, the network is told.
const HIGH_OFFLINE_RATIO: f64 = 0.2;

/// Healthy while the snapshot is younger than two polling intervals, degraded after,
/// unhealthy without one (cycle 0).
pub fn snapshot_health(
    view: &NetworkView,
    interval_secs: u64,
    seeds: usize,
    now: i64,
) -> SnapshotHealth {
    let interval = interval_secs.max(1);
    if view.cycle == 0 {
        return SnapshotHealth {
            status: SnapshotStatus::Unhealthy,
            message: "no pNode snapshot yet".to_owned(),
            snapshot_age_seconds: None,
            last_updated: None,
            cache_ttl: interval,
            total_pnodes: 0,
            total_ip_nodes: seeds,
            cycle: None,
            timestamp: now,
        };
    }
    let age = snapshot_age(view, now);
    let stale = age >= i64::try_from(interval * 2).unwrap_or(i64::MAX);
    let (status, message) = if stale {
        (
            SnapshotStatus::Degraded,
            "the snapshot is older than two polling intervals",
        )
    } else {
        (SnapshotStatus::Healthy, "snapshot is fresh")
    };
    SnapshotHealth {
        status,
        message: message.to_owned(),
        snapshot_age_seconds: Some(age),
        last_updated: Some(view.taken_at),
        cache_ttl: interval,
        total_pnodes: view.summary.online_pnodes,
        total_ip_nodes: view.summary.total_ip_nodes,
        cycle: Some(view.cycle),
        timestamp: now,
    }
}

/// What the operators of the whole network should know: seeds not answering, many nodes
/// offline, poor health.
pub fn network_alerts(view: &NetworkView) -> Vec<NetworkAlert> {
    let mut alerts = Vec::new();
    let s = &view.summary;
    let mut raise = |severity, alert_type, message: String| {
        alerts.push(NetworkAlert {
            severity,
            alert_type,
            message,
        });
    };
    if s.total_ip_nodes > 0 && s.responding_ip_nodes < s.total_ip_nodes {
        raise(
            Severity::Warning,
            NetworkAlertType::IpNodesUnreachable,
            format!(
                "{} of {} IP nodes did not answer",
                s.total_ip_nodes - s.responding_ip_nodes,
                s.total_ip_nodes
            ),
        );
    }
    if s.total_pnodes > 0
        && (s.offline_pnodes as f64) / (s.total_pnodes as f64) > HIGH_OFFLINE_RATIO
    {
        raise(
            Severity::Warning,
            NetworkAlertType::HighOfflineRatio,
            format!(
                "{} of {} pNodes are offline",
                s.offline_pnodes, s.total_pnodes
            ),
        );
    }
    match view.health.status.as_str() {
        "critical" => raise(
            Severity::Critical,
            NetworkAlertType::NetworkHealth,
            "network health is critical".to_owned(),
        ),
        "degraded" => raise(
            Severity::Warning,
            NetworkAlertType::NetworkHealth,
            "network health is degraded".to_owned(),
        ),
        _ => {}
    }
    alerts
}

pub fn network_health(view: &NetworkView, now: i64) -> NetworkHealthResponse {
    NetworkHealthResponse {
        health: view.health.clone(),
        network_stats: network_stats(view),
        summary: snapshot_summary(view, now),
        alerts: network_alerts(view),
        timestamp: now,
    }
}

/// The current state, the last 24 hours' `growth`, version adoption, and advice.
pub fn analytics(view: &NetworkView, growth: GrowthMetrics, now: i64) -> AnalyticsResponse {
    let s = &view.summary;
    let on_latest = s
        .latest_version
        .as_ref()
        .and_then(|v| s.version_distribution.get(v))
        .copied()
        .unwrap_or(0);
    let latest_share = if s.online_pnodes == 0 {
        0.0
    } else {
        round2(on_latest as f64 / s.online_pnodes as f64 * 100.0)
    };
    let mut advice = Vec::new();
    if latest_share < 80.0 {
        advice.push(format!(
            "{latest_share}% of online nodes run the latest version: encourage upgrades"
        ));
    }
    if s.avg_peer_count < 3.0 {
        advice
            .push("average gossip presence is under 3 seeds: connectivity can improve".to_owned());
    }
    if s.offline_pnodes > s.online_pnodes / 5 {
        advice
            .push("more than a fifth of known nodes are offline: review the graveyard".to_owned());
    }
    AnalyticsResponse {
        current_state: CurrentState {
            summary: snapshot_summary(view, now),
            network_stats: network_stats(view),
            health: view.health.clone(),
        },
        growth,
        version_analysis: VersionAnalysis {
            latest_version: s.latest_version.clone(),
            nodes_on_latest: on_latest,
            latest_adoption_percent: latest_share,
            distribution: s.version_distribution.clone(),
            distinct_versions: s.version_distribution.len(),
        },
        recommendations: advice,
        timestamp: now,
    }
}

/// The nodes at or above `min_consistency`, sorted and limited, and every node under
/// `flapping_below` (whatever the filters).
pub fn consistency(
    view: &NetworkView,
    request: ConsistencyRequest,
    flapping_below: f64,
    now: i64,
) -> ConsistencyResponse {
    let mut nodes: Vec<&NodeView> = view
        .nodes
        .iter()
        .filter(|n| n.consistency_score >= request.min_consistency)
        .collect();
    match request.sort_by {
        ConsistencySortKey::Address => nodes.sort_by(|a, b| a.address.cmp(&b.address)),
        ConsistencySortKey::GossipDisappearances => {
            nodes.sort_by_key(|n| std::cmp::Reverse(n.gossip_disappearances))
        }
        ConsistencySortKey::ConsistencyScore => nodes.sort_by(|a, b| {
            a.consistency_score
                .total_cmp(&b.consistency_score)
                .then_with(|| a.address.cmp(&b.address))
        }),
    }
    let flapping: Vec<GossipConsistency> = view
        .nodes
        .iter()
        .filter(|n| n.consistency_score < flapping_below)
        .map(gossip_consistency)
        .collect();
    let scores: Vec<f64> = view.nodes.iter().map(|n| n.consistency_score).collect();
    ConsistencyResponse {
        nodes: nodes
            .iter()
            .take(request.limit)
            .map(|n| gossip_consistency(n))
            .collect(),
        summary: ConsistencySummary {
            total_nodes: view.nodes.len(),
            matching: nodes.len(),
            avg_consistency: if scores.is_empty() {
                0.0
            } else {
                round2(scores.iter().sum::<f64>() / scores.len() as f64)
            },
            flapping_threshold: flapping_below,
            flapping_count: flapping.len(),
        },
        flapping_nodes: flapping,
        timestamp: now,
    }
}

pub fn node_consistency(
    view: &NetworkView,
    address: &str,
    flapping_below: f64,
    now: i64,
) -> Result<NodeConsistencyResponse, UnknownPnode> {
    let (node, _) = known_node(view, address)?;
    Ok(NodeConsistencyResponse {
        address: node.address.clone(),
        consistency_score: node.consistency_score,
        gossip_appearances: node.gossip_appearances,
        gossip_disappearances: node.gossip_disappearances,
        last_gossip_appearance: node.last_gossip_appearance,
        last_gossip_drop: node.last_gossip_drop,
        is_flapping: node.consistency_score < flapping_below,
        flapping_threshold: flapping_below,
        first_seen: node.first_seen,
        last_seen: node.last_seen,
        is_online: node.is_online,
        timestamp: now,
    })
}

fn gossip_consistency(node: &NodeView) -> GossipConsistency {
    GossipConsistency {
        address: node.address.clone(),
        consistency_score: node.consistency_score,
        gossip_appearances: node.gossip_appearances,
        gossip_disappearances: node.gossip_disappearances,
        last_gossip_appearance: node.last_gossip_appearance,
        last_gossip_drop: node.last_gossip_drop,
        is_online: node.is_online,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{NOW, entry, gone, view_of};
    use super::*;
    use crate::pnodes::cycle::RegistryEntry;
    use crate::pnodes::view::NetworkView;

    fn flapper(address: &str, disappearances: u64) -> RegistryEntry {
        RegistryEntry {
            gossip_disappearances: disappearances,
            ..entry(address, None, 3)
        }
    }

    #[test]
    fn the_snapshot_is_healthy_then_degraded_and_unhealthy_without_one() {
        let view = view_of(vec![entry("10.0.0.1:9001", None, 3)]);
        let fresh = snapshot_health(&view, 60, 3, NOW + 119);
        assert_eq!(
            (fresh.status, fresh.cycle, fresh.total_pnodes),
            (SnapshotStatus::Healthy, Some(3), 1)
        );
        let stale = snapshot_health(&view, 60, 3, NOW + 120);
        assert_eq!(stale.status, SnapshotStatus::Degraded);
        let none = snapshot_health(&NetworkView::default(), 0, 9, NOW);
        assert_eq!(
            (none.status, none.cache_ttl, none.total_ip_nodes, none.cycle),
            (SnapshotStatus::Unhealthy, 1, 9, None)
        );
    }

    #[test]
    fn the_network_is_told_of_silent_seeds_and_many_offline_nodes() {
        // The fixture's third seed did not answer.
        let view = view_of(vec![
            entry("10.0.0.1:9001", None, 3),
            entry("10.0.0.2:9001", None, 3),
            gone("10.0.0.3:9001", 4),
        ]);
        let alerts = network_alerts(&view);
        let kinds: Vec<NetworkAlertType> = alerts.iter().map(|a| a.alert_type).collect();
        assert_eq!(
            kinds[..2],
            [
                NetworkAlertType::IpNodesUnreachable,
                NetworkAlertType::HighOfflineRatio
            ]
        );
        assert_eq!(alerts[0].message, "1 of 3 IP nodes did not answer");
        assert_eq!(alerts[1].message, "1 of 3 pNodes are offline");
    }

    #[test]
    fn consistency_sorts_filters_and_lists_every_flapping_node() {
        let view = view_of(vec![
            flapper("10.0.0.1:9001", 0),
            flapper("10.0.0.2:9001", 10),
            flapper("10.0.0.3:9001", 5),
        ]);
        let request = ConsistencyRequest {
            min_consistency: 0.0,
            sort_by: ConsistencySortKey::ConsistencyScore,
            limit: 2,
        };
        let answer = consistency(&view, request, 0.8, NOW);
        let order: Vec<&str> = answer.nodes.iter().map(|n| n.address.as_str()).collect();
        assert_eq!(
            order,
            ["10.0.0.2:9001", "10.0.0.3:9001"],
            "least consistent first"
        );
        assert_eq!(answer.summary.matching, 3);
        assert_eq!(answer.summary.flapping_count, 2);
        // 10/10, 10/20 and 10/15 → 1, 0.5, 0.67.
        assert_eq!(answer.summary.avg_consistency, 0.72);
        let consistent = consistency(
            &view,
            ConsistencyRequest {
                min_consistency: 0.9,
                sort_by: ConsistencySortKey::GossipDisappearances,
                ..request
            },
            0.8,
            NOW,
        );
        assert_eq!(consistent.nodes.len(), 1);
        assert_eq!(consistent.flapping_nodes.len(), 2, "whatever the filters");
        let one = node_consistency(&view, "10.0.0.2:9001", 0.8, NOW).expect("known");
        assert!(one.is_flapping);
        assert_eq!(
            (one.gossip_appearances, one.gossip_disappearances),
            (10, 10)
        );
    }

    #[test]
    fn analytics_advise_on_versions_connectivity_and_offline_nodes() {
        let view = view_of(vec![
            entry("10.0.0.1:9001", None, 1),
            RegistryEntry {
                version: Some("0.7.0".to_owned()),
                ..entry("10.0.0.2:9001", None, 1)
            },
            gone("10.0.0.3:9001", 4),
        ]);
        let growth = GrowthMetrics::NoHistory {
            hours: 24,
            data_points: 0,
            message: "no history in this window yet".to_owned(),
        };
        let answer = analytics(&view, growth.clone(), NOW);
        assert_eq!(answer.growth, growth);
        assert_eq!(answer.version_analysis.distinct_versions, 2);
        assert_eq!(answer.version_analysis.latest_adoption_percent, 50.0);
        assert_eq!(
            answer.recommendations,
            [
                "50% of online nodes run the latest version: encourage upgrades",
                "average gossip presence is under 3 seeds: connectivity can improve",
                "more than a fifth of known nodes are offline: review the graveyard",
            ]
        );
    }
}

//! The alerts raised on the nodes (computed once per snapshot by the view), filtered, counted
//! and listed: over the network (`/alerts`, `/alerts/critical`) and for one node.

use nodegrid_protocol::pnode_api::alerts::{
    AlertSummary, AlertsResponse, CriticalNode, NodeAlerts, NodeAlertsResponse, NodeInfo,
};
use nodegrid_protocol::pnode_api::queries::AlertFilters;

use super::{UnknownPnode, known_node};
use crate::pnodes::alerts::{Alert, Severity};
use crate::pnodes::view::{NetworkView, NodeView};

/// Alerts counted by severity and type.
pub fn alert_summary<'a>(alerts: impl Iterator<Item = &'a Alert>) -> AlertSummary {
    let mut summary = AlertSummary::default();
    for alert in alerts {
        summary.total += 1;
        match alert.severity {
            Severity::Critical => summary.critical += 1,
            Severity::Warning => summary.warning += 1,
            Severity::Info => summary.info += 1,
        }
        *summary.by_type.entry(alert.alert_type).or_default() += 1;
    }
    summary
}

/// The nodes with alerts that pass `filters`: the most critical alerts first, then the most
/// alerts, then by address; at most `limit` listed, all counted.
pub fn alerts(view: &NetworkView, filters: AlertFilters, now: i64) -> AlertsResponse {
    let keep = |alert: &&Alert| {
        filters.severity.is_none_or(|s| alert.severity == s)
            && filters.alert_type.is_none_or(|t| alert.alert_type == t)
    };
    let mut with_alerts: Vec<(&NodeView, Vec<&Alert>)> = view
        .nodes
        .iter()
        .zip(&view.alerts)
        .map(|(node, alerts)| (node, alerts.iter().filter(keep).collect::<Vec<_>>()))
        .filter(|(_, alerts)| !alerts.is_empty())
        .collect();
    with_alerts.sort_by(|a, b| {
        critical_count(&b.1)
            .cmp(&critical_count(&a.1))
            .then_with(|| b.1.len().cmp(&a.1.len()))
            .then_with(|| a.0.address.cmp(&b.0.address))
    });
    let critical_nodes = with_alerts
        .iter()
        .filter(|(_, alerts)| critical_count(alerts) > 0)
        .take(filters.limit)
        .map(|(node, alerts)| CriticalNode {
            address: node.address.clone(),
            alert_count: alerts.len(),
            critical_alerts: alerts
                .iter()
                .filter(|a| a.severity == Severity::Critical)
                .map(|a| (*a).clone())
                .collect(),
        })
        .collect();
    let nodes = with_alerts
        .iter()
        .take(filters.limit)
        .map(|(node, alerts)| NodeAlerts {
            address: node.address.clone(),
            is_online: node.is_online,
            alerts: alerts.iter().map(|a| (*a).clone()).collect(),
        })
        .collect();
    AlertsResponse {
        summary: alert_summary(
            with_alerts
                .iter()
                .flat_map(|(_, alerts)| alerts.iter().copied()),
        ),
        critical_nodes,
        nodes,
        nodes_checked: view.nodes.len(),
        nodes_with_alerts: with_alerts.len(),
        filters,
        timestamp: now,
    }
}

/// One node's alerts of `severity` (all without), and the figures they are about.
pub fn node_alerts(
    view: &NetworkView,
    address: &str,
    severity: Option<Severity>,
    now: i64,
) -> Result<NodeAlertsResponse, UnknownPnode> {
    let (node, alerts) = known_node(view, address)?;
    let alerts: Vec<Alert> = alerts
        .iter()
        .filter(|a| severity.is_none_or(|s| a.severity == s))
        .cloned()
        .collect();
    Ok(NodeAlertsResponse {
        address: node.address.clone(),
        summary: alert_summary(alerts.iter()),
        alerts,
        node_info: NodeInfo {
            is_online: node.is_online,
            version: node.version.clone(),
            uptime: node.uptime,
            storage_usage_percent: node.storage_usage_percent,
            peer_count: node.peer_count,
            score: node.score,
            tier: node.tier.clone(),
            last_seen: node.last_seen,
        },
        timestamp: now,
    })
}

fn critical_count(alerts: &[&Alert]) -> usize {
    alerts
        .iter()
        .filter(|a| a.severity == Severity::Critical)
        .count()
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{NOW, entry, gone, view_of};
    use super::*;
    use crate::pnodes::alerts::AlertType;
    use crate::pnodes::cycle::RegistryEntry;

    fn network() -> NetworkView {
        view_of(vec![
            // isolated (critical), underutilized (info)
            RegistryEntry {
                storage_usage_percent: Some(1.0),
                ..entry("10.0.0.1:9001", None, 1)
            },
            // weak_connectivity (warning)
            entry("10.0.0.2:9001", None, 2),
            // offline for 10 days (critical)
            gone("10.0.0.3:9001", 10),
            // none
            entry("10.0.0.4:9001", None, 3),
        ])
    }

    fn filters(severity: Option<Severity>, alert_type: Option<AlertType>) -> AlertFilters {
        AlertFilters {
            severity,
            alert_type,
            limit: 100,
        }
    }

    #[test]
    fn nodes_with_critical_alerts_come_first_and_everything_is_counted() {
        let view = network();
        let answer = alerts(&view, filters(None, None), NOW);
        let order: Vec<&str> = answer.nodes.iter().map(|n| n.address.as_str()).collect();
        assert_eq!(order, ["10.0.0.1:9001", "10.0.0.3:9001", "10.0.0.2:9001"]);
        assert_eq!((answer.nodes_checked, answer.nodes_with_alerts), (4, 3));
        let summary = &answer.summary;
        assert_eq!(
            (
                summary.total,
                summary.critical,
                summary.warning,
                summary.info
            ),
            (4, 2, 1, 1)
        );
        assert_eq!(summary.by_type.get(&AlertType::Isolated), Some(&1));
        let critical: Vec<(&str, usize, usize)> = answer
            .critical_nodes
            .iter()
            .map(|n| (n.address.as_str(), n.alert_count, n.critical_alerts.len()))
            .collect();
        assert_eq!(critical, [("10.0.0.1:9001", 2, 1), ("10.0.0.3:9001", 1, 1)]);
    }

    #[test]
    fn filters_and_the_limit_apply_to_the_lists_not_the_summary() {
        let view = network();
        let warnings = alerts(&view, filters(Some(Severity::Warning), None), NOW);
        assert_eq!(warnings.nodes_with_alerts, 1);
        assert!(warnings.critical_nodes.is_empty());
        let offline = alerts(&view, filters(None, Some(AlertType::Offline)), NOW);
        assert_eq!(offline.summary.total, 1);
        let one = alerts(
            &view,
            AlertFilters {
                limit: 1,
                ..filters(None, None)
            },
            NOW,
        );
        assert_eq!((one.nodes.len(), one.critical_nodes.len()), (1, 1));
        assert_eq!(one.summary.total, 4);
    }

    #[test]
    fn one_nodes_alerts_are_filtered_by_severity() {
        let view = network();
        let all = node_alerts(&view, "10.0.0.1:9001", None, NOW).expect("known");
        assert_eq!((all.alerts.len(), all.summary.critical), (2, 1));
        let info = node_alerts(&view, "10.0.0.1:9001", Some(Severity::Info), NOW).expect("known");
        assert_eq!(info.alerts[0].alert_type, AlertType::Underutilized);
        assert_eq!(info.summary.total, 1);
        assert_eq!(info.node_info.peer_count, 1);
        assert!(node_alerts(&view, "nowhere:1", None, NOW).is_err());
    }
}

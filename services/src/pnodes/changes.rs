//! A cycle's changes: the previous view against the new one, node by node. Computed once per
//! cycle by the leader and stored with the snapshot, so that every instance's sockets and the
//! webhooks see the same list.

use nodegrid_protocol::pnode_api::changes::{
    ChangeKind, ChangedAlert, ChangedNode, PnodeChange, SCORE_CHANGE_POINTS,
};

use super::alerts::Alert;
use super::view::{NetworkView, NodeView};
use crate::webhooks::OutgoingEvent;

/// What changed from `previous` to `current`, in `current`'s address order; a node's changes
/// in the order of [`ChangeKind`]. Nodes no longer in `current` (pruned) are not changes.
pub fn diff(previous: &NetworkView, current: &NetworkView) -> Vec<PnodeChange> {
    let mut changes = Vec::new();
    for (index, node) in current.nodes.iter().enumerate() {
        let alerts = &current.alerts[index];
        let before = previous
            .index
            .get(&node.address)
            .map(|&at| (&previous.nodes[at], &previous.alerts[at]));
        let change = |change: ChangeKind| PnodeChange {
            change,
            node: changed_node(node),
            previous_score: None,
            previous_tier: None,
            alert: None,
        };
        let Some((was, had)) = before else {
            if node.is_online {
                changes.push(change(ChangeKind::Appeared));
            }
            alerts_between(&[], alerts, node, &mut changes);
            continue;
        };
        match (was.is_online, node.is_online) {
            (true, false) => changes.push(change(ChangeKind::WentOffline)),
            (false, true) => changes.push(change(ChangeKind::CameBack)),
            (true, true) => {
                if (node.score - was.score).abs() >= SCORE_CHANGE_POINTS {
                    changes.push(PnodeChange {
                        previous_score: Some(was.score),
                        ..change(ChangeKind::ScoreChanged)
                    });
                }
                if node.tier != was.tier {
                    changes.push(PnodeChange {
                        previous_tier: Some(was.tier.clone()),
                        ..change(ChangeKind::TierChanged)
                    });
                }
            }
            (false, false) => {}
        }
        alerts_between(had, alerts, node, &mut changes);
    }
    changes
}

/// Alerts raised (in `now`, not in `before`) and cleared (the other way), by type.
fn alerts_between(before: &[Alert], now: &[Alert], node: &NodeView, out: &mut Vec<PnodeChange>) {
    let mut push = |kind: ChangeKind, alert: &Alert| {
        out.push(PnodeChange {
            change: kind,
            node: changed_node(node),
            previous_score: None,
            previous_tier: None,
            alert: Some(ChangedAlert {
                alert_type: alert.alert_type,
                severity: alert.severity,
                message: alert.message.clone(),
            }),
        });
    };
    for alert in now {
        if !before.iter().any(|old| old.alert_type == alert.alert_type) {
            push(ChangeKind::AlertRaised, alert);
        }
    }
    for alert in before {
        if !now.iter().any(|new| new.alert_type == alert.alert_type) {
            push(ChangeKind::AlertCleared, alert);
        }
    }
}

fn changed_node(node: &NodeView) -> ChangedNode {
    ChangedNode {
        address: node.address.clone(),
        pubkey: node.pubkey.clone(),
        is_online: node.is_online,
        version: node.version.clone(),
        is_public: node.is_public,
        score: node.score,
        tier: node.tier.clone(),
    }
}

/// The webhook events of a cycle's changes (score movements are not events).
pub fn events(changes: &[PnodeChange]) -> Vec<OutgoingEvent> {
    changes
        .iter()
        .filter_map(|change| {
            let event_type = change.change.event_type()?;
            Some(OutgoingEvent {
                event_type,
                data: serde_json::to_value(change).unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pnodes::AnalyticsConfig;
    use crate::pnodes::alerts::AlertType;
    use crate::pnodes::cycle::{Registry, RegistryEntry, SeedPoll, apply_cycle};
    use crate::pnodes::view::SnapshotRecord;
    use nodegrid_protocol::prpc::{ParseTally, PodReport};

    fn poll(pods: &[&str]) -> SeedPoll {
        SeedPoll {
            seed: "s".into(),
            version: None,
            stats: None,
            pods: Some(
                pods.iter()
                    .map(|address| PodReport {
                        address: (*address).to_owned(),
                        version: Some("0.8.0".into()),
                        uptime: Some(30 * 86_400),
                        storage_committed: Some(1 << 40),
                        storage_used: Some(1 << 39),
                        is_public: Some(true),
                        ..PodReport::default()
                    })
                    .collect(),
            ),
            pods_method: None,
            error: None,
            latency_ms: 0,
            polled_at: 0,
            tally: ParseTally::default(),
        }
    }

    fn view(registry: &Registry, cycle: i64, now: i64) -> NetworkView {
        let record = SnapshotRecord {
            cycle,
            taken_at: now,
            interval_secs: 10,
            seeds: vec![],
            entries: registry.values().cloned().collect::<Vec<RegistryEntry>>(),
            ..SnapshotRecord::default()
        };
        NetworkView::build(&record, &AnalyticsConfig::default(), None)
    }

    #[test]
    fn appearing_leaving_and_coming_back_are_changes_and_events() {
        let mut registry = Registry::new();
        let empty = NetworkView::default();
        apply_cycle(&mut registry, &[poll(&["a:1", "b:1"])], 100);
        let first = view(&registry, 1, 100);
        let appeared = diff(&empty, &first);
        let kinds: Vec<_> = appeared
            .iter()
            .filter(|c| c.change == ChangeKind::Appeared)
            .map(|c| c.node.address.as_str())
            .collect();
        assert_eq!(kinds, ["a:1", "b:1"]);

        // b:1 leaves gossip; 30 s later it is past two intervals and offline.
        apply_cycle(&mut registry, &[poll(&["a:1"])], 130);
        let second = view(&registry, 2, 130);
        let changes = diff(&first, &second);
        let offline: Vec<_> = changes
            .iter()
            .filter(|c| c.change == ChangeKind::WentOffline)
            .map(|c| c.node.address.as_str())
            .collect();
        assert_eq!(offline, ["b:1"]);
        let event_types: Vec<_> = events(&changes).iter().map(|e| e.event_type).collect();
        assert!(event_types.contains(&"pnode.offline"));

        apply_cycle(&mut registry, &[poll(&["a:1", "b:1"])], 140);
        let third = view(&registry, 3, 140);
        let back = diff(&second, &third);
        assert!(
            back.iter()
                .any(|c| c.change == ChangeKind::CameBack && c.node.address == "b:1")
        );
        assert!(
            diff(&third, &third).is_empty(),
            "a view against itself changes nothing"
        );
    }

    #[test]
    fn alerts_are_raised_and_cleared_by_type() {
        let alert = |alert_type| Alert {
            severity: nodegrid_protocol::pnode_api::node::Severity::Warning,
            alert_type,
            message: "m".into(),
            metric: "x".into(),
            value: 1.into(),
            threshold: 2.into(),
            recommendation: "r".into(),
        };
        let mut registry = Registry::new();
        apply_cycle(&mut registry, &[poll(&["a:1"])], 100);
        let node = &view(&registry, 1, 100).nodes[0];
        let mut out = Vec::new();
        alerts_between(
            &[alert(AlertType::LowUptime), alert(AlertType::Isolated)],
            &[
                alert(AlertType::Isolated),
                alert(AlertType::StorageCritical),
            ],
            node,
            &mut out,
        );
        let kinds: Vec<_> = out
            .iter()
            .map(|c| (c.change, c.alert.as_ref().map(|a| a.alert_type)))
            .collect();
        assert_eq!(
            kinds,
            [
                (ChangeKind::AlertRaised, Some(AlertType::StorageCritical)),
                (ChangeKind::AlertCleared, Some(AlertType::LowUptime)),
            ]
        );
        assert_eq!(
            events(&out)
                .iter()
                .map(|e| e.event_type)
                .collect::<Vec<_>>(),
            ["pnode.alert_raised", "pnode.alert_cleared"]
        );
    }

    #[test]
    fn changes_survive_the_stored_records_encoding() {
        let mut registry = Registry::new();
        apply_cycle(&mut registry, &[poll(&["a:1"])], 100);
        let first = view(&registry, 1, 100);
        apply_cycle(&mut registry, &[poll(&[])], 130);
        let second = view(&registry, 2, 130);
        let record = SnapshotRecord {
            cycle: 2,
            previous_cycle: 1,
            changes: diff(&first, &second)
                .into_iter()
                .chain(diff(&NetworkView::default(), &first))
                .collect(),
            ..SnapshotRecord::default()
        };
        assert!(record.changes.len() >= 2, "{:?}", record.changes);
        let bytes = rmp_serde::to_vec(&record).expect("encodes");
        let back: SnapshotRecord = rmp_serde::from_slice(&bytes).expect("decodes");
        assert_eq!(back, record);
    }
}

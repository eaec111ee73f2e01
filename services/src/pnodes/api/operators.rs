//! `/operators`: the nodes grouped by their operator's pubkey, and how concentrated the
//! network is.

use std::collections::{BTreeSet, HashMap};

use nodegrid_protocol::pnode_api::network::{Operator, OperatorsResponse, OperatorsSummary};
use nodegrid_protocol::pnode_api::queries::OperatorsRequest;

use crate::pnodes::scoring::round2;
use crate::pnodes::view::{NetworkView, NodeView};

/// Operators with at least `min_nodes` nodes, the largest first (pubkey breaks ties); the
/// summary counts every operator. Nodes without a pubkey belong to no operator.
pub fn operators(view: &NetworkView, request: OperatorsRequest, now: i64) -> OperatorsResponse {
    let mut by_key: HashMap<&str, Vec<&NodeView>> = HashMap::new();
    for node in &view.nodes {
        if let Some(key) = node.pubkey.as_deref() {
            by_key.entry(key).or_default().push(node);
        }
    }
    let mut listed: Vec<(&str, &Vec<&NodeView>)> = by_key
        .iter()
        .filter(|(_, nodes)| nodes.len() >= request.min_nodes)
        .map(|(key, nodes)| (*key, nodes))
        .collect();
    listed.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(b.0)));
    OperatorsResponse {
        summary: summary(&by_key),
        operators: listed
            .iter()
            .take(request.limit)
            .map(|(key, nodes)| operator(key, nodes))
            .collect(),
        timestamp: now,
    }
}

fn summary(by_key: &HashMap<&str, Vec<&NodeView>>) -> OperatorsSummary {
    let count = by_key.len();
    let total_nodes: usize = by_key.values().map(Vec::len).sum();
    let largest = by_key.values().map(Vec::len).max().unwrap_or(0);
    let percent_of_nodes = |part: usize| {
        if total_nodes == 0 {
            0.0
        } else {
            round2(part as f64 / total_nodes as f64 * 100.0)
        }
    };
    OperatorsSummary {
        total_operators: count,
        total_nodes,
        avg_nodes_per_operator: if count == 0 {
            0.0
        } else {
            round2(total_nodes as f64 / count as f64)
        },
        largest_operator_share_percent: percent_of_nodes(largest),
        // 100 when every node has its own operator, falling as nodes concentrate.
        decentralization_score: percent_of_nodes(count),
    }
}

fn operator(pubkey: &str, nodes: &[&NodeView]) -> Operator {
    Operator {
        pubkey: pubkey.to_owned(),
        node_count: nodes.len(),
        online_nodes: nodes.iter().filter(|n| n.is_online).count(),
        total_storage_committed: nodes.iter().filter_map(|n| n.storage_committed).sum(),
        total_storage_used: nodes.iter().filter_map(|n| n.storage_used).sum(),
        addresses: nodes.iter().map(|n| n.address.clone()).collect(),
        versions: nodes
            .iter()
            .filter_map(|n| n.version.clone())
            .collect::<BTreeSet<String>>(),
        first_seen: nodes.iter().map(|n| n.first_seen).min(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{GIB, NOW, entry, gone, view_of};
    use super::*;
    use crate::pnodes::cycle::RegistryEntry;

    #[test]
    fn nodes_are_grouped_by_pubkey_largest_operator_first() {
        let view = view_of(vec![
            entry("10.0.0.1:9001", Some("opB"), 3),
            // Offline, and opB's too.
            RegistryEntry {
                pubkey: Some("opB".to_owned()),
                version: Some("0.7.0".to_owned()),
                first_seen: NOW - 90 * 86_400,
                ..gone("10.0.0.2:9001", 4)
            },
            entry("10.0.0.3:9001", Some("opA"), 3),
            entry("10.0.0.4:9001", None, 3),
        ]);
        let all = OperatorsRequest {
            limit: 100,
            min_nodes: 1,
        };
        let answer = operators(&view, all, NOW);
        let order: Vec<(&str, usize)> = answer
            .operators
            .iter()
            .map(|o| (o.pubkey.as_str(), o.node_count))
            .collect();
        assert_eq!(order, [("opB", 2), ("opA", 1)]);
        let b = &answer.operators[0];
        assert_eq!(b.online_nodes, 1);
        assert_eq!(b.total_storage_committed, 200 * GIB);
        assert_eq!(b.addresses, ["10.0.0.1:9001", "10.0.0.2:9001"]);
        assert_eq!(
            b.versions.iter().map(String::as_str).collect::<Vec<_>>(),
            ["0.7.0", "0.8.0"]
        );
        assert_eq!(b.first_seen, Some(NOW - 90 * 86_400));
        // 2 operators over 3 nodes with a pubkey.
        let summary = &answer.summary;
        assert_eq!((summary.total_operators, summary.total_nodes), (2, 3));
        assert_eq!(summary.avg_nodes_per_operator, 1.5);
        assert_eq!(summary.largest_operator_share_percent, 66.67);
        assert_eq!(summary.decentralization_score, 66.67);
        let big = operators(
            &view,
            OperatorsRequest {
                min_nodes: 2,
                ..all
            },
            NOW,
        );
        assert_eq!(big.operators.len(), 1);
        assert_eq!(
            big.summary.total_operators, 2,
            "the summary counts every operator"
        );
    }
}

//! `/pnodes/compare`: two to five nodes side by side, the best at each figure, and which one
//! to choose.

use nodegrid_protocol::pnode_api::nodes::{
    CompareRecommendation, CompareResponse, CompareSummary, ComparedNode, Winners,
};

use super::{UnknownPnode, known_node};
use crate::pnodes::scoring::round2;
use crate::pnodes::view::{NetworkView, NodeView};

/// Scores closer than this do not make one node clearly better.
const CLEAR_SCORE_LEAD: f64 = 5.0;

/// The nodes at `addresses`, in that order (a repeated address is compared with itself).
pub fn compare(
    view: &NetworkView,
    addresses: &[String],
    now: i64,
) -> Result<CompareResponse, UnknownPnode> {
    let nodes = addresses
        .iter()
        .map(|address| Ok(known_node(view, address)?.0))
        .collect::<Result<Vec<&NodeView>, UnknownPnode>>()?;
    let best = best_by(&nodes, |n| n.score);
    let scores = nodes.iter().map(|n| n.score);
    let spread = scores.clone().fold(f64::MIN, f64::max) - scores.fold(f64::MAX, f64::min);
    Ok(CompareResponse {
        comparison: nodes.iter().map(|node| compared(node)).collect(),
        winners: winners(&nodes),
        recommendation: CompareRecommendation {
            recommended_node: best.map(|n| n.address.clone()),
            reason: best.map(|n| format!("highest composite score ({}, {})", n.score, n.tier)),
            considerations: considerations(&nodes, best, spread),
        },
        summary: CompareSummary {
            nodes_compared: nodes.len(),
            score_spread: round2(spread),
        },
        timestamp: now,
    })
}

/// The node with the highest `figure`; the last of equals.
fn best_by<'a>(nodes: &[&'a NodeView], figure: impl Fn(&NodeView) -> f64) -> Option<&'a NodeView> {
    nodes
        .iter()
        .copied()
        .max_by(|a, b| figure(a).total_cmp(&figure(b)))
}

fn winners(nodes: &[&NodeView]) -> Winners {
    let winner = |figure: fn(&NodeView) -> f64| best_by(nodes, figure).map(|n| n.address.clone());
    Winners {
        score: winner(|n| n.score),
        trust: winner(|n| n.scores.trust.score),
        capacity: winner(|n| n.scores.capacity.score),
        uptime: winner(|n| n.uptime.unwrap_or(0) as f64),
        storage_committed: winner(|n| n.storage_committed.unwrap_or(0) as f64),
        peer_count: winner(|n| n.peer_count as f64),
    }
}

fn considerations(nodes: &[&NodeView], best: Option<&NodeView>, spread: f64) -> Vec<String> {
    let mut considerations = Vec::new();
    if nodes.iter().any(|n| !n.is_online) {
        considerations.push("some compared nodes are offline".to_owned());
    }
    if best.is_some_and(|best| best.is_public != Some(true)) {
        considerations.push("the recommended node is private".to_owned());
    }
    if spread < CLEAR_SCORE_LEAD {
        considerations.push("scores are within 5 points: other factors may decide".to_owned());
    }
    considerations
}

fn compared(node: &NodeView) -> ComparedNode {
    ComparedNode {
        address: node.address.clone(),
        pubkey: node.pubkey.clone(),
        is_online: node.is_online,
        score: node.score,
        tier: node.tier.clone(),
        scores: node.scores.clone(),
        uptime: node.uptime,
        version: node.version.clone(),
        storage_committed: node.storage_committed,
        storage_used: node.storage_used,
        storage_usage_percent: node.storage_usage_percent,
        peer_count: node.peer_count,
        is_public: node.is_public,
        consistency_score: node.consistency_score,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{GIB, NOW, entry, gone, view_of};
    use super::*;
    use crate::pnodes::cycle::RegistryEntry;

    fn addresses(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn the_best_at_each_figure_wins_and_the_best_score_is_recommended() {
        let view = view_of(vec![
            entry("10.0.0.1:9001", None, 3),
            RegistryEntry {
                storage_committed: Some(500 * GIB),
                is_public: Some(false),
                ..entry("10.0.0.2:9001", None, 1)
            },
        ]);
        let answer = compare(&view, &addresses(&["10.0.0.2:9001", "10.0.0.1:9001"]), NOW)
            .expect("known nodes");
        let order: Vec<&str> = answer
            .comparison
            .iter()
            .map(|n| n.address.as_str())
            .collect();
        assert_eq!(
            order,
            ["10.0.0.2:9001", "10.0.0.1:9001"],
            "in the order asked"
        );
        assert_eq!(answer.winners.score.as_deref(), Some("10.0.0.1:9001"));
        assert_eq!(answer.winners.peer_count.as_deref(), Some("10.0.0.1:9001"));
        assert_eq!(
            answer.winners.storage_committed.as_deref(),
            Some("10.0.0.2:9001")
        );
        let recommended = &answer.recommendation;
        assert_eq!(
            recommended.recommended_node.as_deref(),
            Some("10.0.0.1:9001")
        );
        let best = &answer.comparison[1];
        assert_eq!(
            recommended.reason,
            Some(format!(
                "highest composite score ({}, {})",
                best.score, best.tier
            ))
        );
        assert!(recommended.considerations.is_empty(), "{recommended:?}");
        assert_eq!(answer.summary.nodes_compared, 2);
        assert_eq!(
            answer.summary.score_spread,
            round2(best.score - answer.comparison[0].score)
        );
    }

    #[test]
    fn offline_private_and_close_nodes_are_pointed_out() {
        let view = view_of(vec![
            RegistryEntry {
                is_public: Some(false),
                ..entry("10.0.0.1:9001", None, 3)
            },
            gone("10.0.0.2:9001", 4),
        ]);
        let answer = compare(&view, &addresses(&["10.0.0.1:9001", "10.0.0.2:9001"]), NOW)
            .expect("known nodes");
        assert_eq!(
            answer.recommendation.considerations,
            [
                "some compared nodes are offline",
                "the recommended node is private"
            ]
        );
        let same = compare(&view, &addresses(&["10.0.0.1:9001", "10.0.0.1:9001"]), NOW)
            .expect("known nodes");
        assert_eq!(
            same.recommendation.considerations,
            [
                "the recommended node is private",
                "scores are within 5 points: other factors may decide"
            ]
        );
        assert_eq!(
            compare(&view, &addresses(&["10.0.0.1:9001", "nowhere:1"]), NOW).err(),
            Some(UnknownPnode("nowhere:1".to_owned()))
        );
    }
}

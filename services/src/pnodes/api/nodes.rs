//! `/pnodes`, the filtered and sorted page of nodes, and `/recommendations`, the best online
//! nodes to stake with.

use bytes::Bytes;
use nodegrid_protocol::pnode_api::nodes::{
    Pagination, PnodesResponse, Recommendation, RecommendationsResponse,
};
use nodegrid_protocol::pnode_api::params::SortOrder;
use nodegrid_protocol::pnode_api::queries::{
    NodeFacts, PnodesRequest, RecommendationFilters, filters_pass,
};
use serde_json::value::RawValue;

use super::page_cache::{HotPage, Page};
use super::{network_stats, snapshot_summary};
use crate::pnodes::scoring::round2;
use crate::pnodes::view::{NetworkView, NodeView};

/// The page of nodes that pass the filters, in the order asked. The sort orders are
/// precomputed per cycle: this walks one of them once, filtering, and the page holds the
/// nodes' JSON as it was serialised once per snapshot.
pub fn pnodes_page(
    view: &NetworkView,
    request: PnodesRequest,
    now: i64,
) -> PnodesResponse<&RawValue> {
    let (page, pagination) = page_indexes(view, &request);
    PnodesResponse {
        summary: snapshot_summary(view, now),
        network_stats: network_stats(view),
        pagination,
        filters: request.filters,
        pnodes: page.iter().map(|&index| &*view.node_json[index]).collect(),
        timestamp: now,
    }
}

/// [`pnodes_page`] serialised: the bytes a `/pnodes` request is answered with.
pub fn pnodes_json(
    view: &NetworkView,
    request: PnodesRequest,
    now: i64,
) -> Result<Bytes, serde_json::Error> {
    serde_json::to_vec(&pnodes_page(view, request, now)).map(Bytes::from)
}

/// Makes the `hot` pages of `view` for `second` ahead of its requests, and keeps them in the
/// view's page cache (see [`super::page_cache`]); returns how many were made.
pub fn make_pages_ahead(
    view: &NetworkView,
    hot: Vec<HotPage<PnodesRequest>>,
    second: i64,
) -> usize {
    let made: Vec<_> = hot
        .into_iter()
        .filter_map(|hot| {
            let json = pnodes_json(view, hot.answers.clone(), second).ok()?;
            Some((hot.query, Page::ahead(json, hot.answers, hot.gzip)))
        })
        .collect();
    let count = made.len();
    view.pages.prepare(second, made);
    count
}

/// Which nodes a `/pnodes` request answers (their indexes in `view.nodes`, in the order
/// asked), and the pagination that goes with them: the one selection behind REST and GraphQL.
pub fn page_indexes(view: &NetworkView, request: &PnodesRequest) -> (Vec<usize>, Pagination) {
    let filters = &request.filters;
    let matches = |index: usize| {
        let node = &view.nodes[index];
        let facts = NodeFacts {
            is_online: node.is_online,
            version: node.version.as_deref(),
            is_public: node.is_public,
            score: node.score,
        };
        filters_pass(
            filters.status,
            filters.version.as_deref(),
            filters.public,
            filters.min_score,
            facts,
        ) && request
            .needle
            .as_ref()
            .is_none_or(|needle| view.search_text[index].contains(needle.as_str()))
    };
    let indexes = view.orders.get(filters.sort_by);
    let walk: Box<dyn Iterator<Item = &u32>> = match filters.sort_order {
        SortOrder::Asc => Box::new(indexes.iter()),
        SortOrder::Desc => Box::new(indexes.iter().rev()),
    };
    let mut total = 0usize;
    let mut page: Vec<usize> = Vec::with_capacity(request.limit.min(view.nodes.len()));
    for &index in walk {
        let index = index as usize;
        if matches(index) {
            if total >= request.skip && page.len() < request.limit {
                page.push(index);
            }
            total += 1;
        }
    }
    let pagination = Pagination {
        total,
        limit: request.limit,
        skip: request.skip,
        returned: page.len(),
        has_more: request.skip + page.len() < total,
    };
    (page, pagination)
}

/// The online nodes up at least `min_uptime_days`, best score first (address breaks ties),
/// with the reasons they stand out.
pub fn recommendations(
    view: &NetworkView,
    filters: RecommendationFilters,
    now: i64,
) -> RecommendationsResponse {
    let online: Vec<&NodeView> = view.nodes.iter().filter(|n| n.is_online).collect();
    let mut eligible: Vec<&NodeView> = online
        .iter()
        .copied()
        .filter(|n| n.uptime.unwrap_or(0) as f64 >= filters.min_uptime_days * 86_400.0)
        .filter(|n| !filters.require_public || n.is_public == Some(true))
        .collect();
    eligible.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.address.cmp(&b.address))
    });
    let recommendations = eligible
        .iter()
        .take(filters.limit)
        .enumerate()
        .map(|(rank, node)| Recommendation {
            rank: rank + 1,
            address: node.address.clone(),
            pubkey: node.pubkey.clone(),
            score: node.score,
            tier: node.tier.clone(),
            scores: node.scores.clone(),
            uptime_days: round2(node.uptime.unwrap_or(0) as f64 / 86_400.0),
            storage_committed: node.storage_committed,
            storage_usage_percent: node.storage_usage_percent,
            peer_count: node.peer_count,
            version: node.version.clone(),
            is_public: node.is_public,
            reasons: reasons(node),
        })
        .collect();
    RecommendationsResponse {
        recommendations,
        total_evaluated: online.len(),
        total_eligible: eligible.len(),
        filters,
        timestamp: now,
    }
}

fn reasons(node: &NodeView) -> Vec<String> {
    let breakdown = (
        &node.scores.trust.breakdown,
        &node.scores.capacity.breakdown,
    );
    [
        (breakdown.0.uptime >= 30.0, "long, stable uptime"),
        (node.peer_count >= 3, "well connected in gossip"),
        (
            breakdown.0.version_compliance > 0.0,
            "runs the latest version",
        ),
        (
            breakdown.1.usage_balance >= 40.0,
            "storage usage in the optimal range",
        ),
    ]
    .into_iter()
    .filter(|(holds, _)| *holds)
    .map(|(_, reason)| reason.to_owned())
    .collect()
}

#[cfg(test)]
mod tests {
    use nodegrid_protocol::pnode_api::params::PnodeSortKey;
    use nodegrid_protocol::pnode_api::queries::PnodesQuery;

    use super::super::fixture::{NOW, entry, gone, view_of};
    use super::*;
    use crate::pnodes::cycle::RegistryEntry;

    fn request(text: &str) -> PnodesRequest {
        let query: PnodesQuery = serde_json::from_str(text).expect("a readable query");
        query.check().expect("a valid query")
    }

    fn addresses(page: &PnodesResponse<&RawValue>) -> Vec<String> {
        page.pnodes
            .iter()
            .map(|json| {
                let node: NodeView = serde_json::from_str(json.get()).expect("a node");
                node.address
            })
            .collect()
    }

    fn network() -> NetworkView {
        view_of(vec![
            RegistryEntry {
                uptime: Some(3_600),
                ..entry("10.0.0.1:9001", Some("opA"), 3)
            },
            RegistryEntry {
                is_public: Some(false),
                ..entry("10.0.0.2:9001", Some("OPB"), 1)
            },
            entry("10.0.0.3:9001", None, 2),
            RegistryEntry {
                uptime: None,
                ..gone("10.0.0.4:9001", 10)
            },
        ])
    }

    #[test]
    fn a_page_filters_sorts_and_counts_what_it_skipped() {
        let view = network();
        let page = pnodes_page(&view, request("{}"), NOW);
        assert_eq!(page.pagination.total, 3, "online only by default");
        let all = pnodes_page(
            &view,
            request(r#"{"status": "all", "sort_by": "uptime", "sort_order": "asc"}"#),
            NOW,
        );
        assert_eq!(
            addresses(&all)[..2],
            ["10.0.0.4:9001".to_owned(), "10.0.0.1:9001".to_owned()],
            "uptime ascending, unknown first"
        );
        let second = pnodes_page(
            &view,
            request(
                r#"{"status": "all", "sort_by": "uptime", "sort_order": "asc", "limit": 2, "skip": 2}"#,
            ),
            NOW,
        );
        assert_eq!(addresses(&second), addresses(&all)[2..]);
        assert_eq!(
            (second.pagination.returned, second.pagination.has_more),
            (2, false)
        );
        let first = pnodes_page(&view, request(r#"{"status": "all", "limit": 2}"#), NOW);
        assert!(first.pagination.has_more);
        assert_eq!(first.filters.sort_by, PnodeSortKey::Score);
    }

    #[test]
    fn filters_match_version_visibility_score_and_search() {
        let view = network();
        let private = pnodes_page(&view, request(r#"{"public": false}"#), NOW);
        assert_eq!(addresses(&private), ["10.0.0.2:9001"]);
        let search = pnodes_page(&view, request(r#"{"search": "opb"}"#), NOW);
        assert_eq!(addresses(&search), ["10.0.0.2:9001"], "pubkeys, any case");
        let offline = pnodes_page(&view, request(r#"{"status": "offline"}"#), NOW);
        assert_eq!(addresses(&offline), ["10.0.0.4:9001"]);
        let none = pnodes_page(&view, request(r#"{"version": "0.7.0"}"#), NOW);
        assert_eq!(none.pagination.total, 0);
        let good = pnodes_page(&view, request(r#"{"min_score": 100}"#), NOW);
        assert_eq!(good.pagination.total, 0);
    }

    #[test]
    fn recommendations_rank_eligible_online_nodes_with_reasons() {
        let view = network();
        let filters = RecommendationFilters {
            limit: 10,
            min_uptime_days: 7.0,
            require_public: false,
        };
        let answer = recommendations(&view, filters, NOW);
        assert_eq!((answer.total_evaluated, answer.total_eligible), (3, 2));
        let ranked: Vec<(usize, &str)> = answer
            .recommendations
            .iter()
            .map(|r| (r.rank, r.address.as_str()))
            .collect();
        // Node 1 is up for an hour only; node 3 is seen by two seeds, node 2 by one.
        assert_eq!(ranked, [(1, "10.0.0.3:9001"), (2, "10.0.0.2:9001")]);
        let best = &answer.recommendations[0];
        assert_eq!(best.uptime_days, 30.0);
        assert_eq!(
            best.reasons,
            [
                "long, stable uptime",
                "runs the latest version",
                "storage usage in the optimal range"
            ]
        );
        let public = recommendations(
            &view,
            RecommendationFilters {
                require_public: true,
                limit: 1,
                ..filters
            },
            NOW,
        );
        assert_eq!(public.total_eligible, 1);
        assert_eq!(public.recommendations.len(), 1);
    }
}

//! The pNode API as GraphQL (served at `/api/xandeum/graphql`): answered from the same
//! in-memory view and by the same functions as REST (so the numbers are the same), with the
//! same parameter checks.
//!
//! Queries are bounded: depth at most [`MAX_DEPTH`], complexity at most [`MAX_COMPLEXITY`],
//! where a field costs one, a `pnodes` page its selection once per 100 nodes asked for, and a
//! `history` (a Postgres query) [`HISTORY_COST`]: aliases cannot multiply a request into
//! hundreds of queries or pages. The body is bounded by the server's body limit.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_graphql::{
    ComplexObject, Context, EmptyMutation, EmptySubscription, ErrorExtensions, Object, Schema,
    SimpleObject,
};
use nodegrid_protocol::pnode_api::history::NodeHistoryRow;
use nodegrid_protocol::pnode_api::network::{NetworkHealth, NetworkStats, SnapshotSummary};
use nodegrid_protocol::pnode_api::node::{Alert, NodeView};
use nodegrid_protocol::pnode_api::nodes::Pagination;
use nodegrid_protocol::pnode_api::queries::{DaysQuery, PnodesQuery};
use nodegrid_services::pnodes::api::nodes::page_indexes;
use nodegrid_services::pnodes::api::{network_stats, snapshot_summary};
use nodegrid_services::pnodes::store::PnodeStore;
use nodegrid_services::pnodes::view::NetworkView;
use serde_json::json;

use super::cell::SnapshotCell;

/// The deepest selection accepted.
pub const MAX_DEPTH: usize = 8;
/// The most a query may cost (see the module documentation).
pub const MAX_COMPLEXITY: usize = 500;
/// What one `history` costs: a query may read at most a handful of histories.
pub const HISTORY_COST: usize = 100;

pub type PnodeSchema = Schema<Query, EmptyMutation, EmptySubscription>;

/// The schema over the served view and the history store, built once per instance.
pub fn schema(cell: SnapshotCell, store: PnodeStore) -> PnodeSchema {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .data(cell)
        .data(store)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .finish()
}

/// A query error with the REST error's code (`extensions.code`).
fn refused(code: &'static str, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message.into()).extend_with(|_, extensions| {
        extensions.set("code", code);
    })
}

/// The served view, or `not_ready` before the first snapshot.
fn served(context: &Context<'_>) -> async_graphql::Result<Arc<NetworkView>> {
    let view = context.data::<SnapshotCell>()?.view();
    if view.cycle == 0 {
        return Err(refused(
            "not_ready",
            "no pNode snapshot yet: the first polling cycle has not completed",
        ));
    }
    Ok(view)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub struct Query;

/// A page of `pnodes`, as `/pnodes` answers it.
#[derive(SimpleObject)]
pub struct PnodesPage {
    pub summary: SnapshotSummary,
    pub network_stats: NetworkStats,
    pub pagination: Pagination,
    pub pnodes: Vec<NodeView>,
}

/// One pNode with its alerts; its history on request.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Pnode {
    #[graphql(flatten)]
    pub node: NodeView,
    pub alerts: Vec<Alert>,
}

#[ComplexObject]
impl Pnode {
    /// The node's history rows of the last `days` (1 to 90, default 7), oldest first.
    #[graphql(complexity = "HISTORY_COST + child_complexity")]
    async fn history(
        &self,
        context: &Context<'_>,
        days: Option<i64>,
    ) -> async_graphql::Result<Vec<NodeHistoryRow>> {
        let days = DaysQuery { days }
            .check()
            .map_err(|error| refused("validation_failed", error.0))?;
        context
            .data::<PnodeStore>()?
            .node_history(&self.node.address, now() - days * 86_400)
            .await
            .map_err(|error| {
                tracing::error!(%error, "GraphQL: the pNode history could not be read");
                refused("internal_error", "internal error")
            })
    }
}

/// The network as `/network/health` sees it.
#[derive(SimpleObject)]
pub struct Network {
    pub summary: SnapshotSummary,
    pub stats: NetworkStats,
    pub health: NetworkHealth,
    /// Online nodes per version.
    pub version_distribution: BTreeMap<String, usize>,
}

#[Object]
impl Query {
    /// The `/pnodes` page: the same filters, checks, defaults and order.
    #[allow(clippy::too_many_arguments)]
    #[graphql(
        complexity = "1 + child_complexity * limit.map_or(1, |limit| (limit.clamp(1, 1_000) as usize).div_ceil(100))"
    )]
    async fn pnodes(
        &self,
        context: &Context<'_>,
        #[graphql(desc = "`online` (default), `offline` or `all`")] status: Option<String>,
        #[graphql(desc = "1 to 1000 [default: 100]")] limit: Option<i64>,
        skip: Option<i64>,
        #[graphql(
            desc = "`last_seen`, `uptime`, `score` (default), `storage_used`, `storage_usage_percent` or `first_seen`"
        )]
        sort_by: Option<String>,
        #[graphql(desc = "`asc` or `desc` (default)")] sort_order: Option<String>,
        version: Option<String>,
        public: Option<bool>,
        min_score: Option<f64>,
        search: Option<String>,
    ) -> async_graphql::Result<PnodesPage> {
        // Read exactly as the query string of `/pnodes` is, so that every check is the same.
        let query: PnodesQuery = serde_json::from_value(json!({
            "status": status, "limit": limit, "skip": skip, "sort_by": sort_by,
            "sort_order": sort_order, "version": version, "public": public,
            "min_score": min_score, "search": search,
        }))
        .map_err(|error| refused("validation_failed", error.to_string()))?;
        let request = query
            .check()
            .map_err(|error| refused("validation_failed", error.0))?;
        let view = served(context)?;
        let (page, pagination) = page_indexes(&view, &request);
        Ok(PnodesPage {
            summary: snapshot_summary(&view, now()),
            network_stats: network_stats(&view),
            pagination,
            pnodes: page
                .iter()
                .map(|&index| view.nodes[index].clone())
                .collect(),
        })
    }

    /// One pNode by address (`host:port`); null when unknown.
    async fn pnode(
        &self,
        context: &Context<'_>,
        address: String,
    ) -> async_graphql::Result<Option<Pnode>> {
        let view = served(context)?;
        Ok(view.node(&address).map(|(node, alerts)| Pnode {
            node: node.clone(),
            alerts: alerts.to_vec(),
        }))
    }

    /// The summary, health and version distribution of the network.
    async fn network(&self, context: &Context<'_>) -> async_graphql::Result<Network> {
        let view = served(context)?;
        Ok(Network {
            summary: snapshot_summary(&view, now()),
            stats: network_stats(&view),
            health: view.health.clone(),
            version_distribution: view.summary.version_distribution.clone(),
        })
    }
}

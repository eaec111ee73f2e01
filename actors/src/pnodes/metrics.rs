//! The pNode analytics metrics.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

pub const POLLS: &str = "nodegrid_pnode_polls_total";
pub const CALL_FAILURES: &str = "nodegrid_pnode_call_failures_total";
pub const POLL_SECONDS: &str = "nodegrid_pnode_poll_duration_seconds";
pub const POLLER_FAILURES: &str = "nodegrid_pnode_poller_consecutive_failures";
pub const POLLER_LAST_SUCCESS: &str = "nodegrid_pnode_poller_last_success_timestamp_seconds";
pub const REJECTED: &str = "nodegrid_pnode_rejected_total";
pub const CYCLES: &str = "nodegrid_pnode_cycles_total";
pub const CYCLE_SECONDS: &str = "nodegrid_pnode_cycle_duration_seconds";
pub const NODES: &str = "nodegrid_pnode_nodes";
pub const SNAPSHOT_CYCLE: &str = "nodegrid_pnode_snapshot_cycle";
pub const SNAPSHOT_AGE: &str = "nodegrid_pnode_snapshot_age_seconds";
pub const PRUNED: &str = "nodegrid_pnode_pruned_rows_total";
pub const LIVE_SOCKETS: &str = "nodegrid_pnode_live_sockets";
pub const API_REQUESTS: &str = "nodegrid_pnode_api_requests_total";
pub const GRAPHQL_ERRORS: &str = "nodegrid_pnode_graphql_errors_total";
pub const PAGES_MADE: &str = "nodegrid_pnode_pages_made_total";

pub fn describe() {
    describe_counter!(
        POLLS,
        "pRPC seed polls, by seed and outcome (ok, failed, backoff)."
    );
    describe_counter!(
        CALL_FAILURES,
        "Failed pRPC calls, by seed, method and kind (timeout, transport, http_status, too_large, not_json, rpc_error, no_result)."
    );
    describe_histogram!(
        POLL_SECONDS,
        Unit::Seconds,
        "Time of one seed's three pRPC calls."
    );
    describe_gauge!(POLLER_FAILURES, "Consecutive failed polls of each seed.");
    describe_gauge!(
        POLLER_LAST_SUCCESS,
        Unit::Seconds,
        "Unix time of each seed's last successful poll."
    );
    describe_counter!(
        REJECTED,
        "Upstream data refused while reading pRPC answers, by kind (field, pod)."
    );
    describe_counter!(
        CYCLES,
        "Aggregation cycles run by the leader, by outcome (written, skipped, fenced, failed)."
    );
    describe_histogram!(
        CYCLE_SECONDS,
        Unit::Seconds,
        "Time of one aggregation cycle after polling: merge, scores, view and Postgres writes."
    );
    describe_gauge!(
        NODES,
        "pNodes in this instance's snapshot, by status (online, offline)."
    );
    describe_gauge!(
        SNAPSHOT_CYCLE,
        "Cycle number of the snapshot this instance serves."
    );
    describe_gauge!(
        SNAPSHOT_AGE,
        Unit::Seconds,
        "Age of the snapshot this instance serves, when it was last refreshed."
    );
    describe_counter!(
        API_REQUESTS,
        "Requests to /api/xandeum, by credential (anonymous: limited per address; api_token: an xandeum:unlimited token, limited per token)."
    );
    describe_counter!(
        GRAPHQL_ERRORS,
        "GraphQL requests to /api/xandeum/graphql answered with errors (invalid, too deep or complex, refused arguments)."
    );
    describe_counter!(
        PAGES_MADE,
        "/api/xandeum/pnodes pages serialised, by who made them (request: a request waited for it; ahead: made before its second by the pages thread)."
    );
    describe_gauge!(
        LIVE_SOCKETS,
        "Open /api/xandeum/ws/pnodes sockets on this instance."
    );
    describe_counter!(
        PRUNED,
        "Rows deleted by pNode retention and pruning, by table."
    );
}

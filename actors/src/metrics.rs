//! The names of the runtime's own metrics (HTTP, dependencies, the control channel, actors,
//! leases), in one place. Areas keep theirs beside their code (`stream::metrics`,
//! `pnodes::metrics`; the services' constants for identity). Label values always come from
//! closed sets.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use nodegrid_services::children;
use nodegrid_services::identity;
use nodegrid_services::lease::{LEASE_LEADER, LEASE_TRANSITIONS_TOTAL};
use nodegrid_services::registry;
use nodegrid_services::webhooks;

/// TLS certificate reloads, by outcome (`ok`, `failed`).
pub const TLS_RELOADS_TOTAL: &str = "nodegrid_tls_reloads_total";
pub const HTTP_REQUESTS_TOTAL: &str = "nodegrid_http_requests_total";
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "nodegrid_http_request_duration_seconds";
pub const HTTP_ERRORS_TOTAL: &str = "nodegrid_http_errors_total";
pub const DEPENDENCY_UP: &str = "nodegrid_dependency_up";
pub const DEPENDENCY_UNAVAILABLE_TOTAL: &str = "nodegrid_dependency_unavailable_answers_total";
pub const DEPENDENCY_CHECK_DURATION_SECONDS: &str = "nodegrid_dependency_check_duration_seconds";
pub const DB_POOL_CONNECTIONS: &str = "nodegrid_db_pool_connections";
pub const DB_POOL_WAITING: &str = "nodegrid_db_pool_waiting";
pub const REDIS_CONNECTED: &str = "nodegrid_redis_connected";
pub const REDIS_RECONNECTS_TOTAL: &str = "nodegrid_redis_reconnects_total";
pub const CONTROL_EVENTS_TOTAL: &str = "nodegrid_control_events_total";
pub const CONTROL_EVENTS_INVALID_TOTAL: &str = "nodegrid_control_events_invalid_total";
pub const BUS_MESSAGES_LAGGED_TOTAL: &str = "nodegrid_bus_messages_lagged_total";
pub const ACTOR_RESTARTS_TOTAL: &str = "nodegrid_actor_restarts_total";
pub const AUDIT_PRUNED_TOTAL: &str = "nodegrid_audit_pruned_total";
pub const DATA_PARTITIONS_DROPPED_TOTAL: &str = "nodegrid_data_partitions_dropped_total";
pub const BUILD_INFO: &str = "nodegrid_build_info";

/// Describes the runtime's own metrics (the telemetry set-up calls it once).
pub fn describe() {
    describe_counter!(
        HTTP_REQUESTS_TOTAL,
        "HTTP requests answered, by method, route pattern and status."
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Time from request to response, by method, route pattern and status."
    );
    describe_counter!(
        HTTP_ERRORS_TOTAL,
        "HTTP error responses, by stable error code."
    );
    describe_counter!(
        DEPENDENCY_UNAVAILABLE_TOTAL,
        "Requests answered 503 not_ready because a dependency (postgres, redis) was away."
    );
    describe_gauge!(
        DEPENDENCY_UP,
        "1 when the dependency answered its last readiness check, else 0."
    );
    describe_histogram!(
        DEPENDENCY_CHECK_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of readiness checks, by dependency."
    );
    describe_gauge!(
        DB_POOL_CONNECTIONS,
        "Postgres pool connections, by state (idle, in_use, max)."
    );
    describe_gauge!(
        DB_POOL_WAITING,
        "Requests waiting for a pooled Postgres connection."
    );
    describe_gauge!(
        REDIS_CONNECTED,
        "1 when every Redis connection (commands, and the control and data subscribers) is up, else 0."
    );
    describe_counter!(
        REDIS_RECONNECTS_TOTAL,
        "Connections (first and re-) of each Redis subscriber, by lane (control, data)."
    );
    describe_counter!(
        CONTROL_EVENTS_TOTAL,
        "Control-channel events received, by kind."
    );
    describe_counter!(
        CONTROL_EVENTS_INVALID_TOTAL,
        "Control-channel messages that could not be decoded."
    );
    describe_counter!(
        BUS_MESSAGES_LAGGED_TOTAL,
        "Redis messages dropped because the bridge fell behind its subscriber."
    );
    describe_counter!(
        ACTOR_RESTARTS_TOTAL,
        "Restarts of supervised actors, by actor."
    );
    describe_gauge!(BUILD_INFO, "Always 1; the version label names the build.");
    describe_gauge!(
        LEASE_LEADER,
        "1 while this instance holds the named leader lease, else 0."
    );
    describe_counter!(
        LEASE_TRANSITIONS_TOTAL,
        "Changes of leadership of the named lease seen by this instance."
    );
    describe_counter!(
        identity::AUTH_EVENTS_TOTAL,
        "Identity events: register, login, login_failed, login_blocked, password_upgraded, refresh, refresh_reuse, logout, forbidden, block, unblock."
    );
    describe_counter!(
        identity::AUTH_TOKEN_REJECTIONS_TOTAL,
        "Access tokens refused, by reason (expired, invalid, blocked)."
    );
    describe_counter!(
        identity::RATE_LIMITED_TOTAL,
        "Requests refused by a rate limit, by scope and key kind (ip, user)."
    );
    describe_counter!(
        identity::RATE_LIMIT_ERRORS_TOTAL,
        "Rate-limit checks that failed (Redis unavailable); those requests were allowed."
    );
    describe_counter!(
        identity::AUDIT_WRITE_ERRORS_TOTAL,
        "Audit entries that could not be written."
    );
    describe_counter!(
        AUDIT_PRUNED_TOTAL,
        "Audit entries deleted past their retention."
    );
    describe_counter!(
        DATA_PARTITIONS_DROPPED_TOTAL,
        "Days of stored producer data dropped past their retention."
    );
    describe_counter!(
        registry::REGISTRY_MUTATIONS_TOTAL,
        "Changes of the node registry committed by this instance, by event (CREATED, UPDATED, DELETED)."
    );
    describe_counter!(
        registry::REGISTRY_EVENTS_RELAYED_TOTAL,
        "Registry events this instance copied from the outbox into the Redis Stream."
    );
    describe_gauge!(
        registry::REGISTRY_WATCHERS,
        "Open watches of the registry's events on this instance (WebSocket and gRPC)."
    );
    describe_counter!(
        registry::REGISTRY_RESETS_TOTAL,
        "Watchers told RESET: they asked for events older than those kept."
    );
    describe_counter!(
        webhooks::WEBHOOK_EVENTS_TOTAL,
        "Events emitted to webhooks, by type (before matching: an event no webhook wants counts too)."
    );
    describe_counter!(
        webhooks::WEBHOOK_DELIVERIES_TOTAL,
        "Webhook delivery attempts, by outcome (delivered, retried, failed)."
    );
    describe_histogram!(
        webhooks::WEBHOOK_DELIVERY_SECONDS,
        Unit::Seconds,
        "Time of one webhook delivery attempt."
    );
    describe_counter!(
        children::CHILD_REQUESTS_TOTAL,
        "Requests children made, by outcome (ok, key_invalid, signature_invalid, replayed, rate_limited, bad_request)."
    );
    describe_counter!(
        children::CHILD_LEASES_TOTAL,
        "Leases signed, by status (active, maintenance, blocked)."
    );
    describe_gauge!(
        children::CHILDREN_GAUGE,
        "Children by liveness (new, online, late, offline, revoked), as the leader's last sweep counted them."
    );
    describe_counter!(
        children::CHILD_LIVENESS_CHANGES_TOTAL,
        "Children's liveness changes, by the liveness reached."
    );
    describe_gauge!(
        children::CHILD_DISRUPTION_GUARD,
        "1 while the disruption guard holds late and offline marking back (most children silent at once)."
    );
    describe_counter!(
        children::CHILD_PUSHES_TOTAL,
        "Frames pushed to children's control sockets, by type."
    );
    describe_counter!(
        children::CHILD_PUSHES_MISSED_TOTAL,
        "Pushes this instance's child registry fell behind on (every connected child was then asked to heartbeat)."
    );
    describe_histogram!(
        children::writer::CHILD_HEARTBEAT_BATCH,
        "Heartbeats written per statement."
    );
    describe_gauge!(
        children::CHILD_CONTROL_SOCKETS,
        "Children's control sockets open on this instance."
    );
    describe_counter!(
        TLS_RELOADS_TOTAL,
        "Reloads of the TLS certificate after its files changed, by outcome (ok, failed)."
    );
}

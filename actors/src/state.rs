//! `AppState`: what the HTTP handlers share. It sits below the routes (`http`) and above the
//! runtime's actors and services, which it only holds: nothing here imports a route.

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use metrics_exporter_prometheus::PrometheusHandle;
use nodegrid_services::bus::RedisBus;
use nodegrid_services::children::Children;
use nodegrid_services::config::StreamLimits;
use nodegrid_services::db::Database;
use nodegrid_services::identity::Identity;
use nodegrid_services::identity::api_tokens::ApiTokens;
use nodegrid_services::ratelimit::LocalRateLimiter;
use nodegrid_services::registry::NodeRegistry;
use nodegrid_services::streams::access::StreamAccess;
use nodegrid_services::streams::data::DataStore;
use nodegrid_services::streams::directory::ProducerDirectory;
use nodegrid_services::streams::history::StreamHistory;
use nodegrid_services::streams::policies::ProducerPolicies;
use nodegrid_services::streams::subscriptions::Subscriptions;
use nodegrid_services::webhooks::Webhooks;
use uuid::Uuid;

use crate::bridge::RedisBridge;
use crate::children::registry::ChildRegistry;
use crate::pnodes::PnodeRuntime;
use crate::stream::fanout::StreamFanout;
use crate::stream::ingest::Ingest;
use crate::stream::registry::ConnectionRegistry;

/// What the HTTP handlers share.
pub struct AppState {
    pub instance_id: Uuid,
    pub database: Database,
    pub bus: RedisBus,
    pub prometheus: PrometheusHandle,
    pub process_collector: metrics_process::Collector,
    pub ready_timeout: Duration,
    pub identity: Identity,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub bridge: Addr<RedisBridge>,
    pub fanout: Addr<StreamFanout>,
    /// Publishing: the publisher, the producers' policies, the data writer.
    pub ingest: Ingest,
    pub policies: ProducerPolicies,
    pub history: StreamHistory,
    pub data: DataStore,
    pub producers: ProducerDirectory,
    pub api_tokens: ApiTokens,
    /// Browser origins allowed to call the API and open sockets.
    pub cors_allowed_origins: Vec<String>,
    pub subscriptions: Subscriptions,
    pub stream_access: StreamAccess,
    pub producer_registry: Addr<ConnectionRegistry>,
    pub session_registry: Addr<ConnectionRegistry>,
    pub stream_limits: StreamLimits,
    pub pnodes: PnodeRuntime,
    /// The node registry, and whether its reads need a token.
    pub nodes: NodeRegistry,
    pub registry_public_reads: bool,
    /// The pNode API's GraphQL schema (over `pnodes`).
    pub pnode_graphql: crate::pnodes::graphql::PnodeSchema,
    /// The methods each route pattern takes (the `Allow` of a 405).
    pub allowed_methods: Arc<std::collections::HashMap<String, String>>,
    /// Webhook registration and delivery logs.
    pub webhooks: Webhooks,
    /// Plans, clients, children, heartbeats and leases.
    pub children: Children,
    /// The children connected to this instance, and the admin queries about children.
    pub child_registry: Addr<ChildRegistry>,
    /// Requests to paths no route matches, per client address.
    pub not_found_limiter: Arc<LocalRateLimiter>,
}

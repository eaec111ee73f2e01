//! nodegrid's runtime: actix actors, their registries, the HTTP routes, and the `nodegrid`
//! binary.
//!
//! # Layout
//!
//! - [`app`]: [`app::Application`] builds everything from [`Settings`](nodegrid_services::config::Settings),
//!   binds the listener, runs until told to stop, and shuts down in order.
//! - [`state`]: `AppState`, what the HTTP handlers share.
//! - [`state_watcher`]: the [`state_watcher::StateWatcher`] actor that keeps the in-memory
//!   shared state (access gate, subscription index) current.
//! - [`stream`]: producer connections, consumer sessions, their registries and routes.
//! - [`pnodes`]: pNode analytics: pollers, the aggregation cycle, the snapshot the
//!   `/api/xandeum` routes answer from, and the pRPC simulator.
//! - [`bridge`]: the [`bridge::RedisBridge`] actor that owns the Redis subscriber and dispatches
//!   the control channel to the actors that registered for it.
//! - [`children`]: the [`children::checker::HeartbeatChecker`] that marks silent children late
//!   and offline on the leader, the [`children::registry::ChildRegistry`] of the children
//!   connected to this instance (a [`children::node::ChildNode`] each) and of the admin queries.
//! - [`housekeeping`]: the [`housekeeping::Housekeeper`] that prunes the audit log on the
//!   leader.
//! - [`http`]: routes, the JSON error type, and the request-observing middleware.
//! - [`grpc`]: the gRPC API (tonic): the node registry's `NodeService`.
//! - [`node_registry`]: the node registry's runtime: the event tail for watchers, the relay,
//!   the device sweep.
//! - [`webhooks`]: the webhook deliverer's task (on the housekeeping leader).
//! - [`metrics`]: the names of the runtime's own metrics.
//! - [`tls`]: HTTPS and WSS on the API port, the certificate re-read when its files change.
//! - [`telemetry`]: tracing set-up and the Prometheus recorder.
//!
//! **Architecture invariant:** only this crate knows actix. It talks to Postgres and Redis
//! through `nodegrid-services`, never directly.

pub mod app;
pub mod bridge;
pub mod children;
pub mod grpc;
pub mod housekeeping;
pub mod http;
pub mod metrics;
pub mod node_registry;
pub mod pnodes;
pub mod state;
pub mod state_watcher;
pub mod stream;
pub mod telemetry;
pub mod tls;
pub mod webhooks;

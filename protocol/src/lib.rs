//! nodegrid's wire types, shared by the server, its agents and its tests.
//!
//! # Layout
//!
//! - [`auth`]: identity: users, tokens, roles, the admin views, the audit log.
//! - [`api_tokens`]: API tokens (`ngt_…`) and their scopes.
//! - [`error`]: the JSON error body every HTTP error answers with, and the stable codes in it.
//! - [`health`]: the bodies of `/health` and `/ready`.
//! - [`json_errors`]: decoding errors described in the client's terms.
//! - [`stream`]: the WebSocket frames, subscription bodies and the admin connections view.
//! - [`prpc`]: Xandeum pRPC (the pNodes' JSON-RPC): requests, and the defensive reading of
//!   their answers.
//! - [`pnode_api`]: the pNode API (`/api/xandeum/*`, `/api/admin/pollers`): query parameters
//!   with their checks, and the bodies answered.
//! - [`children`]: mother and child nodes: plans, clients, children, heartbeats, signed leases,
//!   request signatures.
//! - [`webhooks`]: webhook registration, the signed deliveries' body and headers.
//! - [`control`]: the events that travel on a deployment's Redis control channel, so that a
//!   change made on one instance takes effect on all of them.
//!
//! **Architecture invariant:** this crate does no IO and knows nothing of actix, Postgres or
//! Redis. Clients depend on it alone.

pub mod api_tokens;
pub mod auth;
pub mod children;
pub mod console;
pub mod control;
pub mod error;
pub mod health;
pub mod json_errors;
pub mod pnode_api;
pub mod prpc;
pub mod registry;
pub mod stream;
pub mod webhooks;

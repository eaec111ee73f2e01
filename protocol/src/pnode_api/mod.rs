//! The pNode API (`/api/xandeum/*` and `/api/admin/pollers`): its query parameters and the
//! bodies it answers with. The server computes them in `nodegrid-services`; clients can read
//! them with these types.
//!
//! # Layout
//!
//! - [`params`]: what every query shares: values from closed sets ([`params::Choice`]),
//!   ranges, and [`params::InvalidQuery`], the one error of a parameter that was read but is
//!   not acceptable (answered `validation_failed`).
//! - [`queries`]: each route's query parameters, and the checked request they become.
//! - [`changes`]: what changed from one cycle to the next: the live socket's messages and
//!   filters, and the `pnode.*` events.
//! - [`node`]: one pNode as the API shows it: scores, tier, alerts.
//! - [`nodes`]: the bodies of `/pnodes`, `/recommendations`, `/pnodes/compare`, the registry
//!   and graveyard pages, the prune.
//! - [`network`]: the overview, snapshot health, network health and analytics, gossip
//!   consistency, operators.
//! - [`topology`]: the two large answers serialised once per snapshot: the gossip graph and
//!   each seed's answer as it came.
//! - [`alerts`]: alerts over the network and of one node.
//! - [`history`]: network and per-node history, growth, metrics summaries.
//! - [`pollers`]: the admin view of the pRPC pollers.

pub mod alerts;
pub mod changes;
pub mod history;
pub mod network;
pub mod node;
pub mod nodes;
pub mod params;
pub mod pollers;
pub mod queries;
pub mod topology;

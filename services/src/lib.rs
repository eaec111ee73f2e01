//! nodegrid's services: everything that talks to the outside world or holds domain rules, without
//! actors.
//!
//! # Layout
//!
//! - [`config`]: the server's settings, from flags, environment variables and a TOML file.
//! - [`db`]: the Postgres pool, start-up checks and migrations.
//! - [`bus`]: the Redis connections (publisher and dedicated subscriber) and the key scheme.
//! - [`identity`]: users, tokens, blocks, the audit log.
//! - [`import`]: bringing another system's deployment into nodegrid (`nodegrid import`).
//! - [`streams`]: subscriptions and the stream publisher.
//! - [`shared_state`]: in-memory state that control events keep current on every instance.
//! - [`ratelimit`]: token buckets in Redis.
//! - [`registry`]: the node registry: nodes in Postgres, their events through an outbox into a
//!   Redis Stream.
//! - [`pnodes`]: pNode analytics: pRPC client, merge, scores, alerts, the network view, its store.
//! - [`children`]: mother and child nodes: plans, clients, children, heartbeats and signed
//!   leases, late and offline marking.
//! - [`lease`]: the leader lease that makes once-only work happen on exactly one instance.
//! - [`text`]: client text made safe to keep (names refused, free text escaped).
//!
//! **Architecture invariant:** only this crate talks to Postgres and Redis, and it knows nothing
//! of actix. The `actors` crate calls it; it never calls `actors`.

pub mod bus;
pub mod children;
pub mod config;
pub mod db;
pub mod identity;
pub mod import;
pub mod keyed;
pub mod lease;
pub mod pnodes;
pub mod ratelimit;
pub mod registry;
pub mod shared_state;
pub mod streams;
pub mod text;
pub mod webhooks;

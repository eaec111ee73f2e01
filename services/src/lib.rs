//! nodegrid's services: everything that talks to the outside world or holds domain rules, without
//! actors.
//!
//! # Layout
//!
//! - [`config`]: the server's settings, from flags, environment variables and a TOML file.
//! - [`db`]: the Postgres pool, start-up checks and migrations.
//! - [`bus`]: the Redis connections (publisher and dedicated subscriber) and the key scheme.
//! - [`identity`]: users, tokens, blocks, the audit log.
//! - [`streams`]: subscriptions and the stream publisher.
//! - [`shared_state`]: in-memory state that control events keep current on every instance.
//! - [`ratelimit`]: token buckets in Redis.
//! - [`pnodes`]: pNode analytics: pRPC client, merge, scores, alerts, the network view, its store.
//! - [`lease`]: the leader lease that makes once-only work happen on exactly one instance.
//! - [`text`]: client text made safe to keep (names refused, free text escaped).
//!
//! **Architecture invariant:** only this crate talks to Postgres and Redis, and it knows nothing
//! of actix. The `actors` crate calls it; it never calls `actors`.

pub mod bus;
pub mod config;
pub mod db;
pub mod identity;
pub mod lease;
pub mod pnodes;
pub mod ratelimit;
pub mod shared_state;
pub mod streams;
pub mod text;

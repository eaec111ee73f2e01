//! nodegrid's integration tests: real servers on real sockets, against the real Postgres and
//! Redis of the machine. Each test gets its own database and its own Redis prefix, so the tests
//! run in parallel without seeing each other.
//!
//! One test binary (faster to link than one per file); one module per area.

// A failed unwrap is how a test reports an unexpected error; the rule against it is for the
// server's code, where the input comes from outside.
#![allow(clippy::unwrap_used)]

mod helpers;

mod authorization;
mod bench;
mod binary;
mod browser;
mod bus;
mod child_agent;
mod children;
mod clock;
mod concurrency;
mod console;
mod device;
mod exposure;
mod faults;
mod history;
mod identity;
mod lease;
mod migrations;
mod motience;
mod motience_import;
mod nodes;
mod outage;
mod pnode_live;
mod pnodes;
mod private;
mod probes;
mod publish;
mod raw;
mod reliability;
mod security;
mod sessions;
mod shutdown;
mod stored;
mod streaming;
mod webhooks;
mod ws;

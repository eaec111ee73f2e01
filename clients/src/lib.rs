//! Programs that run beside nodegrid rather than in it.
//!
//! # Layout
//!
//! - [`device`]: the device agent (`nodegrid device`): logs in, streams this machine's
//!   readings as a producer, renews its token, survives outages.
//! - [`child`]: the child agent (`nodegrid child`): heartbeats to the mother, keeps the signed
//!   lease, answers the local application through its gate, fails secure.
//! - [`bench`]: the load generator (`nodegrid bench`), against nodegrid or an MQTT broker.
//! - [`pnode_sim`]: a pRPC simulator of Xandeum seed nodes (`nodegrid sim pnodes`).
//! - [`nodes`]: the node registry's command line (`nodegrid nodes`, nodectl's commands), over
//!   gRPC.
//! - [`nodes_sim`]: `nodegrid sim nodes`, the registry's load simulator (the seed's demo-sim).
//! - [`tls`]: the clients' TLS: system authorities and a `--ca-file`.
//! - [`sensor`]: `nodegrid sensor http|system`, which keep one node's status current.
//!
//! **Architecture invariant:** clients depend on `nodegrid-protocol` alone: they talk to
//! nodegrid only over its public HTTP, WebSocket and gRPC APIs, with the wire types, and the compiler
//! keeps it so (this crate cannot see the server's actors or services). What a client serves
//! itself (the simulator's pRPC endpoint) may use an HTTP server library.

pub mod bench;
pub mod child;
pub mod device;
pub mod nodes;
pub mod nodes_sim;
pub mod pnode_sim;
pub mod sensor;
pub mod tls;

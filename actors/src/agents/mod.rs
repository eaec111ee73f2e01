//! Programs that run beside nodegrid rather than in it.
//!
//! **Architecture invariant:** agents talk to nodegrid only over its public HTTP and WebSocket
//! API, with the types of `nodegrid-protocol`; they use nothing of the server's actors or
//! services, so they can move to a crate of their own unchanged.

pub mod bench;
pub mod device;

//! The mother's children, as actors: the [`checker::HeartbeatChecker`] (leader only) that marks
//! silent children late and offline, the [`registry::ChildRegistry`] of the children connected
//! to this instance and of the admin queries, and a [`node::ChildNode`] per connected child,
//! which carries the pushes to its control sockets.

pub mod checker;
pub mod node;
pub mod registry;

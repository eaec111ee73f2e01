//! Mother and child nodes: the mother (nodegrid) licenses the children that clients run beside
//! their applications.
//!
//! - [`admin`]: what admins send and read: plans, clients, children, maintenance, versions.
//! - [`control`]: what the mother pushes on a child's control socket.
//! - [`lease`]: the heartbeat a child sends and the signed lease it gets back, and how a child
//!   checks one.
//! - [`signing`]: child keys (`ngc_…`) and the signature over every request a child makes.
//! - [`users`]: a client's users at its children: sign-in through the mother, checks, the
//!   blocked list, the session a gate checks.
//! - [`version`]: comparing dotted version numbers.

pub mod admin;
pub mod control;
pub mod lease;
pub mod signing;
pub mod users;
pub mod version;

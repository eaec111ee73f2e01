//! The control socket (`GET /api/child/control`): what the mother pushes to a child the moment
//! an admin acts. Every frame is a [`super::users::SignedAnswer`] whose payload is a
//! [`ControlFrame`]; a child checks the signature, that the frame names it, and that it is
//! fresh, then applies it at once and heartbeats for the lease that states it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::admin::{Maintenance, VersionPolicy};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlFrame {
    pub child_id: Uuid,
    pub issued_at: DateTime<Utc>,
    #[serde(flatten)]
    pub push: ControlPush,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlPush {
    /// Maintenance changed.
    Maintenance { maintenance: Maintenance },
    /// The version policy changed.
    Version { policy: VersionPolicy },
    /// A user of the client was blocked: refuse them and end their sessions now.
    Block {
        user_id: i64,
        blocked_users_version: i64,
    },
    Unblock {
        user_id: i64,
        blocked_users_version: i64,
    },
    /// The client's terms changed (subscription, plan, configuration): heartbeat now.
    Lease,
}

impl ControlPush {
    pub const fn kind(&self) -> &'static str {
        match self {
            ControlPush::Maintenance { .. } => "maintenance",
            ControlPush::Version { .. } => "version",
            ControlPush::Block { .. } => "block",
            ControlPush::Unblock { .. } => "unblock",
            ControlPush::Lease => "lease",
        }
    }
}

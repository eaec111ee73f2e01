//! What the registry's parts share: its error type, who changes it, its settings and its
//! metric names.

use crate::bus::BusError;
use crate::db::DbError;
use uuid::Uuid;

/// Metric names of the registry.
pub const REGISTRY_MUTATIONS_TOTAL: &str = "nodegrid_registry_mutations_total";
pub const REGISTRY_EVENTS_RELAYED_TOTAL: &str = "nodegrid_registry_events_relayed_total";
pub const REGISTRY_WATCHERS: &str = "nodegrid_registry_watchers";
pub const REGISTRY_RESETS_TOTAL: &str = "nodegrid_registry_resets_total";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    Validation(String),
    #[error("no node {0}")]
    NotFound(Uuid),
    /// A name taken within its type, or an id taken.
    #[error("{0}")]
    Conflict(String),
    // Not `transparent`: the dependency error stays in the chain, where the HTTP boundary
    // looks for it to answer 503 when Postgres or Redis is away.
    #[error("{0}")]
    Database(#[from] DbError),
    // Not `transparent`: the dependency error stays in the chain, where the HTTP boundary
    // looks for it to answer 503 when Postgres or Redis is away.
    #[error("{0}")]
    Bus(#[from] BusError),
}

impl From<tokio_postgres::Error> for RegistryError {
    fn from(error: tokio_postgres::Error) -> RegistryError {
        RegistryError::Database(DbError::from(error))
    }
}

/// Who changes the registry, for the audit log: a user, or an operator token (named by
/// [`RegistryActor::token`]). What nodegrid reports of the nodes it runs (devices, pNodes) is
/// not an admin action and is not audited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryActor {
    User { user_id: i64, username: String },
    Token { label: String },
}

impl RegistryActor {
    /// An API token, named masked as the seed's audit names it: `token:****3a4b`, its last
    /// four characters.
    pub fn token(token: &str) -> RegistryActor {
        let tail: String = token
            .chars()
            .skip(token.chars().count().saturating_sub(4))
            .collect();
        RegistryActor::Token {
            label: format!("token:****{tail}"),
        }
    }
}

/// The registry's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrySettings {
    /// Events the Redis Stream keeps (about; trimmed on append).
    pub events_kept: u64,
}

//! Which user ids are producers, remembered once seen, so that publishing for a producer by an
//! admin or an API token costs no query after the first (a user's role never changes).

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use deadpool_postgres::GenericClient;
use nodegrid_protocol::auth::Role;

use crate::db::{Database, DbError};

/// Producers remembered at most; past it the memory starts again (a query each, then).
const MAX_REMEMBERED: usize = 100_000;

#[derive(Clone)]
pub struct ProducerDirectory {
    database: Database,
    known: Arc<RwLock<HashSet<i64>>>,
}

impl ProducerDirectory {
    pub fn new(database: Database) -> ProducerDirectory {
        ProducerDirectory {
            database,
            known: Arc::default(),
        }
    }

    /// Whether `user_id` is a producer.
    pub async fn is_producer(&self, user_id: i64) -> Result<bool, DbError> {
        if self
            .known
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(&user_id)
        {
            return Ok(true);
        }
        let role = {
            let client = self.database.client().await?;
            client
                .query_opt("SELECT role FROM users WHERE id = $1", &[&user_id])
                .await?
                .map(|row| row.get::<_, String>(0))
        };
        let producer = role.as_deref() == Some(Role::Producer.as_str());
        if producer {
            let mut known = self
                .known
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if known.len() >= MAX_REMEMBERED {
                known.clear();
            }
            known.insert(user_id);
        }
        Ok(producer)
    }

    /// Remembers a producer the caller knows of (its own token says so).
    pub fn remember(&self, user_id: i64) {
        let mut known = self
            .known
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if known.len() < MAX_REMEMBERED {
            known.insert(user_id);
        }
    }
}

//! Postgres: the connection pool, the start-up check, and migrations.
//!
//! Migrations live in the workspace's `sql/migrations` folder as `V<n>__<name>.sql`, are embedded
//! into the binary at build time, and run forward only. They run under a Postgres advisory lock
//! on a connection of their own, so that two instances starting at once apply each migration
//! exactly once, and the lock is released even if the process dies mid-way.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

mod embedded {
    refinery::embed_migrations!("../sql/migrations");
}

/// A key of our own for `pg_advisory_lock`, so that migrations never wait on another
/// application's lock in a shared database. ("nodegrid" in ASCII, as a big-endian i64.)
const MIGRATION_LOCK_KEY: i64 = 0x6e6f_6465_6772_6964;

/// How long start-up waits for the first Postgres connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What can go wrong at the database boundary.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database URL is not valid: {0}")]
    InvalidUrl(String),
    #[error("database {database:?} does not exist (create it, e.g. with scripts/up.sh)")]
    MissingDatabase { database: String },
    #[error("database is unreachable at {target}: {reason}")]
    Unreachable { target: String, reason: String },
    #[error("database did not answer within {0:?}")]
    Timeout(Duration),
    #[error("migrations failed: {0}")]
    Migration(String),
    #[error("database error: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error("no pooled database connection: {0}")]
    Pool(String),
    /// A stored value this version cannot read (not a dependency being away).
    #[error("stored data is not readable: {0}")]
    Corrupt(String),
}

impl DbError {
    /// Whether the database is away (down, restarting, unreachable, out of connections) rather
    /// than the request being wrong: callers answer 503 and the client retries.
    pub fn is_unavailable(&self) -> bool {
        use tokio_postgres::error::SqlState;
        match self {
            DbError::Unreachable { .. } | DbError::Timeout(_) | DbError::Pool(_) => true,
            DbError::Query(error) => {
                error.is_closed()
                    || error.as_db_error().is_some_and(|db| {
                        [
                            SqlState::ADMIN_SHUTDOWN,
                            SqlState::CRASH_SHUTDOWN,
                            SqlState::CANNOT_CONNECT_NOW,
                            SqlState::TOO_MANY_CONNECTIONS,
                        ]
                        .contains(db.code())
                    })
                    // No answer at all: the connection broke under the query.
                    || (error.as_db_error().is_none() && error.code().is_none()
                        && std::error::Error::source(error)
                            .is_some_and(|source| source.is::<std::io::Error>()))
            }
            DbError::InvalidUrl(_)
            | DbError::MissingDatabase { .. }
            | DbError::Migration(_)
            | DbError::Corrupt(_) => false,
        }
    }
}

/// Which migrations a run applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Versions applied by this run, in order; empty when the schema was already current.
    pub applied: Vec<i32>,
}

/// A pool of Postgres connections and what it was built from.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    config: tokio_postgres::Config,
}

/// How the pool is doing, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    pub max_size: usize,
    pub size: usize,
    pub available: usize,
    pub waiting: usize,
}

impl Database {
    /// Builds the pool and checks that the database answers, so that a wrong URL or a missing
    /// database is reported at start-up as one clear error.
    pub async fn connect(url: &str, pool_size: usize) -> Result<Database, DbError> {
        let config = parse_url(url)?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(CONNECT_TIMEOUT))
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|error| DbError::Pool(error.to_string()))?;
        let database = Database { pool, config };
        database.ping().await?;
        Ok(database)
    }

    /// The pool, for repositories.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// A pooled connection.
    pub async fn client(&self) -> Result<deadpool_postgres::Client, DbError> {
        self.pool.get().await.map_err(|error| self.explain(error))
    }

    /// One round trip to the database through the pool.
    pub async fn ping(&self) -> Result<(), DbError> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await?;
        Ok(())
    }

    /// Applies the pending migrations; see the module documentation for the locking.
    pub async fn migrate(&self) -> Result<MigrationReport, DbError> {
        let (mut client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|error| classify_connect_error(&self.config, error))?;
        let connection_task = tokio::spawn(connection);
        let outcome = async {
            client
                .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
                .await?;
            let report = embedded::migrations::runner()
                .run_async(&mut client)
                .await
                .map_err(|error| DbError::Migration(error.to_string()));
            client
                .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
                .await?;
            let report = report?;
            Ok::<_, DbError>(MigrationReport {
                applied: report
                    .applied_migrations()
                    .iter()
                    .map(|migration| migration.version())
                    .collect(),
            })
        }
        .await;
        // Closing the connection also drops the session lock if the unlock above never ran.
        drop(client);
        let _ = connection_task.await;
        outcome
    }

    /// Versions of every migration this binary carries, in order.
    pub fn known_migrations() -> Vec<i32> {
        // In version order: the embedded list follows the files' names, where V10 sorts
        // before V2.
        let mut versions: Vec<i32> = embedded::migrations::runner()
            .get_migrations()
            .iter()
            .map(|migration| migration.version())
            .collect();
        versions.sort_unstable();
        versions
    }

    /// The pool's current numbers.
    pub fn status(&self) -> PoolStatus {
        let status = self.pool.status();
        PoolStatus {
            max_size: status.max_size,
            size: status.size,
            available: status.available,
            waiting: status.waiting,
        }
    }

    /// Closes the pool: connections are dropped as they come back.
    pub fn close(&self) {
        self.pool.close();
    }

    fn explain(&self, error: deadpool_postgres::PoolError) -> DbError {
        match error {
            deadpool_postgres::PoolError::Backend(error) => {
                classify_connect_error(&self.config, error)
            }
            deadpool_postgres::PoolError::Timeout(_) => DbError::Timeout(CONNECT_TIMEOUT),
            other => DbError::Pool(other.to_string()),
        }
    }
}

fn parse_url(url: &str) -> Result<tokio_postgres::Config, DbError> {
    let mut config = tokio_postgres::Config::from_str(url)
        .map_err(|error| DbError::InvalidUrl(error.to_string()))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.application_name("nodegrid");
    Ok(config)
}

/// Turns a connection failure into the error a person can act on. The URL's password never
/// appears: only hosts, ports and the database name are named.
fn classify_connect_error(
    config: &tokio_postgres::Config,
    error: tokio_postgres::Error,
) -> DbError {
    let database = config.get_dbname().unwrap_or("postgres").to_owned();
    if let Some(db_error) = error.as_db_error()
        && db_error.code() == &tokio_postgres::error::SqlState::INVALID_CATALOG_NAME
    {
        return DbError::MissingDatabase { database };
    }
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(host, port)| match host {
            tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
            tokio_postgres::config::Host::Unix(path) => format!("{}:{port}", path.display()),
        })
        .collect();
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        reason = format!("{reason}: {cause}");
        source = cause.source();
    }
    DbError::Unreachable {
        target: format!("{}/{database}", hosts.join(",")),
        reason,
    }
}

//! Mother and child nodes, the mother's side: plans, clients and their children, the keys
//! children authenticate with, heartbeats answered with signed leases, and the sweep that marks
//! silent children late and offline.
//!
//! - [`keys`]: the lease signing keys and the keyed hash of child keys.
//! - [`catalogue`]: what every instance holds in memory to answer a heartbeat with no read.
//! - [`admin`]: what admins do: plans, clients, children, maintenance, versions.
//! - [`heartbeat`]: a child's signed request checked, its heartbeat written, its lease signed.
//! - [`users`]: a client's users at its children: sign-in, checks, the blocked list.
//! - [`writer`]: heartbeats written in batches, one statement for those that arrive together.
//! - [`presence`]: where each child's control socket is connected, across instances.
//! - [`sweep`]: late and offline marking with the disruption guard (the leader runs it).
//! - [`store`]: the SQL.
//!
//! Every change an admin makes is written with its audit entry in one transaction, applied to
//! this instance's catalogue before the call answers, and announced on the control channel
//! (`children_changed`) so that every other instance reloads the part named.

pub mod admin;
pub mod catalogue;
pub mod heartbeat;
pub mod keys;
pub mod presence;
pub mod store;
pub mod sweep;
pub mod users;
pub mod writer;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use nodegrid_protocol::children::admin::{Maintenance, VersionPolicy};
use nodegrid_protocol::control::{ChildrenScope, ControlEnvelope, ControlEvent};
use secrecy::SecretString;
use uuid::Uuid;

use self::catalogue::{Catalogue, ChildEntry, ClientTerms, PlanTerms};
use self::keys::{KeyedHash, MotherKeys};
use crate::bus::{BusError, RedisBus};
use crate::db::{Database, DbError};
use crate::ratelimit::LocalRateLimiter;
use crate::shared_state::SharedState;

/// Requests children made, by outcome (`ok`, `key_invalid`, `signature_invalid`, `replayed`,
/// `rate_limited`, `bad_request`).
pub const CHILD_REQUESTS_TOTAL: &str = "nodegrid_child_requests_total";
/// Leases signed, by status.
pub const CHILD_LEASES_TOTAL: &str = "nodegrid_child_leases_total";
/// Children by liveness, as the last sweep counted them.
pub const CHILDREN_GAUGE: &str = "nodegrid_children";
/// Liveness changes, by the liveness reached.
pub const CHILD_LIVENESS_CHANGES_TOTAL: &str = "nodegrid_child_liveness_changes_total";
/// 1 while the disruption guard holds offline marking back.
pub const CHILD_DISRUPTION_GUARD: &str = "nodegrid_child_disruption_guard";
/// Control sockets open on this instance.
pub const CHILD_CONTROL_SOCKETS: &str = "nodegrid_child_control_sockets";
/// Frames pushed on control sockets, by type.
pub const CHILD_PUSHES_TOTAL: &str = "nodegrid_child_pushes_total";
/// Pushes an instance's child registry fell behind on (every child was asked to heartbeat).
pub const CHILD_PUSHES_MISSED_TOTAL: &str = "nodegrid_child_pushes_missed_total";

/// Which children a push is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    All,
    Client(i64),
    Child(Uuid),
}

/// What a control socket is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    Frame(nodegrid_protocol::children::control::ControlPush),
    /// The child's key changed or was revoked: its socket ends.
    Close,
}

/// A push for an audience; the instance's child registry hands it to the children it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub audience: Audience,
    pub push: Push,
}

/// Pushes waiting for slow sockets; one that falls further behind is closed (its child
/// reconnects and heartbeats).
const PUSH_BUFFER: usize = 1_024;

/// The settings key of maintenance mode and of the version policy.
const MAINTENANCE_SETTING: &str = "children.maintenance";
const VERSIONS_SETTING: &str = "children.versions";

/// How the mother treats its children.
#[derive(Debug, Clone)]
pub struct ChildSettings {
    /// How long a lease is valid after it is issued.
    pub lease_ttl: Duration,
    /// The heartbeat interval children are told to keep; late and offline follow it.
    pub heartbeat_interval: Duration,
    /// How far a request's timestamp may be from the mother's clock.
    pub max_clock_skew: Duration,
    /// The version of the lease signing key (raise it to rotate).
    pub signing_key_version: u32,
    /// Requests per second each child may make on each instance, and its burst.
    pub rate_per_sec: u32,
    pub rate_burst: u32,
    /// How long a session a child's gate gets at a user's sign-in lasts.
    pub session_ttl: Duration,
    /// Share of the heartbeating children that, going silent in one sweep, makes the checker
    /// assume the mother is the one cut off.
    pub disruption_share: f64,
    /// Fewer heartbeating children than this never trip the guard.
    pub disruption_min_population: u32,
}

impl ChildSettings {
    /// Silent this long: late (one heartbeat missed, with half an interval's slack for jitter).
    pub fn late_after(&self) -> Duration {
        self.heartbeat_interval.mul_f64(1.5)
    }

    /// Silent this long: offline (three heartbeats missed).
    pub fn offline_after(&self) -> Duration {
        self.heartbeat_interval.mul_f64(3.5)
    }
}

impl Default for ChildSettings {
    fn default() -> ChildSettings {
        ChildSettings {
            lease_ttl: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(30),
            max_clock_skew: Duration::from_secs(300),
            signing_key_version: 1,
            rate_per_sec: 10,
            rate_burst: 50,
            session_ttl: Duration::from_secs(3_600),
            disruption_share: 0.5,
            disruption_min_population: 10,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChildrenError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PlanLimitReached(String),
    /// Not a key of a live child; the caller is not told which.
    #[error("the child key is not valid")]
    KeyInvalid,
    #[error("{0}")]
    SignatureInvalid(&'static str),
    #[error("too many requests from this child")]
    RateLimited(Duration),
    // Not `transparent`: the HTTP boundary looks for the dependency error in the chain.
    #[error("{0}")]
    Database(#[from] DbError),
    #[error("{0}")]
    Bus(#[from] BusError),
}

impl From<tokio_postgres::Error> for ChildrenError {
    fn from(error: tokio_postgres::Error) -> Self {
        ChildrenError::Database(error.into())
    }
}

/// The mother's children: shared by the HTTP handlers and the heartbeat checker.
#[derive(Clone)]
pub struct Children {
    database: Database,
    bus: RedisBus,
    instance_id: Uuid,
    settings: Arc<ChildSettings>,
    keys: Arc<MotherKeys>,
    catalogue: Arc<RwLock<Catalogue>>,
    limiter: Arc<LocalRateLimiter<Uuid>>,
    pushes: tokio::sync::broadcast::Sender<Arc<Pushed>>,
    writer: writer::HeartbeatWriter,
}

impl Children {
    /// `signing_secret` derives the lease signing keys; `key_hash_secret` keys the hashes of
    /// child keys.
    pub fn new(
        database: Database,
        bus: RedisBus,
        instance_id: Uuid,
        settings: ChildSettings,
        signing_secret: &SecretString,
        key_hash_secret: SecretString,
    ) -> Children {
        let writer = writer::HeartbeatWriter::start(database.clone(), settings.lease_ttl);
        let keys = MotherKeys::new(
            signing_secret,
            settings.signing_key_version,
            key_hash_secret,
        );
        let limiter = LocalRateLimiter::new(settings.rate_per_sec, settings.rate_burst, 200_000);
        Children {
            database,
            bus,
            instance_id,
            settings: Arc::new(settings),
            keys: Arc::new(keys),
            catalogue: Arc::default(),
            limiter: Arc::new(limiter),
            pushes: tokio::sync::broadcast::channel(PUSH_BUFFER).0,
            writer,
        }
    }

    /// The pushes of this instance, for a control socket.
    pub fn subscribe_pushes(&self) -> tokio::sync::broadcast::Receiver<Arc<Pushed>> {
        self.pushes.subscribe()
    }

    /// The client of a live child, as this instance holds it.
    pub fn client_of_child(&self, child_id: Uuid) -> Option<i64> {
        self.read()
            .children
            .get(&child_id)
            .map(|child| child.client_id)
    }

    /// A pushed frame for `child_id`, signed: `{"payload": …, "key_id": …, "signature": …}`.
    pub fn sign_frame(
        &self,
        child_id: Uuid,
        push: &nodegrid_protocol::children::control::ControlPush,
    ) -> Result<String, ChildrenError> {
        self.signed_answer(&nodegrid_protocol::children::control::ControlFrame {
            child_id,
            issued_at: chrono::Utc::now(),
            push: push.clone(),
        })
    }

    fn push(&self, audience: Audience, push: Push) {
        if let Push::Frame(frame) = &push {
            metrics::counter!(CHILD_PUSHES_TOTAL, "type" => frame.kind()).increment(1);
        }
        // No receiver: no control socket on this instance, nothing to do.
        let _ = self.pushes.send(Arc::new(Pushed { audience, push }));
    }

    /// A user of `client_id` was blocked or unblocked: its children's sockets are told.
    fn push_user_change(&self, client_id: i64, user_id: i64, blocked: bool) {
        use nodegrid_protocol::children::control::ControlPush;
        let blocked_users_version = self
            .read()
            .clients
            .get(&client_id)
            .map(|terms| terms.blocked_users_version)
            .unwrap_or_default();
        let push = if blocked {
            ControlPush::Block {
                user_id,
                blocked_users_version,
            }
        } else {
            ControlPush::Unblock {
                user_id,
                blocked_users_version,
            }
        };
        self.push(Audience::Client(client_id), Push::Frame(push));
    }

    /// After a part of the catalogue was reloaded: what its children's sockets are told.
    fn push_scope(&self, scope: &ChildrenScope) {
        use nodegrid_protocol::children::control::ControlPush;
        match scope {
            ChildrenScope::Child { id } => self.push(Audience::Child(*id), Push::Close),
            ChildrenScope::Client { id } => {
                self.push(Audience::Client(*id), Push::Frame(ControlPush::Lease))
            }
            ChildrenScope::Plan { id } => {
                let clients: Vec<i64> = self
                    .read()
                    .clients
                    .iter()
                    .filter(|(_, terms)| terms.plan_id == *id)
                    .map(|(client, _)| *client)
                    .collect();
                for client in clients {
                    self.push(Audience::Client(client), Push::Frame(ControlPush::Lease));
                }
            }
            ChildrenScope::System => {
                let (maintenance, policy) = self.system();
                self.push(
                    Audience::All,
                    Push::Frame(ControlPush::Maintenance { maintenance }),
                );
                self.push(Audience::All, Push::Frame(ControlPush::Version { policy }));
            }
        }
    }

    pub fn settings(&self) -> &ChildSettings {
        &self.settings
    }

    /// The keys children verify leases with.
    pub fn public_keys(&self) -> Vec<nodegrid_protocol::children::lease::PublicKeyView> {
        self.keys.public_keys()
    }

    /// Maintenance and the version policy as this instance holds them.
    pub fn system(&self) -> (Maintenance, VersionPolicy) {
        let catalogue = self.read();
        (catalogue.maintenance.clone(), catalogue.versions.clone())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Catalogue> {
        self.catalogue.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Catalogue> {
        self.catalogue.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `scopes` here (reloaded from Postgres), then tells the other instances.
    async fn changed(&self, scopes: Vec<ChildrenScope>) {
        for scope in &scopes {
            if let Err(error) = self.reload_scope(scope).await {
                tracing::warn!(%error, ?scope, "cannot reload a changed part of the children's catalogue; the periodic reload will");
            }
        }
        let envelope = ControlEnvelope {
            origin: self.instance_id,
            event: ControlEvent::ChildrenChanged { scopes },
        };
        if let Err(error) = self.bus.publish_control(&envelope).await {
            tracing::warn!(%error, "cannot announce a children change; other instances reload within a minute");
        }
    }

    /// Reloads one part of the catalogue from Postgres. No lock is held across the query.
    async fn reload_scope(&self, scope: &ChildrenScope) -> Result<(), DbError> {
        let client = self.database.client().await?;
        match scope {
            ChildrenScope::Child { id } => {
                let rows = store::child_keys(&client, Some(*id)).await?;
                drop(client);
                let entry = rows.into_iter().next().and_then(child_entry);
                self.write().put_child(*id, entry.map(|(_, entry)| entry));
            }
            ChildrenScope::Client { id } => {
                let rows = store::client_terms(&client, Some(*id)).await?;
                drop(client);
                let mut catalogue = self.write();
                catalogue.clients.remove(id);
                for row in rows {
                    catalogue.clients.insert(row.id, client_terms(row));
                }
            }
            ChildrenScope::Plan { id } => {
                let rows = store::plans(&client, Some(*id)).await?;
                drop(client);
                let mut catalogue = self.write();
                catalogue.plans.remove(id);
                for plan in rows {
                    catalogue.plans.insert(plan.id, plan_terms(plan));
                }
            }
            ChildrenScope::System => {
                let maintenance = store::setting(&client, MAINTENANCE_SETTING).await?;
                let versions = store::setting(&client, VERSIONS_SETTING).await?;
                drop(client);
                let mut catalogue = self.write();
                catalogue.maintenance = maintenance
                    .and_then(|value| serde_json::from_value(value).ok())
                    .unwrap_or_default();
                catalogue.versions = versions
                    .and_then(|value| serde_json::from_value(value).ok())
                    .unwrap_or_default();
            }
        }
        Ok(())
    }

    /// After a user's block or unblock: reloads their client's terms (its blocked users'
    /// version), if they belong to one; answers the client.
    async fn reload_client_of_user(&self, user_id: i64) -> Result<Option<i64>, DbError> {
        let client_id: Option<i64> = {
            let client = self.database.client().await?;
            client
                .query_opt("SELECT client_id FROM users WHERE id = $1", &[&user_id])
                .await?
                .and_then(|row| row.get(0))
        };
        if let Some(id) = client_id {
            self.reload_scope(&ChildrenScope::Client { id }).await?;
        }
        Ok(client_id)
    }
}

fn child_entry((id, client_id, hash): (Uuid, i64, Vec<u8>)) -> Option<(Uuid, ChildEntry)> {
    let key_hash: KeyedHash = hash.try_into().ok()?;
    Some((
        id,
        ChildEntry {
            client_id,
            key_hash,
        },
    ))
}

fn client_terms(row: store::ClientTermsRow) -> ClientTerms {
    ClientTerms {
        plan_id: row.plan_id,
        status: row.status,
        expires_at: row.expires_at,
        config: Arc::new(row.config),
        config_hash: row.config_hash,
        children: row.children,
        users: row.users,
        blocked_users_version: row.blocked_users_version,
    }
}

fn plan_terms(plan: nodegrid_protocol::children::admin::PlanView) -> PlanTerms {
    PlanTerms {
        name: plan.name,
        limits: plan.limits,
        features: plan.features,
    }
}

impl SharedState for Children {
    fn name(&self) -> &'static str {
        "children"
    }

    fn apply(&self, event: &ControlEvent) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        match event {
            ControlEvent::ChildrenChanged { scopes } => {
                let children = self.clone();
                let scopes = scopes.clone();
                runtime.spawn(async move {
                    for scope in scopes {
                        match children.reload_scope(&scope).await {
                            Ok(()) => children.push_scope(&scope),
                            Err(error) => {
                                tracing::warn!(%error, ?scope, "cannot reload a changed part of the children's catalogue; the periodic reload will")
                            }
                        }
                    }
                });
            }
            ControlEvent::UserBlocked { user_id, .. }
            | ControlEvent::UserUnblocked { user_id, .. } => {
                let children = self.clone();
                let user_id = *user_id;
                let blocked = matches!(event, ControlEvent::UserBlocked { .. });
                runtime.spawn(async move {
                    match children.reload_client_of_user(user_id).await {
                        Ok(Some(client_id)) => children.push_user_change(client_id, user_id, blocked),
                        Ok(None) => {}
                        Err(error) => {
                            tracing::warn!(%error, user_id, "cannot reload the client of a blocked user; the periodic reload will")
                        }
                    }
                });
            }
            _ => {}
        }
    }

    fn reload(&self) -> BoxFuture<'static, Result<usize, DbError>> {
        let children = self.clone();
        Box::pin(async move {
            let (keys, clients, plans, maintenance, versions) = {
                let client = children.database.client().await?;
                (
                    store::child_keys(&client, None).await?,
                    store::client_terms(&client, None).await?,
                    store::plans(&client, None).await?,
                    store::setting(&client, MAINTENANCE_SETTING).await?,
                    store::setting(&client, VERSIONS_SETTING).await?,
                )
            };
            let mut fresh = Catalogue::default();
            for (id, entry) in keys.into_iter().filter_map(child_entry) {
                fresh.put_child(id, Some(entry));
            }
            fresh.clients = clients
                .into_iter()
                .map(|row| (row.id, client_terms(row)))
                .collect();
            fresh.plans = plans
                .into_iter()
                .map(|plan| (plan.id, plan_terms(plan)))
                .collect();
            fresh.maintenance = maintenance
                .and_then(|value| serde_json::from_value(value).ok())
                .unwrap_or_default();
            fresh.versions = versions
                .and_then(|value| serde_json::from_value(value).ok())
                .unwrap_or_default();
            let count = fresh.children.len();
            *children.write() = fresh;
            Ok(count)
        })
    }
}

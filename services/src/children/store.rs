//! The SQL of plans, clients and children.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use nodegrid_protocol::children::admin::{
    ChildLiveness, ChildView, ClientView, PlanLimits, PlanView, Subscription, SubscriptionStatus,
};
use nodegrid_protocol::children::lease::VersionStatus;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::DbError;

pub const PLAN_COLUMNS: &str =
    "id, name, max_children, max_users, features, created_at, updated_at";

pub fn plan_from_row(row: &Row) -> PlanView {
    PlanView {
        id: row.get(0),
        name: row.get(1),
        limits: PlanLimits {
            max_children: u32::try_from(row.get::<_, i32>(2)).unwrap_or(0),
            max_users: u32::try_from(row.get::<_, i32>(3)).unwrap_or(0),
        },
        features: row.get(4),
        created_at: row.get(5),
        updated_at: row.get(6),
    }
}

/// A client's columns, with its counts of live children and users.
pub const CLIENT_COLUMNS: &str = "c.id, c.name, c.plan_id, c.subscription_status, \
     c.subscription_expires_at, c.config_hash, c.config, \
     (SELECT count(*) FROM children ch WHERE ch.client_id = c.id AND ch.revoked_at IS NULL), \
     (SELECT count(*) FROM users u WHERE u.client_id = c.id), \
     c.created_at, c.updated_at, c.blocked_users_version";

pub fn client_from_row(row: &Row) -> Result<ClientView, DbError> {
    let status: String = row.get(3);
    Ok(ClientView {
        id: row.get(0),
        name: row.get(1),
        plan_id: row.get(2),
        subscription: Subscription {
            status: SubscriptionStatus::parse(&status)
                .ok_or_else(|| DbError::Corrupt(format!("subscription status {status:?}")))?,
            expires_at: row.get(4),
        },
        config_hash: row.get(5),
        config: row.get(6),
        children: u32::try_from(row.get::<_, i64>(7)).unwrap_or(u32::MAX),
        users: u32::try_from(row.get::<_, i64>(8)).unwrap_or(u32::MAX),
        created_at: row.get(9),
        updated_at: row.get(10),
    })
}

pub const CHILD_COLUMNS: &str = "id, client_id, name, key_prefix, liveness, last_heartbeat_at, \
     version, config_hash, uptime_s, users_active, state, lease_seq, lease_valid_until, \
     created_at, revoked_at";

/// A child's row as admins see it; `version_status` is judged by the caller's policy.
pub fn child_from_row(
    row: &Row,
    version_status: impl Fn(&str) -> VersionStatus,
) -> Result<ChildView, DbError> {
    let liveness: String = row.get(4);
    let version: Option<String> = row.get(6);
    Ok(ChildView {
        id: row.get(0),
        client_id: row.get(1),
        name: row.get(2),
        key_prefix: row.get(3),
        liveness: ChildLiveness::parse(&liveness)
            .ok_or_else(|| DbError::Corrupt(format!("child liveness {liveness:?}")))?,
        last_heartbeat_at: row.get(5),
        version_status: version.as_deref().map(version_status),
        version,
        config_hash: row.get(7),
        uptime_s: row
            .get::<_, Option<i64>>(8)
            .and_then(|v| u64::try_from(v).ok()),
        users_active: row
            .get::<_, Option<i32>>(9)
            .and_then(|v| u32::try_from(v).ok()),
        state: row.get(10),
        lease_seq: u64::try_from(row.get::<_, i64>(11)).unwrap_or(0),
        lease_valid_until: row.get(12),
        created_at: row.get(13),
        revoked_at: row.get(14),
        control: None,
    })
}

/// The in-memory terms of one client (see `catalogue`).
pub struct ClientTermsRow {
    pub id: i64,
    pub plan_id: i64,
    pub status: SubscriptionStatus,
    pub expires_at: Option<DateTime<Utc>>,
    pub config: serde_json::Value,
    pub config_hash: String,
    pub children: u32,
    pub users: u32,
    pub blocked_users_version: i64,
}

pub async fn client_terms(
    client: &impl GenericClient,
    id: Option<i64>,
) -> Result<Vec<ClientTermsRow>, DbError> {
    let rows = client
        .query(
            &format!(
                "SELECT {CLIENT_COLUMNS} FROM clients c WHERE $1::bigint IS NULL OR c.id = $1"
            ),
            &[&id],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let view = client_from_row(row)?;
            Ok(ClientTermsRow {
                id: view.id,
                plan_id: view.plan_id,
                status: view.subscription.status,
                expires_at: view.subscription.expires_at,
                config: view.config,
                config_hash: view.config_hash,
                children: view.children,
                users: view.users,
                blocked_users_version: row.get(11),
            })
        })
        .collect()
}

/// `(child id, client id, key hash)` of live children, all or one.
pub async fn child_keys(
    client: &impl GenericClient,
    id: Option<Uuid>,
) -> Result<Vec<(Uuid, i64, Vec<u8>)>, DbError> {
    let rows = client
        .query(
            "SELECT id, client_id, key_hash FROM children \
             WHERE revoked_at IS NULL AND ($1::uuid IS NULL OR id = $1)",
            &[&id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect())
}

pub async fn plans(client: &impl GenericClient, id: Option<i64>) -> Result<Vec<PlanView>, DbError> {
    let rows = client
        .query(
            &format!(
                "SELECT {PLAN_COLUMNS} FROM plans WHERE $1::bigint IS NULL OR id = $1 ORDER BY id"
            ),
            &[&id],
        )
        .await?;
    Ok(rows.iter().map(plan_from_row).collect())
}

/// A setting's JSON value.
pub async fn setting(
    client: &impl GenericClient,
    key: &str,
) -> Result<Option<serde_json::Value>, DbError> {
    Ok(client
        .query_opt("SELECT value FROM settings WHERE key = $1", &[&key])
        .await?
        .map(|row| row.get(0)))
}

pub async fn put_setting(
    client: &impl GenericClient,
    key: &str,
    value: &serde_json::Value,
) -> Result<(), DbError> {
    client
        .execute(
            "INSERT INTO settings (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now()",
            &[&key, value],
        )
        .await?;
    Ok(())
}

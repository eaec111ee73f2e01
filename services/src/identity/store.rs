//! The identity tables in Postgres: users, refresh tokens, the audit log.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use nodegrid_protocol::auth::{AuditEntry, Role, UserSummary};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use crate::db::DbError;

/// A user row.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub role: Role,
    pub device_id: Option<String>,
    pub token_version: i32,
    pub blocked_at: Option<DateTime<Utc>>,
    pub blocked_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The client the user belongs to: then they sign in only through its children.
    pub client_id: Option<i64>,
}

impl UserRow {
    pub fn summary(&self) -> UserSummary {
        UserSummary {
            user_id: self.id,
            username: self.username.clone(),
            role: self.role,
            device_id: self.device_id.clone(),
            blocked: self.blocked_at.is_some(),
            blocked_at: self.blocked_at,
            blocked_reason: self.blocked_reason.clone(),
            created_at: self.created_at,
        }
    }
}

const USER_COLUMNS: &str = "id, username, password_hash, role, device_id, token_version, \
                            blocked_at, blocked_reason, created_at, client_id";

fn user_from_row(row: &tokio_postgres::Row) -> Result<UserRow, DbError> {
    let role: String = row.try_get("role")?;
    Ok(UserRow {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        role: Role::parse(&role)
            .ok_or_else(|| DbError::Corrupt(format!("unknown role {role:?}")))?,
        device_id: row.try_get("device_id")?,
        token_version: row.try_get("token_version")?,
        blocked_at: row.try_get("blocked_at")?,
        blocked_reason: row.try_get("blocked_reason")?,
        created_at: row.try_get("created_at")?,
        client_id: row.try_get("client_id")?,
    })
}

/// `None` when the username is taken (compared without case).
pub async fn insert_user(
    client: &impl GenericClient,
    username: &str,
    password_hash: &str,
    role: Role,
    device_id: Option<&str>,
) -> Result<Option<UserRow>, DbError> {
    let sql = format!(
        "INSERT INTO users (username, password_hash, role, device_id) VALUES ($1, $2, $3, $4) \
         RETURNING {USER_COLUMNS}"
    );
    match client
        .query_one(
            &sql,
            &[&username, &password_hash, &role.as_str(), &device_id],
        )
        .await
    {
        Ok(row) => Ok(Some(user_from_row(&row)?)),
        Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

pub async fn user_by_username(
    client: &impl GenericClient,
    username: &str,
) -> Result<Option<UserRow>, DbError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE lower(username) = lower($1)");
    client
        .query_opt(&sql, &[&username])
        .await?
        .map(|row| user_from_row(&row))
        .transpose()
}

/// Share-locks `user_id`'s row if it still holds `username`, so it cannot change id until the
/// transaction ends; whether it does.
pub async fn lock_user_as_read(
    client: &impl GenericClient,
    user_id: i64,
    username: &str,
) -> Result<bool, DbError> {
    Ok(client
        .query_opt(
            "SELECT 1 FROM users WHERE id = $1 AND username = $2 FOR SHARE",
            &[&user_id, &username],
        )
        .await?
        .is_some())
}

/// Replaces `user_id`'s password hash if it is still `old`; whether it was replaced.
pub async fn replace_password_hash(
    client: &impl GenericClient,
    user_id: i64,
    old: &str,
    new: &str,
) -> Result<bool, DbError> {
    let updated = client
        .execute(
            "UPDATE users SET password_hash = $3 WHERE id = $1 AND password_hash = $2",
            &[&user_id, &old, &new],
        )
        .await?;
    Ok(updated == 1)
}

pub async fn user_by_id(client: &impl GenericClient, id: i64) -> Result<Option<UserRow>, DbError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    client
        .query_opt(&sql, &[&id])
        .await?
        .map(|row| user_from_row(&row))
        .transpose()
}

/// Filters of the admin user list.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    pub role: Option<Role>,
    pub blocked: Option<bool>,
    /// Users whose name contains this, in any case.
    pub search: Option<String>,
}

pub async fn list_users(
    client: &impl GenericClient,
    filter: &UserFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<UserRow>, i64), DbError> {
    let role = filter.role.map(Role::as_str);
    // `strpos` on the lowered name: the search text is never a LIKE pattern.
    let search = filter.search.as_deref().map(str::to_lowercase);
    let condition = "($1::text IS NULL OR role = $1) \
                     AND ($2::bool IS NULL OR (blocked_at IS NOT NULL) = $2) \
                     AND ($5::text IS NULL OR strpos(lower(username), $5) > 0)";
    let sql = format!(
        "SELECT {USER_COLUMNS} FROM users WHERE {condition} ORDER BY id LIMIT $3 OFFSET $4"
    );
    let rows = client
        .query(&sql, &[&role, &filter.blocked, &limit, &offset, &search])
        .await?;
    let count_condition = condition.replace("$5", "$3");
    let total: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM users WHERE {count_condition}"),
            &[&role, &filter.blocked, &search],
        )
        .await?
        .try_get(0)?;
    let users = rows.iter().map(user_from_row).collect::<Result<_, _>>()?;
    Ok((users, total))
}

/// Blocks the user, raises their token version and revokes their refresh tokens, in one
/// transaction. `None` when there is no such user.
pub async fn block_user(
    client: &mut deadpool_postgres::Client,
    id: i64,
    reason: &str,
    audit: &AuditRecord,
) -> Result<Option<UserRow>, DbError> {
    let transaction = client.transaction().await?;
    let sql = format!(
        "UPDATE users SET blocked_at = coalesce(blocked_at, now()), blocked_reason = $2, \
         token_version = token_version + 1 WHERE id = $1 RETURNING {USER_COLUMNS}"
    );
    let Some(row) = transaction.query_opt(&sql, &[&id, &reason]).await? else {
        return Ok(None);
    };
    transaction
        .execute(
            "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
            &[&id],
        )
        .await?;
    bump_blocked_users_version(&transaction, id).await?;
    insert_audit(&transaction, audit).await?;
    transaction.commit().await?;
    Ok(Some(user_from_row(&row)?))
}

/// Unblocks the user; their token version stays, so tokens from before the block stay refused.
pub async fn unblock_user(
    client: &mut deadpool_postgres::Client,
    id: i64,
    audit: &AuditRecord,
) -> Result<Option<UserRow>, DbError> {
    let transaction = client.transaction().await?;
    let sql = format!(
        "UPDATE users SET blocked_at = NULL, blocked_reason = NULL WHERE id = $1 \
         RETURNING {USER_COLUMNS}"
    );
    let Some(row) = transaction.query_opt(&sql, &[&id]).await? else {
        return Ok(None);
    };
    bump_blocked_users_version(&transaction, id).await?;
    insert_audit(&transaction, audit).await?;
    transaction.commit().await?;
    Ok(Some(user_from_row(&row)?))
}

/// A block or unblock of a client's user changes the version of the client's blocked users,
/// which its children's leases carry.
async fn bump_blocked_users_version(
    client: &impl GenericClient,
    user_id: i64,
) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE clients SET blocked_users_version = blocked_users_version + 1 \
             WHERE id = (SELECT client_id FROM users WHERE id = $1)",
            &[&user_id],
        )
        .await?;
    Ok(())
}

/// Every user whose tokens can be refused: `(id, token_version, blocked)`.
pub async fn revocations(client: &impl GenericClient) -> Result<Vec<(i64, i32, bool)>, DbError> {
    let rows = client
        .query(
            "SELECT id, token_version, blocked_at IS NOT NULL FROM users \
             WHERE token_version > 0 OR blocked_at IS NOT NULL",
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
        .collect()
}

/// Login sessions (refresh-token families) ended within the last `window_secs`: their access
/// tokens may still be unexpired.
pub async fn ended_sessions(
    client: &impl GenericClient,
    window_secs: u64,
) -> Result<Vec<uuid::Uuid>, DbError> {
    let window = i64::try_from(window_secs).unwrap_or(i64::MAX);
    let rows = client
        .query(
            "SELECT DISTINCT family_id FROM refresh_tokens \
             WHERE revoked_at > now() - make_interval(secs => $1::bigint)",
            &[&window],
        )
        .await?;
    rows.iter()
        .map(|row| row.try_get(0).map_err(DbError::from))
        .collect()
}

/// A refresh token row.
#[derive(Debug, Clone)]
pub struct RefreshRow {
    pub id: i64,
    pub family_id: uuid::Uuid,
    pub user_id: i64,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub async fn insert_refresh_token(
    client: &impl GenericClient,
    family_id: uuid::Uuid,
    user_id: i64,
    token_hash: &[u8],
    expires_at: DateTime<Utc>,
) -> Result<(), DbError> {
    client
        .execute(
            "INSERT INTO refresh_tokens (family_id, user_id, token_hash, expires_at) \
             VALUES ($1, $2, $3, $4)",
            &[&family_id, &user_id, &token_hash, &expires_at],
        )
        .await?;
    Ok(())
}

/// Locks the token's row for the rest of the transaction, so that two concurrent refreshes of
/// one token are serialised: the second sees the first's `used_at`.
pub async fn refresh_token_for_update(
    client: &impl GenericClient,
    token_hash: &[u8],
) -> Result<Option<RefreshRow>, DbError> {
    let row = client
        .query_opt(
            "SELECT id, family_id, user_id, expires_at, used_at, revoked_at FROM refresh_tokens \
             WHERE token_hash = $1 FOR UPDATE",
            &[&token_hash],
        )
        .await?;
    row.map(|row| {
        Ok(RefreshRow {
            id: row.try_get(0)?,
            family_id: row.try_get(1)?,
            user_id: row.try_get(2)?,
            expires_at: row.try_get(3)?,
            used_at: row.try_get(4)?,
            revoked_at: row.try_get(5)?,
        })
    })
    .transpose()
}

pub async fn mark_refresh_token_used(client: &impl GenericClient, id: i64) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE refresh_tokens SET used_at = now() WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(())
}

/// Revokes every live token of a family; returns how many.
pub async fn revoke_family(
    client: &impl GenericClient,
    family_id: uuid::Uuid,
) -> Result<u64, DbError> {
    Ok(client
        .execute(
            "UPDATE refresh_tokens SET revoked_at = now() \
             WHERE family_id = $1 AND revoked_at IS NULL",
            &[&family_id],
        )
        .await?)
}

/// One audit event to record.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub actor_id: Option<i64>,
    pub actor: Option<String>,
    pub action: &'static str,
    pub target: Option<String>,
    pub source_ip: Option<String>,
    pub details: serde_json::Value,
}

pub async fn insert_audit(
    client: &impl GenericClient,
    record: &AuditRecord,
) -> Result<(), DbError> {
    client
        .execute(
            "INSERT INTO audit_log (actor_id, actor, action, target, source_ip, details) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &record.actor_id,
                &record.actor,
                &record.action,
                &record.target,
                &record.source_ip,
                &record.details,
            ],
        )
        .await?;
    Ok(())
}

/// Filters of the audit log.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// The actor's username or user id.
    pub actor: Option<String>,
    pub action: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// Deletes up to `batch` entries older than `older_than_secs`; returns how many.
pub async fn prune_audit(
    client: &impl GenericClient,
    older_than_secs: u64,
    batch: i64,
) -> Result<u64, DbError> {
    let age = i64::try_from(older_than_secs).unwrap_or(i64::MAX);
    Ok(client
        .execute(
            "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log \
             WHERE at < now() - make_interval(secs => $1::bigint) ORDER BY at LIMIT $2)",
            &[&age, &batch],
        )
        .await?)
}

/// Entries matching `filter` with ids above `after`, oldest first, at most `limit`: a page of
/// an export.
pub async fn audit_after(
    client: &impl GenericClient,
    filter: &AuditFilter,
    after: i64,
    limit: i64,
) -> Result<Vec<AuditEntry>, DbError> {
    let rows = client
        .query(
            &format!(
                "SELECT id, at, actor_id, actor, action, target, source_ip, details \
                 FROM audit_log WHERE {AUDIT_CONDITION} AND id > $5 ORDER BY id LIMIT $6"
            ),
            &[
                &filter.actor,
                &filter.action,
                &filter.since,
                &filter.until,
                &after,
                &limit,
            ],
        )
        .await?;
    rows.iter().map(audit_entry).collect()
}

const AUDIT_CONDITION: &str = "($1::text IS NULL OR lower(actor) = lower($1) OR actor_id::text = $1) \
                               AND ($2::text IS NULL OR action = $2) \
                               AND ($3::timestamptz IS NULL OR at >= $3) \
                               AND ($4::timestamptz IS NULL OR at < $4)";

fn audit_entry(row: &tokio_postgres::Row) -> Result<AuditEntry, DbError> {
    Ok(AuditEntry {
        id: row.try_get(0)?,
        at: row.try_get(1)?,
        actor_id: row.try_get(2)?,
        actor: row.try_get(3)?,
        action: row.try_get(4)?,
        target: row.try_get(5)?,
        source_ip: row.try_get(6)?,
        details: row.try_get(7)?,
    })
}

/// Newest first.
pub async fn list_audit(
    client: &impl GenericClient,
    filter: &AuditFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<AuditEntry>, i64), DbError> {
    let condition = AUDIT_CONDITION;
    let params: [&(dyn ToSql + Sync); 4] =
        [&filter.actor, &filter.action, &filter.since, &filter.until];
    let rows = client
        .query(
            &format!(
                "SELECT id, at, actor_id, actor, action, target, source_ip, details \
                 FROM audit_log WHERE {condition} ORDER BY id DESC LIMIT $5 OFFSET $6"
            ),
            &[params[0], params[1], params[2], params[3], &limit, &offset],
        )
        .await?;
    let total: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM audit_log WHERE {condition}"),
            &params,
        )
        .await?
        .try_get(0)?;
    let entries = rows
        .iter()
        .map(audit_entry)
        .collect::<Result<_, DbError>>()?;
    Ok((entries, total))
}

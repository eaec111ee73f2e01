//! What admins do with plans, clients, children, maintenance and versions. Each change is
//! written with its audit entry in one transaction; then this instance's catalogue is reloaded
//! for the parts changed and the other instances are told.

use nodegrid_protocol::children::admin::{
    ChildKeyIssued, ChildLiveness, ChildView, ClientRequest, ClientView, CreateChildRequest,
    Maintenance, PlanRequest, PlanView, VersionPolicy,
};
use nodegrid_protocol::children::signing::{CHILD_KEY_SHOWN_CHARS, new_child_key};
use nodegrid_protocol::children::version;
use nodegrid_protocol::control::ChildrenScope;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::catalogue::version_status;
use super::store::{
    self, CHILD_COLUMNS, CLIENT_COLUMNS, PLAN_COLUMNS, child_from_row, client_from_row,
    plan_from_row,
};
use super::{Children, ChildrenError, MAINTENANCE_SETTING, VERSIONS_SETTING};
use crate::identity::store::{AuditRecord, insert_audit};

const MAX_NAME_CHARS: usize = 100;
const MAX_FEATURES: usize = 32;
const MAX_CONFIG_BYTES: usize = 16 * 1024;
const MAX_MESSAGE_CHARS: usize = 500;

/// Postgres' unique violation.
fn is_unique_violation(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

fn checked_name(name: &str, what: &str) -> Result<String, ChildrenError> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
        || crate::text::has_deceptive_characters(name)
    {
        return Err(ChildrenError::BadRequest(format!(
            "{what} must be 1 to {MAX_NAME_CHARS} visible characters"
        )));
    }
    Ok(name.to_owned())
}

fn checked_features(features: &[String]) -> Result<Vec<String>, ChildrenError> {
    let mut features: Vec<String> = features.iter().map(|f| f.trim().to_owned()).collect();
    features.sort_unstable();
    features.dedup();
    let well_formed = |feature: &String| {
        (1..=64).contains(&feature.len())
            && feature.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
            })
    };
    if features.len() > MAX_FEATURES || !features.iter().all(well_formed) {
        return Err(ChildrenError::BadRequest(format!(
            "features: at most {MAX_FEATURES}, each 1 to 64 of a-z 0-9 _ . -"
        )));
    }
    Ok(features)
}

fn limit(value: u32, what: &str) -> Result<i32, ChildrenError> {
    i32::try_from(value)
        .map_err(|_| ChildrenError::BadRequest(format!("{what} must be at most {}", i32::MAX)))
}

/// The hash leases carry for a configuration: SHA-256 of its JSON text (keys sorted).
pub fn config_hash(config: &serde_json::Value) -> String {
    crate::text::hex(&Sha256::digest(config.to_string().as_bytes()))
}

fn checked_config(config: &serde_json::Value) -> Result<(), ChildrenError> {
    if !config.is_object() || config.to_string().len() > MAX_CONFIG_BYTES {
        return Err(ChildrenError::BadRequest(format!(
            "config must be a JSON object of at most {MAX_CONFIG_BYTES} bytes"
        )));
    }
    Ok(())
}

fn checked_version(text: &Option<String>, what: &str) -> Result<Option<String>, ChildrenError> {
    match text.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) if version::parse(text).is_some() => Ok(Some(text.to_owned())),
        Some(_) => Err(ChildrenError::BadRequest(format!(
            "{what} must be a dotted version such as 1.4.2"
        ))),
    }
}

impl Children {
    pub async fn list_plans(&self) -> Result<Vec<PlanView>, ChildrenError> {
        let client = self.database.client().await?;
        Ok(store::plans(&client, None).await?)
    }

    /// Creates a plan (`id: None`) or replaces one.
    pub async fn put_plan(
        &self,
        id: Option<i64>,
        request: PlanRequest,
        audit: AuditRecord,
    ) -> Result<PlanView, ChildrenError> {
        let name = checked_name(&request.name, "name")?;
        let features = checked_features(&request.features)?;
        let max_children = limit(request.limits.max_children, "max_children")?;
        let max_users = limit(request.limits.max_users, "max_users")?;
        let plan = {
            let mut client = self.database.client().await?;
            let transaction = client.transaction().await?;
            let row =
                match id {
                    None => {
                        transaction
                            .query_opt(
                                &format!(
                                    "INSERT INTO plans (name, max_children, max_users, features) \
                             VALUES ($1, $2, $3, $4) RETURNING {PLAN_COLUMNS}"
                                ),
                                &[&name, &max_children, &max_users, &features],
                            )
                            .await
                    }
                    Some(id) => transaction
                        .query_opt(
                            &format!(
                                "UPDATE plans SET name = $2, max_children = $3, max_users = $4, \
                             features = $5, updated_at = now() WHERE id = $1 \
                             RETURNING {PLAN_COLUMNS}"
                            ),
                            &[&id, &name, &max_children, &max_users, &features],
                        )
                        .await,
                };
            let row = match row {
                Ok(Some(row)) => row,
                Ok(None) => {
                    return Err(ChildrenError::NotFound(format!(
                        "no plan {}",
                        id.unwrap_or_default()
                    )));
                }
                Err(error) if is_unique_violation(&error) => {
                    return Err(ChildrenError::Conflict(format!(
                        "a plan named {name:?} exists"
                    )));
                }
                Err(error) => return Err(error.into()),
            };
            let plan = plan_from_row(&row);
            let mut audit = audit;
            audit.target = Some(format!("plan:{}", plan.id));
            insert_audit(&transaction, &audit).await?;
            transaction.commit().await?;
            plan
        };
        self.changed(vec![ChildrenScope::Plan { id: plan.id }])
            .await;
        Ok(plan)
    }

    pub async fn list_clients(&self) -> Result<Vec<ClientView>, ChildrenError> {
        let client = self.database.client().await?;
        let rows = client
            .query(
                &format!("SELECT {CLIENT_COLUMNS} FROM clients c ORDER BY c.id"),
                &[],
            )
            .await?;
        Ok(rows.iter().map(client_from_row).collect::<Result<_, _>>()?)
    }

    pub async fn get_client(&self, id: i64) -> Result<ClientView, ChildrenError> {
        let client = self.database.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {CLIENT_COLUMNS} FROM clients c WHERE c.id = $1"),
                &[&id],
            )
            .await?
            .ok_or_else(|| ChildrenError::NotFound(format!("no client {id}")))?;
        Ok(client_from_row(&row)?)
    }

    /// Creates a client (`id: None`) or changes its name, plan and subscription.
    pub async fn put_client(
        &self,
        id: Option<i64>,
        request: ClientRequest,
        audit: AuditRecord,
    ) -> Result<ClientView, ChildrenError> {
        let name = checked_name(&request.name, "name")?;
        let status = request.subscription.status.as_str();
        let expires_at = request.subscription.expires_at;
        let client_id = {
            let mut client = self.database.client().await?;
            let transaction = client.transaction().await?;
            let plan_exists = transaction
                .query_opt("SELECT 1 FROM plans WHERE id = $1", &[&request.plan_id])
                .await?
                .is_some();
            if !plan_exists {
                return Err(ChildrenError::BadRequest(format!(
                    "no plan {}",
                    request.plan_id
                )));
            }
            let empty = serde_json::json!({});
            let row = match id {
                None => transaction
                    .query_opt(
                        "INSERT INTO clients (name, plan_id, subscription_status, \
                         subscription_expires_at, config, config_hash) \
                         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                        &[&name, &request.plan_id, &status, &expires_at, &empty, &config_hash(&empty)],
                    )
                    .await,
                Some(id) => transaction
                    .query_opt(
                        "UPDATE clients SET name = $2, plan_id = $3, subscription_status = $4, \
                         subscription_expires_at = $5, updated_at = now() WHERE id = $1 RETURNING id",
                        &[&id, &name, &request.plan_id, &status, &expires_at],
                    )
                    .await,
            };
            let client_id: i64 = match row {
                Ok(Some(row)) => row.get(0),
                Ok(None) => {
                    return Err(ChildrenError::NotFound(format!(
                        "no client {}",
                        id.unwrap_or_default()
                    )));
                }
                Err(error) if is_unique_violation(&error) => {
                    return Err(ChildrenError::Conflict(format!(
                        "a client named {name:?} exists"
                    )));
                }
                Err(error) => return Err(error.into()),
            };
            let mut audit = audit;
            audit.target = Some(format!("client:{client_id}"));
            insert_audit(&transaction, &audit).await?;
            transaction.commit().await?;
            client_id
        };
        self.changed(vec![ChildrenScope::Client { id: client_id }])
            .await;
        self.get_client(client_id).await
    }

    /// Replaces the configuration every lease of the client's children carries.
    pub async fn set_client_config(
        &self,
        id: i64,
        config: serde_json::Value,
        audit: AuditRecord,
    ) -> Result<ClientView, ChildrenError> {
        checked_config(&config)?;
        let hash = config_hash(&config);
        {
            let mut client = self.database.client().await?;
            let transaction = client.transaction().await?;
            let updated = transaction
                .execute(
                    "UPDATE clients SET config = $2, config_hash = $3, updated_at = now() WHERE id = $1",
                    &[&id, &config, &hash],
                )
                .await?;
            if updated == 0 {
                return Err(ChildrenError::NotFound(format!("no client {id}")));
            }
            let mut audit = audit;
            audit.details["config_hash"] = hash.clone().into();
            insert_audit(&transaction, &audit).await?;
            transaction.commit().await?;
        }
        self.changed(vec![ChildrenScope::Client { id }]).await;
        self.get_client(id).await
    }

    /// The user joins the client, within its plan's `max_users`. Joining the client the user
    /// is in already changes nothing.
    pub async fn add_client_user(
        &self,
        id: i64,
        user_id: i64,
        audit: AuditRecord,
    ) -> Result<ClientView, ChildrenError> {
        let joined = {
            let mut client = self.database.client().await?;
            let transaction = client.transaction().await?;
            // The client's row lock orders concurrent joins: the count below is then exact.
            let max_users: i32 = transaction
                .query_opt(
                    "SELECT p.max_users FROM clients c JOIN plans p ON p.id = c.plan_id \
                     WHERE c.id = $1 FOR UPDATE OF c",
                    &[&id],
                )
                .await?
                .ok_or_else(|| ChildrenError::NotFound(format!("no client {id}")))?
                .get(0);
            let user = transaction
                .query_opt(
                    "SELECT client_id, role FROM users WHERE id = $1 FOR UPDATE",
                    &[&user_id],
                )
                .await?
                .ok_or_else(|| ChildrenError::BadRequest(format!("no user {user_id}")))?;
            let current: Option<i64> = user.get(0);
            let role: String = user.get(1);
            if role == "admin" {
                return Err(ChildrenError::BadRequest(
                    "an admin cannot belong to a client".into(),
                ));
            }
            match current {
                Some(current) if current == id => false,
                Some(other) => {
                    return Err(ChildrenError::Conflict(format!(
                        "user {user_id} belongs to client {other}"
                    )));
                }
                None => {
                    Self::join(&transaction, id, user_id, max_users).await?;
                    insert_audit(&transaction, &audit).await?;
                    transaction.commit().await?;
                    true
                }
            }
        };
        if joined {
            self.changed(vec![ChildrenScope::Client { id }]).await;
        }
        self.get_client(id).await
    }

    async fn join(
        transaction: &deadpool_postgres::Transaction<'_>,
        id: i64,
        user_id: i64,
        max_users: i32,
    ) -> Result<(), ChildrenError> {
        let users: i64 = transaction
            .query_one("SELECT count(*) FROM users WHERE client_id = $1", &[&id])
            .await?
            .get(0);
        if users >= i64::from(max_users) {
            return Err(ChildrenError::PlanLimitReached(format!(
                "the client's plan allows {max_users} users"
            )));
        }
        transaction
            .execute(
                "UPDATE users SET client_id = $2 WHERE id = $1",
                &[&user_id, &id],
            )
            .await?;
        Ok(())
    }

    /// Provisions a child within the client's plan: exactly `max_children` of any number of
    /// concurrent creations succeed.
    pub async fn create_child(
        &self,
        client_id: i64,
        request: CreateChildRequest,
        audit: AuditRecord,
    ) -> Result<ChildKeyIssued, ChildrenError> {
        let name = checked_name(&request.name, "name")?;
        let id = Uuid::new_v4();
        let key = new_child_key(rand::random());
        let hash = self.keys.key_hash(&key);
        let prefix: String = key.chars().take(CHILD_KEY_SHOWN_CHARS).collect();
        {
            let mut client = self.database.client().await?;
            let transaction = client.transaction().await?;
            let max_children: i32 = transaction
                .query_opt(
                    "SELECT p.max_children FROM clients c JOIN plans p ON p.id = c.plan_id \
                     WHERE c.id = $1 FOR UPDATE OF c",
                    &[&client_id],
                )
                .await?
                .ok_or_else(|| ChildrenError::NotFound(format!("no client {client_id}")))?
                .get(0);
            let children: i64 = transaction
                .query_one(
                    "SELECT count(*) FROM children WHERE client_id = $1 AND revoked_at IS NULL",
                    &[&client_id],
                )
                .await?
                .get(0);
            if children >= i64::from(max_children) {
                return Err(ChildrenError::PlanLimitReached(format!(
                    "the client's plan allows {max_children} children"
                )));
            }
            let inserted = transaction
                .execute(
                    "INSERT INTO children (id, client_id, name, key_hash, key_prefix) \
                     VALUES ($1, $2, $3, $4, $5)",
                    &[&id, &client_id, &name, &hash.as_slice(), &prefix],
                )
                .await;
            match inserted {
                Ok(_) => {}
                Err(error) if is_unique_violation(&error) => {
                    return Err(ChildrenError::Conflict(format!(
                        "the client has a child named {name:?}"
                    )));
                }
                Err(error) => return Err(error.into()),
            }
            let mut audit = audit;
            audit.target = Some(format!("child:{id}"));
            audit.details["key_prefix"] = prefix.clone().into();
            audit.details["client_id"] = client_id.into();
            insert_audit(&transaction, &audit).await?;
            transaction.commit().await?;
        }
        self.changed(vec![
            ChildrenScope::Child { id },
            ChildrenScope::Client { id: client_id },
        ])
        .await;
        Ok(ChildKeyIssued {
            child: self.get_child(id).await?,
            api_key: key,
        })
    }

    /// A new key for the child; the old one stops working at once, on every instance.
    pub async fn rotate_key(
        &self,
        id: Uuid,
        audit: AuditRecord,
    ) -> Result<ChildKeyIssued, ChildrenError> {
        let key = new_child_key(rand::random());
        let hash = self.keys.key_hash(&key);
        let prefix: String = key.chars().take(CHILD_KEY_SHOWN_CHARS).collect();
        {
            let mut client = self.database.client().await?;
            let transaction = client.transaction().await?;
            let updated = transaction
                .execute(
                    "UPDATE children SET key_hash = $2, key_prefix = $3 \
                     WHERE id = $1 AND revoked_at IS NULL",
                    &[&id, &hash.as_slice(), &prefix],
                )
                .await?;
            if updated == 0 {
                return Err(ChildrenError::NotFound(format!("no live child {id}")));
            }
            let mut audit = audit;
            audit.details["key_prefix"] = prefix.into();
            insert_audit(&transaction, &audit).await?;
            transaction.commit().await?;
        }
        self.changed(vec![ChildrenScope::Child { id }]).await;
        Ok(ChildKeyIssued {
            child: self.get_child(id).await?,
            api_key: key,
        })
    }

    /// Revokes the child: its key is refused from now on, on every instance.
    pub async fn revoke_child(&self, id: Uuid, audit: AuditRecord) -> Result<(), ChildrenError> {
        let client_id: i64 = {
            let mut client = self.database.client().await?;
            let transaction = client.transaction().await?;
            let row = transaction
                .query_opt(
                    "UPDATE children SET revoked_at = coalesce(revoked_at, now()), \
                     liveness = 'revoked', liveness_changed_at = now() \
                     WHERE id = $1 RETURNING client_id",
                    &[&id],
                )
                .await?
                .ok_or_else(|| ChildrenError::NotFound(format!("no child {id}")))?;
            insert_audit(&transaction, &audit).await?;
            transaction.commit().await?;
            row.get(0)
        };
        self.changed(vec![
            ChildrenScope::Child { id },
            ChildrenScope::Client { id: client_id },
        ])
        .await;
        Ok(())
    }

    /// Children, of one client or all, of one liveness or all, newest first: a page of
    /// `limit` from `offset`, and how many match in all.
    pub async fn list_children(
        &self,
        client_id: Option<i64>,
        liveness: Option<ChildLiveness>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<ChildView>, u64), ChildrenError> {
        let liveness = liveness.map(ChildLiveness::as_str);
        let (rows, total) = {
            let client = self.database.client().await?;
            let rows = client
                .query(
                    &format!(
                        "SELECT {CHILD_COLUMNS} FROM children \
                         WHERE ($1::bigint IS NULL OR client_id = $1) \
                           AND ($2::text IS NULL OR liveness = $2) \
                         ORDER BY created_at DESC, id LIMIT $3 OFFSET $4"
                    ),
                    &[&client_id, &liveness, &limit, &offset],
                )
                .await?;
            let total: i64 = client
                .query_one(
                    "SELECT count(*) FROM children \
                     WHERE ($1::bigint IS NULL OR client_id = $1) \
                       AND ($2::text IS NULL OR liveness = $2)",
                    &[&client_id, &liveness],
                )
                .await?
                .get(0);
            (rows, u64::try_from(total).unwrap_or(0))
        };
        let policy = self.read().versions.clone();
        let children = rows
            .iter()
            .map(|row| child_from_row(row, |v| version_status(&policy, v)))
            .collect::<Result<_, _>>()?;
        Ok((children, total))
    }

    pub async fn get_child(&self, id: Uuid) -> Result<ChildView, ChildrenError> {
        let row = {
            let client = self.database.client().await?;
            client
                .query_opt(
                    &format!("SELECT {CHILD_COLUMNS} FROM children WHERE id = $1"),
                    &[&id],
                )
                .await?
                .ok_or_else(|| ChildrenError::NotFound(format!("no child {id}")))?
        };
        let policy = self.read().versions.clone();
        Ok(child_from_row(&row, |v| version_status(&policy, v))?)
    }

    pub async fn set_maintenance(
        &self,
        maintenance: Maintenance,
        audit: AuditRecord,
    ) -> Result<Maintenance, ChildrenError> {
        let message = maintenance
            .message
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty());
        if message.is_some_and(|m| m.chars().count() > MAX_MESSAGE_CHARS) {
            return Err(ChildrenError::BadRequest(format!(
                "message must be at most {MAX_MESSAGE_CHARS} characters"
            )));
        }
        let maintenance = Maintenance {
            enabled: maintenance.enabled,
            message: message.map(|m| crate::text::escape_free_text(m, MAX_MESSAGE_CHARS)),
            until: maintenance.until,
        };
        self.put_system_setting(
            MAINTENANCE_SETTING,
            serde_json::to_value(&maintenance).unwrap_or_default(),
            audit,
        )
        .await?;
        Ok(maintenance)
    }

    pub async fn set_versions(
        &self,
        policy: VersionPolicy,
        audit: AuditRecord,
    ) -> Result<VersionPolicy, ChildrenError> {
        let policy = VersionPolicy {
            min_version: checked_version(&policy.min_version, "min_version")?,
            latest_version: checked_version(&policy.latest_version, "latest_version")?,
        };
        if let (Some(min), Some(latest)) = (
            policy.min_version.as_deref().and_then(version::parse),
            policy.latest_version.as_deref().and_then(version::parse),
        ) && version::compare(&min, &latest).is_gt()
        {
            return Err(ChildrenError::BadRequest(
                "min_version must not be above latest_version".into(),
            ));
        }
        self.put_system_setting(
            VERSIONS_SETTING,
            serde_json::to_value(&policy).unwrap_or_default(),
            audit,
        )
        .await?;
        Ok(policy)
    }

    async fn put_system_setting(
        &self,
        key: &str,
        value: serde_json::Value,
        audit: AuditRecord,
    ) -> Result<(), ChildrenError> {
        {
            let mut client = self.database.client().await?;
            let transaction = client.transaction().await?;
            store::put_setting(&transaction, key, &value).await?;
            let mut audit = audit;
            audit.details = value;
            insert_audit(&transaction, &audit).await?;
            transaction.commit().await?;
        }
        self.changed(vec![ChildrenScope::System]).await;
        Ok(())
    }
}

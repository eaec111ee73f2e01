//! Accounts: registration, and the users the server makes sure exist (the configured admin,
//! `nodegrid admin create-user`). A user and its audit entry are written in one transaction.

use nodegrid_protocol::auth::{RegisterRequest, Role, UserIdentity};
use serde_json::json;

use super::rules::*;
use super::store::{self, AuditRecord, UserRow};
use super::{AUTH_EVENTS_TOTAL, AuthUser, Caller, Identity, IdentityError};
use crate::db::DbError;

impl Identity {
    pub async fn register(
        &self,
        caller: Caller,
        creator: Option<&AuthUser>,
        request: RegisterRequest,
    ) -> Result<UserIdentity, IdentityError> {
        let username = validate_username(&request.username)?;
        validate_password(&request.password, self.inner.password_min_length)?;
        let device_id = request
            .device_id
            .as_deref()
            .map(validate_device_id)
            .transpose()?;
        if request.role == Role::Admin && creator.is_none_or(|creator| creator.role != Role::Admin)
        {
            return Err(IdentityError::Forbidden(
                "only an admin may create an admin",
            ));
        }
        self.limit(caller, "register", Some(&username)).await?;
        // Hashing is slow by design: no pooled connection is held while it runs.
        self.ensure_username_free(&username).await?;
        let password_hash = self.hash_password(request.password).await?;
        let action = if request.role == Role::Admin {
            "admin.create"
        } else {
            "user.register"
        };
        let user = self
            .create_user(
                NewUser {
                    username: &username,
                    password_hash: &password_hash,
                    role: request.role,
                    device_id: device_id.as_deref(),
                },
                |user| AuditRecord {
                    actor_id: Some(creator.map_or(user.id, |creator| creator.user_id)),
                    actor: Some(
                        creator.map_or_else(|| user.username.clone(), |c| c.username.clone()),
                    ),
                    action,
                    target: Some(user_target(user)),
                    source_ip: Some(caller.ip.to_string()),
                    details: json!({"role": user.role}),
                },
            )
            .await?
            .ok_or(IdentityError::UsernameTaken)?;
        metrics::counter!(AUTH_EVENTS_TOTAL, "event" => "register").increment(1);
        Ok(identity_of(&user))
    }

    /// Refuses a name that is taken, before the slow work of hashing a password for it.
    pub(super) async fn ensure_username_free(&self, username: &str) -> Result<(), IdentityError> {
        let client = self.inner.database.client().await?;
        if store::user_by_username(&client, username).await?.is_some() {
            return Err(IdentityError::UsernameTaken);
        }
        Ok(())
    }

    /// Inserts a user and its audit entry in one transaction, on one pooled connection;
    /// `None` when the name is taken (another request won the race).
    pub(super) async fn create_user(
        &self,
        user: NewUser<'_>,
        audit: impl FnOnce(&UserRow) -> AuditRecord,
    ) -> Result<Option<UserRow>, IdentityError> {
        let mut client = self.inner.database.client().await?;
        let transaction = client.transaction().await.map_err(DbError::from)?;
        let Some(row) = store::insert_user(
            &transaction,
            user.username,
            user.password_hash,
            user.role,
            user.device_id,
        )
        .await?
        else {
            return Ok(None);
        };
        store::insert_audit(&transaction, &audit(&row)).await?;
        transaction.commit().await.map_err(DbError::from)?;
        Ok(Some(row))
    }

    /// Makes sure a user called `username` with `role` exists; creates it with `password` if
    /// not. Returns whether it was created. An existing user keeps its password; one with
    /// another role is an error.
    pub async fn ensure_user(
        &self,
        username: &str,
        password: &str,
        role: Role,
        source: &str,
    ) -> Result<bool, IdentityError> {
        let username = validate_username(username)?;
        validate_password(password, self.inner.password_min_length)?;
        {
            let client = self.inner.database.client().await?;
            if let Some(existing) = store::user_by_username(&client, &username).await? {
                if existing.role != role {
                    return Err(IdentityError::Validation(format!(
                        "user {username:?} exists with role {}",
                        existing.role
                    )));
                }
                return Ok(false);
            }
        }
        let password_hash = self.hash_password(password.to_owned()).await?;
        let created = self
            .create_user(
                NewUser {
                    username: &username,
                    password_hash: &password_hash,
                    role,
                    device_id: None,
                },
                |user| AuditRecord {
                    actor_id: None,
                    actor: Some("system".into()),
                    action: if role == Role::Admin {
                        "admin.create"
                    } else {
                        "user.register"
                    },
                    target: Some(user_target(user)),
                    source_ip: None,
                    details: json!({"source": source, "role": role}),
                },
            )
            .await?;
        // `None`: another instance created it at the same moment.
        Ok(created.is_some())
    }
}

/// What a new user row is made of.
pub(super) struct NewUser<'a> {
    username: &'a str,
    password_hash: &'a str,
    role: Role,
    device_id: Option<&'a str>,
}

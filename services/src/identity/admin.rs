//! What admins do with identity: list users, block and unblock them, read, prune and export the
//! audit log; and the audit records other areas write in their own transactions.

use std::time::Duration;

use nodegrid_protocol::auth::{AuditEntry, Page, UserSummary};
use serde_json::json;

use super::access::UserAccess;
use super::rules::*;
use super::store::{self, AuditFilter, AuditRecord, UserFilter, UserRow};
use super::{AUTH_EVENTS_TOTAL, AuthUser, Caller, Identity, IdentityError, PageRequest};
use crate::text::escape_free_text;

impl Identity {
    /// Records that an authenticated user was refused a route their role does not allow.
    pub async fn record_denied(&self, caller: Caller, user: &AuthUser, route: &str) {
        metrics::counter!(AUTH_EVENTS_TOTAL, "event" => "forbidden").increment(1);
        self.record_quietly(AuditRecord {
            actor_id: Some(user.user_id),
            actor: Some(user.username.clone()),
            action: "access.denied",
            target: Some(truncate(route, 200)),
            source_ip: Some(caller.ip.to_string()),
            details: json!({"role": user.role}),
        })
        .await;
    }

    /// Records an admin's change outside identity (e.g. a pNode registry prune).
    pub async fn record_admin_action(
        &self,
        caller: Caller,
        admin: &AuthUser,
        action: &'static str,
        target: &str,
        details: serde_json::Value,
    ) -> Result<(), IdentityError> {
        self.record(AuditRecord {
            actor_id: Some(admin.user_id),
            actor: Some(admin.username.clone()),
            action,
            target: Some(truncate(target, 200)),
            source_ip: Some(caller.ip.to_string()),
            details,
        })
        .await
    }

    /// Records that an admin read an admin view (`route`, with its query string).
    pub async fn record_admin_read(
        &self,
        caller: Caller,
        admin: &AuthUser,
        route: &str,
        query: &str,
    ) {
        self.record_quietly(AuditRecord {
            actor_id: Some(admin.user_id),
            actor: Some(admin.username.clone()),
            action: "admin.read",
            target: Some(truncate(route, 200)),
            source_ip: Some(caller.ip.to_string()),
            details: json!({"query": truncate(query, 500)}),
        })
        .await;
    }

    pub async fn list_users(
        &self,
        filter: UserFilter,
        page: PageRequest,
    ) -> Result<Page<UserSummary>, IdentityError> {
        let (page, per_page) = page.resolve()?;
        let client = self.inner.database.client().await?;
        let (users, total) = store::list_users(
            &client,
            &filter,
            i64::from(per_page),
            i64::from(page - 1) * i64::from(per_page),
        )
        .await?;
        Ok(Page {
            items: users.iter().map(UserRow::summary).collect(),
            page,
            per_page,
            total,
        })
    }

    /// Blocks a user everywhere: their refresh tokens are revoked, their access tokens refused
    /// on every instance, and (through the control event) their sockets closed.
    pub async fn block(
        &self,
        caller: Caller,
        admin: &AuthUser,
        user_id: i64,
        reason: &str,
    ) -> Result<UserSummary, IdentityError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(IdentityError::Validation(
                "reason must be 1 to 500 characters".into(),
            ));
        }
        // Kept whole, with control and direction-changing characters escaped.
        let reason = escape_free_text(reason, 500);
        let reason = reason.as_str();
        if user_id == admin.user_id {
            return Err(IdentityError::Validation(
                "an admin cannot block themselves".into(),
            ));
        }
        let audit = admin_record(
            caller,
            admin,
            "user.block",
            user_id,
            json!({"reason": reason}),
        );
        let mut client = self.inner.database.client().await?;
        let user = store::block_user(&mut client, user_id, reason, &audit).await?;
        self.access_changed(user_id, user, true).await
    }

    pub async fn unblock(
        &self,
        caller: Caller,
        admin: &AuthUser,
        user_id: i64,
    ) -> Result<UserSummary, IdentityError> {
        let audit = admin_record(caller, admin, "user.unblock", user_id, json!({}));
        let mut client = self.inner.database.client().await?;
        let user = store::unblock_user(&mut client, user_id, &audit).await?;
        self.access_changed(user_id, user, false).await
    }

    /// After a committed block or unblock: this instance's gate, every other instance, a count.
    async fn access_changed(
        &self,
        user_id: i64,
        user: Option<UserRow>,
        blocked: bool,
    ) -> Result<UserSummary, IdentityError> {
        let user = user.ok_or_else(|| IdentityError::NotFound(format!("no user {user_id}")))?;
        self.announce(
            user.id,
            UserAccess {
                token_version: user.token_version,
                blocked,
            },
        )
        .await;
        let event = if blocked { "block" } else { "unblock" };
        metrics::counter!(AUTH_EVENTS_TOTAL, "event" => event).increment(1);
        Ok(user.summary())
    }

    pub async fn audit_log(
        &self,
        filter: AuditFilter,
        page: PageRequest,
    ) -> Result<Page<AuditEntry>, IdentityError> {
        let (page, per_page) = page.resolve()?;
        let client = self.inner.database.client().await?;
        let (entries, total) = store::list_audit(
            &client,
            &filter,
            i64::from(per_page),
            i64::from(page - 1) * i64::from(per_page),
        )
        .await?;
        Ok(Page {
            items: entries,
            page,
            per_page,
            total,
        })
    }

    /// Deletes audit entries older than `retention`, in batches so that no statement holds
    /// the table long; returns how many.
    pub async fn prune_audit(&self, retention: Duration) -> Result<u64, IdentityError> {
        const BATCH: i64 = 10_000;
        let mut deleted = 0;
        loop {
            let client = self.inner.database.client().await?;
            let batch = store::prune_audit(&client, retention.as_secs(), BATCH).await?;
            deleted += batch;
            if batch < BATCH as u64 {
                return Ok(deleted);
            }
        }
    }

    /// A page of the audit log for an export: entries after `after` (by id), oldest first.
    pub async fn audit_after(
        &self,
        filter: &AuditFilter,
        after: i64,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, IdentityError> {
        let client = self.inner.database.client().await?;
        Ok(store::audit_after(&client, filter, after, limit).await?)
    }
}

/// An audit record of an admin acting on a user.
fn admin_record(
    caller: Caller,
    admin: &AuthUser,
    action: &'static str,
    user_id: i64,
    details: serde_json::Value,
) -> AuditRecord {
    audit_record(caller, admin, action, &format!("user:{user_id}"), details)
}

/// An audit record of `actor` doing `action` to `target`, for changes that other services
/// write in their own transaction.
pub fn audit_record(
    caller: Caller,
    actor: &AuthUser,
    action: &'static str,
    target: &str,
    details: serde_json::Value,
) -> AuditRecord {
    AuditRecord {
        actor_id: Some(actor.user_id),
        actor: Some(actor.username.clone()),
        action,
        target: Some(truncate(target, 200)),
        source_ip: Some(caller.ip.to_string()),
        details,
    }
}

//! `/api/admin/*`: users, blocking, and the audit log. Every route needs an admin's token.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use nodegrid_protocol::auth::{AuditEntry, BlockRequest, Page, Role, UserSummary};
use nodegrid_protocol::error::ErrorBody;
use nodegrid_services::identity::PageRequest;
use nodegrid_services::identity::store::{AuditFilter, UserFilter};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::http::auth::{Admin, caller};
use crate::http::error::ApiError;
use crate::http::json::Json;
use crate::http::routing::resource;
use crate::state::AppState;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(resource("/api/admin/users").route(web::get().to(list_users)))
        .service(resource("/api/admin/users/{id}/block").route(web::post().to(block_user)))
        .service(resource("/api/admin/users/{id}/unblock").route(web::post().to(unblock_user)))
        .service(resource("/api/admin/audit").route(web::get().to(audit_log)))
        .service(resource("/api/admin/audit/export").route(web::get().to(export_audit_log)));
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsersQuery {
    /// Only users of this role.
    pub role: Option<Role>,
    /// Only blocked (`true`) or unblocked (`false`) users.
    pub blocked: Option<bool>,
    /// Only users whose name contains this (any case; at most 200 characters).
    pub search: Option<String>,
    /// 1-based page [default: 1].
    pub page: Option<u32>,
    /// Items per page, 1 to 200 [default: 50].
    pub per_page: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// The actor's username or user id.
    pub actor: Option<String>,
    /// The action, e.g. `user.block`.
    pub action: Option<String>,
    /// Entries at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Entries before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// 1-based page [default: 1].
    pub page: Option<u32>,
    /// Items per page, 1 to 200 [default: 50].
    pub per_page: Option<u32>,
}

/// Users, oldest first, filtered by role and blocked state.
#[utoipa::path(get, path = "/api/admin/users", tag = "admin", params(UsersQuery),
    responses(
        (status = 200, description = "A page of users", body = Page<UserSummary>),
        (status = 401, description = "no or bad token", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list_users(
    state: web::Data<AppState>,
    _admin: Admin,
    query: web::Query<UsersQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let search = query.search.filter(|search| !search.trim().is_empty());
    if search
        .as_ref()
        .is_some_and(|search| search.chars().count() > 200)
    {
        return Err(ApiError::validation("search is at most 200 characters"));
    }
    let page = state
        .identity
        .list_users(
            UserFilter {
                role: query.role,
                blocked: query.blocked,
                search: search.map(|search| search.trim().to_owned()),
            },
            PageRequest {
                page: query.page,
                per_page: query.per_page,
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

/// Blocks a user on every instance: logins, refreshes and existing access tokens are refused,
/// and their open sockets are closed.
#[utoipa::path(post, path = "/api/admin/users/{id}/block", tag = "admin",
    params(("id" = i64, Path, description = "The user id")),
    request_body = BlockRequest,
    responses(
        (status = 200, description = "Blocked", body = UserSummary),
        (status = 400, description = "`validation_failed`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn block_user(
    state: web::Data<AppState>,
    request: HttpRequest,
    admin: Admin,
    path: web::Path<i64>,
    body: Json<BlockRequest>,
) -> Result<HttpResponse, ApiError> {
    let user = state
        .identity
        .block(
            caller(&request, &state),
            &admin.0,
            path.into_inner(),
            &body.reason,
        )
        .await?;
    Ok(HttpResponse::Ok().json(user))
}

/// Unblocks a user. Tokens issued before the block stay refused.
#[utoipa::path(post, path = "/api/admin/users/{id}/unblock", tag = "admin",
    params(("id" = i64, Path, description = "The user id")),
    responses(
        (status = 200, description = "Unblocked", body = UserSummary),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn unblock_user(
    state: web::Data<AppState>,
    request: HttpRequest,
    admin: Admin,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let user = state
        .identity
        .unblock(caller(&request, &state), &admin.0, path.into_inner())
        .await?;
    Ok(HttpResponse::Ok().json(user))
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/api/admin/audit", tag = "admin", params(AuditQuery),
    responses(
        (status = 200, description = "A page of entries", body = Page<AuditEntry>),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn audit_log(
    state: web::Data<AppState>,
    _admin: Admin,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let page = state
        .identity
        .audit_log(
            AuditFilter {
                actor: query.actor,
                action: query.action,
                since: query.since,
                until: query.until,
            },
            PageRequest {
                page: query.page,
                per_page: query.per_page,
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

/// The filters of an export: those of the audit log, without paging.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// The actor's username or user id.
    pub actor: Option<String>,
    /// The action, e.g. `user.block`.
    pub action: Option<String>,
    /// Entries at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Entries before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
}

/// Entries read per round trip of an export.
const EXPORT_PAGE: i64 = 1_000;

/// The audit log as JSON lines (`application/x-ndjson`), oldest first, streamed a page at a
/// time; each page takes a pooled connection only while it is read.
#[utoipa::path(get, path = "/api/admin/audit/export", tag = "admin", params(ExportQuery),
    responses(
        (status = 200, description = "One `AuditEntry` JSON object per line", content_type = "application/x-ndjson", body = AuditEntry),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn export_audit_log(
    state: web::Data<AppState>,
    _admin: Admin,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let filter = AuditFilter {
        actor: query.actor,
        action: query.action,
        since: query.since,
        until: query.until,
    };
    let identity = state.identity.clone();
    let pages = futures_util::stream::unfold(Some(0i64), move |after| {
        let (identity, filter) = (identity.clone(), filter.clone());
        async move {
            let after = after?;
            match identity.audit_after(&filter, after, EXPORT_PAGE).await {
                Ok(entries) if entries.is_empty() => None,
                Ok(entries) => {
                    let next = entries.last().map(|entry| entry.id);
                    let mut lines = Vec::with_capacity(entries.len() * 200);
                    for entry in &entries {
                        if serde_json::to_writer(&mut lines, entry).is_ok() {
                            lines.push(b'\n');
                        }
                    }
                    let more = (entries.len() as i64 == EXPORT_PAGE)
                        .then_some(next)
                        .flatten();
                    Some((Ok::<_, actix_web::Error>(web::Bytes::from(lines)), more))
                }
                Err(error) => {
                    tracing::error!(%error, "audit export failed part way");
                    Some((
                        Err(actix_web::error::ErrorInternalServerError(
                            "the export failed part way",
                        )),
                        None,
                    ))
                }
            }
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(pages))
}

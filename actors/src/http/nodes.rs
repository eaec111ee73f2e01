//! `/api/nodes`: the node registry over REST, its event stream over a WebSocket
//! (`/api/nodes/watch`), and `/api/admin/operator-tokens`.
//!
//! Mutations need an admin or an operator token with `nodes:write`; reads need any valid
//! token (or an operator token with `nodes:read`), or none with `--registry-public-reads`.

use actix_web::{FromRequest, HttpRequest, HttpResponse, web};

use nodegrid_protocol::api_tokens::{ApiScope, ApiTokenCreated, CreateApiTokenRequest};
use nodegrid_protocol::auth::Role;
use nodegrid_protocol::error::{ErrorBody, ErrorCode};
use nodegrid_protocol::registry::{
    CreateNodeRequest, Node, NodeEvent, NodeListResponse, SetNodeStatusRequest, UpdateNodeRequest,
};
use nodegrid_protocol::stream::close;
use nodegrid_services::identity::admin::audit_record;
use nodegrid_services::registry::{RegistryActor, RegistryError, filter};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::http::auth::{Admin, Principal, caller};
use crate::http::error::ApiError;
use crate::http::json::Json;
use crate::http::push::{Push, push_socket};
use crate::http::routing::resource;
use crate::state::AppState;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        // Before `/api/nodes/{id}`: ids are UUIDs, `watch` is not one.
        .service(resource("/api/nodes/watch").route(web::get().to(watch)))
        .service(
            resource("/api/nodes")
                .route(web::get().to(list))
                .route(web::post().to(create)),
        )
        .service(
            resource("/api/nodes/{id}")
                .route(web::get().to(get))
                .route(web::patch().to(update))
                .route(web::delete().to(delete)),
        )
        .service(resource("/api/nodes/{id}/status").route(web::put().to(set_status)))
        .service(
            resource("/api/admin/operator-tokens").route(web::post().to(issue_operator_token)),
        );
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> ApiError {
        match error {
            RegistryError::Validation(message) => ApiError::validation(message),
            RegistryError::NotFound(id) => ApiError::not_found(format!("no node {id}")),
            RegistryError::Conflict(message) => ApiError::new(ErrorCode::Conflict, message),
            RegistryError::Database(error) => ApiError::internal(error),
            RegistryError::Bus(error) => ApiError::internal(error),
        }
    }
}

/// Who may read: anyone with `--registry-public-reads`, else any valid token.
async fn reader(request: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    // A token in the header, or in the query for sockets (browsers cannot set headers there).
    let presented = crate::http::auth::access_token(request).is_some();
    if state.registry_public_reads && !presented {
        return Ok(());
    }
    match Principal::extract(request).await? {
        Principal::User(_) => Ok(()),
        Principal::ApiToken(grant)
            if grant.has(ApiScope::NodesRead) || grant.has(ApiScope::NodesWrite) =>
        {
            Ok(())
        }
        Principal::ApiToken(_) => Err(ApiError::new(
            ErrorCode::Forbidden,
            "this API token has no nodes:read scope",
        )),
    }
}

/// Who may change the registry: an admin, or an operator token with `nodes:write`.
/// Who changes the registry: an admin, or an operator token with `nodes:write`. An extractor,
/// so that the caller is refused (401, 403) before the body is read.
pub struct Writer(RegistryActor);

impl FromRequest for Writer {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Writer, ApiError>>;

    fn from_request(request: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        // `Principal` is decided without IO: its future is ready at once.
        let principal = Principal::from_request(request, payload).into_inner();
        std::future::ready(principal.and_then(|principal| match principal {
            Principal::User(user) if user.role == Role::Admin => Ok(Writer(RegistryActor::User {
                user_id: user.user_id,
                username: user.username,
            })),
            Principal::User(_) => Err(ApiError::new(
                ErrorCode::Forbidden,
                "changing the node registry needs an admin or an operator token",
            )),
            Principal::ApiToken(grant) if grant.has(ApiScope::NodesWrite) => Ok(Writer(
                RegistryActor::token(&crate::http::auth::access_token(request).unwrap_or_default()),
            )),
            Principal::ApiToken(_) => Err(ApiError::new(
                ErrorCode::Forbidden,
                "this API token has no nodes:write scope",
            )),
        }))
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// BAREMETAL, VM, CONTAINER, IOT_DEVICE, PNODE, CHILD or CUSTOM.
    #[serde(rename = "type")]
    node_type: Option<String>,
    /// UNKNOWN, UP, DOWN or DEGRADED.
    status: Option<String>,
    /// `k=v,k2=v2`: every one of these labels.
    label: Option<String>,
    /// A part of the name, case-insensitive.
    search: Option<String>,
    /// 1 to 1000 (100).
    page_size: Option<usize>,
    page_token: Option<String>,
}

#[utoipa::path(get, path = "/api/nodes", tag = "nodes", params(ListQuery),
    responses(
        (status = 200, description = "A page of nodes in id order", body = NodeListResponse),
        (status = 400, description = "`validation_failed`: a bad filter or page token", body = ErrorBody),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    reader(&request, &state).await?;
    let query = query.into_inner();
    let filter = filter(
        query.node_type.as_deref(),
        query.status.as_deref(),
        query.label.as_deref(),
        query.search.as_deref(),
    )?;
    let page = state
        .nodes
        .list(
            &filter,
            query.page_size.unwrap_or(0),
            query.page_token.as_deref(),
        )
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

#[utoipa::path(post, path = "/api/nodes", tag = "nodes", request_body = CreateNodeRequest,
    responses(
        (status = 201, description = "Created", body = Node),
        (status = 400, description = "`validation_failed`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an admin or operator token", body = ErrorBody),
        (status = 409, description = "`conflict`: the name is taken within the type, or the id", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    Writer(actor): Writer,
    body: Json<CreateNodeRequest>,
) -> Result<HttpResponse, ApiError> {
    let node = state.nodes.create(&actor, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(node))
}

#[utoipa::path(get, path = "/api/nodes/{id}", tag = "nodes",
    params(("id" = Uuid, Path, description = "The node's id")),
    responses(
        (status = 200, description = "The node", body = Node),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    reader(&request, &state).await?;
    let node = state.nodes.get(path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(node))
}

#[utoipa::path(patch, path = "/api/nodes/{id}", tag = "nodes", request_body = UpdateNodeRequest,
    params(("id" = Uuid, Path, description = "The node's id")),
    responses(
        (status = 200, description = "The node after the change", body = Node),
        (status = 400, description = "`validation_failed`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`conflict`: the name is taken within the type", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn update(
    state: web::Data<AppState>,
    Writer(actor): Writer,
    path: web::Path<Uuid>,
    body: Json<UpdateNodeRequest>,
) -> Result<HttpResponse, ApiError> {
    let node = state
        .nodes
        .update(&actor, path.into_inner(), body.into_inner())
        .await?;
    Ok(HttpResponse::Ok().json(node))
}

#[utoipa::path(put, path = "/api/nodes/{id}/status", tag = "nodes", request_body = SetNodeStatusRequest,
    params(("id" = Uuid, Path, description = "The node's id")),
    responses(
        (status = 200, description = "The node after the change", body = Node),
        (status = 400, description = "`validation_failed`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn set_status(
    state: web::Data<AppState>,
    Writer(actor): Writer,
    path: web::Path<Uuid>,
    body: Json<SetNodeStatusRequest>,
) -> Result<HttpResponse, ApiError> {
    let change = UpdateNodeRequest {
        status: Some(body.into_inner().status),
        ..UpdateNodeRequest::default()
    };
    let node = state
        .nodes
        .update(&actor, path.into_inner(), change)
        .await?;
    Ok(HttpResponse::Ok().json(node))
}

#[utoipa::path(delete, path = "/api/nodes/{id}", tag = "nodes",
    params(("id" = Uuid, Path, description = "The node's id")),
    responses(
        (status = 200, description = "Deleted: the node as it was", body = Node),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn delete(
    state: web::Data<AppState>,
    Writer(actor): Writer,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let node = state.nodes.delete(&actor, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(node))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct WatchQuery {
    /// Replay what is kept after this event id, then go live; absent: live only.
    since: Option<String>,
    #[serde(rename = "type")]
    node_type: Option<String>,
    status: Option<String>,
    label: Option<String>,
    /// The access token, for clients that cannot set headers on a WebSocket.
    #[allow(dead_code)]
    token: Option<String>,
}

/// A WebSocket of the registry's events: one text frame per event (`NodeEvent` as JSON).
#[utoipa::path(get, path = "/api/nodes/watch", tag = "nodes", params(WatchQuery),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol; then one `NodeEvent` per text frame", body = NodeEvent),
        (status = 400, description = "`validation_failed`: a bad filter or `since`", body = ErrorBody),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn watch(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
    query: web::Query<WatchQuery>,
) -> Result<HttpResponse, actix_web::Error> {
    let query = query.into_inner();
    let since =
        match query.since.as_deref().filter(|since| !since.is_empty()) {
            Some(text) => Some(text.parse::<i64>().ok().filter(|id| *id >= 0).ok_or_else(
                || ApiError::validation("since must be an event id (a decimal integer)"),
            )?),
            None => None,
        };
    reader(&request, &state).await?;
    let filter = filter(
        query.node_type.as_deref(),
        query.status.as_deref(),
        query.label.as_deref(),
        None,
    )
    .map_err(ApiError::from)?;
    let watch = state
        .nodes
        .log()
        .watch(filter, since)
        .await
        .map_err(ApiError::from)?;
    // Events, then (when the watch fails) a close frame.
    let events = futures_util::stream::unfold(Some(watch), |watch| async move {
        let mut watch = watch?;
        match watch.next().await {
            Ok(event) => Some((
                Push::Json(serde_json::to_vec(&event).unwrap_or_default().into()),
                Some(watch),
            )),
            Err(error) => {
                tracing::warn!(%error, "a registry watch ended");
                Some((Push::Close(close::INTERNAL), None))
            }
        }
    });
    push_socket(&request, payload, events)
}

/// `POST /api/admin/operator-tokens`: an API token for node operators (sensors, the CLI).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorTokenRequest {
    /// What the token is for (1–100 characters, not blank: it is trimmed).
    #[schema(
        max_length = 100,
        // Something other than white space (as Rust trims it), and no NUL.
        pattern = r"^[^\u0000]*[^\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
    )]
    name: String,
    /// `nodes:read`, `nodes:write` (both when absent); at least one.
    #[serde(default)]
    #[schema(min_items = 1)]
    scopes: Option<Vec<OperatorScope>>,
    /// Days until the token stops working, 1 to 36 500 (absent: never).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 36_500)]
    expires_in_days: Option<u32>,
}

/// The scopes an operator token may carry: the registry's, none other.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
enum OperatorScope {
    #[serde(rename = "nodes:read")]
    NodesRead,
    #[serde(rename = "nodes:write")]
    NodesWrite,
}

impl From<OperatorScope> for ApiScope {
    fn from(scope: OperatorScope) -> ApiScope {
        match scope {
            OperatorScope::NodesRead => ApiScope::NodesRead,
            OperatorScope::NodesWrite => ApiScope::NodesWrite,
        }
    }
}

#[utoipa::path(post, path = "/api/admin/operator-tokens", tag = "admin",
    request_body = OperatorTokenRequest,
    responses(
        (status = 201, description = "Issued: the token is in this answer and nowhere else", body = ApiTokenCreated),
        (status = 400, description = "`validation_failed`: a scope other than nodes:read / nodes:write", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn issue_operator_token(
    state: web::Data<AppState>,
    request: HttpRequest,
    admin: Admin,
    body: Json<OperatorTokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    // Other scopes are refused as the body is read (`OperatorScope` has no others).
    let scopes: Vec<ApiScope> = match body.scopes {
        Some(scopes) => scopes.into_iter().map(ApiScope::from).collect(),
        None => vec![ApiScope::NodesRead, ApiScope::NodesWrite],
    };
    if scopes.is_empty() {
        return Err(ApiError::validation(
            "an operator token's scopes are nodes:read and nodes:write",
        ));
    }
    let audit = audit_record(
        caller(&request, &state),
        &admin.0,
        "operator_token.issue",
        &body.name,
        json!({"scopes": scopes, "expires_in_days": body.expires_in_days}),
    );
    let created = state
        .api_tokens
        .issue(
            CreateApiTokenRequest {
                name: body.name,
                scopes,
                producer_ids: None,
                expires_in_days: body.expires_in_days,
                rate_per_sec: None,
            },
            admin.0.user_id,
            audit,
        )
        .await?;
    Ok(HttpResponse::Created().json(created))
}

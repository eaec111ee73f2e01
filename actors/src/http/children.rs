//! `/api/admin/plans`, `/api/admin/clients`, `/api/admin/children`, `/api/admin/maintenance`,
//! `/api/admin/versions`: admins provision and control the children. Every change is audited
//! (never with a key) and reaches every instance through the control channel.

use actix_web::{HttpRequest, HttpResponse, web};
use nodegrid_protocol::children::admin::{
    ChildKeyIssued, ChildLiveness, ChildView, ChildrenResponse, ClientConfigRequest, ClientRequest,
    ClientUserRequest, ClientView, ClientsResponse, CreateChildRequest, Maintenance, PlanRequest,
    PlanView, PlansResponse, VersionPolicy,
};
use nodegrid_protocol::error::{ErrorBody, ErrorCode};
use nodegrid_services::children::ChildrenError;
use nodegrid_services::identity::admin::audit_record;
use nodegrid_services::identity::retry_after_secs;
use serde_json::json;
use uuid::Uuid;

use crate::children::registry::{ChildRegistry, GetChild, ListChildren};
use crate::http::auth::{Admin, caller};
use crate::http::error::ApiError;
use crate::http::json::Json;
use crate::http::routing::resource;
use crate::state::AppState;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(
            resource("/api/admin/plans")
                .route(web::get().to(list_plans))
                .route(web::post().to(create_plan)),
        )
        .service(resource("/api/admin/plans/{id}").route(web::put().to(update_plan)))
        .service(
            resource("/api/admin/clients")
                .route(web::get().to(list_clients))
                .route(web::post().to(create_client)),
        )
        .service(
            resource("/api/admin/clients/{id}")
                .route(web::get().to(get_client))
                .route(web::put().to(update_client)),
        )
        .service(resource("/api/admin/clients/{id}/config").route(web::put().to(set_client_config)))
        .service(resource("/api/admin/clients/{id}/users").route(web::post().to(add_client_user)))
        .service(
            resource("/api/admin/clients/{id}/children")
                .route(web::get().to(client_children))
                .route(web::post().to(create_child)),
        )
        .service(resource("/api/admin/children").route(web::get().to(list_children)))
        .service(
            resource("/api/admin/children/{id}")
                .route(web::get().to(get_child))
                .route(web::delete().to(revoke_child)),
        )
        .service(resource("/api/admin/children/{id}/rotate-key").route(web::post().to(rotate_key)))
        .service(
            resource("/api/admin/maintenance")
                .route(web::get().to(maintenance))
                .route(web::put().to(set_maintenance)),
        )
        .service(
            resource("/api/admin/versions")
                .route(web::get().to(versions))
                .route(web::put().to(set_versions)),
        );
}

impl From<ChildrenError> for ApiError {
    fn from(error: ChildrenError) -> ApiError {
        match error {
            ChildrenError::BadRequest(message) => ApiError::validation(message),
            ChildrenError::NotFound(message) => ApiError::not_found(message),
            ChildrenError::Conflict(message) => ApiError::new(ErrorCode::Conflict, message),
            ChildrenError::PlanLimitReached(message) => {
                ApiError::new(ErrorCode::PlanLimitReached, message)
            }
            ChildrenError::KeyInvalid => {
                ApiError::new(ErrorCode::TokenInvalid, "the child key is not valid")
            }
            ChildrenError::SignatureInvalid(message) => {
                ApiError::new(ErrorCode::SignatureInvalid, message)
            }
            ChildrenError::RateLimited(retry_after) => ApiError::RateLimited {
                retry_after_secs: retry_after_secs(retry_after),
                message: "too many requests from this child".into(),
            },
            error @ (ChildrenError::Database(_) | ChildrenError::Bus(_)) => {
                ApiError::internal(error)
            }
        }
    }
}

#[utoipa::path(get, path = "/api/admin/plans", tag = "admin",
    responses(
        (status = 200, description = "Every plan", body = PlansResponse),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list_plans(
    state: web::Data<AppState>,
    _admin: Admin,
) -> Result<HttpResponse, ApiError> {
    let plans = state.children.list_plans().await?;
    Ok(HttpResponse::Ok().json(PlansResponse { plans }))
}

#[utoipa::path(post, path = "/api/admin/plans", tag = "admin",
    request_body = PlanRequest,
    responses(
        (status = 201, description = "Created", body = PlanView),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 409, description = "`conflict`: a plan has that name", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create_plan(
    state: web::Data<AppState>,
    request: HttpRequest,
    admin: Admin,
    body: Json<PlanRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let audit = audit_record(
        caller(&request, &state),
        &admin.0,
        "plan.create",
        &body.name,
        json!(body),
    );
    let plan = state.children.put_plan(None, body, audit).await?;
    Ok(HttpResponse::Created().json(plan))
}

#[utoipa::path(put, path = "/api/admin/plans/{id}", tag = "admin",
    params(("id" = i64, Path, description = "The plan's id")),
    request_body = PlanRequest,
    responses(
        (status = 200, description = "Replaced; leases carry the new terms from the next heartbeat", body = PlanView),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`conflict`: another plan has that name", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn update_plan(
    state: web::Data<AppState>,
    request: HttpRequest,
    admin: Admin,
    path: web::Path<i64>,
    body: Json<PlanRequest>,
) -> Result<HttpResponse, ApiError> {
    let (id, body) = (path.into_inner(), body.into_inner());
    let audit = audit_record(
        caller(&request, &state),
        &admin.0,
        "plan.update",
        &format!("plan:{id}"),
        json!(body),
    );
    let plan = state.children.put_plan(Some(id), body, audit).await?;
    Ok(HttpResponse::Ok().json(plan))
}

#[utoipa::path(get, path = "/api/admin/clients", tag = "admin",
    responses(
        (status = 200, description = "Every client with its counts", body = ClientsResponse),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list_clients(
    state: web::Data<AppState>,
    _admin: Admin,
) -> Result<HttpResponse, ApiError> {
    let clients = state.children.list_clients().await?;
    Ok(HttpResponse::Ok().json(ClientsResponse { clients }))
}

#[utoipa::path(post, path = "/api/admin/clients", tag = "admin",
    request_body = ClientRequest,
    responses(
        (status = 201, description = "Created", body = ClientView),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 409, description = "`conflict`: a client has that name", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create_client(
    state: web::Data<AppState>,
    request: HttpRequest,
    admin: Admin,
    body: Json<ClientRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let audit = audit_record(
        caller(&request, &state),
        &admin.0,
        "client.create",
        &body.name,
        json!(body),
    );
    let client = state.children.put_client(None, body, audit).await?;
    Ok(HttpResponse::Created().json(client))
}

#[utoipa::path(get, path = "/api/admin/clients/{id}", tag = "admin",
    params(("id" = i64, Path, description = "The client's id")),
    responses(
        (status = 200, description = "The client", body = ClientView),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get_client(
    state: web::Data<AppState>,
    _admin: Admin,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let client = state.children.get_client(path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(client))
}

#[utoipa::path(put, path = "/api/admin/clients/{id}", tag = "admin",
    params(("id" = i64, Path, description = "The client's id")),
    request_body = ClientRequest,
    responses(
        (status = 200, description = "Changed; leases carry the new terms from the next heartbeat", body = ClientView),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`conflict`: another client has that name", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn update_client(
    state: web::Data<AppState>,
    request: HttpRequest,
    admin: Admin,
    path: web::Path<i64>,
    body: Json<ClientRequest>,
) -> Result<HttpResponse, ApiError> {
    let (id, body) = (path.into_inner(), body.into_inner());
    let audit = audit_record(
        caller(&request, &state),
        &admin.0,
        "client.update",
        &format!("client:{id}"),
        json!(body),
    );
    let client = state.children.put_client(Some(id), body, audit).await?;
    Ok(HttpResponse::Ok().json(client))
}

#[utoipa::path(put, path = "/api/admin/clients/{id}/config", tag = "admin",
    params(("id" = i64, Path, description = "The client's id")),
    request_body = ClientConfigRequest,
    responses(
        (status = 200, description = "Set; every lease of the client's children carries it and its hash", body = ClientView),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn set_client_config(
    state: web::Data<AppState>,
    request: HttpRequest,
    admin: Admin,
    path: web::Path<i64>,
    body: Json<ClientConfigRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let audit = audit_record(
        caller(&request, &state),
        &admin.0,
        "client.config",
        &format!("client:{id}"),
        json!({}),
    );
    let client = state
        .children
        .set_client_config(id, body.into_inner().config, audit)
        .await?;
    Ok(HttpResponse::Ok().json(client))
}

#[utoipa::path(post, path = "/api/admin/clients/{id}/users", tag = "admin",
    params(("id" = i64, Path, description = "The client's id")),
    request_body = ClientUserRequest,
    responses(
        (status = 200, description = "The user belongs to the client", body = ClientView),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 404, description = "`not_found`: no such client", body = ErrorBody),
        (status = 409, description = "`plan_limit_reached`: the plan's max_users; `conflict`: the user belongs to another client", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn add_client_user(
    state: web::Data<AppState>,
    request: HttpRequest,
    admin: Admin,
    path: web::Path<i64>,
    body: Json<ClientUserRequest>,
) -> Result<HttpResponse, ApiError> {
    let (id, body) = (path.into_inner(), body.into_inner());
    let audit = audit_record(
        caller(&request, &state),
        &admin.0,
        "client.add_user",
        &format!("client:{id}"),
        json!({"user_id": body.user_id}),
    );
    let client = state
        .children
        .add_client_user(id, body.user_id, audit)
        .await?;
    Ok(HttpResponse::Ok().json(client))
}

#[utoipa::path(post, path = "/api/admin/clients/{id}/children", tag = "admin",
    params(("id" = i64, Path, description = "The client's id")),
    request_body = CreateChildRequest,
    responses(
        (status = 201, description = "Provisioned: the key is in this answer and nowhere else", body = ChildKeyIssued),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 404, description = "`not_found`: no such client", body = ErrorBody),
        (status = 409, description = "`plan_limit_reached`: the plan's max_children; `conflict`: a child of the client has that name", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create_child(
    state: web::Data<AppState>,
    request: HttpRequest,
    admin: Admin,
    path: web::Path<i64>,
    body: Json<CreateChildRequest>,
) -> Result<HttpResponse, ApiError> {
    let (client_id, body) = (path.into_inner(), body.into_inner());
    let audit = audit_record(
        caller(&request, &state),
        &admin.0,
        "child.create",
        &body.name,
        json!({"name": body.name}),
    );
    let issued = state.children.create_child(client_id, body, audit).await?;
    Ok(HttpResponse::Created().json(issued))
}

/// Paging and filters of the children's lists.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChildrenQuery {
    /// `new`, `online`, `late`, `offline` or `revoked` [default: all].
    liveness: Option<String>,
    /// 1 to 1000 [default: 200].
    limit: Option<i64>,
    /// Children skipped, 0 to 10000000 [default: 0].
    offset: Option<i64>,
}

impl ChildrenQuery {
    fn resolve(&self) -> Result<(Option<ChildLiveness>, i64, i64), ApiError> {
        let liveness = match self.liveness.as_deref() {
            None | Some("") => None,
            Some(text) => Some(ChildLiveness::parse(text).ok_or_else(|| {
                ApiError::validation("liveness must be new, online, late, offline or revoked")
            })?),
        };
        let limit = self.limit.unwrap_or(200);
        if !(1..=1_000).contains(&limit) {
            return Err(ApiError::validation("limit must be 1 to 1000"));
        }
        let offset = self.offset.unwrap_or(0);
        if !(0..=10_000_000).contains(&offset) {
            return Err(ApiError::validation("offset must be 0 to 10000000"));
        }
        Ok((liveness, limit, offset))
    }
}

/// Asks this instance's child registry, which answers the admin queries about children.
async fn ask<M>(state: &AppState, message: M) -> Result<M::Result, ApiError>
where
    M: actix::Message + Send + 'static,
    M::Result: Send,
    ChildRegistry: actix::Handler<M>,
{
    state
        .child_registry
        .send(message)
        .await
        .map_err(|error| ApiError::Internal(anyhow::anyhow!("the child registry: {error}")))
}

#[utoipa::path(get, path = "/api/admin/clients/{id}/children", tag = "admin",
    params(("id" = i64, Path, description = "The client's id"), ChildrenQuery),
    responses(
        (status = 200, description = "A page of the client's children, newest first, and how many match", body = ChildrenResponse),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn client_children(
    state: web::Data<AppState>,
    _admin: Admin,
    path: web::Path<i64>,
    query: web::Query<ChildrenQuery>,
) -> Result<HttpResponse, ApiError> {
    let (liveness, limit, offset) = query.resolve()?;
    let (children, total) = ask(
        &state,
        ListChildren {
            client_id: Some(path.into_inner()),
            liveness,
            limit,
            offset,
        },
    )
    .await??;
    Ok(HttpResponse::Ok().json(ChildrenResponse { children, total }))
}

#[utoipa::path(get, path = "/api/admin/children", tag = "admin",
    params(ChildrenQuery),
    responses(
        (status = 200, description = "A page of the children with their live state, newest first, and how many match", body = ChildrenResponse),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list_children(
    state: web::Data<AppState>,
    _admin: Admin,
    query: web::Query<ChildrenQuery>,
) -> Result<HttpResponse, ApiError> {
    let (liveness, limit, offset) = query.resolve()?;
    let (children, total) = ask(
        &state,
        ListChildren {
            client_id: None,
            liveness,
            limit,
            offset,
        },
    )
    .await??;
    Ok(HttpResponse::Ok().json(ChildrenResponse { children, total }))
}

#[utoipa::path(get, path = "/api/admin/children/{id}", tag = "admin",
    params(("id" = Uuid, Path, description = "The child's id")),
    responses(
        (status = 200, description = "The child with its live state", body = ChildView),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get_child(
    state: web::Data<AppState>,
    _admin: Admin,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let child = ask(&state, GetChild(path.into_inner())).await??;
    Ok(HttpResponse::Ok().json(child))
}

#[utoipa::path(delete, path = "/api/admin/children/{id}", tag = "admin",
    params(("id" = Uuid, Path, description = "The child's id")),
    responses(
        (status = 204, description = "Revoked: its key is refused on every instance"),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn revoke_child(
    state: web::Data<AppState>,
    request: HttpRequest,
    admin: Admin,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let audit = audit_record(
        caller(&request, &state),
        &admin.0,
        "child.revoke",
        &format!("child:{id}"),
        json!({}),
    );
    state.children.revoke_child(id, audit).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/api/admin/children/{id}/rotate-key", tag = "admin",
    params(("id" = Uuid, Path, description = "The child's id")),
    responses(
        (status = 200, description = "A new key, in this answer only; the old one is refused from now on", body = ChildKeyIssued),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 404, description = "`not_found`: no such live child", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn rotate_key(
    state: web::Data<AppState>,
    request: HttpRequest,
    admin: Admin,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let audit = audit_record(
        caller(&request, &state),
        &admin.0,
        "child.rotate_key",
        &format!("child:{id}"),
        json!({}),
    );
    let issued = state.children.rotate_key(id, audit).await?;
    Ok(HttpResponse::Ok().json(issued))
}

#[utoipa::path(get, path = "/api/admin/maintenance", tag = "admin",
    responses(
        (status = 200, description = "Maintenance as leases state it", body = Maintenance),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn maintenance(state: web::Data<AppState>, _admin: Admin) -> HttpResponse {
    HttpResponse::Ok().json(state.children.system().0)
}

#[utoipa::path(put, path = "/api/admin/maintenance", tag = "admin",
    request_body = Maintenance,
    responses(
        (status = 200, description = "Set; every child's next lease says so", body = Maintenance),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn set_maintenance(
    state: web::Data<AppState>,
    request: HttpRequest,
    admin: Admin,
    body: Json<Maintenance>,
) -> Result<HttpResponse, ApiError> {
    let audit = audit_record(
        caller(&request, &state),
        &admin.0,
        "children.maintenance",
        "maintenance",
        json!({}),
    );
    let maintenance = state
        .children
        .set_maintenance(body.into_inner(), audit)
        .await?;
    Ok(HttpResponse::Ok().json(maintenance))
}

#[utoipa::path(get, path = "/api/admin/versions", tag = "admin",
    responses(
        (status = 200, description = "The version policy", body = VersionPolicy),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn versions(state: web::Data<AppState>, _admin: Admin) -> HttpResponse {
    HttpResponse::Ok().json(state.children.system().1)
}

#[utoipa::path(put, path = "/api/admin/versions", tag = "admin",
    request_body = VersionPolicy,
    responses(
        (status = 200, description = "Set; every child's next lease judges its version by it", body = VersionPolicy),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn set_versions(
    state: web::Data<AppState>,
    request: HttpRequest,
    admin: Admin,
    body: Json<VersionPolicy>,
) -> Result<HttpResponse, ApiError> {
    let audit = audit_record(
        caller(&request, &state),
        &admin.0,
        "children.versions",
        "versions",
        json!({}),
    );
    let policy = state
        .children
        .set_versions(body.into_inner(), audit)
        .await?;
    Ok(HttpResponse::Ok().json(policy))
}

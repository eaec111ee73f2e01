//! `/api/admin/webhooks`: admins register, list and delete webhooks and read their delivery
//! logs. Every change is audited (never with the secret).

use actix_web::{HttpRequest, HttpResponse, web};
use nodegrid_protocol::error::ErrorBody;
use nodegrid_protocol::webhooks::{
    CreateWebhookRequest, DeliveriesResponse, DeliveryStatus, WebhookView, WebhooksResponse,
};
use nodegrid_services::identity::admin::audit_record;
use nodegrid_services::webhooks::{MAX_DELIVERIES_PAGE, WebhookError};
use serde::Deserialize;
use serde_json::json;

use crate::http::auth::{Admin, caller};
use crate::http::error::ApiError;
use crate::http::json::Json;
use crate::http::routing::resource;
use crate::state::AppState;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(
            resource("/api/admin/webhooks")
                .route(web::get().to(list))
                .route(web::post().to(create)),
        )
        .service(
            resource("/api/admin/webhooks/{id}")
                .route(web::get().to(get))
                .route(web::delete().to(delete)),
        )
        .service(resource("/api/admin/webhooks/{id}/deliveries").route(web::get().to(deliveries)));
}

impl From<WebhookError> for ApiError {
    fn from(error: WebhookError) -> ApiError {
        match error {
            WebhookError::Validation(message) => ApiError::validation(message),
            WebhookError::NotFound(id) => ApiError::not_found(format!("no webhook {id}")),
            WebhookError::Database(error) => ApiError::internal(error),
        }
    }
}

#[utoipa::path(post, path = "/api/admin/webhooks", tag = "admin",
    request_body = CreateWebhookRequest,
    responses(
        (status = 201, description = "Registered; events from now on are delivered", body = WebhookView),
        (status = 400, description = "`validation_failed`: a URL not allowed, an unknown event type, a short secret", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create(
    state: web::Data<AppState>,
    request: HttpRequest,
    admin: Admin,
    body: Json<CreateWebhookRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let audit = audit_record(
        caller(&request, &state),
        &admin.0,
        "webhook.create",
        "webhook",
        // The URL without its query: receivers often carry a key there.
        json!({"url": body.url.split(['?', '#']).next().unwrap_or_default(),
               "events": body.events, "filters": body.filters}),
    );
    let created = state.webhooks.create(body, admin.0.user_id, audit).await?;
    Ok(HttpResponse::Created().json(created))
}

#[utoipa::path(get, path = "/api/admin/webhooks", tag = "admin",
    responses(
        (status = 200, description = "Live webhooks, newest first, without their secrets", body = WebhooksResponse),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list(state: web::Data<AppState>, _admin: Admin) -> Result<HttpResponse, ApiError> {
    let webhooks = state.webhooks.list().await?;
    Ok(HttpResponse::Ok().json(WebhooksResponse { webhooks }))
}

#[utoipa::path(get, path = "/api/admin/webhooks/{id}", tag = "admin",
    params(("id" = i64, Path, description = "The webhook's id")),
    responses(
        (status = 200, description = "One webhook", body = WebhookView),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get(
    state: web::Data<AppState>,
    _admin: Admin,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.webhooks.get(path.into_inner()).await?))
}

#[utoipa::path(delete, path = "/api/admin/webhooks/{id}", tag = "admin",
    params(("id" = i64, Path, description = "The webhook's id")),
    responses(
        (status = 204, description = "Deleted: nothing more is sent; waiting deliveries are marked failed"),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn delete(
    state: web::Data<AppState>,
    request: HttpRequest,
    admin: Admin,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let audit = audit_record(
        caller(&request, &state),
        &admin.0,
        "webhook.delete",
        &format!("webhook:{id}"),
        json!({}),
    );
    state.webhooks.delete(id, audit).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /api/admin/webhooks/{id}/deliveries`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// `pending`, `delivered` or `failed` [default: all].
    #[param(value_type = Option<DeliveryStatus>, inline)]
    status: Option<String>,
    /// Only deliveries older than this delivery id (paging back).
    before: Option<i64>,
    /// 1 to 500 [default: 100].
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/admin/webhooks/{id}/deliveries", tag = "admin",
    params(("id" = i64, Path, description = "The webhook's id"), DeliveriesQuery),
    responses(
        (status = 200, description = "Its deliveries, newest first", body = DeliveriesResponse),
        (status = 400, description = "`validation_failed`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn deliveries(
    state: web::Data<AppState>,
    _admin: Admin,
    path: web::Path<i64>,
    query: web::Query<DeliveriesQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let status =
        match query.status.as_deref() {
            None | Some("") => None,
            Some(text) => Some(DeliveryStatus::parse(text).ok_or_else(|| {
                ApiError::validation("status must be pending, delivered or failed")
            })?),
        };
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_DELIVERIES_PAGE).contains(&limit) {
        return Err(ApiError::validation(format!(
            "limit must be 1 to {MAX_DELIVERIES_PAGE}"
        )));
    }
    let deliveries = state
        .webhooks
        .deliveries(path.into_inner(), status, query.before, limit)
        .await?;
    Ok(HttpResponse::Ok().json(DeliveriesResponse { deliveries }))
}

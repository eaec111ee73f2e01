//! `/api/admin/api-tokens`: admins issue, list and revoke API tokens.

use actix_web::{HttpRequest, HttpResponse, web};
use nodegrid_protocol::api_tokens::{ApiTokenCreated, ApiTokensResponse, CreateApiTokenRequest};
use nodegrid_protocol::error::{ErrorBody, ErrorCode};
use nodegrid_services::identity::admin::audit_record;
use nodegrid_services::identity::api_tokens::ApiTokenError;
use serde_json::json;

use crate::http::auth::{Admin, caller};
use crate::http::error::ApiError;
use crate::http::json::Json;
use crate::http::routing::resource;
use crate::state::AppState;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(
            resource("/api/admin/api-tokens")
                .route(web::get().to(list))
                .route(web::post().to(issue)),
        )
        .service(resource("/api/admin/api-tokens/{id}").route(web::delete().to(revoke)));
}

impl From<ApiTokenError> for ApiError {
    fn from(error: ApiTokenError) -> ApiError {
        match error {
            ApiTokenError::Invalid => {
                ApiError::new(ErrorCode::TokenInvalid, "the API token is not valid")
            }
            ApiTokenError::BadRequest(message) => ApiError::validation(message),
            ApiTokenError::NotFound(id) => ApiError::not_found(format!("no API token {id}")),
            ApiTokenError::Database(error) => ApiError::internal(error),
        }
    }
}

#[utoipa::path(post, path = "/api/admin/api-tokens", tag = "admin",
    request_body = CreateApiTokenRequest,
    responses(
        (status = 201, description = "Issued: the token is in this answer and nowhere else", body = ApiTokenCreated),
        (status = 400, description = "`validation_failed`", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn issue(
    state: web::Data<AppState>,
    request: HttpRequest,
    admin: Admin,
    body: Json<CreateApiTokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let audit = audit_record(
        caller(&request, &state),
        &admin.0,
        "api_token.issue",
        &body.name,
        json!({
            "scopes": body.scopes,
            "producer_ids": body.producer_ids,
            "expires_in_days": body.expires_in_days,
            "rate_per_sec": body.rate_per_sec,
        }),
    );
    let created = state.api_tokens.issue(body, admin.0.user_id, audit).await?;
    Ok(HttpResponse::Created().json(created))
}

#[utoipa::path(get, path = "/api/admin/api-tokens", tag = "admin",
    responses(
        (status = 200, description = "Every token, newest first, without its secret", body = ApiTokensResponse),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list(state: web::Data<AppState>, _admin: Admin) -> Result<HttpResponse, ApiError> {
    let tokens = state.api_tokens.list().await?;
    Ok(HttpResponse::Ok().json(ApiTokensResponse { tokens }))
}

#[utoipa::path(delete, path = "/api/admin/api-tokens/{id}", tag = "admin",
    params(("id" = i64, Path, description = "The token's id")),
    responses(
        (status = 204, description = "Revoked on every instance"),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn revoke(
    state: web::Data<AppState>,
    request: HttpRequest,
    admin: Admin,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let audit = audit_record(
        caller(&request, &state),
        &admin.0,
        "api_token.revoke",
        &format!("api_token:{id}"),
        json!({}),
    );
    state.api_tokens.revoke(id, audit).await?;
    Ok(HttpResponse::NoContent().finish())
}

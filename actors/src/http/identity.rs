//! `/api/auth/*`: register, login, refresh, verify, logout. The paths and bodies are Motience's.

use actix_web::{HttpRequest, HttpResponse, web};
use nodegrid_protocol::auth::{
    LoginRequest, RefreshRequest, RegisterRequest, TokenResponse, UserIdentity,
};
use nodegrid_protocol::error::ErrorBody;

use crate::http::auth::{Authenticated, MaybeAuthenticated, caller};
use crate::http::error::ApiError;
use crate::http::json::Json;
use crate::http::routing::resource;
use crate::state::AppState;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(resource("/api/auth/register").route(web::post().to(register)))
        .service(resource("/api/auth/login").route(web::post().to(login)))
        .service(resource("/api/auth/refresh").route(web::post().to(refresh)))
        .service(resource("/api/auth/verify").route(web::get().to(verify)))
        .service(resource("/api/auth/logout").route(web::post().to(logout)));
}

/// Creates a producer or consumer; creating an admin needs an admin's token.
#[utoipa::path(post, path = "/api/auth/register", tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Created", body = UserIdentity),
        (status = 400, description = "`validation_failed`", body = ErrorBody),
        (status = 403, description = "`forbidden`: only an admin may create an admin", body = ErrorBody),
        (status = 409, description = "`username_taken`", body = ErrorBody),
        (status = 429, description = "`rate_limited`, with `Retry-After`", body = ErrorBody),
    ),
    security((), ("bearer" = [])))]
pub async fn register(
    state: web::Data<AppState>,
    request: HttpRequest,
    creator: MaybeAuthenticated,
    body: Json<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let user = state
        .identity
        .register(
            caller(&request, &state),
            creator.0.as_ref(),
            body.into_inner(),
        )
        .await?;
    Ok(HttpResponse::Created().json(user))
}

/// Exchanges a username and password for an access token and a refresh token.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = TokenResponse),
        (status = 401, description = "`invalid_credentials`", body = ErrorBody),
        (status = 403, description = "`user_blocked`", body = ErrorBody),
        (status = 429, description = "`rate_limited`, with `Retry-After`", body = ErrorBody),
    ))]
pub async fn login(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let tokens = state
        .identity
        .login(caller(&request, &state), body.into_inner())
        .await?;
    Ok(HttpResponse::Ok().json(tokens))
}

/// Exchanges a refresh token, once, for a new pair. Presenting a token that was already
/// exchanged revokes its whole session.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new pair", body = TokenResponse),
        (status = 401, description = "`token_invalid` (unknown, revoked or reused) or `token_expired`", body = ErrorBody),
        (status = 403, description = "`user_blocked`", body = ErrorBody),
        (status = 429, description = "`rate_limited`, with `Retry-After`", body = ErrorBody),
    ))]
pub async fn refresh(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: Json<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let tokens = state
        .identity
        .refresh(caller(&request, &state), body.into_inner())
        .await?;
    Ok(HttpResponse::Ok().json(tokens))
}

/// Who the access token belongs to.
#[utoipa::path(get, path = "/api/auth/verify", tag = "auth",
    responses(
        (status = 200, description = "The token's user", body = UserIdentity),
        (status = 401, description = "`unauthenticated`, `token_invalid` or `token_expired`", body = ErrorBody),
        (status = 403, description = "`user_blocked`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn verify(user: Authenticated) -> HttpResponse {
    let user = user.0;
    HttpResponse::Ok().json(UserIdentity {
        user_id: user.user_id,
        username: user.username,
        role: user.role,
    })
}

/// Ends the token's session: its refresh tokens stop working.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth",
    responses(
        (status = 204, description = "Logged out"),
        (status = 401, description = "`unauthenticated`, `token_invalid` or `token_expired`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn logout(
    state: web::Data<AppState>,
    request: HttpRequest,
    user: Authenticated,
) -> Result<HttpResponse, ApiError> {
    state
        .identity
        .logout(caller(&request, &state), &user.0)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

//! `/api/child/*`: what children call. Every request but the public keys is authenticated by
//! the child's key and signature (`nodegrid_protocol::children::signing`) before its body is
//! read as JSON; answers are signed with the mother's Ed25519 key.

use actix_web::dev::Payload;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt as _;
use nodegrid_protocol::children::lease::{HeartbeatRequest, PublicKeysResponse, SignedLease};
use nodegrid_protocol::children::signing::{NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use nodegrid_protocol::children::users::{ChildLoginRequest, SignedAnswer, UserCheckRequest};
use nodegrid_protocol::error::ErrorBody;
use nodegrid_services::children::heartbeat::SignedRequest;
use serde::Deserialize;
use uuid::Uuid;

use crate::http::auth::caller;
use crate::http::error::ApiError;
use crate::http::json::{parse_json_object, read_json_body};
use crate::http::routing::{get_only, resource};
use crate::state::AppState;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(resource("/api/child/heartbeat").route(web::post().to(heartbeat)))
        .service(resource("/api/child/users/login").route(web::post().to(login_user)))
        .service(resource("/api/child/users/check").route(web::post().to(check_user)))
        .service(get_only("/api/child/blocked-users", blocked_users))
        .service(get_only("/api/child/public-keys", public_keys))
        .service(get_only("/api/child/control", control));
}

/// A WebSocket on which the mother pushes what admins do, the moment they do it.
#[utoipa::path(get, path = "/api/child/control", tag = "children",
    responses(
        (status = 101, description = "Switching to the WebSocket protocol; then one signed `ControlFrame` per text frame (`maintenance`, `version`, `block`, `unblock`, `lease`); closed 4001 when the key is rotated or revoked, 4008 when the child fell behind", body = SignedAnswer),
        (status = 401, description = "`token_invalid` or `signature_invalid`: not a request of a live child", body = ErrorBody),
    ),
    security(("child_key" = [])))]
pub async fn control(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    use crate::children::node::ControlOut;
    use crate::children::registry::AttachControl;
    use crate::http::push::{Push, push_socket};

    let child = ChildRequest::authenticate(&request, web::Bytes::new(), &state).await?;
    let child_id = child.child_id;
    let client_id = state
        .children
        .client_of_child(child_id)
        .ok_or_else(|| ApiError::from(nodegrid_services::children::ChildrenError::KeyInvalid))?;
    let socket = state
        .child_registry
        .send(AttachControl {
            child_id,
            client_id,
        })
        .await
        .map_err(|error| ApiError::Internal(anyhow::anyhow!("the child registry: {error}")))?;
    // The guard lives as long as the stream, which lives as long as the socket.
    let (guard, lagged) = (socket.guard, socket.lagged);
    let frames = tokio_stream::wrappers::ReceiverStream::new(socket.frames).map(|out| match out {
        ControlOut::Frame(text) => Push::Json(text),
        ControlOut::Close(code, reason) => Push::Close((code, reason)),
    });
    // A node lets a socket that fell behind go by dropping its queue: it ends with `lagged`.
    let ending = futures_util::stream::once(async move {
        let _guard = guard;
        lagged
            .load(std::sync::atomic::Ordering::Relaxed)
            .then_some(Push::Close((4008, "lagged")))
    })
    .filter_map(std::future::ready);
    push_socket(&request, payload, frames.chain(ending))
}

/// A request from a child: who it is, its nonce, and its body as signed.
struct ChildRequest {
    child_id: Uuid,
    nonce: String,
    body: web::Bytes,
}

impl ChildRequest {
    /// Authenticates a request whose body (JSON, or empty for a GET) is `body`.
    async fn authenticate(
        request: &HttpRequest,
        body: web::Bytes,
        state: &AppState,
    ) -> Result<ChildRequest, ApiError> {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
        };
        let path_and_query = request
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or_else(|| request.path());
        let signed = SignedRequest {
            authorization: header("authorization"),
            timestamp: header(TIMESTAMP_HEADER),
            nonce: header(NONCE_HEADER),
            signature: header(SIGNATURE_HEADER),
            method: request.method().as_str(),
            path_and_query,
            body: &body,
        };
        let child_id = state
            .children
            .authenticate(&signed, chrono::Utc::now())
            .await?;
        Ok(ChildRequest {
            child_id,
            nonce: header(NONCE_HEADER).unwrap_or_default().to_owned(),
            body,
        })
    }

    /// Reads a JSON body within the limit, then authenticates.
    async fn with_body(
        request: &HttpRequest,
        payload: web::Payload,
        state: &AppState,
    ) -> Result<ChildRequest, ApiError> {
        let mut payload: Payload = payload.into_inner();
        let body = read_json_body(request, &mut payload).await?;
        Self::authenticate(request, body, state).await
    }
}

fn signed_json(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body)
}

#[utoipa::path(post, path = "/api/child/heartbeat", tag = "children",
    request_body = HeartbeatRequest,
    responses(
        (status = 200, description = "The signed lease: `lease` is the exact text `signature` signs (Ed25519, key `lease.key_id`)", body = SignedLease),
        (status = 401, description = "`token_invalid`: unknown or revoked key; `signature_invalid`: a missing or wrong signature, a timestamp off the mother's clock, a nonce used before", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many requests from this child", body = ErrorBody),
    ),
    security(("child_key" = [])))]
pub async fn heartbeat(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let child = ChildRequest::with_body(&request, payload, &state).await?;
    let heartbeat: HeartbeatRequest = parse_json_object(&child.body)?;
    let body = state.children.heartbeat(child.child_id, heartbeat).await?;
    Ok(signed_json(body))
}

#[utoipa::path(post, path = "/api/child/users/login", tag = "children",
    request_body = ChildLoginRequest,
    responses(
        (status = 200, description = "Signed `LoginAnswer`: `allowed` with the user and a session token signed by the mother, or refused with `reason` (`invalid_credentials`, `user_blocked`, `not_a_client_user`, `maintenance`, the child's block reason)", body = SignedAnswer),
        (status = 401, description = "`token_invalid` or `signature_invalid`: not a request of a live child", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many sign-ins from this child or for this name", body = ErrorBody),
    ),
    security(("child_key" = [])))]
pub async fn login_user(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let child = ChildRequest::with_body(&request, payload, &state).await?;
    let login: ChildLoginRequest = parse_json_object(&child.body)?;
    let body = state
        .children
        .login_user(
            &state.identity,
            caller(&request, &state),
            child.child_id,
            &child.nonce,
            login,
        )
        .await?;
    Ok(signed_json(body))
}

#[utoipa::path(post, path = "/api/child/users/check", tag = "children",
    request_body = UserCheckRequest,
    responses(
        (status = 200, description = "Signed `UserCheckAnswer`: whether the user may use the child now", body = SignedAnswer),
        (status = 401, description = "`token_invalid` or `signature_invalid`: not a request of a live child", body = ErrorBody),
    ),
    security(("child_key" = [])))]
pub async fn check_user(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let child = ChildRequest::with_body(&request, payload, &state).await?;
    let check: UserCheckRequest = parse_json_object(&child.body)?;
    let body = state
        .children
        .check_user(child.child_id, &child.nonce, check.user_id)
        .await?;
    Ok(signed_json(body))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct BlockedUsersQuery {
    /// The version the child holds; the answer is `unchanged` when it is current.
    pub since_version: Option<i64>,
}

#[utoipa::path(get, path = "/api/child/blocked-users", tag = "children",
    params(BlockedUsersQuery),
    responses(
        (status = 200, description = "Signed `BlockedUsersAnswer`: the client's blocked users and their version", body = SignedAnswer),
        (status = 401, description = "`token_invalid` or `signature_invalid`: not a request of a live child", body = ErrorBody),
    ),
    security(("child_key" = [])))]
pub async fn blocked_users(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<BlockedUsersQuery>,
) -> Result<HttpResponse, ApiError> {
    let child = ChildRequest::authenticate(&request, web::Bytes::new(), &state).await?;
    let body = state
        .children
        .blocked_users(child.child_id, &child.nonce, query.since_version)
        .await?;
    Ok(signed_json(body))
}

#[utoipa::path(get, path = "/api/child/public-keys", tag = "children",
    responses(
        (status = 200, description = "The keys leases are signed with: the current one and the previous", body = PublicKeysResponse),
    ))]
pub async fn public_keys(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(PublicKeysResponse {
        keys: state.children.public_keys(),
    })
}

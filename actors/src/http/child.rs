//! `/api/child/*`: what children call. Every request but the public keys is authenticated by
//! the child's key and signature (`nodegrid_protocol::children::signing`) before its body is
//! read as JSON; answers are signed with the mother's Ed25519 key.

use actix_web::dev::Payload;
use actix_web::{HttpRequest, HttpResponse, web};
use nodegrid_protocol::children::lease::{HeartbeatRequest, PublicKeysResponse, SignedLease};
use nodegrid_protocol::children::signing::{NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use nodegrid_protocol::error::ErrorBody;
use nodegrid_services::children::heartbeat::SignedRequest;
use uuid::Uuid;

use crate::http::error::ApiError;
use crate::http::json::{parse_json_object, read_json_body};
use crate::http::routing::{get_only, resource};
use crate::state::AppState;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(resource("/api/child/heartbeat").route(web::post().to(heartbeat)))
        .service(get_only("/api/child/public-keys", public_keys));
}

/// A request from a child: who it is, and its body as signed.
struct ChildRequest {
    child_id: Uuid,
    body: web::Bytes,
}

impl ChildRequest {
    async fn read(
        request: &HttpRequest,
        payload: &mut Payload,
        state: &AppState,
    ) -> Result<ChildRequest, ApiError> {
        let body = read_json_body(request, payload).await?;
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
        Ok(ChildRequest { child_id, body })
    }
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
    let mut payload: Payload = payload.into_inner();
    let child = ChildRequest::read(&request, &mut payload, &state).await?;
    let heartbeat: HeartbeatRequest = parse_json_object(&child.body)?;
    let body = state.children.heartbeat(child.child_id, heartbeat).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
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

//! What browsers need from the server: CORS for the origins the operator allows, the usual
//! security headers on every answer, and an origin check on socket upgrades.
//!
//! - **CORS** (`--cors-allowed-origins`, none by default): a request from an allowed origin gets
//!   `Access-Control-Allow-Origin` (and a preflight is answered 204 with the methods and headers
//!   the API uses); any other origin gets no CORS header, so the browser keeps the answer from
//!   its page, and its preflight is refused with 403. Requests without `Origin` (programs) and
//!   same-origin requests are not affected. Credentials are bearer tokens, never cookies, so
//!   `Access-Control-Allow-Credentials` is never sent.
//! - **Headers**: `nosniff`, no framing, no referrer, and a Content-Security-Policy that allows
//!   nothing on API answers (the Swagger UI under `/api-docs` gets the scripts and styles it
//!   needs from its own origin; a page that states its own policy keeps it).
//! - **Sockets**: browsers do not apply CORS to WebSockets, so an upgrade whose `Origin` is
//!   neither the server's own nor allowed is refused with 403.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use nodegrid_protocol::error::ErrorCode;

use crate::http::error::ApiError;
use crate::state::AppState;

const ALLOWED_METHODS: &str = "GET, POST, PUT, DELETE";
const ALLOWED_HEADERS: &str = "Authorization, Content-Type, Accept";
const PREFLIGHT_MAX_AGE_SECS: &str = "3600";
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";
const DOCS_CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; \
                        style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                        frame-ancestors 'none'";

/// Whether a page of `origin` may use the API: it is allowed by the operator, or it is the
/// server's own origin (by the request's `Host`).
pub fn origin_allowed(request: &HttpRequest, origin: &str, allowed: &[String]) -> bool {
    if allowed.iter().any(|entry| entry == "*" || entry == origin) {
        return true;
    }
    let host = request.connection_info().host().to_owned();
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(&host))
}

/// Refuses a socket upgrade from a page of an origin that may not use the API.
pub fn check_socket_origin(request: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let Some(origin) = request.headers().get(header::ORIGIN) else {
        return Ok(());
    };
    let allowed = origin
        .to_str()
        .is_ok_and(|origin| origin_allowed(request, origin, &state.cors_allowed_origins));
    if allowed {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            "pages of this origin may not open sockets here (see --cors-allowed-origins)",
        ))
    }
}

/// Middleware (for `actix_web::middleware::from_fn`): CORS and the security headers.
pub async fn browser_headers(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|origin| origin.to_str().ok())
        .map(str::to_owned);
    let allowed_origin = match (
        &origin,
        request.app_data::<actix_web::web::Data<AppState>>(),
    ) {
        (Some(origin), Some(state)) => {
            origin_allowed(request.request(), origin, &state.cors_allowed_origins)
                .then(|| origin.clone())
        }
        _ => None,
    };
    let preflight = request.method() == actix_web::http::Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let docs = request.path().starts_with("/api-docs");
    if preflight && origin.is_some() {
        let mut response = match &allowed_origin {
            Some(_) => HttpResponse::NoContent().finish(),
            None => ApiError::new(
                ErrorCode::Forbidden,
                "pages of this origin may not use this API (see --cors-allowed-origins)",
            )
            .error_response(),
        };
        decorate(
            response.headers_mut(),
            allowed_origin.as_deref(),
            true,
            docs,
        );
        return Ok(request.into_response(response).map_into_right_body());
    }
    let mut response = next.call(request).await?;
    decorate(
        response.headers_mut(),
        allowed_origin.as_deref(),
        false,
        docs,
    );
    Ok(response.map_into_left_body())
}

fn decorate(
    headers: &mut actix_web::http::header::HeaderMap,
    allowed_origin: Option<&str>,
    preflight: bool,
    docs: bool,
) {
    // A page of the server's own (the GraphQL query page) states its own policy.
    let own_policy = headers.contains_key(header::CONTENT_SECURITY_POLICY);
    // Appended: a handler may vary on more (`/pnodes` on `Accept-Encoding`).
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    // Every answer carries these: made from constants, with no copy and no check.
    let constant = HeaderValue::from_static;
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, constant("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, constant("DENY"));
    headers.insert(header::REFERRER_POLICY, constant("no-referrer"));
    if !own_policy {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            constant(if docs { DOCS_CSP } else { API_CSP }),
        );
    }
    if let Some(origin) = allowed_origin {
        // The origin is the request's own header value, so it is a valid value.
        if let Ok(origin) = HeaderValue::from_str(origin) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        }
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            constant("Retry-After"),
        );
        if preflight {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                constant(ALLOWED_METHODS),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                constant(ALLOWED_HEADERS),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                constant(PREFLIGHT_MAX_AGE_SECS),
            );
        }
    }
}

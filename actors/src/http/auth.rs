//! Who is asking: the client's address and the access-token extractors.

use std::future::{Ready, ready};
use std::net::IpAddr;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use ipnet::IpNet;
use nodegrid_protocol::auth::Role;
use nodegrid_protocol::error::ErrorCode;
use nodegrid_services::identity::api_tokens::{ApiGrant, ApiTokens};
use nodegrid_services::identity::{AuthUser, Caller, IdentityError};

use crate::http::error::ApiError;
use crate::state::AppState;

/// The client's address. `X-Forwarded-For` is believed only when the peer is a trusted proxy;
/// then the client is the rightmost address in the header that is not itself a trusted proxy.
pub fn client_ip(request: &HttpRequest, trusted_proxies: &[IpNet]) -> IpAddr {
    let peer = request
        .peer_addr()
        .map(|addr| addr.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let is_trusted = |ip: &IpAddr| trusted_proxies.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = request
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|part| part.trim().parse().ok())
        .collect();
    forwarded
        .iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .or(forwarded.first())
        .copied()
        .unwrap_or(peer)
}

/// The [`Caller`] of a request.
pub fn caller(request: &HttpRequest, state: &AppState) -> Caller {
    Caller {
        ip: client_ip(request, &state.trusted_proxies),
    }
}

/// The access token: `Authorization: Bearer …`, or `?token=…` (how Motience devices open
/// sockets).
pub fn access_token(request: &HttpRequest) -> Option<String> {
    if let Some(header) = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
    {
        let value = header.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    #[derive(serde::Deserialize)]
    struct TokenQuery {
        token: Option<String>,
    }
    web::Query::<TokenQuery>::from_query(request.query_string())
        .ok()
        .and_then(|query| query.into_inner().token)
}

fn state(request: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    request
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("application state is missing")))
}

fn authenticate(request: &HttpRequest) -> Result<AuthUser, ApiError> {
    let state = state(request)?;
    let token = access_token(request).ok_or(IdentityError::Unauthenticated)?;
    let user = state.identity.authenticate(&token).inspect_err(|error| {
        let reason = match error {
            IdentityError::TokenExpired => "expired",
            IdentityError::UserBlocked => "blocked",
            _ => "invalid",
        };
        metrics::counter!(nodegrid_services::identity::AUTH_TOKEN_REJECTIONS_TOTAL, "reason" => reason).increment(1);
    })?;
    Ok(user)
}

/// A request with a valid access token.
#[derive(Debug, Clone)]
pub struct Authenticated(pub AuthUser);

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(request).map(Authenticated))
    }
}

/// A request that may carry an access token; one that carries a bad token is refused.
#[derive(Debug, Clone)]
pub struct MaybeAuthenticated(pub Option<AuthUser>);

impl FromRequest for MaybeAuthenticated {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        if access_token(request).is_none() {
            return ready(Ok(MaybeAuthenticated(None)));
        }
        ready(authenticate(request).map(|user| MaybeAuthenticated(Some(user))))
    }
}

/// Audit writes of refused admin requests waiting at once, per process.
const DENIAL_AUDITS_WAITING: usize = 64;
static DENIAL_AUDITS: std::sync::LazyLock<std::sync::Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| {
        std::sync::Arc::new(tokio::sync::Semaphore::new(DENIAL_AUDITS_WAITING))
    });

/// A request from an admin. Anyone else with a valid token gets `forbidden` before the
/// request's body is read, and the attempt is audited.
#[derive(Debug, Clone)]
pub struct Admin(pub AuthUser);

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let request = request.clone();
        Box::pin(async move {
            let user = authenticate(&request)?;
            let state = state(&request)?;
            let route = request
                .match_pattern()
                .unwrap_or_else(|| request.path().to_owned());
            if user.role == Role::Admin {
                // Changes are audited by the service with what they changed; reads are audited
                // here, so that every admin action leaves a trace.
                if request.method() == actix_web::http::Method::GET {
                    state
                        .identity
                        .record_admin_read(
                            caller(&request, &state),
                            &user,
                            &route,
                            &crate::http::redact::redact_query(request.query_string()),
                        )
                        .await;
                }
                return Ok(Admin(user));
            }
            // Refused at once, before the body is read (a non-admin learns nothing of what the
            // route would have accepted); the attempt is audited beside the answer.
            // At most so many such writes wait at once: a user hammering admin routes cannot
            // pile up tasks on the pool; past it the refusal is counted, not audited.
            match DENIAL_AUDITS.clone().try_acquire_owned() {
                Ok(permit) => {
                    let identity = state.identity.clone();
                    let caller = caller(&request, &state);
                    actix_web::rt::spawn(async move {
                        identity.record_denied(caller, &user, &route).await;
                        drop(permit);
                    });
                }
                Err(_) => {
                    metrics::counter!(nodegrid_services::identity::AUDIT_WRITE_ERRORS_TOTAL)
                        .increment(1);
                    tracing::warn!(user = %user.username, %route, "too many refusals waiting to be audited; this one is not");
                }
            }
            Err(IdentityError::Forbidden("this route is for admins").into())
        })
    }
}

/// Refuses a user of another role.
pub fn require_role(user: &AuthUser, role: Role) -> Result<(), ApiError> {
    if user.role == role {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this route is for {role}s"),
        ))
    }
}

/// Refuses anyone but that user and admins.
pub fn require_self_or_admin(user: &AuthUser, user_id: i64) -> Result<(), ApiError> {
    if user.user_id == user_id || user.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            "only that user or an admin may see this",
        ))
    }
}

/// Who calls a route that programs may call with an API token: a user with an access token,
/// or an API token's grant. A bad token of either kind is refused.
#[derive(Debug, Clone)]
pub enum Principal {
    User(AuthUser),
    ApiToken(ApiGrant),
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let presented = bearer_token(request);
        if let Some(token) = presented.filter(|token| ApiTokens::is_api_token(token)) {
            let verified = state(request).and_then(|state| {
                state
                    .api_tokens
                    .verify(&token, chrono::Utc::now().timestamp())
                    .map_err(|_| {
                        metrics::counter!(nodegrid_services::identity::AUTH_TOKEN_REJECTIONS_TOTAL, "reason" => "api_token").increment(1);
                        ApiError::new(ErrorCode::TokenInvalid, "the API token is not valid")
                    })
            });
            return ready(verified.map(Principal::ApiToken));
        }
        ready(authenticate(request).map(Principal::User))
    }
}

/// The `Authorization: Bearer` token only (API tokens never travel in URLs).
pub fn bearer_token(request: &HttpRequest) -> Option<String> {
    let value = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn request(peer: &str, forwarded: Option<&str>) -> HttpRequest {
        let mut builder = TestRequest::default().peer_addr(peer.parse().unwrap());
        if let Some(forwarded) = forwarded {
            builder = builder.insert_header(("X-Forwarded-For", forwarded));
        }
        builder.to_http_request()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // Untrusted peer: its header is ignored.
        let ip = client_ip(&request("203.0.113.9:5000", Some("1.2.3.4")), &trusted);
        assert_eq!(ip.to_string(), "203.0.113.9");
        // Trusted peer: the rightmost untrusted address is the client.
        let ip = client_ip(
            &request("10.0.0.2:5000", Some("6.6.6.6, 198.51.100.7, 10.0.0.3")),
            &trusted,
        );
        assert_eq!(ip.to_string(), "198.51.100.7");
        // Trusted peer without a header: the peer.
        let ip = client_ip(&request("10.0.0.2:5000", None), &trusted);
        assert_eq!(ip.to_string(), "10.0.0.2");
    }

    #[test]
    fn tokens_come_from_the_header_or_the_query() {
        let request = TestRequest::default()
            .insert_header(("Authorization", "Bearer abc.def"))
            .to_http_request();
        assert_eq!(access_token(&request).as_deref(), Some("abc.def"));
        let request = TestRequest::with_uri("/producer?token=xyz").to_http_request();
        assert_eq!(access_token(&request).as_deref(), Some("xyz"));
        let request = TestRequest::default()
            .insert_header(("Authorization", "Basic Zm9v"))
            .to_http_request();
        assert_eq!(access_token(&request), None);
    }
}

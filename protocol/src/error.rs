//! The one JSON error body of the HTTP API.

use serde::{Deserialize, Serialize};

/// Every HTTP error answers with this body. Clients match on `code`, which never changes once
/// published; `message` is for people and may be reworded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// The stable error codes and the HTTP status each one answers with.
///
/// Codes are `snake_case` and are part of the public contract: add new ones, never rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request is malformed: unreadable JSON, a wrong content type, a bad query string.
    BadRequest,
    /// The request is well formed but a field breaks a rule.
    ValidationFailed,
    /// No route answers this path, or the thing it names does not exist.
    NotFound,
    /// The producer named in the request does not exist.
    ProducerNotFound,
    /// The route exists but not for this method.
    MethodNotAllowed,
    /// The body is larger than the configured limit.
    PayloadTooLarge,
    /// The body did not arrive within the configured time; the connection is closed.
    RequestTimeout,
    /// The body is compressed (`Content-Encoding`), which the server does not accept.
    UnsupportedMediaType,
    /// The client has too many connections or sockets open.
    TooManyConnections,
    /// No credentials: the route needs an access token.
    Unauthenticated,
    /// Wrong username or password.
    InvalidCredentials,
    /// The access or refresh token has expired.
    TokenExpired,
    /// The token is malformed, tampered with, signed otherwise, revoked, or already used.
    TokenInvalid,
    /// Authenticated, but the role does not allow this.
    Forbidden,
    /// The user is blocked by an admin.
    UserBlocked,
    /// The username exists already (compared without case).
    UsernameTaken,
    /// The change clashes with what exists (a node name taken within its type, an id taken).
    Conflict,
    /// The client's plan allows no more of this (children, users).
    PlanLimitReached,
    /// A child's request signature is missing, wrong, outside the allowed clock skew, or its
    /// nonce was used before.
    SignatureInvalid,
    /// Too many requests; retry after the `Retry-After` header's seconds.
    RateLimited,
    /// A dependency (Postgres, Redis) does not answer; retry later.
    NotReady,
    /// Something failed inside the server; the details are in its log, not in the response.
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 22] = [
        ErrorCode::BadRequest,
        ErrorCode::Unauthenticated,
        ErrorCode::InvalidCredentials,
        ErrorCode::TokenExpired,
        ErrorCode::TokenInvalid,
        ErrorCode::Forbidden,
        ErrorCode::UserBlocked,
        ErrorCode::UsernameTaken,
        ErrorCode::Conflict,
        ErrorCode::PlanLimitReached,
        ErrorCode::SignatureInvalid,
        ErrorCode::RateLimited,
        ErrorCode::ValidationFailed,
        ErrorCode::NotFound,
        ErrorCode::ProducerNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RequestTimeout,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::TooManyConnections,
        ErrorCode::NotReady,
        ErrorCode::Internal,
    ];

    /// The wire spelling of the code.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::NotFound => "not_found",
            ErrorCode::ProducerNotFound => "producer_not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::TokenInvalid => "token_invalid",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::UserBlocked => "user_blocked",
            ErrorCode::UsernameTaken => "username_taken",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PlanLimitReached => "plan_limit_reached",
            ErrorCode::SignatureInvalid => "signature_invalid",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::NotReady => "not_ready",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status that goes with the code.
    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::ValidationFailed => 400,
            ErrorCode::Unauthenticated
            | ErrorCode::InvalidCredentials
            | ErrorCode::TokenExpired
            | ErrorCode::TokenInvalid
            | ErrorCode::SignatureInvalid => 401,
            ErrorCode::Forbidden | ErrorCode::UserBlocked => 403,
            ErrorCode::UsernameTaken | ErrorCode::Conflict | ErrorCode::PlanLimitReached => 409,
            ErrorCode::RateLimited => 429,
            ErrorCode::NotFound | ErrorCode::ProducerNotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::TooManyConnections => 429,
            ErrorCode::NotReady => 503,
            ErrorCode::Internal => 500,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "duplicate code {text}");
            assert!(text.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            assert!((400..600).contains(&code.http_status()));
        }
    }
}

//! The one error type of the HTTP boundary.
//!
//! Every error answers with [`ErrorBody`] `{"code","message"}` and the status that goes with the
//! code. Internal failures are logged with their whole chain and answered with a generic
//! message, so that nothing about the server's insides reaches a client.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use nodegrid_protocol::error::{ErrorBody, ErrorCode};
use nodegrid_services::identity::{IdentityError, retry_after_secs};

use crate::metrics::{DEPENDENCY_UNAVAILABLE_TOTAL, HTTP_ERRORS_TOTAL};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The client's mistake, or a state the client must know about.
    #[error("{message}")]
    Client { code: ErrorCode, message: String },
    /// Too many requests: answered with `Retry-After`.
    #[error("{message}")]
    RateLimited {
        retry_after_secs: u64,
        message: String,
    },
    /// The server's failure; the cause is logged, not shown.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::Client {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::BadRequest, message)
    }

    pub fn validation(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::ValidationFailed, message)
    }

    pub fn payload_too_large() -> ApiError {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            "the body is larger than this server accepts",
        )
    }

    pub fn request_timeout() -> ApiError {
        ApiError::new(ErrorCode::RequestTimeout, "the body did not arrive in time")
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::NotFound, message)
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            ErrorCode::MethodNotAllowed,
            "this route does not accept that method",
        )
    }

    /// A failure inside the server: 500, logged with its chain, unless it is a dependency
    /// being away (Postgres or Redis down, restarting, out of connections), which is 503
    /// `not_ready`: the request was fine and may be retried.
    pub fn internal(error: impl Into<anyhow::Error>) -> ApiError {
        let error = error.into();
        let away = error.chain().find_map(|cause| {
            if cause
                .downcast_ref::<nodegrid_services::db::DbError>()
                .is_some_and(nodegrid_services::db::DbError::is_unavailable)
            {
                Some(("the database", "postgres"))
            } else if cause
                .downcast_ref::<nodegrid_services::bus::BusError>()
                .is_some_and(nodegrid_services::bus::BusError::is_unavailable)
            {
                Some(("the message bus", "redis"))
            } else {
                None
            }
        });
        match away {
            Some((what, dependency)) => {
                metrics::counter!(DEPENDENCY_UNAVAILABLE_TOTAL, "dependency" => dependency)
                    .increment(1);
                tracing::warn!(
                    error = format!("{error:#}"),
                    "answered 503: {what} is not answering"
                );
                ApiError::new(
                    ErrorCode::NotReady,
                    format!("{what} is not answering; retry shortly"),
                )
            }
            None => ApiError::Internal(error),
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Client { code, .. } => *code,
            ApiError::RateLimited { .. } => ErrorCode::RateLimited,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code().http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let code = self.code();
        metrics::counter!(HTTP_ERRORS_TOTAL, "code" => code.as_str()).increment(1);
        let mut response = HttpResponse::build(self.status_code());
        // A body that never finished, or a client over its connection limit: the connection
        // is not reused.
        if matches!(
            code,
            ErrorCode::RequestTimeout | ErrorCode::TooManyConnections
        ) {
            response.force_close();
        }
        let message = match self {
            ApiError::Client { message, .. } => message.clone(),
            ApiError::RateLimited {
                retry_after_secs,
                message,
            } => {
                response.insert_header(("Retry-After", retry_after_secs.to_string()));
                message.clone()
            }
            ApiError::Internal(error) => {
                tracing::error!(error = chain_text(error), "request failed");
                "the server failed to handle this request; it has been logged".to_owned()
            }
        };
        response.json(ErrorBody {
            code: code.as_str().to_owned(),
            message,
        })
    }
}

/// An error and its causes, `: `-separated, each said once (a wrapper that shows its cause's
/// text is not repeated).
fn chain_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    let mut last = String::new();
    for cause in error.chain() {
        let said = cause.to_string();
        if said != last {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&said);
        }
        last = said;
    }
    text
}

impl From<IdentityError> for ApiError {
    fn from(error: IdentityError) -> ApiError {
        let code = match &error {
            IdentityError::Validation(_) => ErrorCode::ValidationFailed,
            IdentityError::InvalidCredentials => ErrorCode::InvalidCredentials,
            IdentityError::TokenExpired => ErrorCode::TokenExpired,
            IdentityError::TokenInvalid(_) => ErrorCode::TokenInvalid,
            IdentityError::Unauthenticated => ErrorCode::Unauthenticated,
            IdentityError::Forbidden(_) => ErrorCode::Forbidden,
            IdentityError::UserBlocked => ErrorCode::UserBlocked,
            IdentityError::UsernameTaken => ErrorCode::UsernameTaken,
            IdentityError::NotFound(_) => ErrorCode::NotFound,
            IdentityError::RateLimited { retry_after } => {
                return ApiError::RateLimited {
                    retry_after_secs: retry_after_secs(*retry_after),
                    message: error.to_string(),
                };
            }
            IdentityError::Database(_) | IdentityError::Bus(_) | IdentityError::Internal(_) => {
                return ApiError::internal(error);
            }
        };
        ApiError::new(code, error.to_string())
    }
}

/// Turns query-string errors into `bad_request`.
pub fn query_error(
    error: actix_web::error::QueryPayloadError,
    _: &HttpRequest,
) -> actix_web::Error {
    ApiError::bad_request(format!("the query string is not valid: {error}")).into()
}

/// Turns path-segment errors into `bad_request`.
pub fn path_error(error: actix_web::error::PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request(format!("the path is not valid: {error}")).into()
}

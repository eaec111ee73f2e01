//! The HTTP surface: routes, the one error type, and request observation.

pub mod admin;
pub mod auth;
pub mod error;
pub mod identity;
pub mod json;
pub mod observe;
pub mod openapi;
pub mod probes;

use actix_web::{HttpResponse, web};

use self::error::ApiError;

/// Registers every route of the server.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(get_only("/health", probes::health))
        .service(get_only("/ready", probes::ready))
        .service(get_only("/metrics", probes::metrics))
        .configure(identity::routes)
        .configure(admin::routes)
        .configure(crate::stream::routes::routes)
        .configure(crate::pnodes::routes::routes)
        .configure(openapi::routes);
}

/// A resource whose unrouted methods answer with a JSON `method_not_allowed`.
pub fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// A resource that answers GET (and HEAD) with `handler`.
pub fn get_only<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    resource(path).route(web::get().to(handler))
}

/// Answers paths that no route matches.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found("no route matches this path"))
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::method_not_allowed())
}

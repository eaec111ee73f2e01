//! The web console at `/console`: one page, its script and its style, embedded in the binary
//! (no CDN, no build step), and the admin live feed it listens to (`live`). Everything the
//! console shows comes from the public API with the signed-in user's token; the page itself is
//! static and carries no data.

pub mod live;

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use crate::http::error::ApiError;
use crate::http::routing::{get_only, resource};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(get_only("/console", page))
        .service(get_only("/console/", page))
        .service(get_only("/console/assets/{file}", asset))
        .service(resource("/api/admin/live").route(web::get().to(live::live)));
}

/// The page's own script, style and requests (and sockets) to this origin; nothing inline.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

const INDEX: &str = include_str!("assets/index.html");

/// The embedded files, by name.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("assets/app.css"),
    ),
    ("icon.svg", "image/svg+xml", include_str!("assets/icon.svg")),
];

async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, PAGE_POLICY))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(INDEX)
}

async fn asset(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (_, content_type, body) = ASSETS
        .iter()
        .find(|(name, _, _)| *name == file.as_str())
        .ok_or_else(|| ApiError::not_found("no such console file"))?;
    Ok(HttpResponse::Ok()
        .content_type(*content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, PAGE_POLICY))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(*body))
}

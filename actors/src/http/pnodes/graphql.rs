//! `/api/xandeum/graphql`: `POST` runs a query against the pNode schema
//! (`crate::pnodes::graphql`); `GET` serves a small query page (its script is embedded, nothing
//! is fetched from elsewhere).

use actix_web::{HttpResponse, web};
use nodegrid_protocol::error::ErrorBody;

use crate::http::error::ApiError;
use crate::http::json::Json;
use crate::state::AppState;

/// A GraphQL request (documentation of the body `POST /api/xandeum/graphql` reads).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct GraphqlRequest {
    /// The query, e.g. `{ network { health { healthScore } } }`.
    query: String,
    #[schema(value_type = Option<Object>)]
    variables: Option<serde_json::Value>,
    #[schema(rename = "operationName")]
    operation_name: Option<String>,
}

/// A GraphQL answer (documentation).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct GraphqlAnswer {
    /// What the query selected; null when it could not run.
    #[schema(value_type = Option<Object>)]
    data: Option<serde_json::Value>,
    errors: Option<Vec<GraphqlError>>,
}

/// One error of a GraphQL answer (documentation).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct GraphqlError {
    message: String,
    /// `{code}`: the REST error code (`validation_failed`, `not_ready`, `internal_error`).
    #[schema(value_type = Option<Object>)]
    extensions: Option<serde_json::Value>,
}

#[utoipa::path(post, path = "/api/xandeum/graphql", tag = "pnodes",
    request_body = GraphqlRequest,
    responses(
        (status = 200, description = "`{data, errors?}`: GraphQL answers errors in the body, each with `extensions.code`", body = GraphqlAnswer),
        (status = 400, description = "`bad_request`: not a GraphQL request body", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    )
)]
pub async fn execute(
    state: web::Data<AppState>,
    body: Json<async_graphql::Request>,
) -> Result<HttpResponse, ApiError> {
    let response = state.pnode_graphql.execute(body.into_inner()).await;
    if response.is_err() {
        ::metrics::counter!(crate::pnodes::metrics::GRAPHQL_ERRORS).increment(1);
    }
    Ok(HttpResponse::Ok().json(response))
}

/// `GET /api/xandeum/graphql`: the query page.
pub async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", PAGE_POLICY))
        .body(PAGE)
}

/// Nothing but the page's own script, style and requests to this origin.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

const PAGE: &str = include_str!("graphql_page.html");

//! `/pnodes`, `/recommendations` and `/pnodes/compare`.

use actix_web::http::header::{self, AcceptEncoding, ContentType, Encoding};
use actix_web::{HttpRequest, HttpResponse, web};
use nodegrid_protocol::error::ErrorBody;
use nodegrid_protocol::pnode_api::node::NodeView;
use nodegrid_protocol::pnode_api::nodes::{
    CompareResponse, PnodesResponse, RecommendationsResponse,
};
use nodegrid_protocol::pnode_api::queries::{CompareQuery, PnodesQuery, RecommendationsQuery};
use nodegrid_services::pnodes::api;
use nodegrid_services::pnodes::api::page_cache::Source;

use super::shared::{current, now};
use crate::http::error::ApiError;
use crate::pnodes::metrics::PAGES_MADE;
use crate::state::AppState;

/// The filtered, sorted page of nodes. The sort orders are precomputed per cycle; a request
/// walks one of them once, filtering, and copies the page's pre-serialised nodes — once per
/// query and second: the same query in the same second gets the same bytes (`PageCache`), and
/// a query asked often is made ahead for the next second (`crate::pnodes::pages`).
#[utoipa::path(get, path = "/api/xandeum/pnodes", tag = "pnodes",
    params(PnodesQuery),
    responses(
        (status = 200, description = "A filtered, sorted page of pNodes", body = PnodesResponse<NodeView>),
        (status = 400, description = "`validation_failed` or `bad_request`", body = ErrorBody),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn pnodes(
    state: web::Data<AppState>,
    http: HttpRequest,
    query: web::Query<PnodesQuery>,
) -> Result<HttpResponse, ApiError> {
    let request = query.into_inner().check()?;
    let view = current(&state)?;
    let second = now();
    let (page, source) =
        view.pages
            .get_or_build(http.query_string(), second, request, |request| {
                api::nodes::pnodes_json(&view, request, second).map_err(ApiError::internal)
            })?;
    if source == Source::Built {
        ::metrics::counter!(PAGES_MADE, "by" => "request").increment(1);
    }
    let mut response = HttpResponse::Ok();
    response
        .content_type(ContentType::json())
        .insert_header((header::VARY, "accept-encoding"));
    match accepts_gzip(&http).then(|| page.gzip()).flatten() {
        Some(gzip) => Ok(response
            .insert_header((header::CONTENT_ENCODING, "gzip"))
            .body(gzip)),
        None => Ok(response.body(page.json())),
    }
}

/// Whether the client prefers gzip to the answer as it is (`Accept-Encoding`, q-values
/// honoured); an unreadable header counts as none.
fn accepts_gzip(http: &HttpRequest) -> bool {
    let offered = [Encoding::gzip(), Encoding::identity()];
    <AcceptEncoding as header::Header>::parse(http)
        .ok()
        .and_then(|accepted| accepted.negotiate(offered.iter()))
        == Some(Encoding::gzip())
}

#[utoipa::path(get, path = "/api/xandeum/recommendations", tag = "pnodes",
    params(RecommendationsQuery),
    responses(
        (status = 200, description = "The best online pNodes to stake with", body = RecommendationsResponse),
        (status = 400, description = "`validation_failed` or `bad_request`", body = ErrorBody),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn recommendations(
    state: web::Data<AppState>,
    query: web::Query<RecommendationsQuery>,
) -> Result<HttpResponse, ApiError> {
    let filters = query.check()?;
    let view = current(&state)?;
    Ok(HttpResponse::Ok().json(api::nodes::recommendations(&view, filters, now())))
}

#[utoipa::path(get, path = "/api/xandeum/pnodes/compare", tag = "pnodes",
    params(CompareQuery),
    responses(
        (status = 200, description = "Two to five pNodes side by side", body = CompareResponse),
        (status = 400, description = "`validation_failed` or `bad_request`", body = ErrorBody),
        (status = 404, description = "`not_found`: unknown pNode", body = ErrorBody),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn compare(
    state: web::Data<AppState>,
    query: web::Query<CompareQuery>,
) -> Result<HttpResponse, ApiError> {
    let addresses = query.check()?;
    let view = current(&state)?;
    Ok(HttpResponse::Ok().json(api::compare::compare(&view, &addresses, now())?))
}

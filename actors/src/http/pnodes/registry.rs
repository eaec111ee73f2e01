//! `/registry`, `/registry/{address}`, `/graveyard`, and the admin's `/prune`.

use actix_web::{HttpRequest, HttpResponse, web};
use nodegrid_protocol::control::{ControlEnvelope, ControlEvent};
use nodegrid_protocol::error::ErrorBody;
use nodegrid_protocol::pnode_api::node::NodeView;
use nodegrid_protocol::pnode_api::nodes::{
    GraveyardPage, PruneResponse, PruneStatus, RegistryEntryResponse, RegistryPage,
};
use nodegrid_protocol::pnode_api::queries::{PageQuery, PruneQuery};
use nodegrid_services::pnodes::api;
use serde_json::json;

use super::shared::{current, now};
use crate::http::auth::{Admin, caller};
use crate::http::error::ApiError;
use crate::state::AppState;

#[utoipa::path(get, path = "/api/xandeum/registry", tag = "pnodes",
    params(PageQuery),
    responses(
        (status = 200, description = "Every known pNode, online and offline", body = RegistryPage<NodeView>),
        (status = 400, description = "`validation_failed` or `bad_request`", body = ErrorBody),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn registry(
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = query.registry()?;
    let view = current(&state)?;
    Ok(HttpResponse::Ok().json(api::registry::registry_page(&view, page)))
}

#[utoipa::path(get, path = "/api/xandeum/registry/{address}", tag = "pnodes",
    params(("address" = String, Path, description = "The pNode address, host:port")),
    responses(
        (status = 200, description = "One registry entry", body = RegistryEntryResponse),
        (status = 404, description = "`not_found`: unknown pNode", body = ErrorBody),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn registry_entry(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = current(&state)?;
    let mut answer = api::registry::registry_entry(&view, &path)?;
    // The stored status is Postgres's: without it the entry is still answered, from memory.
    answer.pnode_status = match state.pnodes.store.status_of(&answer.entry.address).await {
        Ok(status) => status,
        Err(error) => {
            tracing::warn!(%error, "the stored pNode status cannot be read; answered without it");
            None
        }
    };
    Ok(HttpResponse::Ok().json(answer))
}

#[utoipa::path(get, path = "/api/xandeum/graveyard", tag = "pnodes",
    params(PageQuery),
    responses(
        (status = 200, description = "pNodes offline for at least `days`", body = GraveyardPage<NodeView>),
        (status = 400, description = "`validation_failed` or `bad_request`", body = ErrorBody),
        (status = 503, description = "`not_ready`: no snapshot yet", body = ErrorBody),
    )
)]
pub async fn graveyard(
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let (days, page) = query.graveyard()?;
    let view = current(&state)?;
    Ok(HttpResponse::Ok().json(api::registry::graveyard(&view, days, page)))
}

/// Deletes registry entries not seen for `days` (admin only; audited; every instance drops
/// them at once).
#[utoipa::path(delete, path = "/api/xandeum/prune", tag = "pnodes",
    params(PruneQuery),
    responses(
        (status = 200, description = "Deletes registry entries unseen for `days` (admins; audited)", body = PruneResponse),
        (status = 400, description = "`validation_failed` or `bad_request`", body = ErrorBody),
        (status = 401, description = "no or bad token", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an admin", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn prune(
    state: web::Data<AppState>,
    request: HttpRequest,
    admin: Admin,
    query: web::Query<PruneQuery>,
) -> Result<HttpResponse, ApiError> {
    let days = query.check()?;
    let before = now() - days * 86_400;
    let deleted = state
        .pnodes
        .store
        .prune_registry(before)
        .await
        .map_err(ApiError::internal)?;
    metrics::counter!(crate::pnodes::metrics::PRUNED, "table" => "registry").increment(deleted);
    state
        .identity
        .record_admin_action(
            caller(&request, &state),
            &admin.0,
            "pnode.prune",
            "pnode_registry",
            json!({"threshold_days": days, "deleted_count": deleted}),
        )
        .await?;
    let envelope = ControlEnvelope {
        origin: state.instance_id,
        event: ControlEvent::PnodeRegistryPruned { before },
    };
    if let Err(error) = state.bus.publish_control(&envelope).await {
        tracing::warn!(%error, "cannot announce the prune; instances drop the entries at their next snapshot");
    }
    Ok(HttpResponse::Ok().json(PruneResponse {
        status: PruneStatus::Success,
        threshold_days: days,
        deleted_count: deleted,
    }))
}

//! The OpenAPI description (`/api-docs/openapi.json`) and Swagger UI (`/api-docs/`).

use actix_web::{HttpResponse, web};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::http::{admin, identity, pnodes, streams as stream};

#[derive(OpenApi)]
#[openapi(
    info(title = "nodegrid", description = "IoT streams, pNode analytics and licensed child nodes."),
    paths(
        identity::register,
        identity::login,
        identity::refresh,
        identity::verify,
        identity::logout,
        admin::list_users,
        admin::block_user,
        admin::unblock_user,
        admin::audit_log,
        admin::export_audit_log,
        stream::subscribe,
        stream::unsubscribe,
        stream::unsubscribe_by_body,
        stream::subscriptions_of,
        stream::subscribers_of,
        stream::connections,
        stream::set_visibility,
        stream::allowed_consumers,
        stream::allow_consumer,
        stream::disallow_consumer,
        pnodes::overview,
        pnodes::health,
        pnodes::pnodes,
        pnodes::compare,
        pnodes::node_alerts,
        pnodes::recommendations,
        pnodes::registry,
        pnodes::registry_entry,
        pnodes::graveyard,
        pnodes::prune,
        pnodes::topology,
        pnodes::network_health,
        pnodes::network_history,
        pnodes::network_growth,
        pnodes::network_analytics,
        pnodes::network_consistency,
        pnodes::operators,
        pnodes::all_nodes,
        pnodes::alerts,
        pnodes::critical_alerts,
        pnodes::node_history,
        pnodes::node_metrics_summary,
        pnodes::node_consistency,
        pnodes::history_status,
        pnodes::pollers,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Accounts and tokens (Motience-compatible)"),
        (name = "admin", description = "Users, blocks, the audit log, live connections; admins only"),
        (name = "pnodes", description = "pNode analytics: the Xandeum PNode Developer API (v1.1.0) served from memory"),
        (name = "streams", description = "Durable subscriptions (Motience-compatible); the sockets are /producer and /consumer"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route(
            "/api-docs",
            web::get().to(|| async {
                HttpResponse::PermanentRedirect()
                    .insert_header(("Location", "/api-docs/"))
                    .finish()
            }),
        )
        .service(
            SwaggerUi::new("/api-docs/{_:.*}").url("/api-docs/openapi.json", ApiDoc::openapi()),
        );
}

//! The OpenAPI description (`/api-docs/openapi.json`) and Swagger UI (`/api-docs/`).

use actix_web::{HttpResponse, web};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

// One import per module: `crate::http::{…}` would name `http` itself, which names this module.
use crate::http::admin;
use crate::http::api_tokens;
use crate::http::child;
use crate::http::children;
use crate::http::console;
use crate::http::identity;
use crate::http::nodes;
use crate::http::pnodes;
use crate::http::probes;
use crate::http::producers;
use crate::http::streams as stream;
use crate::http::webhooks;

#[derive(OpenApi)]
#[openapi(
    info(title = "nodegrid", description = "IoT streams, pNode analytics and licensed child nodes."),
    paths(
        probes::health,
        probes::ready,
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
        stream::disconnect_connection,
        console::live::live,
        stream::set_visibility,
        stream::allowed_consumers,
        stream::allow_consumer,
        stream::disallow_consumer,
        producers::publish,
        producers::post_data,
        producers::history,
        producers::stored_data,
        producers::settings,
        producers::set_settings,
        api_tokens::issue,
        api_tokens::list,
        api_tokens::revoke,
        webhooks::create,
        webhooks::list,
        webhooks::get,
        webhooks::delete,
        webhooks::deliveries,
        children::list_plans,
        children::create_plan,
        children::update_plan,
        children::list_clients,
        children::create_client,
        children::get_client,
        children::update_client,
        children::set_client_config,
        children::add_client_user,
        children::create_child,
        children::client_children,
        children::list_children,
        children::get_child,
        children::revoke_child,
        children::rotate_key,
        children::maintenance,
        children::set_maintenance,
        children::versions,
        children::set_versions,
        child::heartbeat,
        child::login_user,
        child::check_user,
        child::blocked_users,
        child::control,
        child::public_keys,
        nodes::list,
        nodes::create,
        nodes::get,
        nodes::update,
        nodes::set_status,
        nodes::delete,
        nodes::watch,
        nodes::issue_operator_token,
        pnodes::network::overview,
        pnodes::network::health,
        pnodes::live::live,
        pnodes::graphql::execute,
        pnodes::nodes::pnodes,
        pnodes::nodes::compare,
        pnodes::alerts::node_alerts,
        pnodes::nodes::recommendations,
        pnodes::registry::registry,
        pnodes::registry::registry_entry,
        pnodes::registry::graveyard,
        pnodes::registry::prune,
        pnodes::network::topology,
        pnodes::network::network_health,
        pnodes::network::network_history,
        pnodes::network::network_growth,
        pnodes::network::network_analytics,
        pnodes::network::network_consistency,
        pnodes::network::operators,
        pnodes::network::all_nodes,
        pnodes::alerts::alerts,
        pnodes::alerts::critical_alerts,
        pnodes::history::node_history,
        pnodes::history::node_metrics_summary,
        pnodes::network::node_consistency,
        pnodes::history::history_status,
        pnodes::pollers::pollers,
    ),
    modifiers(&BearerAuth, &RefusalAnswers),
    tags(
        (name = "probes", description = "Liveness and readiness"),
        (name = "auth", description = "Accounts and tokens (Motience-compatible)"),
        (name = "admin", description = "Users, blocks, the audit log, live connections; admins only"),
        (name = "pnodes", description = "pNode analytics: the Xandeum PNode Developer API (v1.1.0) served from memory"),
        (name = "nodes", description = "The node registry; the same API over gRPC (nodegrid.registry.v1.NodeService) and its events on /api/nodes/watch"),
        (name = "children", description = "What child nodes call: heartbeats answered with signed leases (`Authorization: ApiKey ngc_…`, each request signed), the mother's public keys"),
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
        components.add_security_scheme(
            "child_key",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Header(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    "Authorization",
                    "`ApiKey ngc_…`, with the request signed: x-nodegrid-timestamp, x-nodegrid-nonce, x-nodegrid-signature",
                ),
            )),
        );
    }
}

/// The methods each documented route pattern takes, for the `Allow` header of a 405 (RFC 9110
/// requires it). Routes served beside the documented ones (the GraphQL query page) are added.
pub fn allowed_methods() -> std::collections::HashMap<String, String> {
    let document = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let mut allowed: std::collections::HashMap<String, Vec<String>> = document["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(path, operations)| {
            let methods = operations
                .as_object()
                .into_iter()
                .flatten()
                .map(|(method, _)| method.to_uppercase())
                .collect();
            (path.clone(), methods)
        })
        .collect();
    if let Some(methods) = allowed.get_mut("/api/xandeum/graphql") {
        methods.push("GET".into());
    }
    allowed
        .into_iter()
        .map(|(path, mut methods)| {
            methods.sort();
            methods.dedup();
            (path, methods.join(", "))
        })
        .collect()
}

/// Documents the refusals every route of a kind may give, so that no route can forget them: a
/// route that takes a token may answer 401 (no valid token), a rate-limited one 429.
struct RefusalAnswers;

impl Modify for RefusalAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let refusal = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let rate_limited = path.starts_with("/api/xandeum")
                || path.starts_with("/api/auth")
                || path.starts_with("/api/child/");
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                if operation.security.is_some() {
                    responses.entry("401".into()).or_insert_with(|| {
                        refusal(
                            "`unauthenticated`, `token_invalid` or `token_expired`: no valid token",
                        )
                        .into()
                    });
                }
                if rate_limited {
                    responses.entry("429".into()).or_insert_with(|| {
                        refusal("`rate_limited`: too many requests; `Retry-After` says when").into()
                    });
                }
                // Every route reads a path, a query or a body it may find unreadable.
                responses.entry("400".into()).or_insert_with(|| {
                    refusal("`bad_request` or `validation_failed`: the request cannot be used as it is; `message` says why").into()
                });
                responses.entry("503".into()).or_insert_with(|| {
                    refusal("`not_ready`: Postgres or Redis is not answering; retry shortly").into()
                });
            }
        }
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

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use utoipa::OpenApi;

    use super::ApiDoc;

    /// Every `$ref` in `value`.
    fn references(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get("$ref") {
                    found.push(reference.clone());
                }
                map.values().for_each(|v| references(v, found));
            }
            Value::Array(list) => list.iter().for_each(|v| references(v, found)),
            _ => {}
        }
    }

    /// Every 2xx answer that has a body names a schema, and every `$ref` resolves: the
    /// document describes the real bodies, not `Object`.
    #[test]
    fn every_answer_is_documented_with_a_schema_of_the_document() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serialises");
        let schema = |reference: &str| {
            let name = reference.strip_prefix("#/components/schemas/")?;
            doc["components"]["schemas"].get(name)
        };
        let mut answers = 0;
        for (path, operations) in doc["paths"].as_object().into_iter().flatten() {
            for (method, operation) in operations.as_object().into_iter().flatten() {
                let responses = operation["responses"].as_object().into_iter().flatten();
                for (status, response) in responses.filter(|(status, _)| status.starts_with('2')) {
                    if status == "204" {
                        continue;
                    }
                    let contents = response["content"].as_object();
                    assert!(
                        contents.is_some_and(|contents| !contents.is_empty()),
                        "{method} {path} answers {status} without a body description: {response}"
                    );
                    for (media, content) in contents.into_iter().flatten() {
                        let body = &content["schema"];
                        let named = body["$ref"].as_str().and_then(schema).is_some();
                        let inline = body.get("type").is_some() || body.get("items").is_some();
                        assert!(
                            named || inline,
                            "{method} {path} answers {status} ({media}) without a schema: {body}"
                        );
                        assert_ne!(
                            body.get("type").and_then(Value::as_str),
                            Some("object"),
                            "{method} {path} answers {status} with a bare object"
                        );
                    }
                    answers += 1;
                }
            }
        }
        assert!(answers >= 40, "only {answers} answers are documented");
        let mut all = Vec::new();
        references(&doc, &mut all);
        for reference in all {
            assert!(
                schema(&reference).is_some(),
                "{reference} is not in the document"
            );
        }
    }
}

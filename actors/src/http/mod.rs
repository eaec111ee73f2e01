//! The HTTP surface: the route table. The route modules (`identity`, `admin`, `api_tokens`,
//! `webhooks`, `children` (admins' side of the children), `child` (what children call), `console`, `sockets`, `streams`, `producers`, `nodes`, `pnodes`, `probes`, `openapi`) are
//! thin: they parse, call the services and the actors, and answer; `routing` holds what every
//! route module uses, `push` the push-only sockets; `boundary`, `browser`, `observe`, `json`,
//! `error`, `auth` and `redact` are the checks and conversions at the edge.

pub mod admin;
pub mod api_tokens;
pub mod auth;
pub mod boundary;
pub mod browser;
pub mod child;
pub mod children;
pub mod console;
pub mod error;
pub mod identity;
pub mod json;
pub mod nodes;
pub mod observe;
pub mod openapi;
pub mod pnodes;
pub mod probes;
pub mod producers;
pub mod push;
pub mod redact;
pub mod routing;
pub mod sockets;
pub mod streams;
pub mod webhooks;

use actix_web::web;

use self::routing::get_only;

/// Registers every route of the server. The router tries them in this order, a pattern with
/// parameters by a regular expression, so the public `/api/xandeum` scope (by far the most
/// requested, one prefix test for all its routes) comes before the many parameterised admin
/// routes; no two modules' paths overlap, so the order changes no answer.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(get_only("/health", probes::health))
        .service(get_only("/ready", probes::ready))
        .configure(pnodes::routes)
        .configure(identity::routes)
        .configure(admin::routes)
        .configure(sockets::routes)
        .configure(streams::routes)
        .configure(producers::routes)
        .configure(api_tokens::routes)
        .configure(webhooks::routes)
        .configure(children::routes)
        .configure(child::routes)
        .configure(nodes::routes)
        .configure(console::routes)
        .configure(openapi::routes);
}

//! The authorization matrix, generated from the route table as the OpenAPI document states it:
//! every documented route × {no token, consumer, producer, admin}. A route that declares a
//! bearer token refuses callers without one (401) before it reads their body; an admin route
//! (`/api/admin/*`, or tagged `admin`) refuses users who are not admins (403), likewise; a
//! child's route (security `child_key`) refuses every user's token (401); a
//! valid token is never answered 401; a public route never asks for a token; and no call,
//! however unauthorized, gets a 5xx (but the pNode API's truthful 503 `not_ready` before its
//! first cycle). A new route is checked the moment it is
//! documented, and one that is not documented fails `every_answer_is_documented…`.

use serde_json::Value;

use crate::helpers::{TestApp, spawn_app};
use nodegrid_protocol::auth::Role;

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Nobody,
    Consumer,
    Producer,
    Admin,
}

/// A concrete path for a documented one: ids that exist nowhere (so that nothing real is
/// changed: the answer is at worst 404), UUIDs where the parameter is one.
fn concrete(path: &str, operation: &Value) -> String {
    let mut concrete = path.to_owned();
    for parameter in operation["parameters"].as_array().into_iter().flatten() {
        if parameter["in"] != "path" {
            continue;
        }
        let name = parameter["name"].as_str().unwrap_or_default();
        let value = if parameter["schema"]["format"] == "uuid" {
            "0b8c1a52-6f35-4f7e-9a7e-1f0a2b3c4d5e".to_owned()
        } else if name.contains("address") {
            "10.255.0.1:9001".to_owned()
        } else if parameter["schema"]["type"] == "integer" {
            "987654".to_owned()
        } else {
            "nobody-here".to_owned()
        };
        concrete = concrete.replace(&format!("{{{name}}}"), &value);
    }
    concrete
}

async fn token(app: &TestApp, caller: Caller, serial: usize) -> Option<String> {
    // A fresh session per call: logging out (a documented route) ends the one it is called
    // with.
    match caller {
        Caller::Nobody => None,
        Caller::Admin => Some(app.admin_token().await),
        Caller::Consumer | Caller::Producer => {
            let role = if caller == Caller::Consumer {
                Role::Consumer
            } else {
                Role::Producer
            };
            let name = format!("matrix-{caller:?}-{serial}").to_lowercase();
            app.register(&name, role).await;
            Some(app.long_lived_token(&name).await)
        }
    }
}

#[actix_web::test]
async fn every_documented_route_refuses_exactly_whom_it_should() {
    let app = spawn_app().await;
    let document: Value = app
        .get("/api-docs/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut serial = 0;
    for (path, operations) in document["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            // `[{}, {"bearer": []}]` is an optional token; `[{"bearer": []}]` a required one.
            let schemes = operation["security"].as_array();
            let secured = schemes.is_some_and(|schemes| {
                !schemes.is_empty()
                    && schemes
                        .iter()
                        .all(|scheme| scheme.as_object().is_some_and(|s| !s.is_empty()))
            });
            // Children's routes take a child key, never a user's token: every user is refused.
            let child_key_only = schemes.is_some_and(|schemes| {
                schemes
                    .iter()
                    .all(|scheme| scheme.get("child_key").is_some())
            });
            let admin_only = path.starts_with("/api/admin")
                || operation["tags"]
                    .as_array()
                    .is_some_and(|tags| tags.iter().any(|tag| tag == "admin"))
                || path == "/api/xandeum/prune";
            let url = format!("{}{}", app.address, concrete(path, operation));
            for caller in [
                Caller::Nobody,
                Caller::Consumer,
                Caller::Producer,
                Caller::Admin,
            ] {
                serial += 1;
                let token = token(&app, caller, serial).await;
                let mut request = app
                    .http
                    .request(method.to_uppercase().parse().unwrap(), &url)
                    .header("Content-Type", "application/json");
                if matches!(method.as_str(), "post" | "put" | "patch") {
                    request = request.body("{}");
                }
                if let Some(token) = &token {
                    request = request.bearer_auth(token);
                }
                let response = request.send().await.unwrap();
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                // Before the first pNode cycle the pNode API truthfully says it is not ready
                // (its health route with `unhealthy`).
                let not_ready =
                    status == 503 && (body["code"] == "not_ready" || body["status"] == "unhealthy");
                let expected_refusal = match caller {
                    _ if child_key_only => Some(401),
                    Caller::Nobody if secured => Some(401),
                    Caller::Consumer | Caller::Producer if admin_only => Some(403),
                    _ => None,
                };
                let wrong = match expected_refusal {
                    Some(refusal) => status != refusal,
                    // A valid token is never refused as missing; a user may still be refused a
                    // resource that is not theirs (403).
                    None if token.is_some() => status == 401,
                    None => status == 401 || status == 403,
                };
                if wrong || (status >= 500 && !not_ready) {
                    failures.push(format!(
                        "{} {path} as {caller:?}: {status} (expected {})",
                        method.to_uppercase(),
                        expected_refusal
                            .map(|status| status.to_string())
                            .unwrap_or_else(|| "not a refusal for want of a token".into())
                    ));
                }
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 200,
        "only {checked} calls: is the document complete?"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    app.shut_down().await.unwrap();
}

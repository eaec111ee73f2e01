//! The gate: the child's local HTTP API for the application beside it (loopback by default).
//!
//! - `GET /status`: the state, why, the lease's expiry, maintenance, the version's status.
//! - `POST /login` `{username, password}`: through the mother; sets the session cookie
//!   (`nodegrid_session`, HTTP-only, `SameSite=Strict`).
//! - `GET /session`: the signed-in user of the cookie, checked here (the mother's signature,
//!   this child, not expired, not blocked), also while DEGRADED; 401 once BLOCKED.
//! - `GET /users/{id}/allowed`: 200 or 403 from the signed block list; refused once BLOCKED.
//! - `GET /metrics`: the state and the counts of transitions and failed heartbeats.
//!
//! Errors answer `{code, message}` like the mother's API.

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use nodegrid_protocol::children::lease::{LeaseStatus, VersionStatus};
use nodegrid_protocol::children::users::{
    ChildLoginRequest, LoginAnswer, verify_answer, verify_session,
};
use serde_json::json;

use super::machine::GateState;
use super::mother::Mother;
use super::state::{SharedState, read};

/// The cookie of a session signed in through the gate.
pub const SESSION_COOKIE: &str = "nodegrid_session";
/// Largest body the gate reads (a login).
const MAX_BODY_BYTES: usize = 8 * 1024;

struct Gate {
    shared: SharedState,
    mother: Arc<Mother>,
}

fn refusal(status: u16, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::FORBIDDEN),
    )
    .json(json!({"code": code, "message": message}))
}

pub fn start(
    addr: SocketAddr,
    shared: SharedState,
    mother: Arc<Mother>,
) -> Result<actix_web::dev::Server, String> {
    let gate = web::Data::new(Gate { shared, mother });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(gate.clone())
            .app_data(web::JsonConfig::default().limit(MAX_BODY_BYTES))
            .route("/status", web::get().to(status))
            .route("/login", web::post().to(login))
            .route("/session", web::get().to(session))
            .route("/users/{id}/allowed", web::get().to(user_allowed))
            .route("/metrics", web::get().to(metrics))
    })
    .workers(1)
    .disable_signals()
    .bind(addr)
    .map_err(|error| format!("the gate cannot listen on {addr}: {error}"))?;
    Ok(server.run())
}

async fn status(gate: web::Data<Gate>) -> HttpResponse {
    let guard = read(&gate.shared);
    let held = guard.machine.held();
    HttpResponse::Ok().json(json!({
        "state": guard.machine.state().as_str(),
        "reason": guard.machine.reason(),
        "child_id": guard.child_id,
        "lease_seq": guard.machine.last_seq(),
        "lease_valid_until": held.map(|held| held.lease.valid_until),
        "maintenance": held.map(|held| held.lease.maintenance.clone()),
        "version_status": held.map(|held| held.lease.version_status),
        "failures": guard.machine.failures(),
        "blocked_users_version": guard.blocked_users_version,
        "control_connected": guard.control_connected,
    }))
}

/// The refusal that says why the gate may not serve now, if it may not.
fn not_serving(gate: &Gate) -> Option<HttpResponse> {
    let guard = read(&gate.shared);
    match guard.machine.state() {
        GateState::Active | GateState::Degraded => None,
        GateState::Maintenance => Some(refusal(
            503,
            "maintenance",
            guard
                .machine
                .reason()
                .unwrap_or("the system is under maintenance"),
        )),
        GateState::Startup => Some(refusal(
            503,
            "startup",
            "the child has no lease from the mother yet",
        )),
        GateState::Blocked => Some(refusal(
            403,
            "blocked",
            guard.machine.reason().unwrap_or("the child is blocked"),
        )),
    }
}

async fn login(gate: web::Data<Gate>, body: web::Json<ChildLoginRequest>) -> HttpResponse {
    if let Some(refused) = not_serving(&gate) {
        return refused;
    }
    let (update_required, keys, child_id) = {
        let guard = read(&gate.shared);
        let update_required = guard.machine.held().is_some_and(|held| {
            held.lease.version_status == VersionStatus::UpdateRequired
                || held.lease.status != LeaseStatus::Active
        });
        (update_required, guard.keys.clone(), guard.child_id)
    };
    if update_required {
        return refusal(
            403,
            "update_required",
            "this child's version is below the minimum: update it",
        );
    }
    let request = serde_json::to_vec(&body.into_inner()).unwrap_or_default();
    let answer = match gate
        .mother
        .call(
            reqwest::Method::POST,
            "/api/child/users/login",
            Some(request),
        )
        .await
    {
        Ok(answer) => answer,
        Err(error) => {
            tracing::warn!(%error, "a sign-in could not reach the mother");
            return refusal(
                503,
                "mother_unavailable",
                "the sign-in service is not reachable; retry shortly",
            );
        }
    };
    let answer = match verify_answer::<LoginAnswer>(&answer.body, &keys) {
        Ok(login) if Some(login.child_id) == child_id && login.nonce == answer.nonce => login,
        Ok(_) => {
            return refusal(
                502,
                "bad_answer",
                "the mother's answer is for another request",
            );
        }
        Err(rejection) => {
            tracing::warn!(%rejection, "a sign-in answer is refused");
            return refusal(502, "bad_answer", "the mother's answer does not verify");
        }
    };
    match (
        answer.allowed,
        answer.session_token,
        answer.user,
        answer.expires_at,
    ) {
        (true, Some(token), Some(user), Some(expires_at)) => {
            gate.shared
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .sessions
                .insert(user.id, expires_at);
            let max_age = (expires_at - chrono::Utc::now()).num_seconds().max(0);
            // The token is base64url and dots: nothing in it needs quoting in a cookie.
            let cookie = format!(
                "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}"
            );
            HttpResponse::Ok()
                .insert_header(("Set-Cookie", cookie))
                .json(json!({"user": user, "expires_at": expires_at}))
        }
        _ => {
            let reason = answer.reason.unwrap_or_else(|| "refused".into());
            refusal(403, &reason, "the mother refused this sign-in")
        }
    }
}

async fn session(gate: web::Data<Gate>, request: HttpRequest) -> HttpResponse {
    let guard = read(&gate.shared);
    if matches!(
        guard.machine.state(),
        GateState::Blocked | GateState::Startup
    ) {
        return refusal(401, "blocked", "the child serves no session now");
    }
    let Some(child_id) = guard.child_id else {
        return refusal(401, "unauthenticated", "no session");
    };
    let Some(token) = session_cookie(&request) else {
        return refusal(401, "unauthenticated", "no session");
    };
    match verify_session(&token, &guard.keys, child_id, chrono::Utc::now()) {
        Ok(claims) if guard.blocked_users.contains(&claims.user.id) => {
            refusal(401, "user_blocked", "this user is blocked")
        }
        Ok(claims) => {
            HttpResponse::Ok().json(json!({"user": claims.user, "expires_at": claims.expires_at}))
        }
        Err(rejection) => refusal(401, "session_invalid", &rejection.to_string()),
    }
}

/// The session cookie's value, from the request's `Cookie` headers.
fn session_cookie(request: &HttpRequest) -> Option<String> {
    request
        .headers()
        .get_all("cookie")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

async fn user_allowed(gate: web::Data<Gate>, path: web::Path<String>) -> HttpResponse {
    let Ok(user_id) = path.into_inner().parse::<i64>() else {
        return refusal(400, "bad_request", "the user id must be an integer");
    };
    let guard = read(&gate.shared);
    match guard.machine.state() {
        GateState::Blocked | GateState::Startup => {
            refusal(403, "blocked", "the child allows no one now")
        }
        _ if guard.blocked_users.contains(&user_id) => {
            refusal(403, "user_blocked", "this user is blocked")
        }
        _ => HttpResponse::Ok().json(json!({"user_id": user_id, "allowed": true})),
    }
}

async fn metrics(gate: web::Data<Gate>) -> HttpResponse {
    let guard = read(&gate.shared);
    let mut text = String::from("# TYPE nodegrid_child_state gauge\n");
    for state in GateState::ALL {
        let value = u8::from(guard.machine.state() == state);
        text.push_str(&format!(
            "nodegrid_child_state{{state=\"{}\"}} {value}\n",
            state.as_str()
        ));
    }
    text.push_str("# TYPE nodegrid_child_transitions_total counter\n");
    for (state, count) in &guard.transitions {
        text.push_str(&format!(
            "nodegrid_child_transitions_total{{to=\"{state}\"}} {count}\n"
        ));
    }
    text.push_str("# TYPE nodegrid_child_heartbeat_failures_total counter\n");
    for (kind, count) in &guard.failures {
        text.push_str(&format!(
            "nodegrid_child_heartbeat_failures_total{{kind=\"{kind}\"}} {count}\n"
        ));
    }
    text.push_str(&format!(
        "# TYPE nodegrid_child_control_connected gauge\nnodegrid_child_control_connected {}\n",
        u8::from(guard.control_connected)
    ));
    text.push_str(&format!(
        "# TYPE nodegrid_child_lease_seq gauge\nnodegrid_child_lease_seq {}\n",
        guard.machine.last_seq()
    ));
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text)
}

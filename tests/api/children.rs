//! Mother and child nodes, the mother's side: provisioning within a plan (concurrently too),
//! keys shown once and kept as hashes, signed heartbeats answered with leases the published key
//! verifies, every forged or replayed request refused, the lease's terms following the admins'
//! changes on every instance, and late/offline marking with the disruption guard on the leader.

use std::time::Duration;

use nodegrid_protocol::children::lease::{
    Expectation, Lease, LeaseStatus, PublicKeysResponse, VersionStatus, verify_lease,
};
use nodegrid_protocol::children::signing::{
    AUTHORIZATION_SCHEME, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, new_child_key,
    sign_request,
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp, eventually, fresh_database, spawn_app, spawn_app_with, test_settings,
};

const HEARTBEAT: &str = "/api/child/heartbeat";

/// An admin's JSON call; answers status and body.
pub(crate) async fn admin_call(
    app: &TestApp,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app
        .http
        .request(method.parse().unwrap(), format!("{}{path}", app.address))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A plan, a client on it, and its id.
pub(crate) async fn client_with_plan(
    app: &TestApp,
    token: &str,
    name: &str,
    max_children: u32,
) -> i64 {
    let (status, plan) = admin_call(
        app,
        token,
        "POST",
        "/api/admin/plans",
        Some(json!({"name": format!("{name}-plan"), "limits": {"max_children": max_children, "max_users": 10}, "features": ["bots", "analytics"]})),
    )
    .await;
    assert_eq!(status, 201, "{plan}");
    let (status, client) = admin_call(
        app,
        token,
        "POST",
        "/api/admin/clients",
        Some(json!({"name": name, "plan_id": plan["id"], "subscription": {"status": "active"}})),
    )
    .await;
    assert_eq!(status, 201, "{client}");
    client["id"].as_i64().unwrap()
}

/// Provisions a child; answers its id and key.
pub(crate) async fn provision(
    app: &TestApp,
    token: &str,
    client_id: i64,
    name: &str,
) -> (Uuid, String) {
    let (status, issued) = admin_call(
        app,
        token,
        "POST",
        &format!("/api/admin/clients/{client_id}/children"),
        Some(json!({"name": name})),
    )
    .await;
    assert_eq!(status, 201, "{issued}");
    (
        issued["child"]["id"].as_str().unwrap().parse().unwrap(),
        issued["api_key"].as_str().unwrap().to_owned(),
    )
}

fn nonce() -> String {
    Uuid::new_v4().simple().to_string()
}

/// What a child sends, with the parts a test may spoil.
struct Signed {
    key: String,
    timestamp: i64,
    nonce: String,
    body: Vec<u8>,
    /// Sign this body instead of the one sent (a body changed on the way).
    signed_body: Option<Vec<u8>>,
    signature: Option<String>,
}

impl Signed {
    fn heartbeat(key: &str, heartbeat_nonce: &str, last_seq: u64, version: &str) -> Signed {
        let body = json!({
            "version": version,
            "uptime_s": 12,
            "users_active": 3,
            "config_hash": null,
            "state": {"bots": 2},
            "nonce": heartbeat_nonce,
            "last_seq": last_seq,
        });
        Signed {
            key: key.to_owned(),
            timestamp: chrono::Utc::now().timestamp(),
            nonce: nonce(),
            body: serde_json::to_vec(&body).unwrap(),
            signed_body: None,
            signature: None,
        }
    }

    async fn send(&self, app: &TestApp) -> reqwest::Response {
        let signature = self.signature.clone().unwrap_or_else(|| {
            sign_request(
                &self.key,
                "POST",
                HEARTBEAT,
                self.timestamp,
                &self.nonce,
                self.signed_body.as_deref().unwrap_or(&self.body),
            )
        });
        app.http
            .post(format!("{}{HEARTBEAT}", app.address))
            .header(
                "Authorization",
                format!("{AUTHORIZATION_SCHEME} {}", self.key),
            )
            .header("Content-Type", "application/json")
            .header(TIMESTAMP_HEADER, self.timestamp.to_string())
            .header(NONCE_HEADER, &self.nonce)
            .header(SIGNATURE_HEADER, signature)
            .body(self.body.clone())
            .send()
            .await
            .unwrap()
    }
}

async fn public_keys(app: &TestApp) -> PublicKeysResponse {
    app.get("/api/child/public-keys")
        .await
        .json()
        .await
        .unwrap()
}

/// Heartbeats and verifies the lease as a child would.
async fn heartbeat(app: &TestApp, child: Uuid, key: &str, last_seq: u64, version: &str) -> Lease {
    let heartbeat_nonce = nonce();
    let response = Signed::heartbeat(key, &heartbeat_nonce, last_seq, version)
        .send(app)
        .await;
    let status = response.status();
    let body = response.bytes().await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let keys = public_keys(app).await;
    verify_lease(
        &body,
        &keys.keys,
        &Expectation {
            child_id: child,
            nonce: Some(&heartbeat_nonce),
            last_seq,
            now: chrono::Utc::now(),
        },
    )
    .unwrap_or_else(|rejection| panic!("the lease is refused: {rejection}"))
}

/// Waits until `app` knows the child of `key` (another instance provisioned it: `app` hears of
/// it on the control channel a moment later); the heartbeat that shows it counts as one.
async fn until_known(app: &TestApp, key: &str) {
    eventually(
        "the instance knows the new child",
        Duration::from_secs(5),
        || async {
            let response = Signed::heartbeat(key, &nonce(), 0, "1.0.0").send(app).await;
            (response.status() == 200).then_some(())
        },
    )
    .await;
}

/// A child as an admin sees it on `app` (`GET /api/admin/children/{child}`); panics unless 200.
pub(crate) async fn child_view(app: &TestApp, token: &str, child: impl std::fmt::Display) -> Value {
    let (status, view) = admin_call(
        app,
        token,
        "GET",
        &format!("/api/admin/children/{child}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{view}");
    view
}

async fn liveness(app: &TestApp, token: &str, child: Uuid) -> String {
    child_view(app, token, child).await["liveness"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn refusal(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

#[actix_web::test]
async fn a_child_is_provisioned_within_its_plan_and_its_key_is_shown_once() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let client = client_with_plan(&app, &token, "acme", 2).await;
    let (child, key) = provision(&app, &token, client, "acme-eu-1").await;
    assert!(key.starts_with("ngc_"), "{key}");
    provision(&app, &token, client, "acme-eu-2").await;
    let (status, body) = admin_call(
        &app,
        &token,
        "POST",
        &format!("/api/admin/clients/{client}/children"),
        Some(json!({"name": "acme-eu-3"})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("plan_limit_reached"))
    );
    // Listed with its live state and the key's prefix, never the key.
    let (status, listed) = admin_call(&app, &token, "GET", "/api/admin/children", None).await;
    assert_eq!(status, 200);
    assert_eq!(listed["children"].as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains(&key));
    // Paged and filtered: a page of one, how many in all, by liveness; bad filters refused.
    let (_, page) = admin_call(
        &app,
        &token,
        "GET",
        "/api/admin/children?limit=1&offset=1",
        None,
    )
    .await;
    assert_eq!(
        (
            page["children"].as_array().unwrap().len(),
            page["total"].as_u64()
        ),
        (1, Some(2))
    );
    let (_, fresh) = admin_call(
        &app,
        &token,
        "GET",
        "/api/admin/children?liveness=new",
        None,
    )
    .await;
    assert_eq!(fresh["total"], 2);
    let (_, online) = admin_call(
        &app,
        &token,
        "GET",
        "/api/admin/children?liveness=online",
        None,
    )
    .await;
    assert_eq!(online["total"], 0);
    for bad in ["liveness=asleep", "limit=0", "limit=1001", "offset=-1"] {
        let (status, body) = admin_call(
            &app,
            &token,
            "GET",
            &format!("/api/admin/children?{bad}"),
            None,
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("validation_failed")),
            "{bad}"
        );
    }
    let one = child_view(&app, &token, child).await;
    assert_eq!(one["liveness"], "new");
    assert!(key.starts_with(one["key_prefix"].as_str().unwrap()));
    let (_, client_view) = admin_call(
        &app,
        &token,
        "GET",
        &format!("/api/admin/clients/{client}"),
        None,
    )
    .await;
    assert_eq!(client_view["children"], 2);
    // Audited without the key.
    let audit = app.audit("action=child.create").await;
    assert_eq!(audit.len(), 2);
    assert!(!Value::Array(audit).to_string().contains(&key));
    // Revoked: refused; the slot is free again.
    let (status, _) = admin_call(
        &app,
        &token,
        "DELETE",
        &format!("/api/admin/children/{child}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = refusal(
        Signed::heartbeat(&key, &nonce(), 0, "1.0.0")
            .send(&app)
            .await,
    )
    .await;
    assert_eq!(status, 401);
    provision(&app, &token, client, "acme-eu-3").await;
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn concurrent_creations_respect_the_plan_limit_with_more_callers_than_connections() {
    let database = std::sync::Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.database_pool_size = 2;
    let app = spawn_app_with(database, settings).await;
    let token = app.admin_token().await;
    let client = client_with_plan(&app, &token, "busy", 5).await;
    let attempts = futures_util::future::join_all((0..12).map(|index| {
        let (app, token) = (&app, &token);
        async move {
            admin_call(
                app,
                token,
                "POST",
                &format!("/api/admin/clients/{client}/children"),
                Some(json!({"name": format!("busy-{index}")})),
            )
            .await
        }
    }))
    .await;
    let created = attempts.iter().filter(|(status, _)| *status == 201).count();
    let refused = attempts
        .iter()
        .filter(|(status, body)| *status == 409 && body["code"] == "plan_limit_reached")
        .count();
    assert_eq!((created, refused), (5, 7), "{attempts:?}");
    let (_, view) = admin_call(
        &app,
        &token,
        "GET",
        &format!("/api/admin/clients/{client}"),
        None,
    )
    .await;
    assert_eq!(view["children"], 5);
    assert_eq!(app.audit("action=child.create").await.len(), 5);
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn a_heartbeat_is_answered_with_a_lease_the_published_key_verifies() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let client = client_with_plan(&app, &token, "verify", 3).await;
    let (child, key) = provision(&app, &token, client, "verify-1").await;
    let keys = public_keys(&app).await;
    assert_eq!(keys.keys.len(), 1);
    assert!(keys.keys[0].current);

    let first = heartbeat(&app, child, &key, 0, "1.2.0").await;
    assert_eq!(first.status, LeaseStatus::Active);
    assert_eq!(first.version_status, VersionStatus::Ok);
    assert_eq!(first.license.plan, "verify-plan");
    assert_eq!(first.license.features, vec!["analytics", "bots"]);
    assert_eq!(first.heartbeat_interval_s, 30);
    let ttl = first.valid_until - first.issued_at;
    assert_eq!(ttl.num_seconds(), 300);
    let second = heartbeat(&app, child, &key, first.seq, "1.2.0").await;
    assert!(second.seq > first.seq);
    // A child that saw a higher seq (from another instance, before a restore) gets one above it.
    let third = heartbeat(&app, child, &key, second.seq + 100, "1.2.0").await;
    assert_eq!(third.seq, second.seq + 101);

    let view = child_view(&app, &token, child).await;
    assert_eq!(view["liveness"], "online");
    assert_eq!(view["version"], "1.2.0");
    assert_eq!(view["version_status"], "ok");
    assert_eq!(view["users_active"], 3);
    assert_eq!(view["state"], json!({"bots": 2}));
    assert_eq!(view["lease_seq"], third.seq);
    assert!(view["last_heartbeat_at"].is_string());
    assert!(view["control"].is_null(), "no control socket: {view}");
    // new → online is audited once.
    assert_eq!(app.audit("action=child.online").await.len(), 1);

    // A socket an instance that died recorded is not where the child is, and is forgotten.
    let dead = format!("{} 1 2026-11-30T12:00:00+00:00", Uuid::new_v4());
    app.bus
        .put_child_controls(vec![(child.to_string(), dead)])
        .await
        .unwrap();
    let view = child_view(&app, &token, child).await;
    assert!(view["control"].is_null(), "{view}");
    assert_eq!(
        app.bus
            .child_controls(vec![child.to_string()])
            .await
            .unwrap(),
        vec![None]
    );
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn requests_that_are_not_the_childs_own_are_refused() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let client = client_with_plan(&app, &token, "forge", 3).await;
    let (child, key) = provision(&app, &token, client, "forge-1").await;
    let expect = |code: &'static str| (401u16, code.to_owned());

    // A well-formed key the mother never issued; a mistyped one; none.
    let stranger = new_child_key([5; 20]);
    assert_eq!(
        refusal(
            Signed::heartbeat(&stranger, &nonce(), 0, "1.0")
                .send(&app)
                .await
        )
        .await,
        expect("token_invalid")
    );
    let mut typo = key.clone();
    typo.replace_range(6..7, if &key[6..7] == "a" { "b" } else { "a" });
    assert_eq!(
        refusal(
            Signed::heartbeat(&typo, &nonce(), 0, "1.0")
                .send(&app)
                .await
        )
        .await,
        expect("token_invalid")
    );
    let unsigned = app
        .http
        .post(format!("{}{HEARTBEAT}", app.address))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(unsigned).await, expect("token_invalid"));

    // Signed with another key, a body changed after signing, a wrong signature, an old
    // timestamp.
    let mut other_key = Signed::heartbeat(&key, &nonce(), 0, "1.0");
    other_key.signature = Some(sign_request(
        &stranger,
        "POST",
        HEARTBEAT,
        other_key.timestamp,
        &other_key.nonce,
        &other_key.body,
    ));
    assert_eq!(
        refusal(other_key.send(&app).await).await,
        expect("signature_invalid")
    );
    let mut changed = Signed::heartbeat(&key, &nonce(), 0, "1.0");
    changed.signed_body = Some(Signed::heartbeat(&key, &nonce(), 0, "9.9").body);
    assert_eq!(
        refusal(changed.send(&app).await).await,
        expect("signature_invalid")
    );
    let mut garbage = Signed::heartbeat(&key, &nonce(), 0, "1.0");
    garbage.signature = Some("00ff".into());
    assert_eq!(
        refusal(garbage.send(&app).await).await,
        expect("signature_invalid")
    );
    let mut stale = Signed::heartbeat(&key, &nonce(), 0, "1.0");
    stale.timestamp -= 301;
    assert_eq!(
        refusal(stale.send(&app).await).await,
        expect("signature_invalid")
    );

    // The same signed request twice: the second is a replay.
    let once = Signed::heartbeat(&key, &nonce(), 0, "1.0");
    assert_eq!(once.send(&app).await.status(), 200);
    assert_eq!(
        refusal(once.send(&app).await).await,
        expect("signature_invalid")
    );

    // A rotated key: the old one is refused, the new one works.
    let (status, rotated) = admin_call(
        &app,
        &token,
        "POST",
        &format!("/api/admin/children/{child}/rotate-key"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let new_key = rotated["api_key"].as_str().unwrap().to_owned();
    assert_eq!(
        refusal(Signed::heartbeat(&key, &nonce(), 0, "1.0").send(&app).await).await,
        expect("token_invalid")
    );
    heartbeat(&app, child, &new_key, 0, "1.0").await;

    // A malformed heartbeat from the real child is a 400, not a lease.
    let mut bad = Signed::heartbeat(&new_key, &nonce(), 0, "1.0");
    bad.body = serde_json::to_vec(
        &json!({"version": "", "uptime_s": 1, "users_active": 0, "nonce": nonce()}),
    )
    .unwrap();
    let (status, code) = refusal(bad.send(&app).await).await;
    assert_eq!((status, code.as_str()), (400, "validation_failed"));

    let metrics = app.get("/metrics").await.text().await.unwrap();
    for outcome in ["key_invalid", "signature_invalid", "replayed", "ok"] {
        assert!(
            metrics.contains(&format!(
                "nodegrid_child_requests_total{{outcome=\"{outcome}\"}}"
            )),
            "no {outcome} count"
        );
    }
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn leases_follow_the_admins_changes_on_every_instance() {
    let database = std::sync::Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    // The test heartbeats in a loop while it waits for each change.
    settings.children.rate_per_sec = 1_000;
    settings.children.rate_burst = 1_000;
    let a = spawn_app_with(database.clone(), settings.clone()).await;
    let b = spawn_app_with(database, settings).await;
    let token = a.admin_token().await;
    let client = client_with_plan(&a, &token, "terms", 1).await;
    let (child, key) = provision(&a, &token, client, "terms-1").await;
    until_known(&b, &key).await;
    let mut last = heartbeat(&b, child, &key, 0, "1.0.0").await.seq;
    // Each change is made on A and seen in B's next lease.
    let next_on_b = |last: u64, check: fn(&Lease) -> bool, what: &'static str| {
        let (b, key) = (&b, key.clone());
        async move {
            eventually(what, Duration::from_secs(5), || {
                let key = key.clone();
                async move {
                    let lease = heartbeat(b, child, &key, last, "1.0.0").await;
                    check(&lease).then_some(lease)
                }
            })
            .await
        }
    };
    let (status, _) = admin_call(
        &a,
        &token,
        "PUT",
        "/api/admin/maintenance",
        Some(json!({"enabled": true, "message": "upgrading storage"})),
    )
    .await;
    assert_eq!(status, 200);
    let lease = next_on_b(
        last,
        |l| l.status == LeaseStatus::Maintenance,
        "maintenance on B",
    )
    .await;
    last = lease.seq;
    assert_eq!(
        lease.maintenance.message.as_deref(),
        Some("upgrading storage")
    );
    admin_call(
        &a,
        &token,
        "PUT",
        "/api/admin/maintenance",
        Some(json!({"enabled": false})),
    )
    .await;
    last = next_on_b(
        last,
        |l| l.status == LeaseStatus::Active,
        "maintenance off on B",
    )
    .await
    .seq;

    let (status, _) = admin_call(
        &a,
        &token,
        "PUT",
        "/api/admin/versions",
        Some(json!({"min_version": "1.1.0", "latest_version": "1.3.0"})),
    )
    .await;
    assert_eq!(status, 200);
    let lease = next_on_b(
        last,
        |l| l.version_status == VersionStatus::UpdateRequired,
        "update_required on B",
    )
    .await;
    last = lease.seq;
    assert_eq!(lease.min_version.as_deref(), Some("1.1.0"));
    let view = child_view(&a, &token, child).await;
    assert_eq!(view["version_status"], "update_required");
    let (status, body) = admin_call(
        &a,
        &token,
        "PUT",
        "/api/admin/versions",
        Some(json!({"min_version": "2.0", "latest_version": "1.0"})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("validation_failed"))
    );

    let config = json!({"theme": "dark", "max_bots": 4});
    let (status, view) = admin_call(
        &a,
        &token,
        "PUT",
        &format!("/api/admin/clients/{client}/config"),
        Some(json!({"config": config})),
    )
    .await;
    assert_eq!(status, 200);
    let lease = next_on_b(last, |l| l.config.get("theme").is_some(), "the config on B").await;
    last = lease.seq;
    assert_eq!(lease.config, config);
    assert_eq!(lease.config_hash, view["config_hash"].as_str().unwrap());

    let (_, client_view) = admin_call(
        &a,
        &token,
        "GET",
        &format!("/api/admin/clients/{client}"),
        None,
    )
    .await;
    let plan_id = client_view["plan_id"].clone();
    let (status, _) = admin_call(
        &a,
        &token,
        "PUT",
        &format!("/api/admin/clients/{client}"),
        Some(json!({"name": "terms", "plan_id": plan_id, "subscription": {"status": "cancelled"}})),
    )
    .await;
    assert_eq!(status, 200);
    let lease = next_on_b(last, |l| l.status == LeaseStatus::Blocked, "blocked on B").await;
    last = lease.seq;
    assert_eq!(lease.reason.as_deref(), Some("subscription_cancelled"));
    admin_call(
        &a,
        &token,
        "PUT",
        &format!("/api/admin/clients/{client}"),
        Some(json!({"name": "terms", "plan_id": plan_id, "subscription": {"status": "active"}})),
    )
    .await;
    last = next_on_b(
        last,
        |l| l.status == LeaseStatus::Active,
        "active again on B",
    )
    .await
    .seq;
    // A user of the client is blocked on A: B's next lease carries a new blocked-users version.
    let user = a
        .register("terms-user", nodegrid_protocol::auth::Role::Consumer)
        .await;
    let (status, joined) = admin_call(
        &a,
        &token,
        "POST",
        &format!("/api/admin/clients/{client}/users"),
        Some(json!({"user_id": user.user_id})),
    )
    .await;
    assert_eq!((status, joined["users"].as_i64()), (200, Some(1)));
    let before = heartbeat(&b, child, &key, last, "1.0.0").await;
    last = before.seq;
    let (status, _) = admin_call(
        &a,
        &token,
        "POST",
        &format!("/api/admin/users/{}/block", user.user_id),
        Some(json!({"reason": "abuse"})),
    )
    .await;
    assert_eq!(status, 200);
    let after = eventually(
        "B's lease carries the block",
        Duration::from_secs(5),
        || {
            let key = key.clone();
            let b = &b;
            async move {
                let lease = heartbeat(b, child, &key, last, "1.0.0").await;
                (lease.blocked_users_version > before.blocked_users_version).then_some(lease)
            }
        },
    )
    .await;
    last = after.seq;
    // A plan cut below the children the client has blocks them until it is raised.
    let (status, _) = admin_call(
        &a,
        &token,
        "PUT",
        &format!("/api/admin/plans/{plan_id}"),
        Some(json!({"name": "terms-plan", "limits": {"max_children": 0, "max_users": 10}})),
    )
    .await;
    assert_eq!(status, 200);
    let lease = next_on_b(
        last,
        |l| l.status == LeaseStatus::Blocked,
        "over the limit on B",
    )
    .await;
    assert_eq!(lease.reason.as_deref(), Some("children_limit_exceeded"));

    // Revoked on A: refused on B.
    admin_call(
        &a,
        &token,
        "DELETE",
        &format!("/api/admin/children/{child}"),
        None,
    )
    .await;
    eventually(
        "B refuses the revoked key",
        Duration::from_secs(5),
        || async {
            let response = Signed::heartbeat(&key, &nonce(), 0, "1.0.0").send(&b).await;
            (response.status() == 401).then_some(())
        },
    )
    .await;
    for action in [
        "children.maintenance",
        "children.versions",
        "client.config",
        "client.update",
        "plan.update",
        "child.revoke",
    ] {
        assert!(
            !a.audit(&format!("action={action}")).await.is_empty(),
            "{action} is audited"
        );
    }
    a.shut_down().await.unwrap();
    b.shut_down().await.unwrap();
}

#[actix_web::test]
async fn silent_children_go_late_then_offline_on_the_leader_and_a_mass_silence_engages_the_guard() {
    let database = std::sync::Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.children.heartbeat_interval = Duration::from_secs(1);
    settings.children.lease_ttl = Duration::from_secs(10);
    settings.children.disruption_min_population = 4;
    let a = spawn_app_with(database.clone(), settings.clone()).await;
    let b = spawn_app_with(database, settings).await;
    let token = a.admin_token().await;
    let (status, hook) = admin_call(
        &a,
        &token,
        "POST",
        "/api/admin/webhooks",
        Some(json!({"url": "http://127.0.0.1:9/hook", "secret": "whsec-children-0123456789", "events": ["child.*"]})),
    )
    .await;
    assert_eq!(status, 201, "{hook}");
    let client = client_with_plan(&a, &token, "silence", 10).await;
    let (lonely, lonely_key) = provision(&a, &token, client, "lonely").await;
    until_known(&b, &lonely_key).await;
    eventually(
        "the silent child is late",
        Duration::from_secs(5),
        || async { (liveness(&a, &token, lonely).await == "late").then_some(()) },
    )
    .await;
    eventually(
        "the silent child is offline",
        Duration::from_secs(8),
        || async { (liveness(&b, &token, lonely).await == "offline").then_some(()) },
    )
    .await;
    assert_eq!(a.audit("action=child.late").await.len(), 1);
    assert_eq!(a.audit("action=child.offline").await.len(), 1);
    // The node registry has the child too, by its id, and it is down.
    eventually(
        "the child DOWN in the registry",
        Duration::from_secs(5),
        || async {
            let (_, listed) = admin_call(
                &a,
                &token,
                "GET",
                &format!("/api/nodes?type=CHILD&search={lonely}"),
                None,
            )
            .await;
            listed["nodes"]
                .as_array()?
                .iter()
                .any(|node| node["name"] == lonely.to_string() && node["status"] == "DOWN")
                .then_some(())
        },
    )
    .await;
    // How far the reports reached is kept for the next leader, so that it does not report
    // every child again.
    let checkpoint = crate::helpers::connect(&a.database.url)
        .await
        .query_opt(
            "SELECT value FROM settings WHERE key = 'children.registry_reported_until'",
            &[],
        )
        .await
        .unwrap();
    assert!(checkpoint.is_some(), "the registry checkpoint is recorded");

    // Five heartbeating children fall silent together: the mother assumes it is cut off.
    let mut fleet = Vec::new();
    for index in 0..5 {
        let (child, key) = provision(&a, &token, client, &format!("fleet-{index}")).await;
        let seq = heartbeat(&a, child, &key, 0, "1.0").await.seq;
        fleet.push((child, key, seq));
    }
    eventually("the guard engages", Duration::from_secs(6), || async {
        (!a.audit("action=child.disruption_guard_engaged")
            .await
            .is_empty())
        .then_some(())
    })
    .await;
    // Past the offline threshold (3.5 intervals) and a few sweeps more, nothing was marked. A
    // wait, not an event: what is shown is that nothing happens.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for (child, _, _) in &fleet {
        assert_eq!(
            liveness(&a, &token, *child).await,
            "online",
            "the guard holds marking back"
        );
    }
    let metrics = a.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("nodegrid_child_disruption_guard"),
        "the guard has a gauge"
    );
    // Heartbeats return: the guard is released, once, by the leader only.
    for (child, key, seq) in &fleet {
        heartbeat(&b, *child, key, *seq, "1.0").await;
    }
    eventually("the guard is released", Duration::from_secs(6), || async {
        (!a.audit("action=child.disruption_guard_released")
            .await
            .is_empty())
        .then_some(())
    })
    .await;
    assert_eq!(
        a.audit("action=child.disruption_guard_engaged").await.len(),
        1,
        "two instances, one checker"
    );
    // The transitions went to the webhook's outbox.
    let (_, deliveries) = admin_call(
        &a,
        &token,
        "GET",
        &format!("/api/admin/webhooks/{}/deliveries", hook["id"]),
        None,
    )
    .await;
    let types: Vec<&str> = deliveries["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|delivery| delivery["event_type"].as_str())
        .collect();
    for event in ["child.online", "child.late", "child.offline"] {
        assert!(types.contains(&event), "{event} in {types:?}");
    }
    a.shut_down().await.unwrap();
    b.shut_down().await.unwrap();
}

#[actix_web::test]
async fn a_child_that_calls_too_often_is_told_to_wait() {
    let database = std::sync::Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.children.rate_per_sec = 1;
    settings.children.rate_burst = 2;
    let app = spawn_app_with(database, settings).await;
    let token = app.admin_token().await;
    let client = client_with_plan(&app, &token, "chatty", 1).await;
    let (child, key) = provision(&app, &token, client, "chatty-1").await;
    let first = heartbeat(&app, child, &key, 0, "1.0").await;
    heartbeat(&app, child, &key, first.seq, "1.0").await;
    let response = Signed::heartbeat(&key, &nonce(), 0, "1.0").send(&app).await;
    assert!(response.headers().get("retry-after").is_some());
    assert_eq!(refusal(response).await, (429, "rate_limited".to_owned()));
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("nodegrid_child_requests_total{outcome=\"rate_limited\"}"));
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn the_mother_answers_a_childs_questions_about_users_signed() {
    use nodegrid_clients::child::mother::Mother;
    use nodegrid_protocol::children::users::{
        BlockedUsersAnswer, LoginAnswer, UserCheckAnswer, verify_answer, verify_session,
    };
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let client = client_with_plan(&app, &token, "people", 1).await;
    let (child, key) = provision(&app, &token, client, "people-1").await;
    let mut ids = Vec::new();
    for name in ["amy", "ben"] {
        let user = app
            .register(name, nodegrid_protocol::auth::Role::Consumer)
            .await;
        admin_call(
            &app,
            &token,
            "POST",
            &format!("/api/admin/clients/{client}/users"),
            Some(json!({"user_id": user.user_id})),
        )
        .await;
        ids.push(user.user_id);
    }
    let outsider = app
        .register("cat", nodegrid_protocol::auth::Role::Consumer)
        .await
        .user_id;
    admin_call(
        &app,
        &token,
        "POST",
        &format!("/api/admin/users/{}/block", ids[0]),
        Some(json!({"reason": "spam"})),
    )
    .await;
    let mother = Mother::new(vec![app.address.clone()], key, Duration::from_secs(5), None).unwrap();
    let keys = public_keys(&app).await.keys;

    let check = |user_id: i64| {
        let (mother, keys) = (&mother, &keys);
        async move {
            let answer = mother
                .call(
                    reqwest::Method::POST,
                    "/api/child/users/check",
                    Some(serde_json::to_vec(&json!({"user_id": user_id})).unwrap()),
                )
                .await
                .unwrap();
            let checked: UserCheckAnswer = verify_answer(&answer.body, keys).unwrap();
            assert_eq!(
                (checked.child_id, checked.nonce.as_str()),
                (child, answer.nonce.as_str())
            );
            (checked.allowed, checked.reason)
        }
    };
    assert_eq!(check(ids[1]).await, (true, None));
    assert_eq!(check(ids[0]).await, (false, Some("user_blocked".into())));
    assert_eq!(
        check(outsider).await,
        (false, Some("not_a_client_user".into()))
    );
    assert_eq!(check(987_654).await, (false, Some("unknown_user".into())));

    let blocked = mother
        .call(
            reqwest::Method::GET,
            "/api/child/blocked-users?since_version=0",
            None,
        )
        .await
        .unwrap();
    let list: BlockedUsersAnswer = verify_answer(&blocked.body, &keys).unwrap();
    assert_eq!(
        (list.user_ids.clone(), list.unchanged),
        (vec![ids[0]], false)
    );
    let again = mother
        .call(
            reqwest::Method::GET,
            &format!("/api/child/blocked-users?since_version={}", list.version),
            None,
        )
        .await
        .unwrap();
    let again: BlockedUsersAnswer = verify_answer(&again.body, &keys).unwrap();
    assert!(again.unchanged && again.user_ids.is_empty());

    let login = |username: &'static str| {
        let mother = &mother;
        async move {
            let body = serde_json::to_vec(
                &json!({"username": username, "password": crate::helpers::PASSWORD}),
            )
            .unwrap();
            let answer = mother
                .call(reqwest::Method::POST, "/api/child/users/login", Some(body))
                .await
                .unwrap();
            (answer.body, answer.nonce)
        }
    };
    let (body, nonce) = login("ben").await;
    let answer: LoginAnswer = verify_answer(&body, &keys).unwrap();
    assert!(answer.allowed && answer.nonce == nonce, "{answer:?}");
    let session = verify_session(
        answer.session_token.as_deref().unwrap(),
        &keys,
        child,
        chrono::Utc::now(),
    )
    .unwrap();
    assert_eq!(session.user.username, "ben");
    // Another child's session, or a tampered one, does not verify.
    assert!(
        verify_session(
            answer.session_token.as_deref().unwrap(),
            &keys,
            Uuid::new_v4(),
            chrono::Utc::now()
        )
        .is_err()
    );
    let mut tampered = answer.session_token.clone().unwrap();
    tampered.insert(8, 'A');
    assert!(verify_session(&tampered, &keys, child, chrono::Utc::now()).is_err());
    let (body, _) = login("amy").await;
    let refused: LoginAnswer = verify_answer(&body, &keys).unwrap();
    assert_eq!(
        (refused.allowed, refused.reason.as_deref()),
        (false, Some("user_blocked"))
    );
    assert!(refused.session_token.is_none());
    assert_eq!(app.audit("action=child.user_login").await.len(), 1);
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn many_children_heartbeating_at_once_are_written_in_batches_on_a_small_pool() {
    let database = std::sync::Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.database_pool_size = 2;
    let app = spawn_app_with(database, settings).await;
    let token = app.admin_token().await;
    let client = client_with_plan(&app, &token, "crowd", 40).await;
    let mut children = Vec::new();
    for index in 0..40 {
        children.push(provision(&app, &token, client, &format!("crowd-{index}")).await);
    }
    // Two rounds of 40 at once, each lease checked as the child would; the second's `seq` is
    // above the first's for every child.
    let round = |last: Vec<u64>| {
        let (app, children) = (&app, &children);
        async move {
            futures_util::future::join_all(children.iter().zip(last).map(
                |((child, key), last)| async move {
                    heartbeat(app, *child, key, last, "2.0.0").await.seq
                },
            ))
            .await
        }
    };
    let first = round(vec![0; 40]).await;
    let second = round(first.clone()).await;
    assert!(first.iter().zip(&second).all(|(a, b)| b > a));
    let (_, listed) = admin_call(
        &app,
        &token,
        "GET",
        &format!("/api/admin/clients/{client}/children"),
        None,
    )
    .await;
    assert!(
        listed["children"]
            .as_array()
            .unwrap()
            .iter()
            .all(|child| child["liveness"] == "online" && child["version"] == "2.0.0")
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("nodegrid_child_heartbeat_batch_size"),
        "the batch sizes are measured"
    );
    assert_eq!(app.audit("action=child.online").await.len(), 40);
    app.shut_down().await.unwrap();
}

//! The child agent (`nodegrid child`) as a client runs it: the built binary against a real
//! mother (or, for forged answers, a mother of the test's own), its gate asked over HTTP.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use ed25519_dalek::SigningKey;
use nodegrid_protocol::auth::Role;
use nodegrid_protocol::children::admin::{Maintenance, PlanLimits, SubscriptionStatus};
use nodegrid_protocol::children::lease::{
    HeartbeatRequest, Lease, LeaseStatus, License, PublicKeyView, PublicKeysResponse, VersionStatus,
};
use nodegrid_protocol::children::signing::{encode_public_key, key_id, sign_document};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use uuid::Uuid;

use crate::children::{admin_call, child_view, client_with_plan, provision};
use crate::helpers::{
    PASSWORD, TestApp, closed_port, eventually, fresh_database, spawn_app_with, test_settings,
};

/// A child process and where its gate listens.
struct ChildProcess {
    process: Child,
    gate: String,
    http: reqwest::Client,
}

fn state_file() -> PathBuf {
    std::env::temp_dir().join(format!("nodegrid-child-{}.json", Uuid::new_v4().simple()))
}

fn start_child(mother: &str, key: &str, state_file: &PathBuf, gate_port: u16) -> ChildProcess {
    start_child_every(mother, key, state_file, gate_port, 1)
}

fn start_child_every(
    mother: &str,
    key: &str,
    state_file: &PathBuf,
    gate_port: u16,
    interval_secs: u64,
) -> ChildProcess {
    let process = Command::new(env!("CARGO_BIN_EXE_nodegrid"))
        .arg("child")
        .args(["--mother-url", mother])
        .args(["--interval-secs", &interval_secs.to_string()])
        .args(["--gate-addr", &format!("127.0.0.1:{gate_port}")])
        .args(["--request-timeout-ms", "1000"])
        .arg("--state-file")
        .arg(state_file)
        .env("NODEGRID_CHILD_API_KEY", key)
        .env(
            "NODEGRID_LOG",
            std::env::var("NODEGRID_TEST_CHILD_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the child agent starts");
    ChildProcess {
        process,
        gate: format!("http://127.0.0.1:{gate_port}"),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
    }
}

impl ChildProcess {
    async fn status(&self) -> Option<Value> {
        let response = self
            .http
            .get(format!("{}/status", self.gate))
            .send()
            .await
            .ok()?;
        response.json().await.ok()
    }

    async fn state(&self) -> String {
        self.status()
            .await
            .and_then(|status| status["state"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    async fn wait_for(&self, state: &str, timeout: Duration) -> Value {
        eventually(&format!("the child is {state}"), timeout, || async {
            self.status()
                .await
                .filter(|status| status["state"] == state)
        })
        .await
    }

    async fn login(&self, username: &str, password: &str) -> (u16, Value, Option<String>) {
        let response = self
            .http
            .post(format!("{}/login", self.gate))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let cookie = response
            .headers()
            .get("set-cookie")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        (status, response.json().await.unwrap_or(Value::Null), cookie)
    }

    async fn session(&self, cookie: &str) -> (u16, Value) {
        let pair = cookie.split(';').next().unwrap_or_default();
        let response = self
            .http
            .get(format!("{}/session", self.gate))
            .header("Cookie", pair)
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    async fn allowed(&self, user_id: i64) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}/users/{user_id}/allowed", self.gate))
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.gate))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// A mother whose heartbeat interval is one second, a client on a plan, a child of it.
async fn mother_with_child(lease_ttl: Duration) -> (TestApp, String, i64, String) {
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.children.heartbeat_interval = Duration::from_secs(1);
    settings.children.lease_ttl = lease_ttl;
    let app = spawn_app_with(database, settings).await;
    let token = app.admin_token().await;
    let client = client_with_plan(&app, &token, "tenant", 3).await;
    let (_, key) = provision(&app, &token, client, "tenant-1").await;
    (app, token, client, key)
}

async fn client_user(app: &TestApp, token: &str, client: i64, name: &str) -> i64 {
    let user = app.register(name, Role::Consumer).await;
    let (status, _) = admin_call(
        app,
        token,
        "POST",
        &format!("/api/admin/clients/{client}/users"),
        Some(json!({"user_id": user.user_id})),
    )
    .await;
    assert_eq!(status, 200);
    user.user_id
}

#[actix_web::test]
async fn a_child_signs_its_users_in_through_the_mother_and_follows_the_admins() {
    let (app, token, client, key) = mother_with_child(Duration::from_secs(30)).await;
    let alice = client_user(&app, &token, client, "alice").await;
    let carol = client_user(&app, &token, client, "carol").await;
    app.register("outsider", Role::Consumer).await;
    let state = state_file();
    let child = start_child(&app.address, &key, &state, closed_port());
    let status = child.wait_for("ACTIVE", Duration::from_secs(10)).await;
    assert_eq!(status["version_status"], "ok");

    // Sign-in through the mother: a session cookie the gate checks by itself.
    let (code, body, cookie) = child.login("alice", PASSWORD).await;
    assert_eq!(code, 200, "{body}");
    let cookie = cookie.expect("a session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let (code, session) = child.session(&cookie).await;
    assert_eq!(
        (code, session["user"]["username"].as_str()),
        (200, Some("alice"))
    );
    assert_eq!(
        child.login("alice", "wrong-password").await.1["code"],
        "invalid_credentials"
    );
    assert_eq!(
        child.login("outsider", PASSWORD).await.1["code"],
        "not_a_client_user"
    );
    // A client's user signs in only through its children.
    let direct = app
        .post(
            "/api/auth/login",
            &json!({"username": "alice", "password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(direct.status(), 403);

    // An admin blocks carol, then alice: refused at the gate within a heartbeat.
    assert_eq!(child.allowed(carol).await.0, 200);
    let (code, _) = admin_call(
        &app,
        &token,
        "POST",
        &format!("/api/admin/users/{carol}/block"),
        Some(json!({"reason": "abuse"})),
    )
    .await;
    assert_eq!(code, 200);
    eventually(
        "carol is refused at the gate",
        Duration::from_secs(5),
        || async {
            let (code, body) = child.allowed(carol).await;
            (code == 403 && body["code"] == "user_blocked").then_some(())
        },
    )
    .await;
    assert_eq!(
        child.login("carol", PASSWORD).await.1["code"],
        "user_blocked"
    );
    admin_call(
        &app,
        &token,
        "POST",
        &format!("/api/admin/users/{alice}/block"),
        Some(json!({"reason": "abuse"})),
    )
    .await;
    eventually(
        "alice's session is refused",
        Duration::from_secs(5),
        || async {
            let (code, body) = child.session(&cookie).await;
            (code == 401 && body["code"] == "user_blocked").then_some(())
        },
    )
    .await;

    // Maintenance and versions reach the child with its next lease.
    admin_call(
        &app,
        &token,
        "PUT",
        "/api/admin/maintenance",
        Some(json!({"enabled": true, "message": "back at noon"})),
    )
    .await;
    let status = child.wait_for("MAINTENANCE", Duration::from_secs(5)).await;
    assert_eq!(status["reason"], "back at noon");
    let (code, body, _) = child.login("alice", PASSWORD).await;
    assert_eq!((code, body["code"].as_str()), (503, Some("maintenance")));
    admin_call(
        &app,
        &token,
        "PUT",
        "/api/admin/maintenance",
        Some(json!({"enabled": false})),
    )
    .await;
    child.wait_for("ACTIVE", Duration::from_secs(5)).await;
    admin_call(
        &app,
        &token,
        "PUT",
        "/api/admin/versions",
        Some(json!({"min_version": "99.0.0"})),
    )
    .await;
    eventually(
        "update_required at the gate",
        Duration::from_secs(5),
        || async {
            child
                .status()
                .await
                .filter(|status| status["version_status"] == "update_required")
        },
    )
    .await;
    let (code, body, _) = child.login("carol", PASSWORD).await;
    assert_eq!(
        (code, body["code"].as_str()),
        (403, Some("update_required"))
    );
    let (_, view) = admin_call(&app, &token, "GET", "/api/admin/children", None).await;
    assert_eq!(view["children"][0]["version_status"], "update_required");
    assert_eq!(view["children"][0]["liveness"], "online");
    assert!(
        child
            .metrics()
            .await
            .contains("nodegrid_child_state{state=\"ACTIVE\"} 1")
    );
    drop(child);
    let _ = std::fs::remove_file(&state);
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn a_child_cut_off_degrades_then_blocks_when_its_lease_ends_and_a_restart_does_not_extend_it()
{
    let (app, _token, _client, key) = mother_with_child(Duration::from_secs(6)).await;
    let state = state_file();
    let gate_port = closed_port();
    let mut child = start_child(&app.address, &key, &state, gate_port);
    child.wait_for("ACTIVE", Duration::from_secs(10)).await;
    // The mother goes away; the child keeps serving on its lease, degraded.
    app.shut_down().await.unwrap();
    let degraded = child.wait_for("DEGRADED", Duration::from_secs(10)).await;
    let valid_until: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(degraded["lease_valid_until"].clone()).unwrap();
    assert_eq!(child.allowed(1).await.0, 200, "DEGRADED still answers");
    // A restart resumes where it was: no fresh STARTUP grace.
    child.process.kill().await.unwrap();
    let child = start_child("http://127.0.0.1:9", &key, &state, gate_port);
    let resumed = eventually(
        "the restarted child answers",
        Duration::from_secs(10),
        || async { child.status().await },
    )
    .await;
    assert_ne!(resumed["state"], "STARTUP", "{resumed}");
    assert_ne!(
        resumed["state"], "BLOCKED",
        "the lease has time left: {resumed}"
    );
    let blocked = child.wait_for("BLOCKED", Duration::from_secs(10)).await;
    let blocked_at = chrono::Utc::now();
    assert_eq!(blocked["reason"], "lease_expired");
    assert!(
        blocked_at < valid_until + chrono::Duration::milliseconds(1_500),
        "blocked at {blocked_at}, the lease ran until {valid_until}: the restart extended it"
    );
    let (code, body) = child.allowed(1).await;
    assert_eq!((code, body["code"].as_str()), (403, Some("blocked")));
    drop(child);
    let _ = std::fs::remove_file(&state);
}

/// How the test's own mother answers heartbeats.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Forgery {
    /// A lease signed with a key other than the published one.
    WrongKey,
    /// A valid lease first, then that same answer again and again.
    Replay,
}

struct FakeMother {
    key: SigningKey,
    forgery: Forgery,
    last_answer: Mutex<Option<String>>,
    seq: Mutex<u64>,
}

fn sample_lease(child_id: Uuid, seq: u64, nonce: &str, key_id: String) -> Lease {
    let now = chrono::Utc::now();
    Lease {
        child_id,
        seq,
        issued_at: now,
        valid_until: now + chrono::Duration::seconds(300),
        nonce: nonce.to_owned(),
        status: LeaseStatus::Active,
        reason: None,
        version_status: VersionStatus::Ok,
        min_version: None,
        latest_version: None,
        maintenance: Maintenance::default(),
        license: License {
            plan: "fake".into(),
            limits: PlanLimits {
                max_children: 1,
                max_users: 1,
            },
            features: vec![],
            expires_at: None,
            status: SubscriptionStatus::Active,
        },
        blocked_users_version: 0,
        config: json!({}),
        config_hash: String::new(),
        key_id,
        heartbeat_interval_s: 1,
    }
}

async fn fake_heartbeat(
    mother: web::Data<FakeMother>,
    _request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let Ok(heartbeat) = serde_json::from_slice::<HeartbeatRequest>(&body) else {
        return HttpResponse::BadRequest().finish();
    };
    if mother.forgery == Forgery::Replay
        && let Some(answer) = mother.last_answer.lock().unwrap().clone()
    {
        return HttpResponse::Ok()
            .content_type("application/json")
            .body(answer);
    }
    let seq = {
        let mut seq = mother.seq.lock().unwrap();
        *seq += 1;
        *seq
    };
    let published = key_id(&mother.key.verifying_key());
    let lease = sample_lease(Uuid::from_u128(42), seq, &heartbeat.nonce, published);
    let text = serde_json::to_string(&lease).unwrap();
    let signer = match mother.forgery {
        Forgery::WrongKey => SigningKey::from_bytes(&[99; 32]),
        Forgery::Replay => mother.key.clone(),
    };
    let answer = format!(
        "{{\"lease\":{text},\"signature\":\"{}\"}}",
        sign_document(&signer, text.as_bytes())
    );
    *mother.last_answer.lock().unwrap() = Some(answer.clone());
    HttpResponse::Ok()
        .content_type("application/json")
        .body(answer)
}

async fn fake_public_keys(mother: web::Data<FakeMother>) -> HttpResponse {
    HttpResponse::Ok().json(PublicKeysResponse {
        keys: vec![PublicKeyView {
            key_id: key_id(&mother.key.verifying_key()),
            algorithm: "ed25519".into(),
            public_key: encode_public_key(&mother.key.verifying_key()),
            current: true,
        }],
    })
}

/// A mother of the test's own on loopback, on a thread and System of its own.
fn start_fake_mother(forgery: Forgery) -> String {
    let (started_tx, started) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let mother = web::Data::new(FakeMother {
                key: SigningKey::from_bytes(&[7; 32]),
                forgery,
                last_answer: Mutex::new(None),
                seq: Mutex::new(0),
            });
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(mother.clone())
                    .route("/api/child/heartbeat", web::post().to(fake_heartbeat))
                    .route("/api/child/public-keys", web::get().to(fake_public_keys))
            })
            .workers(1)
            .disable_signals()
            .bind("127.0.0.1:0")
            .unwrap();
            let port = server.addrs()[0].port();
            started_tx.send(port).unwrap();
            let _ = server.run().await;
        });
    });
    format!("http://127.0.0.1:{}", started.recv().unwrap())
}

#[actix_web::test]
async fn a_child_refuses_forged_and_replayed_leases() {
    let key = nodegrid_protocol::children::signing::new_child_key([3; 20]);
    // Signed with another key than the published one: never believed; three attempts and
    // the child blocks.
    let forged = start_fake_mother(Forgery::WrongKey);
    let state = state_file();
    let child = start_child(&forged, &key, &state, closed_port());
    let blocked = child.wait_for("BLOCKED", Duration::from_secs(15)).await;
    assert_eq!(blocked["reason"], "mother_unreachable");
    assert!(
        child
            .metrics()
            .await
            .contains("nodegrid_child_heartbeat_failures_total{kind=\"bad_lease\"}")
    );
    drop(child);
    let _ = std::fs::remove_file(&state);

    // A valid lease, then the same answer replayed: refused (it answers another heartbeat),
    // and after three the child degrades.
    let replaying = start_fake_mother(Forgery::Replay);
    let state = state_file();
    let child = start_child(&replaying, &key, &state, closed_port());
    child.wait_for("ACTIVE", Duration::from_secs(10)).await;
    child.wait_for("DEGRADED", Duration::from_secs(15)).await;
    let metrics = child.metrics().await;
    assert!(
        metrics.contains("nodegrid_child_heartbeat_failures_total{kind=\"nonce_mismatch\"}"),
        "{metrics}"
    );
    assert_eq!(child.state().await, "DEGRADED");
    drop(child);
    let _ = std::fs::remove_file(&state);
}

#[actix_web::test]
async fn an_admins_action_on_one_instance_reaches_a_child_connected_to_another_within_a_second() {
    let database = Arc::new(fresh_database().await);
    let settings = test_settings(&database.url);
    let a = spawn_app_with(database.clone(), settings.clone()).await;
    let b = spawn_app_with(database, settings).await;
    let token = b.admin_token().await;
    let client = client_with_plan(&b, &token, "pushed", 2).await;
    let (_, key) = provision(&b, &token, client, "pushed-1").await;
    let dave = client_user(&b, &token, client, "dave").await;
    let state = state_file();
    // Heartbeats every 30 s: what arrives sooner came by the control socket (on A).
    let child = start_child_every(&a.address, &key, &state, closed_port(), 30);
    child.wait_for("ACTIVE", Duration::from_secs(10)).await;
    eventually(
        "the control socket is open",
        Duration::from_secs(10),
        || async {
            child
                .status()
                .await
                .filter(|status| status["control_connected"] == true)
        },
    )
    .await;
    // Either instance's registry tells the admin where the socket is.
    let (_, children) = admin_call(&b, &token, "GET", "/api/admin/children", None).await;
    let id = children["children"][0]["id"].as_str().unwrap().to_owned();
    for instance in [&a, &b] {
        let child = child_view(instance, &token, &id).await;
        assert_eq!(
            child["control"]["instance"],
            a.instance_id.to_string(),
            "{child}"
        );
        let (_, listed) = admin_call(instance, &token, "GET", "/api/admin/children", None).await;
        assert_eq!(listed["children"][0]["control"], child["control"]);
    }
    let (code, _, cookie) = child.login("dave", PASSWORD).await;
    assert_eq!(code, 200);
    let cookie = cookie.unwrap();

    let (code, _) = admin_call(
        &b,
        &token,
        "POST",
        &format!("/api/admin/users/{dave}/block"),
        Some(json!({"reason": "abuse"})),
    )
    .await;
    assert_eq!(code, 200);
    eventually("the block is pushed", Duration::from_secs(1), || async {
        let (code, body) = child.allowed(dave).await;
        (code == 403 && body["code"] == "user_blocked").then_some(())
    })
    .await;
    assert_eq!(child.session(&cookie).await.0, 401);
    admin_call(
        &b,
        &token,
        "POST",
        &format!("/api/admin/users/{dave}/unblock"),
        Some(json!({})),
    )
    .await;
    eventually("the unblock is pushed", Duration::from_secs(1), || async {
        (child.allowed(dave).await.0 == 200).then_some(())
    })
    .await;

    admin_call(
        &b,
        &token,
        "PUT",
        "/api/admin/maintenance",
        Some(json!({"enabled": true, "message": "pushed"})),
    )
    .await;
    child.wait_for("MAINTENANCE", Duration::from_secs(1)).await;
    admin_call(
        &b,
        &token,
        "PUT",
        "/api/admin/maintenance",
        Some(json!({"enabled": false})),
    )
    .await;
    child.wait_for("ACTIVE", Duration::from_secs(1)).await;
    admin_call(
        &b,
        &token,
        "PUT",
        "/api/admin/versions",
        Some(json!({"min_version": "99.0"})),
    )
    .await;
    eventually(
        "the version policy is pushed",
        Duration::from_secs(2),
        || async {
            child
                .status()
                .await
                .filter(|status| status["version_status"] == "update_required")
        },
    )
    .await;

    // A rotated key ends the socket: the old key opens no other.
    admin_call(
        &b,
        &token,
        "POST",
        &format!("/api/admin/children/{id}/rotate-key"),
        None,
    )
    .await;
    eventually(
        "the control socket is closed",
        Duration::from_secs(2),
        || async {
            child
                .status()
                .await
                .filter(|status| status["control_connected"] == false)
        },
    )
    .await;
    for instance in [&a, &b] {
        eventually(
            "the closed socket is withdrawn",
            Duration::from_secs(2),
            || async {
                let child = child_view(instance, &token, &id).await;
                child["control"].is_null().then_some(())
            },
        )
        .await;
    }
    drop(child);
    let _ = std::fs::remove_file(&state);
    a.shut_down().await.unwrap();
    b.shut_down().await.unwrap();
}

/// A certificate authority of the test's own, and a server certificate for loopback it signs.
struct TestPki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn test_pki(name: &str) -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("nodegrid test CA {name}"));
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).unwrap();
    TestPki {
        ca_pem: ca_cert.pem(),
        cert_pem: leaf_cert.pem(),
        key_pem: leaf_key.serialize_pem(),
    }
}

/// A client that trusts only `ca_pem`, with the TLS versions given.
fn tls_client(
    ca_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> reqwest::Client {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[actix_web::test]
async fn a_child_speaks_tls_1_3_to_a_mother_that_reloads_its_certificate() {
    let dir = std::env::temp_dir().join(format!("nodegrid-tls-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key, ca) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("ca.pem"),
    );
    let first = test_pki("one");
    std::fs::write(&cert, &first.cert_pem).unwrap();
    std::fs::write(&key, &first.key_pem).unwrap();
    std::fs::write(&ca, &first.ca_pem).unwrap();

    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.children.heartbeat_interval = Duration::from_secs(1);
    settings.tls = Some(nodegrid_services::config::TlsSettings {
        cert: cert.clone(),
        key: key.clone(),
        tls13_only: true,
    });
    let app = spawn_app_with(database, settings).await;
    let https = format!("https://127.0.0.1:{}", app.port);
    // The test's own calls: HTTPS, trusting the test CA.
    let trusting_first = tls_client(&first.ca_pem, &[&rustls::version::TLS13]);
    let login: Value = trusting_first
        .post(format!("{https}/api/auth/login"))
        .json(&json!({"username": crate::helpers::TEST_ADMIN, "password": crate::helpers::TEST_ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_owned();
    let call = |method: &'static str, path: String, body: Value| {
        let (client, https, token) = (trusting_first.clone(), https.clone(), token.clone());
        async move {
            let response = client
                .request(method.parse().unwrap(), format!("{https}{path}"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(
                response.status().is_success(),
                "{method} {path}: {}",
                response.status()
            );
            response.json::<Value>().await.unwrap()
        }
    };
    let plan = call(
        "POST",
        "/api/admin/plans".into(),
        json!({"name": "tls-plan", "limits": {"max_children": 1, "max_users": 1}}),
    )
    .await;
    let client = call(
        "POST",
        "/api/admin/clients".into(),
        json!({"name": "tls", "plan_id": plan["id"], "subscription": {"status": "active"}}),
    )
    .await;
    let issued = call(
        "POST",
        format!("/api/admin/clients/{}/children", client["id"]),
        json!({"name": "tls-1"}),
    )
    .await;
    let child_key = issued["api_key"].as_str().unwrap().to_owned();

    // Neither plain HTTP nor TLS 1.2 is served.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/health", app.port))
        .send()
        .await;
    assert!(
        plain
            .map(|response| !response.status().is_success())
            .unwrap_or(true)
    );
    let old = tls_client(&first.ca_pem, &[&rustls::version::TLS12]);
    assert!(
        old.get(format!("{https}/health")).send().await.is_err(),
        "TLS 1.2 is refused"
    );

    // The child over HTTPS and WSS, trusting the test CA through --ca-file.
    let state = state_file();
    let mut process = Command::new(env!("CARGO_BIN_EXE_nodegrid"));
    process
        .arg("child")
        .args([
            "--mother-url",
            &https,
            "--interval-secs",
            "1",
            "--request-timeout-ms",
            "1000",
        ])
        .arg("--ca-file")
        .arg(&ca)
        .arg("--state-file")
        .arg(&state);
    let gate_port = closed_port();
    process
        .args(["--gate-addr", &format!("127.0.0.1:{gate_port}")])
        .env("NODEGRID_CHILD_API_KEY", &child_key)
        .env("NODEGRID_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let child = ChildProcess {
        process: process.spawn().unwrap(),
        gate: format!("http://127.0.0.1:{gate_port}"),
        http: reqwest::Client::new(),
    };
    child.wait_for("ACTIVE", Duration::from_secs(10)).await;
    eventually(
        "the control socket over WSS",
        Duration::from_secs(10),
        || async {
            child
                .status()
                .await
                .filter(|status| status["control_connected"] == true)
        },
    )
    .await;

    // The device agent too: HTTPS login and a reading over WSS, trusting the test CA.
    let registered = trusting_first
        .post(format!("{https}/api/auth/register"))
        .json(&json!({"username": "tls-device", "password": PASSWORD, "role": "producer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let device = Command::new(env!("CARGO_BIN_EXE_nodegrid"))
        .args(["device", "--once", "--device-id", "tls-pi"])
        .arg("--ca-file")
        .arg(&ca)
        .env("NODEGRID_DEVICE_USERNAME", "tls-device")
        .env("NODEGRID_DEVICE_PASSWORD", PASSWORD)
        .env("NODEGRID_AUTH_URL", format!("{https}/api/auth"))
        .env(
            "NODEGRID_WEBSOCKET_URL",
            format!("wss://127.0.0.1:{}/producer", app.port),
        )
        .env("NODEGRID_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(
        device.status.success(),
        "{}",
        String::from_utf8_lossy(&device.stderr)
    );

    // A renewed certificate, from another authority, is served without a restart: a client
    // trusting the new authority gets through.
    let second = test_pki("two");
    std::fs::write(&key, &second.key_pem).unwrap();
    std::fs::write(&cert, &second.cert_pem).unwrap();
    let trusting_second = tls_client(&second.ca_pem, &[&rustls::version::TLS13]);
    eventually(
        "the new certificate is served",
        Duration::from_secs(10),
        || async {
            let response = trusting_second
                .get(format!("{https}/health"))
                .send()
                .await
                .ok()?;
            response.status().is_success().then_some(())
        },
    )
    .await;
    // A new connection trusting only the old authority is refused now (the child's open
    // connections keep the session they made).
    let fresh_first = tls_client(&first.ca_pem, &[&rustls::version::TLS13]);
    assert!(
        fresh_first
            .get(format!("{https}/health"))
            .send()
            .await
            .is_err()
    );
    drop(child);
    let _ = std::fs::remove_file(&state);
    let _ = std::fs::remove_dir_all(&dir);
    app.shut_down().await.unwrap();
}

//! What every test needs: a fresh database, a unique Redis prefix, a server on port 0, and
//! bounded waits.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nodegrid_actors::app::{Application, ShutdownTrigger};
use nodegrid_actors::telemetry;
use nodegrid_protocol::auth::{Role, TokenResponse, UserIdentity};
use nodegrid_services::bus::RedisBus;
use nodegrid_services::config::{LogFormat, Settings};
use nodegrid_services::identity::passwords::PasswordCost;
use nodegrid_services::ratelimit::RateRule;
use serde_json::{Value, json};

/// Where the tests find a Postgres they may create databases in.
pub fn admin_database_url() -> String {
    std::env::var("NODEGRID_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Where the tests find Redis.
pub fn redis_url() -> String {
    std::env::var("NODEGRID_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The URL of database `name` on the test server.
pub fn database_url(name: &str) -> String {
    let admin = admin_database_url();
    let base = admin
        .rsplit_once('/')
        .map(|(base, _)| base)
        .unwrap_or(&admin);
    format!("{base}/{name}")
}

/// A database that exists for one test and is dropped when this value is.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

/// Test databases are named `ngt_<unix seconds>_<random>`, so that ones left behind by a killed
/// run can be recognised and dropped once they are an hour old.
const TEST_DATABASE_PREFIX: &str = "ngt_";
const STALE_AFTER_SECS: u64 = 3_600;

pub async fn fresh_database() -> TestDatabase {
    static SWEPT: AtomicBool = AtomicBool::new(false);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let admin = admin_client().await;
    if !SWEPT.swap(true, Ordering::SeqCst) {
        let rows = admin
            .query(
                "SELECT datname FROM pg_database WHERE datname LIKE 'ngt\\_%'",
                &[],
            )
            .await
            .expect("list test databases");
        for row in rows {
            let name: String = row.get(0);
            let created = name
                .trim_start_matches(TEST_DATABASE_PREFIX)
                .split('_')
                .next()
                .and_then(|secs| secs.parse::<u64>().ok());
            if created.is_some_and(|created| now.saturating_sub(created) > STALE_AFTER_SECS) {
                let _ = admin
                    .simple_query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await;
            }
        }
    }
    let name = format!(
        "{TEST_DATABASE_PREFIX}{now}_{}",
        uuid::Uuid::new_v4().simple()
    );
    admin
        .simple_query(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create test database");
    TestDatabase {
        url: database_url(&name),
        name,
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Dropping needs a connection; do it on a thread of its own so that it works from inside
        // any runtime, and wait for it so that the database is gone when the test ends.
        let dropper = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let admin = admin_client().await;
                let _ = admin
                    .simple_query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await;
            });
        });
        let _ = dropper.join();
    }
}

/// A connection to the test server's maintenance database.
pub async fn admin_client() -> tokio_postgres::Client {
    connect(&admin_database_url()).await
}

/// A plain connection to any database, driven on the current runtime.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| panic!("connect to {url}: {error}"));
    tokio::spawn(connection);
    client
}

/// A Redis prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("ngt-{}", uuid::Uuid::new_v4().simple())
}

/// Settings for a test server: port 0, one HTTP worker, the given database, a unique prefix.
pub fn test_settings(database_url: &str) -> Settings {
    let mut settings = Settings::defaults().expect("defaults");
    settings.http_addr = "127.0.0.1:0".parse().expect("addr");
    settings.grpc_addr = "127.0.0.1:0".parse().expect("addr");
    settings.http_workers = Some(1);
    settings.database_url = database_url.to_owned();
    settings.database_pool_size = 4;
    settings.redis_url = redis_url();
    settings.redis_prefix = unique_prefix();
    settings.shutdown_timeout = Duration::from_secs(5);
    settings.jwt_secret = Some(TEST_JWT_SECRET.into());
    // Cheap hashes keep the suite fast; the production cost is a setting, not a code path.
    settings.password_cost = PasswordCost {
        memory_kib: 1024,
        iterations: 1,
    };
    // Generous limits: only the rate-limit tests want to hit them.
    settings.auth_ip_rule = RateRule {
        per_minute: 100_000,
        burst: 100_000,
    };
    settings.auth_username_rule = settings.auth_ip_rule;
    settings.admin_username = Some(TEST_ADMIN.to_owned());
    settings.admin_password = Some(TEST_ADMIN_PASSWORD.into());
    // No pNode polling unless a test points the server at a simulator.
    settings.pnodes.seeds = Vec::new();
    // Tests poll the pNode API in tight loops; the one test of its limit sets it.
    settings.pnodes.api_rate_per_sec = 0;
    settings
}

/// The signing key of every test server.
pub const TEST_JWT_SECRET: &str = "test-secret-0123456789abcdef0123456789abcdef";
/// The admin every test server creates at start-up.
pub const TEST_ADMIN: &str = "root";
pub const TEST_ADMIN_PASSWORD: &str = "root-password";

/// The password of every user the tests register.
pub const PASSWORD: &str = "a-good-password";

/// A server running inside the test's actix System.
pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub instance_id: uuid::Uuid,
    /// The separate `/metrics` listener, when the settings ask for one.
    pub metrics_port: Option<u16>,
    /// The gRPC API.
    pub grpc_port: u16,
    pub http: reqwest::Client,
    pub bus: RedisBus,
    pub bridge: actix::Addr<nodegrid_actors::bridge::RedisBridge>,
    pub shutdown: ShutdownTrigger,
    pub pnodes: nodegrid_actors::pnodes::PnodeRuntime,
    pub stopped: tokio::sync::oneshot::Receiver<std::io::Result<()>>,
    // Declared last so that it is dropped after the server's handles; kept alive, not read.
    #[allow(dead_code)]
    pub database: std::sync::Arc<TestDatabase>,
}

/// A server with a fresh database of its own.
pub async fn spawn_app() -> TestApp {
    let database = std::sync::Arc::new(fresh_database().await);
    let settings = test_settings(&database.url);
    spawn_app_with(database, settings).await
}

/// A server with the given database and settings.
pub async fn spawn_app_with(database: std::sync::Arc<TestDatabase>, settings: Settings) -> TestApp {
    spawn_app_with_routes(database, settings, |_| {}).await
}

/// A server with the given database and settings and some routes of the test's own.
pub async fn spawn_app_with_routes(
    database: std::sync::Arc<TestDatabase>,
    settings: Settings,
    extra_routes: fn(&mut actix_web::web::ServiceConfig),
) -> TestApp {
    // NODEGRID_TEST_LOG raises the level when a failure needs the server's story.
    let filter = std::env::var("NODEGRID_TEST_LOG").unwrap_or_else(|_| "warn".to_owned());
    telemetry::init_tracing(LogFormat::Human, &filter);
    let app = Application::build_with_routes(settings, extra_routes)
        .await
        .expect("application starts");
    let port = app.port();
    let (stopped_tx, stopped) = tokio::sync::oneshot::channel();
    let test_app = TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        instance_id: app.instance_id(),
        metrics_port: app.metrics_port(),
        grpc_port: app.grpc_port(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            // Well under the server's keep-alive: a connection the server is closing at the
            // moment it is reused fails the request ("connection closed before message
            // completed"), a race, not a defect of the test's subject.
            .pool_idle_timeout(Duration::from_secs(1))
            .build()
            .expect("http client"),
        bus: app.bus().clone(),
        bridge: app.bridge(),
        shutdown: app.shutdown_trigger(),
        pnodes: app.pnodes(),
        stopped,
        database,
    };
    actix_web::rt::spawn(async move {
        let _ = stopped_tx.send(app.run_until_stopped().await);
    });
    test_app
}

impl TestApp {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {path}: {error}"))
    }

    pub async fn post(&self, path: &str, body: &Value, token: Option<&str>) -> reqwest::Response {
        let mut request = self.http.post(format!("{}{path}", self.address)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request
            .send()
            .await
            .unwrap_or_else(|error| panic!("POST {path}: {error}"))
    }

    pub async fn get_with(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.address))
            .bearer_auth(token)
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {path}: {error}"))
    }

    /// Registers a user and returns it; panics unless the answer is 201.
    pub async fn register(&self, username: &str, role: Role) -> UserIdentity {
        let response = self
            .post(
                "/api/auth/register",
                &json!({"username": username, "password": PASSWORD, "role": role}),
                None,
            )
            .await;
        assert_eq!(response.status(), 201, "register {username}");
        response.json().await.unwrap()
    }

    /// Logs in with the test password; panics unless the answer is 200.
    pub async fn login(&self, username: &str, password: &str) -> TokenResponse {
        let response = self
            .post(
                "/api/auth/login",
                &json!({"username": username, "password": password}),
                None,
            )
            .await;
        assert_eq!(response.status(), 200, "login {username}");
        response.json().await.unwrap()
    }

    /// An access token of `username` that lives an hour whatever the server's token lifetime,
    /// for tests that shorten the lifetime of everyone else's tokens.
    pub async fn long_lived_token(&self, username: &str) -> String {
        self.long_lived_token_with(username, PASSWORD).await
    }

    /// [`Self::long_lived_token`] for a user with another password.
    pub async fn long_lived_token_with(&self, username: &str, password: &str) -> String {
        use nodegrid_services::identity::tokens::{AccessTokens, JwtKey, TokenSubject};
        let login = self.login(username, password).await;
        let signer = AccessTokens::new(
            &JwtKey {
                id: "k1".into(),
                secret: TEST_JWT_SECRET.into(),
            },
            &[],
            Duration::from_secs(3_600),
        );
        signer
            .issue(&TokenSubject {
                user_id: login.user_id,
                username: username.to_owned(),
                role: login.role,
                token_version: 0,
                session_id: uuid::Uuid::new_v4(),
            })
            .unwrap()
    }

    /// An access token of the configured admin.
    pub async fn admin_token(&self) -> String {
        self.login(TEST_ADMIN, TEST_ADMIN_PASSWORD)
            .await
            .access_token
    }

    /// The actions of the audit log, newest first, matching `query` (e.g. `action=user.block`).
    pub async fn audit(&self, query: &str) -> Vec<Value> {
        let token = self.admin_token().await;
        self.audit_with(&token, query).await
    }

    /// [`Self::audit`] with a token the test already has.
    pub async fn audit_with(&self, token: &str, query: &str) -> Vec<Value> {
        let response = self
            .get_with(&format!("/api/admin/audit?per_page=200&{query}"), token)
            .await;
        assert_eq!(response.status(), 200);
        let page: Value = response.json().await.unwrap();
        page["items"].as_array().unwrap().clone()
    }

    /// Fires the graceful shutdown and waits for it to finish.
    pub async fn shut_down(self) -> std::io::Result<()> {
        self.shutdown.fire();
        tokio::time::timeout(Duration::from_secs(15), self.stopped)
            .await
            .expect("shutdown finishes in time")
            .expect("server task reports")
    }
}

/// How many Redis connections subscribe `channel`: on a cluster, the sum over its primaries
/// (each counts only its own subscribers).
pub async fn channel_subscribers(bus: &RedisBus, channel: &str) -> Option<i64> {
    use fred::interfaces::{ClientLike as _, ClusterInterface as _, PubsubInterface as _};
    let client = bus.publisher();
    if !client.is_clustered() {
        let counts: Vec<(String, i64)> = client.pubsub_numsub(channel).await.ok()?;
        return Some(counts.first()?.1);
    }
    let mut total = 0;
    for node in client.cached_cluster_state()?.unique_primary_nodes() {
        let counts: Vec<(String, i64)> = client
            .with_cluster_node(node)
            .pubsub_numsub(channel)
            .await
            .ok()?;
        total += counts.first()?.1;
    }
    Some(total)
}

/// Polls `condition` until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = condition().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TCP port that nothing listens on right now.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

/// A `nodegrid` process started from the built binary.
pub struct ServerProcess {
    pub child: Child,
    pub port: u16,
    pub log: std::sync::mpsc::Receiver<String>,
    /// The lines logged up to "listening", read while waiting for it.
    startup_log: std::cell::RefCell<Vec<String>>,
}

/// Starts `nodegrid serve` with JSON logs on port 0 and waits for its "listening" line.
pub fn spawn_server_process(database_url: &str, redis_prefix: &str) -> ServerProcess {
    spawn_server_process_on(database_url, redis_prefix, 0)
}

/// Starts `nodegrid serve` on `port` (0: any) with the test servers' secret and password cost.
pub fn spawn_server_process_on(database_url: &str, redis_prefix: &str, port: u16) -> ServerProcess {
    spawn_server_process_with(database_url, redis_prefix, port, &[])
}

/// [`spawn_server_process_on`] with more environment variables (e.g. pNode seeds).
pub fn spawn_server_process_with(
    database_url: &str,
    redis_prefix: &str,
    port: u16,
    env: &[(&str, &str)],
) -> ServerProcess {
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nodegrid"))
        .args([
            "serve",
            "--http-addr",
            &addr,
            "--http-workers",
            "1",
            "--grpc-addr",
            "127.0.0.1:0",
        ])
        .env("NODEGRID_JWT_SECRET", TEST_JWT_SECRET)
        .env("NODEGRID_PASSWORD_MEMORY_KIB", "1024")
        .env("NODEGRID_PASSWORD_ITERATIONS", "1")
        .args(["--log-format", "json", "--log"])
        // `NODEGRID_LOG` among `env` sets the level (a flag would beat the variable).
        .arg(
            env.iter()
                .find(|(name, _)| *name == "NODEGRID_LOG")
                .map_or("info", |(_, level)| level),
        )
        .env("NODEGRID_DATABASE_URL", database_url)
        .env("NODEGRID_REDIS_URL", redis_url())
        .env("NODEGRID_REDIS_PREFIX", redis_prefix)
        .env("NODEGRID_SHUTDOWN_TIMEOUT_SECS", "10")
        // Polling is off unless seeds are named; nothing in the environment names any.
        .env_remove("NODEGRID_PNODE_SEEDS")
        .env("NODEGRID_PNODE_API_RATE_PER_SEC", "0")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nodegrid");
    let stderr = child.stderr.take().expect("stderr");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut startup_log = Vec::new();
    let port = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(remaining)
            .expect("nodegrid logs a listening line in time");
        startup_log.push(line.clone());
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if event["message"] == "listening" {
            let addr = event["addr"].as_str().expect("addr field");
            let (_, port) = addr.rsplit_once(':').expect("host:port");
            break port.parse().expect("port");
        }
    };
    ServerProcess {
        child,
        port,
        log: lines,
        startup_log: std::cell::RefCell::new(startup_log),
    }
}

impl ServerProcess {
    /// Sends a Unix signal by name (TERM, INT, KILL).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "nodegrid did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every log line written so far and not drained before.
    pub fn drain_log(&self) -> Vec<String> {
        let mut lines = std::mem::take(&mut *self.startup_log.borrow_mut());
        lines.extend(self.log.try_iter());
        lines
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

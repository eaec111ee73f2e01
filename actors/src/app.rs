//! The application: everything one `nodegrid serve` process runs, built from its settings.
//!
//! [`Application::build`] connects to Postgres (fatal if it cannot), applies migrations, starts
//! the Redis connections (never fatal: Redis may come later), starts the actors, and binds the
//! HTTP listener. [`Application::run_until_stopped`] serves until the [`ShutdownTrigger`] fires
//! (on SIGTERM/SIGINT in the binary, by hand in tests), then shuts down in order: stop accepting
//! and drain in-flight requests (bounded by the shutdown timeout), stop the actors, close Redis,
//! close the pool.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix::{Addr, Supervisor};
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use nodegrid_protocol::stream::close;
use nodegrid_services::bus::{BusError, RedisBus};
use nodegrid_services::children::Children;
use nodegrid_services::config::Settings;
use nodegrid_services::db::{Database, DbError};
use nodegrid_services::identity::api_tokens::ApiTokens;
use nodegrid_services::identity::{Identity, IdentityError};
use nodegrid_services::lease::{LeaderLease, LeaseKeeper};
use nodegrid_services::pnodes::client::ClientSetupError;
use nodegrid_services::shared_state::SharedState;
use nodegrid_services::streams::access::StreamAccess;
use nodegrid_services::streams::data::DataStore;
use nodegrid_services::streams::directory::ProducerDirectory;
use nodegrid_services::streams::history::StreamHistory;
use nodegrid_services::streams::policies::ProducerPolicies;
use nodegrid_services::streams::publisher::{ProducerRate, StreamPublisher};
use nodegrid_services::streams::subscriptions::Subscriptions;
use secrecy::ExposeSecret;
use tokio::sync::watch;
use uuid::Uuid;

use crate::bridge::{RedisBridge, ShutdownBridge};
use crate::children::checker::HeartbeatChecker;
use crate::children::registry::{ChildRegistry, CloseControls};
use crate::grpc::{GrpcServer, NodeApi};
use crate::housekeeping::{self, Housekeeper};
use crate::http;
use crate::http::boundary::{BodyTimeout, ConnectionCounter};
use crate::node_registry;
use crate::pnodes::PnodeRuntime;
use crate::state::AppState;
use crate::state_watcher::StateWatcher;
use crate::stream::fanout::{ShutdownFanout, StreamFanout};
use crate::stream::ingest::Ingest;
use crate::stream::presence::Presence;
use crate::stream::registry::{CloseAll, ConnectionRegistry, SocketRole};
use crate::stream::report::ConnectionsReporter;
use crate::stream::writer::{DataWriter, Drain};
use crate::telemetry::{self, MetricsSetupError};
use nodegrid_services::ratelimit::LocalRateLimiter;
use nodegrid_services::registry::NodeRegistry;
use nodegrid_services::webhooks::Webhooks;
use nodegrid_services::webhooks::delivery::{Deliverer, DelivererSetupError};

/// How often the Prometheus recorder drains its histograms' buffers.
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Client addresses the limiter of unmatched requests keeps buckets for at most.
const NOT_FOUND_LIMITER_MAX_CLIENTS: usize = 100_000;

/// How long start-up waits for Redis before going on without it.
const REDIS_START_WAIT: Duration = Duration::from_secs(2);
/// How long open gRPC calls may run on at shutdown before they are cut (watch streams end
/// only with their clients).
const GRPC_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Database(#[from] DbError),
    #[error(transparent)]
    Redis(#[from] BusError),
    #[error("TLS: {0}")]
    Tls(crate::tls::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Metrics(#[from] MetricsSetupError),
    #[error("identity: {0}")]
    Identity(#[from] IdentityError),
    #[error("cannot load {name}: {source}")]
    SharedState { name: &'static str, source: DbError },
    #[error("pNode analytics: {0}")]
    Pnodes(#[from] ClientSetupError),
    #[error(transparent)]
    Webhooks(#[from] DelivererSetupError),
}

/// Fires the graceful shutdown of one [`Application`]. Cheap to clone; firing twice is harmless.
#[derive(Clone)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownTrigger {
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

pub struct Application {
    instance_id: Uuid,
    port: u16,
    server: Server,
    /// The separate `/metrics` listener (`--metrics-addr`), and its port.
    metrics_server: Option<(Server, u16)>,
    database: Database,
    bus: RedisBus,
    bridge: Addr<RedisBridge>,
    fanout: Addr<StreamFanout>,
    data_writer: Addr<DataWriter>,
    shutdown: ShutdownTrigger,
    pnodes: PnodeRuntime,
    pnode_lease: Option<LeaseKeeper>,
    housekeeping_lease: LeaseKeeper,
    grpc: GrpcServer,
    keeper_stop: watch::Sender<bool>,
}

impl Application {
    /// Builds and binds everything; the server starts serving when [`Self::run_until_stopped`]
    /// is polled. Must be called inside an actix System.
    pub async fn build(settings: Settings) -> Result<Application, StartError> {
        Application::build_with_routes(settings, |_| {}).await
    }

    /// [`Self::build`], with `extra_routes` mounted beside the server's own. Tests use it to
    /// add routes whose behaviour they control (a slow request, for the drain on shutdown).
    pub async fn build_with_routes(
        settings: Settings,
        extra_routes: fn(&mut web::ServiceConfig),
    ) -> Result<Application, StartError> {
        let instance_id = Uuid::new_v4();
        let prometheus = telemetry::prometheus()?;
        let process_collector = metrics_process::Collector::default();
        process_collector.describe();

        let database =
            Database::connect(&settings.database_url, settings.database_pool_size).await?;
        let report = database.migrate().await?;
        if !report.applied.is_empty() {
            tracing::info!(versions = ?report.applied, "applied migrations");
        }

        let bus = RedisBus::start_buffered(
            &settings.redis_url,
            &settings.redis_prefix,
            settings.redis_subscriber_buffer as usize,
        )?;
        // Give Redis a moment so that a healthy deployment is ready as soon as it listens; a
        // Redis that is down does not stop the start, `/ready` reports it until it is back.
        if !bus.wait_connected(REDIS_START_WAIT).await {
            tracing::warn!(url = %redacted_url(&settings.redis_url), "Redis is not reachable yet; starting anyway and retrying in the background");
        }
        let bridge = RedisBridge::start_supervised(bus.clone());
        let policies = ProducerPolicies::new(
            database.clone(),
            bus.clone(),
            instance_id,
            settings.stream_defaults,
        );
        let fanout = StreamFanout::start_supervised(bus.clone(), policies.clone());

        if settings.jwt_secret.is_none() {
            tracing::warn!(
                "NODEGRID_JWT_SECRET is not set: signing tokens with the development secret; never do this in production"
            );
        }
        let identity = Identity::new(
            &settings.identity(),
            database.clone(),
            bus.clone(),
            instance_id,
        )?;
        identity.reload_access().await?;
        if let (Some(username), Some(password)) =
            (&settings.admin_username, &settings.admin_password)
            && identity
                .ensure_user(
                    username,
                    password.expose_secret(),
                    nodegrid_protocol::auth::Role::Admin,
                    "NODEGRID_ADMIN_USERNAME",
                )
                .await?
        {
            tracing::info!(username = %username, "created the configured admin");
        }
        let subscriptions = Subscriptions::new(database.clone(), bus.clone(), instance_id);
        let api_tokens = ApiTokens::new(
            database.clone(),
            bus.clone(),
            instance_id,
            settings.api_token_secret(),
        );
        let children = Children::new(
            database.clone(),
            bus.clone(),
            instance_id,
            settings.children.clone(),
            &settings.child_signing_secret(),
            settings.api_token_secret(),
        );
        let shared: Vec<Arc<dyn SharedState>> = vec![
            Arc::new(children.clone()),
            Arc::new(identity.clone()),
            Arc::new(subscriptions.clone()),
            Arc::new(policies.clone()),
            Arc::new(api_tokens.clone()),
        ];
        for state in &shared {
            state
                .reload()
                .await
                .map_err(|source| StartError::SharedState {
                    name: state.name(),
                    source,
                })?;
        }
        StateWatcher::start_supervised(shared, bridge.clone());
        let nodes = NodeRegistry::new(database.clone(), bus.clone(), settings.registry);
        let producer_registry = ConnectionRegistry::start(
            SocketRole::Producer,
            instance_id.to_string(),
            settings.stream.max_sockets_per_user,
            bridge.clone(),
            Some(Presence::start(nodes.clone())),
        );
        let session_registry = ConnectionRegistry::start(
            SocketRole::Consumer,
            instance_id.to_string(),
            settings.stream.max_sockets_per_user,
            bridge.clone(),
            None,
        );
        let reporter = ConnectionsReporter {
            instance: instance_id.to_string(),
            bus: bus.clone(),
            producers: producer_registry.clone(),
            sessions: session_registry.clone(),
        };
        Supervisor::start(move |_| reporter);
        let data = DataStore::new(database.clone());
        let data_writer = DataWriter::start_supervised(data.clone(), settings.data_writer);
        let ingest = Ingest {
            publisher: StreamPublisher::new(bus.clone(), database.clone()),
            policies: policies.clone(),
            writer: data_writer.clone().recipient(),
            rate: ProducerRate {
                per_sec: settings.stream.producer_rate_per_sec,
                burst: settings.stream.producer_burst,
            },
        };
        let housekeeping_lease = LeaseKeeper::start(LeaderLease::new(
            &bus,
            housekeeping::LEASE_NAME,
            &instance_id.to_string(),
            housekeeping::LEASE_TTL,
        ));
        let housekeeper = Housekeeper {
            identity: identity.clone(),
            audit_retention: settings.audit_retention,
            data: data.clone(),
            data_retention: settings.data_writer.retention,
            nodes: nodes.clone(),
            interval: settings.housekeeping_interval,
            leadership: housekeeping_lease.watch(),
        };
        Supervisor::start(move |_| housekeeper);
        let child_registry = ChildRegistry::start(children.clone(), instance_id.to_string());
        let checker =
            HeartbeatChecker::new(children.clone(), nodes.clone(), housekeeping_lease.watch());
        Supervisor::start(move |_| checker);
        let (keeper_stop, keeper_stopped) = watch::channel(false);
        let webhooks = Webhooks::new(database.clone(), settings.webhooks.clone());
        crate::webhooks::start_deliverer(
            Deliverer::new(webhooks.clone())?,
            housekeeping_lease.watch(),
            keeper_stopped.clone(),
        );
        node_registry::start_keeper(
            nodes.clone(),
            bus.clone(),
            instance_id.to_string(),
            producer_registry.clone(),
            session_registry.clone(),
            housekeeping_lease.watch(),
            keeper_stopped,
        );
        let grpc = GrpcServer::start(
            settings.grpc_addr,
            NodeApi {
                nodes: nodes.clone(),
                identity: identity.clone(),
                api_tokens: api_tokens.clone(),
                public_reads: settings.registry_public_reads,
            },
        )
        .map_err(|source| StartError::Bind {
            addr: settings.grpc_addr,
            source,
        })?;
        let (pnodes, pnode_lease) = crate::pnodes::start(
            &settings.pnodes,
            database.clone(),
            bus.clone(),
            bridge.clone(),
            instance_id,
            nodes.clone(),
        )?;

        let listener =
            TcpListener::bind(settings.http_addr).map_err(|source| StartError::Bind {
                addr: settings.http_addr,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: settings.http_addr,
            source,
        })?;

        let state = web::Data::new(AppState {
            instance_id,
            database: database.clone(),
            bus: bus.clone(),
            prometheus,
            process_collector,
            ready_timeout: settings.ready_timeout,
            identity: identity.clone(),
            trusted_proxies: settings.trusted_proxies.clone(),
            bridge: bridge.clone(),
            fanout: fanout.clone(),
            ingest,
            policies,
            history: StreamHistory::new(bus.clone()),
            data,
            producers: ProducerDirectory::new(database.clone()),
            api_tokens,
            cors_allowed_origins: settings.cors_allowed_origins.clone(),
            subscriptions: subscriptions.clone(),
            stream_access: StreamAccess::new(database.clone(), subscriptions.clone()),
            producer_registry: producer_registry.clone(),
            session_registry: session_registry.clone(),
            stream_limits: settings.stream,
            pnode_graphql: crate::pnodes::graphql::schema(
                pnodes.cell.clone(),
                pnodes.store.clone(),
            ),
            pnodes: pnodes.clone(),
            nodes,
            registry_public_reads: settings.registry_public_reads,
            webhooks,
            children,
            child_registry: child_registry.clone(),
            allowed_methods: Arc::new(crate::http::openapi::allowed_methods()),
            not_found_limiter: Arc::new(LocalRateLimiter::new(
                settings.http_limits.not_found_per_sec,
                settings.http_limits.not_found_burst,
                NOT_FOUND_LIMITER_MAX_CLIENTS,
            )),
        });
        let limits = settings.http_limits;
        let metrics_on_api_port = settings.metrics_addr.is_none();
        let connections = ConnectionCounter::new(
            limits.max_connections_per_ip,
            settings.trusted_proxies.clone(),
        );
        let (shutdown_tx, mut shutdown_rx) = watch::channel(false);
        let app_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .app_data(web::Data::new(BodyTimeout(limits.body_timeout)))
                .app_data(web::PayloadConfig::new(limits.max_body_bytes))
                .app_data(web::QueryConfig::default().error_handler(http::error::query_error))
                .app_data(web::PathConfig::default().error_handler(http::error::path_error))
                .wrap(from_fn(http::boundary::check_request))
                .wrap(from_fn(http::observe::observe_request))
                .wrap(from_fn(http::browser::browser_headers))
                .configure(|config| {
                    if metrics_on_api_port {
                        http::routing::metrics_route(config);
                    }
                })
                .configure(http::routes)
                .configure(extra_routes)
                .default_service(web::to(http::routing::not_found))
        })
        .on_connect(move |connection, data| {
            let plain = connection.downcast_ref::<actix_web::rt::net::TcpStream>();
            let tls = connection
                .downcast_ref::<actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>>()
                .map(|stream| stream.get_ref().0);
            if let Some(peer) = plain.or(tls).and_then(|stream| stream.peer_addr().ok()) {
                data.insert(connections.open(peer.ip()));
            }
        });
        let server = match &settings.tls {
            Some(tls) => {
                let config = crate::tls::server_config(tls).map_err(StartError::Tls)?;
                server.listen_rustls_0_23(listener, config)
            }
            None => server.listen(listener),
        };
        let mut server = server
            .map_err(|source| StartError::Bind {
                addr: settings.http_addr,
                source,
            })?
            .shutdown_timeout(settings.shutdown_timeout.as_secs())
            .shutdown_signal({
                let (producers, sessions) = (producer_registry.clone(), session_registry.clone());
                async move {
                    let _ = shutdown_rx.wait_for(|stop| *stop).await;
                    // Sockets live until closed; close them first so the HTTP drain can finish.
                    for registry in [&producers, &sessions] {
                        match registry.send(CloseAll(close::GOING_AWAY)).await {
                            Ok(count) if count > 0 => tracing::info!(count, "closing sockets"),
                            _ => {}
                        }
                    }
                    match child_registry.send(CloseControls(close::GOING_AWAY)).await {
                        Ok(count) if count > 0 => {
                            tracing::info!(count, "closing children's control sockets")
                        }
                        _ => {}
                    }
                }
            });
        if let Some(workers) = settings.http_workers {
            server = server.workers(workers);
        }
        let server = server.run();
        let metrics_server = match settings.metrics_addr {
            Some(addr) => Some(metrics_server(addr, state.clone())?),
            None => None,
        };

        tracing::info!(addr = %local_addr, instance = %instance_id, "listening");
        Ok(Application {
            instance_id,
            port: local_addr.port(),
            server,
            metrics_server,
            database,
            bus,
            bridge,
            fanout,
            data_writer,
            shutdown: ShutdownTrigger(shutdown_tx),
            pnodes,
            pnode_lease,
            housekeeping_lease,
            grpc,
            keeper_stop,
        })
    }

    /// The id this instance goes by in Redis and in the admin views.
    pub fn instance_id(&self) -> Uuid {
        self.instance_id
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the gRPC API.
    pub fn grpc_port(&self) -> u16 {
        self.grpc.port()
    }

    /// The port of the separate `/metrics` listener, when there is one.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_server.as_ref().map(|(_, port)| *port)
    }

    /// The handle that starts a graceful shutdown of this application.
    pub fn shutdown_trigger(&self) -> ShutdownTrigger {
        self.shutdown.clone()
    }

    pub fn bus(&self) -> &RedisBus {
        &self.bus
    }

    pub fn bridge(&self) -> Addr<RedisBridge> {
        self.bridge.clone()
    }

    /// The pNode side: the served snapshot and the aggregator (tests run cycles by hand).
    pub fn pnodes(&self) -> PnodeRuntime {
        self.pnodes.clone()
    }

    /// Serves until the shutdown trigger fires, then shuts down in order.
    pub async fn run_until_stopped(mut self) -> std::io::Result<()> {
        let upkeep = actix_web::rt::spawn(metrics_upkeep());
        let metrics = self.metrics_server.map(|(server, _)| {
            let handle = server.handle();
            actix_web::rt::spawn(server);
            handle
        });
        let served = self.server.await;
        if let Some(metrics) = metrics {
            metrics.stop(true).await;
        }
        tracing::info!("HTTP server stopped; stopping actors");
        upkeep.abort();
        self.grpc.stop(GRPC_SHUTDOWN_GRACE).await;
        let _ = self.keeper_stop.send(true);
        if let Some(lease) = self.pnode_lease {
            // Hand the pNode work over at once rather than after the lease expires.
            lease.step_down().await;
        }
        self.housekeeping_lease.step_down().await;
        // Accepted messages of stored producers are written before the process goes.
        match self.data_writer.send(Drain).await {
            Ok(0) => {}
            Ok(left) => tracing::error!(
                rows = left,
                "stored data could not be written before shutdown"
            ),
            Err(error) => tracing::warn!(%error, "the data writer did not answer at shutdown"),
        }
        if let Err(error) = self.fanout.send(ShutdownFanout).await {
            tracing::warn!(%error, "StreamFanout did not acknowledge shutdown");
        }
        if let Err(error) = self.bridge.send(ShutdownBridge).await {
            tracing::warn!(%error, "RedisBridge did not acknowledge shutdown");
        }
        if let Err(error) = self
            .bus
            .remove_instance_report(&self.instance_id.to_string())
            .await
        {
            tracing::debug!(%error, "could not withdraw the connections report");
        }
        self.bus.quit().await;
        self.database.close();
        tracing::info!(instance = %self.instance_id, "shutdown complete");
        served
    }
}

/// A listener of its own that serves only `/metrics`.
fn metrics_server(
    addr: std::net::SocketAddr,
    state: web::Data<AppState>,
) -> Result<(Server, u16), StartError> {
    let listener = TcpListener::bind(addr).map_err(|source| StartError::Bind { addr, source })?;
    let port = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?
        .port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(http::routing::metrics_route)
            .default_service(web::to(http::routing::not_found))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .map_err(|source| StartError::Bind { addr, source })?
    .run();
    tracing::info!(%addr, port, "serving /metrics on a listener of its own");
    Ok((server, port))
}

async fn metrics_upkeep() {
    let Ok(handle) = telemetry::prometheus() else {
        return;
    };
    let mut interval = tokio::time::interval(METRICS_UPKEEP_INTERVAL);
    loop {
        interval.tick().await;
        handle.run_upkeep();
    }
}

/// The URL without its password, for logs.
fn redacted_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_owned(),
        },
        None => "(unparsable URL)".to_owned(),
    }
}

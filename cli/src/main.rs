//! The `nodegrid` binary: the server (`serve`, `migrate`, `admin`, `import`) from `nodegrid-actors`
//! and `nodegrid-services`, and
//! the programs that run beside it (`device`, `bench`, `sim`) from `nodegrid-clients`.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use nodegrid_actors::app::{Application, ShutdownTrigger, StartError};
use nodegrid_actors::telemetry;
use nodegrid_clients::bench::{self, BenchOptions};
use nodegrid_clients::child::{self, ChildOptions};
use nodegrid_clients::device::{self, DeviceOptions};
use nodegrid_clients::nodes::{self, NodesError, NodesOptions};
use nodegrid_clients::nodes_sim::{self, NodesSimOptions};
use nodegrid_clients::pnode_sim::{PnodeSim, SimOptions};
use nodegrid_clients::sensor::{self, SensorOptions};
use nodegrid_protocol::auth::Role;
use nodegrid_services::bus::{BusError, RedisBus};
use nodegrid_services::config::{ServeOptions, Settings};
use nodegrid_services::db::{Database, DbError};
use nodegrid_services::identity::{Identity, IdentityError};
use nodegrid_services::import::ImportError;
use nodegrid_services::import::motience::{self, MotienceImport};

/// mimalloc rather than the system allocator: it hands freed memory back to the system, where
/// glibc's per-thread arenas kept every Argon2 work area (19 MiB a password check) they ever
/// held, and it is faster for the many small allocations of message fan-out.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// nodegrid: an actor-model runtime for IoT streams, pNode analytics and licensed child nodes.
#[derive(Parser)]
#[command(name = "nodegrid", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: HTTP API, WebSockets, actors.
    Serve(ServeOptions),
    /// Apply pending database migrations and exit.
    Migrate(ServeOptions),
    /// Administration from the command line.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// The device agent: stream this machine's readings as a producer.
    Device(DeviceOptions),
    /// The child agent: heartbeat to the mother, keep the signed lease, answer the local
    /// application through the gate, fail secure.
    Child(ChildOptions),
    /// The load generator: drive a deployment (or an MQTT broker) and measure it.
    Bench(BenchOptions),
    /// Simulators of the outside world, for demos, tests and benchmarks.
    #[command(subcommand)]
    Sim(SimCommand),
    /// The node registry over gRPC, with nodectl's commands (`BACKEND_ADDR`, `BACKEND_TOKEN`).
    Nodes(NodesOptions),
    /// Keep one node's status current: an HTTP endpoint, or this machine.
    Sensor(SensorOptions),
    /// Bring another system's deployment into nodegrid.
    #[command(subcommand)]
    Import(ImportCommand),
}

#[derive(Subcommand)]
enum ImportCommand {
    /// A Motience deployment: its users (ids, names, bcrypt passwords), active subscriptions and,
    /// with --data-history, its stored data. Safe to run again: a second run changes nothing.
    Motience {
        /// The Motience database's URL (postgres://…); only read. Prefer the variable to the
        /// flag: a password in a flag shows in the process list.
        #[arg(
            long = "from",
            value_name = "URL",
            env = "NODEGRID_IMPORT_FROM",
            hide_env_values = true
        )]
        from: String,
        /// Print what the import would do; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also copy data_history into stored producer data (resumable).
        #[arg(long)]
        data_history: bool,
        /// Only data rows from this time on (RFC 3339, or a date: 2026-01-31).
        #[arg(long, value_parser = parse_since)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        #[command(flatten)]
        options: ServeOptions,
    },
}

/// An RFC 3339 time, or a date taken as its midnight UTC.
fn parse_since(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|midnight| midnight.and_utc())
        .ok_or_else(|| format!("{text:?} is neither an RFC 3339 time nor a date (YYYY-MM-DD)"))
}

#[derive(Subcommand)]
enum SimCommand {
    /// A pRPC server playing Xandeum seed nodes that gossip pods with churn.
    Pnodes(SimOptions),
    /// Load on the node registry: creates nodes, changes their status at a rate, and watches.
    Nodes(NodesSimOptions),
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Make sure a user exists (an admin by default). The password is read from the first line
    /// of standard input, so that it never appears in the process list:
    /// `echo "$PASSWORD" | nodegrid admin create-user --username root`.
    CreateUser {
        #[arg(long)]
        username: String,
        #[arg(long, value_enum, default_value = "admin")]
        role: RoleArg,
        #[command(flatten)]
        options: ServeOptions,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RoleArg {
    Admin,
    Producer,
    Consumer,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Role {
        match role {
            RoleArg::Admin => Role::Admin,
            RoleArg::Producer => Role::Producer,
            RoleArg::Consumer => Role::Consumer,
        }
    }
}

enum Task {
    Serve,
    Migrate,
    CreateUser { username: String, role: Role },
    ImportMotience(ImportOptions),
}

/// The import's own options (the rest are the server's: database, Redis, retention).
struct ImportOptions {
    from: String,
    dry_run: bool,
    data_history: bool,
    since: Option<chrono::DateTime<chrono::Utc>>,
}

/// Exit codes: 0 after a clean shutdown, 1 when start-up or serving fails, 2 for bad options.
fn main() -> ExitCode {
    // The TOML file named by --config becomes the defaults under the flags and variables.
    let command = match nodegrid_services::config::layer_config_file(Cli::command()) {
        Ok(command) => command,
        Err(error) => {
            eprintln!("nodegrid: {error}");
            return ExitCode::from(2);
        }
    };
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let (options, task) = match cli.command {
        Command::Serve(options) => (options, Task::Serve),
        Command::Migrate(options) => (options, Task::Migrate),
        Command::Device(options) => return run_device(options),
        Command::Child(options) => return run_child(options),
        Command::Bench(options) => return run_bench(options),
        Command::Sim(SimCommand::Pnodes(options)) => return run_pnode_sim(options),
        Command::Sim(SimCommand::Nodes(options)) => {
            return run_registry_client("nodegrid sim nodes", "warn", nodes_sim::run(options));
        }
        Command::Nodes(options) => return run_nodes(options),
        Command::Sensor(options) => return run_sensor(options),
        Command::Import(ImportCommand::Motience {
            from,
            dry_run,
            data_history,
            since,
            options,
        }) => (
            options,
            Task::ImportMotience(ImportOptions {
                from,
                dry_run,
                data_history,
                since,
            }),
        ),
        Command::Admin(AdminCommand::CreateUser {
            username,
            role,
            options,
        }) => (
            options,
            Task::CreateUser {
                username,
                role: role.into(),
            },
        ),
    };
    let settings = match options.resolve() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("nodegrid: {error}");
            return ExitCode::from(2);
        }
    };
    telemetry::init_tracing(settings.log_format, &settings.log);
    let system = actix_web::rt::System::new();
    let outcome: Result<(), CliError> = system.block_on(async move {
        let task = match task {
            Task::CreateUser { username, role } => {
                return create_user(settings, &username, role).await;
            }
            Task::ImportMotience(import) => return import_motience(settings, import).await,
            task => task,
        };
        if matches!(task, Task::Serve) {
            // Listen for signals before announcing the listener, so that a signal sent right
            // after start-up is never missed.
            let signals = TerminationSignals::listen().map_err(CliError::Signals)?;
            let app = Application::build(settings).await?;
            actix_web::rt::spawn(signals.fire_on_first(app.shutdown_trigger()));
            app.run_until_stopped().await.map_err(CliError::Serve)
        } else {
            let database = Database::connect(&settings.database_url, 1).await?;
            let report = database.migrate().await?;
            tracing::info!(applied = ?report.applied, "migrations are current");
            Ok(())
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "nodegrid failed");
            eprintln!("nodegrid: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the load generator on a multi-threaded runtime (it is its own load, not the server's).
fn run_bench(options: BenchOptions) -> ExitCode {
    let filter = std::env::var("NODEGRID_LOG").unwrap_or_else(|_| "warn".to_owned());
    telemetry::init_tracing(nodegrid_services::config::LogFormat::Human, &filter);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = options.threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("nodegrid bench: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench::run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("nodegrid bench: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the pRPC simulator until SIGTERM/SIGINT. Prints the seed list first, as the value of
/// `NODEGRID_PNODE_SEEDS`, so that scripts can point a server at it.
fn run_pnode_sim(options: SimOptions) -> ExitCode {
    let filter = std::env::var("NODEGRID_LOG").unwrap_or_else(|_| "warn".to_owned());
    telemetry::init_tracing(nodegrid_services::config::LogFormat::Human, &filter);
    let system = actix_web::rt::System::new();
    let result = system.block_on(async move {
        let sim = PnodeSim::start(options.clone()).map_err(CliError::Listen)?;
        println!("NODEGRID_PNODE_SEEDS={}", sim.seeds().join(","));
        println!(
            "simulating {} seeds gossiping {} pods (seed {}, a round every {} s)",
            options.seeds, options.pods, options.seed, options.round_secs
        );
        let signals = TerminationSignals::listen().map_err(CliError::Signals)?;
        signals.wait().await;
        sim.stop().await;
        Ok::<(), CliError>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("nodegrid sim pnodes: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one `nodegrid nodes` command on a runtime of its own.
fn run_nodes(options: NodesOptions) -> ExitCode {
    run_registry_client("nodegrid nodes", "warn", nodes::run(options))
}

/// Runs a sensor until SIGTERM or SIGINT.
fn run_sensor(options: SensorOptions) -> ExitCode {
    run_registry_client("nodegrid sensor", "info", sensor::run(options))
}

/// A registry client on a runtime of its own; its error printed as one line.
fn run_registry_client(
    name: &str,
    default_log: &str,
    work: impl std::future::Future<Output = Result<(), NodesError>>,
) -> ExitCode {
    let filter = std::env::var("NODEGRID_LOG").unwrap_or_else(|_| default_log.to_owned());
    telemetry::init_tracing(nodegrid_services::config::LogFormat::Human, &filter);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{name}: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{name}: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// Runs the child agent; its gate is an actix-web server, so it runs in an actix System.
fn run_child(options: ChildOptions) -> ExitCode {
    let filter = std::env::var("NODEGRID_LOG").unwrap_or_else(|_| "info".to_owned());
    telemetry::init_tracing(nodegrid_services::config::LogFormat::Human, &filter);
    let settings = match options.resolve() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("nodegrid child: {error}");
            return ExitCode::from(2);
        }
    };
    match actix_web::rt::System::new().block_on(child::run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("nodegrid child: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the device agent on a runtime of its own (it needs no actor system).
fn run_device(options: DeviceOptions) -> ExitCode {
    let filter = std::env::var("NODEGRID_LOG").unwrap_or_else(|_| "info".to_owned());
    telemetry::init_tracing(nodegrid_services::config::LogFormat::Human, &filter);
    let settings = match options.resolve() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("nodegrid device: {error}");
            return ExitCode::from(error.exit_code());
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("nodegrid device: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(device::run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("nodegrid device: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

async fn create_user(settings: Settings, username: &str, role: Role) -> Result<(), CliError> {
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .map_err(CliError::Stdin)?;
    let password = password.trim_end_matches(['\r', '\n']);
    let database = Database::connect(&settings.database_url, 2).await?;
    database.migrate().await?;
    let bus = RedisBus::start(&settings.redis_url, &settings.redis_prefix)?;
    let identity = Identity::new(&settings.identity(), database, bus, uuid::Uuid::new_v4())?;
    let created = identity
        .ensure_user(username, password, role, "nodegrid admin create-user")
        .await?;
    if created {
        println!("created {role} {username}");
    } else {
        println!("{role} {username} exists already; its password is unchanged");
    }
    Ok(())
}

/// Runs `nodegrid import motience` and prints its report; a stopped import exits with 1.
async fn import_motience(settings: Settings, import: ImportOptions) -> Result<(), CliError> {
    let database = Database::connect(&settings.database_url, 2).await?;
    database.migrate().await?;
    let bus = RedisBus::start(&settings.redis_url, &settings.redis_prefix)?;
    let connected = bus.wait_connected(motience::REDIS_WAIT).await;
    let options = MotienceImport {
        source_url: import.from,
        dry_run: import.dry_run,
        data_history: import.data_history,
        since: import.since,
        retention_days: settings.data_writer.retention.as_secs() / 86_400,
    };
    let report = motience::import(&database, connected.then_some(&bus), &options).await?;
    println!("{report}");
    bus.quit().await;
    match report.aborted {
        Some(reason) => Err(CliError::ImportStopped(reason)),
        None => Ok(()),
    }
}

/// Why a command of the server's side failed: printed as one line, exit code 1.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error(transparent)]
    Redis(#[from] BusError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error("the import stopped: {0}")]
    ImportStopped(String),
    #[error("cannot listen for termination signals: {0}")]
    Signals(std::io::Error),
    #[error("cannot listen: {0}")]
    Listen(std::io::Error),
    #[error("cannot read the password from standard input: {0}")]
    Stdin(std::io::Error),
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

/// SIGTERM and SIGINT, both of which start a graceful shutdown.
struct TerminationSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl TerminationSignals {
    fn listen() -> std::io::Result<TerminationSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(TerminationSignals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the first of the two; returns its name.
    async fn wait(mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }

    async fn fire_on_first(self, trigger: ShutdownTrigger) {
        let name = self.wait().await;
        tracing::info!(signal = name, "starting graceful shutdown");
        trigger.fire();
    }
}

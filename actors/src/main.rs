//! The `nodegrid` binary.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nodegrid_actors::app::{Application, ShutdownTrigger};
use nodegrid_actors::telemetry;
use nodegrid_services::config::ServeOptions;
use nodegrid_services::db::Database;

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
}

/// Exit codes: 0 after a clean shutdown, 1 when start-up or serving fails, 2 for bad options.
fn main() -> ExitCode {
    let cli = Cli::parse();
    let (options, serve) = match cli.command {
        Command::Serve(options) => (options, true),
        Command::Migrate(options) => (options, false),
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
    let outcome: Result<(), String> = system.block_on(async move {
        if serve {
            // Listen for signals before announcing the listener, so that a signal sent right
            // after start-up is never missed.
            let signals = TerminationSignals::listen()
                .map_err(|error| format!("cannot listen for termination signals: {error}"))?;
            let app = Application::build(settings)
                .await
                .map_err(|error| error.to_string())?;
            actix_web::rt::spawn(signals.fire_on_first(app.shutdown_trigger()));
            app.run_until_stopped()
                .await
                .map_err(|error| format!("server failed: {error}"))
        } else {
            let database = Database::connect(&settings.database_url, 1)
                .await
                .map_err(|error| error.to_string())?;
            let report = database
                .migrate()
                .await
                .map_err(|error| error.to_string())?;
            tracing::info!(applied = ?report.applied, "migrations are current");
            Ok(())
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!(error = %message, "nodegrid failed");
            eprintln!("nodegrid: {message}");
            ExitCode::FAILURE
        }
    }
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

    async fn fire_on_first(mut self, trigger: ShutdownTrigger) {
        let name = tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "starting graceful shutdown");
        trigger.fire();
    }
}

//! `nodegrid bench`: drives a real deployment over real sockets and reports what is needed to
//! compare runs: offered and delivered messages per second, end-to-end latency percentiles
//! (HDR histogram), errors by code, losses by sequence gaps, and the CPU and memory of the
//! server processes named by `--server-pid`. The same `fleet` and `broadcast` scenarios run
//! against an MQTT broker (`--target mqtt://…` or `--compare mqtt://…`) for a speed reference.
//!
//! It stops by itself (bounded duration and message count) and connects only to the addresses
//! it is given.
//!
//! # Layout
//!
//! [`options`], `plan` (shape, pacing, counters), `measure` (histograms, clocks, `/proc`),
//! `report`; one driver per target kind: `nodegrid` (WebSocket), `mqtt`, `http`, and
//! `heartbeats` (children's signed heartbeats).

mod heartbeats;
mod http;
mod measure;
mod mqtt;
mod nodegrid;
pub mod options;
mod plan;
mod raw_http;
mod report;
mod wakeup;

use self::measure::{Watched, server_peak_rss, server_rss};
pub use self::options::{BenchOptions, Scenario};
pub use self::plan::BenchError;
use self::plan::Plan;
use self::report::{MARKDOWN_HEADER, Report, comparison, markdown_row, print_human};

/// Runs what the options ask for and prints the report(s).
pub async fn run(options: BenchOptions) -> Result<(), BenchError> {
    if let Err(error) = rlimit::increase_nofile_limit(1_048_576) {
        tracing::warn!(%error, "could not raise the open-file limit");
    }
    if options.scenario == Scenario::Http {
        return http::run(&options).await;
    }
    if options.scenario == Scenario::Heartbeats {
        return heartbeats::run(&options).await;
    }
    if options.scenario == Scenario::Wakeup {
        return wakeup::run(&options).await;
    }
    let plan = Plan {
        producers: match options.scenario {
            Scenario::Broadcast => 1,
            Scenario::Connections => 0,
            _ => options.producers.max(1),
        },
        consumers: options.consumers,
        per_consumer: match options.scenario {
            Scenario::Broadcast => 1,
            Scenario::Connections => 0,
            _ => options.per_consumer.max(1),
        },
        rate: options.rate,
        seconds: options.seconds,
        max_messages: options.max_messages,
        payload_bytes: options.payload_bytes,
        source_addresses: options.source_addresses,
        batch: options.batch,
        setup_concurrency: options.setup_concurrency.max(1),
    };
    let mut reports =
        vec![run_target(&options, &options.target, &plan, &options.server_pid).await?];
    if let Some(broker) = &options.compare {
        let broker = std::slice::from_ref(broker);
        reports.push(run_target(&options, broker, &plan, &options.compare_pid).await?);
    }
    if options.markdown {
        println!("{MARKDOWN_HEADER}");
        for report in &reports {
            println!("{}", markdown_row(report));
        }
        if let [ours, theirs] = &reports[..] {
            println!("RATIO {}", comparison(ours, theirs));
        }
        return Ok(());
    }
    if options.json {
        let text = serde_json::to_string_pretty(&reports)
            .map_err(|error| BenchError::Setup(error.to_string()))?;
        println!("{text}");
    } else {
        for report in &reports {
            print_human(report);
        }
        if let [ours, theirs] = &reports[..] {
            println!("{}", comparison(ours, theirs));
        }
    }
    Ok(())
}

async fn run_target(
    options: &BenchOptions,
    targets: &[String],
    plan: &Plan,
    pids: &[u32],
) -> Result<Report, BenchError> {
    let is_mqtt = targets.iter().any(|target| target.starts_with("mqtt"));
    if is_mqtt && options.scenario == Scenario::Connections {
        return Err(BenchError::Setup(
            "the connections scenario measures nodegrid only".into(),
        ));
    }
    if options.scenario == Scenario::Max {
        return run_max(options, targets, plan, is_mqtt, pids).await;
    }
    once(options, targets, plan, is_mqtt, pids).await
}

async fn once(
    options: &BenchOptions,
    targets: &[String],
    plan: &Plan,
    is_mqtt: bool,
    pids: &[u32],
) -> Result<Report, BenchError> {
    let rss_before = server_rss(pids);
    let outcome = if is_mqtt {
        let watched = Watched {
            server: pids.to_vec(),
            redis: None,
        };
        mqtt::run(&targets[0], plan, &watched).await?
    } else {
        let watched = Watched {
            server: pids.to_vec(),
            redis: options.redis_pid,
        };
        nodegrid::run(targets, plan, options.scenario, &watched).await?
    };
    let mut report = outcome.report(targets.join(","), options.scenario, plan);
    report.server_peak_rss_mib = server_peak_rss(pids);
    if options.scenario == Scenario::Connections
        && let (Some(before), Some(during)) = (rss_before, outcome.rss_with_connections)
        && plan.consumers > 0
    {
        report.server_kib_per_connection =
            Some((during.saturating_sub(before)) as f64 / plan.consumers as f64);
    }
    Ok(report)
}

async fn run_max(
    options: &BenchOptions,
    targets: &[String],
    plan: &Plan,
    is_mqtt: bool,
    pids: &[u32],
) -> Result<Report, BenchError> {
    let mut best: Option<Report> = None;
    let mut first: Option<Report> = None;
    let mut rate = plan.rate;
    for _ in 0..12 {
        let step = Plan {
            rate,
            ..plan.clone()
        };
        let report = once(options, targets, &step, is_mqtt, pids).await?;
        eprintln!(
            "max: {:.0} msg/s per producer → delivered {:.0}/s, p99 {:.2} ms, lost {}",
            rate, report.delivered_msgs_per_sec, report.latency_ms.p99, report.lost
        );
        let keeping_up = report.lost == 0
            && report.errors.is_empty()
            && report.delivered as f64 >= 0.99 * report.expected_deliveries as f64
            && report.latency_ms.p99 <= options.max_p99_ms;
        if !keeping_up {
            first.get_or_insert(report);
            break;
        }
        best = Some(report);
        rate *= 1.5;
    }
    match (best, first) {
        (Some(mut best), _) => {
            best.kept_up = Some(true);
            Ok(best)
        }
        // Not even the first step kept up: that step is what there is to report.
        (None, Some(mut first)) => {
            eprintln!("max: even the starting rate was too much; lower --rate");
            first.kept_up = Some(false);
            Ok(first)
        }
        (None, None) => Err(BenchError::Setup("no step ran".into())),
    }
}

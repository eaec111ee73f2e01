//! The admin view of live sockets across instances.
//!
//! Each instance writes its registries' snapshot to Redis every couple of seconds (with a time
//! to live, so a dead instance drops out); the admin endpoint answers with this instance's
//! fresh snapshot plus the others' latest reports.

use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use nodegrid_protocol::stream::{ConnectionsResponse, InstanceConnections};

use std::sync::atomic::Ordering;

use crate::stream::metrics::TOTALS;
use crate::stream::registry::{ConnectionRegistry, Snapshot};
use nodegrid_services::bus::RedisBus;

/// How often an instance reports its sockets.
const REPORT_INTERVAL: Duration = Duration::from_secs(2);
/// How long a report stays after its instance stops reporting.
const REPORT_TTL: Duration = Duration::from_secs(10);

/// This instance's sockets, asked of both registries now.
pub async fn local(
    instance: &str,
    producers: &Addr<ConnectionRegistry>,
    sessions: &Addr<ConnectionRegistry>,
) -> Result<InstanceConnections, MailboxError> {
    let mut connections = producers.send(Snapshot).await?;
    connections.extend(sessions.send(Snapshot).await?);
    Ok(InstanceConnections {
        instance: instance.to_owned(),
        reported_at: Utc::now(),
        messages_in_total: TOTALS.acked.load(Ordering::Relaxed),
        deliveries_total: TOTALS.delivered.load(Ordering::Relaxed),
        connections,
    })
}

/// Every instance's sockets: this one's fresh (`instance`, its two registries), the others'
/// as last reported in Redis.
pub async fn all_instances(
    instance: &str,
    bus: &RedisBus,
    producers: &Addr<ConnectionRegistry>,
    sessions: &Addr<ConnectionRegistry>,
) -> anyhow::Result<ConnectionsResponse> {
    let mut instances = vec![local(instance, producers, sessions).await?];
    for (other, report) in bus.instance_reports().await? {
        if other == instance {
            continue;
        }
        match serde_json::from_str::<InstanceConnections>(&report) {
            Ok(connections) => instances.push(connections),
            Err(error) => tracing::warn!(instance = other, %error, "unreadable connections report"),
        }
    }
    instances.sort_by(|a, b| a.instance.cmp(&b.instance));
    let count = |kind: &str| {
        instances
            .iter()
            .flat_map(|instance| &instance.connections)
            .filter(|connection| connection.kind == kind)
            .count() as u64
    };
    Ok(ConnectionsResponse {
        producers: count("producer"),
        consumers: count("consumer"),
        instances,
    })
}

/// Writes this instance's report to Redis every [`REPORT_INTERVAL`].
pub struct ConnectionsReporter {
    pub instance: String,
    pub bus: RedisBus,
    pub producers: Addr<ConnectionRegistry>,
    pub sessions: Addr<ConnectionRegistry>,
}

impl ConnectionsReporter {
    fn report(&mut self, ctx: &mut Context<Self>) {
        let instance = self.instance.clone();
        let bus = self.bus.clone();
        let (producers, sessions) = (self.producers.clone(), self.sessions.clone());
        ctx.spawn(
            async move {
                let snapshot = local(&instance, &producers, &sessions).await.ok()?;
                let report = serde_json::to_string(&snapshot).ok()?;
                if let Err(error) = bus
                    .put_instance_report(&instance, &report, REPORT_TTL)
                    .await
                {
                    tracing::debug!(%error, "could not report connections");
                }
                Some(())
            }
            .into_actor(self)
            .map(|_, _, _| ()),
        );
    }
}

impl Actor for ConnectionsReporter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.report(ctx);
        ctx.run_interval(REPORT_INTERVAL, |reporter, ctx| reporter.report(ctx));
    }
}

impl Supervised for ConnectionsReporter {}

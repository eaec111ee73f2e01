//! The node registry's runtime on each instance: the task that relays what the outbox holds
//! into the event stream (asked by every change, and every second) and tails the stream for
//! this instance's watchers (woken by a relay's announcement, and every second in case a
//! wake-up was lost); on the housekeeping leader,
//! the sweep that settles device nodes against the producer sockets open on every instance
//! (`stream::presence` reports them as they open and close).

use std::collections::HashSet;
use std::time::Duration;

use actix::Addr;
use nodegrid_protocol::registry::NodeType;
use nodegrid_services::bus::{Lane, RedisBus};
use nodegrid_services::lease::Leadership;
use nodegrid_services::registry::{NodeRegistry, SWEEP_INTERVAL};
use tokio::sync::watch;

use crate::stream::registry::ConnectionRegistry;
use crate::stream::report;

/// How often the leader checks device nodes against the sockets open on every instance.
const DEVICE_SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// Starts the keeper's task; it ends when `stop` turns true.
pub fn start_keeper(
    nodes: NodeRegistry,
    bus: RedisBus,
    instance: String,
    producers: Addr<ConnectionRegistry>,
    sessions: Addr<ConnectionRegistry>,
    leadership: watch::Receiver<Leadership>,
    mut stop: watch::Receiver<bool>,
) {
    actix_web::rt::spawn(async move {
        let channel = nodes.log().wake_channel();
        let mut messages = bus.messages(Lane::Control);
        if let Err(error) = bus.subscribe(Lane::Control, &channel).await {
            tracing::warn!(%error, "cannot listen for registry events yet; polling each second");
        }
        if let Err(error) = nodes.log().tail().await {
            tracing::debug!(%error, "the registry's event stream cannot be read yet");
        }
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        let mut device_sweep = tokio::time::interval(DEVICE_SWEEP_INTERVAL);
        loop {
            tokio::select! {
                _ = stop.wait_for(|stop| *stop) => break,
                message = messages.recv() => {
                    let woken = match &message {
                        Ok(message) => message.channel == channel.as_str(),
                        // Lagged: something may have been missed.
                        Err(_) => true,
                    };
                    if woken && let Err(error) = nodes.log().tail().await {
                        tracing::debug!(%error, "could not read the registry's event stream");
                    }
                }
                _ = nodes.log().relay_wanted() => {
                    if let Err(error) = nodes.log().relay().await {
                        tracing::debug!(%error, "could not relay registry events");
                    }
                }
                _ = tick.tick() => {
                    if let Err(error) = nodes.log().relay().await {
                        tracing::debug!(%error, "could not relay registry events");
                    }
                    if let Err(error) = nodes.log().tail().await {
                        tracing::debug!(%error, "could not read the registry's event stream");
                    }
                }
                _ = device_sweep.tick() => {
                    if leadership.borrow().is_leader() {
                        sweep_devices(&nodes, &bus, &instance, &producers, &sessions).await;
                    }
                }
            }
        }
    });
}

/// Device nodes follow the producer sockets open on every instance: `UP` with a socket,
/// `DOWN` without (an instance that died left its devices `UP`).
async fn sweep_devices(
    nodes: &NodeRegistry,
    bus: &RedisBus,
    instance: &str,
    producers: &Addr<ConnectionRegistry>,
    sessions: &Addr<ConnectionRegistry>,
) {
    let connected: HashSet<String> =
        match report::all_instances(instance, bus, producers, sessions).await {
            Ok(all) => all
                .instances
                .iter()
                .flat_map(|instance| &instance.connections)
                .filter(|connection| connection.kind == "producer")
                .map(|connection| connection.username.clone())
                .collect(),
            Err(error) => {
                tracing::debug!(%error, "no connection reports; device nodes are left as they are");
                return;
            }
        };
    match nodes
        .settle(NodeType::IotDevice, connected.into_iter().collect())
        .await
    {
        Ok(0) => {}
        Ok(changed) => tracing::info!(changed, "device nodes settled to their sockets"),
        Err(error) => tracing::warn!(%error, "could not settle device nodes"),
    }
}

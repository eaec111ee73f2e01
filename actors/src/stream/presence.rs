//! Producer sockets opening and closing, as their `IOT_DEVICE` node in the registry going
//! `UP` and `DOWN` (named after the producer's username). Changes are written in order by one
//! task; the housekeeping leader's sweep (`node_registry`) repairs what is lost.

use nodegrid_protocol::registry::{NodeStatus, NodeType};
use nodegrid_services::registry::NodeRegistry;
use tokio::sync::mpsc;

/// Presence changes waiting to be written; past it they are dropped (the sweep repairs them).
const PRESENCE_QUEUE: usize = 10_000;

/// Producer sockets opening and closing, reported in order to the registry.
#[derive(Clone)]
pub struct Presence {
    changes: mpsc::Sender<(String, NodeStatus)>,
}

impl Presence {
    pub fn start(nodes: NodeRegistry) -> Presence {
        let (changes, mut pending) = mpsc::channel::<(String, NodeStatus)>(PRESENCE_QUEUE);
        actix_web::rt::spawn(async move {
            while let Some((name, status)) = pending.recv().await {
                if let Err(error) = nodes.report(NodeType::IotDevice, &name, status).await {
                    tracing::warn!(%error, device = %name, "could not record a device's presence");
                }
            }
        });
        Presence { changes }
    }

    /// The first socket of `username` opened (`true`) or its last one closed (`false`).
    pub fn set(&self, username: &str, connected: bool) {
        let status = if connected {
            NodeStatus::Up
        } else {
            NodeStatus::Down
        };
        if self
            .changes
            .try_send((username.to_owned(), status))
            .is_err()
        {
            tracing::debug!(device = %username, "presence queue full; the sweep will settle it");
        }
    }
}

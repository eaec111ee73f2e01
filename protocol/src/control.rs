//! Events on a deployment's control channel.
//!
//! Every instance listens to one Redis channel, `<prefix>:control`. Whatever must take effect on
//! all instances (a block, a subscription change, maintenance mode, a new setting) is published
//! there as one [`ControlEnvelope`], JSON-encoded.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One message on the control channel: the event plus the instance that sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlEnvelope {
    /// The instance that published the event; lets an instance recognise its own events.
    pub origin: Uuid,
    pub event: ControlEvent,
}

/// What happened. Later features add variants; receivers ignore the ones they do not handle, and
/// an instance that does not know a variant at all logs and counts it instead of failing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlEvent {
    /// A liveness probe of the control path itself, used by tests and operators to check that
    /// every instance hears the channel.
    Ping { nonce: String },
    /// An admin blocked the user: refuse their tokens older than `token_version`, close their
    /// sockets.
    UserBlocked { user_id: i64, token_version: i32 },
    /// An admin unblocked the user; tokens older than `token_version` stay refused.
    UserUnblocked { user_id: i64, token_version: i32 },
    /// A login session ended (logout, or a refresh token presented twice): its access tokens
    /// are refused and its sockets close.
    SessionRevoked { user_id: i64, session_id: Uuid },
    /// An admin disconnected one socket: the instance that holds it closes it.
    ConnectionDisconnected { connection_id: Uuid },
    /// A subscription was created (`active`) or removed: instances update their subscriber
    /// counts and the live sessions of `consumer_id`.
    SubscriptionChanged {
        consumer_id: i64,
        producer_id: i64,
        active: bool,
    },
    /// The pNode leader stored a new network snapshot: followers load it.
    PnodeSnapshotUpdated { cycle: i64 },
    /// An admin pruned registry entries last seen before `before` (unix seconds): every
    /// instance drops them from memory.
    PnodeRegistryPruned { before: i64 },
    /// An admin changed a producer's stream settings (history, stored data); `None` follows
    /// the deployment's default.
    ProducerSettingsChanged {
        producer_id: i64,
        history_messages: Option<u32>,
        history_age_secs: Option<u64>,
        store_data: Option<bool>,
    },
    /// An admin issued an API token: instances add it to the tokens they accept. The token
    /// itself never travels; `token_hash` is its keyed hash (hex).
    ApiTokenIssued {
        id: i64,
        token_hash: String,
        scopes: Vec<String>,
        producer_ids: Option<Vec<i64>>,
        /// Unix seconds.
        expires_at: Option<i64>,
        /// With `xandeum:unlimited`: the token's own request rate (absent: no limit).
        #[serde(default)]
        rate_per_sec: Option<u32>,
    },
    /// An admin revoked an API token: instances refuse it from now on.
    ApiTokenRevoked { id: i64 },
    /// Plans, clients, children or the children's system settings changed: instances reload
    /// the parts named from Postgres.
    ChildrenChanged { scopes: Vec<ChildrenScope> },
}

/// A part of what instances hold about children.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChildrenScope {
    /// One child's key (issued, rotated, revoked).
    Child {
        id: Uuid,
    },
    /// One client's terms: subscription, plan, configuration, counts, blocked users.
    Client {
        id: i64,
    },
    Plan {
        id: i64,
    },
    /// Maintenance and the version policy.
    System,
}

impl ControlEvent {
    /// A short, stable name for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            ControlEvent::Ping { .. } => "ping",
            ControlEvent::UserBlocked { .. } => "user_blocked",
            ControlEvent::UserUnblocked { .. } => "user_unblocked",
            ControlEvent::SessionRevoked { .. } => "session_revoked",
            ControlEvent::ConnectionDisconnected { .. } => "connection_disconnected",
            ControlEvent::SubscriptionChanged { .. } => "subscription_changed",
            ControlEvent::PnodeSnapshotUpdated { .. } => "pnode_snapshot_updated",
            ControlEvent::PnodeRegistryPruned { .. } => "pnode_registry_pruned",
            ControlEvent::ProducerSettingsChanged { .. } => "producer_settings_changed",
            ControlEvent::ApiTokenIssued { .. } => "api_token_issued",
            ControlEvent::ApiTokenRevoked { .. } => "api_token_revoked",
            ControlEvent::ChildrenChanged { .. } => "children_changed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_as_tagged_json() {
        let envelope = ControlEnvelope {
            origin: Uuid::nil(),
            event: ControlEvent::Ping { nonce: "n1".into() },
        };
        let text = serde_json::to_string(&envelope).expect("serialize");
        assert!(text.contains(r#""type":"ping""#), "{text}");
        let back: ControlEnvelope = serde_json::from_str(&text).expect("deserialize");
        assert_eq!(back, envelope);
    }
}

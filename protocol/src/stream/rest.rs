//! The REST bodies of streaming: subscriptions, private streams, and the admin view of live
//! connections.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::lenient_id;

/// `POST /api/subscribe` and `DELETE /api/unsubscribe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubscribeRequest {
    /// An integer, or a string of digits as Motience clients send it.
    #[serde(deserialize_with = "lenient_id::deserialize")]
    pub producer_id: i64,
}

/// `POST /api/subscribe` → 201 (new) or 200 (it existed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubscribeResponse {
    pub consumer_id: i64,
    pub producer_id: i64,
    /// Whether this call created the subscription.
    pub created: bool,
}

/// `DELETE /api/subscribe/{producer_id}` and `DELETE /api/unsubscribe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnsubscribeResponse {
    pub consumer_id: i64,
    pub producer_id: i64,
    /// Whether a subscription existed and was removed.
    pub removed: bool,
}

/// One side of a subscription, named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubscriptionParty {
    pub user_id: i64,
    pub username: String,
    pub since: DateTime<Utc>,
}

/// `GET /api/subscriptions/{consumerId}`: the producers a consumer subscribes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubscriptionsResponse {
    pub consumer_id: i64,
    pub producers: Vec<SubscriptionParty>,
}

/// `GET /api/subscribers/{producerId}`: the consumers subscribed to a producer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubscribersResponse {
    pub producer_id: i64,
    #[serde(rename = "subscriberCount")]
    pub subscriber_count: u64,
    pub consumers: Vec<SubscriptionParty>,
}

/// `PUT /api/producers/{id}/visibility`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VisibilityRequest {
    /// `true`: only allowed consumers may subscribe (existing subscriptions of others end).
    pub private: bool,
}

/// `PUT /api/producers/{id}/visibility` → 200.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VisibilityResponse {
    pub producer_id: i64,
    pub private: bool,
    /// Consumers whose subscriptions ended because they are not allowed.
    pub unsubscribed: Vec<i64>,
}

/// `POST /api/producers/{id}/allowed-consumers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AllowConsumerRequest {
    /// An integer, or a string of digits.
    #[serde(deserialize_with = "lenient_id::deserialize")]
    pub consumer_id: i64,
}

/// `GET /api/producers/{id}/allowed-consumers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AllowedConsumersResponse {
    pub producer_id: i64,
    pub private: bool,
    pub consumers: Vec<SubscriptionParty>,
}

/// One live socket, as its registry sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectionInfo {
    /// The socket's id across instances (`DELETE /api/admin/connections/{id}` closes it).
    pub id: uuid::Uuid,
    /// `producer` or `consumer`.
    pub kind: String,
    pub user_id: i64,
    pub username: String,
    pub instance: String,
    pub connected_at: DateTime<Utc>,
    pub frames_in: u64,
    pub frames_out: u64,
    /// Frames waiting to be written to the socket.
    pub buffered_messages: u64,
    pub buffered_bytes: u64,
    /// Consumers: how many producers the session receives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriptions: Option<u64>,
}

/// `GET /api/admin/connections`: every instance's live sockets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectionsResponse {
    pub instances: Vec<InstanceConnections>,
    pub producers: u64,
    pub consumers: u64,
}

/// `DELETE /api/admin/connections/{id}`: the socket being closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DisconnectResponse {
    pub id: uuid::Uuid,
    /// `producer` or `consumer`.
    pub kind: String,
    pub user_id: i64,
    pub username: String,
    pub instance: String,
}

/// One instance's sockets, as it last reported them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceConnections {
    pub instance: String,
    pub reported_at: DateTime<Utc>,
    /// Messages this instance accepted from producers since it started.
    #[serde(default)]
    pub messages_in_total: u64,
    /// Data frames this instance queued to consumers since it started.
    #[serde(default)]
    pub deliveries_total: u64,
    pub connections: Vec<ConnectionInfo>,
}

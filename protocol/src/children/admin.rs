//! What admins send and read about plans, clients, children and the system's control settings.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a plan allows a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlanLimits {
    /// Children the client may have (revoked ones do not count); at most 2³¹ − 1, as
    /// Postgres keeps it.
    #[cfg_attr(feature = "openapi", schema(maximum = 2_147_483_647))]
    pub max_children: u32,
    /// User accounts the client may have; at most 2³¹ − 1.
    #[cfg_attr(feature = "openapi", schema(maximum = 2_147_483_647))]
    pub max_users: u32,
}

/// `POST /api/admin/plans`, `PUT /api/admin/plans/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlanRequest {
    /// 1–100 visible characters (trimmed), unique.
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 100,
            // A visible character, and no control, bidirectional or zero-width one.
            pattern = r"^[^\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u2069\u3000\ufeff][^\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]*$"
        )
    )]
    pub name: String,
    pub limits: PlanLimits,
    /// Feature names the plan includes (at most 32, each 1–64 of `a-z0-9_.-`), carried in
    /// every lease.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = feature_names_schema))]
    pub features: Vec<String>,
}

/// The documented form of [`PlanRequest::features`]: attributes cannot put a pattern on the
/// items of a list.
#[cfg(feature = "openapi")]
fn feature_names_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[a-z0-9_.-]{1,64}$")),
        )
        .max_items(Some(32))
        .description(Some(
            "Feature names the plan includes (at most 32, each 1–64 of `a-z0-9_.-`), carried \
             in every lease.",
        ))
        .build()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlanView {
    pub id: i64,
    pub name: String,
    pub limits: PlanLimits,
    pub features: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlansResponse {
    pub plans: Vec<PlanView>,
}

/// Where a client's subscription stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Active,
    /// Payment is late: children keep working (the lease says so).
    PastDue,
    /// Children are blocked.
    Cancelled,
}

impl SubscriptionStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::PastDue => "past_due",
            SubscriptionStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<SubscriptionStatus> {
        [
            SubscriptionStatus::Active,
            SubscriptionStatus::PastDue,
            SubscriptionStatus::Cancelled,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Subscription {
    pub status: SubscriptionStatus,
    /// After this the subscription counts as ended and children are blocked (absent: never).
    /// RFC 3339, with its offset.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
        )
    )]
    pub expires_at: Option<DateTime<Utc>>,
}

/// `POST /api/admin/clients`, `PUT /api/admin/clients/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClientRequest {
    /// 1–100 visible characters (trimmed), unique.
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 100,
            // A visible character, and no control, bidirectional or zero-width one.
            pattern = r"^[^\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u2069\u3000\ufeff][^\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]*$"
        )
    )]
    pub name: String,
    pub plan_id: i64,
    pub subscription: Subscription,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClientView {
    pub id: i64,
    pub name: String,
    pub plan_id: i64,
    pub subscription: Subscription,
    /// Hash of `config` (SHA-256, hex), as leases carry it.
    pub config_hash: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub config: serde_json::Value,
    /// Children not revoked.
    pub children: u32,
    pub users: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClientsResponse {
    pub clients: Vec<ClientView>,
}

/// `PUT /api/admin/clients/{id}/config`: the configuration every lease of the client's
/// children carries (a JSON object, ≤ 16 KiB).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClientConfigRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub config: serde_json::Value,
}

/// `POST /api/admin/clients/{id}/users`: the user joins the client (and then signs in only
/// through its children).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClientUserRequest {
    pub user_id: i64,
}

/// `POST /api/admin/clients/{id}/children`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateChildRequest {
    /// 1–100 visible characters (trimmed), unique within the client.
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 100,
            // A visible character, and no control, bidirectional or zero-width one.
            pattern = r"^[^\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u2069\u3000\ufeff][^\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]*$"
        )
    )]
    pub name: String,
}

/// Whether a child heartbeats, by the mother's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ChildLiveness {
    /// Provisioned, never heard from.
    New,
    Online,
    /// One heartbeat interval missed.
    Late,
    /// Three intervals missed.
    Offline,
    /// Its key was revoked.
    Revoked,
}

impl ChildLiveness {
    pub const fn as_str(self) -> &'static str {
        match self {
            ChildLiveness::New => "new",
            ChildLiveness::Online => "online",
            ChildLiveness::Late => "late",
            ChildLiveness::Offline => "offline",
            ChildLiveness::Revoked => "revoked",
        }
    }

    pub fn parse(text: &str) -> Option<ChildLiveness> {
        [
            ChildLiveness::New,
            ChildLiveness::Online,
            ChildLiveness::Late,
            ChildLiveness::Offline,
            ChildLiveness::Revoked,
        ]
        .into_iter()
        .find(|liveness| liveness.as_str() == text)
    }
}

/// A child as admins see it: never its key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChildView {
    pub id: Uuid,
    pub client_id: i64,
    pub name: String,
    /// The key's first characters, to recognise it.
    pub key_prefix: String,
    pub liveness: ChildLiveness,
    /// The mother's clock.
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    pub version: Option<String>,
    pub version_status: Option<VersionStatus>,
    pub config_hash: Option<String>,
    pub uptime_s: Option<u64>,
    pub users_active: Option<u32>,
    /// What the child reported in its last heartbeat.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub state: serde_json::Value,
    /// The last lease's `seq` and expiry.
    pub lease_seq: u64,
    pub lease_valid_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The child's control socket, when it holds one: which instance it is connected to.
    #[serde(default)]
    pub control: Option<ChildControl>,
}

/// Where a child's control socket is connected (pushes reach it from every instance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChildControl {
    /// The id of the instance that holds the socket.
    pub instance: String,
    /// The mother's clock.
    pub connected_at: DateTime<Utc>,
}

/// `POST …/children` and `POST …/rotate-key`: the key is in this answer and nowhere else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChildKeyIssued {
    pub child: ChildView,
    pub api_key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChildrenResponse {
    /// One page, newest first.
    pub children: Vec<ChildView>,
    /// Children matching the filters, in all.
    pub total: u64,
}

/// `PUT /api/admin/maintenance` and its state in every lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Maintenance {
    pub enabled: bool,
    /// Shown to the children's users (≤ 500 characters).
    #[serde(default)]
    pub message: Option<String>,
    /// When maintenance is planned to end (informative: an admin ends it).
    #[serde(default)]
    pub until: Option<DateTime<Utc>>,
}

/// `PUT /api/admin/versions`: the versions children must and should run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionPolicy {
    /// Below this a child is `update_required` (absent: any version).
    #[serde(default)]
    pub min_version: Option<String>,
    /// Below this a child is `update_available`.
    #[serde(default)]
    pub latest_version: Option<String>,
}

/// The child's version against the mother's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum VersionStatus {
    Ok,
    UpdateAvailable,
    /// Below `min_version`: the child must be updated before it serves.
    UpdateRequired,
}

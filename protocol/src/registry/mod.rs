//! The node registry's wire types: the JSON bodies of `/api/nodes` and `/api/nodes/watch`, and
//! (in [`grpc`]) the protobuf messages of `proto/nodegrid/registry/v1/registry.proto`, the
//! contract of the gRPC API. Both carry the same data; enum values travel by name in JSON
//! (`VM`, `UP`, `CREATED`) and by number in protobuf.

pub mod grpc;
mod rules;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use self::rules::{
    LabelSelector, MAX_LABELS, MAX_METADATA_BYTES, MAX_METADATA_NUMBER, MAX_NAME_CHARS,
    MAX_PAGE_SIZE, has_huge_number, validate_labels, validate_metadata, validate_name,
};

/// What kind of thing a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodeType {
    Baremetal,
    Vm,
    Container,
    IotDevice,
    Pnode,
    Child,
    Custom,
}

impl NodeType {
    pub const ALL: [NodeType; 7] = [
        NodeType::Baremetal,
        NodeType::Vm,
        NodeType::Container,
        NodeType::IotDevice,
        NodeType::Pnode,
        NodeType::Child,
        NodeType::Custom,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            NodeType::Baremetal => "BAREMETAL",
            NodeType::Vm => "VM",
            NodeType::Container => "CONTAINER",
            NodeType::IotDevice => "IOT_DEVICE",
            NodeType::Pnode => "PNODE",
            NodeType::Child => "CHILD",
            NodeType::Custom => "CUSTOM",
        }
    }

    /// By name, ignoring case (`vm`, `VM`).
    pub fn parse(text: &str) -> Option<NodeType> {
        NodeType::ALL
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(text))
    }
}

/// How a node is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodeStatus {
    Unknown,
    Up,
    Down,
    Degraded,
}

impl NodeStatus {
    pub const ALL: [NodeStatus; 4] = [
        NodeStatus::Unknown,
        NodeStatus::Up,
        NodeStatus::Down,
        NodeStatus::Degraded,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Unknown => "UNKNOWN",
            NodeStatus::Up => "UP",
            NodeStatus::Down => "DOWN",
            NodeStatus::Degraded => "DEGRADED",
        }
    }

    /// By name, ignoring case (`up`, `UP`).
    pub fn parse(text: &str) -> Option<NodeStatus> {
        NodeStatus::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(text))
    }
}

/// A node as the registry holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Node {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub node_type: NodeType,
    pub name: String,
    pub status: NodeStatus,
    pub labels: BTreeMap<String, String>,
    /// A JSON object (`{}` when none was given).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: serde_json::Value,
    pub last_seen: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Raised by every change of the node.
    pub revision: i64,
}

/// `POST /api/nodes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateNodeRequest {
    /// Generated (UUID v4) when absent.
    #[serde(default)]
    pub id: Option<Uuid>,
    #[serde(rename = "type")]
    pub node_type: NodeType,
    /// 1 to 200 characters, not blank, without control characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 200,
            // Something other than white space, and no control character anywhere.
            pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000-\u001f\u007f-\u009f]*$"
        )
    )]
    pub name: String,
    /// `UNKNOWN` when absent.
    #[serde(default)]
    pub status: Option<NodeStatus>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = rules::required_labels_schema))]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<serde_json::Value>,
}

/// `PATCH /api/nodes/{id}`: the fields present are replaced (`labels` as a whole map). A
/// `null` field is left as it is; at least one field must change something.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(min_properties = 1))]
#[serde(deny_unknown_fields)]
pub struct UpdateNodeRequest {
    #[serde(default)]
    /// 1 to 200 characters, not blank, without control characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 200,
            // Something other than white space, and no control character anywhere.
            pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000-\u001f\u007f-\u009f]*$"
        )
    )]
    pub name: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = rules::optional_labels_schema))]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<serde_json::Value>,
    #[serde(default)]
    pub status: Option<NodeStatus>,
}

impl UpdateNodeRequest {
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.labels.is_none()
            && self.metadata.is_none()
            && self.status.is_none()
    }
}

/// `PUT /api/nodes/{id}/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetNodeStatusRequest {
    pub status: NodeStatus,
}

/// `GET /api/nodes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeListResponse {
    pub nodes: Vec<Node>,
    /// Pass back as `page_token` for the next page; absent on the last.
    pub next_page_token: Option<String>,
}

/// What happened to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodeEventType {
    Created,
    Updated,
    Deleted,
    /// The watcher asked for events older than those kept: re-list the nodes, then continue
    /// from this event's id.
    Reset,
}

impl NodeEventType {
    pub const fn as_str(self) -> &'static str {
        match self {
            NodeEventType::Created => "CREATED",
            NodeEventType::Updated => "UPDATED",
            NodeEventType::Deleted => "DELETED",
            NodeEventType::Reset => "RESET",
        }
    }

    pub fn parse(text: &str) -> Option<NodeEventType> {
        [
            NodeEventType::Created,
            NodeEventType::Updated,
            NodeEventType::Deleted,
            NodeEventType::Reset,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }
}

/// One change of the registry, as watchers receive it (one WebSocket text frame each).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeEvent {
    /// A strictly increasing integer, as a string; `since` takes it.
    pub event_id: String,
    pub event_type: NodeEventType,
    /// Absent for `RESET`.
    pub node_id: Option<Uuid>,
    /// The fields the change set (`name`, `labels`, `metadata`, `status`, `last_seen`); empty
    /// for `CREATED` and `DELETED`.
    pub changed_fields: Vec<String>,
    /// The node after the change (before it, for `DELETED`); absent for `RESET`.
    pub node: Option<Node>,
    pub ts: DateTime<Utc>,
}

/// What a listing or a watch is narrowed to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFilter {
    pub node_type: Option<NodeType>,
    pub status: Option<NodeStatus>,
    pub labels: LabelSelector,
    /// A part of the name, case-insensitive (listings only).
    pub name_contains: Option<String>,
}

impl NodeFilter {
    /// Whether `node` passes the filter.
    pub fn matches(&self, node: &Node) -> bool {
        self.node_type.is_none_or(|kind| kind == node.node_type)
            && self.status.is_none_or(|status| status == node.status)
            && self.labels.matches(&node.labels)
            && self
                .name_contains
                .as_deref()
                .is_none_or(|part| node.name.to_lowercase().contains(&part.to_lowercase()))
    }
}

//! The protobuf messages of `proto/nodegrid/registry/v1/registry.proto` (package
//! `nodegrid.registry.v1`), generated at build time, and the conversions between them and the
//! JSON types. The service glue (server, client) is generated where it is used.

#![allow(clippy::all, missing_docs)]

use chrono::{DateTime, Utc};

use super as json;

include!(concat!(env!("OUT_DIR"), "/nodegrid.registry.v1.rs"));

/// The encoded `FileDescriptorSet` of the contract, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/registry_descriptor.bin"));

fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// A protobuf timestamp as a time; `None` when out of range.
pub fn time_of(timestamp: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(timestamp.seconds, u32::try_from(timestamp.nanos).ok()?)
}

impl From<json::NodeType> for NodeType {
    fn from(kind: json::NodeType) -> NodeType {
        match kind {
            json::NodeType::Baremetal => NodeType::Baremetal,
            json::NodeType::Vm => NodeType::Vm,
            json::NodeType::Container => NodeType::Container,
            json::NodeType::IotDevice => NodeType::IotDevice,
            json::NodeType::Pnode => NodeType::Pnode,
            json::NodeType::Child => NodeType::Child,
            json::NodeType::Custom => NodeType::Custom,
        }
    }
}

/// The type a protobuf enum number names; `None` for unspecified and unknown numbers.
pub fn node_type(value: i32) -> Option<json::NodeType> {
    Some(match NodeType::try_from(value).ok()? {
        NodeType::Unspecified => return None,
        NodeType::Baremetal => json::NodeType::Baremetal,
        NodeType::Vm => json::NodeType::Vm,
        NodeType::Container => json::NodeType::Container,
        NodeType::IotDevice => json::NodeType::IotDevice,
        NodeType::Pnode => json::NodeType::Pnode,
        NodeType::Child => json::NodeType::Child,
        NodeType::Custom => json::NodeType::Custom,
    })
}

impl From<json::NodeStatus> for NodeStatus {
    fn from(status: json::NodeStatus) -> NodeStatus {
        match status {
            json::NodeStatus::Unknown => NodeStatus::Unknown,
            json::NodeStatus::Up => NodeStatus::Up,
            json::NodeStatus::Down => NodeStatus::Down,
            json::NodeStatus::Degraded => NodeStatus::Degraded,
        }
    }
}

/// The status a protobuf enum number names; `None` for unspecified and unknown numbers.
pub fn node_status(value: i32) -> Option<json::NodeStatus> {
    Some(match NodeStatus::try_from(value).ok()? {
        NodeStatus::Unspecified => return None,
        NodeStatus::Unknown => json::NodeStatus::Unknown,
        NodeStatus::Up => json::NodeStatus::Up,
        NodeStatus::Down => json::NodeStatus::Down,
        NodeStatus::Degraded => json::NodeStatus::Degraded,
    })
}

impl From<&json::Node> for Node {
    fn from(node: &json::Node) -> Node {
        Node {
            id: node.id.to_string(),
            r#type: NodeType::from(node.node_type) as i32,
            name: node.name.clone(),
            status: NodeStatus::from(node.status) as i32,
            labels: node
                .labels
                .iter()
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
            metadata_json: node.metadata.to_string(),
            last_seen: node.last_seen.map(timestamp),
            created_at: Some(timestamp(node.created_at)),
            updated_at: Some(timestamp(node.updated_at)),
            revision: node.revision,
        }
    }
}

/// The JSON form of a protobuf node (what the CLI prints).
impl TryFrom<&Node> for json::Node {
    type Error = String;

    fn try_from(node: &Node) -> Result<json::Node, String> {
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        Ok(json::Node {
            id: uuid::Uuid::parse_str(&node.id).map_err(|_| format!("bad id {:?}", node.id))?,
            node_type: node_type(node.r#type).ok_or("a node without a type")?,
            name: node.name.clone(),
            status: node_status(node.status).unwrap_or(json::NodeStatus::Unknown),
            labels: node
                .labels
                .iter()
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
            metadata: serde_json::from_str(&node.metadata_json)
                .unwrap_or_else(|_| serde_json::json!({})),
            last_seen: node.last_seen.as_ref().and_then(time_of),
            created_at: node.created_at.as_ref().and_then(time_of).unwrap_or(epoch),
            updated_at: node.updated_at.as_ref().and_then(time_of).unwrap_or(epoch),
            revision: node.revision,
        })
    }
}

impl From<json::NodeEventType> for EventType {
    fn from(kind: json::NodeEventType) -> EventType {
        match kind {
            json::NodeEventType::Created => EventType::Created,
            json::NodeEventType::Updated => EventType::Updated,
            json::NodeEventType::Deleted => EventType::Deleted,
            json::NodeEventType::Reset => EventType::Reset,
        }
    }
}

impl From<&json::NodeEvent> for NodeEvent {
    fn from(event: &json::NodeEvent) -> NodeEvent {
        NodeEvent {
            event_id: event.event_id.clone(),
            event_type: EventType::from(event.event_type) as i32,
            node_id: event.node_id.map(|id| id.to_string()).unwrap_or_default(),
            changed_fields: event.changed_fields.clone(),
            node: event.node.as_ref().map(Node::from),
            ts: Some(timestamp(event.ts)),
        }
    }
}

/// The JSON form of a protobuf event (what the CLI prints).
impl TryFrom<&NodeEvent> for json::NodeEvent {
    type Error = String;

    fn try_from(event: &NodeEvent) -> Result<json::NodeEvent, String> {
        let event_type = match EventType::try_from(event.event_type) {
            Ok(EventType::Created) => json::NodeEventType::Created,
            Ok(EventType::Updated) => json::NodeEventType::Updated,
            Ok(EventType::Deleted) => json::NodeEventType::Deleted,
            Ok(EventType::Reset) => json::NodeEventType::Reset,
            _ => return Err(format!("unknown event type {}", event.event_type)),
        };
        Ok(json::NodeEvent {
            event_id: event.event_id.clone(),
            event_type,
            node_id: uuid::Uuid::parse_str(&event.node_id).ok(),
            changed_fields: event.changed_fields.clone(),
            node: event.node.as_ref().map(json::Node::try_from).transpose()?,
            ts: event
                .ts
                .as_ref()
                .and_then(time_of)
                .unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
        })
    }
}

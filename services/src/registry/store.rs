//! The registry's SQL.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use nodegrid_protocol::registry::{
    Node, NodeEventType, NodeFilter, NodeStatus, NodeType, UpdateNodeRequest,
};
use uuid::Uuid;

use super::errors::RegistryError;
use crate::db::DbError;
use crate::webhooks::OutgoingEvent;

/// The advisory lock every change takes ("nodereg" + 1, as a big-endian i64).
const REGISTRY_LOCK_KEY: i64 = 0x6e6f_6465_7265_6701;

const NODE_COLUMNS: &str =
    "id, type, name, status, labels, metadata, last_seen, created_at, updated_at, revision";

/// A node to create.
pub(super) struct NodeWrite {
    pub id: Uuid,
    pub node_type: NodeType,
    pub name: String,
    pub status: NodeStatus,
    pub labels: BTreeMap<String, String>,
    pub metadata: serde_json::Value,
}

/// What a change did: the node (after it; before it for a delete), and the event to record
/// (`None`: nothing changed).
pub(super) struct NodeChange {
    pub node: Node,
    pub event: Option<NodeEventType>,
    pub changed_fields: Vec<&'static str>,
}

pub(super) async fn lock(client: &impl GenericClient) -> Result<(), DbError> {
    client
        .execute("SELECT pg_advisory_xact_lock($1)", &[&REGISTRY_LOCK_KEY])
        .await?;
    Ok(())
}

fn node_from_row(row: &tokio_postgres::Row) -> Result<Node, RegistryError> {
    let corrupt = |what: &str| {
        RegistryError::Database(DbError::Migration(format!(
            "a node row holds an unknown {what}"
        )))
    };
    let node_type: String = row.try_get(1)?;
    let status: String = row.try_get(3)?;
    let labels: serde_json::Value = row.try_get(4)?;
    Ok(Node {
        id: row.try_get(0)?,
        node_type: NodeType::parse(&node_type).ok_or_else(|| corrupt("type"))?,
        name: row.try_get(2)?,
        status: NodeStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
        labels: serde_json::from_value(labels).map_err(|_| corrupt("label map"))?,
        metadata: row.try_get(5)?,
        last_seen: row.try_get::<_, Option<DateTime<Utc>>>(6)?,
        created_at: row.try_get(7)?,
        updated_at: row.try_get(8)?,
        revision: row.try_get(9)?,
    })
}

fn labels_json(labels: &BTreeMap<String, String>) -> serde_json::Value {
    serde_json::to_value(labels).unwrap_or_else(|_| serde_json::json!({}))
}

pub(super) async fn insert(
    client: &impl GenericClient,
    write: NodeWrite,
) -> Result<Option<NodeChange>, RegistryError> {
    let sql = format!(
        "INSERT INTO nodes (id, type, name, status, labels, metadata, last_seen) \
         VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $4 = 'UNKNOWN' THEN NULL ELSE now() END) \
         RETURNING {NODE_COLUMNS}"
    );
    let row = client
        .query_one(
            &sql,
            &[
                &write.id,
                &write.node_type.as_str(),
                &write.name,
                &write.status.as_str(),
                &labels_json(&write.labels),
                &write.metadata,
            ],
        )
        .await?;
    Ok(Some(NodeChange {
        node: node_from_row(&row)?,
        event: Some(NodeEventType::Created),
        changed_fields: Vec::new(),
    }))
}

pub(super) async fn get(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Option<Node>, RegistryError> {
    let sql = format!("SELECT {NODE_COLUMNS} FROM nodes WHERE id = $1");
    client
        .query_opt(&sql, &[&id])
        .await?
        .map(|row| node_from_row(&row))
        .transpose()
}

/// The fields of `request` that differ from `node`, applied to it.
fn apply(node: &mut Node, request: UpdateNodeRequest) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if let Some(name) = request.name.filter(|name| *name != node.name) {
        node.name = name;
        changed.push("name");
    }
    if let Some(labels) = request.labels.filter(|labels| *labels != node.labels) {
        node.labels = labels;
        changed.push("labels");
    }
    if let Some(metadata) = request
        .metadata
        .filter(|metadata| *metadata != node.metadata)
    {
        node.metadata = metadata;
        changed.push("metadata");
    }
    if let Some(status) = request.status.filter(|status| *status != node.status) {
        node.status = status;
        changed.push("status");
    }
    changed
}

pub(super) async fn update(
    client: &impl GenericClient,
    id: Uuid,
    request: UpdateNodeRequest,
) -> Result<Option<NodeChange>, RegistryError> {
    let sql = format!("SELECT {NODE_COLUMNS} FROM nodes WHERE id = $1 FOR UPDATE");
    let Some(row) = client.query_opt(&sql, &[&id]).await? else {
        return Ok(None);
    };
    let mut node = node_from_row(&row)?;
    let reported_status = request.status;
    let changed = apply(&mut node, request);
    if changed.is_empty() {
        // A status said again is still news of the node: when it was last seen.
        if reported_status.is_some() {
            client
                .execute("UPDATE nodes SET last_seen = now() WHERE id = $1", &[&id])
                .await?;
        }
        return Ok(Some(NodeChange {
            node,
            event: None,
            changed_fields: changed,
        }));
    }
    let touch_seen = reported_status.is_some();
    let sql = format!(
        "UPDATE nodes SET name = $2, labels = $3, metadata = $4, status = $5, \
             last_seen = CASE WHEN $6 THEN now() ELSE last_seen END, \
             updated_at = now(), revision = revision + 1 \
         WHERE id = $1 RETURNING {NODE_COLUMNS}"
    );
    let row = client
        .query_one(
            &sql,
            &[
                &id,
                &node.name,
                &labels_json(&node.labels),
                &node.metadata,
                &node.status.as_str(),
                &touch_seen,
            ],
        )
        .await?;
    let mut changed_fields = changed;
    if touch_seen {
        changed_fields.push("last_seen");
    }
    Ok(Some(NodeChange {
        node: node_from_row(&row)?,
        event: Some(NodeEventType::Updated),
        changed_fields,
    }))
}

pub(super) async fn delete(
    client: &impl GenericClient,
    id: Uuid,
) -> Result<Option<NodeChange>, RegistryError> {
    let sql = format!("DELETE FROM nodes WHERE id = $1 RETURNING {NODE_COLUMNS}");
    let Some(row) = client.query_opt(&sql, &[&id]).await? else {
        return Ok(None);
    };
    Ok(Some(NodeChange {
        node: node_from_row(&row)?,
        event: Some(NodeEventType::Deleted),
        changed_fields: Vec::new(),
    }))
}

/// Creates the node named `name` of `node_type`, or updates its status.
pub(super) async fn report(
    client: &impl GenericClient,
    node_type: NodeType,
    name: String,
    status: NodeStatus,
) -> Result<Option<NodeChange>, RegistryError> {
    let sql = format!("SELECT {NODE_COLUMNS} FROM nodes WHERE type = $1 AND name = $2 FOR UPDATE");
    let existing = client
        .query_opt(&sql, &[&node_type.as_str(), &name])
        .await?;
    match existing {
        Some(row) => {
            let id: Uuid = row.try_get(0)?;
            update(
                client,
                id,
                UpdateNodeRequest {
                    status: Some(status),
                    ..UpdateNodeRequest::default()
                },
            )
            .await
        }
        None => {
            insert(
                client,
                NodeWrite {
                    id: Uuid::new_v4(),
                    node_type,
                    name,
                    status,
                    labels: BTreeMap::new(),
                    metadata: serde_json::json!({}),
                },
            )
            .await
        }
    }
}

/// The names of `node_type`'s `UP` nodes that are not in `keep`.
pub(super) async fn up_names_except(
    client: &impl GenericClient,
    node_type: NodeType,
    keep: &[String],
) -> Result<Vec<String>, RegistryError> {
    Ok(client
        .query(
            "SELECT name FROM nodes WHERE type = $1 AND status = 'UP' AND NOT (name = ANY($2)) \
             ORDER BY name LIMIT 10000",
            &[&node_type.as_str(), &keep],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// Which of `names` have no `UP` node of `node_type` (missing, or not `UP`).
pub(super) async fn names_not_up(
    client: &impl GenericClient,
    node_type: NodeType,
    names: &[String],
) -> Result<Vec<String>, RegistryError> {
    Ok(client
        .query(
            "SELECT name FROM unnest($2::TEXT[]) AS wanted(name) \
             WHERE NOT EXISTS (SELECT 1 FROM nodes n WHERE n.type = $1 AND n.name = wanted.name \
                               AND n.status = 'UP') \
             ORDER BY name LIMIT 10000",
            &[&node_type.as_str(), &names],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

pub(super) async fn list(
    client: &impl GenericClient,
    filter: &NodeFilter,
    after: Option<Uuid>,
    limit: usize,
) -> Result<Vec<Node>, RegistryError> {
    let sql = format!(
        "SELECT {NODE_COLUMNS} FROM nodes \
         WHERE ($1::TEXT IS NULL OR type = $1) AND ($2::TEXT IS NULL OR status = $2) \
           AND labels @> $3::JSONB \
           AND ($4::TEXT IS NULL OR strpos(lower(name), lower($4)) > 0) \
           AND ($5::UUID IS NULL OR id > $5) \
         ORDER BY id LIMIT $6"
    );
    let labels = labels_json(&filter.labels.0);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    client
        .query(
            &sql,
            &[
                &filter.node_type.map(NodeType::as_str),
                &filter.status.map(NodeStatus::as_str),
                &labels,
                &filter.name_contains,
                &after,
                &limit,
            ],
        )
        .await?
        .iter()
        .map(node_from_row)
        .collect()
}

/// The outbox row of a change; returns the change's webhook event, which the caller writes with
/// the transaction's others (one statement per transaction, not per change).
pub(super) async fn insert_event(
    client: &impl GenericClient,
    event_type: NodeEventType,
    change: &NodeChange,
) -> Result<Option<OutgoingEvent>, RegistryError> {
    let node = serde_json::to_value(&change.node)
        .map_err(|error| RegistryError::Validation(format!("node not encodable: {error}")))?;
    let fields: Vec<&str> = change.changed_fields.clone();
    client
        .execute(
            "INSERT INTO node_events (event_type, node_id, changed_fields, node) \
             VALUES ($1, $2, $3, $4)",
            &[&event_type.as_str(), &change.node.id, &fields, &node],
        )
        .await?;
    let webhook_type = match event_type {
        NodeEventType::Created => "node.created",
        NodeEventType::Updated => "node.updated",
        NodeEventType::Deleted => "node.deleted",
        NodeEventType::Reset => return Ok(None),
    };
    Ok(Some(OutgoingEvent {
        event_type: webhook_type,
        data: serde_json::json!({
            "node_id": change.node.id,
            "changed_fields": fields,
            "node": node,
        }),
    }))
}

/// Nodes by status.
pub async fn count_by_status(
    client: &impl GenericClient,
) -> Result<BTreeMap<String, i64>, DbError> {
    let rows = client
        .query("SELECT status, count(*) FROM nodes GROUP BY status", &[])
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get::<_, String>(0)?, row.try_get::<_, i64>(1)?)))
        .collect()
}

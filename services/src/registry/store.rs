//! The registry's SQL.

use std::collections::{BTreeMap, HashMap};

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

/// Reports of one transaction, set-based (a few statements whatever their number): creates
/// the nodes of `node_type` that do not exist, sets the status of those whose status
/// differs, and marks the others seen. The changes are returned in the order of `reports`;
/// a name reported twice counts once, with its last status.
pub(super) async fn report_many(
    client: &impl GenericClient,
    node_type: NodeType,
    reports: &[(String, NodeStatus)],
) -> Result<Vec<NodeChange>, RegistryError> {
    let mut latest: HashMap<&str, NodeStatus> = HashMap::with_capacity(reports.len());
    let mut order: Vec<&str> = Vec::with_capacity(reports.len());
    for (name, status) in reports {
        if latest.insert(name.as_str(), *status).is_none() {
            order.push(name.as_str());
        }
    }
    let sql =
        format!("SELECT {NODE_COLUMNS} FROM nodes WHERE type = $1 AND name = ANY($2) FOR UPDATE");
    let mut existing: HashMap<String, Node> = HashMap::with_capacity(order.len());
    for row in client.query(&sql, &[&node_type.as_str(), &order]).await? {
        let node = node_from_row(&row)?;
        existing.insert(node.name.clone(), node);
    }
    let (mut new_ids, mut new_names, mut new_statuses) = (Vec::new(), Vec::new(), Vec::new());
    let (mut changed_ids, mut changed_statuses, mut seen_ids) =
        (Vec::new(), Vec::new(), Vec::new());
    for name in &order {
        let status = latest[name];
        match existing.get(*name) {
            None => {
                new_ids.push(Uuid::new_v4());
                new_names.push(*name);
                new_statuses.push(status.as_str());
            }
            Some(node) if node.status != status => {
                changed_ids.push(node.id);
                changed_statuses.push(status.as_str());
            }
            Some(node) => seen_ids.push(node.id),
        }
    }
    let mut after: HashMap<String, NodeChange> = HashMap::new();
    if !new_ids.is_empty() {
        let sql = format!(
            "INSERT INTO nodes (id, type, name, status, labels, metadata, last_seen) \
             SELECT id, $1, name, status, '{{}}', '{{}}', \
                    CASE WHEN status = 'UNKNOWN' THEN NULL ELSE now() END \
             FROM unnest($2::UUID[], $3::TEXT[], $4::TEXT[]) AS t(id, name, status) \
             RETURNING {NODE_COLUMNS}"
        );
        let rows = client
            .query(
                &sql,
                &[&node_type.as_str(), &new_ids, &new_names, &new_statuses],
            )
            .await?;
        for row in rows {
            let node = node_from_row(&row)?;
            after.insert(
                node.name.clone(),
                NodeChange {
                    node,
                    event: Some(NodeEventType::Created),
                    changed_fields: Vec::new(),
                },
            );
        }
    }
    if !changed_ids.is_empty() {
        // As [`update`] with a status: the status changed, and the node was seen now.
        let sql = format!(
            "UPDATE nodes AS n SET status = u.status, last_seen = now(), updated_at = now(), \
                 revision = n.revision + 1 \
             FROM unnest($1::UUID[], $2::TEXT[]) AS u(id, status) WHERE n.id = u.id \
             RETURNING {}",
            qualified_columns("n")
        );
        for row in client
            .query(&sql, &[&changed_ids, &changed_statuses])
            .await?
        {
            let node = node_from_row(&row)?;
            after.insert(
                node.name.clone(),
                NodeChange {
                    node,
                    event: Some(NodeEventType::Updated),
                    changed_fields: vec!["status", "last_seen"],
                },
            );
        }
    }
    if !seen_ids.is_empty() {
        // A status said again is still news of the node: when it was last seen.
        client
            .execute(
                "UPDATE nodes SET last_seen = now() WHERE id = ANY($1)",
                &[&seen_ids],
            )
            .await?;
    }
    Ok(order
        .iter()
        .filter_map(|name| after.remove(*name))
        .collect())
}

/// [`NODE_COLUMNS`], each prefixed with `alias`.
fn qualified_columns(alias: &str) -> String {
    NODE_COLUMNS
        .split(", ")
        .map(|column| format!("{alias}.{column}"))
        .collect::<Vec<_>>()
        .join(", ")
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
    insert_events(client, &[(event_type, change)])
        .await
        .map(|mut events| events.pop())
}

/// The outbox rows of many changes, in one statement and in the order given; returns their
/// webhook events.
pub(super) async fn insert_events(
    client: &impl GenericClient,
    changes: &[(NodeEventType, &NodeChange)],
) -> Result<Vec<OutgoingEvent>, RegistryError> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let mut types = Vec::with_capacity(changes.len());
    let mut ids = Vec::with_capacity(changes.len());
    let mut fields = Vec::with_capacity(changes.len());
    let mut nodes = Vec::with_capacity(changes.len());
    for (event_type, change) in changes {
        types.push(event_type.as_str());
        ids.push(change.node.id);
        fields.push(change.changed_fields.join(","));
        nodes.push(
            serde_json::to_value(&change.node).map_err(|error| {
                RegistryError::Validation(format!("node not encodable: {error}"))
            })?,
        );
    }
    client
        .execute(
            "INSERT INTO node_events (event_type, node_id, changed_fields, node) \
             SELECT et, id, string_to_array(cf, ','), n \
             FROM unnest($1::TEXT[], $2::UUID[], $3::TEXT[], $4::JSONB[]) \
                  WITH ORDINALITY AS t(et, id, cf, n, ord) \
             ORDER BY ord",
            &[&types, &ids, &fields, &nodes],
        )
        .await?;
    Ok(changes
        .iter()
        .zip(nodes)
        .filter_map(|((event_type, change), node)| {
            let webhook_type = match event_type {
                NodeEventType::Created => "node.created",
                NodeEventType::Updated => "node.updated",
                NodeEventType::Deleted => "node.deleted",
                NodeEventType::Reset => return None,
            };
            Some(OutgoingEvent {
                event_type: webhook_type,
                data: serde_json::json!({
                    "node_id": change.node.id,
                    "changed_fields": change.changed_fields,
                    "node": node,
                }),
            })
        })
        .collect())
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

//! The node registry (the seed's Node Status Platform): every node nodegrid knows of in one
//! Postgres table, and every change as an event.
//!
//! A change, its event (the outbox row) and its audit entry are one transaction. Changes take a
//! transaction-level advisory lock before drawing their event id, so event ids commit in order;
//! [`EventLog`] then copies the outbox into a bounded Redis Stream in id order, from any
//! instance (a script skips what is already there), and every instance tails that stream for
//! its watchers.

mod errors;
mod events;
mod store;

use nodegrid_protocol::registry::{
    CreateNodeRequest, LabelSelector, MAX_PAGE_SIZE, Node, NodeEventType, NodeFilter,
    NodeListResponse, NodeStatus, NodeType, UpdateNodeRequest, validate_labels, validate_metadata,
    validate_name,
};
use tokio_postgres::error::SqlState;
use uuid::Uuid;

pub use self::errors::{
    REGISTRY_EVENTS_RELAYED_TOTAL, REGISTRY_MUTATIONS_TOTAL, REGISTRY_RESETS_TOTAL,
    REGISTRY_WATCHERS, RegistryActor, RegistryError, RegistrySettings,
};
pub use self::events::{EventLog, RegistryWatch, SWEEP_INTERVAL};
use self::store::{NodeChange, NodeWrite};
use crate::bus::RedisBus;
use crate::db::{Database, DbError};
use crate::identity::store::AuditRecord;

/// Nodes reported per transaction by [`NodeRegistry::report_many`] (a few set-based statements
/// each): the registry's lock is held for one chunk at a time.
const REPORT_CHUNK: usize = 1000;

#[derive(Clone)]
pub struct NodeRegistry {
    database: Database,
    log: EventLog,
    events_kept: u64,
}

impl NodeRegistry {
    pub fn new(database: Database, bus: RedisBus, settings: RegistrySettings) -> NodeRegistry {
        NodeRegistry {
            log: EventLog::new(database.clone(), bus, settings.events_kept),
            database,
            events_kept: settings.events_kept,
        }
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }

    pub async fn create(
        &self,
        actor: &RegistryActor,
        request: CreateNodeRequest,
    ) -> Result<Node, RegistryError> {
        validate_name(&request.name).map_err(RegistryError::Validation)?;
        validate_labels(&request.labels).map_err(RegistryError::Validation)?;
        let metadata = request.metadata.unwrap_or_else(|| serde_json::json!({}));
        validate_metadata(&metadata).map_err(RegistryError::Validation)?;
        let write = NodeWrite {
            id: request.id.unwrap_or_else(Uuid::new_v4),
            node_type: request.node_type,
            name: request.name,
            status: request.status.unwrap_or(NodeStatus::Unknown),
            labels: request.labels,
            metadata,
        };
        let node = self
            .change(actor, "node.create", |transaction| {
                Box::pin(store::insert(transaction, write))
            })
            .await?;
        node.ok_or_else(|| RegistryError::Validation("the node was not created".into()))
    }

    /// Replaces the fields `request` names; a request that changes nothing writes nothing.
    pub async fn update(
        &self,
        actor: &RegistryActor,
        id: Uuid,
        request: UpdateNodeRequest,
    ) -> Result<Node, RegistryError> {
        if request.is_empty() {
            return Err(RegistryError::Validation(
                "no field to change: give name, labels, metadata or status".into(),
            ));
        }
        if let Some(name) = &request.name {
            validate_name(name).map_err(RegistryError::Validation)?;
        }
        if let Some(labels) = &request.labels {
            validate_labels(labels).map_err(RegistryError::Validation)?;
        }
        if let Some(metadata) = &request.metadata {
            validate_metadata(metadata).map_err(RegistryError::Validation)?;
        }
        let node = self
            .change(actor, "node.update", move |transaction| {
                Box::pin(store::update(transaction, id, request))
            })
            .await?;
        node.ok_or(RegistryError::NotFound(id))
    }

    pub async fn delete(&self, actor: &RegistryActor, id: Uuid) -> Result<Node, RegistryError> {
        let node = self
            .change(actor, "node.delete", move |transaction| {
                Box::pin(store::delete(transaction, id))
            })
            .await?;
        node.ok_or(RegistryError::NotFound(id))
    }

    pub async fn get(&self, id: Uuid) -> Result<Node, RegistryError> {
        let client = self.database.client().await?;
        store::get(&client, id)
            .await?
            .ok_or(RegistryError::NotFound(id))
    }

    /// How many nodes there are of each status (`UP`, `DOWN`, …).
    pub async fn count_by_status(
        &self,
    ) -> Result<std::collections::BTreeMap<String, i64>, RegistryError> {
        let client = self.database.client().await?;
        Ok(store::count_by_status(&client).await?)
    }

    /// A page of nodes in id order; `page_token` is the previous page's last id.
    pub async fn list(
        &self,
        filter: &NodeFilter,
        page_size: usize,
        page_token: Option<&str>,
    ) -> Result<NodeListResponse, RegistryError> {
        let page_size = match page_size {
            0 => 100,
            size if size > MAX_PAGE_SIZE => {
                return Err(RegistryError::Validation(format!(
                    "page_size must be 1 to {MAX_PAGE_SIZE}"
                )));
            }
            size => size,
        };
        let after = match page_token.filter(|token| !token.is_empty()) {
            Some(token) => Some(Uuid::parse_str(token).map_err(|_| {
                RegistryError::Validation("page_token is not one this server gave".into())
            })?),
            None => None,
        };
        let client = self.database.client().await?;
        let mut nodes = store::list(&client, filter, after, page_size + 1).await?;
        let next_page_token = if nodes.len() > page_size {
            nodes.truncate(page_size);
            nodes.last().map(|node| node.id.to_string())
        } else {
            None
        };
        Ok(NodeListResponse {
            nodes,
            next_page_token,
        })
    }

    /// What nodegrid itself knows of a node it runs (a device's socket, a pNode, a child):
    /// creates it, or sets its status and labels; no event when nothing changed.
    pub async fn report(
        &self,
        node_type: NodeType,
        name: &str,
        status: NodeStatus,
    ) -> Result<(), RegistryError> {
        self.report_many(node_type, vec![(name.to_owned(), status)])
            .await
            .map(|_| ())
    }

    /// [`report`](Self::report) for many nodes of one type, up to [`REPORT_CHUNK`] per
    /// transaction and a few statements each, whatever their number (a pNode cycle's changes,
    /// ten thousand on a deployment's first cycle; a sweep's devices); returns how many events
    /// it recorded. A name reported twice counts once, with its last status. A
    /// name the registry cannot hold (a long imported username) is left out, not an error
    /// that would stop the others.
    pub async fn report_many(
        &self,
        node_type: NodeType,
        statuses: Vec<(String, NodeStatus)>,
    ) -> Result<usize, RegistryError> {
        let mut events = 0;
        let statuses: Vec<(String, NodeStatus)> = statuses
            .into_iter()
            .filter(|(name, _)| match validate_name(name) {
                Ok(()) => true,
                Err(reason) => {
                    tracing::debug!(node = %name, %reason, "not in the registry");
                    false
                }
            })
            .collect();
        for chunk in statuses.chunks(REPORT_CHUNK) {
            {
                let mut client = self.database.client().await?;
                let transaction = client.transaction().await.map_err(DbError::from)?;
                store::lock(&transaction).await?;
                let changes = store::report_many(&transaction, node_type, chunk).await?;
                let recorded: Vec<(NodeEventType, &NodeChange)> = changes
                    .iter()
                    .filter_map(|change| change.event.map(|event| (event, change)))
                    .collect();
                let outgoing = store::insert_events(&transaction, &recorded).await?;
                for (event_type, _) in &recorded {
                    metrics::counter!(REGISTRY_MUTATIONS_TOTAL, "event" => event_type.as_str())
                        .increment(1);
                }
                events += recorded.len();
                crate::webhooks::enqueue(&transaction, &outgoing).await?;
                transaction.commit().await.map_err(DbError::from)?;
            }
            self.log.request_relay();
        }
        Ok(events)
    }

    /// Deletes the outbox rows older than what the event stream keeps (they can no longer be
    /// replayed); returns how many.
    pub async fn prune_events(&self) -> Result<u64, RegistryError> {
        // Never past what the relay has copied: a row not yet in the stream is still owed.
        let Some(relayed) = self.log.relayed().await else {
            return Ok(0);
        };
        let kept = i64::try_from(self.events_kept).unwrap_or(i64::MAX);
        let client = self.database.client().await?;
        Ok(client
            .execute(
                "DELETE FROM node_events \
                 WHERE id < least($2, (SELECT max(id) FROM node_events) - $1)",
                &[&kept, &relayed],
            )
            .await?)
    }

    /// Makes the nodes of `node_type` follow what is connected: the ones named in `connected`
    /// `UP`, the others that are `UP` now `DOWN`. Returns how many changed.
    pub async fn settle(
        &self,
        node_type: NodeType,
        connected: Vec<String>,
    ) -> Result<usize, RegistryError> {
        let (stale, missing) = {
            let client = self.database.client().await?;
            (
                store::up_names_except(&client, node_type, &connected).await?,
                store::names_not_up(&client, node_type, &connected).await?,
            )
        };
        let wanted = stale
            .into_iter()
            .map(|name| (name, NodeStatus::Down))
            .chain(missing.into_iter().map(|name| (name, NodeStatus::Up)))
            .collect();
        self.report_many(node_type, wanted).await
    }

    /// Runs one change in a transaction under the registry's lock: the change itself, its
    /// event and its audit entry; then asks for the event's relay.
    async fn change<F>(
        &self,
        actor: &RegistryActor,
        action: &'static str,
        work: F,
    ) -> Result<Option<Node>, RegistryError>
    where
        F: for<'a> FnOnce(
            &'a deadpool_postgres::Transaction<'a>,
        ) -> futures_util::future::BoxFuture<
            'a,
            Result<Option<NodeChange>, RegistryError>,
        >,
    {
        let change = {
            let mut client = self.database.client().await?;
            let transaction = client.transaction().await.map_err(DbError::from)?;
            store::lock(&transaction).await?;
            let change = match work(&transaction).await {
                Err(RegistryError::Database(DbError::Query(error)))
                    if error.code() == Some(&SqlState::UNIQUE_VIOLATION) =>
                {
                    return Err(unique_violation(&error));
                }
                outcome => outcome?,
            };
            let Some(change) = change else {
                return Ok(None);
            };
            if let Some(event_type) = change.event {
                let outgoing = store::insert_event(&transaction, event_type, &change).await?;
                crate::webhooks::enqueue(&transaction, outgoing.as_slice()).await?;
                let record = audit_record(actor, action, event_type, &change);
                crate::identity::store::insert_audit(&transaction, &record).await?;
                metrics::counter!(REGISTRY_MUTATIONS_TOTAL, "event" => event_type.as_str())
                    .increment(1);
            }
            transaction.commit().await.map_err(DbError::from)?;
            change
        };
        if change.event.is_some() {
            self.log.request_relay();
        }
        Ok(Some(change.node))
    }
}

/// Which unique constraint a write broke.
fn unique_violation(error: &tokio_postgres::Error) -> RegistryError {
    let detail = error
        .as_db_error()
        .and_then(|db| db.constraint().map(str::to_owned))
        .unwrap_or_default();
    if detail == "nodes_pkey" {
        RegistryError::Conflict("a node with this id exists already".into())
    } else {
        RegistryError::Conflict("a node of this type has this name already".into())
    }
}

fn audit_record(
    actor: &RegistryActor,
    action: &'static str,
    event_type: NodeEventType,
    change: &NodeChange,
) -> AuditRecord {
    let (actor_id, actor) = match actor {
        RegistryActor::User { user_id, username } => (Some(*user_id), username.clone()),
        RegistryActor::Token { label } => (None, label.clone()),
    };
    AuditRecord {
        actor_id,
        actor: Some(actor),
        action,
        target: Some(format!("node:{}", change.node.id)),
        source_ip: None,
        details: serde_json::json!({
            "event": event_type.as_str(),
            "type": change.node.node_type.as_str(),
            "name": change.node.name,
            "changed_fields": change.changed_fields,
        }),
    }
}

/// Parses the REST and gRPC filters into one.
pub fn filter(
    node_type: Option<&str>,
    status: Option<&str>,
    label_selector: Option<&str>,
    name_contains: Option<&str>,
) -> Result<NodeFilter, RegistryError> {
    let node_type = match node_type.filter(|text| !text.is_empty()) {
        Some(text) => Some(NodeType::parse(text).ok_or_else(|| {
            RegistryError::Validation(format!(
                "type {text:?} is not one of BAREMETAL, VM, CONTAINER, IOT_DEVICE, PNODE, CHILD, CUSTOM"
            ))
        })?),
        None => None,
    };
    let status = match status.filter(|text| !text.is_empty()) {
        Some(text) => Some(NodeStatus::parse(text).ok_or_else(|| {
            RegistryError::Validation(format!(
                "status {text:?} is not one of UNKNOWN, UP, DOWN, DEGRADED"
            ))
        })?),
        None => None,
    };
    let labels =
        LabelSelector::parse(label_selector.unwrap_or("")).map_err(RegistryError::Validation)?;
    let name_contains = name_contains
        .filter(|text| !text.is_empty())
        .map(|text| text.chars().take(200).collect());
    Ok(NodeFilter {
        node_type,
        status,
        labels,
        name_contains,
    })
}

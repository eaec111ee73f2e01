//! `nodegrid.registry.v1.NodeService`: the registry's gRPC face, over the same
//! `NodeRegistry` as the REST routes.

use std::pin::Pin;

use futures_util::Stream;
use nodegrid_protocol::api_tokens::ApiScope;
use nodegrid_protocol::auth::Role;
use nodegrid_protocol::registry::{self as json, grpc};
use nodegrid_services::identity::Identity;
use nodegrid_services::identity::api_tokens::ApiTokens;
use nodegrid_services::registry::{NodeRegistry, RegistryActor, RegistryError, filter};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::service::node_service_server::NodeService;

/// The service, with what it needs to authorize calls.
#[derive(Clone)]
pub struct NodeApi {
    pub nodes: NodeRegistry,
    pub identity: Identity,
    pub api_tokens: ApiTokens,
    /// `--registry-public-reads`: reads need no token.
    pub public_reads: bool,
}

fn status_of(error: RegistryError) -> Status {
    match error {
        RegistryError::Validation(message) => Status::invalid_argument(message),
        RegistryError::NotFound(id) => Status::not_found(format!("no node {id}")),
        RegistryError::Conflict(message) => Status::already_exists(message),
        RegistryError::Database(error) => {
            tracing::error!(%error, "registry call failed");
            Status::unavailable("the registry's database did not answer")
        }
        RegistryError::Bus(error) => {
            tracing::error!(%error, "registry call failed");
            Status::unavailable("the registry's event log did not answer")
        }
    }
}

/// Who is calling, from the `authorization: Bearer …` metadata.
enum Caller {
    Anonymous,
    User {
        user_id: i64,
        username: String,
        role: Role,
    },
    Token {
        scopes: Vec<ApiScope>,
        actor: RegistryActor,
    },
}

impl NodeApi {
    fn caller(&self, metadata: &MetadataMap) -> Result<Caller, Status> {
        let Some(value) = metadata.get("authorization") else {
            return Ok(Caller::Anonymous);
        };
        let value = value
            .to_str()
            .map_err(|_| Status::unauthenticated("the authorization metadata is not text"))?;
        let token = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| Status::unauthenticated("authorization must be `Bearer <token>`"))?;
        if ApiTokens::is_api_token(token) {
            let grant = self
                .api_tokens
                .verify(token, chrono::Utc::now().timestamp())
                .map_err(|_| Status::unauthenticated("the API token is not valid"))?;
            return Ok(Caller::Token {
                scopes: grant.scopes,
                actor: RegistryActor::token(token),
            });
        }
        let user = self
            .identity
            .authenticate(token)
            .map_err(|error| Status::unauthenticated(error.to_string()))?;
        Ok(Caller::User {
            user_id: user.user_id,
            username: user.username,
            role: user.role,
        })
    }

    fn may_read(&self, metadata: &MetadataMap) -> Result<(), Status> {
        match self.caller(metadata)? {
            Caller::Anonymous if self.public_reads => Ok(()),
            Caller::Anonymous => Err(Status::unauthenticated(
                "reading the registry needs `authorization: Bearer <token>`",
            )),
            Caller::User { .. } => Ok(()),
            Caller::Token { scopes, .. }
                if scopes.contains(&ApiScope::NodesRead)
                    || scopes.contains(&ApiScope::NodesWrite) =>
            {
                Ok(())
            }
            Caller::Token { .. } => Err(Status::permission_denied(
                "this API token has no nodes:read scope",
            )),
        }
    }

    fn writer(&self, metadata: &MetadataMap) -> Result<RegistryActor, Status> {
        match self.caller(metadata)? {
            Caller::Anonymous => Err(Status::unauthenticated(
                "changing the registry needs `authorization: Bearer <token>`",
            )),
            Caller::User {
                user_id,
                username,
                role: Role::Admin,
            } => Ok(RegistryActor::User { user_id, username }),
            Caller::User { .. } => Err(Status::permission_denied(
                "changing the registry needs an admin or an operator token",
            )),
            Caller::Token { scopes, actor } if scopes.contains(&ApiScope::NodesWrite) => Ok(actor),
            Caller::Token { .. } => Err(Status::permission_denied(
                "this API token has no nodes:write scope",
            )),
        }
    }
}

fn node_id(text: &str) -> Result<Uuid, Status> {
    Uuid::parse_str(text)
        .map_err(|_| Status::invalid_argument(format!("id {text:?} is not a UUID")))
}

fn metadata_of(text: &str) -> Result<Option<serde_json::Value>, Status> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(text)
        .map(Some)
        .map_err(|error| Status::invalid_argument(format!("metadata_json is not JSON: {error}")))
}

fn labels_of(
    labels: &std::collections::HashMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    labels
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

type EventStream = Pin<Box<dyn Stream<Item = Result<grpc::NodeEvent, Status>> + Send>>;

#[tonic::async_trait]
impl NodeService for NodeApi {
    async fn create_node(
        &self,
        request: Request<grpc::CreateNodeRequest>,
    ) -> Result<Response<grpc::Node>, Status> {
        let actor = self.writer(request.metadata())?;
        let node = request
            .into_inner()
            .node
            .ok_or_else(|| Status::invalid_argument("node is required"))?;
        let create = json::CreateNodeRequest {
            id: if node.id.is_empty() {
                None
            } else {
                Some(node_id(&node.id)?)
            },
            node_type: grpc::node_type(node.r#type).ok_or_else(|| {
                Status::invalid_argument(
                    "type is required: BAREMETAL, VM, CONTAINER, IOT_DEVICE, PNODE, CHILD or CUSTOM",
                )
            })?,
            name: node.name,
            status: grpc::node_status(node.status),
            labels: labels_of(&node.labels),
            metadata: metadata_of(&node.metadata_json)?,
        };
        let created = self.nodes.create(&actor, create).await.map_err(status_of)?;
        Ok(Response::new(grpc::Node::from(&created)))
    }

    async fn update_node(
        &self,
        request: Request<grpc::UpdateNodeRequest>,
    ) -> Result<Response<grpc::Node>, Status> {
        let actor = self.writer(request.metadata())?;
        let request = request.into_inner();
        let node = request
            .node
            .ok_or_else(|| Status::invalid_argument("node is required"))?;
        let paths = request
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        if paths.is_empty() {
            return Err(Status::invalid_argument(
                "update_mask names no field: use name, labels, metadata, status",
            ));
        }
        let mut change = json::UpdateNodeRequest::default();
        for path in &paths {
            match path.as_str() {
                "name" => change.name = Some(node.name.clone()),
                "labels" => change.labels = Some(labels_of(&node.labels)),
                "metadata" | "metadata_json" => {
                    change.metadata = Some(
                        metadata_of(&node.metadata_json)?.unwrap_or_else(|| serde_json::json!({})),
                    );
                }
                "status" => {
                    change.status = Some(grpc::node_status(node.status).ok_or_else(|| {
                        Status::invalid_argument("status must be UNKNOWN, UP, DOWN or DEGRADED")
                    })?);
                }
                other => {
                    return Err(Status::invalid_argument(format!(
                        "update_mask path {other:?} is not one of name, labels, metadata, status"
                    )));
                }
            }
        }
        let updated = self
            .nodes
            .update(&actor, node_id(&node.id)?, change)
            .await
            .map_err(status_of)?;
        Ok(Response::new(grpc::Node::from(&updated)))
    }

    async fn delete_node(
        &self,
        request: Request<grpc::DeleteNodeRequest>,
    ) -> Result<Response<grpc::DeleteNodeResponse>, Status> {
        let actor = self.writer(request.metadata())?;
        let id = node_id(&request.into_inner().id)?;
        let deleted = self.nodes.delete(&actor, id).await.map_err(status_of)?;
        Ok(Response::new(grpc::DeleteNodeResponse {
            node: Some(grpc::Node::from(&deleted)),
        }))
    }

    async fn get_node(
        &self,
        request: Request<grpc::GetNodeRequest>,
    ) -> Result<Response<grpc::Node>, Status> {
        self.may_read(request.metadata())?;
        let id = node_id(&request.into_inner().id)?;
        let node = self.nodes.get(id).await.map_err(status_of)?;
        Ok(Response::new(grpc::Node::from(&node)))
    }

    async fn list_nodes(
        &self,
        request: Request<grpc::ListNodesRequest>,
    ) -> Result<Response<grpc::ListNodesResponse>, Status> {
        self.may_read(request.metadata())?;
        let request = request.into_inner();
        let filter = filter(
            grpc::node_type(request.r#type).map(json::NodeType::as_str),
            grpc::node_status(request.status).map(json::NodeStatus::as_str),
            Some(&request.label_selector),
            Some(&request.name_contains),
        )
        .map_err(status_of)?;
        let page_size = usize::try_from(request.page_size)
            .map_err(|_| Status::invalid_argument("page_size must be 1 to 1000"))?;
        let page = self
            .nodes
            .list(&filter, page_size, Some(&request.page_token))
            .await
            .map_err(status_of)?;
        Ok(Response::new(grpc::ListNodesResponse {
            nodes: page.nodes.iter().map(grpc::Node::from).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        request: Request<grpc::WatchEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        self.may_read(request.metadata())?;
        let request = request.into_inner();
        let filter = filter(
            grpc::node_type(request.r#type).map(json::NodeType::as_str),
            grpc::node_status(request.status).map(json::NodeStatus::as_str),
            Some(&request.label_selector),
            None,
        )
        .map_err(status_of)?;
        let since = match request.since_event_id.trim() {
            "" => None,
            text => Some(
                text.parse::<i64>()
                    .ok()
                    .filter(|id| *id >= 0)
                    .ok_or_else(|| {
                        Status::invalid_argument(
                            "since_event_id must be an event id (a decimal integer)",
                        )
                    })?,
            ),
        };
        let watch = self
            .nodes
            .log()
            .watch(filter, since)
            .await
            .map_err(status_of)?;
        let events = futures_util::stream::unfold(Some(watch), |watch| async move {
            let mut watch = watch?;
            match watch.next().await {
                Ok(event) => Some((Ok(grpc::NodeEvent::from(&event)), Some(watch))),
                Err(error) => Some((Err(status_of(error)), None)),
            }
        });
        Ok(Response::new(Box::pin(events)))
    }
}

//! `nodegrid nodes`: the node registry from the command line, over gRPC, with the Node Status
//! Platform's `nodectl` commands, flags and variables (`BACKEND_ADDR`, `BACKEND_TOKEN`), so
//! that nodectl scripts work by swapping the binary's name.

use std::collections::HashMap;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use nodegrid_protocol::registry::{self as json, grpc};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

/// The generated client glue; the messages are `nodegrid_protocol::registry::grpc`'s.
#[allow(clippy::all, missing_docs, unreachable_pub)]
pub mod service {
    include!(concat!(env!("OUT_DIR"), "/nodegrid.registry.v1.rs"));
}

use service::node_service_client::NodeServiceClient;

/// How long connecting to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one call (other than `watch`) may take.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the registry is and how to sign in to it, as nodectl takes them: shared by
/// `nodegrid nodes`, `nodegrid sensor` and `nodegrid sim nodes`.
#[derive(Debug, Clone, Args)]
pub struct Backend {
    /// The server's gRPC address (host:port, or an http:// URL).
    #[arg(
        long,
        env = "BACKEND_ADDR",
        default_value = "127.0.0.1:50051",
        global = true
    )]
    pub addr: String,
    /// An admin's access token or an operator token (`ngt_…`); changes need `nodes:write`.
    #[arg(long, env = "BACKEND_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct NodesOptions {
    #[command(flatten)]
    pub backend: Backend,
    #[command(subcommand)]
    pub command: NodesCommand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    #[default]
    Table,
    Json,
}

#[derive(Debug, Clone, Subcommand)]
pub enum NodesCommand {
    /// List nodes: ID, NAME, TYPE, STATUS, LAST SEEN.
    List {
        #[arg(long = "type")]
        node_type: Option<String>,
        #[arg(long)]
        status: Option<String>,
        /// `k=v,k2=v2`, or the flag repeated.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// A part of the name.
        #[arg(long)]
        search: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Show one node.
    Get {
        id: String,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Create a node.
    Create {
        #[arg(long = "type")]
        node_type: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        status: Option<String>,
        /// `k=v`, repeated.
        #[arg(long = "label")]
        labels: Vec<String>,
        #[arg(long)]
        metadata_json: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Change the fields given (labels are replaced as a whole).
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long = "label")]
        labels: Vec<String>,
        #[arg(long)]
        metadata_json: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Set a node's status: UP, DOWN, DEGRADED or UNKNOWN.
    SetStatus {
        id: String,
        #[arg(long)]
        status: String,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Delete a node.
    Delete { id: String },
    /// Print every change as it happens (one line each; with --output json, one JSON object).
    Watch {
        #[arg(long = "type")]
        node_type: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Replay what the server keeps after this event id first.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum NodesError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Call(Status),
    #[error("cannot print: {0}")]
    Print(String),
}

fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::InvalidArgument => "invalid argument",
        tonic::Code::NotFound => "not found",
        tonic::Code::AlreadyExists => "already exists",
        tonic::Code::PermissionDenied => "permission denied",
        tonic::Code::Unauthenticated => "unauthenticated",
        tonic::Code::Unavailable => "unavailable",
        tonic::Code::DeadlineExceeded => "deadline exceeded",
        _ => "error",
    }
}

impl NodesError {
    /// 2 for usage errors, 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            NodesError::Usage(_) => 2,
            _ => 1,
        }
    }
}

pub(crate) fn node_type(text: &str) -> Result<i32, NodesError> {
    json::NodeType::parse(text)
        .map(|kind| grpc::NodeType::from(kind) as i32)
        .ok_or_else(|| {
            NodesError::Usage(format!(
                "--type {text:?}: one of BAREMETAL, VM, CONTAINER, IOT_DEVICE, PNODE, CHILD, CUSTOM"
            ))
        })
}

fn node_status(text: &str) -> Result<i32, NodesError> {
    json::NodeStatus::parse(text)
        .map(|status| grpc::NodeStatus::from(status) as i32)
        .ok_or_else(|| {
            NodesError::Usage(format!(
                "--status {text:?}: one of UNKNOWN, UP, DOWN, DEGRADED"
            ))
        })
}

/// `--label k=v` flags (each may hold several, comma-separated).
fn labels(flags: &[String]) -> Result<HashMap<String, String>, NodesError> {
    let mut labels = HashMap::new();
    for flag in flags {
        let selector = json::LabelSelector::parse(flag).map_err(NodesError::Usage)?;
        labels.extend(selector.0);
    }
    Ok(labels)
}

fn selector(flags: &[String]) -> Result<String, NodesError> {
    let mut pairs: Vec<String> = labels(flags)?
        .into_iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    pairs.sort();
    Ok(pairs.join(","))
}

/// A registry client with its bearer token, shared by the CLI, the sensors and the simulator.
#[derive(Clone)]
pub(crate) struct Client {
    pub(crate) inner: NodeServiceClient<Channel>,
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Client {
    pub(crate) async fn connect(backend: &Backend) -> Result<Client, NodesError> {
        let (addr, token) = (backend.addr.as_str(), backend.token.as_deref());
        let url = if addr.contains("://") {
            addr.to_owned()
        } else {
            format!("http://{addr}")
        };
        let unreachable = |reason: String| NodesError::Connect {
            addr: addr.to_owned(),
            reason,
        };
        let channel = Endpoint::from_shared(url)
            .map_err(|error| unreachable(error.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .connect()
            .await
            .map_err(|error| unreachable(error.to_string()))?;
        let token =
            match token {
                Some(token) => Some(format!("Bearer {token}").parse().map_err(|_| {
                    NodesError::Usage("BACKEND_TOKEN is not printable text".into())
                })?),
                None => None,
            };
        Ok(Client {
            inner: NodeServiceClient::new(channel),
            token,
        })
    }

    pub(crate) fn request<T>(&self, message: T, timeout: Option<Duration>) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        if let Some(timeout) = timeout {
            request.set_timeout(timeout);
        }
        request
    }
}

/// Runs one `nodegrid nodes` command, printing to standard output.
pub async fn run(options: NodesOptions) -> Result<(), NodesError> {
    let mut client = Client::connect(&options.backend).await?;
    match options.command {
        NodesCommand::List {
            node_type: kind,
            status,
            labels: label_flags,
            search,
            output,
        } => {
            let mut nodes = Vec::new();
            let mut page_token = String::new();
            loop {
                let request = grpc::ListNodesRequest {
                    r#type: kind.as_deref().map(node_type).transpose()?.unwrap_or(0),
                    status: status.as_deref().map(node_status).transpose()?.unwrap_or(0),
                    label_selector: selector(&label_flags)?,
                    name_contains: search.clone().unwrap_or_default(),
                    page_size: 1000,
                    page_token: page_token.clone(),
                };
                let page = client
                    .inner
                    .list_nodes(client.request(request, Some(CALL_TIMEOUT)))
                    .await
                    .map_err(NodesError::Call)?
                    .into_inner();
                nodes.extend(page.nodes);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            print_nodes(&nodes, output)
        }
        NodesCommand::Get { id, output } => {
            let node = client
                .inner
                .get_node(client.request(grpc::GetNodeRequest { id }, Some(CALL_TIMEOUT)))
                .await
                .map_err(NodesError::Call)?
                .into_inner();
            print_node(&node, output)
        }
        NodesCommand::Create {
            node_type: kind,
            name,
            status,
            labels: label_flags,
            metadata_json,
            output,
        } => {
            let node = grpc::Node {
                r#type: node_type(&kind)?,
                name,
                status: status.as_deref().map(node_status).transpose()?.unwrap_or(0),
                labels: labels(&label_flags)?,
                metadata_json: metadata_json.unwrap_or_default(),
                ..grpc::Node::default()
            };
            let created = client
                .inner
                .create_node(client.request(
                    grpc::CreateNodeRequest { node: Some(node) },
                    Some(CALL_TIMEOUT),
                ))
                .await
                .map_err(NodesError::Call)?
                .into_inner();
            print_node(&created, output)
        }
        NodesCommand::Update {
            id,
            name,
            status,
            labels: label_flags,
            metadata_json,
            output,
        } => {
            let mut paths = Vec::new();
            let mut node = grpc::Node {
                id,
                ..grpc::Node::default()
            };
            if let Some(name) = name {
                node.name = name;
                paths.push("name".to_owned());
            }
            if let Some(status) = status {
                node.status = node_status(&status)?;
                paths.push("status".to_owned());
            }
            if !label_flags.is_empty() {
                node.labels = labels(&label_flags)?;
                paths.push("labels".to_owned());
            }
            if let Some(metadata) = metadata_json {
                node.metadata_json = metadata;
                paths.push("metadata".to_owned());
            }
            if paths.is_empty() {
                return Err(NodesError::Usage(
                    "nothing to change: give --name, --status, --label or --metadata-json".into(),
                ));
            }
            update(&mut client, node, paths, output).await
        }
        NodesCommand::SetStatus { id, status, output } => {
            let node = grpc::Node {
                id,
                status: node_status(&status)?,
                ..grpc::Node::default()
            };
            update(&mut client, node, vec!["status".to_owned()], output).await
        }
        NodesCommand::Delete { id } => {
            let deleted = client
                .inner
                .delete_node(client.request(grpc::DeleteNodeRequest { id }, Some(CALL_TIMEOUT)))
                .await
                .map_err(NodesError::Call)?
                .into_inner();
            if let Some(node) = deleted.node {
                println!("deleted {} ({})", node.id, node.name);
            }
            Ok(())
        }
        NodesCommand::Watch {
            node_type: kind,
            status,
            labels: label_flags,
            since,
            output,
        } => {
            let request = grpc::WatchEventsRequest {
                r#type: kind.as_deref().map(node_type).transpose()?.unwrap_or(0),
                status: status.as_deref().map(node_status).transpose()?.unwrap_or(0),
                label_selector: selector(&label_flags)?,
                since_event_id: since.unwrap_or_default(),
            };
            let mut events = client
                .inner
                .watch_events(client.request(request, None))
                .await
                .map_err(NodesError::Call)?
                .into_inner();
            while let Some(event) = events.message().await.map_err(NodesError::Call)? {
                print_event(&event, output)?;
            }
            Ok(())
        }
    }
}

async fn update(
    client: &mut Client,
    node: grpc::Node,
    paths: Vec<String>,
    output: Output,
) -> Result<(), NodesError> {
    let request = grpc::UpdateNodeRequest {
        node: Some(node),
        update_mask: Some(prost_types::FieldMask { paths }),
    };
    let updated = client
        .inner
        .update_node(client.request(request, Some(CALL_TIMEOUT)))
        .await
        .map_err(NodesError::Call)?
        .into_inner();
    print_node(&updated, output)
}

fn as_json(node: &grpc::Node) -> Result<json::Node, NodesError> {
    json::Node::try_from(node).map_err(NodesError::Print)
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), NodesError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|error| NodesError::Print(error.to_string()))?;
    println!("{text}");
    Ok(())
}

fn last_seen(node: &json::Node) -> String {
    node.last_seen.map_or_else(
        || "-".to_owned(),
        |time| time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

fn print_nodes(nodes: &[grpc::Node], output: Output) -> Result<(), NodesError> {
    let nodes = nodes.iter().map(as_json).collect::<Result<Vec<_>, _>>()?;
    match output {
        Output::Json => print_json(&nodes),
        Output::Table => {
            let rows: Vec<[String; 5]> = nodes
                .iter()
                .map(|node| {
                    [
                        node.id.to_string(),
                        node.name.clone(),
                        node.node_type.as_str().to_owned(),
                        node.status.as_str().to_owned(),
                        last_seen(node),
                    ]
                })
                .collect();
            print_table(["ID", "NAME", "TYPE", "STATUS", "LAST SEEN"], &rows);
            Ok(())
        }
    }
}

fn print_node(node: &grpc::Node, output: Output) -> Result<(), NodesError> {
    let node = as_json(node)?;
    match output {
        Output::Json => print_json(&node),
        Output::Table => {
            let labels: Vec<String> = node
                .labels
                .iter()
                .map(|(key, value)| format!("{key}={value}"))
                .collect();
            println!("ID:        {}", node.id);
            println!("NAME:      {}", node.name);
            println!("TYPE:      {}", node.node_type.as_str());
            println!("STATUS:    {}", node.status.as_str());
            println!("LABELS:    {}", labels.join(","));
            println!("METADATA:  {}", node.metadata);
            println!("LAST SEEN: {}", last_seen(&node));
            println!("REVISION:  {}", node.revision);
            Ok(())
        }
    }
}

fn print_event(event: &grpc::NodeEvent, output: Output) -> Result<(), NodesError> {
    let event = json::NodeEvent::try_from(event).map_err(NodesError::Print)?;
    match output {
        Output::Json => {
            let text = serde_json::to_string(&event)
                .map_err(|error| NodesError::Print(error.to_string()))?;
            println!("{text}");
        }
        Output::Table => {
            let (name, status) = event.node.as_ref().map_or(("-".to_owned(), "-"), |node| {
                (node.name.clone(), node.status.as_str())
            });
            println!(
                "{} {} {} {} {} [{}]",
                event.event_id,
                event.event_type.as_str(),
                event
                    .node_id
                    .map_or_else(|| "-".to_owned(), |id| id.to_string()),
                name,
                status,
                event.changed_fields.join(",")
            );
        }
    }
    Ok(())
}

fn print_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", padded.join("   ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

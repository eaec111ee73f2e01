//! The gRPC API (`--grpc-addr`, default 127.0.0.1:50051): the node registry's `NodeService`
//! from `protocol/proto/nodegrid/registry/v1/registry.proto`, with server reflection, served
//! by tonic beside the HTTP server.

mod nodes;
use std::net::SocketAddr;

use tokio::sync::oneshot;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

pub use self::nodes::NodeApi;

pub mod service;

/// The running gRPC server.
pub struct GrpcServer {
    port: u16,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl GrpcServer {
    /// Binds `addr` now (so that a taken port fails the start) and serves in the background.
    pub fn start(addr: SocketAddr, api: NodeApi) -> std::io::Result<GrpcServer> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(
                nodegrid_protocol::registry::grpc::FILE_DESCRIPTOR_SET,
            )
            .build_v1()
            .map_err(std::io::Error::other)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(async move {
            let outcome = Server::builder()
                .add_service(service::node_service_server::NodeServiceServer::new(api))
                .add_service(reflection)
                .serve_with_incoming_shutdown(
                    // No Nagle: a small answer otherwise waits for the peer's delayed ACK.
                    TcpIncoming::from(listener).with_nodelay(Some(true)),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await;
            if let Err(error) = outcome {
                tracing::error!(%error, "the gRPC server stopped");
            }
        });
        tracing::info!(%addr, port, "gRPC listening");
        Ok(GrpcServer {
            port,
            stop: Some(stop),
            done: Some(done),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops accepting, lets open calls end, and waits for the server (watch streams end with
    /// their connections).
    pub async fn stop(&mut self, grace: std::time::Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut done) = self.done.take()
            && tokio::time::timeout(grace, &mut done).await.is_err()
        {
            // Watch streams only end with their clients: cut what is left.
            done.abort();
        }
    }
}

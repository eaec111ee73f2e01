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

/// Worker threads of the gRPC server's own runtime.
const GRPC_WORKERS: usize = 2;

/// The running gRPC server, on a thread and runtime of its own: the actix system thread also
/// runs the actors, and watch streams and changes queued behind them made the tail latency.
pub struct GrpcServer {
    port: u16,
    stop: Option<oneshot::Sender<std::time::Duration>>,
    done: Option<oneshot::Receiver<()>>,
}

impl GrpcServer {
    /// Binds `addr` now (so that a taken port fails the start) and serves in the background.
    pub fn start(addr: SocketAddr, api: NodeApi) -> std::io::Result<GrpcServer> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(
                nodegrid_protocol::registry::grpc::FILE_DESCRIPTOR_SET,
            )
            .build_v1()
            .map_err(std::io::Error::other)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(GRPC_WORKERS)
            .thread_name("grpc")
            .enable_all()
            .build()?;
        let (stop, stopped) = oneshot::channel::<std::time::Duration>();
        let (finished, done) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("grpc-server".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(error) => {
                            tracing::error!(%error, "the gRPC listener cannot be used");
                            return;
                        }
                    };
                    let (drain, draining) = oneshot::channel::<()>();
                    let serve = Server::builder()
                        .add_service(service::node_service_server::NodeServiceServer::new(api))
                        .add_service(reflection)
                        .serve_with_incoming_shutdown(
                            // No Nagle: a small answer otherwise waits for the peer's delayed ACK.
                            TcpIncoming::from(listener).with_nodelay(Some(true)),
                            async {
                                let _ = draining.await;
                            },
                        );
                    tokio::pin!(serve);
                    tokio::select! {
                        outcome = &mut serve => {
                            if let Err(error) = outcome {
                                tracing::error!(%error, "the gRPC server stopped");
                            }
                        }
                        grace = stopped => {
                            // Stop accepting; open calls get the grace, then the runtime goes
                            // (watch streams only end with their clients).
                            let _ = drain.send(());
                            let grace = grace.unwrap_or_default();
                            let _ = tokio::time::timeout(grace, serve).await;
                        }
                    }
                });
                runtime.shutdown_background();
                let _ = finished.send(());
            })?;
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

    /// Stops accepting, lets open calls end within `grace`, then cuts what is left.
    pub async fn stop(&mut self, grace: std::time::Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(grace);
        }
        if let Some(done) = self.done.take() {
            let _ = tokio::time::timeout(grace * 2, done).await;
        }
    }
}

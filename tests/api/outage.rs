//! A TCP relay on loopback that a test can cut and restore: a dependency (Postgres, Redis)
//! going away and coming back, as the server sees it, without stopping the machine's own.
//!
//! The relay runs on a thread and runtime of its own, so that it keeps relaying while the
//! test's thread blocks (waiting for a server process to start, say).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct Relay {
    pub port: u16,
    open: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// How a slow relay holds what it passes on: every chunk `delay` late, and every
/// `stall_every`-th chunk `stall` later still (a lost segment's retransmission, as TCP would
/// see it: what follows waits behind it). Order is kept.
#[derive(Debug, Clone, Copy)]
pub struct Slowness {
    pub delay: std::time::Duration,
    pub stall_every: u64,
    pub stall: std::time::Duration,
}

/// Copies `from` into `to`, each chunk held as `slowness` says.
async fn copy_slowly(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    slowness: Slowness,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (chunks, mut due_chunks) = tokio::sync::mpsc::unbounded_channel();
    let reading = tokio::spawn(async move {
        let mut last_due = tokio::time::Instant::now();
        let mut count = 0u64;
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            count += 1;
            let mut due = tokio::time::Instant::now() + slowness.delay;
            if slowness.stall_every > 0 && count.is_multiple_of(slowness.stall_every) {
                due += slowness.stall;
            }
            last_due = due.max(last_due);
            if chunks.send((last_due, buffer[..n].to_vec())).is_err() {
                break;
            }
        }
    });
    while let Some((due, chunk)) = due_chunks.recv().await {
        tokio::time::sleep_until(due).await;
        if to.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
    reading.abort();
}

impl Relay {
    /// Relays connections on a new loopback port to `target` (`host:port`).
    pub async fn start(target: String) -> Relay {
        Relay::start_with(target, None).await
    }

    /// Like [`Relay::start`], holding everything as `slowness` says, both ways.
    pub async fn start_slow(target: String, slowness: Slowness) -> Relay {
        Relay::start_with(target, Some(slowness)).await
    }

    async fn start_with(target: String, slowness: Option<Slowness>) -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (thread_open, thread_links) = (open.clone(), links.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                let accept = async {
                    loop {
                        let Ok((mut client, _)) = listener.accept().await else {
                            continue;
                        };
                        if !thread_open.load(Ordering::SeqCst) {
                            // Cut: the connection is dropped at once, as a refused one would be.
                            continue;
                        }
                        let target = target.clone();
                        let link = tokio::spawn(async move {
                            let Ok(mut server) = TcpStream::connect(&target).await else {
                                return;
                            };
                            match slowness {
                                None => {
                                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server)
                                        .await;
                                }
                                Some(slowness) => {
                                    let _ = client.set_nodelay(true);
                                    let _ = server.set_nodelay(true);
                                    let (client_in, client_out) = client.into_split();
                                    let (server_in, server_out) = server.into_split();
                                    let up =
                                        tokio::spawn(copy_slowly(client_in, server_out, slowness));
                                    copy_slowly(server_in, client_out, slowness).await;
                                    up.abort();
                                }
                            }
                        });
                        thread_links.lock().unwrap().push(link.abort_handle());
                    }
                };
                tokio::select! {
                    () = accept => {}
                    _ = stopped => {}
                }
            });
        });
        Relay {
            port,
            open,
            links,
            stop: Some(stop),
        }
    }

    /// Drops every relayed connection and refuses new ones.
    pub async fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.open.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// `host:port` of a `postgres://…@host:port/db` URL.
pub fn postgres_target(url: &str) -> String {
    let after_at = url.rsplit_once('@').map_or(url, |(_, rest)| rest);
    let host_port = after_at.split('/').next().unwrap_or(after_at);
    if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    }
}

/// The same URL, pointed at `port` on loopback.
pub fn through_relay(url: &str, port: u16) -> String {
    let (before, after_at) = url.rsplit_once('@').unwrap_or(("postgres://postgres", url));
    let database = after_at.split_once('/').map_or("", |(_, db)| db);
    format!("{before}@127.0.0.1:{port}/{database}")
}

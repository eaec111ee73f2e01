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

impl Relay {
    /// Relays connections on a new loopback port to `target` (`host:port`).
    pub async fn start(target: String) -> Relay {
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
                            if let Ok(mut server) = TcpStream::connect(&target).await {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut client, &mut server).await;
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

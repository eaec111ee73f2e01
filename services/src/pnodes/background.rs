//! Where the pNode side's heavy work runs: below the request threads' priority.
//!
//! An instance serves `/api/xandeum` from the same cores that parse the seeds' answers
//! (megabytes of JSON a cycle), compute the cycle and free the snapshot it replaces. All of
//! that can wait some milliseconds; a request should not. So it runs on threads at the lowest
//! priority, niceness 19: [`run`] hands a piece of work to the work thread, and [`retire`]
//! frees what a swap replaced once the requests still reading it are done.
//!
//! One work thread, one piece at a time: while it works, at most one core is taken from the
//! request threads. A thread of its own per piece (nine seeds' answers read at once) was tried
//! first: each new thread starts level with the others in the scheduler's reckoning, so it
//! runs a whole time slice before a waking request thread gets the core back, and with two of
//! them on two cores requests waited 2–5 ms (seen with `perf sched` at 10,000 requests/s).
//!
//! Not `SCHED_IDLE`: it was tried, and a thread of that class that is preempted while it holds
//! a lock the whole process shares (the allocator's, the address space's when it maps or
//! unmaps memory, the page cache's) keeps request threads waiting for as long as the cores are
//! busy — one 20 s run at 1,000 requests/s had a 130 ms stall. At niceness 19 the thread
//! still gets a small share, so such a wait ends within milliseconds.

use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// How long a replaced value waits for its last readers before it is freed anyway.
const RETIRE_WAIT: Duration = Duration::from_secs(10);
/// How often the retiring thread looks whether the readers are done.
const RETIRE_POLL: Duration = Duration::from_millis(20);

/// Lowers the calling thread to the lowest priority (niceness 19 on Linux); where the system
/// refuses, the work runs at the usual priority (logged at debug).
pub fn lower_current_thread() {
    let lowered =
        thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min)
            .map_err(|error| error.to_string());
    if let Err(error) = lowered {
        tracing::debug!(%error, "pNode background work runs at the usual priority");
    }
}

/// Starts the thread `name` running `body` on what is sent to it; `None` (logged) if the
/// system would not start it.
fn start_thread<T: Send + 'static>(
    name: &'static str,
    body: fn(Receiver<T>),
) -> Option<Mutex<Sender<T>>> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || body(receiver))
        .map_err(|error| tracing::warn!(%error, thread = name, "cannot start a pNode thread"))
        .ok()
        .map(|_| Mutex::new(sender))
}

/// A piece of work for the work thread, and what it is (for the log, should it panic).
type Work = (&'static str, Box<dyn FnOnce() + Send>);

/// Runs `work` (`what` names it) on the work thread below the request threads, after the
/// pieces handed over before it, and waits for it without blocking the caller's runtime.
/// `None` if it panicked or the work thread could not be started.
pub async fn run<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    static WORKER: OnceLock<Option<Mutex<Sender<Work>>>> = OnceLock::new();
    let worker = WORKER.get_or_init(|| start_thread("pnode-work", work_loop));
    let (done, result) = tokio::sync::oneshot::channel();
    let piece: Box<dyn FnOnce() + Send> = Box::new(move || {
        let _ = done.send(work());
    });
    let handed = worker.as_ref().is_some_and(|sender| {
        sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send((what, piece))
            .is_ok()
    });
    if !handed {
        return None;
    }
    result.await.ok()
}

/// The work thread: each piece in turn; one that panics is logged (its caller gets `None`,
/// as its answer is dropped unsent) and the next goes on.
fn work_loop(receiver: Receiver<Work>) {
    lower_current_thread();
    while let Ok((what, piece)) = receiver.recv() {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(piece)).is_err() {
            tracing::warn!(work = what, "a pNode background piece of work panicked");
        }
    }
}

/// Something shared with readers, freed when they are done with it.
pub trait Retirable: Send + 'static {
    /// Whether a reader still holds a share of it.
    fn still_read(&self) -> bool;
}

impl<T: Send + Sync + 'static> Retirable for Arc<T> {
    fn still_read(&self) -> bool {
        Arc::strong_count(self) > 1
    }
}

/// Frees `replaced` on the retiring thread, below the request threads, once no reader holds
/// a share of it (or after [`RETIRE_WAIT`]): a snapshot of 10,000 nodes takes milliseconds to
/// free, which would otherwise fall on whichever request dropped the last share. Freed here
/// at once when the retiring thread cannot be started.
pub fn retire(replaced: Box<dyn Retirable>) {
    static RETIRING: OnceLock<Option<Mutex<RetiringQueue>>> = OnceLock::new();
    let sender = RETIRING.get_or_init(|| start_thread("pnode-retire", retire_loop));
    if let Some(sender) = sender {
        let sent = sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(replaced);
        // The thread is gone (it panicked): free it here, as without it.
        drop(sent);
    }
}

/// Where [`retire`] hands replaced values to the retiring thread.
type RetiringQueue = Sender<Box<dyn Retirable>>;

fn retire_loop(receiver: Receiver<Box<dyn Retirable>>) {
    lower_current_thread();
    while let Ok(replaced) = receiver.recv() {
        let since = Instant::now();
        while replaced.still_read() && since.elapsed() < RETIRE_WAIT {
            std::thread::sleep(RETIRE_POLL);
        }
        drop(replaced);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the name of the thread that drops it.
    struct Tracked(Arc<Mutex<Option<String>>>);

    impl Drop for Tracked {
        fn drop(&mut self) {
            let name = std::thread::current().name().map(str::to_owned);
            *self.0.lock().unwrap() = Some(name.unwrap_or_default());
        }
    }

    #[tokio::test]
    async fn pieces_of_work_run_in_turn_on_the_work_thread_and_outlive_a_panic() {
        let thread = || std::thread::current().name().map(str::to_owned);
        assert_eq!(
            run("name", thread).await.flatten().as_deref(),
            Some("pnode-work")
        );
        // Handed over together, done in the order handed over.
        let order = Arc::new(Mutex::new(Vec::new()));
        let piece = |n: u32| {
            let order = order.clone();
            run("order", move || order.lock().unwrap().push(n))
        };
        let (first, second, third) = tokio::join!(piece(1), piece(2), piece(3));
        assert!(first.is_some() && second.is_some() && third.is_some());
        assert_eq!(*order.lock().unwrap(), [1, 2, 3]);
        let panicked: Option<()> = run("panics", || panic!("a piece that fails")).await;
        assert!(panicked.is_none());
        assert_eq!(run("after", || 7).await, Some(7), "the thread goes on");
    }

    #[test]
    fn a_retired_value_is_freed_on_the_retiring_thread_once_its_readers_let_go() {
        let dropped_on = Arc::new(Mutex::new(None));
        let served = Arc::new(Tracked(dropped_on.clone()));
        let reader = served.clone();
        retire(Box::new(served));
        // The retiring thread holds its share until it sees the reader's gone, so the reader's
        // drop is never the last one.
        drop(reader);
        let since = Instant::now();
        while dropped_on.lock().unwrap().is_none() {
            assert!(since.elapsed() < Duration::from_secs(5), "never freed");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(dropped_on.lock().unwrap().as_deref(), Some("pnode-retire"));
    }
}

//! The DataWriter actor: stores accepted messages of producers whose data is kept, off the
//! publish path.
//!
//! Producers' connections and the publish API hand it rows after their acks went out; nobody
//! waits for Postgres. It writes them in batches (at most `batch_rows`, at least every
//! `flush_interval`), one statement per batch. While Postgres fails, rows wait in its queue, up
//! to `buffer_rows`; past that, new rows are dropped, counted per producer with the range of
//! sequence numbers, and logged exactly once a second, never silently. On shutdown it writes
//! what it holds before the process exits (within the shutdown timeout).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use actix::prelude::*;
use metrics::{counter, gauge, histogram};
use nodegrid_services::config::DataWriterSettings;
use nodegrid_services::streams::data::{DataStore, StoredRow};

use crate::metrics::ACTOR_RESTARTS_TOTAL;
use crate::stream::now_millis;

pub const ROWS_STORED: &str = "nodegrid_data_rows_stored_total";
pub const ROWS_DROPPED: &str = "nodegrid_data_rows_dropped_total";
pub const WRITER_QUEUE: &str = "nodegrid_data_writer_queue_rows";
pub const WRITER_LAG: &str = "nodegrid_data_writer_lag_seconds";
pub const WRITER_FAILURES: &str = "nodegrid_data_writer_failures_total";

/// Longest wait between two tries while Postgres fails.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often drops are logged (each log line says exactly what was dropped since the last).
const DROP_LOG_EVERY: Duration = Duration::from_secs(1);

/// Rows to store, in the order their messages were accepted.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StoreRows(pub Vec<StoredRow>);

/// Writes everything queued; answers when the queue is empty or Postgres failed.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Drain;

/// What was dropped of one producer since the last log line.
#[derive(Debug, Clone, Copy)]
struct Dropped {
    count: u64,
    first_seq: u64,
    last_seq: u64,
}

pub struct DataWriter {
    store: DataStore,
    settings: DataWriterSettings,
    queue: VecDeque<StoredRow>,
    /// Rows of the write in flight: they count toward the buffer until they are stored.
    in_flight: usize,
    writing: bool,
    failures: u32,
    retry_at: Option<Instant>,
    dropped: BTreeMap<i64, Dropped>,
}

impl DataWriter {
    pub fn start_supervised(store: DataStore, settings: DataWriterSettings) -> Addr<DataWriter> {
        Supervisor::start(move |_| DataWriter {
            store,
            settings,
            queue: VecDeque::new(),
            in_flight: 0,
            writing: false,
            failures: 0,
            retry_at: None,
            dropped: BTreeMap::new(),
        })
    }

    fn write_next(&mut self, ctx: &mut Context<Self>) {
        if self.writing || self.queue.is_empty() {
            return;
        }
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        self.writing = true;
        let take = self.queue.len().min(self.settings.batch_rows);
        let batch: Vec<StoredRow> = self.queue.drain(..take).collect();
        self.in_flight = batch.len();
        let store = self.store.clone();
        async move {
            let outcome = store.insert(&batch).await;
            (outcome, batch)
        }
        .into_actor(self)
        .map(|(outcome, batch), writer, ctx| {
            writer.writing = false;
            writer.in_flight = 0;
            match outcome {
                Ok(_) => {
                    if writer.failures > 0 {
                        tracing::info!(
                            queued = writer.queue.len() + batch.len(),
                            "stored data is being written again"
                        );
                    }
                    writer.failures = 0;
                    writer.retry_at = None;
                    counter!(ROWS_STORED).increment(batch.len() as u64);
                    let now = now_millis();
                    if let Some(oldest) = batch.first() {
                        let lag_ms = now.saturating_sub(oldest.ts).max(0);
                        histogram!(WRITER_LAG).record(lag_ms as f64 / 1_000.0);
                    }
                }
                Err(error) => {
                    counter!(WRITER_FAILURES).increment(1);
                    if writer.failures == 0 {
                        tracing::warn!(%error, rows = batch.len(), "cannot store data; the rows wait in the writer's queue");
                    }
                    writer.failures = writer.failures.saturating_add(1);
                    let backoff = Duration::from_millis(100)
                        .saturating_mul(1 << writer.failures.min(6))
                        .min(MAX_BACKOFF);
                    writer.retry_at = Some(Instant::now() + backoff);
                    // Back at the front, in order: nothing accepted is given up while it fits.
                    for row in batch.into_iter().rev() {
                        writer.queue.push_front(row);
                    }
                    ctx.run_later(backoff, |writer, ctx| writer.write_next(ctx));
                }
            }
            writer.report_queue();
            if writer.queue.len() >= writer.settings.batch_rows {
                writer.write_next(ctx);
            }
        })
        .spawn(ctx);
    }

    /// Rows held: queued, and being written.
    fn held(&self) -> usize {
        self.queue.len() + self.in_flight
    }

    fn report_queue(&self) {
        gauge!(WRITER_QUEUE).set(self.held() as f64);
    }

    fn drop_row(&mut self, row: &StoredRow) {
        let entry = self.dropped.entry(row.producer_id).or_insert(Dropped {
            count: 0,
            first_seq: row.seq,
            last_seq: row.seq,
        });
        entry.count += 1;
        entry.first_seq = entry.first_seq.min(row.seq);
        entry.last_seq = entry.last_seq.max(row.seq);
    }

    fn log_drops(&mut self) {
        if self.dropped.is_empty() {
            return;
        }
        let mut total = 0;
        for (producer_id, dropped) in std::mem::take(&mut self.dropped) {
            total += dropped.count;
            tracing::error!(
                producer_id,
                dropped = dropped.count,
                first_seq = dropped.first_seq,
                last_seq = dropped.last_seq,
                buffer_rows = self.settings.buffer_rows,
                "stored data dropped: the writer's queue is full while Postgres cannot keep up; these messages were delivered but not stored"
            );
        }
        counter!(ROWS_DROPPED).increment(total);
    }
}

impl Actor for DataWriter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.settings.flush_interval, |writer, ctx| {
            writer.write_next(ctx)
        });
        ctx.run_interval(DROP_LOG_EVERY, |writer, _| writer.log_drops());
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.log_drops();
        if !self.queue.is_empty() {
            tracing::error!(
                rows = self.queue.len(),
                "the data writer stopped with rows it could not store"
            );
        }
    }
}

impl Supervised for DataWriter {
    fn restarting(&mut self, _: &mut Context<Self>) {
        counter!(ACTOR_RESTARTS_TOTAL, "actor" => "data_writer").increment(1);
        tracing::warn!("DataWriter restarting");
        self.writing = false;
        self.in_flight = 0;
    }
}

impl Handler<StoreRows> for DataWriter {
    type Result = ();

    fn handle(&mut self, StoreRows(rows): StoreRows, ctx: &mut Context<Self>) {
        for row in rows {
            if self.held() >= self.settings.buffer_rows {
                self.drop_row(&row);
            } else {
                self.queue.push_back(row);
            }
        }
        self.report_queue();
        if self.queue.len() >= self.settings.batch_rows {
            self.write_next(ctx);
        }
    }
}

impl Handler<Drain> for DataWriter {
    type Result = ResponseActFuture<Self, usize>;

    /// Writes batch after batch until the queue is empty or a write fails; answers with the
    /// rows left.
    fn handle(&mut self, _: Drain, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        let batch_rows = self.settings.batch_rows;
        let rows: Vec<StoredRow> = self.queue.drain(..).collect();
        Box::pin(
            async move {
                let mut left = rows;
                while !left.is_empty() {
                    let rest = left.split_off(left.len().min(batch_rows));
                    if let Err(error) = store.insert(&left).await {
                        tracing::warn!(%error, "cannot store data while shutting down");
                        left.extend(rest);
                        return left;
                    }
                    counter!(ROWS_STORED).increment(left.len() as u64);
                    left = rest;
                }
                left
            }
            .into_actor(self)
            .map(|left, writer, _| {
                let count = left.len();
                for row in left.into_iter().rev() {
                    writer.queue.push_front(row);
                }
                writer.report_queue();
                count
            }),
        )
    }
}

pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(ROWS_STORED, "Producer messages stored in Postgres.");
    describe_counter!(
        ROWS_DROPPED,
        "Producer messages not stored because the writer's queue was full (each drop is logged with its producer and sequence range)."
    );
    describe_gauge!(
        WRITER_QUEUE,
        "Messages waiting to be stored (queued or being written)."
    );
    describe_histogram!(
        WRITER_LAG,
        Unit::Seconds,
        "From a stored batch's oldest message's acceptance to its commit."
    );
    describe_counter!(WRITER_FAILURES, "Failed writes of stored data (retried).");
}

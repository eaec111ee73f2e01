//! The heartbeat writer: heartbeats that arrive together are written together, in one
//! statement, so that Postgres' cost per statement (parse, plan, commit) is paid once per batch
//! instead of once per heartbeat. A heartbeat waits for no timer: the writer takes what has
//! queued while its previous statement ran (up to [`MAX_BATCH`]), so a lone heartbeat is written
//! at once and a busy instance writes hundreds per statement.
//!
//! The statement commits without waiting for the WAL flush (waiting capped heartbeats at the
//! disk's flush rate): a crash can lose the last instants of reports, which children re-send at
//! their next heartbeat, and `seq` values, which cannot go back because each heartbeat carries
//! the child's `last_seq` and the next `seq` is above it.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::db::{Database, DbError};

/// Heartbeats written per statement.
pub const CHILD_HEARTBEAT_BATCH: &str = "nodegrid_child_heartbeat_batch_size";
/// Heartbeats written in one statement at most.
pub const MAX_BATCH: usize = 512;
/// Heartbeats waiting for the writer at most; past it a heartbeat is refused as unavailable
/// (the child retries), rather than memory growing without bound.
const QUEUE: usize = 16_384;

/// One heartbeat's row.
#[derive(Debug, Clone)]
pub struct HeartbeatRow {
    pub child_id: Uuid,
    pub last_seq: i64,
    pub version: String,
    pub config_hash: Option<String>,
    pub uptime_s: i64,
    pub users_active: i32,
    pub state: serde_json::Value,
}

/// What the write gave: the lease's `seq` and times, and the liveness the child had.
#[derive(Debug, Clone)]
pub struct Written {
    pub seq: i64,
    pub issued_at: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
    pub previous: String,
    pub client_id: i64,
    pub name: String,
}

struct Pending {
    row: HeartbeatRow,
    reply: oneshot::Sender<Result<Option<Written>, DbError>>,
}

/// The handle heartbeats are written through.
#[derive(Clone)]
pub struct HeartbeatWriter {
    queue: mpsc::Sender<Pending>,
}

impl HeartbeatWriter {
    /// Starts the writer on the current runtime; it ends when the last handle is dropped.
    pub fn start(database: Database, lease_ttl: std::time::Duration) -> HeartbeatWriter {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(run(database, lease_ttl.as_secs_f64() * 1000.0, receiver));
        HeartbeatWriter { queue }
    }

    /// Writes one heartbeat; `None` when the child is revoked or gone.
    pub async fn write(&self, row: HeartbeatRow) -> Result<Option<Written>, DbError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Pending { row, reply })
            .map_err(|_| DbError::Pool("the heartbeat writer is saturated".into()))?;
        answer
            .await
            .map_err(|_| DbError::Pool("the heartbeat writer stopped".into()))?
    }
}

async fn run(database: Database, ttl_ms: f64, mut receiver: mpsc::Receiver<Pending>) {
    // A child that heartbeats twice within one batch waits for the next: one row, one update.
    let mut carried: Vec<Pending> = Vec::new();
    loop {
        let mut batch: Vec<Pending> = std::mem::take(&mut carried);
        if batch.is_empty() {
            match receiver.recv().await {
                Some(first) => batch.push(first),
                None => return,
            }
        }
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let mut seen = HashSet::with_capacity(batch.len());
        let (batch, later): (Vec<Pending>, Vec<Pending>) = batch
            .into_iter()
            .partition(|pending| seen.insert(pending.row.child_id));
        carried = later;
        metrics::histogram!(CHILD_HEARTBEAT_BATCH).record(batch.len() as f64);
        match write_batch(&database, ttl_ms, &batch).await {
            Ok(mut written) => {
                for pending in batch {
                    let row = written.remove(&pending.row.child_id);
                    let _ = pending.reply.send(Ok(row));
                }
            }
            Err(error) => {
                let message = error.to_string();
                let unavailable = error.is_unavailable();
                for pending in batch {
                    // Every waiter gets the failure; `DbError` is not `Clone`.
                    let error = if unavailable {
                        DbError::Pool(message.clone())
                    } else {
                        DbError::Corrupt(message.clone())
                    };
                    let _ = pending.reply.send(Err(error));
                }
            }
        }
    }
}

async fn write_batch(
    database: &Database,
    ttl_ms: f64,
    batch: &[Pending],
) -> Result<std::collections::HashMap<Uuid, Written>, DbError> {
    let ids: Vec<Uuid> = batch.iter().map(|p| p.row.child_id).collect();
    let last_seqs: Vec<i64> = batch.iter().map(|p| p.row.last_seq).collect();
    let versions: Vec<&str> = batch.iter().map(|p| p.row.version.as_str()).collect();
    let hashes: Vec<Option<&str>> = batch.iter().map(|p| p.row.config_hash.as_deref()).collect();
    let uptimes: Vec<i64> = batch.iter().map(|p| p.row.uptime_s).collect();
    let users: Vec<i32> = batch.iter().map(|p| p.row.users_active).collect();
    let states: Vec<&serde_json::Value> = batch.iter().map(|p| &p.row.state).collect();
    let client = database.client().await?;
    // The rows written, and each return to `online` audited, in one statement.
    let rows = client
        .query(
            "WITH input AS (
                 SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[],
                                      $5::bigint[], $6::int[], $7::jsonb[])
                     AS h(id, last_seq, version, config_hash, uptime_s, users_active, state)
             ), written AS (
                 UPDATE children c SET
                     lease_seq = greatest(c.lease_seq, h.last_seq) + 1,
                     last_heartbeat_at = now(),
                     liveness = 'online',
                     liveness_changed_at = CASE WHEN c.liveness = 'online'
                         THEN c.liveness_changed_at ELSE now() END,
                     version = h.version, config_hash = h.config_hash, uptime_s = h.uptime_s,
                     users_active = h.users_active, state = h.state,
                     lease_valid_until = now() + $8 * interval '1 millisecond'
                 -- `old`: the row as the statement found it, for the liveness it had.
                 FROM input h, children old,
                      (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed
                 WHERE c.id = h.id AND old.id = c.id AND c.revoked_at IS NULL
                 RETURNING c.id, c.client_id, c.name, c.lease_seq, c.lease_valid_until,
                           old.liveness AS previous, h.version
             ), audited AS (
                 INSERT INTO audit_log (action, target, details)
                 SELECT 'child.online', 'child:' || id,
                        jsonb_build_object('from', previous, 'client_id', client_id,
                                           'version', version)
                 FROM written
                 WHERE previous <> 'online'
             )
             SELECT id, lease_seq, now(), lease_valid_until, previous, client_id, name
             FROM written",
            &[
                &ids, &last_seqs, &versions, &hashes, &uptimes, &users, &states, &ttl_ms,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            (
                row.get::<_, Uuid>(0),
                Written {
                    seq: row.get(1),
                    issued_at: row.get(2),
                    valid_until: row.get(3),
                    previous: row.get(4),
                    client_id: row.get(5),
                    name: row.get(6),
                },
            )
        })
        .collect())
}

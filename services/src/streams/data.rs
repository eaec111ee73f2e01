//! Stored producer data (Motience's `data_history`): the Postgres side.
//!
//! Rows go into `producer_data`, partitioned by UTC day of `ts`. A batch is one `INSERT …
//! SELECT FROM UNNEST(…)` (one statement, one round trip, whatever its size); the partition of
//! a day is created the first time a batch needs it, and dropped whole when the day leaves the
//! retention window. Payloads are kept as `json` text, exactly as sent.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use nodegrid_protocol::stream::{StoredDataPage, StoredMessage};
use serde_json::value::RawValue;
use tokio_postgres::error::SqlState;

use crate::db::{Database, DbError};

const DAY_MS: i64 = 86_400_000;
const PARTITION_PREFIX: &str = "producer_data_d";

/// One message to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    pub producer_id: i64,
    pub ts: i64,
    pub seq: u64,
    pub epoch: Arc<str>,
    /// The payload's JSON text.
    pub payload: String,
}

/// Which way a page runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Ascending,
    Descending,
}

/// Where a page continues: after (ascending) or before (descending) this message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub ts: i64,
    pub seq: i64,
}

impl Cursor {
    /// The text clients pass back: opaque to them.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.ts, self.seq)
    }

    pub fn decode(text: &str) -> Option<Cursor> {
        let (ts, seq) = text.split_once('.')?;
        Some(Cursor {
            ts: ts.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

/// What a page asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// Milliseconds since the Unix epoch, inclusive.
    pub since: i64,
    /// Exclusive.
    pub until: i64,
    pub limit: usize,
    pub order: Order,
    pub cursor: Option<Cursor>,
}

#[derive(Clone)]
pub struct DataStore {
    database: Database,
}

impl DataStore {
    pub fn new(database: Database) -> DataStore {
        DataStore { database }
    }

    /// Stores `rows` in one statement; a message stored twice (a retried batch) stays one row.
    /// Creates the day partitions the batch needs when they are missing. Returns how many rows
    /// were new.
    pub async fn insert(&self, rows: &[StoredRow]) -> Result<u64, DbError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let client = self.database.client().await?;
        match insert_rows(&client, rows).await {
            Err(error) if error.code() == Some(&SqlState::CHECK_VIOLATION) => {
                // "no partition of relation found for row": a new day.
                let mut days: Vec<i64> = rows.iter().map(|row| row.ts.div_euclid(DAY_MS)).collect();
                days.sort_unstable();
                days.dedup();
                for day in days {
                    if let Err(error) = create_partition(&client, day).await {
                        // Another instance may have created it at the same moment.
                        tracing::debug!(%error, day, "creating a data partition failed");
                    }
                }
                Ok(insert_rows(&client, rows).await?)
            }
            outcome => Ok(outcome?),
        }
    }

    /// A page of `producer_id`'s stored messages.
    pub async fn page(
        &self,
        producer_id: i64,
        request: PageRequest,
    ) -> Result<StoredDataPage<Box<RawValue>>, DbError> {
        let limit = i64::try_from(request.limit).unwrap_or(i64::MAX);
        let (comparison, direction) = match request.order {
            Order::Ascending => (">", "ASC"),
            Order::Descending => ("<", "DESC"),
        };
        let cursor = request.cursor;
        let sql = format!(
            "SELECT ts, seq, epoch, payload::text FROM producer_data \
             WHERE producer_id = $1 AND ts >= $2 AND ts < $3 \
             AND ($4::BIGINT IS NULL OR (ts, seq) {comparison} ($4, $5)) \
             ORDER BY ts {direction}, seq {direction} LIMIT $6"
        );
        let rows = {
            let client = self.database.client().await?;
            client
                .query(
                    &sql,
                    &[
                        &producer_id,
                        &request.since,
                        &request.until,
                        &cursor.map(|cursor| cursor.ts),
                        &cursor.map(|cursor| cursor.seq).unwrap_or(0),
                        &(limit + 1),
                    ],
                )
                .await?
        };
        let more = rows.len() > request.limit;
        let mut items = Vec::with_capacity(rows.len().min(request.limit));
        for row in rows.iter().take(request.limit) {
            let payload: String = row.get(3);
            let payload = RawValue::from_string(payload).map_err(|error| {
                DbError::Corrupt(format!("a stored payload is not JSON: {error}"))
            })?;
            items.push(StoredMessage {
                ts: row.get(0),
                seq: u64::try_from(row.get::<_, i64>(1)).unwrap_or(0),
                epoch: row.get(2),
                payload,
            });
        }
        let next_cursor = more.then(|| items.last()).flatten().map(|last| {
            Cursor {
                ts: last.ts,
                seq: i64::try_from(last.seq).unwrap_or(i64::MAX),
            }
            .encode()
        });
        Ok(StoredDataPage {
            producer_id,
            items,
            next_cursor,
        })
    }

    /// Drops the day partitions that end at or before `cutoff_ms`; returns their names.
    pub async fn drop_days_before(&self, cutoff_ms: i64) -> Result<Vec<String>, DbError> {
        let client = self.database.client().await?;
        let partitions: Vec<String> = client
            .query(
                "SELECT c.relname FROM pg_inherits i \
                 JOIN pg_class c ON c.oid = i.inhrelid \
                 JOIN pg_class p ON p.oid = i.inhparent \
                 WHERE p.relname = 'producer_data'",
                &[],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let mut dropped = Vec::new();
        for name in partitions {
            let Some(day) = partition_day(&name) else {
                continue;
            };
            if (day + 1) * DAY_MS <= cutoff_ms {
                // The name comes from our own pattern, checked by `partition_day`.
                client
                    .batch_execute(&format!("DROP TABLE IF EXISTS {name}"))
                    .await?;
                dropped.push(name);
            }
        }
        Ok(dropped)
    }
}

async fn insert_rows(
    client: &impl GenericClient,
    rows: &[StoredRow],
) -> Result<u64, tokio_postgres::Error> {
    let mut producers = Vec::with_capacity(rows.len());
    let mut stamps = Vec::with_capacity(rows.len());
    let mut seqs = Vec::with_capacity(rows.len());
    let mut epochs = Vec::with_capacity(rows.len());
    let mut payloads = Vec::with_capacity(rows.len());
    for row in rows {
        producers.push(row.producer_id);
        stamps.push(row.ts);
        seqs.push(i64::try_from(row.seq).unwrap_or(i64::MAX));
        epochs.push(&*row.epoch);
        payloads.push(row.payload.as_str());
    }
    client
        .execute(
            "INSERT INTO producer_data (producer_id, ts, seq, epoch, payload) \
             SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::BIGINT[], $4::TEXT[], \
                                  $5::TEXT[]::JSON[]) \
             ON CONFLICT DO NOTHING",
            &[&producers, &stamps, &seqs, &epochs, &payloads],
        )
        .await
}

async fn create_partition(
    client: &impl GenericClient,
    day: i64,
) -> Result<(), tokio_postgres::Error> {
    let Some(name) = partition_name(day) else {
        return Ok(());
    };
    let (from, to) = (day * DAY_MS, (day + 1) * DAY_MS);
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {name} PARTITION OF producer_data \
             FOR VALUES FROM ({from}) TO ({to})"
        ))
        .await
}

/// `producer_data_dYYYYMMDD` for day number `day` (days since the Unix epoch).
fn partition_name(day: i64) -> Option<String> {
    let date = DateTime::<Utc>::from_timestamp(day.checked_mul(86_400)?, 0)?.date_naive();
    Some(format!("{PARTITION_PREFIX}{}", date.format("%Y%m%d")))
}

/// The day number of a partition named by [`partition_name`].
fn partition_day(name: &str) -> Option<i64> {
    let digits = name.strip_prefix(PARTITION_PREFIX)?;
    if digits.len() != 8 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let date = NaiveDate::parse_from_str(digits, "%Y%m%d").ok()?;
    Some(
        date.and_hms_opt(0, 0, 0)?
            .and_utc()
            .timestamp()
            .div_euclid(86_400),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_named_by_day_and_read_back() {
        let day = 1_764_460_800_000 / DAY_MS; // 2025-11-30
        assert_eq!(
            partition_name(day).as_deref(),
            Some("producer_data_d20251130")
        );
        assert_eq!(partition_day("producer_data_d20251130"), Some(day));
        assert_eq!(partition_day("producer_data_d2025113"), None);
        assert_eq!(partition_day("users"), None);
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let cursor = Cursor { ts: 17, seq: 4 };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        assert_eq!(Cursor::decode("x.1"), None);
        assert_eq!(Cursor::decode("12"), None);
    }
}

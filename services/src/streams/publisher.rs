//! Stamps and publishes producer messages: one Redis round trip per message.
//!
//! One Lua script takes the producer's next sequence number (`INCR`) and publishes the consumer
//! frame on the producer's channel. The frame's JSON text is built by the caller around the
//! sequence number, so the script only concatenates, and every instance forwards the published
//! text to its JSON consumers as it is, without decoding it.
//!
//! A message with a client `id` is published once: the script remembers each producer's last
//! 1,024 ids, and a resend of one of them (a client that lost the ack in a reconnect) gets the
//! original `seq` back without a second publish.
//!
//! Sequence numbers live in Redis (`<prefix>:seq:<producer>`). Postgres keeps a floor, saved
//! now and then by the producer's connection; when the Redis key is missing (a Redis that lost
//! its data) the script starts from the floor the caller passes, so numbers never repeat.

use deadpool_postgres::GenericClient;
use fred::types::scripts::Script;

use crate::bus::{BusError, RedisBus};
use crate::db::{Database, DbError};

/// KEYS: seq counter, channel, recent ids (hash id → seq), recent ids (list, newest first).
/// ARGV: seq floor, frame head, frame tail, client id ('' for none), ids remembered.
/// Returns {seq, receivers}, with receivers = -1 when the id was seen: a resend after a lost
/// ack, answered with the original seq and not published again.
const PUBLISH_SCRIPT: &str = r#"
local id = ARGV[4]
if id ~= '' then
  local previous = redis.call('HGET', KEYS[3], id)
  if previous then
    return {tonumber(previous), -1}
  end
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], ARGV[1])
end
local seq = redis.call('INCR', KEYS[1])
local receivers = redis.call('PUBLISH', KEYS[2], ARGV[2] .. seq .. ARGV[3])
if id ~= '' then
  redis.call('HSET', KEYS[3], id, seq)
  redis.call('LPUSH', KEYS[4], id)
  if redis.call('LLEN', KEYS[4]) > tonumber(ARGV[5]) then
    redis.call('HDEL', KEYS[3], redis.call('RPOP', KEYS[4]))
  end
end
return {seq, receivers}
"#;

/// Client message ids remembered per producer, for resends after a lost ack.
const REMEMBERED_IDS: usize = 1_024;

/// A message that was published (or had been: see `duplicate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub seq: u64,
    /// Instances (subscriber connections) that received it.
    pub receivers: u64,
    /// The client id was among the producer's recent ones: the message had been published
    /// already (its ack was lost), and was not published again.
    pub duplicate: bool,
}

#[derive(Clone)]
pub struct StreamPublisher {
    bus: RedisBus,
    database: Database,
    script: Script,
}

impl StreamPublisher {
    pub fn new(bus: RedisBus, database: Database) -> StreamPublisher {
        StreamPublisher {
            bus,
            database,
            script: Script::from_lua(PUBLISH_SCRIPT),
        }
    }

    /// Whether the publishing connection is up; when it is not, publishing fails at once rather
    /// than after the command timeout.
    pub fn is_connected(&self) -> bool {
        fred::prelude::ClientLike::is_connected(self.bus.publisher())
    }

    /// Publishes `payload_json` (already-serialised JSON) as producer `producer_id`'s next
    /// message, stamped with `ts` (ms since the epoch); `seq_floor` is the highest sequence
    /// number the caller knows of.
    pub async fn publish(
        &self,
        producer_id: i64,
        ts: i64,
        payload_json: &str,
        client_id: Option<&str>,
        seq_floor: u64,
    ) -> Result<Published, BusError> {
        let keys = self.bus.keys();
        let head = format!(r#"{{"type":"data","producer_id":{producer_id},"seq":"#);
        let mut tail = String::with_capacity(payload_json.len() + 32);
        tail.push_str(",\"ts\":");
        tail.push_str(&ts.to_string());
        tail.push_str(",\"payload\":");
        tail.push_str(payload_json);
        tail.push('}');
        let (seq, receivers): (i64, i64) = self
            .script
            .evalsha_with_reload(
                self.bus.publisher(),
                vec![
                    keys.producer_seq(producer_id),
                    keys.producer_channel(producer_id),
                    keys.producer_recent_ids(producer_id),
                    keys.producer_recent_id_order(producer_id),
                ],
                vec![
                    seq_floor.to_string(),
                    head,
                    tail,
                    client_id.unwrap_or("").to_owned(),
                    REMEMBERED_IDS.to_string(),
                ],
            )
            .await?;
        Ok(Published {
            seq: u64::try_from(seq).unwrap_or(0),
            receivers: u64::try_from(receivers).unwrap_or(0),
            duplicate: receivers < 0,
        })
    }

    /// The saved floor of `producer_id`'s sequence numbers.
    pub async fn seq_floor(&self, producer_id: i64) -> Result<u64, DbError> {
        let client = self.database.client().await?;
        let row = client
            .query_opt(
                "SELECT last_seq FROM producer_streams WHERE producer_id = $1",
                &[&producer_id],
            )
            .await?;
        Ok(row
            .map(|row| row.get::<_, i64>(0))
            .and_then(|seq| u64::try_from(seq).ok())
            .unwrap_or(0))
    }

    /// Raises the saved floor to `seq` (never lowers it).
    pub async fn save_seq_floor(&self, producer_id: i64, seq: u64) -> Result<(), DbError> {
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        let client = self.database.client().await?;
        client
            .execute(
                "INSERT INTO producer_streams (producer_id, last_seq) VALUES ($1, $2) \
                 ON CONFLICT (producer_id) DO UPDATE \
                 SET last_seq = GREATEST(producer_streams.last_seq, EXCLUDED.last_seq), \
                     updated_at = now()",
                &[&producer_id, &seq],
            )
            .await?;
        Ok(())
    }
}

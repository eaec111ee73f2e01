//! Stamps and publishes producer messages: one Redis round trip per batch of a producer's
//! messages.
//!
//! One Lua script takes each message's sequence number (`INCR`) and publishes its consumer
//! frame on the producer's channel, in order. The frame's JSON text is built by the caller
//! around the sequence number, so the script only concatenates, and every instance forwards
//! the published text to its JSON consumers as it is, without decoding it. A producer that
//! sends faster than one round trip per message gets its waiting messages published together,
//! so a burst costs one round trip, not one per message, and order holds.
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
/// ARGV: seq floor, frame head, ids remembered, then per message its frame tail and its client
/// id ('' for none).
/// Returns per message {seq, receivers}, with receivers = -1 when the id was seen: a resend
/// after a lost ack, answered with the original seq and not published again.
const PUBLISH_SCRIPT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], ARGV[1])
end
local head = ARGV[2]
local keep = tonumber(ARGV[3])
local out = {}
for i = 4, #ARGV, 2 do
  local tail, id = ARGV[i], ARGV[i + 1]
  local previous = false
  if id ~= '' then
    previous = redis.call('HGET', KEYS[3], id)
  end
  if previous then
    out[#out + 1] = tonumber(previous)
    out[#out + 1] = -1
  else
    local seq = redis.call('INCR', KEYS[1])
    out[#out + 1] = seq
    out[#out + 1] = redis.call('PUBLISH', KEYS[2], head .. seq .. tail)
    if id ~= '' then
      redis.call('HSET', KEYS[3], id, seq)
      redis.call('LPUSH', KEYS[4], id)
      if redis.call('LLEN', KEYS[4]) > keep then
        redis.call('HDEL', KEYS[3], redis.call('RPOP', KEYS[4]))
      end
    end
  end
end
return out
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

/// One message to publish: the end of its consumer frame (everything after the `seq`), and
/// the client's id.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub tail: String,
    pub client_id: Option<String>,
}

impl OutgoingMessage {
    /// A message stamped `ts` (ms since the epoch) carrying `payload_json` (serialised JSON).
    pub fn new(ts: i64, payload_json: &str, client_id: Option<String>) -> OutgoingMessage {
        let mut tail = String::with_capacity(payload_json.len() + 32);
        tail.push_str(",\"ts\":");
        tail.push_str(&ts.to_string());
        tail.push_str(",\"payload\":");
        tail.push_str(payload_json);
        tail.push('}');
        OutgoingMessage { tail, client_id }
    }

    /// Bytes the message carries to Redis.
    pub fn len(&self) -> usize {
        self.tail.len() + self.client_id.as_ref().map_or(0, String::len)
    }

    pub fn is_empty(&self) -> bool {
        self.tail.is_empty()
    }
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

    /// Publishes `messages`, in order, as producer `producer_id`'s next messages, in one round
    /// trip; `seq_floor` is the highest sequence number the caller knows of. Either every
    /// message is published (one [`Published`] each, in order) or none is.
    pub async fn publish(
        &self,
        producer_id: i64,
        messages: &[OutgoingMessage],
        seq_floor: u64,
    ) -> Result<Vec<Published>, BusError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.bus.keys();
        let head = format!(r#"{{"type":"data","producer_id":{producer_id},"seq":"#);
        let mut arguments = Vec::with_capacity(3 + 2 * messages.len());
        arguments.push(seq_floor.to_string());
        arguments.push(head);
        arguments.push(REMEMBERED_IDS.to_string());
        for message in messages {
            arguments.push(message.tail.clone());
            arguments.push(message.client_id.clone().unwrap_or_default());
        }
        let answer: Vec<i64> = self
            .script
            .evalsha_with_reload(
                self.bus.publisher(),
                vec![
                    keys.producer_seq(producer_id),
                    keys.producer_channel(producer_id),
                    keys.producer_recent_ids(producer_id),
                    keys.producer_recent_id_order(producer_id),
                ],
                arguments,
            )
            .await?;
        if answer.len() != 2 * messages.len() {
            return Err(BusError::Unexpected(format!(
                "the publish script answered {} values for {} messages",
                answer.len(),
                messages.len()
            )));
        }
        Ok(answer
            .chunks_exact(2)
            .map(|pair| Published {
                seq: u64::try_from(pair[0]).unwrap_or(0),
                receivers: u64::try_from(pair[1]).unwrap_or(0),
                duplicate: pair[1] < 0,
            })
            .collect())
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

//! Stamps and publishes producer messages: one Redis round trip per batch of a producer's
//! messages.
//!
//! One Lua script takes each message's sequence number (`INCR`), publishes its consumer frame
//! on the producer's channel and appends it to the producer's history, in order. The frame's
//! JSON text is built by the caller around the sequence number and epoch, so the script only
//! concatenates, and every instance forwards the published text to its JSON consumers as it
//! is, without decoding it. A producer that sends faster than one round trip per message gets
//! its waiting messages published together, so a burst costs one round trip, not one per
//! message, and order holds.
//!
//! The same script takes one token per message from the producer's rate bucket, kept in Redis
//! on Redis's clock, so the rate holds per producer across its sockets, the publish API and
//! instances.
//!
//! A message with a client `id` is published once: the script remembers each producer's last
//! 1,024 ids, and a resend of one of them (a client that lost the ack in a reconnect) gets the
//! original `seq` back without a second publish.
//!
//! Sequence numbers live in Redis (`<prefix>:seq:<producer>`). Postgres keeps a floor, saved
//! now and then by the producer's connection; when the Redis key is missing (a Redis that lost
//! its data) the script starts from the floor the caller passes and begins a new **epoch**:
//! numbers of the new epoch may repeat numbers of the lost one, and the epoch in every frame
//! tells a resuming consumer that its position no longer holds (see [`super::history`]).

use bytes_utils::Str;
use deadpool_postgres::GenericClient;
use fred::types::scripts::Script;
use fred::types::{Key, Value as RedisValue};
use nodegrid_protocol::stream::StreamPolicy;

use crate::bus::{BusError, RedisBus};
use crate::db::{Database, DbError};

/// KEYS: seq counter, channel, recent ids (hash id → seq), recent ids (list, newest first),
/// history stream, epoch, rate bucket.
/// ARGV: seq floor ('' when the caller does not know it), frame head, ids remembered, epoch candidate, history length (0: none),
/// history age in ms, tokens per ms (0: no limit), burst, then per message its frame tail and
/// its client id ('' for none).
/// Returns {'?'} when the counter is missing and the floor is unknown; else the epoch, then per
/// message {seq, outcome}: outcome >= 0 is the number of receivers,
/// -1 a resend of a recent id (answered with the original seq, not published again), and
/// -2 - n refused by the rate limit, to be retried in n ms.
const PUBLISH_SCRIPT: &str = r#"
local epoch = redis.call('GET', KEYS[6])
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[1] == '' then
    -- The caller does not know the floor: it asks Postgres and calls again.
    return {'?'}
  end
  -- A new counter (first message, or Redis lost it): a new epoch, and no history of the old.
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[5])
  epoch = ARGV[4]
  redis.call('SET', KEYS[6], epoch)
elseif not epoch then
  epoch = ARGV[4]
  redis.call('SET', KEYS[6], epoch)
end
local head = ARGV[2]
local middle = ',"epoch":"' .. epoch .. '"'
local keep = tonumber(ARGV[3])
local history = tonumber(ARGV[5])
local per_ms = tonumber(ARGV[7])
local burst = tonumber(ARGV[8])
local tokens, now = 0, 0
if per_ms > 0 then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  local state = redis.call('HMGET', KEYS[7], 'tokens', 'at')
  tokens = tonumber(state[1]) or burst
  local at = tonumber(state[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - at) * per_ms)
end
local out = {epoch}
local appended = false
for i = 9, #ARGV, 2 do
  local tail, id = ARGV[i], ARGV[i + 1]
  local previous = false
  if id ~= '' then
    previous = redis.call('HGET', KEYS[3], id)
  end
  if previous then
    out[#out + 1] = tonumber(previous)
    out[#out + 1] = -1
  elseif per_ms > 0 and tokens < 1 then
    out[#out + 1] = 0
    out[#out + 1] = -2 - math.ceil((1 - tokens) / per_ms)
  else
    tokens = tokens - 1
    local seq = redis.call('INCR', KEYS[1])
    local frame = head .. seq .. middle .. tail
    out[#out + 1] = seq
    out[#out + 1] = redis.call('PUBLISH', KEYS[2], frame)
    if history > 0 then
      redis.call('XADD', KEYS[5], 'MAXLEN', '~', history, seq .. '-0', 'f', frame)
      appended = true
    end
    if id ~= '' then
      redis.call('HSET', KEYS[3], id, seq)
      redis.call('LPUSH', KEYS[4], id)
      if redis.call('LLEN', KEYS[4]) > keep then
        redis.call('HDEL', KEYS[3], redis.call('RPOP', KEYS[4]))
      end
    end
  end
end
if appended then
  redis.call('PEXPIRE', KEYS[5], ARGV[6])
end
if per_ms > 0 then
  redis.call('HSET', KEYS[7], 'tokens', tostring(tokens), 'at', now)
  redis.call('PEXPIRE', KEYS[7], math.ceil(burst / per_ms) + 1000)
end
return out
"#;

/// Client message ids remembered per producer, for resends after a lost ack.
const REMEMBERED_IDS: usize = 1_024;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    // Not `transparent`: the dependency error stays in the chain, where the HTTP boundary
    // looks for it to answer 503 when Postgres or Redis is away.
    #[error("{0}")]
    Bus(#[from] BusError),
    // Not `transparent`: the dependency error stays in the chain, where the HTTP boundary
    // looks for it to answer 503 when Postgres or Redis is away.
    #[error("{0}")]
    Database(#[from] DbError),
}

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishOutcome {
    /// Published to this many instances (subscriber connections).
    Published { receivers: u64 },
    /// The client id was among the producer's recent ones: the message had been published
    /// already (its ack was lost), and was not published again.
    Duplicate,
    /// Over the producer's rate; it would be accepted after this wait.
    RateLimited { retry_after_ms: u64 },
}

/// One message's answer from the script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The message's sequence number (the original one for a duplicate; 0 when refused).
    pub seq: u64,
    pub outcome: PublishOutcome,
}

impl Published {
    /// Whether the message is (or had been) accepted: it gets an ack.
    pub fn accepted(&self) -> bool {
        !matches!(self.outcome, PublishOutcome::RateLimited { .. })
    }
}

/// The answer for a batch: the producer's epoch, and one [`Published`] per message, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedBatch {
    pub epoch: String,
    pub messages: Vec<Published>,
}

/// The producer's rate, shared by its sockets and the publish API.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProducerRate {
    pub per_sec: u32,
    pub burst: u32,
}

/// One message to publish: the end of its consumer frame (everything after the epoch), and
/// the client's id. The tail is shared, not copied, when it goes into the script's arguments.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub tail: Str,
    pub client_id: Option<String>,
    /// When the message was accepted (ms since the Unix epoch).
    pub ts: i64,
    /// Where the payload starts in `tail` (it ends before the closing brace).
    payload_at: usize,
}

impl OutgoingMessage {
    /// A message stamped `ts` (ms since the epoch) carrying `payload_json` (serialised JSON).
    pub fn new(ts: i64, payload_json: &str, client_id: Option<String>) -> OutgoingMessage {
        let mut tail = String::with_capacity(payload_json.len() + 32);
        tail.push_str(",\"ts\":");
        tail.push_str(&ts.to_string());
        tail.push_str(",\"payload\":");
        let payload_at = tail.len();
        tail.push_str(payload_json);
        tail.push('}');
        OutgoingMessage {
            tail: Str::from(tail),
            client_id,
            ts,
            payload_at,
        }
    }

    /// The payload's JSON text.
    pub fn payload_json(&self) -> &str {
        &self.tail[self.payload_at..self.tail.len() - 1]
    }

    /// Bytes the message carries to Redis.
    pub fn len(&self) -> usize {
        self.tail.len() + self.client_id.as_ref().map_or(0, String::len)
    }

    pub fn is_empty(&self) -> bool {
        self.tail.is_empty()
    }
}

/// A fresh epoch: 16 hex digits, different from any earlier one of the producer with
/// overwhelming likelihood.
fn epoch_candidate() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// What every publish of one producer passes the script unchanged — its keys and the head of
/// its frames — made once (per producer connection) rather than once per round trip.
#[derive(Debug, Clone)]
pub struct ProducerScript {
    producer_id: i64,
    keys: Vec<Key>,
    head: Str,
}

impl ProducerScript {
    pub fn producer_id(&self) -> i64 {
        self.producer_id
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

    /// The script's fixed arguments for `producer_id`, to keep for its publishes.
    pub fn script_for(&self, producer_id: i64) -> ProducerScript {
        let keys = self.bus.keys();
        ProducerScript {
            producer_id,
            keys: [
                keys.producer_seq(producer_id),
                keys.producer_channel(producer_id),
                keys.producer_recent_ids(producer_id),
                keys.producer_recent_id_order(producer_id),
                keys.producer_history(producer_id),
                keys.producer_epoch(producer_id),
                keys.producer_rate(producer_id),
            ]
            .into_iter()
            .map(Key::from)
            .collect(),
            head: Str::from(format!(
                r#"{{"type":"data","producer_id":{producer_id},"seq":"#
            )),
        }
    }

    /// Publishes `messages`, in order, as the producer's next messages, in one round trip,
    /// under the producer's `policy` (its history) and `rate`; `seq_floor` is the highest
    /// sequence number the caller knows of, if it knows one (else it is read from Postgres in
    /// the rare case Redis lost the counter). Either the script ran (one [`Published`] per
    /// message, in order: accepted ones, and refused ones past the rate) or nothing was
    /// published.
    pub async fn publish(
        &self,
        producer: &ProducerScript,
        messages: &[OutgoingMessage],
        seq_floor: Option<u64>,
        policy: StreamPolicy,
        rate: ProducerRate,
    ) -> Result<PublishedBatch, PublishError> {
        let first = self
            .run(producer, messages, seq_floor, policy, rate)
            .await?;
        if let Some(batch) = first {
            return Ok(batch);
        }
        let floor = self.seq_floor(producer.producer_id).await?;
        self.run(producer, messages, Some(floor), policy, rate)
            .await?
            .ok_or_else(|| {
                PublishError::Bus(BusError::Unexpected(
                    "the publish script asked for a floor it was given".into(),
                ))
            })
    }

    /// One run of the script; `None` when it needs the floor.
    async fn run(
        &self,
        producer: &ProducerScript,
        messages: &[OutgoingMessage],
        seq_floor: Option<u64>,
        policy: StreamPolicy,
        rate: ProducerRate,
    ) -> Result<Option<PublishedBatch>, BusError> {
        if messages.is_empty() {
            return Ok(Some(PublishedBatch {
                epoch: String::new(),
                messages: Vec::new(),
            }));
        }
        let per_ms = if rate.per_sec == 0 || rate.burst == 0 {
            0.0
        } else {
            f64::from(rate.per_sec) / 1_000.0
        };
        let age_ms = policy.history_age_secs.saturating_mul(1_000).max(1);
        let number = |value: u64| RedisValue::Integer(i64::try_from(value).unwrap_or(i64::MAX));
        let mut arguments: Vec<RedisValue> = Vec::with_capacity(8 + 2 * messages.len());
        arguments.push(match seq_floor {
            Some(floor) => number(floor),
            None => RedisValue::String(Str::from_static("")),
        });
        arguments.push(RedisValue::String(producer.head.clone()));
        arguments.push(number(REMEMBERED_IDS as u64));
        // Fresh per call: a Redis that lost the producer's state twice gets two new epochs.
        arguments.push(RedisValue::String(Str::from(epoch_candidate())));
        arguments.push(number(u64::from(policy.history_messages)));
        arguments.push(number(age_ms));
        arguments.push(RedisValue::Double(per_ms));
        arguments.push(number(u64::from(rate.burst)));
        for message in messages {
            arguments.push(RedisValue::String(message.tail.clone()));
            arguments.push(match &message.client_id {
                Some(id) => RedisValue::String(Str::from(id.as_str())),
                None => RedisValue::String(Str::from_static("")),
            });
        }
        let answer: Vec<RedisValue> = self
            .script
            .evalsha_with_reload(self.bus.publisher(), producer.keys.clone(), arguments)
            .await?;
        parse_answer(answer, messages.len())
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

fn parse_answer(
    answer: Vec<RedisValue>,
    expected: usize,
) -> Result<Option<PublishedBatch>, BusError> {
    let unexpected = |what: &str| {
        BusError::Unexpected(format!(
            "the publish script answered {what} for {expected} messages"
        ))
    };
    let mut values = answer.into_iter();
    let epoch = values
        .next()
        .and_then(|value| value.into_string())
        .ok_or_else(|| unexpected("no epoch"))?;
    if epoch == "?" {
        return Ok(None);
    }
    let numbers: Vec<i64> = values.filter_map(|value| value.as_i64()).collect();
    if numbers.len() != 2 * expected {
        return Err(unexpected(&format!("{} values", numbers.len())));
    }
    let messages = numbers
        .chunks_exact(2)
        .map(|pair| {
            let seq = u64::try_from(pair[0]).unwrap_or(0);
            let outcome = match pair[1] {
                -1 => PublishOutcome::Duplicate,
                receivers if receivers >= 0 => PublishOutcome::Published {
                    receivers: receivers as u64,
                },
                refused => PublishOutcome::RateLimited {
                    retry_after_ms: u64::try_from(-2 - refused).unwrap_or(1).max(1),
                },
            };
            Published { seq, outcome }
        })
        .collect();
    Ok(Some(PublishedBatch { epoch, messages }))
}

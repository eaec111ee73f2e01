//! The registry's events: the outbox in Postgres copied, in id order, into a bounded Redis
//! Stream; every instance tails the stream for its watchers.
//!
//! Any instance may relay (each runs one relay task, woken after every change it commits and
//! every second): the append script adds only ids above the last one relayed, so two relays at
//! once add each event once, in order. After each append the script publishes a
//! wake-up on the deployment's channel; each instance's tail then reads what is new and hands
//! it to its watchers through a broadcast channel. A watcher subscribes to that channel before
//! it reads what it missed from the stream, and skips what it has already seen: no gap and no
//! duplicate at the switch from replay to live.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use fred::interfaces::KeysInterface as _;
use fred::types::Value as RedisValue;
use fred::types::scripts::Script;
use nodegrid_protocol::registry::{NodeEvent, NodeEventType, NodeFilter};
use tokio::sync::{Notify, broadcast};

use super::errors::{
    REGISTRY_EVENTS_RELAYED_TOTAL, REGISTRY_RESETS_TOTAL, REGISTRY_WATCHERS, RegistryError,
};
use crate::bus::{BusError, RedisBus};
use crate::db::{Database, DbError};

/// Outbox rows relayed per round trip.
const RELAY_BATCH: i64 = 500;
/// Stream entries read per round trip.
const READ_BATCH: usize = 500;
/// Events held for an instance's watchers; a watcher further behind catches up from Redis.
const LIVE_BUFFER: usize = 4_096;

/// KEYS: stream, last relayed id. ARGV: max length, wake channel, then id and event JSON per
/// event, in id order. Returns the last relayed id.
const APPEND_SCRIPT: &str = r#"
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local added = 0
for i = 3, #ARGV, 2 do
  local id = tonumber(ARGV[i])
  if id > last then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], ARGV[i] .. '-0', 'e', ARGV[i + 1])
    last = id
    added = added + 1
  end
end
if added > 0 then
  redis.call('SET', KEYS[2], last)
  redis.call('PUBLISH', ARGV[2], last)
end
return {last, added}
"#;

/// KEYS: stream, last relayed id. ARGV: first entry id wanted, most entries. Returns {last
/// relayed id, oldest id held (0: none), then id and event JSON per entry}.
const READ_SCRIPT: &str = r#"
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local out = {last, 0}
if oldest[1] then
  out[2] = tonumber(string.match(oldest[1][1], '^(%d+)'))
end
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
for _, entry in ipairs(entries) do
  out[#out + 1] = tonumber(string.match(entry[1], '^(%d+)'))
  out[#out + 1] = entry[2][2]
end
return out
"#;

/// An event with its id as a number.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    pub id: i64,
    pub event: NodeEvent,
}

/// A read of the stream.
struct StreamRead {
    last_relayed: i64,
    oldest: i64,
    entries: Vec<LoggedEvent>,
    /// Entries the stream answered with, readable or not: a full batch means more may follow.
    read: usize,
    /// The id of the last entry answered, readable or not.
    last_read: Option<i64>,
}

#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

struct Inner {
    database: Database,
    bus: RedisBus,
    events_kept: u64,
    append: Script,
    read: Script,
    live: broadcast::Sender<Arc<LoggedEvent>>,
    /// The last id this instance's tail handed to its watchers.
    tailed: AtomicI64,
    relay_wanted: Notify,
}

impl EventLog {
    pub fn new(database: Database, bus: RedisBus, events_kept: u64) -> EventLog {
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        EventLog {
            inner: Arc::new(Inner {
                database,
                bus,
                events_kept: events_kept.max(1),
                append: Script::from_lua(APPEND_SCRIPT),
                read: Script::from_lua(READ_SCRIPT),
                live,
                tailed: AtomicI64::new(-1),
                relay_wanted: Notify::new(),
            }),
        }
    }

    fn stream_keys(&self) -> Vec<String> {
        let keys = self.inner.bus.keys();
        vec![keys.registry_events(), keys.registry_relayed()]
    }

    /// The last event id copied into the stream (`None` when Redis does not answer).
    pub async fn relayed(&self) -> Option<i64> {
        self.inner
            .bus
            .publisher()
            .get::<Option<i64>, _>(self.inner.bus.keys().registry_relayed())
            .await
            .ok()
            .flatten()
    }

    /// The channel on which appends are announced; every instance's tail listens to it.
    pub fn wake_channel(&self) -> String {
        self.inner.bus.keys().registry_wake()
    }

    /// Asks this instance's relay task to copy what the outbox holds into the stream. Changes
    /// call it after their commit and return at once: the relay never runs inside a request,
    /// where a steady flow of changes could keep it going past the caller's deadline.
    pub fn request_relay(&self) {
        self.inner.relay_wanted.notify_one();
    }

    /// Waits for a [`request_relay`](Self::request_relay) (one stored if none is waiting).
    pub async fn relay_wanted(&self) {
        self.inner.relay_wanted.notified().await;
    }

    /// Copies outbox rows the stream lacks into it, in id order, until none is left. Run by one
    /// task per instance; instances relaying at once is safe (the script skips what is there).
    pub async fn relay(&self) -> Result<(), RegistryError> {
        loop {
            let relayed: Option<i64> = self
                .inner
                .bus
                .publisher()
                .get(self.inner.bus.keys().registry_relayed())
                .await
                .map_err(BusError::from)?;
            let rows = {
                let client = self.inner.database.client().await?;
                client
                    .query(
                        "SELECT id, event_type, node_id, changed_fields, node, at FROM node_events \
                         WHERE id > $1 ORDER BY id LIMIT $2",
                        &[&relayed.unwrap_or(0), &RELAY_BATCH],
                    )
                    .await
                    .map_err(DbError::from)?
            };
            if rows.is_empty() {
                return Ok(());
            }
            let mut arguments = vec![self.inner.events_kept.to_string(), self.wake_channel()];
            for row in &rows {
                let id: i64 = row.get(0);
                let event_type: String = row.get(1);
                let node: serde_json::Value = row.get(4);
                let event = NodeEvent {
                    event_id: id.to_string(),
                    event_type: NodeEventType::parse(&event_type).unwrap_or(NodeEventType::Updated),
                    node_id: Some(row.get(2)),
                    changed_fields: row.get(3),
                    node: serde_json::from_value(node).ok(),
                    ts: row.get(5),
                };
                let json = serde_json::to_string(&event).map_err(|error| {
                    RegistryError::Validation(format!("event not encodable: {error}"))
                })?;
                arguments.push(id.to_string());
                arguments.push(json);
            }
            let answer: Vec<i64> = self
                .inner
                .append
                .evalsha_with_reload(self.inner.bus.publisher(), self.stream_keys(), arguments)
                .await
                .map_err(BusError::from)?;
            let added = answer.get(1).copied().unwrap_or(0);
            metrics::counter!(REGISTRY_EVENTS_RELAYED_TOTAL)
                .increment(u64::try_from(added).unwrap_or(0));
            if rows.len() < usize::try_from(RELAY_BATCH).unwrap_or(usize::MAX) {
                return Ok(());
            }
        }
    }

    async fn read_after(&self, after: i64) -> Result<StreamRead, RegistryError> {
        let answer: Vec<RedisValue> = self
            .inner
            .read
            .evalsha_with_reload(
                self.inner.bus.publisher(),
                self.stream_keys(),
                vec![
                    format!("{}-0", after.saturating_add(1)),
                    READ_BATCH.to_string(),
                ],
            )
            .await
            .map_err(BusError::from)?;
        let unexpected =
            || BusError::Unexpected("the registry read script answered a wrong shape".into());
        let mut values = answer.into_iter();
        let last_relayed = values
            .next()
            .and_then(|value| value.as_i64())
            .ok_or_else(unexpected)?;
        let oldest = values
            .next()
            .and_then(|value| value.as_i64())
            .ok_or_else(unexpected)?;
        let mut entries = Vec::new();
        let (mut read, mut last_read) = (0, None);
        while let (Some(id), Some(json)) = (values.next(), values.next()) {
            let (Some(id), Some(json)) = (id.as_i64(), json.into_string()) else {
                return Err(unexpected().into());
            };
            read += 1;
            last_read = Some(id);
            match serde_json::from_str::<NodeEvent>(&json) {
                Ok(event) => entries.push(LoggedEvent { id, event }),
                Err(error) => tracing::warn!(%error, id, "an unreadable registry event is skipped"),
            }
        }
        Ok(StreamRead {
            last_relayed,
            oldest,
            entries,
            read,
            last_read,
        })
    }

    /// Hands what the stream holds past this instance's last position to its watchers. Called
    /// on every wake-up and now and then (a wake-up can be lost while Redis reconnects).
    pub async fn tail(&self) -> Result<(), RegistryError> {
        let mut after = self.inner.tailed.load(Ordering::SeqCst);
        if after < 0 {
            // The first call: live from here.
            let read = self.read_after(i64::MAX - 1).await?;
            self.inner.tailed.store(read.last_relayed, Ordering::SeqCst);
            return Ok(());
        }
        loop {
            let read = self.read_after(after).await?;
            if read.last_relayed < after {
                // Redis lost the stream (flushed): start again from what it holds now.
                self.inner.tailed.store(read.last_relayed, Ordering::SeqCst);
                return Ok(());
            }
            if read.oldest > 0 && after.saturating_add(1) < read.oldest && after < read.last_relayed
            {
                // Trimmed past this instance's position before it read them (a burst after an
                // outage): its watchers are told to re-list, not left with a silent gap.
                let resume_at = read.oldest - 1;
                metrics::counter!(REGISTRY_RESETS_TOTAL).increment(1);
                let _ = self.inner.live.send(Arc::new(reset_event(resume_at)));
                after = resume_at;
            }
            let full = read.read == READ_BATCH;
            for entry in read.entries {
                after = after.max(entry.id);
                let _ = self.inner.live.send(Arc::new(entry));
            }
            if let Some(last_read) = read.last_read {
                after = after.max(last_read);
            }
            self.inner.tailed.store(after, Ordering::SeqCst);
            if !full {
                return Ok(());
            }
        }
    }

    /// A watch of the registry's events that pass `filter`: after `since` (replayed from the
    /// stream, with a `RESET` first when the stream no longer reaches back to it), then live.
    pub async fn watch(
        &self,
        filter: NodeFilter,
        since: Option<i64>,
    ) -> Result<RegistryWatch, RegistryError> {
        let live = self.inner.live.subscribe();
        let mut watch = RegistryWatch {
            log: self.clone(),
            live,
            filter,
            last: 0,
            pending: VecDeque::new(),
            _gauge: WatcherGauge::new(),
        };
        match since {
            Some(since) => watch.replay_from(since, true).await?,
            None => {
                let read = self.read_after(i64::MAX - 1).await?;
                watch.last = read.last_relayed;
            }
        }
        Ok(watch)
    }
}

/// The `RESET` event telling a watcher to re-list, then continue after `resume_at`.
fn reset_event(resume_at: i64) -> LoggedEvent {
    LoggedEvent {
        id: resume_at,
        event: NodeEvent {
            event_id: resume_at.to_string(),
            event_type: NodeEventType::Reset,
            node_id: None,
            changed_fields: Vec::new(),
            node: None,
            ts: chrono::Utc::now(),
        },
    }
}

/// One watcher's position in the events.
pub struct RegistryWatch {
    log: EventLog,
    live: broadcast::Receiver<Arc<LoggedEvent>>,
    filter: NodeFilter,
    /// The last event id handed out (or skipped by the filter).
    last: i64,
    pending: VecDeque<LoggedEvent>,
    _gauge: WatcherGauge,
}

/// Counts a watch (WebSocket or gRPC) while it lives.
struct WatcherGauge;

impl WatcherGauge {
    fn new() -> WatcherGauge {
        metrics::gauge!(REGISTRY_WATCHERS).increment(1.0);
        WatcherGauge
    }
}

impl Drop for WatcherGauge {
    fn drop(&mut self) {
        metrics::gauge!(REGISTRY_WATCHERS).decrement(1.0);
    }
}

impl RegistryWatch {
    /// Queues what the stream holds after `since`; with `may_reset`, a `RESET` first when it
    /// no longer reaches back that far.
    async fn replay_from(&mut self, since: i64, may_reset: bool) -> Result<(), RegistryError> {
        self.last = since;
        let mut first = true;
        loop {
            let read = self.log.read_after(self.last).await?;
            if first && may_reset && since < read.last_relayed {
                let lost = read.oldest == 0 || since.saturating_add(1) < read.oldest;
                if lost {
                    let resume_at = if read.oldest == 0 {
                        read.last_relayed
                    } else {
                        read.oldest - 1
                    };
                    metrics::counter!(REGISTRY_RESETS_TOTAL).increment(1);
                    self.pending.push_back(reset_event(resume_at));
                    self.last = resume_at;
                }
            }
            first = false;
            let full = read.read == READ_BATCH;
            for entry in read.entries {
                self.last = entry.id;
                self.pending.push_back(entry);
            }
            if let Some(last_read) = read.last_read {
                self.last = self.last.max(last_read);
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// The next event that passes the filter.
    pub async fn next(&mut self) -> Result<NodeEvent, RegistryError> {
        loop {
            if let Some(entry) = self.pending.pop_front() {
                if self.passes(&entry.event) {
                    return Ok(entry.event);
                }
                continue;
            }
            match self.live.recv().await {
                Ok(entry)
                    if entry.id <= self.last && entry.event.event_type != NodeEventType::Reset =>
                {
                    continue;
                }
                Ok(entry) if entry.event.event_type == NodeEventType::Reset => {
                    if entry.id > self.last {
                        self.last = entry.id;
                        return Ok(entry.event.clone());
                    }
                }
                Ok(entry) => {
                    self.last = entry.id;
                    if self.passes(&entry.event) {
                        return Ok(entry.event.clone());
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Too far behind the live buffer: catch up from the stream, with a RESET
                    // if the stream no longer reaches back to where this watcher was.
                    let last = self.last;
                    self.replay_from(last, true).await?;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(RegistryError::Bus(BusError::Unexpected(
                        "the registry's event log closed".into(),
                    )));
                }
            }
        }
    }

    fn passes(&self, event: &NodeEvent) -> bool {
        match &event.node {
            Some(node) => self.filter.matches(node),
            None => true,
        }
    }
}

/// How often each instance relays and tails without being woken: the safety net for a relay
/// that failed after its commit and for wake-ups lost in a Redis reconnect.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

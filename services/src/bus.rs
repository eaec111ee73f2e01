//! Redis: the deployment's bus.
//!
//! Three connections per instance, because RESP2 cannot publish and subscribe on one: a
//! publisher/command client, and two subscriber clients that re-subscribe on their own after a
//! reconnect — one per [`Lane`]: control events on one, producers' data on the other, so that
//! a flood of data never delays a control event (nor, when a reader falls behind, drops one),
//! and the control channel's readers are not woken for every data message. All reconnect
//! forever with capped exponential backoff, and none makes start-up wait: an instance starts
//! while Redis is down and `/ready` says so until it is back.
//!
//! Every key and channel of a deployment starts with its prefix (see [`RedisKeys`]), so
//! deployments and test runs that share one Redis never see each other.

use std::time::Duration;

use fred::prelude::{
    ClientLike, Config, EventInterface, Expiration, HashesInterface, KeysInterface, LuaInterface,
    PubsubInterface, ReconnectPolicy, Server, SetsInterface,
};
use fred::types::Builder;
use nodegrid_protocol::control::ControlEnvelope;

pub use fred::clients::{Client as RedisClient, SubscriberClient};
pub use fred::types::Message as RedisMessage;

/// How long one Redis command may take before it fails, so that a request never hangs on a
/// Redis that is gone.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Messages a subscriber connection holds for its readers before the oldest are dropped (and
/// counted in `nodegrid_bus_messages_lagged_total`; the fan-out then catches its sessions up
/// from history), unless configured otherwise. fred's default of 32 drops messages under
/// bursts of a few thousand per second; this absorbs about a second and a half of 10,000
/// messages per second.
pub const SUBSCRIBER_BUFFER_MESSAGES: usize = 16_384;
/// Reconnect backoff: from 100 ms, doubling, capped at 5 s, forever.
const RECONNECT_MIN_DELAY_MS: u32 = 100;
const RECONNECT_MAX_DELAY_MS: u32 = 5_000;

/// What can go wrong at the Redis boundary.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("Redis URL is not valid: {0}")]
    InvalidUrl(String),
    #[error("Redis command failed: {0}")]
    Command(#[from] fred::error::Error),
    #[error("cannot encode a bus message: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("Redis answered something unexpected: {0}")]
    Unexpected(String),
    #[error("not connected")]
    Disconnected,
}

impl BusError {
    /// Whether Redis is away rather than the request being wrong.
    pub fn is_unavailable(&self) -> bool {
        match self {
            BusError::Disconnected => true,
            BusError::Command(error) => matches!(
                error.kind(),
                fred::error::ErrorKind::IO
                    | fred::error::ErrorKind::Timeout
                    | fred::error::ErrorKind::Canceled
                    | fred::error::ErrorKind::Backpressure
            ),
            BusError::InvalidUrl(_) | BusError::Encode(_) | BusError::Unexpected(_) => false,
        }
    }
}

/// The names of a deployment's keys and channels.
///
/// Keys that one script or command touches together share a hash tag (`{p:42}` for a
/// producer's, `{nodes}` for the registry's stream, `{lease:name}` for a lease), so that on a
/// Redis Cluster they live in one slot; everything else spreads over the slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisKeys {
    prefix: String,
}

impl RedisKeys {
    pub fn new(prefix: impl Into<String>) -> RedisKeys {
        RedisKeys {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The channel that every instance listens to for deployment-wide changes.
    pub fn control_channel(&self) -> String {
        format!("{}:control", self.prefix)
    }

    /// The channel a producer's messages are published on (named like its keys: the publish
    /// script names it among them).
    pub fn producer_channel(&self, producer_id: i64) -> String {
        format!("{}:{{p:{producer_id}}}", self.prefix)
    }

    /// The producer id of a channel named by [`Self::producer_channel`].
    pub fn producer_of_channel(&self, channel: &str) -> Option<i64> {
        channel
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(":{p:")?
            .strip_suffix('}')?
            .parse()
            .ok()
    }

    /// A producer's key named `name`, in the producer's slot.
    fn producer_key(&self, producer_id: i64, name: &str) -> String {
        format!("{}:{{p:{producer_id}}}:{name}", self.prefix)
    }

    /// The counter of a producer's sequence numbers.
    pub fn producer_seq(&self, producer_id: i64) -> String {
        self.producer_key(producer_id, "seq")
    }

    /// A producer's recent client message ids (hash id → seq, and their order).
    pub fn producer_recent_ids(&self, producer_id: i64) -> String {
        self.producer_key(producer_id, "ids")
    }

    pub fn producer_recent_id_order(&self, producer_id: i64) -> String {
        self.producer_key(producer_id, "ids:order")
    }

    /// A producer's history: a Redis Stream whose entry ids are `<seq>-0`.
    pub fn producer_history(&self, producer_id: i64) -> String {
        self.producer_key(producer_id, "h")
    }

    /// A producer's history epoch.
    pub fn producer_epoch(&self, producer_id: i64) -> String {
        self.producer_key(producer_id, "epoch")
    }

    /// A producer's message-rate bucket, shared by its sockets and the publish API.
    pub fn producer_rate(&self, producer_id: i64) -> String {
        self.producer_key(producer_id, "rate")
    }

    /// The node registry's event stream (entry ids `<event id>-0`).
    pub fn registry_events(&self) -> String {
        format!("{}:{{nodes}}:events", self.prefix)
    }

    /// The last registry event id copied into the stream.
    pub fn registry_relayed(&self) -> String {
        format!("{}:{{nodes}}:relayed", self.prefix)
    }

    /// The channel on which registry appends are announced.
    pub fn registry_wake(&self) -> String {
        format!("{}:{{nodes}}:wake", self.prefix)
    }

    /// Every key of a producer's stream state, for moving or forgetting it whole.
    pub fn producer_keys(&self, producer_id: i64) -> [String; 6] {
        [
            self.producer_seq(producer_id),
            self.producer_recent_ids(producer_id),
            self.producer_recent_id_order(producer_id),
            self.producer_history(producer_id),
            self.producer_epoch(producer_id),
            self.producer_rate(producer_id),
        ]
    }

    /// The key where an instance reports its live connections.
    pub fn instance_connections(&self, instance_id: &str) -> String {
        format!("{}:connections:{instance_id}", self.prefix)
    }

    /// The marker of a nonce a child used.
    pub fn child_nonce(&self, child_id: &uuid::Uuid, nonce: &str) -> String {
        format!("{}:child:{child_id}:nonce:{nonce}", self.prefix)
    }

    /// The hash of where children's control sockets are connected (child id → instance).
    pub fn child_control(&self) -> String {
        format!("{}:child-control", self.prefix)
    }

    /// The set of instances that report connections.
    pub fn instances(&self) -> String {
        format!("{}:instances", self.prefix)
    }

    /// The key that holds the named leader lease, and the counter of its fencing tokens.
    pub fn lease(&self, name: &str) -> (String, String) {
        (
            format!("{}:{{lease:{name}}}", self.prefix),
            format!("{}:{{lease:{name}}}:fence", self.prefix),
        )
    }
}

/// Starts every probe message: no data frame or control event starts so (they are JSON).
const PROBE_PREFIX: &str = "~probe:";

/// How long a subscriber waits for its probe before it subscribes and probes again (a probe
/// published before Redis had the subscription is lost).
pub const PROBE_RETRY: Duration = Duration::from_millis(250);

/// A fresh probe token: random, so that one instance's probe is never taken for another's.
pub fn new_probe_token() -> u64 {
    rand::random()
}

/// The token of a probe published by [`RedisBus::publish_probe`] or
/// [`RedisBus::subscribe_and_probe_producer`], or `None` when `payload` is not a probe. Costs
/// one byte comparison for anything else.
pub fn probe_token(payload: &[u8]) -> Option<u64> {
    let hex = payload.strip_prefix(PROBE_PREFIX.as_bytes())?;
    u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

/// Publishes a producer probe and answers the producer's sequence number read in the same
/// atomic step (KEYS: the sequence counter, the channel; ARGV: the probe). The probe's text is
/// the plain one, which every version's readers skip.
const PRODUCER_PROBE_SCRIPT: &str = r#"
local seq = redis.call('GET', KEYS[1]) or '0'
redis.call('PUBLISH', KEYS[2], ARGV[1])
return seq
"#;

/// Deletes a hash field only while it holds the value given (KEYS[1] the hash, ARGV the field
/// and the value), so that an instance never removes what another wrote after it.
const REMOVE_IF_EQUAL_SCRIPT: &str = r#"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"#;

/// Which subscriber connection a channel is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The control channel and the registry's wake-ups: few messages, read by several actors.
    Control,
    /// Producers' channels: every data message, read by the stream fan-out alone.
    Data,
}

/// The instance's Redis connections.
#[derive(Clone)]
pub struct RedisBus {
    publisher: RedisClient,
    subscriber: SubscriberClient,
    data_subscriber: SubscriberClient,
    keys: RedisKeys,
}

impl RedisBus {
    /// Builds the clients and starts connecting in the background; returns at once.
    pub fn start(url: &str, prefix: &str) -> Result<RedisBus, BusError> {
        RedisBus::start_buffered(url, prefix, SUBSCRIBER_BUFFER_MESSAGES)
    }

    /// Like [`RedisBus::start`], each subscriber holding `subscriber_buffer` messages for its
    /// readers.
    pub fn start_buffered(
        url: &str,
        prefix: &str,
        subscriber_buffer: usize,
    ) -> Result<RedisBus, BusError> {
        let builder = builder(url, subscriber_buffer.max(1))?;
        let publisher = builder.build()?;
        let subscriber = builder.build_subscriber_client()?;
        let data_subscriber = builder.build_subscriber_client()?;
        // The connection tasks run until `quit`; their handles are not needed to stop them.
        drop(publisher.connect());
        for client in [&subscriber, &data_subscriber] {
            drop(client.connect());
            // Re-subscribes to every channel after each reconnect, for as long as the client
            // lives.
            drop(client.manage_subscriptions());
        }
        Ok(RedisBus {
            publisher,
            subscriber,
            data_subscriber,
            keys: RedisKeys::new(prefix),
        })
    }

    fn lane(&self, lane: Lane) -> &SubscriberClient {
        match lane {
            Lane::Control => &self.subscriber,
            Lane::Data => &self.data_subscriber,
        }
    }

    pub fn keys(&self) -> &RedisKeys {
        &self.keys
    }

    /// The command and publish client.
    pub fn publisher(&self) -> &RedisClient {
        &self.publisher
    }

    /// The subscriber client of `lane`.
    pub fn subscriber(&self, lane: Lane) -> &SubscriberClient {
        self.lane(lane)
    }

    /// One PING round trip on the command connection.
    pub async fn ping(&self) -> Result<(), BusError> {
        let _: String = self.publisher.ping(None).await?;
        Ok(())
    }

    /// Waits until every connection is up, at most `timeout`; tells whether they are.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let all = async {
            let _ = self.publisher.wait_for_connect().await;
            let _ = self.subscriber.wait_for_connect().await;
            let _ = self.data_subscriber.wait_for_connect().await;
        };
        let _ = tokio::time::timeout(timeout, all).await;
        self.is_connected()
    }

    /// Whether every connection is up right now.
    pub fn is_connected(&self) -> bool {
        self.publisher.is_connected()
            && self.subscriber.is_connected()
            && self.data_subscriber.is_connected()
    }

    /// Publishes one control event to every instance of the deployment, this one included.
    /// Returns how many subscriber connections received it.
    pub async fn publish_control(&self, envelope: &ControlEnvelope) -> Result<u64, BusError> {
        let payload = serde_json::to_string(envelope)?;
        let receivers: u64 = self
            .publisher
            .publish(self.keys.control_channel(), payload)
            .await?;
        Ok(receivers)
    }

    /// Subscribes `lane`'s connection to a channel; it stays subscribed across reconnects.
    ///
    /// The answer says only that the command was queued: fred answers SUBSCRIBE before it is
    /// even written, so Redis may not know of the subscription yet. A caller that must know
    /// when messages start to arrive uses [`RedisBus::subscribe_and_probe`] and waits for its
    /// probe to come back.
    pub async fn subscribe(&self, lane: Lane, channel: &str) -> Result<(), BusError> {
        self.lane(lane).subscribe(channel).await?;
        Ok(())
    }

    /// Subscribes to `channel`, then publishes a probe with `token` on it. A subscriber that
    /// receives its own probe knows its subscription is live on the server — on a cluster, on
    /// the node its subscriber connection uses — so every message published after that point
    /// reaches it. Readers of a channel skip probes ([`probe_token`]).
    pub async fn subscribe_and_probe(
        &self,
        lane: Lane,
        channel: &str,
        token: u64,
    ) -> Result<(), BusError> {
        self.subscribe(lane, channel).await?;
        self.publish_probe(channel, token).await
    }

    /// Subscribes the data lane to producer `producer_id`'s channel, then publishes a probe
    /// on it, and answers the producer's sequence number at the instant of the probe: every
    /// message numbered up to it was published before the probe, every later one after it (0
    /// when the producer had no counter: everything of the numbering that follows came
    /// after). Where a session that had nothing yet catches up from, should messages after it
    /// be missed.
    pub async fn subscribe_and_probe_producer(
        &self,
        producer_id: i64,
        token: u64,
    ) -> Result<u64, BusError> {
        let channel = self.keys.producer_channel(producer_id);
        self.subscribe(Lane::Data, &channel).await?;
        let script = fred::types::scripts::Script::from_lua(PRODUCER_PROBE_SCRIPT);
        let seq: String = script
            .evalsha_with_reload(
                &self.publisher,
                vec![self.keys.producer_seq(producer_id), channel],
                format!("{PROBE_PREFIX}{token:016x}"),
            )
            .await?;
        seq.parse()
            .map_err(|_| BusError::Unexpected(format!("a producer's seq counter holds {seq:?}")))
    }

    /// Publishes a probe with `token` on `channel` (see [`RedisBus::subscribe_and_probe`]).
    pub async fn publish_probe(&self, channel: &str, token: u64) -> Result<(), BusError> {
        let _: u64 = self
            .publisher
            .publish(channel, format!("{PROBE_PREFIX}{token:016x}"))
            .await?;
        Ok(())
    }

    /// Unsubscribes `lane`'s connection from a channel.
    pub async fn unsubscribe(&self, lane: Lane, channel: &str) -> Result<(), BusError> {
        self.lane(lane).unsubscribe(channel).await?;
        Ok(())
    }

    /// Every message that arrives on `lane`'s connection.
    pub fn messages(&self, lane: Lane) -> tokio::sync::broadcast::Receiver<RedisMessage> {
        self.lane(lane).message_rx()
    }

    /// One item per successful reconnect of `lane`'s connection.
    pub fn subscriber_reconnects(&self, lane: Lane) -> tokio::sync::broadcast::Receiver<Server> {
        self.lane(lane).reconnect_rx()
    }

    /// Stores this instance's report of its live connections, for `ttl`.
    pub async fn put_instance_report(
        &self,
        instance_id: &str,
        report: &str,
        ttl: Duration,
    ) -> Result<(), BusError> {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let _: () = self
            .publisher
            .set(
                self.keys.instance_connections(instance_id),
                report,
                Some(Expiration::PX(ttl_ms)),
                None,
                false,
            )
            .await?;
        let _: i64 = self
            .publisher
            .sadd(self.keys.instances(), instance_id)
            .await?;
        Ok(())
    }

    /// Sets `key` if it is not set, to expire after `ttl`: `true` the first time, `false`
    /// while it lives (a nonce seen before).
    pub async fn claim_once(&self, key: &str, ttl: Duration) -> Result<bool, BusError> {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        let set: Option<String> = self
            .publisher
            .set(
                key,
                "1",
                Some(Expiration::PX(ttl_ms)),
                Some(fred::types::SetOptions::NX),
                false,
            )
            .await?;
        Ok(set.is_some())
    }

    /// Every instance's latest report, `(instance id, report)`; instances whose report expired
    /// are forgotten.
    pub async fn instance_reports(&self) -> Result<Vec<(String, String)>, BusError> {
        let instances: Vec<String> = self.publisher.smembers(self.keys.instances()).await?;
        let mut reports = Vec::with_capacity(instances.len());
        for instance in instances {
            let report: Option<String> = self
                .publisher
                .get(self.keys.instance_connections(&instance))
                .await?;
            match report {
                Some(report) => reports.push((instance, report)),
                None => {
                    let _: i64 = self
                        .publisher
                        .srem(self.keys.instances(), &instance)
                        .await?;
                }
            }
        }
        Ok(reports)
    }

    /// Sets fields of the children's control hash (`(child id, where)`).
    pub async fn put_child_controls(&self, entries: Vec<(String, String)>) -> Result<(), BusError> {
        if entries.is_empty() {
            return Ok(());
        }
        let _: i64 = self
            .publisher
            .hset(self.keys.child_control(), entries)
            .await?;
        Ok(())
    }

    /// Removes a child's entry of the control hash if it still is `value` (a later socket of
    /// the same child, on any instance, keeps its own).
    pub async fn remove_child_control(&self, child: &str, value: &str) -> Result<(), BusError> {
        let _: i64 = self
            .publisher
            .eval(
                REMOVE_IF_EQUAL_SCRIPT,
                vec![self.keys.child_control()],
                vec![child.to_owned(), value.to_owned()],
            )
            .await?;
        Ok(())
    }

    /// The control hash's entries of these children, in their order.
    pub async fn child_controls(
        &self,
        children: Vec<String>,
    ) -> Result<Vec<Option<String>>, BusError> {
        if children.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .publisher
            .hmget(self.keys.child_control(), children)
            .await?)
    }

    /// Withdraws this instance's report (at shutdown).
    pub async fn remove_instance_report(&self, instance_id: &str) -> Result<(), BusError> {
        let _: i64 = self
            .publisher
            .del(self.keys.instance_connections(instance_id))
            .await?;
        let _: i64 = self
            .publisher
            .srem(self.keys.instances(), instance_id)
            .await?;
        Ok(())
    }

    /// Moves a producer's stream state (sequence, history, epoch, …) to another user id, when
    /// an account changes id.
    pub async fn move_producer_state(&self, from_id: i64, to_id: i64) -> Result<(), BusError> {
        let from = self.keys.producer_keys(from_id);
        let to = self.keys.producer_keys(to_id);
        // Copied, not renamed: the two producers' keys live in different slots of a cluster.
        for (from, to) in from.into_iter().zip(to) {
            let dumped: Option<fred::bytes::Bytes> = self.publisher.dump(from.as_str()).await?;
            match dumped {
                Some(dumped) => {
                    // Milliseconds left, or -1 for none (RESTORE's 0).
                    let ttl: i64 = self.publisher.pttl(from.as_str()).await?;
                    self.publisher
                        .restore::<(), _>(
                            to,
                            ttl.max(0),
                            fred::types::Value::Bytes(dumped),
                            true,
                            false,
                            None,
                            None,
                        )
                        .await?;
                    let _: i64 = self.publisher.del(from).await?;
                }
                None => {
                    let _: i64 = self.publisher.del(to).await?;
                }
            }
        }
        Ok(())
    }

    /// Forgets the stream state kept under these user ids (left by accounts that no longer
    /// hold them), so that a new holder of an id never sees an old holder's history.
    pub async fn forget_producer_state(&self, producer_ids: &[i64]) -> Result<(), BusError> {
        // One command per producer: each producer's keys share a slot, different producers'
        // need not.
        for id in producer_ids {
            let keys: Vec<String> = self.keys.producer_keys(*id).into();
            let _: i64 = self.publisher.del(keys).await?;
        }
        Ok(())
    }

    /// Closes every connection.
    pub async fn quit(&self) {
        let _ = self.data_subscriber.quit().await;
        let _ = self.subscriber.quit().await;
        let _ = self.publisher.quit().await;
    }
}

fn builder(url: &str, subscriber_buffer: usize) -> Result<Builder, BusError> {
    let mut config =
        Config::from_url(url).map_err(|error| BusError::InvalidUrl(error.to_string()))?;
    // Without this, a Redis that is down at start-up would make the first connect fail for
    // good instead of following the reconnect policy.
    config.fail_fast = false;
    let mut builder = Builder::from_config(config);
    builder
        .with_connection_config(|connection| {
            connection.connection_timeout = CONNECT_TIMEOUT;
            connection.internal_command_timeout = COMMAND_TIMEOUT;
            // Commands sent while disconnected wait for the reconnect, then are retried once.
            connection.max_command_attempts = 2;
        })
        .with_performance_config(|performance| {
            performance.default_command_timeout = COMMAND_TIMEOUT;
            performance.broadcast_channel_capacity = subscriber_buffer;
        })
        .set_policy(ReconnectPolicy::new_exponential(
            0,
            RECONNECT_MIN_DELAY_MS,
            RECONNECT_MAX_DELAY_MS,
            2,
        ));
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_told_from_everything_else() {
        let token = new_probe_token();
        let payload = format!("{PROBE_PREFIX}{token:016x}");
        assert_eq!(probe_token(payload.as_bytes()), Some(token));
        for other in [
            &br#"{"type":"data","seq":1}"#[..],
            b"~probe:",
            b"~probe:not-hex",
            b"~probe:1ffffffffffffffff",
            b"",
        ] {
            assert_eq!(probe_token(other), None, "{other:?}");
        }
    }
}

//! The StreamFanout actor: this instance's delivery of producer messages to its consumer
//! sessions.
//!
//! It subscribes each producer channel `<prefix>:p:<id>` on the Redis subscriber once while any
//! local session wants it (reference-counted by session), and writes every message of that
//! channel straight into the outboxes of those sessions: one shared text per message, its
//! MessagePack form made once if a session needs it, and no actor message per recipient. A
//! session whose outbox is full is closed as a slow consumer; nobody else waits for it.
//!
//! Because the fan-out is the only writer of a producer's frames into a session, it also
//! writes the `subscribed` and `unsubscribed` frames: `subscribed` once the channel is known
//! to be subscribed — its probe came back — so every data frame after it is live;
//! `unsubscribed` after the last data frame the session will get. It also runs resumes (see
//! [`super::replay`]): history first, then live, nothing lost or repeated at the switch.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use bytestring::ByteString;
use nodegrid_protocol::stream::{Encoding, ServerFrame, close};
use nodegrid_services::bus::{
    BusError, Lane, PROBE_RETRY, RedisBus, RedisMessage, new_probe_token, probe_token,
};
use nodegrid_services::streams::history::{
    HistoryPage, StreamHistory, frame_epoch, frame_seq, frame_ts,
};
use nodegrid_services::streams::policies::ProducerPolicies;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::metrics::{ACTOR_RESTARTS_TOTAL, BUS_MESSAGES_LAGGED_TOTAL, REDIS_RECONNECTS_TOTAL};
use crate::stream::metrics::{STREAM, TOTALS};
use crate::stream::outbox::{Outbox, Outgoing, outgoing};
use crate::stream::replay::{MAX_PAGE, Replay, ResumeFrom};
use crate::stream::{CloseConnection, ConnectionId, SharedEncoding, now_millis};

/// How long to wait before trying a failed SUBSCRIBE again.
const SUBSCRIBE_RETRY: Duration = Duration::from_secs(1);
/// How long to wait before reading history again after a failed read.
const HISTORY_RETRY: Duration = Duration::from_secs(1);
/// How often a resume waiting for room in a session's outbox looks again.
const ROOM_POLL: Duration = Duration::from_millis(20);

/// Where the fan-out writes a session's frames.
#[derive(Clone)]
pub struct SessionSink {
    pub outbox: Outbox,
    pub encoding: SharedEncoding,
    /// Used when the outbox is full: the session is closed as a slow consumer.
    pub close: Recipient<CloseConnection>,
}

/// A session wants a producer's messages (idempotent). With `announce`, the session gets a
/// `subscribed` frame once the channel is live (at once if it is already). With `resume`, it
/// first gets what history holds after that position (and a `gap` frame for what it does not).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach {
    pub producer_id: i64,
    pub session: ConnectionId,
    pub sink: SessionSink,
    pub announce: bool,
    pub resume: Option<ResumeFrom>,
}

/// A session no longer wants a producer's messages; with `announce` it gets an
/// `unsubscribed` frame after the last of them. The last session to leave unsubscribes the
/// channel.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Detach {
    pub producer_id: i64,
    pub session: ConnectionId,
    pub announce: bool,
}

/// A session ended: it leaves every channel.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DetachAll {
    pub session: ConnectionId,
    pub producers: Vec<i64>,
}

/// The first step of shutdown: stop delivering.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ShutdownFanout;

/// A producer message as this instance received it from Redis: the consumer frame's JSON text,
/// shared by every local session, and its MessagePack form, made once if any session needs it.
#[derive(Debug)]
pub struct StreamItem {
    pub producer_id: i64,
    pub json: ByteString,
    msgpack: OnceLock<Option<Bytes>>,
}

impl StreamItem {
    pub fn new(producer_id: i64, json: ByteString) -> StreamItem {
        StreamItem {
            producer_id,
            json,
            msgpack: OnceLock::new(),
        }
    }

    /// The frame as MessagePack (a map with the same field names).
    pub fn msgpack(&self) -> Option<Bytes> {
        self.msgpack
            .get_or_init(|| {
                let value: serde_json::Value = serde_json::from_str(&self.json).ok()?;
                rmp_serde::to_vec_named(&value).ok().map(Bytes::from)
            })
            .clone()
    }

    /// The frame in `encoding`.
    pub fn outgoing(&self, encoding: Encoding) -> Option<Outgoing> {
        match encoding {
            Encoding::Json => Some(Outgoing::Text(self.json.clone())),
            Encoding::MessagePack => self.msgpack().map(Outgoing::Binary),
        }
    }

    /// The message's `ts` field, read without decoding the whole frame.
    pub fn ts_millis(&self) -> Option<i64> {
        frame_ts(&self.json)
    }

    /// The message's `seq` field, read without decoding the whole frame.
    pub fn seq(&self) -> Option<u64> {
        frame_seq(&self.json)
    }
}

struct Attached {
    sink: SessionSink,
    /// Owes the session a `subscribed` frame once the channel is live.
    announce_when_live: bool,
    closing: bool,
    /// A resume in progress: live messages are held until history is sent.
    replay: Option<Replay>,
    /// After a resume: live messages numbered up to this were sent from history. A message
    /// published just before the history read may reach the fan-out after the resume ended;
    /// it is skipped here, and the first later one ends the skipping.
    skip_through: Option<u64>,
    /// The `seq` of the last message sent to the session (live or from history): where it
    /// catches up from when messages did not reach it (a Redis reconnect, a gap in `seq`).
    last_seq: Option<u64>,
    /// The channel's [`ProducerChannel::epoch_serial`] when `last_seq` was sent.
    last_serial: u64,
}

impl Attached {
    fn push(&mut self, frame: Option<Outgoing>) {
        let Some(frame) = frame else { return };
        if self.sink.outbox.push(frame).is_err() {
            self.close_slow();
        }
    }

    fn close_slow(&mut self) {
        if !self.closing {
            self.closing = true;
            self.replay = None;
            self.sink
                .close
                .do_send(CloseConnection(close::SLOW_CONSUMER));
        }
    }

    fn announce(&mut self, frame: &ServerFrame) {
        let frame = outgoing(frame, self.sink.encoding.get());
        self.push(frame);
    }
}

/// One producer channel and the local sessions that want it.
#[derive(Default)]
struct ProducerChannel {
    sessions: HashMap<ConnectionId, Attached>,
    subscribed: bool,
    /// The probe this instance waits for to know the subscription is live: set from the
    /// SUBSCRIBE until the probe comes back (see [`RedisBus::subscribe_and_probe`]).
    probe: Option<u64>,
    /// The epoch of the last message received on the channel (changed rarely: kept without a
    /// copy per message).
    epoch: Option<String>,
    /// Counts the epoch changes seen, so that a session can tell whether its `last_seq` is of
    /// the current numbering without keeping the epoch itself.
    epoch_serial: u64,
    /// The last `seq` seen on the channel: where a session that has had nothing yet catches up
    /// from.
    last_seq: Option<u64>,
    /// The producer's `seq` when this instance's latest probe was published (the probe's
    /// script answers it): where such a session catches up from if the channel has seen
    /// nothing since.
    live_from: Option<u64>,
}

impl ProducerChannel {
    /// Notes the epoch of a message or a history page.
    fn note_epoch(&mut self, epoch: &str) {
        if epoch.is_empty() || self.epoch.as_deref() == Some(epoch) {
            return;
        }
        if self.epoch.is_some() {
            self.epoch_serial += 1;
        }
        self.epoch = Some(epoch.to_owned());
    }

    /// Where a session resumes from to get what it missed: after its last message, in the
    /// epoch of that message (an epoch that is no longer the channel's is named by an empty
    /// one, which makes the resume read the current numbering from its start).
    fn resume_point(&self, attached: &Attached) -> Option<ResumeFrom> {
        let since_seq = attached.last_seq.or(self.last_seq).or(self.live_from)?;
        let epoch = if attached.last_seq.is_none() || attached.last_serial == self.epoch_serial {
            self.epoch.clone()
        } else {
            Some(String::new())
        };
        Some(ResumeFrom { since_seq, epoch })
    }
}

pub struct StreamFanout {
    bus: RedisBus,
    history: StreamHistory,
    policies: ProducerPolicies,
    producers: HashMap<i64, ProducerChannel>,
    shutting_down: bool,
}

/// A new resume generation, unique within the process.
fn next_generation() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl StreamFanout {
    /// Starts the fan-out under a Supervisor on the current arbiter.
    pub fn start_supervised(bus: RedisBus, policies: ProducerPolicies) -> Addr<StreamFanout> {
        Supervisor::start(move |_| StreamFanout {
            history: StreamHistory::new(bus.clone()),
            bus,
            policies,
            producers: HashMap::new(),
            shutting_down: false,
        })
    }

    /// Reads the next page of history for a resuming session, once the producer's channel is
    /// live.
    fn read_page(&mut self, producer_id: i64, session: ConnectionId, ctx: &mut Context<Self>) {
        let Some(state) = self.producers.get_mut(&producer_id) else {
            return;
        };
        if !state.subscribed {
            // The subscription's completion starts the read.
            return;
        }
        let Some(replay) = state
            .sessions
            .get_mut(&session)
            .and_then(|attached| attached.replay.as_mut())
        else {
            return;
        };
        if replay.reading {
            // One read at a time: its page continues the resume.
            return;
        }
        replay.reading = true;
        let (generation, after) = (replay.generation, replay.after_seq);
        let history = self.history.clone();
        let policy = self.policies.policy(producer_id);
        async move {
            history
                .read(producer_id, after, MAX_PAGE, policy, now_millis())
                .await
        }
        .into_actor(self)
        .map(move |page, fanout, ctx| {
            fanout.on_page(producer_id, session, generation, after, page, ctx);
        })
        .spawn(ctx);
    }

    fn replay_of(
        &mut self,
        producer_id: i64,
        session: ConnectionId,
        generation: u64,
    ) -> Option<&mut Attached> {
        self.producers
            .get_mut(&producer_id)?
            .sessions
            .get_mut(&session)
            .filter(|attached| {
                attached
                    .replay
                    .as_ref()
                    .is_some_and(|replay| replay.generation == generation)
            })
    }

    fn on_page(
        &mut self,
        producer_id: i64,
        session: ConnectionId,
        generation: u64,
        read_after: u64,
        page: Result<HistoryPage, BusError>,
        ctx: &mut Context<Self>,
    ) {
        if let (Ok(page), Some(state)) = (&page, self.producers.get_mut(&producer_id)) {
            state.note_epoch(&page.epoch);
        }
        let Some(attached) = self.replay_of(producer_id, session, generation) else {
            return;
        };
        let page = match page {
            Ok(page) => page,
            Err(error) => {
                // Not reading any more: a resubscription may restart it before the retry does.
                if let Some(replay) = attached.replay.as_mut() {
                    replay.reading = false;
                }
                tracing::warn!(producer_id, %error, "cannot read a producer's history; retrying");
                ctx.run_later(HISTORY_RETRY, move |fanout, ctx| {
                    if fanout.replay_of(producer_id, session, generation).is_some() {
                        fanout.read_page(producer_id, session, ctx);
                    }
                });
                return;
            }
        };
        let encoding = attached.sink.encoding.get();
        let Some(replay) = attached.replay.as_mut() else {
            return;
        };
        if replay.first_page {
            let asked_epoch = replay.from.epoch.clone();
            let new_epoch = asked_epoch
                .as_deref()
                .is_some_and(|epoch| !page.epoch.is_empty() && epoch != page.epoch);
            if new_epoch && read_after != 0 {
                // The numbering restarted: everything the new epoch still holds is missed.
                replay.after_seq = 0;
                replay.reading = false;
                return self.read_page(producer_id, session, ctx);
            }
            replay.first_page = false;
            let gap = page.gap(replay.from.since_seq, asked_epoch.as_deref());
            if let Some(first) = page.first_seq {
                STREAM
                    .history_length
                    .record(page.last_seq.saturating_sub(first).saturating_add(1) as f64);
            }
            match (gap, new_epoch) {
                (_, true) => STREAM.resumes_epoch_changed.increment(1),
                (Some(_), false) => STREAM.resumes_with_gap.increment(1),
                (None, false) => STREAM.resumes_complete.increment(1),
            }
            if let Some((from_seq, to_seq)) = gap {
                let frame = ServerFrame::Gap {
                    producer_id,
                    from_seq,
                    to_seq,
                    epoch: page.epoch.clone(),
                };
                attached.push(outgoing(&frame, encoding));
            }
        }
        if let Some(replay) = attached.replay.as_mut() {
            replay.reading = false;
            replay.more = page.more;
            replay.backlog.extend(page.entries);
        }
        self.send_backlog(producer_id, session, generation, ctx);
    }

    /// Sends what a resume has read, as far as the session's outbox has room; then reads on,
    /// or goes live.
    fn send_backlog(
        &mut self,
        producer_id: i64,
        session: ConnectionId,
        generation: u64,
        ctx: &mut Context<Self>,
    ) {
        let serial = self
            .producers
            .get(&producer_id)
            .map_or(0, |state| state.epoch_serial);
        let Some(attached) = self.replay_of(producer_id, session, generation) else {
            return;
        };
        let encoding = attached.sink.encoding.get();
        let capacity = attached.sink.outbox.capacity();
        let mut sent = 0u64;
        loop {
            let Some(replay) = attached.replay.as_mut() else {
                return;
            };
            let Some(entry) = replay.backlog.front() else {
                break;
            };
            let room = attached.sink.outbox.room();
            if !Replay::fits(room, capacity, entry.frame.len() as u64) {
                STREAM.history_replayed.increment(sent);
                ctx.run_later(ROOM_POLL, move |fanout, ctx| {
                    fanout.send_backlog(producer_id, session, generation, ctx);
                });
                return;
            }
            let Some(entry) = replay.backlog.pop_front() else {
                break;
            };
            replay.after_seq = entry.seq;
            attached.last_seq = Some(entry.seq);
            attached.last_serial = serial;
            let item = StreamItem::new(producer_id, ByteString::from(entry.frame));
            attached.push(item.outgoing(encoding));
            sent += 1;
            if attached.closing {
                return;
            }
        }
        STREAM.history_replayed.increment(sent);
        let Some(replay) = attached.replay.as_mut() else {
            return;
        };
        if replay.more || std::mem::take(&mut replay.reread) {
            return self.read_page(producer_id, session, ctx);
        }
        // History is sent: the held live messages follow, and the session is live again.
        if let Some(replay) = attached.replay.take() {
            let mut last = replay.after_seq;
            for (seq, frame) in replay.release() {
                last = last.max(seq);
                attached.push(Some(frame));
            }
            attached.skip_through = Some(last);
            attached.last_seq = Some(last);
            attached.last_serial = serial;
        }
    }

    /// Subscribes a producer's channel and publishes a probe on it; the channel is live when
    /// the probe comes back ([`StreamFanout::channel_live`]). fred answers SUBSCRIBE before
    /// Redis has it, so only the probe proves that every message published from then on
    /// arrives — which a resume needs before it reads history.
    fn subscribe_channel(&mut self, producer_id: i64, ctx: &mut Context<Self>) {
        let Some(state) = self.producers.get_mut(&producer_id) else {
            return;
        };
        let token = new_probe_token();
        state.probe = Some(token);
        let bus = self.bus.clone();
        async move { bus.subscribe_and_probe_producer(producer_id, token).await }
        .into_actor(self)
        .map(move |outcome, fanout, ctx| {
            // The answer of the latest subscription (a later one still waiting answers later).
            if let (Ok(seq), Some(state)) = (&outcome, fanout.producers.get_mut(&producer_id))
                && (state.probe == Some(token) || state.probe.is_none())
            {
                state.live_from = Some(*seq);
            }
            let waiting = move |fanout: &StreamFanout| {
                fanout
                    .producers
                    .get(&producer_id)
                    .is_some_and(|state| state.probe == Some(token))
            };
            // Gone, confirmed already, or overtaken by a later subscription.
            if !waiting(fanout) {
                return;
            }
            let retry = match outcome {
                Ok(_) => PROBE_RETRY,
                Err(error) => {
                    tracing::warn!(producer_id, %error, "producer channel subscription failed; retrying");
                    SUBSCRIBE_RETRY
                }
            };
            if fanout.shutting_down {
                return;
            }
            ctx.run_later(retry, move |fanout, ctx| {
                if waiting(fanout) {
                    STREAM.subscription_probes_repeated.increment(1);
                    fanout.subscribe_channel(producer_id, ctx);
                }
            });
        })
        .spawn(ctx);
    }

    /// A producer channel's probe came back: the channel is live. Sessions owed a `subscribed`
    /// frame get it, and resumes waiting for the channel read history.
    fn channel_live(&mut self, producer_id: i64, ctx: &mut Context<Self>) {
        let Some(state) = self.producers.get_mut(&producer_id) else {
            return;
        };
        state.probe = None;
        state.subscribed = true;
        let frame = ServerFrame::Subscribed { producer_id };
        let mut resuming = Vec::new();
        for (session, attached) in &mut state.sessions {
            if std::mem::take(&mut attached.announce_when_live) {
                attached.announce(&frame);
            }
            // A resume waiting to read: a first one, or one whose next read found the channel
            // unsubscribed (a reconnect). One that is still sending what it read goes on by
            // itself.
            if attached
                .replay
                .as_ref()
                .is_some_and(|replay| !replay.reading && replay.backlog.is_empty())
            {
                resuming.push(*session);
            }
        }
        for session in resuming {
            self.read_page(producer_id, session, ctx);
        }
    }

    fn unsubscribe_channel(&mut self, producer_id: i64, ctx: &mut Context<Self>) {
        let bus = self.bus.clone();
        let channel = self.bus.keys().producer_channel(producer_id);
        ctx.spawn(
            async move {
                if let Err(error) = bus.unsubscribe(Lane::Data, &channel).await {
                    tracing::debug!(%error, channel, "producer channel unsubscribe failed");
                }
            }
            .into_actor(self),
        );
    }

    fn detach(&mut self, producer_id: i64, session: ConnectionId, announce: bool) -> bool {
        let Some(state) = self.producers.get_mut(&producer_id) else {
            return false;
        };
        if let Some(mut attached) = state.sessions.remove(&session)
            && announce
        {
            attached.announce(&ServerFrame::Unsubscribed { producer_id });
        }
        if state.sessions.is_empty() {
            self.producers.remove(&producer_id);
            return true;
        }
        false
    }

    fn dispatch(&mut self, producer_id: i64, message: &RedisMessage) {
        let Some(state) = self.producers.get_mut(&producer_id) else {
            return;
        };
        let Some(text) = message.value.as_bytes_str() else {
            STREAM.undecodable.increment(1);
            return;
        };
        let Ok(json) = ByteString::try_from(text.into_inner()) else {
            STREAM.undecodable.increment(1);
            return;
        };
        let item = StreamItem::new(producer_id, json);
        let seq = item.seq();
        if let Some(epoch) = frame_epoch(&item.json) {
            state.note_epoch(epoch);
        }
        if seq.is_some() {
            state.last_seq = seq;
        }
        STREAM.bus_messages.increment(1);
        if let Some(ts) = item.ts_millis() {
            let latency_ms = now_millis().saturating_sub(ts).max(0);
            STREAM.delivery_seconds.record(latency_ms as f64 / 1_000.0);
        }
        let serial = state.epoch_serial;
        let mut delivered = 0u64;
        for attached in state.sessions.values_mut() {
            if attached.closing {
                continue;
            }
            let frame = item.outgoing(attached.sink.encoding.get());
            if let Some(replay) = attached.replay.as_mut() {
                // Resuming: held until history is sent. A frame without a readable seq was
                // not written by the publisher; it is not held.
                if let (Some(seq), Some(frame)) = (seq, frame)
                    && replay.hold(seq, frame).is_err()
                {
                    attached.close_slow();
                }
                continue;
            }
            if let Some(through) = attached.skip_through {
                match seq {
                    Some(seq) if seq <= through => continue,
                    _ => attached.skip_through = None,
                }
            }
            attached.push(frame);
            if seq.is_some() {
                attached.last_seq = seq;
                attached.last_serial = serial;
            }
            delivered += 1;
        }
        STREAM.data_out.increment(delivered);
        TOTALS
            .delivered
            .fetch_add(delivered, std::sync::atomic::Ordering::Relaxed);
        STREAM
            .consumer
            .bytes_out
            .increment(delivered * item.json.len() as u64);
    }
}

impl Actor for StreamFanout {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.add_stream(BroadcastStream::new(self.bus.messages(Lane::Data)));
        let reconnects = BroadcastStream::new(self.bus.subscriber_reconnects(Lane::Data));
        ctx.add_stream(reconnects.map(|_| DataLaneReconnected));
    }
}

impl Supervised for StreamFanout {
    fn restarting(&mut self, _: &mut Context<Self>) {
        metrics::counter!(ACTOR_RESTARTS_TOTAL, "actor" => "stream_fanout").increment(1);
        tracing::warn!("StreamFanout restarting");
    }
}

impl StreamHandler<Result<RedisMessage, BroadcastStreamRecvError>> for StreamFanout {
    fn handle(
        &mut self,
        item: Result<RedisMessage, BroadcastStreamRecvError>,
        ctx: &mut Context<Self>,
    ) {
        match item {
            Ok(_) if self.shutting_down => {}
            Ok(message) => {
                let Some(producer_id) = self.bus.keys().producer_of_channel(&message.channel)
                else {
                    return;
                };
                match message.value.as_bytes().and_then(probe_token) {
                    // Every instance's probes reach every subscriber of the channel; only
                    // this one's own tells it something.
                    Some(token) => {
                        let mine = self
                            .producers
                            .get(&producer_id)
                            .is_some_and(|state| state.probe == Some(token));
                        if mine {
                            self.channel_live(producer_id, ctx);
                        }
                    }
                    None => self.dispatch(producer_id, &message),
                }
            }
            Err(BroadcastStreamRecvError::Lagged(missed)) => {
                metrics::counter!(BUS_MESSAGES_LAGGED_TOTAL).increment(missed);
                tracing::warn!(
                    missed,
                    "fan-out fell behind its Redis subscriber; sessions catch up from history"
                );
                self.catch_up_all(CatchUp::AfterLag, ctx);
            }
        }
    }

    // The stream ends only when the subscriber client is dropped; there is nothing to restart.
    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl Handler<Attach> for StreamFanout {
    type Result = ();

    fn handle(&mut self, message: Attach, ctx: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        let state = self.producers.entry(message.producer_id).or_default();
        let first = state.sessions.is_empty();
        let live = state.subscribed;
        let attached = state
            .sessions
            .entry(message.session)
            .or_insert_with(|| Attached {
                sink: message.sink,
                announce_when_live: false,
                closing: false,
                replay: None,
                skip_through: None,
                last_seq: None,
                last_serial: 0,
            });
        let resume_now = message.resume.is_some() && live;
        if let Some(from) = message.resume {
            let (limit, _) = attached.sink.outbox.capacity();
            attached.replay = Some(Replay::new(from, next_generation(), limit));
        }
        if message.announce {
            if live {
                attached.announce(&ServerFrame::Subscribed {
                    producer_id: message.producer_id,
                });
            } else {
                attached.announce_when_live = true;
            }
        }
        if first {
            self.subscribe_channel(message.producer_id, ctx);
        }
        if resume_now {
            self.read_page(message.producer_id, message.session, ctx);
        }
    }
}

/// The data lane's subscriber reconnected: what was published while the channels were not
/// subscribed (Redis restarting, commands queued during the outage and sent on reconnect) is
/// in the producers' history.
struct DataLaneReconnected;

impl StreamHandler<DataLaneReconnected> for StreamFanout {
    fn handle(&mut self, _: DataLaneReconnected, ctx: &mut Context<Self>) {
        metrics::counter!(REDIS_RECONNECTS_TOTAL, "lane" => "data").increment(1);
        tracing::info!("Redis data subscriber connected; sessions catch up from history");
        self.catch_up_all(CatchUp::AfterReconnect, ctx);
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

/// Why sessions catch up from history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CatchUp {
    /// The subscriber reconnected: channels are subscribed again, and read once live.
    AfterReconnect,
    /// The fan-out fell behind its subscriber and messages were dropped before it read them;
    /// the channels stayed subscribed.
    AfterLag,
}

impl StreamFanout {
    /// Every session resumes from its last message (one that has had none yet, from the last
    /// the channel saw), exactly as a reconnecting consumer would: history first, then live,
    /// nothing repeated.
    fn catch_up_all(&mut self, why: CatchUp, ctx: &mut Context<Self>) {
        if self.shutting_down {
            return;
        }
        let mut channels = Vec::with_capacity(self.producers.len());
        let mut reads = Vec::new();
        for (producer_id, state) in &mut self.producers {
            if why == CatchUp::AfterReconnect {
                state.subscribed = false;
            }
            // A resume in progress carries on once the channel is subscribed again; after a
            // lag it reads history once more before it goes live.
            if why == CatchUp::AfterLag {
                for attached in state.sessions.values_mut() {
                    if let Some(replay) = attached.replay.as_mut() {
                        replay.reread = true;
                    }
                }
            }
            let mut points = Vec::new();
            for (session, attached) in &state.sessions {
                if attached.closing || attached.replay.is_some() {
                    continue;
                }
                if let Some(from) = state.resume_point(attached) {
                    points.push((*session, from));
                }
            }
            for (session, from) in points {
                if let Some(attached) = state.sessions.get_mut(&session) {
                    let (limit, _) = attached.sink.outbox.capacity();
                    attached.replay = Some(Replay::new(from, next_generation(), limit));
                    attached.skip_through = None;
                    STREAM.catch_ups.increment(1);
                    reads.push((*producer_id, session));
                }
            }
            channels.push(*producer_id);
        }
        match why {
            // Subscribed again explicitly (the client also does it by itself): the history
            // read starts once the channel is known to be live, so nothing falls between.
            CatchUp::AfterReconnect => {
                for producer_id in channels {
                    self.subscribe_channel(producer_id, ctx);
                }
            }
            // Still live: the reads start now (a channel not live yet starts them itself).
            CatchUp::AfterLag => {
                for (producer_id, session) in reads {
                    self.read_page(producer_id, session, ctx);
                }
            }
        }
    }
}

impl Handler<Detach> for StreamFanout {
    type Result = ();

    fn handle(&mut self, message: Detach, ctx: &mut Context<Self>) {
        if self.detach(message.producer_id, message.session, message.announce) {
            self.unsubscribe_channel(message.producer_id, ctx);
        }
    }
}

impl Handler<DetachAll> for StreamFanout {
    type Result = ();

    fn handle(&mut self, message: DetachAll, ctx: &mut Context<Self>) {
        for producer_id in message.producers {
            if self.detach(producer_id, message.session, false) {
                self.unsubscribe_channel(producer_id, ctx);
            }
        }
    }
}

impl Handler<ShutdownFanout> for StreamFanout {
    type Result = ();

    fn handle(&mut self, _: ShutdownFanout, _: &mut Context<Self>) {
        self.shutting_down = true;
        self.producers.clear();
    }
}

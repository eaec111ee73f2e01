//! The RedisBridge actor: the dispatcher of the deployment's control channel.
//!
//! It subscribes to `<prefix>:control` on the instance's control-lane Redis subscriber
//! (retrying until Redis answers), decodes each message into a [`ControlEnvelope`], and
//! forwards it to every actor that registered with [`RegisterControlListener`]; it also tells
//! registered actors when that subscriber reconnected (they may have missed events). The
//! subscriber client re-subscribes by itself after a reconnect. Producer channels are on the
//! data lane's subscriber, the stream fan-out's (`stream::fanout`). The bridge runs under
//! `actix::Supervisor`, which restarts it, with its state, if it stops.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use nodegrid_protocol::control::ControlEnvelope;
use nodegrid_services::bus::{
    Lane, PROBE_RETRY, RedisBus, RedisMessage, new_probe_token, probe_token,
};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::metrics::{
    ACTOR_RESTARTS_TOTAL, BUS_MESSAGES_LAGGED_TOTAL, CONTROL_EVENTS_INVALID_TOTAL,
    CONTROL_EVENTS_TOTAL, REDIS_RECONNECTS_TOTAL,
};

/// How long to wait before trying a failed SUBSCRIBE again.
const SUBSCRIBE_RETRY: Duration = Duration::from_secs(1);

/// A control event, delivered to every registered listener.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct ControlMessage(pub Arc<ControlEnvelope>);

/// Adds a listener of the control channel.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RegisterControlListener(pub Recipient<ControlMessage>);

/// Adds a listener of subscriber reconnects: whatever it learned from the channel may have
/// missed events while the connection was down, so it should reload.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RegisterReconnectListener(pub Recipient<BusReconnected>);

/// Registers `listener` for both the control channel and the subscriber's reconnects: what an
/// actor keeping shared state current needs (it must reload after events it may have missed).
pub fn listen_to_control_and_reconnects<A>(bridge: &Addr<RedisBridge>, listener: Addr<A>)
where
    A: Actor<Context = Context<A>> + Handler<ControlMessage> + Handler<BusReconnected>,
{
    bridge.do_send(RegisterControlListener(listener.clone().recipient()));
    bridge.do_send(RegisterReconnectListener(listener.recipient()));
}

/// The subscriber connection (re)connected and its subscriptions are restored.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct BusReconnected;

/// Asks whether the control channel subscription is in place.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct IsControlSubscribed;

/// The first step of shutdown: unsubscribe and stop dispatching.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ShutdownBridge;

pub struct RedisBridge {
    bus: RedisBus,
    control_channel: String,
    listeners: Vec<Recipient<ControlMessage>>,
    reconnect_listeners: Vec<Recipient<BusReconnected>>,
    /// Known to be live: this instance's probe came back on the channel.
    control_subscribed: bool,
    /// The probe awaited on the control channel, from the SUBSCRIBE until it comes back.
    probe: Option<u64>,
    shutting_down: bool,
}

impl RedisBridge {
    pub fn new(bus: RedisBus) -> RedisBridge {
        let control_channel = bus.keys().control_channel();
        RedisBridge {
            bus,
            control_channel,
            listeners: Vec::new(),
            reconnect_listeners: Vec::new(),
            control_subscribed: false,
            probe: None,
            shutting_down: false,
        }
    }

    /// Starts the bridge under a Supervisor on the current arbiter.
    pub fn start_supervised(bus: RedisBus) -> Addr<RedisBridge> {
        Supervisor::start(move |_| RedisBridge::new(bus))
    }

    /// Subscribes the control channel and publishes a probe on it: the subscription counts
    /// (for `/ready` too) once the probe comes back, since fred answers SUBSCRIBE before
    /// Redis has it.
    fn subscribe_control(&mut self, ctx: &mut Context<Self>) {
        let token = new_probe_token();
        self.probe = Some(token);
        let bus = self.bus.clone();
        let channel = self.control_channel.clone();
        async move { bus.subscribe_and_probe(Lane::Control, &channel, token).await }
        .into_actor(self)
        .map(move |outcome, bridge, ctx| {
            if bridge.probe != Some(token) || bridge.shutting_down {
                return;
            }
            let retry = match outcome {
                Ok(()) => PROBE_RETRY,
                Err(error) => {
                    tracing::warn!(channel = %bridge.control_channel, %error, "control subscription failed; retrying");
                    SUBSCRIBE_RETRY
                }
            };
            ctx.run_later(retry, move |bridge, ctx| {
                if bridge.probe == Some(token) && !bridge.shutting_down {
                    bridge.subscribe_control(ctx);
                }
            });
        })
        .spawn(ctx);
    }

    /// A probe on the control channel: this instance's own one means the subscription is live;
    /// the other instances' are skipped.
    fn on_probe(&mut self, token: u64) {
        if self.probe == Some(token) {
            self.probe = None;
            self.control_subscribed = true;
            tracing::info!(channel = %self.control_channel, "subscribed to control channel");
        }
    }

    fn dispatch_control(&mut self, message: &RedisMessage) {
        let Some(text) = message.value.as_str() else {
            metrics::counter!(CONTROL_EVENTS_INVALID_TOTAL).increment(1);
            tracing::warn!("control message is not text");
            return;
        };
        let envelope: ControlEnvelope = match serde_json::from_str(&text) {
            Ok(envelope) => envelope,
            Err(error) => {
                metrics::counter!(CONTROL_EVENTS_INVALID_TOTAL).increment(1);
                tracing::warn!(%error, "control message cannot be decoded");
                return;
            }
        };
        metrics::counter!(CONTROL_EVENTS_TOTAL, "kind" => envelope.event.kind()).increment(1);
        let message = ControlMessage(Arc::new(envelope));
        self.listeners.retain(|listener| listener.connected());
        for listener in &self.listeners {
            listener.do_send(message.clone());
        }
    }
}

impl Actor for RedisBridge {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.add_stream(BroadcastStream::new(self.bus.messages(Lane::Control)));
        let reconnects = BroadcastStream::new(self.bus.subscriber_reconnects(Lane::Control));
        ctx.add_stream(reconnects.map(|_| SubscriberReconnected));
        if !self.control_subscribed {
            self.subscribe_control(ctx);
        }
    }
}

impl Supervised for RedisBridge {
    fn restarting(&mut self, _: &mut Context<Self>) {
        metrics::counter!(ACTOR_RESTARTS_TOTAL, "actor" => "redis_bridge").increment(1);
        tracing::warn!("RedisBridge restarting");
    }
}

impl StreamHandler<Result<RedisMessage, BroadcastStreamRecvError>> for RedisBridge {
    fn handle(
        &mut self,
        item: Result<RedisMessage, BroadcastStreamRecvError>,
        _: &mut Context<Self>,
    ) {
        match item {
            Ok(message) if self.shutting_down => drop(message),
            Ok(message) if message.channel == self.control_channel.as_str() => {
                match message.value.as_bytes().and_then(probe_token) {
                    Some(token) => self.on_probe(token),
                    None => self.dispatch_control(&message),
                }
            }
            // The control lane carries nothing else the bridge reads (the registry's wake-ups).
            Ok(_) => {}
            Err(BroadcastStreamRecvError::Lagged(missed)) => {
                metrics::counter!(BUS_MESSAGES_LAGGED_TOTAL).increment(missed);
                tracing::warn!(missed, "bridge fell behind its Redis subscriber");
            }
        }
    }

    // The stream ends only when the subscriber client is dropped; there is nothing to restart.
    fn finished(&mut self, _: &mut Context<Self>) {}
}

struct SubscriberReconnected;

impl StreamHandler<SubscriberReconnected> for RedisBridge {
    fn handle(&mut self, _: SubscriberReconnected, _: &mut Context<Self>) {
        metrics::counter!(REDIS_RECONNECTS_TOTAL, "lane" => "control").increment(1);
        tracing::info!("Redis subscriber connected; subscriptions restored");
        self.reconnect_listeners
            .retain(|listener| listener.connected());
        for listener in &self.reconnect_listeners {
            listener.do_send(BusReconnected);
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl Handler<RegisterControlListener> for RedisBridge {
    type Result = ();

    fn handle(&mut self, message: RegisterControlListener, _: &mut Context<Self>) {
        self.listeners.push(message.0);
    }
}

impl Handler<RegisterReconnectListener> for RedisBridge {
    type Result = ();

    fn handle(&mut self, message: RegisterReconnectListener, _: &mut Context<Self>) {
        self.reconnect_listeners.push(message.0);
    }
}

impl Handler<IsControlSubscribed> for RedisBridge {
    type Result = bool;

    fn handle(&mut self, _: IsControlSubscribed, _: &mut Context<Self>) -> bool {
        self.control_subscribed
    }
}

impl Handler<ShutdownBridge> for RedisBridge {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: ShutdownBridge, _: &mut Context<Self>) -> Self::Result {
        self.shutting_down = true;
        self.listeners.clear();
        self.reconnect_listeners.clear();
        let bus = self.bus.clone();
        let channel = self.control_channel.clone();
        Box::pin(
            async move {
                if let Err(error) = bus.unsubscribe(Lane::Control, &channel).await {
                    tracing::debug!(%error, "unsubscribe at shutdown failed");
                }
            }
            .into_actor(self)
            .map(|_, bridge, _| bridge.control_subscribed = false),
        )
    }
}

//! The AccessWatcher actor keeps this instance's access gate current: it applies block and
//! unblock events from the control channel, and reloads the gate from Postgres after a Redis
//! reconnect (events may have been missed) and every minute (belt and braces).

use std::time::Duration;

use actix::prelude::*;
use nodegrid_services::identity::Identity;

use crate::bridge::{
    BusReconnected, ControlMessage, RedisBridge, RegisterControlListener, RegisterReconnectListener,
};

/// How often the gate is reloaded even when no event says so.
const PERIODIC_RELOAD: Duration = Duration::from_secs(60);

pub struct AccessWatcher {
    identity: Identity,
    bridge: Addr<RedisBridge>,
}

impl AccessWatcher {
    pub fn start_supervised(identity: Identity, bridge: Addr<RedisBridge>) -> Addr<AccessWatcher> {
        Supervisor::start(move |_| AccessWatcher { identity, bridge })
    }

    fn reload(&self, ctx: &mut Context<Self>) {
        let identity = self.identity.clone();
        ctx.spawn(
            async move {
                match identity.reload_access().await {
                    Ok(count) => tracing::debug!(count, "access gate reloaded"),
                    Err(error) => tracing::warn!(%error, "access gate reload failed"),
                }
            }
            .into_actor(self),
        );
    }
}

impl Actor for AccessWatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let own = ctx.address();
        self.bridge
            .do_send(RegisterControlListener(own.clone().recipient()));
        self.bridge
            .do_send(RegisterReconnectListener(own.recipient()));
        ctx.run_interval(PERIODIC_RELOAD, |watcher, ctx| watcher.reload(ctx));
    }
}

impl Supervised for AccessWatcher {
    fn restarting(&mut self, _: &mut Context<Self>) {
        metrics::counter!(crate::telemetry::ACTOR_RESTARTS_TOTAL, "actor" => "access_watcher")
            .increment(1);
    }
}

impl Handler<ControlMessage> for AccessWatcher {
    type Result = ();

    fn handle(&mut self, message: ControlMessage, _: &mut Context<Self>) {
        self.identity.apply_control(&message.0.event);
    }
}

impl Handler<BusReconnected> for AccessWatcher {
    type Result = ();

    fn handle(&mut self, _: BusReconnected, ctx: &mut Context<Self>) {
        self.reload(ctx);
    }
}

//! The StateWatcher actor keeps this instance's shared in-memory state current (the access
//! gate, the subscription index: every [`SharedState`]): it applies the control events from
//! every instance, and reloads the state from Postgres after a Redis reconnect (events may have
//! been missed) and every minute (belt and braces).

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use nodegrid_services::shared_state::SharedState;

use crate::bridge::{
    BusReconnected, ControlMessage, RedisBridge, listen_to_control_and_reconnects,
};

/// How often the state is reloaded even when no event says so.
const PERIODIC_RELOAD: Duration = Duration::from_secs(60);

pub struct StateWatcher {
    states: Vec<Arc<dyn SharedState>>,
    bridge: Addr<RedisBridge>,
}

impl StateWatcher {
    pub fn start_supervised(
        states: Vec<Arc<dyn SharedState>>,
        bridge: Addr<RedisBridge>,
    ) -> Addr<StateWatcher> {
        Supervisor::start(move |_| StateWatcher { states, bridge })
    }

    fn reload(&self, ctx: &mut Context<Self>) {
        for state in &self.states {
            let (name, reload) = (state.name(), state.reload());
            ctx.spawn(
                async move {
                    match reload.await {
                        Ok(count) => tracing::debug!(state = name, count, "reloaded"),
                        Err(error) => tracing::warn!(state = name, %error, "reload failed"),
                    }
                }
                .into_actor(self),
            );
        }
    }
}

impl Actor for StateWatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        listen_to_control_and_reconnects(&self.bridge, ctx.address());
        ctx.run_interval(PERIODIC_RELOAD, |watcher, ctx| watcher.reload(ctx));
    }
}

impl Supervised for StateWatcher {
    fn restarting(&mut self, _: &mut Context<Self>) {
        metrics::counter!(crate::metrics::ACTOR_RESTARTS_TOTAL, "actor" => "state_watcher")
            .increment(1);
    }
}

impl Handler<ControlMessage> for StateWatcher {
    type Result = ();

    fn handle(&mut self, message: ControlMessage, _: &mut Context<Self>) {
        for state in &self.states {
            state.apply(&message.0.event);
        }
    }
}

impl Handler<BusReconnected> for StateWatcher {
    type Result = ();

    fn handle(&mut self, _: BusReconnected, ctx: &mut Context<Self>) {
        self.reload(ctx);
    }
}

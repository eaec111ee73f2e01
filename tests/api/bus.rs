//! The control channel: one instance publishes, every instance's RedisBridge hears it, also
//! after the subscriber connection was cut.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use fred::prelude::{ClientInterface, ClientLike as _};
use fred::types::client::ClientKillFilter;
use nodegrid_actors::bridge::{ControlMessage, IsControlSubscribed, RegisterControlListener};
use nodegrid_protocol::control::{ControlEnvelope, ControlEvent};
use nodegrid_services::bus::Lane;
use tokio::sync::mpsc;

use crate::helpers::{TestApp, eventually, fresh_database, spawn_app_with, test_settings};

/// An actor that forwards every control event it gets into a channel the test reads.
struct Forward(mpsc::UnboundedSender<Arc<ControlEnvelope>>);

impl Actor for Forward {
    type Context = Context<Self>;
}

impl Handler<ControlMessage> for Forward {
    type Result = ();

    fn handle(&mut self, message: ControlMessage, _: &mut Context<Self>) {
        let _ = self.0.send(message.0);
    }
}

async fn listen(app: &TestApp) -> mpsc::UnboundedReceiver<Arc<ControlEnvelope>> {
    let (tx, rx) = mpsc::unbounded_channel();
    let forward = Forward(tx).start();
    app.bridge
        .send(RegisterControlListener(forward.recipient()))
        .await
        .unwrap();
    let bridge = app.bridge.clone();
    eventually("control subscription", Duration::from_secs(10), || {
        let bridge = bridge.clone();
        async move {
            bridge
                .send(IsControlSubscribed)
                .await
                .unwrap()
                .then_some(())
        }
    })
    .await;
    rx
}

fn ping(origin: uuid::Uuid, nonce: &str) -> ControlEnvelope {
    ControlEnvelope {
        origin,
        event: ControlEvent::Ping {
            nonce: nonce.to_owned(),
        },
    }
}

async fn next_ping(rx: &mut mpsc::UnboundedReceiver<Arc<ControlEnvelope>>, nonce: &str) {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let envelope = rx.recv().await.expect("listener alive");
            if envelope.event
                == (ControlEvent::Ping {
                    nonce: nonce.to_owned(),
                })
            {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("ping {nonce} not delivered within 5 s"));
}

#[actix_web::test]
async fn a_control_event_published_on_one_instance_reaches_both() {
    let database = Arc::new(fresh_database().await);
    let first = test_settings(&database.url);
    let mut second = test_settings(&database.url);
    second.redis_prefix = first.redis_prefix.clone();
    let a = spawn_app_with(database.clone(), first).await;
    let b = spawn_app_with(database.clone(), second).await;
    let mut heard_on_a = listen(&a).await;
    let mut heard_on_b = listen(&b).await;

    let receivers = a
        .bus
        .publish_control(&ping(uuid::Uuid::new_v4(), "from-a"))
        .await
        .unwrap();
    // A cluster node counts only its own subscribers; both pings heard below say the rest.
    if !a.bus.publisher().is_clustered() {
        assert_eq!(receivers, 2, "both instances' subscribers got the message");
    }
    next_ping(&mut heard_on_a, "from-a").await;
    next_ping(&mut heard_on_b, "from-a").await;

    a.shut_down().await.unwrap();
    b.shut_down().await.unwrap();
}

#[actix_web::test]
async fn deployments_with_other_prefixes_do_not_hear_each_other() {
    let database = Arc::new(fresh_database().await);
    let a = spawn_app_with(database.clone(), test_settings(&database.url)).await;
    let b = spawn_app_with(database.clone(), test_settings(&database.url)).await;
    let mut heard_on_b = listen(&b).await;
    let _heard_on_a = listen(&a).await;

    let receivers = a
        .bus
        .publish_control(&ping(uuid::Uuid::new_v4(), "private"))
        .await
        .unwrap();
    if !a.bus.publisher().is_clustered() {
        assert_eq!(
            receivers, 1,
            "only a's own subscriber listens on a's channel"
        );
    }
    // b's own event arrives; a's, published first, never does.
    b.bus
        .publish_control(&ping(uuid::Uuid::new_v4(), "b-own"))
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), heard_on_b.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        first.event,
        ControlEvent::Ping {
            nonce: "b-own".into()
        }
    );

    a.shut_down().await.unwrap();
    b.shut_down().await.unwrap();
}

#[actix_web::test]
async fn the_bridge_resubscribes_after_its_connection_is_killed() {
    let database = Arc::new(fresh_database().await);
    let app = spawn_app_with(database.clone(), test_settings(&database.url)).await;
    let mut heard = listen(&app).await;

    let old_ids: Vec<i64> = app
        .bus
        .subscriber(Lane::Control)
        .connection_ids()
        .into_values()
        .collect();
    assert_eq!(old_ids.len(), 1);
    let killed: i64 = app
        .bus
        .publisher()
        .client_kill(vec![ClientKillFilter::ID(old_ids[0].to_string())])
        .await
        .unwrap();
    assert_eq!(killed, 1);

    // Publish until the re-subscribed connection hears it: each try is one PUBLISH whose
    // receiver count says whether anyone listened.
    let bus = app.bus.clone();
    eventually("re-subscription", Duration::from_secs(15), || {
        let bus = bus.clone();
        async move {
            let receivers = bus
                .publish_control(&ping(uuid::Uuid::new_v4(), "after-kill"))
                .await
                .ok()?;
            (receivers == 1).then_some(())
        }
    })
    .await;
    next_ping(&mut heard, "after-kill").await;
    let new_ids: Vec<i64> = app
        .bus
        .subscriber(Lane::Control)
        .connection_ids()
        .into_values()
        .collect();
    assert_ne!(
        new_ids, old_ids,
        "a new connection carries the subscription"
    );

    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn undecodable_control_messages_are_counted_and_skipped() {
    use fred::prelude::PubsubInterface;
    let database = Arc::new(fresh_database().await);
    let app = spawn_app_with(database.clone(), test_settings(&database.url)).await;
    let mut heard = listen(&app).await;
    let channel = app.bus.keys().control_channel();

    let _: u64 = app
        .bus
        .publisher()
        .publish(channel.as_str(), "{not json")
        .await
        .unwrap();
    app.bus
        .publish_control(&ping(uuid::Uuid::new_v4(), "still-alive"))
        .await
        .unwrap();
    next_ping(&mut heard, "still-alive").await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("nodegrid_control_events_invalid_total"),
        "{metrics}"
    );
    app.shut_down().await.unwrap();
}

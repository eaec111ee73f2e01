//! The leader lease against real Redis.

use std::time::Duration;

use nodegrid_services::bus::RedisBus;
use nodegrid_services::lease::{LeaderLease, Leadership, LeaseKeeper};

use crate::helpers::{eventually, redis_url, unique_prefix};

/// A bus that is connected (a cluster's client knows its slots only then).
async fn bus(prefix: &str) -> RedisBus {
    let bus = RedisBus::start(&redis_url(), prefix).unwrap();
    assert!(
        bus.wait_connected(Duration::from_secs(10)).await,
        "Redis answers"
    );
    bus
}

#[tokio::test]
async fn only_one_holder_gets_the_lease_and_only_it_can_renew_or_release() {
    let prefix = unique_prefix();
    let bus = bus(&prefix).await;
    let ttl = Duration::from_secs(5);
    let a = LeaderLease::new(&bus, "work", "instance-a", ttl);
    let b = LeaderLease::new(&bus, "work", "instance-b", ttl);

    let token = a
        .try_acquire()
        .await
        .unwrap()
        .expect("a gets the free lease");
    assert_eq!(
        b.try_acquire().await.unwrap(),
        None,
        "b must not get a held lease"
    );
    assert_eq!(
        a.try_acquire().await.unwrap(),
        Some(token),
        "a holds it still, same token"
    );
    assert!(a.renew().await.unwrap());
    assert!(!b.renew().await.unwrap(), "b cannot renew a's lease");
    assert!(!b.release().await.unwrap(), "b cannot release a's lease");

    assert!(a.release().await.unwrap());
    let next = b
        .try_acquire()
        .await
        .unwrap()
        .expect("b gets the released lease");
    assert!(next > token, "fencing tokens increase: {next} > {token}");
    bus.quit().await;
}

#[tokio::test]
async fn leadership_moves_when_the_holder_dies() {
    let prefix = unique_prefix();
    let bus_a = bus(&prefix).await;
    let bus_b = bus(&prefix).await;
    let ttl = Duration::from_millis(900);
    let keeper_a = LeaseKeeper::start(LeaderLease::new(&bus_a, "sweeper", "a", ttl));
    let mut watch_a = keeper_a.watch();
    tokio::time::timeout(
        Duration::from_secs(10),
        watch_a.wait_for(Leadership::is_leader),
    )
    .await
    .expect("a leads in time")
    .unwrap();
    let Leadership::Leader {
        fencing_token: first,
    } = keeper_a.current()
    else {
        unreachable!()
    };

    let keeper_b = LeaseKeeper::start(LeaderLease::new(&bus_b, "sweeper", "b", ttl));
    // While a renews, b stays a follower through several of its own attempts.
    let mut watch_b = keeper_b.watch();
    let stayed_follower = tokio::time::timeout(ttl * 3, watch_b.wait_for(Leadership::is_leader))
        .await
        .is_err();
    assert!(stayed_follower, "b must not lead while a renews");
    assert!(keeper_a.current().is_leader());

    // a dies without releasing: b takes over once the lease expires.
    drop(keeper_a);
    tokio::time::timeout(ttl * 4, watch_b.wait_for(Leadership::is_leader))
        .await
        .expect("b leads within a few lease periods")
        .unwrap();
    let Leadership::Leader {
        fencing_token: second,
    } = keeper_b.current()
    else {
        unreachable!()
    };
    assert!(second > first, "fencing tokens increase across holders");

    keeper_b.step_down().await;
    bus_a.quit().await;
    bus_b.quit().await;
}

#[tokio::test]
async fn stepping_down_hands_the_lease_over_at_once() {
    let prefix = unique_prefix();
    let bus = bus(&prefix).await;
    // A long lease: only an explicit release can explain a quick hand-over.
    let ttl = Duration::from_secs(30);
    let keeper_a = LeaseKeeper::start(LeaderLease::new(&bus, "poller", "a", ttl));
    let mut watch_a = keeper_a.watch();
    tokio::time::timeout(
        Duration::from_secs(10),
        watch_a.wait_for(Leadership::is_leader),
    )
    .await
    .unwrap()
    .unwrap();
    keeper_a.step_down().await;

    let b = LeaderLease::new(&bus, "poller", "b", ttl);
    let token = eventually("b acquires", Duration::from_secs(5), || {
        let b = b.clone();
        async move { b.try_acquire().await.ok().flatten() }
    })
    .await;
    assert!(token >= 2);
    bus.quit().await;
}

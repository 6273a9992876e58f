//! A service's follower against a real nats-server: when its subscription breaks it
//! reopens where it stopped, even while the service keeps dropping its `next` call for
//! other work (a `select!` with a fast timer), as the dispatcher does with heartbeats.

use std::time::Duration;

use fleet_control::follow::Follower;
use fleet_events::ids::AgentId;
use fleet_events::store::{Append, Expect};
use fleet_events::subject;
use tokio_util::sync::CancellationToken;

use crate::support::{agent_event, delete_event_consumers, fleet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_reopens_a_broken_subscription_though_its_next_calls_are_dropped() {
    // Silence with events waiting counts as a broken subscription after 300 ms.
    let f = fleet().await;
    let store = f.store.clone().with_stall_after(Duration::from_millis(300));
    let agent = AgentId::generate();
    let append = |n: usize| {
        let store = store.clone();
        async move {
            let event = agent_event(agent, n);
            let id = event.id.to_string();
            store
                .append(Append {
                    envelope: &event,
                    msg_id: &id,
                    expect: Expect::Any,
                })
                .await
                .expect("appended")
                .seq
        }
    };
    append(1).await;
    let shutdown = CancellationToken::new();
    let mut log = Follower::open(store.clone(), subject::all_events(), "test")
        .await
        .expect("open");
    assert_eq!(log.next(&shutdown).await.map(|s| s.seq), Some(1));

    // The subscription's consumer disappears and a new event is appended.
    delete_event_consumers(&f.store).await;
    let second = append(2).await;

    // Every 50 ms the caller gives up on `next` and comes back, as a busy service does.
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let got = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the follower never delivered the event after its subscription broke"
        );
        tokio::select! {
            stored = log.next(&shutdown) => break stored,
            _ = tick.tick() => {}
        }
    };
    assert_eq!(got.map(|s| s.seq), Some(second));
}

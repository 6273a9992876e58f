//! Leases against a real nats-server: of several instances under one lease exactly one
//! works at a time; a holder that shuts down hands over at once, and the lease of a
//! holder that dies (no release) lapses so a standby takes over.

use std::convert::Infallible;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use fleet_events::streams::LEASE_TTL;
use fleet_services::lease::{RENEW_EVERY, run_under_lease};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::{eventually, fleet};

/// Who has worked, in order, and how many work at once.
#[derive(Default)]
struct Seen {
    active: AtomicUsize,
    most_active: AtomicUsize,
    turns: Mutex<Vec<&'static str>>,
}

fn instance(
    store: &fleet_events::store::EventStore,
    name: &'static str,
    seen: &Arc<Seen>,
    shutdown: &CancellationToken,
) -> JoinHandle<()> {
    let (store, seen, shutdown) = (store.clone(), seen.clone(), shutdown.clone());
    tokio::spawn(async move {
        let result = run_under_lease(&store, "test-lease", shutdown, |token| {
            let seen = seen.clone();
            async move {
                let now = seen.active.fetch_add(1, Ordering::SeqCst) + 1;
                seen.most_active.fetch_max(now, Ordering::SeqCst);
                seen.turns.lock().unwrap().push(name);
                token.cancelled().await;
                seen.active.fetch_sub(1, Ordering::SeqCst);
                Ok::<(), Infallible>(())
            }
        })
        .await;
        assert!(result.is_ok());
    })
}

async fn turns(seen: &Seen, n: usize) -> Vec<&'static str> {
    eventually(&format!("{n} turns"), LEASE_TTL * 3, || async {
        let turns = seen.turns.lock().unwrap().clone();
        if turns.len() >= n {
            ControlFlow::Break(turns)
        } else {
            ControlFlow::Continue(turns)
        }
    })
    .await
}

#[tokio::test]
async fn one_instance_works_at_a_time_and_a_standby_takes_over() {
    let fleet = fleet().await;
    let seen = Arc::new(Seen::default());
    let stops = [(); 3].map(|()| CancellationToken::new());
    let a = instance(&fleet.store, "a", &seen, &stops[0]);
    let first = turns(&seen, 1).await;
    let b = instance(&fleet.store, "b", &seen, &stops[1]);
    // Two renewals later, b still stands by.
    tokio::time::sleep(RENEW_EVERY * 2).await;
    assert_eq!(seen.turns.lock().unwrap().clone(), first, "b stood by");
    assert_eq!(first, ["a"]);

    // a shuts down and releases: b takes over without waiting for the lease to lapse.
    stops[0].cancel();
    a.await.unwrap();
    assert_eq!(turns(&seen, 2).await, ["a", "b"]);

    // b dies without releasing; c takes over once the lease lapses.
    let c = instance(&fleet.store, "c", &seen, &stops[2]);
    b.abort();
    let _ = b.await;
    seen.active.fetch_sub(1, Ordering::SeqCst);
    assert_eq!(turns(&seen, 3).await, ["a", "b", "c"]);
    assert_eq!(
        seen.most_active.load(Ordering::SeqCst),
        1,
        "never two at once"
    );
    stops[2].cancel();
    c.await.unwrap();
    assert_eq!(seen.active.load(Ordering::SeqCst), 0);
}

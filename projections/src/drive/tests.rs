//! The drivers without a server: how messages are cut into batches, where a catch-up
//! stops, and that a lone live event is applied without waiting for more.

use std::time::Duration;

use fleet_events::event::{Event, EventType};
use fleet_events::ids::TaskId;
use fleet_events::samples;
use futures::stream;

use super::*;
use crate::tasks::Tasks;
use crate::testing::{Log, open, tenant};

/// `n` tasks scheduled, one event each, at sequences 1 to `n`.
fn scheduled(n: usize) -> Vec<Stored> {
    let Event::Task { event, .. } = samples::event(EventType::TaskScheduled) else {
        unreachable!()
    };
    let mut log = Log::default();
    let acme = tenant("acme");
    for i in 0..n {
        let task = TaskId::generate();
        log.push(
            &acme,
            i as i64,
            Event::Task {
                task,
                event: event.clone(),
            },
        );
    }
    log.events
}

#[tokio::test]
async fn a_catch_up_applies_what_is_ready_in_batches_and_stops_at_its_bound() {
    let (_dir, model) = open(Tasks::default());
    let events = scheduled(MAX_BATCH + 100);
    let bound = MAX_BATCH as u64 + 50;
    let ready = stream::iter(events.into_iter().map(Ok)).boxed();
    let mut progress = Progress::default();
    let end = model
        .pump(ready, &CancellationToken::new(), Some(bound), &mut progress)
        .await
        .unwrap();
    assert!(matches!(end, End::Exhausted));
    assert_eq!(progress.applied, bound, "nothing past the bound");
    assert_eq!(model.checkpoint().unwrap(), bound);
}

#[tokio::test]
async fn a_transport_error_stops_the_pump_after_what_came_before_it() {
    let (_dir, model) = open(Tasks::default());
    let mut items: Vec<_> = scheduled(4).into_iter().map(Ok).collect();
    items[2] = Err(ReadError::Nats {
        what: "replay".into(),
        message: "gone".into(),
    });
    let mut progress = Progress::default();
    let result = model
        .pump(
            stream::iter(items).boxed(),
            &CancellationToken::new(),
            None,
            &mut progress,
        )
        .await;
    assert!(matches!(result, Err(ProjectionError::Read(_))));
    assert_eq!(model.checkpoint().unwrap(), 2);
}

/// Polls until the model's checkpoint reaches `seq`.
async fn wait_for(model: &Checkpointed<Tasks>, seq: u64) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while model.checkpoint().unwrap() < seq {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the checkpoint moves");
}

#[tokio::test]
async fn a_lone_live_event_is_applied_at_once_and_shutdown_stops_between_batches() {
    let (_dir, model) = open(Tasks::default());
    let events = scheduled(3);
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let shutdown = CancellationToken::new();
    let mut progress = Progress::default();
    let pump = model.pump(rx.boxed(), &shutdown, None, &mut progress);
    let feed = async {
        tx.unbounded_send(Ok(events[0].clone())).unwrap();
        wait_for(&model, 1).await;
        tx.unbounded_send(Ok(events[1].clone())).unwrap();
        tx.unbounded_send(Ok(events[2].clone())).unwrap();
        wait_for(&model, 3).await;
        shutdown.cancel();
    };
    let (end, ()) = tokio::join!(pump, feed);
    assert!(matches!(end.unwrap(), End::Cancelled));
    assert_eq!(progress.applied, 3);
}

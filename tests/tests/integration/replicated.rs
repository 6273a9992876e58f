//! The event store's append guarantees on a stream replicated 3 times over a real 3-node
//! cluster. The stream leader checks an expected sequence above 0 before the msg id (on
//! every server version), so this is where a retried conditional append would come back
//! as a conflict if the store did not look for its msg id.

use std::ops::ControlFlow;
use std::time::Duration;

use fleet_events::ids::AgentId;
use fleet_events::store::{Append, AppendError, EventStore, Expect};
use fleet_tests::NatsCluster;

use crate::support::{agent_event, ensure_replicated, eventually};

#[tokio::test]
async fn a_retried_conditional_append_is_a_duplicate_on_a_replicated_stream() {
    let cluster = NatsCluster::start(3).expect("a 3-node cluster");
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(cluster.urls())
        .await
        .expect("connect to the cluster");
    let store = EventStore::new(client);
    ensure_replicated(&store).await;

    let agent = AgentId::generate();
    let (first, second) = (agent_event(agent, 1), agent_event(agent, 2));
    let append = |envelope, msg_id, expect| Append {
        envelope,
        msg_id,
        expect,
    };
    let a = eventually("the first append", Duration::from_secs(30), || async {
        match store
            .append(append(&first, "first", Expect::LastSeq(0)))
            .await
        {
            Ok(appended) => ControlFlow::Break(appended),
            // Until the stream's leader is elected.
            Err(e) => ControlFlow::Continue(e.to_string()),
        }
    })
    .await;
    let b = store
        .append(append(&second, "second", Expect::LastSeq(a.seq)))
        .await
        .expect("the second append");
    assert!(!b.duplicate);
    // Its ack lost, the writer retries with the same msg id and expectation.
    let retry = store
        .append(append(&second, "second", Expect::LastSeq(a.seq)))
        .await
        .expect("a retry is not a conflict");
    assert_eq!((retry.seq, retry.duplicate), (b.seq, true));
    // Another writer with the same stale expectation lost the race.
    let lost = store
        .append(append(&second, "third", Expect::LastSeq(a.seq)))
        .await;
    assert!(
        matches!(lost, Err(AppendError::Conflict { expected, .. }) if expected == a.seq),
        "{lost:?}"
    );
}

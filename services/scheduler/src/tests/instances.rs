//! Idempotency: two instances, or a restarted one, fed the same log decide the same.

use super::*;

#[test]
fn two_instances_fed_the_same_log_decide_the_same() {
    let mut log = policy_on(hourly(), &[agent(1), agent(2)]);
    let forbid = PolicySpec {
        overlap: Overlap::Forbid,
        ..hourly()
    };
    log.push(created(policy(1), forbid, samples::at(0)));
    log.push(assigned(policy(1), agent(1), samples::at(0)));
    let (mut a, mut b) = (given(&log), given(&log));
    // Both start after downtime: the missed run is made up identically.
    let now = hour(1) + mins(5);
    let (da, db) = (a.start(now), b.start(now));
    assert_eq!(da.len(), 3);
    assert_eq!(
        da.iter().map(key).collect::<Vec<_>>(),
        db.iter().map(key).collect::<Vec<_>>()
    );
    let mut other = log.clone();
    record(&mut a, &mut log, &da);
    record(&mut b, &mut other, &da);
    for h in 2..6 {
        let (da, db) = (a.due(hour(h)), b.due(hour(h) + TimeDelta::seconds(2)));
        assert_eq!(da.len(), 3);
        let ka: Vec<_> = da.iter().map(key).collect();
        assert_eq!(ka, db.iter().map(key).collect::<Vec<_>>(), "hour {h}");
        record(&mut a, &mut log, &da);
        record(&mut b, &mut other, &da);
    }
}

#[test]
fn a_fire_already_in_the_log_is_not_decided_again() {
    let mut log = policy_on(hourly(), &[agent(1)]);
    let (mut a, mut b) = (given(&log), given(&log));
    a.start(samples::at(1));
    b.start(samples::at(1));
    let first = a.due(hour(0));
    assert_eq!(first.len(), 1);
    // Instance b reads a's task before its own clock gets there.
    record(&mut b, &mut log, &first);
    assert!(b.due(hour(0)).is_empty());
    assert_eq!(
        b.due(hour(1)).iter().map(key).collect::<Vec<_>>(),
        a.due(hour(1)).iter().map(key).collect::<Vec<_>>()
    );
    // A restarted instance replaying the log does not decide it either.
    let mut c = given(&log);
    assert!(c.start(hour(0) + mins(1)).is_empty());
}

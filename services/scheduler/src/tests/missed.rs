//! Missed runs: after downtime, or a stalled caller, at most one decision per pair.

use super::*;

/// The log after one run at `first` of `spec` on `AGENT`, decided by a scheduler that then
/// went down.
fn ran_once_then_down(spec: PolicySpec, first: DateTime<Utc>) -> Vec<Envelope> {
    let mut log = policy_on(spec, &[AGENT]);
    let mut s = given(&log);
    s.start(samples::at(1));
    let decisions = s.due(first);
    assert_eq!(decisions.len(), 1);
    record(&mut s, &mut log, &decisions);
    log
}

#[test]
fn run_once_makes_up_the_latest_missed_fire_within_its_deadline() {
    let log = ran_once_then_down(hourly(), hour(0));
    // Down from 03:00 to 06:10: 04:00, 05:00 and 06:00 were missed.
    let mut s = given(&log);
    let decisions = s.start(hour(3) + mins(10));
    assert_eq!(
        outcomes(&decisions),
        vec![(AGENT, hour(3), Outcome::Scheduled)]
    );
    assert_eq!(decisions[0].task, TaskId::for_fire(POLICY, AGENT, hour(3)));
    assert!(s.due(hour(3) + mins(59)).is_empty());
    assert_eq!(
        outcomes(&s.due(hour(4))),
        vec![(AGENT, hour(4), Outcome::Scheduled)]
    );
}

#[test]
fn run_once_past_its_deadline_records_the_fire_as_skipped() {
    let every_6h = PolicySpec {
        schedule: Schedule::Interval {
            every_secs: 6 * 3600,
        },
        ..hourly()
    };
    let mut log = ran_once_then_down(every_6h, hour(3));
    // Down from 06:00 to 14:00: 12:00 was missed two hours ago, its deadline is one hour.
    let mut s = given(&log);
    let decisions = s.start(hour(11));
    assert_eq!(
        outcomes(&decisions),
        vec![(AGENT, hour(9), Outcome::SkippedMissed)]
    );
    assert!(matches!(
        &decisions[0].envelope.event,
        Event::Task { event: TaskEvent::Skipped { reason: SkipReason::Missed, fire_at, .. }, .. }
            if *fire_at == hour(9)
    ));
    assert_eq!(
        decisions[0].run_at(),
        hour(9),
        "a skip is ordered by its fire time"
    );
    record(&mut s, &mut log, &decisions);
    assert_eq!(
        outcomes(&s.due(hour(15))),
        vec![(AGENT, hour(15), Outcome::Scheduled)]
    );
    // Another restart at the same time does not record the gap twice.
    assert!(given(&log).start(hour(11)).is_empty());
}

#[test]
fn skip_records_one_skipped_fire_and_runs_nothing() {
    let skip = PolicySpec {
        missed: MissedRun::Skip,
        ..hourly()
    };
    let log = ran_once_then_down(skip, hour(0));
    let mut s = given(&log);
    let decisions = s.start(hour(3) + mins(10));
    assert_eq!(
        outcomes(&decisions),
        vec![(AGENT, hour(3), Outcome::SkippedMissed)]
    );
    assert!(s.due(hour(3) + mins(59)).is_empty());
    assert_eq!(
        outcomes(&s.due(hour(4))),
        vec![(AGENT, hour(4), Outcome::Scheduled)]
    );
}

#[test]
fn a_stalled_caller_gets_one_decision_not_a_burst() {
    let mut s = given(&policy_on(hourly(), &[agent(1), agent(2)]));
    assert!(s.start(samples::at(1)).is_empty());
    let decisions = s.due(hour(3) + mins(10));
    assert_eq!(
        outcomes(&decisions),
        vec![
            (agent(1), hour(3), Outcome::Scheduled),
            (agent(2), hour(3), Outcome::Scheduled)
        ]
    );
}

#[test]
fn a_pair_assigned_during_downtime_owes_only_fires_after_its_assignment() {
    let mut log = policy_on(hourly(), &[]);
    log.push(assigned(POLICY, AGENT, hour(2) + mins(30)));
    let mut s = given(&log);
    assert!(s.start(hour(2) + mins(40)).is_empty());
    assert_eq!(
        outcomes(&s.due(hour(3))),
        vec![(AGENT, hour(3), Outcome::Scheduled)]
    );
}

#[test]
fn a_never_fired_pair_assigned_long_ago_makes_up_one_fire() {
    let mut s = given(&policy_on(hourly(), &[AGENT]));
    let decisions = s.start(hour(40) + mins(1));
    assert_eq!(
        outcomes(&decisions),
        vec![(AGENT, hour(40), Outcome::Scheduled)]
    );
}

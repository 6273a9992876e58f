//! Firing: cron and interval schedules, task ids, msg ids, jitter, invalid schedules.

use super::*;

#[test]
fn an_hourly_policy_on_three_agents_fires_once_per_agent_per_hour() {
    let agents = [agent(1), agent(2), agent(3)];
    let mut log = policy_on(hourly(), &agents);
    let mut s = given(&log);
    assert!(s.start(samples::at(1)).is_empty());
    assert!(s.due(hour(0) - TimeDelta::seconds(1)).is_empty());
    for h in 0..5 {
        let decisions = s.due(hour(h));
        assert_eq!(decisions.len(), 3, "hour {h}");
        for (d, a) in decisions.iter().zip(agents) {
            assert_eq!((d.policy, d.agent, d.fire_at), (POLICY, a, hour(h)));
            assert_eq!(d.task, TaskId::for_fire(POLICY, a, hour(h)));
            let micros = hour(h).timestamp_micros();
            assert_eq!(d.msg_id, format!("sched:{POLICY}:{a}:{micros}"));
            assert_eq!(d.msg_id, msg_id(POLICY, a, hour(h)));
            assert_eq!(d.tenant, samples::tenant());
            assert!(d.cancels.is_empty());
            let Event::Task {
                task,
                event: TaskEvent::Scheduled { run_at, spec, .. },
            } = &d.envelope.event
            else {
                panic!("not scheduled: {d:?}");
            };
            assert_eq!(*task, d.task);
            let jitter = *run_at - hour(h);
            assert!(jitter >= TimeDelta::zero() && jitter < TimeDelta::seconds(600));
            assert_eq!(jitter, jitter_for(POLICY, a, 600));
            assert_eq!(
                d.run_at(),
                *run_at,
                "the service records those due first first"
            );
            assert_eq!(**spec, hourly());
        }
        record(&mut s, &mut log, &decisions);
        assert!(s.due(hour(h) + mins(59)).is_empty(), "decided twice");
    }
}

#[test]
fn jitter_is_stable_bounded_and_spread() {
    assert_eq!(jitter_for(POLICY, AGENT, 0), TimeDelta::zero());
    assert_eq!(
        jitter_for(POLICY, AGENT, 600),
        jitter_for(POLICY, AGENT, 600)
    );
    let all: Vec<TimeDelta> = (0..1000)
        .map(|n| jitter_for(POLICY, agent(n), 600))
        .collect();
    assert!(
        all.iter()
            .all(|j| *j >= TimeDelta::zero() && *j < TimeDelta::seconds(600))
    );
    let mut seconds: Vec<i64> = all.iter().map(TimeDelta::num_seconds).collect();
    seconds.sort_unstable();
    seconds.dedup();
    assert!(
        seconds.len() > 400,
        "only {} distinct seconds",
        seconds.len()
    );
    assert!(seconds[0] < 30 && seconds[seconds.len() - 1] > 570);
}

#[test]
fn an_interval_fires_aligned_to_the_epoch() {
    let every_6h = PolicySpec {
        schedule: Schedule::Interval {
            every_secs: 6 * 3600,
        },
        jitter_secs: 0,
        ..hourly()
    };
    let mut s = given(&policy_on(every_6h, &[AGENT]));
    s.start(samples::at(1));
    // 06:00, 12:00 and 18:00 UTC.
    assert_eq!(s.upcoming(POLICY, 3), vec![hour(3), hour(9), hour(15)]);
    assert!(s.due(hour(3) - TimeDelta::seconds(1)).is_empty());
    let d = s.due(hour(3));
    assert_eq!(outcomes(&d), vec![(AGENT, hour(3), Outcome::Scheduled)]);
    assert!(
        matches!(&d[0].envelope.event, Event::Task { event: TaskEvent::Scheduled { run_at, .. }, .. } if *run_at == hour(3))
    );
}

#[test]
fn an_invalid_schedule_is_ignored_until_a_valid_update() {
    let broken = PolicySpec {
        schedule: cron("not a cron"),
        ..hourly()
    };
    let mut s = given(&policy_on(broken.clone(), &[AGENT]));
    assert!(s.start(samples::at(1)).is_empty());
    assert!(s.due(hour(5)).is_empty());
    assert!(s.upcoming(POLICY, 3).is_empty());
    let spec = Box::new(hourly());
    s.apply(&on_policy(
        POLICY,
        hour(5) + mins(1),
        PolicyEvent::Updated { spec },
    ));
    assert_eq!(
        outcomes(&s.due(hour(6))),
        vec![(AGENT, hour(6), Outcome::Scheduled)]
    );
    // A later invalid update keeps the valid schedule.
    let spec = Box::new(broken);
    s.apply(&on_policy(
        POLICY,
        hour(6) + mins(1),
        PolicyEvent::Updated { spec },
    ));
    assert_eq!(
        outcomes(&s.due(hour(7))),
        vec![(AGENT, hour(7), Outcome::Scheduled)]
    );
}

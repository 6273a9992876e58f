//! A tick costs O(due): only due queue entries are touched, however many pairs exist.

use super::*;

#[test]
fn a_tick_pops_only_the_due_entries_of_100_000_pairs() {
    const POLICIES: u128 = 100;
    const AGENTS: u128 = 1000;
    let mut s = Scheduler::new();
    for p in 0..POLICIES {
        // Policy p fires daily at 03:00 + p minutes.
        let spec = PolicySpec {
            schedule: cron(&format!("{} {} * * *", p % 60, 3 + p / 60)),
            ..hourly()
        };
        s.apply(&created(policy(p), spec, samples::at(0)));
        for a in 0..AGENTS {
            s.apply(&assigned(policy(p), agent(a), samples::at(0)));
        }
    }
    assert!(s.start(samples::at(1)).is_empty());
    let stats = s.stats();
    assert_eq!(
        (stats.pairs, stats.queued, stats.popped),
        (100_000, 100_000, 0)
    );

    assert!(s.due(hour(0) - TimeDelta::seconds(1)).is_empty());
    assert_eq!(s.stats().popped, 0);

    let decisions = s.due(hour(0));
    assert_eq!(decisions.len(), 1000);
    assert!(
        decisions
            .iter()
            .all(|d| d.policy == policy(0) && d.fire_at == hour(0))
    );
    assert_eq!(s.stats().popped, 1000);

    assert!(s.due(hour(0) + TimeDelta::seconds(30)).is_empty());
    assert_eq!(s.stats().popped, 1000);

    let decisions = s.due(hour(0) + mins(1));
    assert!(decisions.iter().all(|d| d.policy == policy(1)));
    assert_eq!((decisions.len(), s.stats().popped), (1000, 2000));
    assert_eq!(s.next_due(), Some(hour(0) + mins(2)));
}

#[test]
fn stale_entries_do_not_pile_up() {
    let mut s = given(&policy_on(hourly(), &[agent(1), agent(2)]));
    s.start(samples::at(1));
    for i in 0..5000 {
        let at = samples::at(2 + i);
        s.apply(&on_policy(POLICY, at, PolicyEvent::Paused));
        s.apply(&on_policy(POLICY, at, PolicyEvent::Resumed));
    }
    assert!(s.stats().queued <= 2 * 2 + 1024 + 1, "{:?}", s.stats());
    assert_eq!(s.due(hour(1)).len(), 2);
    assert!(s.stats().popped < 1100, "{:?}", s.stats());
}

//! Retention of the run and task models without a server: what leaves after the days
//! kept and what stays (per-day totals, last successes, counts, tasks still going), the
//! same bytes in every path (one by one across reopens, in batches, rebuilt in memory),
//! a retirement cut short by a crash, and a change of the days kept.

use chrono::{DateTime, Utc};
use fleet_events::event::HookOutcome;
use fleet_events::event::{
    BackupSummary, ErrorClass, Event, ExhaustedReason, RunDetail, RunSummary, SkipReason,
    TaskError, TaskEvent,
};
use fleet_events::ids::{AgentId, TaskId};
use fleet_events::policy::TaskKind;
use fleet_events::policy::hooks::HookStage;
use fleet_events::samples::{self, AGENT, POLICY};
use fleet_events::store::Stored;
use fleet_events::task_state::TaskStatus;

use super::*;
use crate::runtime::{Outcome, RETIRE_CHUNK};
use crate::tasks::Tasks;
use crate::testing::{assert_rebuild_equals_incremental, open, stored, tenant};

/// Seconds from `samples::at(0)` back to the start of its UTC day.
const DAY_START: i64 = -8000;

/// `hour` o'clock (UTC) on day `day` of the log.
fn time(day: i64, hour: i64) -> DateTime<Utc> {
    samples::at(DAY_START + day * 86_400 + hour * 3600)
}

/// A log being written with times given as (day, hour).
struct Days {
    events: Vec<Stored>,
    tenant: TenantId,
}

impl Days {
    fn new() -> Self {
        Self {
            events: Vec::new(),
            tenant: tenant("acme"),
        }
    }

    fn push(&mut self, (day, hour): (i64, i64), task: TaskId, event: TaskEvent) {
        let seq = self.events.len() as u64 + 1;
        let event = Event::Task { task, event };
        self.events
            .push(stored(seq, &self.tenant, time(day, hour), event));
    }

    fn scheduled(&mut self, at: (i64, i64), task: TaskId, agent: AgentId) {
        let spec = samples::policy_spec();
        let event = TaskEvent::Scheduled {
            policy: POLICY,
            agent,
            fire_at: time(at.0, at.1),
            run_at: time(at.0, at.1),
            spec: Box::new(spec),
        };
        self.push(at, task, event);
    }

    /// A task on `agent` whose first attempt runs from `hour` to `hour + 1` of `day`
    /// and ends with `end`.
    fn run(&mut self, day: i64, hour: i64, agent: AgentId, end: TaskEvent) -> TaskId {
        let task = TaskId::generate();
        self.scheduled((day, hour), task, agent);
        self.push(
            (day, hour),
            task,
            TaskEvent::Dispatched { agent, attempt: 1 },
        );
        self.push((day, hour), task, TaskEvent::Started { attempt: 1 });
        self.push((day, hour + 1), task, end);
        task
    }

    /// A day of `agent`: a backup that succeeds, one that fails and is given up, and a
    /// skipped fire.
    fn day(&mut self, day: i64, agent: AgentId) -> [TaskId; 3] {
        let ok = self.run(day, 1, agent, succeeded());
        let failed = TaskEvent::Failed {
            attempt: 1,
            error: TaskError::new(ErrorClass::Network, "unreachable", Some(1)),
        };
        let given_up = self.run(day, 3, agent, failed);
        let exhausted = TaskEvent::Exhausted {
            attempts: 1,
            reason: ExhaustedReason::BudgetSpent,
        };
        self.push((day, 4), given_up, exhausted);
        let skipped = TaskId::generate();
        let skip = TaskEvent::Skipped {
            policy: POLICY,
            agent,
            fire_at: time(day, 5),
            reason: SkipReason::Missed,
        };
        self.push((day, 5), skipped, skip);
        [ok, given_up, skipped]
    }
}

fn succeeded() -> TaskEvent {
    TaskEvent::Succeeded {
        attempt: 1,
        summary: RunSummary {
            kind: TaskKind::Backup,
            duration_ms: 3_600_000,
            detail: RunDetail::Backup(BackupSummary {
                snapshot_id: Some("abc".into()),
                data_added_bytes: 4096,
                ..BackupSummary::default()
            }),
        },
    }
}

#[test]
fn runs_and_ended_tasks_leave_after_their_days_and_their_totals_stay() {
    let mut log = Days::new();
    let other = AgentId::generate();
    let waiting = TaskId::generate();
    log.scheduled((0, 0), waiting, AGENT);
    let mut by_day = Vec::new();
    for day in 0..10 {
        by_day.push(log.day(day, AGENT));
        log.day(day, other);
    }
    let keep = 3;
    let (_runs_dir, runs) = assert_rebuild_equals_incremental(|| Runs::keeping(keep), &log.events);
    let (_tasks_dir, tasks) =
        assert_rebuild_equals_incremental(|| Tasks::keeping(keep), &log.events);
    let acme = &log.tenant;

    // The last event is on day 9: the horizon is the start of day 6.
    let horizon = time(6, 0);
    assert_eq!(runs.retired_before(), horizon.timestamp_micros());
    assert_eq!(tasks.retired_before(), horizon.timestamp_micros());
    let listed = runs.list(acme, &RunFilter::default(), usize::MAX).unwrap();
    assert_eq!(
        listed.len(),
        4 * 2 * 2,
        "days 6 to 9, two runs a day per agent"
    );
    assert!(listed.iter().all(|run| run.finished_at >= horizon));
    for (day, [ok, given_up, skipped]) in by_day.iter().enumerate() {
        let kept = day >= 6;
        for task in [ok, given_up, skipped] {
            assert_eq!(tasks.task(*task).unwrap().is_some(), kept, "day {day}");
        }
    }
    assert!(
        tasks.task(waiting).unwrap().is_some(),
        "a task that has not ended stays however old"
    );
    let counts = tasks.status_counts(acme).unwrap();
    let count = |status| counts.iter().find(|(s, _)| *s == status).unwrap().1;
    assert_eq!(count(TaskStatus::Succeeded), 20, "counts keep every task");
    assert_eq!(count(TaskStatus::Skipped), 20);
    assert_eq!(count(TaskStatus::Exhausted), 20);
    assert_eq!(count(TaskStatus::Scheduled), 1);

    let policy_days = runs
        .days(
            acme,
            &DayFilter {
                policy: Some(POLICY),
                ..DayFilter::default()
            },
            usize::MAX,
        )
        .unwrap();
    assert_eq!(policy_days.len(), 20, "ten days on two agents");
    assert_eq!(policy_days[0].day, time(9, 0).date_naive(), "newest first");
    assert_eq!(policy_days[19].day, time(0, 0).date_naive());
    let expected = DayTotals {
        succeeded: 1,
        failed: 1,
        duration_ms: 2 * 3_600_000,
        data_added_bytes: 4096,
        tasks_skipped: 1,
        tasks_exhausted: 1,
        ..DayTotals::default()
    };
    for day in &policy_days {
        assert_eq!(day.policy, Some(POLICY));
        assert!(day.agent == Some(AGENT) || day.agent == Some(other));
        assert_eq!(day.totals, expected, "{day:?}");
    }
    let one_agent = DayFilter {
        agent: Some(other),
        since: Some(time(8, 0).date_naive()),
        ..DayFilter::default()
    };
    let agent_days = runs.days(acme, &one_agent, usize::MAX).unwrap();
    assert_eq!(agent_days.len(), 2, "days 8 and 9");
    assert!(agent_days.iter().all(|d| d.policy == Some(POLICY)));
    let tenant_days = runs.days(acme, &DayFilter::default(), 3).unwrap();
    assert_eq!(tenant_days.len(), 3, "limited");
    assert_eq!(tenant_days[0].totals.runs(), 4, "both agents' runs");
    assert_eq!((tenant_days[0].policy, tenant_days[0].agent), (None, None));
    assert_eq!(runs.last_successes(acme).unwrap().len(), 2);
}

#[test]
fn an_event_for_a_retired_task_is_refused_like_one_for_an_unknown_task() {
    let mut log = Days::new();
    let [ok, ..] = log.day(0, AGENT);
    log.day(5, AGENT);
    let late = TaskEvent::HookRan {
        attempt: 1,
        hook: samples::hook_run(HookStage::After, HookOutcome::Exited(0)),
    };
    log.push((5, 23), ok, late);
    let (_dir, runs) = open(Runs::keeping(2));
    let (_tasks_dir, tasks) = open(Tasks::keeping(2));
    for event in &log.events[..log.events.len() - 1] {
        runs.apply(Ok(event.clone())).unwrap();
        tasks.apply(Ok(event.clone())).unwrap();
    }
    let last = log.events.last().unwrap().clone();
    for outcome in [runs.apply(Ok(last.clone())), tasks.apply(Ok(last))] {
        assert_eq!(outcome.unwrap(), Outcome::Rejected("illegal_transition"));
    }
}

#[test]
fn a_retirement_cut_short_goes_on_when_its_event_is_applied_again() {
    let mut log = Days::new();
    for _ in 0..(RETIRE_CHUNK / 3 + 1) {
        log.day(0, AGENT);
    }
    log.day(3, AGENT);
    let trigger = log
        .events
        .iter()
        .position(|e| e.envelope.at >= time(3, 0))
        .unwrap();
    let (_whole_dir, whole) = open(Runs::keeping(2));
    for event in &log.events {
        whole.apply(Ok(event.clone())).unwrap();
    }
    let expected = whole.dump().unwrap();

    let dir = tempfile::tempdir().unwrap();
    {
        let model = Checkpointed::open(dir.path(), Runs::keeping(2)).unwrap();
        for event in &log.events[..trigger] {
            model.apply(Ok(event.clone())).unwrap();
        }
        let retention = model.projection().retention().unwrap();
        let target = retention.horizon(log.events[trigger].envelope.at);
        assert_eq!(model.retire_chunk(retention, target).unwrap(), RETIRE_CHUNK);
        model.db().flush().unwrap();
        // Cut short here: the horizon is not stored, nor is the event applied.
    }
    let model = Checkpointed::open(dir.path(), Runs::keeping(2)).unwrap();
    assert!(model.retired_before() < time(1, 0).timestamp_micros());
    let rest: Vec<_> = log.events[trigger..].iter().cloned().map(Ok).collect();
    model.apply_batch(rest).unwrap();
    assert_eq!(model.dump().unwrap(), expected);
    assert!(
        model
            .list(&log.tenant, &RunFilter::default(), usize::MAX)
            .unwrap()
            .len()
            == 2,
        "only day 3's runs are left"
    );
}

#[test]
fn a_model_kept_for_other_days_is_reset_for_a_rebuild() {
    let mut log = Days::new();
    log.day(0, AGENT);
    log.day(4, AGENT);
    let dir = tempfile::tempdir().unwrap();
    {
        let model = Checkpointed::open(dir.path(), Runs::keeping(2)).unwrap();
        for event in &log.events {
            model.apply(Ok(event.clone())).unwrap();
        }
        assert_eq!(model.checkpoint().unwrap(), log.events.len() as u64);
        model.db().flush().unwrap();
    }
    let same = Checkpointed::open(dir.path(), Runs::keeping(2)).unwrap();
    assert_eq!(same.checkpoint().unwrap(), log.events.len() as u64);
    drop(same);
    let longer = Checkpointed::open(dir.path(), Runs::keeping(30)).unwrap();
    assert_eq!(
        longer.checkpoint().unwrap(),
        0,
        "reset: a rebuild gives days 0 and 4 back"
    );
    assert!(longer.dump().unwrap().is_empty());
    for event in &log.events {
        longer.apply(Ok(event.clone())).unwrap();
    }
    let runs = longer
        .list(&log.tenant, &RunFilter::default(), usize::MAX)
        .unwrap();
    assert_eq!(runs.len(), 4);
}

//! When a policy on an agent becomes overdue: no success by the second scheduled fire
//! after its last success (or after it was assigned, changed or resumed), plus the policy's
//! jitter. One whole period may go by without a success (a failed run, retried); two may
//! not. Pure.

use chrono::{DateTime, TimeDelta, Utc};

use super::facts::PolicyFacts;

/// The moment the pair is overdue if it has not succeeded by then; `None` when it cannot
/// be (paused, deleted, not scheduled, a schedule that never fires again).
pub fn due_at(
    policy: &PolicyFacts,
    assigned_at: DateTime<Utc>,
    last_success: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    if policy.paused || policy.deleted || !policy.kind.is_scheduled() {
        return None;
    }
    let schedule = policy.schedule.as_ref()?;
    let baseline = [Some(assigned_at), Some(policy.changed_at), last_success]
        .into_iter()
        .flatten()
        .max()?;
    let first = schedule.next_after(baseline)?;
    let second = schedule.next_after(first)?;
    second.checked_add_signed(TimeDelta::seconds(i64::from(policy.jitter_secs)))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::TimeZone;
    use fleet_events::ids::TenantId;
    use fleet_events::policy::TaskKind;
    use fleet_events::schedule::Schedule;

    use super::*;

    fn hourly(jitter_secs: u32) -> PolicyFacts {
        PolicyFacts {
            tenant: TenantId::new("acme").expect("slug"),
            name: "hourly".into(),
            kind: TaskKind::Backup,
            schedule: Schedule::Cron {
                expr: "0 * * * *".into(),
                timezone: "UTC".into(),
            }
            .compile()
            .ok(),
            jitter_secs,
            paused: false,
            deleted: false,
            changed_at: t(0, 0),
            agents: BTreeMap::new(),
        }
    }

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, h, m, 0)
            .single()
            .expect("valid")
    }

    #[test]
    fn one_missed_run_is_allowed_the_second_fire_makes_it_overdue() {
        // Given an hourly policy that last succeeded at 01:25
        let policy = hourly(0);
        // Then the 02:00 run may fail; by 03:00 a success is overdue.
        assert_eq!(due_at(&policy, t(0, 0), Some(t(1, 25))), Some(t(3, 0)));
    }

    #[test]
    fn a_pair_that_never_succeeded_counts_from_its_assignment_and_jitter_is_added() {
        let policy = hourly(600);
        assert_eq!(due_at(&policy, t(4, 30), None), Some(t(6, 10)));
    }

    #[test]
    fn a_change_or_resume_restarts_the_count() {
        let mut policy = hourly(0);
        policy.changed_at = t(7, 5);
        assert_eq!(due_at(&policy, t(0, 0), Some(t(1, 0))), Some(t(9, 0)));
    }

    #[test]
    fn paused_deleted_and_unscheduled_policies_are_never_overdue() {
        let mut paused = hourly(0);
        paused.paused = true;
        assert_eq!(due_at(&paused, t(0, 0), None), None);
        let mut deleted = hourly(0);
        deleted.deleted = true;
        assert_eq!(due_at(&deleted, t(0, 0), None), None);
        let mut restore = hourly(0);
        restore.kind = TaskKind::Restore;
        assert_eq!(due_at(&restore, t(0, 0), None), None);
    }
}

//! Unlock marks: made by recovery for the repositories of interrupted attempts, kept
//! across restarts until an unlock succeeded.

use fleet_events::event::{InterruptedAttempt, UnlockOutcome, repo_of};
use fleet_events::policy::TaskKind;
use fleet_events::protocol::ReportStatus;
use fleet_events::samples;

use super::*;
use crate::state::UnlockMark;

/// `order` on the repository at `url`.
fn on_repo(mut order: TaskOrder, url: &str) -> TaskOrder {
    order.spec.repository.url = url.into();
    order
}

/// The `UnlockRan` report of `next` after an unlock that `failed` or not, for `mark`.
fn unlock_ran(next: &TaskOrder, mark: &UnlockMark, failed: bool) -> AgentReport {
    let outcome = match failed {
        true => UnlockOutcome::Failed(TaskError::new(ErrorClass::Auth, "wrong password", None)),
        false => UnlockOutcome::Unlocked,
    };
    let interrupted = mark
        .interrupted
        .iter()
        .map(|&(task, attempt)| InterruptedAttempt { task, attempt })
        .collect();
    report(
        next,
        30,
        ReportStatus::UnlockRan {
            interrupted,
            outcome,
        },
    )
}

/// Records a successful unlock of `mark`'s repository before a new accepted attempt
/// (task number `n`); returns whether the mark was cleared.
async fn unlocked(state: &AgentState, repo: &str, mark: &UnlockMark, n: u32) -> bool {
    let next = on_repo(order(n, 1, TaskKind::Backup), repo);
    let ack = report(&next, 25, ReportStatus::Acknowledged);
    state.accept(&next, None, ack).await.unwrap();
    state
        .record_unlock(repo_of(&next.spec), mark, unlock_ran(&next, mark, false))
        .await
        .unwrap()
}

#[tokio::test]
async fn recovery_marks_the_repositories_of_interrupted_attempts_until_unlocked() {
    let dir = tempfile::tempdir().unwrap();
    let a1 = on_repo(order(1, 1, TaskKind::Backup), "/srv/a");
    let a2 = on_repo(order(2, 3, TaskKind::Check), "/srv/a/");
    let b = on_repo(order(3, 1, TaskKind::Backup), "/srv/b");
    let queued = on_repo(order(4, 1, TaskKind::Prune), "/srv/c");
    {
        let state = AgentState::open(dir.path()).unwrap();
        for o in [&a1, &a2, &b] {
            run(&state, o).await;
        }
        let ack = report(&queued, 3, ReportStatus::Acknowledged);
        state.accept(&queued, None, ack).await.unwrap();
        assert!(state.unlock_marks().unwrap().is_empty());
        // The agent dies here.
    }
    {
        let state = AgentState::open(dir.path()).unwrap();
        state
            .recover(|o| report(o, 10, ReportStatus::Interrupted))
            .await
            .unwrap();
        let (repo_a, repo_b) = (repo_of(&a1.spec), repo_of(&b.spec));
        let a = state.unlock_mark(repo_a).unwrap().expect("marked");
        let mut interrupted = a.interrupted.clone();
        interrupted.sort();
        let mut expected = vec![(a1.task, 1), (a2.task, 3)];
        expected.sort();
        assert_eq!(interrupted, expected, "one mark per repository");
        assert_eq!(a.marked_at, samples::at(10));
        assert!(state.unlock_mark(repo_of(&queued.spec)).unwrap().is_none());
        let marked: Vec<_> = state.unlock_marks().unwrap();
        assert_eq!(marked.len(), 2);
        // Unlocked `a`; the agent dies again before unlocking `b`.
        assert!(unlocked(&state, "/srv/a", &a, 20).await);
        assert!(state.unlock_mark(repo_b).unwrap().is_some());
    }
    let state = AgentState::open(dir.path()).unwrap();
    assert!(state.interrupted().is_empty());
    let marked: Vec<_> = state.unlock_marks().unwrap();
    assert_eq!(marked.len(), 1);
    let (repo, mark) = &marked[0];
    assert_eq!(*repo, repo_of(&b.spec));
    assert_eq!(mark.interrupted, [(b.task, 1)]);
}

#[tokio::test]
async fn a_mark_that_changed_since_it_was_read_is_not_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let first = on_repo(order(1, 1, TaskKind::Backup), "/srv/a");
    let second = on_repo(order(2, 1, TaskKind::Backup), "/srv/a");
    {
        let state = AgentState::open(dir.path()).unwrap();
        run(&state, &first).await;
    }
    let seen = {
        let state = AgentState::open(dir.path()).unwrap();
        state
            .recover(|o| report(o, 10, ReportStatus::Interrupted))
            .await
            .unwrap();
        run(&state, &second).await;
        state.unlock_mark(repo_of(&first.spec)).unwrap().unwrap()
    };
    let state = AgentState::open(dir.path()).unwrap();
    state
        .recover(|o| report(o, 20, ReportStatus::Interrupted))
        .await
        .unwrap();
    let repo = repo_of(&first.spec);
    assert!(!unlocked(&state, "/srv/a", &seen, 20).await);
    let now = state.unlock_mark(repo).unwrap().unwrap();
    assert_eq!(now.interrupted, [(first.task, 1), (second.task, 1)]);
    assert_eq!(now.marked_at, samples::at(10));
    assert!(unlocked(&state, "/srv/a", &now, 21).await);
    assert!(state.unlock_marks().unwrap().is_empty());
}

#[tokio::test]
async fn an_unlock_is_reported_before_the_start_and_only_a_success_clears_the_mark() {
    let dir = tempfile::tempdir().unwrap();
    let crashed = on_repo(order(1, 1, TaskKind::Backup), "/srv/a");
    {
        let state = AgentState::open(dir.path()).unwrap();
        run(&state, &crashed).await;
    }
    let state = AgentState::open(dir.path()).unwrap();
    state
        .recover(|o| report(o, 10, ReportStatus::Interrupted))
        .await
        .unwrap();
    let repo = repo_of(&crashed.spec);
    let mark = state.unlock_mark(repo).unwrap().unwrap();
    let retry = on_repo(order(1, 2, TaskKind::Backup), "/srv/a");
    let ack = report(&retry, 20, ReportStatus::Acknowledged);
    state.accept(&retry, None, ack).await.unwrap();

    let failed = unlock_ran(&retry, &mark, true);
    assert!(
        !state
            .record_unlock(repo, &mark, failed.clone())
            .await
            .unwrap()
    );
    assert_eq!(state.unlock_mark(repo).unwrap(), Some(mark.clone()), "kept");
    let started = report(&retry, 40, ReportStatus::Started);
    state.start(retry.task, 2, started).await.unwrap();
    // A second unlock before the same attempt, now running, that succeeds.
    let done = unlock_ran(&retry, &mark, false);
    assert!(
        state
            .record_unlock(repo, &mark, done.clone())
            .await
            .unwrap()
    );
    assert_eq!(state.unlock_mark(repo).unwrap(), None);
    let outbox: Vec<AgentReport> = state
        .outbox()
        .unwrap()
        .into_iter()
        .map(|(_, r)| r.unwrap())
        .collect();
    let statuses: Vec<(u32, &str)> = outbox
        .iter()
        .map(|r| (r.attempt, r.status.name()))
        .collect();
    assert_eq!(
        statuses,
        [
            (1, "acknowledged"),
            (1, "started"),
            (1, "interrupted"),
            (2, "acknowledged"),
            (2, "unlock_ran"),
            (2, "started"),
            (2, "unlock_ran"),
        ]
    );
    assert_eq!(outbox[4], failed);
    assert_eq!(outbox[6], done);
}

#[tokio::test]
async fn an_unlock_report_of_an_attempt_not_on_the_agent_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let crashed = on_repo(order(1, 1, TaskKind::Backup), "/srv/a");
    {
        let state = AgentState::open(dir.path()).unwrap();
        run(&state, &crashed).await;
    }
    let state = AgentState::open(dir.path()).unwrap();
    state
        .recover(|o| report(o, 10, ReportStatus::Interrupted))
        .await
        .unwrap();
    let repo = repo_of(&crashed.spec);
    let mark = state.unlock_mark(repo).unwrap().unwrap();
    let depth = state.outbox_depth();
    // Never accepted.
    let unknown = on_repo(order(2, 1, TaskKind::Backup), "/srv/a");
    let err = state
        .record_unlock(repo, &mark, unlock_ran(&unknown, &mark, false))
        .await
        .unwrap_err();
    assert!(matches!(err, StateError::UnknownTask { .. }), "{err}");
    // Finished: the interrupted attempt itself.
    let err = state
        .record_unlock(repo, &mark, unlock_ran(&crashed, &mark, false))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("finished"), "{err}");
    // Not an unlock report.
    let ack = report(&crashed, 30, ReportStatus::Acknowledged);
    let err = state.record_unlock(repo, &mark, ack).await.unwrap_err();
    assert_eq!(err.kind(), "report_mismatch");
    assert_eq!(state.outbox_depth(), depth);
    assert_eq!(state.unlock_mark(repo).unwrap(), Some(mark));
}

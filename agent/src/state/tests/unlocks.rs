//! Unlock marks: made by recovery for the repositories of interrupted attempts, kept
//! across restarts until an unlock succeeded.

use fleet_events::event::repo_of;
use fleet_events::policy::TaskKind;
use fleet_events::protocol::ReportStatus;
use fleet_events::samples;

use super::*;

/// `order` on the repository at `url`.
fn on_repo(mut order: TaskOrder, url: &str) -> TaskOrder {
    order.spec.repository.url = url.into();
    order
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
        state.accept(&queued, ack).await.unwrap();
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
        assert!(state.unlocked(repo_a, &a).await.unwrap());
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
    assert!(!state.unlocked(repo, &seen).await.unwrap());
    let now = state.unlock_mark(repo).unwrap().unwrap();
    assert_eq!(now.interrupted, [(first.task, 1), (second.task, 1)]);
    assert_eq!(now.marked_at, samples::at(10));
    assert!(state.unlocked(repo, &now).await.unwrap());
    assert!(state.unlock_marks().unwrap().is_empty());
}

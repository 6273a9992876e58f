//! Live progress of a running attempt: restic's `status` lines become
//! [`Progress`] messages, about one a second per attempt ([`Throttle`], pure), handed to
//! the runtime's publisher without waiting ([`ProgressSink`]). Counts and sizes only:
//! restic's `current_files` is never read, so no file name leaves the agent this way.
//!
//! Which runs report: a backup (every version prints status lines with `--json`) and a
//! restore on restic 0.16 and newer (`restore --json`). Not a check: even restic 0.18's
//! `check --json` prints no status line, only errors and a summary.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use fleet_events::envelope::SCHEMA_VERSION;
use fleet_events::ids::AgentId;
use fleet_events::protocol::{Progress, TaskOrder};
use tokio::sync::mpsc;

use crate::restic::output::{Status, parse_status};

/// About one progress message per attempt this often.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How much sooner than [`PROGRESS_EVERY`] after the last a status may still pass:
/// restic's once-a-second lines reach the agent a few milliseconds early or late, and a
/// strict second would drop every other one.
pub const JITTER: Duration = Duration::from_millis(50);
/// restic's variable for how many status lines a second it prints at most (read from
/// 0.12 on; without it restic prints up to 60 a second under `--json`).
pub const FPS_VAR: &str = "RESTIC_PROGRESS_FPS";
/// 4, not 1: restic (0.14 to 0.18) prints on every change but at most FPS times a second,
/// and on a one-second ticker. With 1 a tick that comes a hair under a second after the
/// last line is skipped, so while restic waits for uploads its lines come every 2 s, and
/// while it reads they come 1 to 2 s apart; with 4 the throttle finds a line within a
/// quarter of a second of each second (measured with 0.14: 1.0 to 1.3 s apart).
pub const FPS: &str = "4";
/// The metric counting progress messages by what became of them.
pub const PUBLISHED_METRIC: &str = "fleet_agent_progress_published_total";

/// A rate limiter, pure: the first status passes at once, then one whenever `gap` has
/// passed since the last that passed. A status held back is dropped, never sent later.
#[derive(Debug, Clone)]
pub struct Throttle {
    gap: Duration,
    last: Option<Instant>,
}

impl Throttle {
    /// At most one status per `gap`.
    pub fn new(gap: Duration) -> Self {
        Self { gap, last: None }
    }

    /// Whether a status seen at `now` passes (and if so, `now` is the last that passed).
    pub fn admit(&mut self, now: Instant) -> bool {
        let due = self
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= self.gap);
        if due {
            self.last = Some(now);
        }
        due
    }
}

/// Where progress goes: a small queue to the runtime's publisher, which sends each on
/// core NATS. Offering never waits: when the queue is full the message is dropped.
#[derive(Debug, Clone)]
pub struct ProgressSink {
    agent: AgentId,
    tx: mpsc::Sender<Progress>,
}

impl ProgressSink {
    /// A sink for `agent`'s progress holding at most `capacity` messages, and the
    /// publisher's end of it.
    pub fn new(agent: AgentId, capacity: usize) -> (Self, mpsc::Receiver<Progress>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { agent, tx }, rx)
    }

    /// Hands `progress` to the publisher, or drops it (counted) when the queue is full.
    fn offer(&self, progress: Progress) {
        match self.tx.try_send(progress) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!(PUBLISHED_METRIC, "outcome" => "dropped").increment(1);
            }
            // The runtime is stopping: nobody publishes any more.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// Watches one attempt's restic output and offers its status, throttled.
#[derive(Debug)]
pub struct Reporter<'a> {
    sink: &'a ProgressSink,
    order: &'a TaskOrder,
    throttle: Throttle,
}

impl<'a> Reporter<'a> {
    /// A reporter of attempt `order` into `sink`, one message per [`PROGRESS_EVERY`]
    /// (less [`JITTER`]) at most.
    pub fn new(sink: &'a ProgressSink, order: &'a TaskOrder) -> Self {
        Self {
            sink,
            order,
            throttle: Throttle::new(PROGRESS_EVERY - JITTER),
        }
    }

    /// One line restic printed on stdout, now.
    pub fn line(&mut self, line: &str) {
        if let Some(progress) = self.line_at(line, Instant::now(), Utc::now()) {
            self.sink.offer(progress);
        }
    }

    /// The message to send for `line` seen at `now` (`at` on the wall clock), if it is a
    /// status line the throttle lets through.
    fn line_at(&mut self, line: &str, now: Instant, at: DateTime<Utc>) -> Option<Progress> {
        let status = parse_status(line)?;
        self.throttle
            .admit(now)
            .then(|| message(self.sink.agent, self.order, &status, at))
    }
}

/// The progress message of `agent` about attempt `order` for `status`, printed at `at`.
pub fn message(agent: AgentId, order: &TaskOrder, status: &Status, at: DateTime<Utc>) -> Progress {
    Progress {
        schema: SCHEMA_VERSION,
        agent,
        tenant: order.tenant.clone(),
        task: order.task,
        attempt: order.attempt,
        kind: order.spec.kind,
        at,
        done_bp: status.done_bp(),
        bytes_done: status.bytes_done,
        bytes_total: status.bytes_total,
        files_done: status.files_done,
        files_total: status.files_total,
        seconds_elapsed: status.seconds_elapsed,
        seconds_remaining: status.seconds_remaining,
        errors: status.errors,
    }
}

#[cfg(test)]
mod tests {
    use fleet_events::ids::TaskId;
    use fleet_events::policy::TaskKind;
    use fleet_events::samples;

    use super::*;

    fn order() -> TaskOrder {
        let mut spec = samples::policy_spec();
        spec.kind = TaskKind::Backup;
        TaskOrder {
            tenant: samples::tenant(),
            task: TaskId::generate(),
            attempt: 3,
            policy: samples::POLICY,
            spec: Box::new(spec),
            dispatched_at: samples::at(0),
        }
    }

    fn status(percent: f64) -> String {
        format!(
            r#"{{"message_type":"status","percent_done":{percent},"total_files":4,"files_done":1,"total_bytes":1000,"bytes_done":{},"seconds_elapsed":2,"error_count":1,"current_files":["/home/x/secret.txt"]}}"#,
            (percent * 1000.0) as u64
        )
    }

    #[test]
    fn the_throttle_lets_the_first_through_then_one_a_second() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut throttle = Throttle::new(Duration::from_secs(1));
        let passed: Vec<u64> = [0, 10, 500, 999, 1000, 1001, 1500, 2100, 2200, 5000, 5999]
            .into_iter()
            .filter(|&n| throttle.admit(ms(n)))
            .collect();
        assert_eq!(passed, [0, 1000, 2100, 5000]);
        // A clock that went backwards holds the status back (no underflow).
        assert!(!throttle.admit(ms(4000)));
    }

    #[test]
    fn status_lines_become_throttled_messages_without_file_names() {
        let (sink, _rx) = ProgressSink::new(AgentId::generate(), 4);
        let order = order();
        let mut reporter = Reporter::new(&sink, &order);
        let t0 = Instant::now();
        let at = samples::at(7);
        let seen: Vec<Progress> = [
            (0, status(0.1)),
            (300, "not json".to_owned()),
            (400, status(0.2)),
            (1000, r#"{"message_type":"summary"}"#.to_owned()),
            (1100, status(0.5)),
            (2049, status(0.6)),
            (2100, status(0.7)),
        ]
        .into_iter()
        .filter_map(|(ms, line)| reporter.line_at(&line, t0 + Duration::from_millis(ms), at))
        .collect();
        assert_eq!(seen.len(), 3, "{seen:?}");
        let first = &seen[0];
        assert_eq!(
            (first.task, first.attempt, first.kind, &first.tenant),
            (order.task, 3, TaskKind::Backup, &order.tenant)
        );
        assert_eq!(
            (first.agent, first.at, first.done_bp),
            (sink.agent, at, 1000)
        );
        assert_eq!((first.bytes_done, first.bytes_total), (100, 1000));
        assert_eq!(
            (first.files_done, first.files_total, first.errors),
            (1, 4, 1)
        );
        assert_eq!(
            (seen[1].done_bp, seen[2].done_bp),
            (5000, 7000),
            "a hair early passes"
        );
        let wire = first.to_wire().expect("encodes");
        assert!(
            !String::from_utf8_lossy(&wire).contains("secret"),
            "no file name on the wire"
        );
    }

    #[tokio::test]
    async fn a_full_queue_drops_instead_of_waiting() {
        let (sink, mut rx) = ProgressSink::new(AgentId::generate(), 2);
        let order = order();
        let progress = message(sink.agent, &order, &Status::default(), samples::at(0));
        for _ in 0..5 {
            sink.offer(progress.clone());
        }
        assert!(rx.try_recv().is_ok() && rx.try_recv().is_ok());
        assert!(rx.try_recv().is_err(), "only two were kept");
        drop(rx);
        sink.offer(progress);
    }
}

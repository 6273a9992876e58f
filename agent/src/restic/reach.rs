//! Tells, from restic's output, a repository that cannot be reached while restic opens it.
//!
//! From 0.17 restic retries a failed backend request for up to 15 minutes before it gives
//! up, printing one line per retry on stderr:
//!
//! ```text
//! Stat(<config/>) returned error, retrying after 864.716984ms: Head "http://:***@127.0.0.1:1/repo/config": dial tcp 127.0.0.1:1: connect: connection refused
//! ```
//!
//! That is right in the middle of a backup (a network blip should not throw away an hour
//! of work), but while the repository is being opened nothing is lost by stopping, and an
//! unreachable repository would otherwise hold an agent slot for 15 minutes per task before
//! the control plane hears about it and its retry and circuit rules can act. So: restic
//! that has been retrying to read the repository's config for longer than the agent's
//! `unreachableAfterSecs`, without a line of anything else, is stopped and the run fails as
//! `network`, with restic's last error. Any other line (progress on stdout, a lock wait, a
//! warning) means the repository was reached, and the watch is off for the rest of the run;
//! but not what `check` prints before it opens the repository ([`PREAMBLE`]).

use std::time::{Duration, Instant};

use fleet_events::event::{ErrorClass, TaskError};

/// What restic prints for each retry of a backend request.
const RETRYING: &str = " returned error, retrying after ";
/// The request is about the repository's config file: the first thing read on opening.
const CONFIG: &str = "(<config/";
/// What restic prints before it opens the repository (`check`, on stdout, which may reach
/// the agent after the first retries on stderr): no sign that it was reached.
const PREAMBLE: &[&str] = &[
    "using temporary cache in ",
    "create exclusive lock for repository",
];

/// Watches one run's output until the repository is reached.
#[derive(Debug, Clone)]
pub struct ReachWatch {
    limit: Duration,
    /// When the first retry to read the config was seen; `None` before it and once reached.
    since: Option<Instant>,
    /// The repository was reached (or something else was printed): the watch is over.
    reached: bool,
    /// The error of the last retry, as restic wrote it.
    last_error: String,
}

impl ReachWatch {
    /// Stops restic after `limit` of retrying to reach the repository.
    pub fn new(limit: Duration) -> Self {
        Self {
            limit,
            since: None,
            reached: false,
            last_error: String::new(),
        }
    }

    /// One line restic printed at `now` (`stderr`: which stream).
    pub fn line(&mut self, stderr: bool, line: &str, now: Instant) {
        if self.reached {
            return;
        }
        match line.split_once(RETRYING) {
            Some((request, rest)) if stderr && request.contains(CONFIG) => {
                self.since.get_or_insert(now);
                // `<delay>: <error>`
                self.last_error = rest.split_once(": ").map_or(rest, |(_, e)| e).to_owned();
            }
            _ if line.trim().is_empty() || PREAMBLE.iter().any(|p| line.starts_with(p)) => {}
            _ => {
                self.reached = true;
                self.since = None;
            }
        }
    }

    /// When to give up, if restic is retrying to reach the repository.
    pub fn give_up_at(&self) -> Option<Instant> {
        self.since.map(|since| since + self.limit)
    }

    /// The failure of a run stopped because the repository could not be reached.
    pub fn error(&self) -> TaskError {
        let message = format!(
            "the repository could not be reached for {} s (restic kept retrying; the agent \
             stopped it after unreachableAfterSecs): {}",
            self.limit.as_secs(),
            self.last_error
        );
        TaskError::new(ErrorClass::Network, &message, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFUSED: &str = "Stat(<config/>) returned error, retrying after 864.716984ms: Head \
        \"http://:***@127.0.0.1:1/repo/config\": dial tcp 127.0.0.1:1: connect: connection refused";

    #[test]
    fn retries_to_read_the_config_start_the_clock_and_name_the_error() {
        let t0 = Instant::now();
        let mut watch = ReachWatch::new(Duration::from_secs(120));
        assert_eq!(watch.give_up_at(), None);
        watch.line(true, REFUSED, t0);
        watch.line(true, REFUSED, t0 + Duration::from_secs(3));
        // The clock runs from the first retry.
        assert_eq!(watch.give_up_at(), Some(t0 + Duration::from_secs(120)));
        let error = watch.error();
        assert_eq!(error.class, ErrorClass::Network);
        assert!(
            error.message.ends_with(
                "Head \"http://:***@127.0.0.1:1/repo/config\": dial tcp 127.0.0.1:1: connect: \
                 connection refused"
            ),
            "{}",
            error.message
        );
        assert!(error.message.contains("for 120 s"), "{}", error.message);
    }

    #[test]
    fn anything_else_means_the_repository_was_reached() {
        let t0 = Instant::now();
        for (stderr, line) in [
            (false, r#"{"message_type":"status","percent_done":0}"#),
            (true, "repo already locked, waiting up to 2m0s for the lock"),
        ] {
            let mut watch = ReachWatch::new(Duration::from_secs(120));
            watch.line(true, REFUSED, t0);
            watch.line(stderr, line, t0);
            assert_eq!(watch.give_up_at(), None, "{line}");
            // A later retry (of anything, config included) is restic's own business.
            watch.line(true, REFUSED, t0);
            assert_eq!(watch.give_up_at(), None, "{line}");
        }
    }

    /// `check` prints its cache and lock lines on stdout before it opens the repository;
    /// they reach the agent before or after the first retries, and change nothing.
    #[test]
    fn what_check_prints_before_opening_is_no_sign_of_reaching() {
        let t0 = Instant::now();
        let mut watch = ReachWatch::new(Duration::from_secs(120));
        watch.line(
            false,
            "using temporary cache in /tmp/restic-check-cache-1711596360",
            t0,
        );
        watch.line(true, REFUSED, t0);
        watch.line(false, "create exclusive lock for repository", t0);
        assert_eq!(watch.give_up_at(), Some(t0 + Duration::from_secs(120)));
    }

    #[test]
    fn retries_of_other_files_and_blank_lines_do_not_start_the_clock() {
        let mut watch = ReachWatch::new(Duration::from_secs(120));
        let now = Instant::now();
        watch.line(true, "", now);
        assert_eq!(watch.give_up_at(), None);
        watch.line(
            true,
            "Save(<data/1234>) returned error, retrying after 1s: connection reset by peer",
            now,
        );
        assert_eq!(watch.give_up_at(), None);
        watch.line(true, REFUSED, now);
        assert_eq!(watch.give_up_at(), None, "the save means it was reached");
    }
}

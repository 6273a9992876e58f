//! Failure classes from restic's exit code and stderr.
//!
//! Call [`classify`] (or [`failure`]) only for a run that failed: exit code 0 is success,
//! and exit code 3 ([`is_partial_success`]) is a snapshot that was saved without some
//! unreadable files, which the caller records as a success with `unreadable_files`.
//!
//! Rules, first match wins:
//!
//! | # | condition | class |
//! |---|---|---|
//! | 1 | the run passed its timeout (the agent stopped it) | `Timeout` |
//! | 2 | exit 10, restic >= 0.17 | `MissingRepository` |
//! | 3 | exit 11, restic >= 0.17 | `Lock` |
//! | 4 | exit 12, restic >= 0.17.1 | `Auth` |
//! | 5 | exit 130 (SIGINT), or no exit code (killed by a signal) | `Resource` |
//! | 6 | stderr: `repository is already locked` | `Lock` |
//! | 7 | stderr: `wrong password or no key found` | `Auth` |
//! | 8 | stderr: out of disk, memory, file handles or quota | `Resource` |
//! | 9 | stderr: a transport failure (refused, reset, timeout, DNS, 502/503, ...) | `Network` |
//! | 10 | stderr: cloud or ssh credentials refused (`AccessDenied`, `403 Forbidden`, ...) | `Auth` |
//! | 11 | stderr: `Is there a repository at the following location?`, `unable to open config file`, `repository does not exist` | `MissingRepository` |
//! | 12 | stderr: `unable to create lock` | `Lock` |
//! | 13 | anything else | `Permanent` |
//!
//! Why this order:
//! - Exit codes 10 to 12 are only trusted from the release that introduced them; before,
//!   restic exits 1 for all of these and the text rules (6 to 12) tell them apart. The
//!   text rules also apply to newer releases, which still exit 1 for network failures.
//! - 130 and death by a signal mean restic was interrupted: the agent was stopped
//!   (shutdown, operator) or the kernel killed restic (the OOM killer sends SIGKILL). The
//!   cause is the machine, not the repository, so it is a retryable `Resource` failure;
//!   `Lost` is not the agent's to say, it is decided centrally from missed heartbeats.
//! - Network before missing repository: restic 0.14 adds the hint "Is there a repository
//!   at the following location?" to *every* failure to read the config, including a
//!   refused connection, and an unreachable repository must be retried, not given up.
//! - Cloud credentials before missing repository for the same reason (`Access Denied`
//!   while reading the config), after network so that a transient transport error seen
//!   while retrying does not turn a retryable failure into a permanent one.
//! - `unable to create lock` last but one: 0.14 starts the already-locked message with it,
//!   but also failures to write the lock file, which rules 8 and 9 classify better.
//!
//! Text is matched case-insensitively. Texts observed with restic 0.14.0 are in the
//! crate's tests (`restic/captured.rs`).

use fleet_events::event::{ErrorClass, TaskError};

use super::output::ResticVersion;

/// restic's exit code for a snapshot saved without some unreadable files.
const EXIT_PARTIAL: i32 = 3;
/// From 0.17: the repository does not exist.
const EXIT_NO_REPOSITORY: i32 = 10;
/// From 0.17: the repository could not be locked.
const EXIT_LOCK_FAILED: i32 = 11;
/// From 0.17.1: wrong password.
const EXIT_WRONG_PASSWORD: i32 = 12;
/// restic was interrupted (SIGINT).
const EXIT_INTERRUPTED: i32 = 130;

/// Text rules 6 to 12 of the module's table, in order; patterns are lowercase.
const TEXT_RULES: &[(ErrorClass, &[&str])] = &[
    (ErrorClass::Lock, &["repository is already locked"]),
    (ErrorClass::Auth, &["wrong password or no key found"]),
    (
        ErrorClass::Resource,
        &[
            "no space left on device",
            "cannot allocate memory",
            "out of memory",
            "too many open files",
            "disk quota exceeded",
        ],
    ),
    (
        ErrorClass::Network,
        &[
            "connection refused",
            "connection reset",
            "connection timed out",
            "no such host",
            "could not resolve hostname",
            "name or service not known",
            "temporary failure in name resolution",
            "i/o timeout",
            "network is unreachable",
            "no route to host",
            "tls handshake timeout",
            "unexpected eof",
            "502 bad gateway",
            "503 service unavailable",
            "504 gateway timeout",
            "dial tcp",
        ],
    ),
    (
        ErrorClass::Auth,
        &[
            "accessdenied",
            "access denied",
            "403 forbidden",
            "invalidaccesskeyid",
            "signaturedoesnotmatch",
            "permission denied (publickey",
        ],
    ),
    (
        ErrorClass::MissingRepository,
        &[
            "is there a repository at the following location?",
            "unable to open config file",
            "repository does not exist",
        ],
    ),
    (ErrorClass::Lock, &["unable to create lock"]),
];

/// Whether an exit code is restic's "snapshot saved, but some files were unreadable" (3):
/// a success with unreadable files, not a failure.
pub fn is_partial_success(exit_code: Option<i32>) -> bool {
    exit_code == Some(EXIT_PARTIAL)
}

/// The class of a failed run, by the module's table. `exit_code` is `None` when restic
/// was killed by a signal; `timed_out` when the agent stopped it at the run timeout.
pub fn classify(
    version: &ResticVersion,
    exit_code: Option<i32>,
    stderr: &str,
    timed_out: bool,
) -> ErrorClass {
    if timed_out {
        return ErrorClass::Timeout;
    }
    match exit_code {
        Some(EXIT_NO_REPOSITORY) if version.has_typed_exit_codes() => {
            return ErrorClass::MissingRepository;
        }
        Some(EXIT_LOCK_FAILED) if version.has_typed_exit_codes() => return ErrorClass::Lock,
        Some(EXIT_WRONG_PASSWORD) if version.has_wrong_password_exit_code() => {
            return ErrorClass::Auth;
        }
        Some(EXIT_INTERRUPTED) | None => return ErrorClass::Resource,
        Some(_) => {}
    }
    let text = stderr.to_lowercase();
    TEXT_RULES
        .iter()
        .find(|(_, patterns)| patterns.iter().any(|p| text.contains(p)))
        .map_or(ErrorClass::Permanent, |(class, _)| *class)
}

/// The classified error of a failed run: [`classify`]'s class and a message saying how
/// restic ended and what it said last (stderr's tail when it is too long, since restic
/// prints the fatal error last), cut to [`TaskError::MAX_MESSAGE`].
pub fn failure(
    version: &ResticVersion,
    exit_code: Option<i32>,
    stderr: &str,
    timed_out: bool,
) -> TaskError {
    let class = classify(version, exit_code, stderr, timed_out);
    let how = match (timed_out, exit_code) {
        (true, _) => "restic passed the run timeout and was stopped".to_owned(),
        (false, Some(code)) => format!("restic {version} exited with code {code}"),
        (false, None) => format!("restic {version} was killed by a signal"),
    };
    let said = stderr.trim();
    let message = if said.is_empty() {
        how
    } else {
        let budget = TaskError::MAX_MESSAGE.saturating_sub(how.len() + 2);
        format!("{how}: {}", tail(said, budget))
    };
    TaskError::new(class, &message, exit_code)
}

/// The last `max` bytes of `text` at most, starting at a character boundary, with `…`
/// in front when something was cut.
fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let ellipsis = "…";
    let mut start = text.len() - max.saturating_sub(ellipsis.len());
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("{ellipsis}{}", &text[start..])
}

#[cfg(test)]
mod tests;

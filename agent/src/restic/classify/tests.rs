//! Tests of the classification table, on texts captured from restic 0.14 and on texts of
//! other backends and releases.

use super::*;
use crate::restic::captured;

const V0_14: ResticVersion = ResticVersion::new(0, 14, 0);
const V0_17_0: ResticVersion = ResticVersion::new(0, 17, 0);
const V0_17_1: ResticVersion = ResticVersion::new(0, 17, 1);

fn class(stderr: &str) -> ErrorClass {
    classify(&V0_14, Some(1), stderr, false)
}

#[test]
fn captured_0_14_failures() {
    let cases = [
        (captured::WRONG_PASSWORD_STDERR, ErrorClass::Auth),
        (captured::MISSING_REPO_STDERR, ErrorClass::MissingRepository),
        (captured::LOCKED_STDERR, ErrorClass::Lock),
        (captured::REST_UNREACHABLE_STDERR, ErrorClass::Network),
        (captured::SFTP_UNRESOLVABLE_STDERR, ErrorClass::Network),
        (captured::STDIN_INTERRUPTED, ErrorClass::Permanent),
    ];
    for (stderr, expected) in cases {
        assert_eq!(class(stderr), expected, "{stderr}");
    }
}

/// Exit codes and stderr observed from restic 0.18.0 (Debian trixie): the exit code
/// decides, and the text alone (as a 0.14-era reading would see it) agrees.
#[test]
fn captured_0_18_failures() {
    let v0_18 = ResticVersion::parse(captured::VERSION_0_18).unwrap();
    let cases = [
        (
            10,
            captured::MISSING_REPO_0_18_STDERR,
            ErrorClass::MissingRepository,
        ),
        (11, captured::LOCKED_0_18_STDERR, ErrorClass::Lock),
        (12, captured::WRONG_PASSWORD_0_18_STDERR, ErrorClass::Auth),
    ];
    for (code, stderr, expected) in cases {
        assert_eq!(
            classify(&v0_18, Some(code), stderr, false),
            expected,
            "{stderr}"
        );
        assert_eq!(
            classify(&v0_18, Some(code), "", false),
            expected,
            "exit {code}"
        );
        assert_eq!(class(stderr), expected, "{stderr}");
    }
}

#[test]
fn typed_exit_codes_are_trusted_only_from_their_release() {
    let cases = [
        (V0_17_0, 10, ErrorClass::MissingRepository),
        (V0_17_0, 11, ErrorClass::Lock),
        (V0_17_0, 12, ErrorClass::Permanent),
        (V0_17_1, 12, ErrorClass::Auth),
        (V0_14, 10, ErrorClass::Permanent),
        (V0_14, 11, ErrorClass::Permanent),
        (V0_14, 12, ErrorClass::Permanent),
    ];
    for (version, code, expected) in cases {
        assert_eq!(
            classify(&version, Some(code), "Fatal: something", false),
            expected,
            "{version} exit {code}"
        );
    }
}

#[test]
fn text_rules_apply_to_newer_releases_too() {
    let stderr = "Fatal: unable to open config file: dial tcp 10.0.0.1:443: i/o timeout";
    assert_eq!(
        classify(&V0_17_1, Some(1), stderr, false),
        ErrorClass::Network
    );
}

#[test]
fn timeout_and_interruption_come_first() {
    let locked = captured::LOCKED_STDERR;
    assert_eq!(classify(&V0_14, None, locked, true), ErrorClass::Timeout);
    assert_eq!(classify(&V0_14, Some(1), locked, true), ErrorClass::Timeout);
    // restic 0.14 exits 130 on SIGINT (observed: "signal interrupt received, cleaning up").
    let interrupted = "signal interrupt received, cleaning up";
    assert_eq!(
        classify(&V0_14, Some(130), interrupted, false),
        ErrorClass::Resource
    );
    assert_eq!(classify(&V0_14, None, "", false), ErrorClass::Resource);
}

#[test]
fn partial_snapshot_is_not_a_failure() {
    assert!(is_partial_success(Some(3)));
    for code in [None, Some(0), Some(1), Some(130)] {
        assert!(!is_partial_success(code), "{code:?}");
    }
}

#[test]
fn network_resource_and_credential_texts() {
    let cases = [
        (
            "Load(<lock/1>) returned error: connection reset by peer",
            ErrorClass::Network,
        ),
        (
            "Get \"https://s3/\": net/http: TLS handshake timeout",
            ErrorClass::Network,
        ),
        (
            "Fatal: server response unexpected: 503 Service Unavailable",
            ErrorClass::Network,
        ),
        (
            "Save(<data/12>) failed: 502 Bad Gateway",
            ErrorClass::Network,
        ),
        (
            "dial tcp: lookup s3.example: no such host",
            ErrorClass::Network,
        ),
        ("connect: network is unreachable", ErrorClass::Network),
        ("read tcp: unexpected EOF", ErrorClass::Network),
        (
            "write /repo/data/ab/x: no space left on device",
            ErrorClass::Resource,
        ),
        ("fatal error: runtime: out of memory", ErrorClass::Resource),
        ("open /etc/x: too many open files", ErrorClass::Resource),
        ("write /repo/x: disk quota exceeded", ErrorClass::Resource),
        ("fork/exec: cannot allocate memory", ErrorClass::Resource),
        (
            "Fatal: unable to open config file: Stat: Access Denied.\nIs there a repository at the following location?",
            ErrorClass::Auth,
        ),
        ("AccessDenied: Access Denied", ErrorClass::Auth),
        (
            "InvalidAccessKeyId: The AWS Access Key Id you provided does not exist",
            ErrorClass::Auth,
        ),
        ("SignatureDoesNotMatch", ErrorClass::Auth),
        ("client.Head: 403 Forbidden", ErrorClass::Auth),
        ("git@host: Permission denied (publickey).", ErrorClass::Auth),
        (
            "Fatal: repository does not exist: unable to open config file",
            ErrorClass::MissingRepository,
        ),
        (
            "unable to create lock in backend: Save(<lock/ab>): some backend error",
            ErrorClass::Lock,
        ),
        (
            "Fatal: unable to save snapshot: snapshot is empty",
            ErrorClass::Permanent,
        ),
        ("open /srv/data: permission denied", ErrorClass::Permanent),
        ("", ErrorClass::Permanent),
    ];
    for (stderr, expected) in cases {
        assert_eq!(class(stderr), expected, "{stderr}");
    }
}

#[test]
fn order_decides_between_several_matches() {
    let cases = [
        // A failure to write the lock file is about the disk or the network, not a lock.
        (
            "unable to create lock in backend: write: no space left on device",
            ErrorClass::Resource,
        ),
        (
            "unable to create lock in backend: dial tcp 1.2.3.4:443: connection refused",
            ErrorClass::Network,
        ),
        // Already locked wins over anything the lock holder's description might contain.
        (
            "repository is already locked by PID 7 on host-connection-reset by root",
            ErrorClass::Lock,
        ),
        // Transient network noise while retrying, then a wrong password: retry first.
        (
            "connection reset by peer\nFatal: wrong password or no key found",
            ErrorClass::Auth,
        ),
    ];
    for (stderr, expected) in cases {
        assert_eq!(class(stderr), expected, "{stderr}");
    }
}

#[test]
fn failure_says_how_restic_ended_and_what_it_said() {
    let error = failure(&V0_14, Some(1), captured::WRONG_PASSWORD_STDERR, false);
    assert_eq!(error.class, ErrorClass::Auth);
    assert_eq!(error.exit_code, Some(1));
    assert_eq!(
        error.message,
        "restic 0.14.0 exited with code 1: Fatal: wrong password or no key found"
    );

    let error = failure(&V0_14, None, "", true);
    assert_eq!(error.class, ErrorClass::Timeout);
    assert_eq!(
        error.message,
        "restic passed the run timeout and was stopped"
    );

    let error = failure(&V0_14, None, "  \n", false);
    assert_eq!(error.message, "restic 0.14.0 was killed by a signal");
}

#[test]
fn long_stderr_keeps_its_tail() {
    let noise = "é warning: could not read a file\n".repeat(500);
    let stderr = format!("{noise}Fatal: unable to save snapshot: snapshot is empty");
    let error = failure(&V0_14, Some(1), &stderr, false);
    assert!(error.message.len() <= TaskError::MAX_MESSAGE);
    assert!(
        error
            .message
            .starts_with("restic 0.14.0 exited with code 1: …")
    );
    assert!(error.message.ends_with("snapshot is empty"));
}

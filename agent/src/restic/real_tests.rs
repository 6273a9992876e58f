//! The parsers and the classifier against the real restic binary (`$RESTIC` or `restic`
//! on PATH) and temporary repositories. Each test skips, saying so on stderr, when restic
//! is not installed; CI installs it. Run with `--nocapture` to see restic's texts.

use std::ffi::OsString;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use fleet_events::event::ErrorClass;
use tempfile::TempDir;

use super::*;

const PASSWORD: &str = "fleet-agent-test-password";

/// What one restic invocation did.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// restic, its version, and a temporary directory holding repositories and data.
struct Lab {
    program: OsString,
    version: ResticVersion,
    dir: TempDir,
}

impl Lab {
    /// `None`, after saying so, when restic is not installed.
    fn new() -> Option<Self> {
        let program = std::env::var_os("RESTIC").unwrap_or_else(|| "restic".into());
        let output = match Command::new(&program).arg("version").output() {
            Ok(output) => output,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                eprintln!(
                    "SKIPPED: restic is not installed ({}); install it with `apt-get install -y restic`",
                    program.to_string_lossy()
                );
                return None;
            }
            Err(error) => panic!("running {program:?} version: {error}"),
        };
        let text = String::from_utf8_lossy(&output.stdout);
        let version = ResticVersion::parse(&text).expect("restic version output");
        let dir = tempfile::Builder::new()
            .prefix("fleet-agent-restic-")
            .tempdir()
            .expect("a temporary directory");
        Some(Self {
            program,
            version,
            dir,
        })
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// restic on `repo` with `password` in the environment, isolated from the caller's.
    fn command(&self, repo: &Path, password: &str) -> Command {
        let mut command = Command::new(&self.program);
        command
            .arg("--no-cache")
            .arg("-r")
            .arg(repo)
            .env("RESTIC_PASSWORD", password)
            .env_remove("RESTIC_REPOSITORY")
            .env_remove("RESTIC_REPOSITORY_FILE")
            .env_remove("RESTIC_PASSWORD_FILE")
            .env_remove("RESTIC_PASSWORD_COMMAND");
        command
    }

    fn run_on(&self, repo: &Path, password: &str, args: &[&str]) -> Run {
        let output = self
            .command(repo, password)
            .args(args)
            .output()
            .expect("restic runs");
        let run = Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        eprintln!(
            "restic {} -> {:?}\n{}{}",
            args.join(" "),
            run.code,
            run.stdout,
            run.stderr
        );
        run
    }

    /// restic on the lab's repository with the right password.
    fn run(&self, args: &[&str]) -> Run {
        self.run_on(&self.repo(), PASSWORD, args)
    }

    fn init(&self) {
        let run = self.run(&["init"]);
        assert_eq!(run.code, Some(0), "restic init: {}", run.stderr);
    }

    /// A directory with `files` small files, one of them in a subdirectory.
    fn data(&self, files: usize) -> PathBuf {
        let data = self.dir.path().join("data");
        fs::create_dir_all(data.join("sub")).expect("data directory");
        for i in 0..files {
            let name = if i == 0 {
                "sub/first".to_owned()
            } else {
                format!("file-{i}")
            };
            fs::write(data.join(name), format!("content of file {i}\n")).expect("data file");
        }
        data
    }

    fn backup(&self, paths: &[&Path]) -> (Run, BackupOutput) {
        let mut args = vec!["backup", "--json"];
        args.extend(paths.iter().map(|p| p.to_str().expect("a UTF-8 path")));
        let run = self.run(&args);
        let mut output = BackupOutput::new();
        for line in run.stdout.lines().chain(run.stderr.lines()) {
            output.feed(line);
        }
        (run, output)
    }

    fn snapshots(&self) -> Vec<Snapshot> {
        let run = self.run(&["snapshots", "--json"]);
        assert_eq!(run.code, Some(0), "restic snapshots: {}", run.stderr);
        parse_snapshots(&run.stdout).expect("a snapshot listing")
    }
}

/// A child process killed when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_installed_version_parses() {
    let Some(lab) = Lab::new() else { return };
    assert!(
        lab.version >= ResticVersion::new(0, 14, 0),
        "{}",
        lab.version
    );
}

#[test]
fn backup_summary_matches_the_files_and_the_listing() {
    let Some(lab) = Lab::new() else { return };
    lab.init();
    let data = lab.data(5);

    let (run, output) = lab.backup(&[&data]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let summary = output.finish(run.code).expect("a summary line");
    assert_eq!(summary.files_new, 5);
    assert_eq!(summary.files_changed + summary.files_unmodified, 0);
    assert_eq!(summary.total_files_processed, 5);
    assert!(summary.dirs_new >= 2, "data and data/sub: {summary:?}");
    assert!(summary.data_added_bytes > 0 && summary.data_blobs > 0);
    assert_eq!(summary.unreadable_files, 0);
    assert!(output.total_duration_secs().is_some());

    let id = summary.snapshot_id.expect("a snapshot id");
    let snapshots = lab.snapshots();
    assert_eq!(snapshots.len(), 1);
    assert!(snapshots[0].has_id(&id), "{id} in {snapshots:?}");
    assert_eq!(snapshots[0].paths, [data.to_string_lossy()]);

    // Nothing changed: the second backup finds every file unmodified.
    let (run, output) = lab.backup(&[&data]);
    let summary = output.finish(run.code).expect("a summary line");
    assert_eq!((summary.files_new, summary.files_unmodified), (0, 5));
}

#[test]
fn forget_prune_after_three_backups_keeps_one_and_removes_two() {
    let Some(lab) = Lab::new() else { return };
    lab.init();
    let data = lab.data(2);
    let mut last = None;
    for i in 0..3 {
        fs::write(data.join("changing"), format!("version {i}")).expect("data file");
        let (run, output) = lab.backup(&[&data]);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        last = output.finish(run.code).and_then(|s| s.snapshot_id);
    }

    let run = lab.run(&["forget", "--keep-last", "1", "--prune", "--json"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let pruned = parse_forget(&run.stdout).expect("forget's JSON");
    assert_eq!((pruned.snapshots_kept, pruned.snapshots_removed), (1, 2));

    let snapshots = lab.snapshots();
    assert_eq!(snapshots.len(), 1);
    let last = last.expect("the last backup's snapshot id");
    assert!(snapshots[0].has_id(&last), "{last} in {snapshots:?}");
}

#[test]
fn wrong_password_is_auth() {
    let Some(lab) = Lab::new() else { return };
    lab.init();
    let run = lab.run_on(&lab.repo(), "not the password", &["snapshots", "--json"]);
    let expected = expected_code(12, lab.version.has_wrong_password_exit_code());
    assert_eq!(run.code, expected);
    assert!(
        run.stderr.contains("wrong password or no key found"),
        "{}",
        run.stderr
    );
    let error = failure(&lab.version, run.code, &run.stderr, false);
    assert_eq!(error.class, ErrorClass::Auth, "{error:?}");
}

#[test]
fn missing_repository_is_missing_repository() {
    let Some(lab) = Lab::new() else { return };
    let nowhere = lab.dir.path().join("no-repository-here");
    let run = lab.run_on(&nowhere, PASSWORD, &["snapshots", "--json"]);
    assert_eq!(
        run.code,
        expected_code(10, lab.version.has_typed_exit_codes())
    );
    let class = classify(&lab.version, run.code, &run.stderr, false);
    assert_eq!(class, ErrorClass::MissingRepository, "{}", run.stderr);
}

/// Nothing listens where the repository should be. restic before 0.17 gives up at once
/// and its text is classified `network`; 0.17 and later retry for 15 minutes, printing a
/// line per retry, which [`ReachWatch`] must recognise (the agent then stops restic).
#[test]
fn unreachable_rest_server_is_network() {
    use std::io::{BufRead, BufReader};
    let Some(lab) = Lab::new() else { return };
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("its address").port()
    };
    let url = PathBuf::from(format!("rest:http://127.0.0.1:{port}/"));
    let mut child = lab
        .command(&url, PASSWORD)
        .args(["snapshots", "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("restic starts");
    let stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
    let mut child = KillOnDrop(child);
    let mut watch = ReachWatch::new(Duration::from_secs(120));
    let mut text = String::new();
    for line in stderr.lines() {
        let line = line.expect("stderr is read");
        eprintln!("{line}");
        watch.line(true, &line, Instant::now());
        text.push_str(&line);
        text.push('\n');
        if watch.give_up_at().is_some() {
            break;
        }
    }
    if lab.version >= ResticVersion::new(0, 17, 0) {
        assert!(watch.give_up_at().is_some(), "no retry seen:\n{text}");
        let error = watch.error();
        assert_eq!(error.class, ErrorClass::Network);
        assert!(
            error.message.contains("connection refused"),
            "{}",
            error.message
        );
    } else {
        let code = child.0.wait().expect("restic exits").code();
        assert_eq!(code, Some(1));
        let class = classify(&lab.version, code, &text, false);
        assert_eq!(class, ErrorClass::Network, "{text}");
    }
}

#[test]
fn held_lock_is_lock() {
    let Some(lab) = Lab::new() else { return };
    lab.init();
    // `backup --stdin` takes its (shared) lock, then waits for stdin, which stays open
    // until the holder is dropped; prune needs an exclusive lock.
    let holder = lab
        .command(&lab.repo(), PASSWORD)
        .args(["backup", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("restic backup --stdin starts");
    let _holder = KillOnDrop(holder);
    wait_for_a_lock(&lab.repo().join("locks"));

    let run = lab.run(&["prune"]);
    assert_eq!(
        run.code,
        expected_code(11, lab.version.has_typed_exit_codes())
    );
    assert!(
        run.stderr.contains("repository is already locked"),
        "{}",
        run.stderr
    );
    let error = failure(&lab.version, run.code, &run.stderr, false);
    assert_eq!(error.class, ErrorClass::Lock, "{error:?}");
}

#[test]
fn unreadable_file_gives_a_partial_snapshot() {
    // Reading /proc/self/mem at offset 0 fails with EIO for every user.
    let unreadable = Path::new("/proc/self/mem");
    if !unreadable.exists() {
        eprintln!("SKIPPED: no /proc/self/mem on this system");
        return;
    }
    let Some(lab) = Lab::new() else { return };
    lab.init();
    let data = lab.data(3);

    let (run, output) = lab.backup(&[&data, unreadable]);
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert!(is_partial_success(run.code));
    assert_eq!(output.error_count(), 1, "{:?}", output.errors());
    assert_eq!(output.errors()[0].item.as_deref(), Some("/proc/self/mem"));
    let summary = output.finish(run.code).expect("a summary line");
    assert_eq!((summary.files_new, summary.unreadable_files), (3, 1));
    assert!(summary.snapshot_id.is_some());
}

/// The exit code of a failure that has a typed code (`typed`) in releases that have it.
fn expected_code(typed: i32, has_it: bool) -> Option<i32> {
    Some(if has_it { typed } else { 1 })
}

fn wait_for_a_lock(locks: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let held = fs::read_dir(locks).is_ok_and(|mut entries| entries.next().is_some());
        if held {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no lock appeared in {}",
            locks.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

//! A test harness: the real restic, a temporary directory with a password file, data and
//! repositories, and orders to run against them. Skips (saying so) without restic.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fleet_events::event::{BackupSummary, TaskRequest};
use fleet_events::ids::TaskId;
use fleet_events::policy::{PolicySpec, Retention, TaskKind};
use fleet_events::protocol::{ReportStatus, TaskOrder};
use fleet_events::samples;
use fleet_events::settings::{AgentSettings, IoClass};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use crate::executor::{
    Context, CpuLimiter, Executed, HookBook, ProgressSink, RunOutcome, SecretSource, execute,
    unlock,
};
use crate::probe::find_in_path;
use crate::restic::{ResticVersion, Snapshot, parse_snapshots};

pub const PASSWORD: &str = "executor-test-password";
pub const HOST: &str = "fleet-test-host";
/// How long the lab's runs may retry to reach a repository.
pub const UNREACHABLE_IN_TESTS: Duration = Duration::from_secs(4);

pub struct Lab {
    pub restic: PathBuf,
    pub version: ResticVersion,
    pub dir: TempDir,
    pub secrets: HashMap<String, SecretSource>,
    pub settings: AgentSettings,
    /// The CPU quota restic runs under; none unless a test sets one.
    pub cpu: Option<CpuLimiter>,
    /// Where runs report progress; none unless a test sets one.
    pub progress: Option<ProgressSink>,
    /// The hooks policies may name; none unless a test defines some.
    pub hooks: HookBook,
}

impl Lab {
    /// `None`, after saying why, when restic is not installed.
    pub fn new() -> Option<Self> {
        let restic = match std::env::var_os("RESTIC") {
            Some(program) => PathBuf::from(program),
            None => match find_in_path("restic", &std::env::var_os("PATH").unwrap_or_default()) {
                Some(found) => found,
                None => {
                    eprintln!("SKIPPED: restic is not installed (apt-get install -y restic)");
                    return None;
                }
            },
        };
        let out = Command::new(&restic)
            .arg("version")
            .output()
            .expect("restic version");
        let version = ResticVersion::parse(&String::from_utf8_lossy(&out.stdout)).expect("version");
        let dir = tempfile::Builder::new()
            .prefix("fleet-executor-")
            .tempdir()
            .expect("tmp");
        let password_file = dir.path().join("password");
        fs::write(&password_file, PASSWORD).expect("password file");
        let wrong = dir.path().join("wrong-password");
        fs::write(&wrong, "not the password").expect("password file");
        let secrets = HashMap::from([
            ("main".to_owned(), SecretSource::File(password_file)),
            ("wrong".to_owned(), SecretSource::File(wrong)),
        ]);
        let settings = AgentSettings {
            upload_kib_s: Some(100_000),
            nice: 5,
            io_class: IoClass::Idle,
            ..AgentSettings::default()
        };
        Some(Self {
            hooks: HookBook::default(),
            restic,
            version,
            dir,
            secrets,
            settings,
            cpu: None,
            progress: None,
        })
    }

    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// A directory with `files` small files, one in a subdirectory.
    pub fn data(&self, files: usize) -> PathBuf {
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

    /// A task of `kind` on the lab's repository, with secret "main".
    pub fn order(&self, kind: TaskKind, data: &Path) -> TaskOrder {
        let mut spec: PolicySpec = samples::policy_spec();
        spec.kind = kind;
        spec.repository.url = self.repo().to_string_lossy().into_owned();
        spec.repository.secret = "main".into();
        spec.include = vec![data.to_string_lossy().into_owned()];
        spec.exclude = Vec::new();
        // Prune keeps the two newest; backups forget nothing unless a test says so.
        spec.retention = match kind {
            TaskKind::Prune => Retention {
                keep_last: Some(2),
                ..Retention::default()
            },
            _ => Retention::default(),
        };
        spec.execution.host = None;
        spec.execution.tags = vec!["lab".into()];
        spec.execution.init_if_missing = false;
        spec.execution.run_timeout_secs = 60;
        TaskOrder {
            tenant: samples::tenant(),
            task: TaskId::generate(),
            attempt: 1,
            policy: samples::POLICY,
            spec: Box::new(spec),
            dispatched_at: samples::at(0),
        }
    }

    pub fn ctx(&self) -> Context<'_> {
        Context {
            settings: &self.settings,
            secrets: &self.secrets,
            restic: &self.restic,
            hostname: HOST,
            version: &self.version,
            grace: Duration::from_secs(2),
            // Short, for the test of an unreachable repository.
            unreachable_after: UNREACHABLE_IN_TESTS,
            lock_wait: crate::executor::LOCK_WAIT,
            cpu: self.cpu.as_ref(),
            progress: self.progress.as_ref(),
            hooks: &self.hooks,
        }
    }

    pub async fn execute(&self, order: &TaskOrder, cancel: CancellationToken) -> RunOutcome {
        self.execute_all(order, cancel).await.outcome
    }

    /// [`Lab::execute`] with the retention report and the listing after a backup.
    pub async fn execute_all(&self, order: &TaskOrder, cancel: CancellationToken) -> Executed {
        execute(order, None, &self.ctx(), cancel).await
    }

    /// Runs `order` with an operator's `request` (a restore, a refresh).
    pub async fn execute_request(&self, order: &TaskOrder, request: &TaskRequest) -> Executed {
        execute(order, Some(request), &self.ctx(), CancellationToken::new()).await
    }

    /// A browse request's page on the lab's repository, through the executor.
    pub async fn browse(
        &self,
        request: &fleet_events::browse::BrowseRequest,
    ) -> Result<fleet_events::browse::BrowsePage, fleet_events::event::TaskError> {
        let timeout = Duration::from_secs(60);
        crate::executor::browse::list(request, &self.ctx(), timeout, CancellationToken::new()).await
    }

    /// `restic unlock` on the repository of `order`, through the executor.
    pub async fn unlock(&self, order: &TaskOrder) -> RunOutcome {
        let timeout = Duration::from_secs(30);
        unlock(order, &self.ctx(), timeout, CancellationToken::new()).await
    }

    /// The names of the lock files in the lab's repository (complete ones only).
    pub fn locks(&self) -> Vec<String> {
        let mut names: Vec<String> = match fs::read_dir(self.repo().join("locks")) {
            Ok(entries) => entries
                .map(|e| {
                    e.expect("lock entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                // restic's local backend writes `<id>-tmp-<n>` and renames it: a restic
                // killed in between leaves a partial file that is no lock.
                .filter(|name| !name.contains("-tmp-"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("locks: {e}"),
        };
        names.sort();
        names
    }

    /// A `restic backup --stdin` that holds its lock on the lab's repository until its
    /// stdin is closed; returned once its lock is there.
    pub fn holding_a_lock(&self) -> Child {
        let before = self.locks().len();
        let child = Command::new(&self.restic)
            .args([
                "--no-cache",
                "backup",
                "--stdin",
                "--stdin-filename",
                "held",
            ])
            .env("RESTIC_REPOSITORY", self.repo())
            .env("RESTIC_PASSWORD", PASSWORD)
            .env_remove("RESTIC_PASSWORD_FILE")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("restic backup --stdin");
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.locks().len() == before {
            assert!(Instant::now() < deadline, "restic took no lock");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    /// Runs `order`, expecting it to finish with a report.
    pub async fn report(&self, order: &TaskOrder) -> ReportStatus {
        match self.execute(order, CancellationToken::new()).await {
            RunOutcome::Finished(status) => status,
            RunOutcome::Cancelled => panic!("cancelled without a cancel"),
        }
    }

    pub async fn init(&self) {
        let mut order = self.order(TaskKind::Check, Path::new("/"));
        order.spec.execution.init_if_missing = true;
        let status = self.report(&order).await;
        assert!(matches!(status, ReportStatus::Succeeded(_)), "{status:?}");
    }

    /// A backup of `data` that must succeed; its summary.
    pub async fn backup(&self, data: &Path) -> (TaskOrder, BackupSummary) {
        let order = self.order(TaskKind::Backup, data);
        match self.report(&order).await {
            ReportStatus::Succeeded(summary) => match summary.detail {
                fleet_events::event::RunDetail::Backup(backup) => (order, backup),
                other => panic!("not a backup summary: {other:?}"),
            },
            other => panic!("backup failed: {other:?}"),
        }
    }

    pub fn snapshots(&self) -> Vec<Snapshot> {
        let out = Command::new(&self.restic)
            .args(["--no-cache", "snapshots", "--json"])
            .env("RESTIC_REPOSITORY", self.repo())
            .env("RESTIC_PASSWORD", PASSWORD)
            .env_remove("RESTIC_PASSWORD_FILE")
            .output()
            .expect("restic snapshots");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        parse_snapshots(&String::from_utf8_lossy(&out.stdout)).expect("a listing")
    }

    /// A backup of `path` made by hand with restic, as an operator would (no fleet tags,
    /// restic's own host name); its full id.
    pub fn hand_backup(&self, path: &Path) -> String {
        let out = Command::new(&self.restic)
            .args(["--no-cache", "backup", "--json"])
            .arg(path)
            .env("RESTIC_REPOSITORY", self.repo())
            .env("RESTIC_PASSWORD", PASSWORD)
            .env_remove("RESTIC_PASSWORD_FILE")
            .output()
            .expect("restic backup");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let short = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|line| match crate::restic::parse_line(line) {
                crate::restic::Line::Summary { summary, .. } => summary.snapshot_id,
                _ => None,
            })
            .expect("a summary with the snapshot id");
        let snapshots = self.snapshots();
        let made = snapshots.iter().find(|s| s.has_id(&short));
        made.expect("the snapshot is listed").id.clone()
    }

    /// A FIFO nobody writes to: restic blocks opening it as its password file.
    pub fn hanging_secret(&mut self) -> &'static str {
        let fifo = self.dir.path().join("password-fifo");
        let made = Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        self.secrets.insert("hang".into(), SecretSource::File(fifo));
        "hang"
    }
}

//! One fixed example envelope of every event type: the golden wire-format files, the
//! decoder's fuzz corpus, benchmarks and other crates' tests are built from these.

mod notify;

pub use notify::{message, notification, rule, rule_spec};

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use crate::envelope::{Envelope, SCHEMA_VERSION};
use crate::event::{
    AgentEvent, BackupSummary, ErrorClass, Event, EventType, ExhaustedReason, HookOutcome, HookRun,
    InterruptedAttempt, LostReason, Overwrite, PolicyEvent, PruneSummary, RefreshSummary,
    RepoEvent, RestoreRequest, RestoreSummary, RetentionOutcome, Role, RunDetail, RunSummary,
    SkipReason, SnapshotInfo, SnapshotListing, TaskError, TaskEvent, TaskRequest, TenantEvent,
    UnlockOutcome,
};
use crate::ids::{AgentId, CorrelationId, EventId, PolicyId, RepoId, TaskId, TenantId, TokenId};
use crate::policy::{
    Execution, HookStage, MissedRun, Overlap, PolicyHooks, PolicySpec, RepositoryRef, Retention,
    RetryBudget, TaskKind,
};
use crate::protocol::ReportStatus;
use crate::schedule::Schedule;
use crate::settings::{AgentSettings, IoClass, KindLimits};

/// The sample tenant.
pub fn tenant() -> TenantId {
    TenantId::new("acme").unwrap_or_else(|_| unreachable!("a valid literal"))
}
/// The sample agent.
pub const AGENT: AgentId =
    AgentId::from_uuid(Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0a01));
/// The sample policy.
pub const POLICY: PolicyId =
    PolicyId::from_uuid(Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0b01));
/// The sample task.
pub const TASK: TaskId =
    TaskId::from_uuid(Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0c01));

/// A fixed instant: 2026-11-22T02:13:20Z plus `secs`.
pub fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_795_313_600 + secs, 0)
        .single()
        .unwrap_or(DateTime::UNIX_EPOCH)
}

/// A backup policy using most of the model.
pub fn policy_spec() -> PolicySpec {
    PolicySpec {
        name: "nightly home".into(),
        schedule: Schedule::Cron {
            expr: "0 2 * * *".into(),
            timezone: "Europe/Berlin".into(),
        },
        kind: TaskKind::Backup,
        repository: RepositoryRef {
            url: "sftp:backup@nas:/srv/restic".into(),
            secret: "nas-main".into(),
        },
        include: vec!["/home".into(), "/etc".into()],
        exclude: vec!["*.tmp".into()],
        retention: Retention {
            keep_daily: Some(7),
            keep_weekly: Some(4),
            keep_within: Some("14d".into()),
            keep_tags: vec!["keep".into()],
            ..Retention::default()
        },
        execution: Execution {
            run_timeout_secs: 7200,
            tags: vec!["home".into()],
            host: Some("db-1".into()),
            init_if_missing: true,
        },
        retry: RetryBudget::default(),
        overlap: Overlap::Forbid,
        missed: MissedRun::RunOnce {
            starting_deadline_secs: 3600,
        },
        priority: 7,
        jitter_secs: 600,
        hooks: PolicyHooks::default(),
    }
}

/// [`policy_spec`] with hooks in every stage (schema 2 on the wire).
pub fn hooked_spec() -> PolicySpec {
    PolicySpec {
        hooks: PolicyHooks {
            before: vec!["dump-db".into(), "snapshot-lvm".into()],
            after: vec!["drop-lvm".into()],
            on_success: vec!["ping-monitor".into()],
            on_failure: vec!["page-oncall".into()],
            retry_on_failure: true,
        },
        ..policy_spec()
    }
}

/// A hook run of stage `stage` ending with `outcome`.
pub fn hook_run(stage: HookStage, outcome: HookOutcome) -> HookRun {
    HookRun {
        name: "dump-db".into(),
        stage,
        outcome,
        duration_ms: 1250,
        output: "pg_dump: dumping contents of table \"public.orders\"\n".into(),
        output_cut: true,
    }
}

/// Agent settings with every option set.
pub fn agent_settings() -> AgentSettings {
    AgentSettings {
        max_concurrent: 4,
        per_kind: KindLimits {
            backup: Some(2),
            check: Some(1),
            prune: Some(1),
        },
        cpu_quota_percent: Some(50),
        upload_kib_s: Some(10_240),
        download_kib_s: None,
        nice: 10,
        io_class: IoClass::BestEffort { level: 7 },
    }
}

fn task(event: TaskEvent) -> Event {
    Event::Task { task: TASK, event }
}

fn agent(event: AgentEvent) -> Event {
    Event::Agent {
        agent: AGENT,
        event,
    }
}

fn policy(event: PolicyEvent) -> Event {
    Event::Policy {
        policy: POLICY,
        event,
    }
}

/// The sample event of type `t`.
pub fn event(t: EventType) -> Event {
    use EventType as T;
    if let Some(event) = notify::event(t) {
        return event;
    }
    match t {
        T::TenantCreated => Event::Tenant(TenantEvent::Created {
            name: "ACME Corp".into(),
        }),
        T::TenantTokenIssued => Event::Tenant(TenantEvent::TokenIssued {
            token: TokenId::from_uuid(Uuid::from_u128(0xd01)),
            role: Role::ReadOnly,
            label: "dashboard".into(),
            sha256: [7; 32],
        }),
        T::TenantTokenRevoked => Event::Tenant(TenantEvent::TokenRevoked {
            token: TokenId::from_uuid(Uuid::from_u128(0xd01)),
        }),
        T::AgentRegistered => agent(AgentEvent::Registered {
            name: "db-1".into(),
            hostname: "db-1.example.net".into(),
            settings: agent_settings(),
        }),
        T::AgentSettingsChanged => agent(AgentEvent::SettingsChanged {
            settings: agent_settings(),
        }),
        T::AgentCameOnline => agent(AgentEvent::CameOnline {
            agent_version: "0.1.0".into(),
            restic_version: "0.14.0".into(),
        }),
        T::AgentWentOffline => agent(AgentEvent::WentOffline { last_seen: at(-90) }),
        T::AgentDecommissioned => agent(AgentEvent::Decommissioned),
        T::AgentKeyAuthorized => agent(AgentEvent::KeyAuthorized {
            nkey: "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4".into(),
        }),
        T::PolicyCreated => policy(PolicyEvent::Created {
            spec: Box::new(policy_spec()),
        }),
        T::PolicyUpdated => policy(PolicyEvent::Updated {
            spec: Box::new(policy_spec()),
        }),
        T::PolicyPaused => policy(PolicyEvent::Paused),
        T::PolicyResumed => policy(PolicyEvent::Resumed),
        T::PolicyDeleted => policy(PolicyEvent::Deleted),
        T::PolicyAssigned => policy(PolicyEvent::AssignedToAgent { agent: AGENT }),
        T::PolicyUnassigned => policy(PolicyEvent::UnassignedFromAgent { agent: AGENT }),
        T::TaskScheduled => task(TaskEvent::Scheduled {
            policy: POLICY,
            agent: AGENT,
            fire_at: at(0),
            run_at: at(137),
            spec: Box::new(policy_spec()),
        }),
        T::TaskSkipped => task(TaskEvent::Skipped {
            policy: POLICY,
            agent: AGENT,
            fire_at: at(0),
            reason: SkipReason::Overlap {
                running: TaskId::from_uuid(Uuid::from_u128(0xc00)),
            },
        }),
        T::TaskDispatched => task(TaskEvent::Dispatched {
            agent: AGENT,
            attempt: 1,
        }),
        T::TaskAcknowledged => task(TaskEvent::Acknowledged { attempt: 1 }),
        T::TaskStarted => task(TaskEvent::Started { attempt: 1 }),
        T::TaskSucceeded => task(TaskEvent::Succeeded {
            attempt: 1,
            summary: RunSummary {
                kind: TaskKind::Backup,
                duration_ms: 61_250,
                detail: RunDetail::Backup(BackupSummary {
                    snapshot_id: Some("5e1c0a3f".into()),
                    files_new: 12,
                    files_changed: 3,
                    files_unmodified: 4000,
                    dirs_new: 1,
                    dirs_changed: 2,
                    dirs_unmodified: 300,
                    data_blobs: 20,
                    tree_blobs: 4,
                    data_added_bytes: 1_048_576,
                    total_files_processed: 4015,
                    total_bytes_processed: 987_654_321,
                    unreadable_files: 0,
                }),
            },
        }),
        T::TaskFailed => task(TaskEvent::Failed {
            attempt: 1,
            error: TaskError::new(
                ErrorClass::Lock,
                "unable to create lock in backend: repository is already locked",
                Some(1),
            ),
        }),
        T::TaskRetryScheduled => task(TaskEvent::RetryScheduled {
            attempt: 1,
            due_at: at(300),
            delay_ms: 23_456,
        }),
        T::TaskRetryDue => task(TaskEvent::RetryDue),
        T::TaskExhausted => task(TaskEvent::Exhausted {
            attempts: 6,
            reason: ExhaustedReason::NotRetryable(ErrorClass::Auth),
        }),
        T::TaskCancelled => task(TaskEvent::Cancelled {
            reason: "replaced by a newer run".into(),
        }),
        T::TaskLost => task(TaskEvent::Lost {
            attempt: 1,
            reason: LostReason::LeaseExpired,
        }),
        T::TaskUnlockRan => task(TaskEvent::UnlockRan {
            attempt: 2,
            interrupted: interrupted(),
            outcome: UnlockOutcome::Unlocked,
        }),
        T::TaskRetentionApplied => task(retention_event(2, RetentionOutcome::Applied)),
        T::TaskHookRan => task(TaskEvent::HookRan {
            attempt: 1,
            hook: hook_run(HookStage::Before, HookOutcome::Exited(0)),
        }),
        T::RepoCircuitOpened => Event::Repo {
            repo: RepoId::for_url("sftp:backup@nas:/srv/restic"),
            event: RepoEvent::CircuitOpened {
                until: at(60),
                failures: 5,
            },
        },
        T::RepoCircuitClosed => Event::Repo {
            repo: RepoId::for_url("sftp:backup@nas:/srv/restic"),
            event: RepoEvent::CircuitClosed,
        },
        T::TaskRequested => task(TaskEvent::Requested {
            policy: POLICY,
            agent: AGENT,
            run_at: at(5),
            spec: Box::new(PolicySpec {
                kind: TaskKind::Restore,
                ..policy_spec()
            }),
            request: TaskRequest::Restore(restore_request()),
            by: "ops".into(),
        }),
        T::RepoSnapshotsChanged => Event::Repo {
            repo: RepoId::for_url("sftp:backup@nas:/srv/restic"),
            event: RepoEvent::SnapshotsChanged {
                task: TASK,
                agent: AGENT,
                listed_at: at(7),
                added: vec![snapshot(1)],
                removed: vec![snapshot(2)],
            },
        },
        _ => unreachable!("notify::event covers {t:?}"),
    }
}

/// A sample restore of one file into `/var/restore`.
pub fn restore_request() -> RestoreRequest {
    RestoreRequest {
        snapshot: "5e1c0a3f".repeat(8),
        include: vec!["/srv/data/report.txt".into()],
        target: "/var/restore".into(),
        dry_run: false,
        overwrite: Overwrite::IfChanged,
    }
}

/// Sample snapshot `n`, made by the sample policy's task.
pub fn snapshot(n: u8) -> SnapshotInfo {
    SnapshotInfo {
        id: format!("{n:02x}").repeat(32),
        time: at(i64::from(n) * 60),
        host: "db-1".into(),
        paths: vec!["/srv/data".into()],
        more_paths: 0,
        tags: vec![format!("policy:{POLICY}"), format!("task:{TASK}")],
        size_bytes: Some(987_654_321),
        files: Some(4015),
    }
}

/// A sample progress of the sample task's first attempt: 42.5 % of a backup.
pub fn progress() -> crate::protocol::Progress {
    crate::protocol::Progress {
        schema: SCHEMA_VERSION,
        agent: AGENT,
        tenant: tenant(),
        task: TASK,
        attempt: 1,
        kind: TaskKind::Backup,
        at: at(8),
        done_bp: 4250,
        bytes_done: 425_000_000,
        bytes_total: 1_000_000_000,
        files_done: 1200,
        files_total: 4015,
        seconds_elapsed: 31,
        seconds_remaining: Some(42),
        errors: 0,
    }
}

/// A sample listing in one part, holding snapshots 1 and 3.
pub fn listing() -> SnapshotListing {
    SnapshotListing {
        listed_at: at(7),
        part: 0,
        parts: 1,
        after: None,
        through: None,
        snapshots: vec![snapshot(1), snapshot(3)],
    }
}

/// The attempts a sample unlock names: the sample task's first, and another task's.
pub fn interrupted() -> Vec<InterruptedAttempt> {
    vec![
        InterruptedAttempt {
            task: TASK,
            attempt: 1,
        },
        InterruptedAttempt {
            task: TaskId::from_uuid(Uuid::from_u128(0xc02)),
            attempt: 3,
        },
    ]
}

/// A failed `restic unlock`, as a sample.
pub fn unlock_failed() -> UnlockOutcome {
    UnlockOutcome::Failed(TaskError::new(
        ErrorClass::Auth,
        "Fatal: wrong password or no key found",
        Some(1),
    ))
}

/// A sample retention after a backup: with `Applied`, 3 kept and 2 removed (restic 0.14's
/// short ids); with a failure, nothing.
pub fn retention_report(outcome: RetentionOutcome) -> ReportStatus {
    let (kept, removed, removed_ids) = retention_counts(&outcome);
    ReportStatus::RetentionApplied {
        kept,
        removed,
        removed_ids,
        outcome,
    }
}

/// The event of [`retention_report`] for `attempt`.
pub fn retention_event(attempt: u32, outcome: RetentionOutcome) -> TaskEvent {
    let (kept, removed, removed_ids) = retention_counts(&outcome);
    TaskEvent::RetentionApplied {
        attempt,
        kept,
        removed,
        removed_ids,
        outcome,
    }
}

fn retention_counts(outcome: &RetentionOutcome) -> (u64, u64, Vec<String>) {
    match outcome {
        RetentionOutcome::Applied => (3, 2, vec!["481bd44e".into(), "bdda295f".into()]),
        RetentionOutcome::Failed(_) => (0, 0, Vec::new()),
    }
}

/// A failed `restic forget` after a backup (another restic held the lock), as a sample.
pub fn retention_failed() -> RetentionOutcome {
    RetentionOutcome::Failed(TaskError::new(
        ErrorClass::Lock,
        "unable to create lock in backend: repository is already locked by PID 21630 on vm by \
         root (UID 0, GID 0)",
        Some(1),
    ))
}

/// The sample event of type `t` in a fixed envelope.
pub fn envelope(t: EventType) -> Envelope {
    let event = event(t);
    Envelope {
        schema: event.schema(),
        id: EventId::from_uuid(Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_e001)),
        at: at(1),
        tenant: tenant(),
        correlation: CorrelationId::from_uuid(Uuid::from_u128(0xf001)),
        causation: Some(EventId::from_uuid(Uuid::from_u128(0xe000))),
        event,
    }
}

/// One sample envelope of every event type, named by the type, then one of every nested
/// variant the first set leaves out, named `<type>+<variant>`.
pub fn all() -> Vec<(String, Envelope)> {
    let mut out: Vec<(String, Envelope)> = EventType::ALL
        .iter()
        .map(|t| (t.name().to_owned(), envelope(*t)))
        .collect();
    for (name, event) in variants() {
        let mut e = envelope(EventType::TenantCreated);
        e.schema = event.schema();
        e.event = event;
        out.push((name, e));
    }
    let mut uncaused = envelope(EventType::TaskRetryDue);
    uncaused.causation = None;
    out.push(("task.retry_due+uncaused".into(), uncaused));
    out
}

fn succeeded(kind: TaskKind, detail: RunDetail) -> Event {
    task(TaskEvent::Succeeded {
        attempt: 2,
        summary: RunSummary {
            kind,
            duration_ms: 1500,
            detail,
        },
    })
}

fn variants() -> Vec<(String, Event)> {
    let mut out = vec![
        (
            "task.succeeded+check".into(),
            succeeded(TaskKind::Check, RunDetail::Check),
        ),
        (
            "task.succeeded+prune".into(),
            succeeded(
                TaskKind::Prune,
                RunDetail::Prune(PruneSummary {
                    snapshots_kept: 11,
                    snapshots_removed: 3,
                }),
            ),
        ),
        (
            "task.skipped+missed".into(),
            task(TaskEvent::Skipped {
                policy: POLICY,
                agent: AGENT,
                fire_at: at(0),
                reason: SkipReason::Missed,
            }),
        ),
        (
            "task.exhausted+budget_spent".into(),
            task(TaskEvent::Exhausted {
                attempts: 6,
                reason: ExhaustedReason::BudgetSpent,
            }),
        ),
    ];
    for (name, reason) in [
        ("agent_restarted", LostReason::AgentRestarted),
        ("agent_decommissioned", LostReason::AgentDecommissioned),
    ] {
        out.push((
            format!("task.lost+{name}"),
            task(TaskEvent::Lost { attempt: 1, reason }),
        ));
    }
    for class in ErrorClass::ALL {
        let error = TaskError::new(class, class.as_str(), None);
        out.push((
            format!("task.failed+{}", class.as_str()),
            task(TaskEvent::Failed { attempt: 3, error }),
        ));
    }
    out.push((
        "task.unlock_ran+failed".into(),
        task(TaskEvent::UnlockRan {
            attempt: 2,
            interrupted: interrupted(),
            outcome: unlock_failed(),
        }),
    ));
    out.push((
        "task.retention_applied+failed".into(),
        task(retention_event(2, retention_failed())),
    ));
    out.push((
        "task.requested+refresh".into(),
        task(TaskEvent::Requested {
            policy: POLICY,
            agent: AGENT,
            run_at: at(5),
            spec: Box::new(PolicySpec {
                kind: TaskKind::Refresh,
                ..policy_spec()
            }),
            request: TaskRequest::Refresh,
            by: "ops".into(),
        }),
    ));
    out.push((
        "task.succeeded+restore".into(),
        succeeded(
            TaskKind::Restore,
            RunDetail::Restore(RestoreSummary {
                snapshot: "5e1c0a3f".repeat(8),
                dry_run: false,
                files_restored: 3,
                bytes_restored: 4096,
                files_skipped: 1,
                errors: 1,
                error_samples: vec!["/srv/data/locked.db: permission denied".into()],
            }),
        ),
    ));
    out.push((
        "task.succeeded+refresh".into(),
        succeeded(
            TaskKind::Refresh,
            RunDetail::Refresh(RefreshSummary { snapshots: 42 }),
        ),
    ));
    for (name, role) in [("admin", Role::Admin), ("enroll", Role::Enroll)] {
        out.push((
            format!("tenant.token_issued+{name}"),
            Event::Tenant(TenantEvent::TokenIssued {
                token: TokenId::from_uuid(Uuid::from_u128(0xd02)),
                role,
                label: name.into(),
                sha256: [1; 32],
            }),
        ));
    }
    let interval_check = PolicySpec {
        schedule: Schedule::Interval { every_secs: 86_400 },
        kind: TaskKind::Check,
        include: vec![],
        retention: Retention::default(),
        overlap: Overlap::Allow,
        missed: MissedRun::Skip,
        ..policy_spec()
    };
    out.push((
        "policy.created+interval_check".into(),
        policy(PolicyEvent::Created {
            spec: Box::new(interval_check),
        }),
    ));
    let replace_prune = PolicySpec {
        overlap: Overlap::Replace,
        ..prune_spec()
    };
    out.push((
        "policy.updated+replace_prune".into(),
        policy(PolicyEvent::Updated {
            spec: Box::new(replace_prune),
        }),
    ));
    out.push((
        "policy.created+hooks".into(),
        policy(PolicyEvent::Created {
            spec: Box::new(hooked_spec()),
        }),
    ));
    out.push((
        "task.scheduled+hooks".into(),
        task(TaskEvent::Scheduled {
            policy: POLICY,
            agent: AGENT,
            fire_at: at(0),
            run_at: at(137),
            spec: Box::new(hooked_spec()),
        }),
    ));
    for (name, stage, outcome) in [
        ("exited", HookStage::After, HookOutcome::Exited(2)),
        ("killed", HookStage::OnSuccess, HookOutcome::Killed(9)),
        ("timed_out", HookStage::Before, HookOutcome::TimedOut),
        ("not_found", HookStage::OnFailure, HookOutcome::NotFound),
        (
            "not_started",
            HookStage::Before,
            HookOutcome::NotStarted("permission denied".into()),
        ),
        ("cancelled", HookStage::Before, HookOutcome::Cancelled),
    ] {
        out.push((
            format!("task.hook_ran+{name}"),
            task(TaskEvent::HookRan {
                attempt: 2,
                hook: hook_run(stage, outcome),
            }),
        ));
    }
    let idle = AgentSettings {
        io_class: IoClass::Idle,
        ..AgentSettings::default()
    };
    out.push((
        "agent.settings_changed+idle".into(),
        agent(AgentEvent::SettingsChanged { settings: idle }),
    ));
    out.extend(notify::variants());
    out
}

/// A sample policy, also for a prune.
pub fn prune_spec() -> PolicySpec {
    PolicySpec {
        kind: TaskKind::Prune,
        include: vec![],
        ..policy_spec()
    }
}

/// One sample of every agent-protocol message variant, encoded, by name.
pub fn protocol() -> Vec<(String, Vec<u8>)> {
    use crate::envelope::SCHEMA_VERSION as V;
    use crate::protocol::{AgentCommand, AgentReport, Command, Heartbeat, KindCounts, TaskOrder};
    let mut out = Vec::new();
    let mut add = |name: &str, bytes: Result<Vec<u8>, crate::codec::CodecError>| {
        out.push((name.to_owned(), bytes.unwrap_or_default()));
    };
    let run = AgentCommand::new(Command::Run(TaskOrder {
        tenant: tenant(),
        task: TASK,
        attempt: 1,
        policy: POLICY,
        spec: Box::new(policy_spec()),
        dispatched_at: at(2),
    }));
    add("command.run", run.to_wire());
    let hooked = AgentCommand::new(Command::Run(TaskOrder {
        tenant: tenant(),
        task: TASK,
        attempt: 1,
        policy: POLICY,
        spec: Box::new(hooked_spec()),
        dispatched_at: at(2),
    }));
    add("command.run+hooks", hooked.to_wire());
    let restore = AgentCommand::new(Command::RunRequested {
        order: TaskOrder {
            tenant: tenant(),
            task: TASK,
            attempt: 1,
            policy: POLICY,
            spec: Box::new(PolicySpec {
                kind: TaskKind::Restore,
                ..policy_spec()
            }),
            dispatched_at: at(2),
        },
        request: TaskRequest::Restore(restore_request()),
    });
    add("command.run_requested", restore.to_wire());
    let cancel = AgentCommand::new(Command::Cancel {
        task: TASK,
        attempt: 1,
        reason: "cancelled by operator".into(),
    });
    add("command.cancel", cancel.to_wire());
    let Event::Task {
        event: TaskEvent::Succeeded { summary, .. },
        ..
    } = event(EventType::TaskSucceeded)
    else {
        unreachable!("the sample is a success")
    };
    let statuses = [
        ("acknowledged", ReportStatus::Acknowledged),
        ("started", ReportStatus::Started),
        ("succeeded", ReportStatus::Succeeded(summary)),
        (
            "failed",
            ReportStatus::Failed(TaskError::new(
                ErrorClass::Network,
                "connection refused",
                Some(1),
            )),
        ),
        ("interrupted", ReportStatus::Interrupted),
        (
            "unlock_ran",
            ReportStatus::UnlockRan {
                interrupted: interrupted(),
                outcome: UnlockOutcome::Unlocked,
            },
        ),
        (
            "unlock_ran+failed",
            ReportStatus::UnlockRan {
                interrupted: interrupted(),
                outcome: unlock_failed(),
            },
        ),
        (
            "retention_applied",
            retention_report(RetentionOutcome::Applied),
        ),
        (
            "retention_applied+failed",
            retention_report(retention_failed()),
        ),
        (
            "hook_ran",
            ReportStatus::HookRan(hook_run(HookStage::Before, HookOutcome::TimedOut)),
        ),
        (
            "snapshots_listed",
            ReportStatus::SnapshotsListed {
                repo: RepoId::for_url("sftp:backup@nas:/srv/restic"),
                listing: listing(),
            },
        ),
    ];
    for (name, status) in statuses {
        let report = AgentReport {
            schema: V,
            agent: AGENT,
            tenant: tenant(),
            task: TASK,
            attempt: 1,
            at: at(4),
            status,
        };
        add(&format!("report.{name}"), report.to_wire());
    }
    let beat = Heartbeat {
        schema: V,
        agent: AGENT,
        tenant: tenant(),
        at: at(6),
        running: KindCounts {
            backup: 1,
            prune: 1,
            restore: 1,
            ..KindCounts::default()
        },
        queued: KindCounts {
            backup: 2,
            refresh: 1,
            ..KindCounts::default()
        },
        agent_version: "0.1.0".into(),
        restic_version: "0.14.0".into(),
        outbox_depth: 3,
        every_secs: 10,
    };
    add("heartbeat", beat.to_wire());
    add("progress", progress().to_wire());
    let browse = crate::browse::BrowseRequest {
        schema: V,
        tenant: tenant(),
        policy: POLICY,
        repository: policy_spec().repository,
        snapshot: "5e1c0a3f".repeat(8),
        path: "/srv/data".into(),
        after: Some("a.txt".into()),
        limit: 200,
    };
    add("browse.request", browse.to_wire());
    let page = crate::browse::BrowseReply {
        schema: V,
        result: Ok(crate::browse::BrowsePage {
            path: "/srv/data".into(),
            entries: vec![
                crate::browse::Entry {
                    name: "b.txt".into(),
                    kind: crate::browse::EntryKind::File,
                    size: Some(12),
                    mtime: Some(at(3)),
                },
                crate::browse::Entry {
                    name: "c".into(),
                    kind: crate::browse::EntryKind::Dir,
                    size: None,
                    mtime: None,
                },
            ],
            next: None,
        }),
    };
    add("browse.reply", page.to_wire());
    let refused = crate::browse::BrowseReply {
        schema: V,
        result: Err(TaskError::new(
            ErrorClass::Auth,
            "no secret \"nas\" in this agent's configuration",
            None,
        )),
    };
    add("browse.reply+refused", refused.to_wire());
    enrollment(&mut add);
    out
}

/// Samples of the enrollment messages (the token is a sample, all zeros).
fn enrollment(add: &mut impl FnMut(&str, Result<Vec<u8>, crate::codec::CodecError>)) {
    use crate::enroll::{RegisterOutcome, RegisterReply, RegisterRequest, Rejection, TokenText};
    let token = TokenText::from_secret(&tenant(), &[0; 32]);
    let mut request = RegisterRequest::new(
        &token,
        "machine-1".into(),
        "db-1".into(),
        "db-1.example".into(),
    );
    request.settings = agent_settings();
    request.agent_version = "0.1.0".into();
    request.nats_key = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4".into();
    add("register.request", request.to_wire());
    let registered = RegisterReply::new(RegisterOutcome::Registered {
        tenant: tenant(),
        agent: AGENT,
        name: "db-1".into(),
        new: true,
    });
    add("register.registered", registered.to_wire());
    let rejected = RegisterReply::rejected(Rejection::TokenNotAccepted, "token not accepted");
    add("register.rejected", rejected.to_wire());
    let mismatch = RegisterReply::rejected(Rejection::KeyMismatch, "another key");
    add("register.rejected+key_mismatch", mismatch.to_wire());
}

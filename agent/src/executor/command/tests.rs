//! The command line of each task kind, and where the password and the limits go.

use fleet_events::policy::Retention;
use fleet_events::samples;

use super::*;

const PASSWORD: &str = "hunter2-very-secret";

fn order(kind: TaskKind) -> TaskOrder {
    let mut spec = samples::policy_spec();
    spec.kind = kind;
    TaskOrder {
        tenant: samples::tenant(),
        task: samples::TASK,
        attempt: 1,
        policy: samples::POLICY,
        spec: Box::new(spec),
        dispatched_at: samples::at(0),
    }
}

fn password() -> PasswordEnv {
    PasswordEnv {
        var: "RESTIC_PASSWORD",
        value: PASSWORD.into(),
    }
}

fn args(inv: &Invocation) -> Vec<String> {
    inv.args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

fn build_for(kind: TaskKind) -> Invocation {
    let settings = samples::agent_settings();
    invocation(
        &order(kind),
        &settings,
        &password(),
        "/usr/bin/restic".as_ref(),
        "vm",
    )
    .unwrap()
}

#[test]
fn backup_has_tags_host_excludes_paths_and_the_upload_limit_but_no_password() {
    let inv = build_for(TaskKind::Backup);
    let policy = format!("policy:{}", samples::POLICY);
    let task = format!("task:{}", samples::TASK);
    let expected = [
        "--limit-upload",
        "10240",
        "backup",
        "--json",
        "--tag",
        &policy,
        "--tag",
        &task,
        "--tag",
        "home",
        "--host",
        "db-1",
        "--exclude",
        "*.tmp",
        "/home",
        "/etc",
    ];
    assert_eq!(args(&inv), expected);
    assert!(args(&inv).iter().all(|a| !a.contains(PASSWORD)));
    assert!(!format!("{inv:?}").contains(PASSWORD), "{inv:?}");
    assert!(!format!("{inv:?}").contains("nas"), "repository in {inv:?}");
    let env: Vec<&str> = inv.env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        env,
        [
            "RESTIC_REPOSITORY",
            "RESTIC_PASSWORD",
            "RESTIC_PROGRESS_FPS"
        ]
    );
    assert_eq!(inv.env[0].1, "sftp:backup@nas:/srv/restic");
    assert_eq!(inv.env[2].1, "4", "a calm rate of status lines");
    assert_eq!(
        (inv.nice, inv.io_class),
        (10, IoClass::BestEffort { level: 7 })
    );
}

#[test]
fn backup_host_defaults_to_the_agent_hostname() {
    let mut o = order(TaskKind::Backup);
    o.spec.execution.host = None;
    let settings = AgentSettings::default();
    let inv = invocation(&o, &settings, &password(), "restic".as_ref(), "vm").unwrap();
    let a = args(&inv);
    assert_eq!(a[0], "backup", "no limits by default: {a:?}");
    let host = a.iter().position(|x| x == "--host").unwrap();
    assert_eq!(a[host + 1], "vm");
}

#[test]
fn check_and_prune() {
    assert_eq!(
        args(&build_for(TaskKind::Check)),
        ["--limit-upload", "10240", "check"]
    );
    let expected = [
        "--limit-upload",
        "10240",
        "forget",
        "--prune",
        "--json",
        "--keep-daily",
        "7",
        "--keep-weekly",
        "4",
        "--keep-within",
        "14d",
        "--keep-tag",
        "keep",
    ];
    assert_eq!(args(&build_for(TaskKind::Prune)), expected);
}

#[test]
fn download_limit_and_init() {
    let settings = AgentSettings {
        download_kib_s: Some(512),
        ..AgentSettings::default()
    };
    let o = order(TaskKind::Check);
    let inv = init_invocation(&o, &settings, &password(), "restic".as_ref());
    assert_eq!(args(&inv), ["--limit-download", "512", "init"]);
}

#[test]
fn unlock_removes_only_stale_locks_and_gets_the_password_from_its_environment() {
    let o = order(TaskKind::Backup);
    let settings = AgentSettings::default();
    let inv = unlock_invocation(&o, &settings, &password(), "restic".as_ref());
    assert_eq!(args(&inv), ["unlock"], "never --remove-all");
    let env: Vec<(&str, &std::ffi::OsStr)> = inv
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_os_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("RESTIC_REPOSITORY", o.spec.repository.url.as_ref()),
            ("RESTIC_PASSWORD", PASSWORD.as_ref())
        ]
    );
    assert!(!format!("{inv:?}").contains(PASSWORD));
}

#[test]
fn unrunnable_specs_are_permanent() {
    let settings = AgentSettings::default();
    let mut backup = order(TaskKind::Backup);
    backup.spec.include.clear();
    let mut prune = order(TaskKind::Prune);
    prune.spec.retention = Retention::default();
    for o in [
        backup,
        prune,
        order(TaskKind::Restore),
        order(TaskKind::Refresh),
    ] {
        let err = invocation(&o, &settings, &password(), "restic".as_ref(), "vm").unwrap_err();
        assert_eq!(err.class, ErrorClass::Permanent);
    }
}

#[test]
fn retention_after_a_backup_forgets_only_the_policys_snapshots_and_never_prunes() {
    let mut o = order(TaskKind::Backup);
    o.spec.retention = Retention {
        keep_last: Some(3),
        keep_hourly: Some(24),
        keep_daily: Some(7),
        keep_weekly: Some(4),
        keep_monthly: Some(12),
        keep_yearly: Some(2),
        keep_within: Some("1y6m".into()),
        keep_tags: vec!["keep".into(), "release".into()],
    };
    let settings = samples::agent_settings();
    let inv = retention_invocation(&o, &settings, &password(), "/usr/bin/restic".as_ref())
        .expect("a retention");
    let policy = format!("policy:{}", samples::POLICY);
    let expected = [
        "--limit-upload",
        "10240",
        "forget",
        "--json",
        "--tag",
        &policy,
        "--group-by",
        "host,paths",
        "--keep-last",
        "3",
        "--keep-hourly",
        "24",
        "--keep-daily",
        "7",
        "--keep-weekly",
        "4",
        "--keep-monthly",
        "12",
        "--keep-yearly",
        "2",
        "--keep-within",
        "1y6m",
        "--keep-tag",
        "keep",
        "--keep-tag",
        "release",
    ];
    assert_eq!(args(&inv), expected);
    assert!(!args(&inv).iter().any(|a| a == "--prune"));
    // The backup's own run: same program, environment (but the progress rate) and priority.
    let backup = build_for(TaskKind::Backup);
    assert_eq!(
        (&inv.program, &inv.env[..], inv.nice, inv.io_class),
        (
            &backup.program,
            &backup.env[..2],
            backup.nice,
            backup.io_class
        )
    );
    assert!(!format!("{inv:?}").contains(PASSWORD), "{inv:?}");

    // The prune's keep flags are the same helper's.
    let prune = args(&build_for(TaskKind::Prune));
    let sample = retention_invocation(
        &order(TaskKind::Backup),
        &settings,
        &password(),
        "r".as_ref(),
    )
    .expect("the sample has retention");
    assert_eq!(args(&sample)[8..], prune[5..]);

    o.spec.retention = Retention::default();
    assert_eq!(
        retention_invocation(&o, &settings, &password(), "restic".as_ref()),
        None
    );
}

#[test]
fn restore_ls_and_snapshots_take_their_paths_literally_and_no_password() {
    let settings = samples::agent_settings();
    let o = order(TaskKind::Restore);
    let restic: &std::path::Path = "/usr/bin/restic".as_ref();
    let id = "ab".repeat(32);
    let include = vec!["/srv/data/report [v2]*.txt".to_owned(), "/etc".to_owned()];
    let staging: &std::path::Path = "/var/restore/.restic-fleet-restore-x".as_ref();
    let restore = restore_invocation(&o, &settings, &password(), restic, &id, &include, staging);
    let restore_args = args(&restore);
    let tail = &restore_args[restore_args.len() - 8..];
    assert_eq!(
        tail,
        [
            "restore",
            id.as_str(),
            "--target",
            "/var/restore/.restic-fleet-restore-x",
            "--include",
            r"/srv/data/report \[v2\]\*.txt",
            "--include",
            "/etc",
        ]
    );
    let ls = ls_invocation(&o, &settings, &password(), restic, &id);
    assert_eq!(
        args(&ls)[args(&ls).len() - 3..],
        ["ls", "--json", id.as_str()]
    );
    let snapshots = snapshots_invocation(&o, &settings, &password(), restic);
    assert_eq!(
        args(&snapshots)[args(&snapshots).len() - 2..],
        ["snapshots", "--json"]
    );
    let url = &o.spec.repository.url;
    let dir = ls_dir_invocation(url, &settings, &password(), restic, &id, "/srv/a [b]*");
    assert_eq!(
        args(&dir)[args(&dir).len() - 4..],
        ["ls", "--json", id.as_str(), "/srv/a [b]*"],
        "a directory is taken literally by restic ls"
    );
    assert_eq!(dir.env[0].1.to_str(), Some(url.as_str()));
    let followed = reporting_progress(restore.clone(), true);
    assert_eq!(
        args(&followed)[..],
        [&restore_args[..], &["--json".to_owned()]].concat()
    );
    assert_eq!(
        followed.env.last().map(|(k, v)| (k.as_str(), v.to_str())),
        Some(("RESTIC_PROGRESS_FPS", Some("4")))
    );
    for inv in [restore, ls, snapshots, dir, followed] {
        assert!(!args(&inv).iter().any(|a| a.contains(PASSWORD)), "{inv:?}");
        assert!(!format!("{inv:?}").contains(PASSWORD));
        assert!(inv.env.iter().any(|(k, _)| k == "RESTIC_REPOSITORY"));
    }
}

#[test]
fn a_literal_pattern_escapes_only_what_restic_would_match() {
    assert_eq!(
        literal_pattern("/srv/plain-name.txt"),
        "/srv/plain-name.txt"
    );
    assert_eq!(literal_pattern(r"/a\b?c"), r"/a\\b\?c");
}

#[test]
fn retry_lock_is_passed_only_to_a_restic_that_has_it() {
    let none: Vec<OsString> = Vec::new();
    for (version, expected) in [
        (
            "restic 0.14.0 compiled with go1.19.8 on linux/amd64",
            none.clone(),
        ),
        ("restic 0.15.2 compiled with go1.20 on linux/amd64", none),
        (
            "restic 0.16.0 compiled with go1.21 on linux/amd64",
            vec!["--retry-lock".into(), "120s".into()],
        ),
        (
            "restic 0.18.0 compiled with go1.24.4 on linux/amd64",
            vec!["--retry-lock".into(), "120s".into()],
        ),
    ] {
        let version = ResticVersion::parse(version).unwrap();
        assert_eq!(retry_lock_args(&version, LOCK_WAIT), expected, "{version}");
    }
    let v0_18 =
        ResticVersion::parse("restic 0.18.0 compiled with go1.24.4 on linux/amd64").unwrap();
    let inv = with_retry_lock(build_for(TaskKind::Backup), &v0_18, Duration::from_secs(5));
    assert_eq!(
        inv.args[..3],
        ["--retry-lock", "5s", "--limit-upload"].map(OsString::from)[..]
    );
    // No wait: no flag; the first held lock fails the run.
    assert!(retry_lock_args(&v0_18, Duration::ZERO).is_empty());
}

//! Tests of policy validation.

use super::*;

pub(crate) fn nightly_backup() -> PolicySpec {
    PolicySpec {
        name: "nightly-home".into(),
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
            ..Retention::default()
        },
        execution: Execution::default(),
        retry: RetryBudget::default(),
        overlap: Overlap::Forbid,
        missed: MissedRun::default(),
        priority: 5,
        jitter_secs: 600,
        hooks: Default::default(),
    }
}

#[test]
fn a_sound_policy_is_valid() {
    assert_eq!(nightly_backup().validate(), Ok(()));
    let prune = PolicySpec {
        kind: TaskKind::Prune,
        include: vec![],
        ..nightly_backup()
    };
    assert_eq!(prune.validate(), Ok(()));
}

#[test]
fn every_problem_is_reported_at_once() {
    let bad = PolicySpec {
        name: " ".into(),
        schedule: Schedule::Cron {
            expr: "not cron".into(),
            timezone: "Nowhere/Town".into(),
        },
        repository: RepositoryRef {
            url: "ftp://x".into(),
            secret: "Bad Secret".into(),
        },
        include: vec!["relative/path".into()],
        exclude: vec!["".into()],
        retention: Retention {
            keep_last: Some(0),
            keep_within: Some("2 weeks".into()),
            keep_tags: vec!["a,b".into()],
            ..Retention::default()
        },
        execution: Execution {
            run_timeout_secs: 5,
            tags: vec!["has space".into()],
            host: Some("".into()),
            init_if_missing: false,
        },
        retry: RetryBudget {
            max_retries: 1000,
            base_delay_secs: 0,
            max_delay_secs: 10 * DAY,
        },
        missed: MissedRun::RunOnce {
            starting_deadline_secs: 0,
        },
        jitter_secs: 7200,
        ..nightly_backup()
    };
    let err = bad.validate().unwrap_err();
    for field in [
        "name",
        "schedule.cron.expr",
        "schedule.cron.timezone",
        "repository.url",
        "repository.secret",
        "include[0]",
        "exclude[0]",
        "retention.keepLast",
        "retention.keepWithin",
        "retention.keepTags[0]",
        "execution.runTimeoutSecs",
        "execution.tags[0]",
        "execution.host",
        "retry.maxRetries",
        "retry.baseDelaySecs",
        "retry.maxDelaySecs",
        "missed.runOnce.startingDeadlineSecs",
        "jitterSecs",
    ] {
        assert!(err.mentions(field), "{field} not reported in {err}");
    }
}

#[test]
fn paths_depend_on_the_kind() {
    let no_paths = PolicySpec {
        include: vec![],
        ..nightly_backup()
    };
    assert!(no_paths.validate().unwrap_err().mentions("include"));

    let check_with_paths = PolicySpec {
        kind: TaskKind::Check,
        ..nightly_backup()
    };
    assert!(check_with_paths.validate().unwrap_err().mentions("include"));
}

#[test]
fn prune_needs_a_keep_rule() {
    let prune = PolicySpec {
        kind: TaskKind::Prune,
        include: vec![],
        retention: Retention::default(),
        ..nightly_backup()
    };
    assert!(prune.validate().unwrap_err().mentions("retention"));
}

#[test]
fn restic_durations() {
    for ok in ["14d", "1y6m", "12h", "2y5m7d3h"] {
        assert!(is_restic_duration(ok), "{ok}");
    }
    for bad in ["", "d", "14", "14w", "1 d", "-1d"] {
        assert!(!is_restic_duration(bad), "{bad}");
    }
}

#[test]
fn windows_and_unix_paths_are_absolute() {
    assert!(is_absolute("/srv"));
    assert!(is_absolute("C:\\Users"));
    assert!(!is_absolute("srv"));
    assert!(!is_absolute("C:"));
}

#[test]
fn every_hook_problem_is_reported_at_once() {
    let spec = PolicySpec {
        hooks: PolicyHooks {
            before: vec!["dump-db".into(), "Dump DB".into(), "dump-db".into()],
            after: (0..=MAX_HOOKS_PER_STAGE).map(|i| format!("h{i}")).collect(),
            on_success: vec!["".into()],
            on_failure: vec!["page".into()],
            retry_on_failure: false,
        },
        ..nightly_backup()
    };
    let invalid = spec.validate().unwrap_err();
    for field in [
        "hooks.before[1]",
        "hooks.before[2]",
        "hooks.after",
        "hooks.onSuccess[0]",
    ] {
        assert!(invalid.mentions(field), "{field}: {invalid}");
    }
    assert_eq!(invalid.0.len(), 4, "{invalid}");

    let retry_alone = PolicySpec {
        hooks: PolicyHooks {
            after: vec!["ping".into()],
            retry_on_failure: true,
            ..PolicyHooks::default()
        },
        ..nightly_backup()
    };
    assert!(
        retry_alone
            .validate()
            .unwrap_err()
            .mentions("hooks.retryOnFailure")
    );
    let hooked = PolicySpec {
        name: "nightly-home".into(),
        ..crate::samples::hooked_spec()
    };
    assert_eq!(hooked.validate(), Ok(()));
    let restore = PolicySpec {
        kind: TaskKind::Restore,
        include: vec![],
        ..hooked
    };
    assert!(restore.validate().unwrap_err().mentions("hooks"));
}

#[test]
fn hooks_are_optional_in_documents_and_kept_in_json() {
    let mut json = serde_json::to_value(nightly_backup()).expect("json");
    json.as_object_mut().expect("object").remove("hooks");
    let spec: PolicySpec = serde_json::from_value(json).expect("no hooks is fine");
    assert!(spec.hooks.is_empty());
    assert_eq!(spec.schema(), crate::envelope::SCHEMA_VERSION);

    let hooked = crate::samples::hooked_spec();
    let json = serde_json::to_value(&hooked).expect("json");
    assert_eq!(json["hooks"]["onSuccess"][0], "ping-monitor");
    assert_eq!(json["hooks"]["retryOnFailure"], true);
    let back: PolicySpec = serde_json::from_value(json).expect("round trip");
    assert_eq!(back, hooked);
    assert_eq!(back.schema(), crate::envelope::SCHEMA_HOOKS);
}

#[test]
fn names_are_safe_in_urls_and_shells() {
    for good in ["db-nightly", "web_1.daily", "Nightly2", "7am"] {
        let spec = PolicySpec {
            name: good.into(),
            ..nightly_backup()
        };
        assert_eq!(spec.validate(), Ok(()), "{good}");
    }
    for (bad, says) in [
        ("evil.>", "found '>'"),
        ("../../etc/passwd", "found '/'"),
        ("db nightly", "found ' '"),
        ("a;b$(c)", "found ';', '$', '(', ')'"),
        ("-rf", "must start with a letter or a digit"),
        (".hidden", "must start with a letter or a digit"),
    ] {
        let spec = PolicySpec {
            name: bad.into(),
            ..nightly_backup()
        };
        let problems = spec.validate().unwrap_err().to_string();
        assert!(problems.contains(says), "{bad}: {problems}");
    }
}

//! Tests of the configuration: parsing, overrides, and every problem reported at once.

use std::collections::BTreeMap;

use fleet_events::settings::IoClass;

use super::*;

const AGENT: &str = "0192f1c4-5e6a-7b8c-9d0e-1f2a3b4c5d6e";

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn check(yaml: &str, source: &BTreeMap<String, String>) -> Result<ValidConfig, Vec<FieldError>> {
    validate(RawConfig::parse(yaml).map_err(|e| vec![e])?.overlay(source))
}

/// The preassigned agent id and tenant, as text.
fn preassigned(config: &ValidConfig) -> (String, String) {
    match &config.enrollment {
        Enrollment::Preassigned(identity) => {
            (identity.agent.to_string(), identity.tenant.to_string())
        }
        other => panic!("expected a preassigned identity, got {other:?}"),
    }
}

fn fields(errors: &[FieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.field.as_str()).collect()
}

#[test]
fn config_full_file_parses_into_values() {
    let yaml = format!(
        "natsUrl: nats://nats.example:4333\nstateDir: /srv/agent\nagentId: {AGENT}\n\
         tenant: acme\nhostname: web-1\nheartbeatSecs: 30\nstopGraceSecs: 5\n\
         unreachableAfterSecs: 300\nlockWaitSecs: 0\nrestic: /usr/local/bin/restic\n\
         settings:\n  maxConcurrent: 4\n  perKind:\n    prune: 1\n  ioClass: idle\n\
         secrets:\n  a:\n    passwordFile: /etc/a\n  b:\n    passwordCommand: pass b\n\
         \x20 c:\n    passwordEnv: C_PASS\n"
    );
    let config = check(&yaml, &env(&[("HOSTNAME", "ignored")])).unwrap();
    assert_eq!(config.nats.addrs().len(), 1);
    assert_eq!(config.state_dir, PathBuf::from("/srv/agent"));
    assert_eq!(preassigned(&config), (AGENT.to_owned(), "acme".to_owned()));
    assert_eq!(config.hostname, "web-1");
    assert_eq!(config.heartbeat_every, Duration::from_secs(30));
    assert_eq!(config.stop_grace, Duration::from_secs(5));
    assert_eq!(config.unreachable_after, Duration::from_secs(300));
    assert_eq!(config.lock_wait, Duration::ZERO);
    assert_eq!(config.restic, PathBuf::from("/usr/local/bin/restic"));
    assert_eq!(config.settings.max_concurrent, 4);
    assert_eq!(config.settings.per_kind.prune, Some(1));
    assert_eq!(config.settings.io_class, IoClass::Idle);
    assert_eq!(config.secrets["a"], SecretSource::File("/etc/a".into()));
    assert_eq!(config.secrets["b"], SecretSource::Command("pass b".into()));
    assert_eq!(config.secrets["c"], SecretSource::Env("C_PASS".into()));
}

#[test]
fn config_defaults_fill_the_rest() {
    let yaml = format!("agentId: {AGENT}\ntenant: acme\n");
    let config = check(&yaml, &env(&[("HOSTNAME", "box")])).unwrap();
    assert_eq!(config.nats.to_string(), DEFAULT_NATS_URL);
    assert_eq!(config.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
    assert_eq!(config.hostname, "box");
    assert_eq!(config.heartbeat_every, Duration::from_secs(10));
    assert_eq!(config.stop_grace, Duration::from_secs(10));
    assert_eq!(config.unreachable_after, Duration::from_secs(120));
    assert_eq!(config.lock_wait, Duration::from_secs(120));
    assert_eq!(config.restic, PathBuf::from("restic"));
    assert_eq!(config.settings, AgentSettings::default());
    assert!(config.secrets.is_empty());
}

#[test]
fn config_env_overrides_win() {
    let yaml = "natsUrl: nats://file:4222\nstateDir: /file\nagentId: not-a-uuid\n\
                tenant: file\nhostname: file\n";
    let other = "0192f1c4-5e6a-7b8c-9d0e-000000000001";
    let source = env(&[
        ("FLEET_AGENT_NATS_URL", "nats://env:4222"),
        ("FLEET_AGENT_STATE_DIR", "/env"),
        ("FLEET_AGENT_ID", other),
        ("FLEET_AGENT_TENANT", "from-env"),
        ("FLEET_AGENT_HOSTNAME", "env-host"),
    ]);
    let config = check(yaml, &source).unwrap();
    assert_eq!(config.nats.to_string(), "nats://env:4222");
    assert_eq!(config.state_dir, PathBuf::from("/env"));
    assert_eq!(
        preassigned(&config),
        (other.to_owned(), "from-env".to_owned())
    );
    assert_eq!(config.hostname, "env-host");
}

#[test]
fn config_reports_every_problem_at_once() {
    let yaml = "agentId: NOT-A-UUID\nheartbeatSecs: 0\nunreachableAfterSecs: 0\nlockWaitSecs: 3601\nsettings:\n  maxConcurrent: 0\n\
                secrets:\n  both:\n    passwordFile: /etc/x\n    passwordCommand: echo hunter2\n\
                \x20 none: {}\n";
    let errors = check(yaml, &env(&[("HOSTNAME", "h")])).unwrap_err();
    let fields = fields(&errors);
    for field in [
        "agentId",
        "tenant",
        "heartbeatSecs",
        "unreachableAfterSecs",
        "lockWaitSecs",
        "settings.maxConcurrent",
        "secrets.both",
        "secrets.none",
    ] {
        assert!(fields.contains(&field), "{field} missing in {errors:?}");
    }
    assert!(
        errors.iter().all(|e| !e.message.contains("hunter2")),
        "a secret leaked: {errors:?}"
    );
}

#[test]
fn config_unknown_fields_are_rejected() {
    let top = RawConfig::parse("tenant: acme\nnatsURL: nats://x\n").unwrap_err();
    assert_eq!(top.field, "config");
    assert!(top.message.contains("natsURL"), "{top}");
    let secret = RawConfig::parse("secrets:\n  a:\n    passwordFiel: /x\n").unwrap_err();
    assert!(secret.message.contains("passwordFiel"), "{secret}");
    let settings = RawConfig::parse("settings:\n  maxConcurent: 4\n").unwrap_err();
    assert_eq!(settings.field, "settings.maxConcurent");
    let per_kind = RawConfig::parse("settings:\n  perKind:\n    backups: 1\n").unwrap_err();
    assert_eq!(per_kind.field, "settings.perKind.backups");
}

#[test]
fn config_yaml_syntax_error_names_line_and_column() {
    let error = RawConfig::parse("tenant: acme\nsecrets:\n  a: [unclosed\n").unwrap_err();
    assert_eq!(error.field, "config");
    assert!(
        error.message.contains("line 3") && error.message.contains("column"),
        "{error}"
    );
}

#[test]
fn config_bad_nats_url_does_not_echo_it() {
    let yaml = format!("agentId: {AGENT}\ntenant: acme\nnatsUrl: 'nats://u:s3cret@[bad'\n");
    let errors = check(&yaml, &env(&[("HOSTNAME", "h")])).unwrap_err();
    assert_eq!(fields(&errors), ["natsUrl"]);
    assert!(!errors[0].message.contains("s3cret"));
}

#[test]
fn config_debug_does_not_show_a_nats_password() {
    let yaml = format!(
        "agentId: {AGENT}\ntenant: acme\nnatsUrl: 'nats://u:s3cret@a:4222,nats://b:4222'\n"
    );
    let config = check(&yaml, &env(&[("HOSTNAME", "h")])).unwrap();
    assert!(config.nats.addrs()[0].has_user_pass());
    assert!(!format!("{config:?}").contains("s3cret"));
}

#[test]
fn config_missing_hostname_is_reported() {
    let yaml = format!("agentId: {AGENT}\ntenant: acme\n");
    let errors = check(&yaml, &env(&[])).unwrap_err();
    assert_eq!(fields(&errors), ["hostname"]);
}

#[test]
fn config_example_file_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fleet-agent.example.yaml");
    let config = load(&path, &env(&[])).unwrap();
    assert_eq!(
        config.enrollment,
        Enrollment::Token(TokenSource::File(
            "/etc/fleet-agent/enrollment.token".into()
        ))
    );
    assert_eq!(config.hostname, "web-1");
    assert_eq!(config.settings.per_kind.prune, Some(1));
    assert_eq!(config.secrets.len(), 3);
}

#[test]
fn config_metrics_address_is_optional_and_checked() {
    let base = format!("agentId: {AGENT}\ntenant: acme\nhostname: h\n");
    assert_eq!(check(&base, &env(&[])).unwrap().metrics_addr, None);
    let good = format!("{base}metricsAddr: 127.0.0.1:9465\n");
    assert_eq!(
        check(&good, &env(&[])).unwrap().metrics_addr,
        Some("127.0.0.1:9465".parse().unwrap())
    );
    let bad = format!("{base}metricsAddr: everywhere\n");
    assert_eq!(
        fields(&check(&bad, &env(&[])).unwrap_err()),
        ["metricsAddr"]
    );
}

const TOKEN: &str = "rft1.acme.0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn config_enrollment_token_from_file_or_env() {
    let config = check(
        "hostname: h\n",
        &env(&[("FLEET_AGENT_ENROLLMENT_TOKEN", TOKEN)]),
    )
    .unwrap();
    let Enrollment::Token(TokenSource::Inline(token)) = &config.enrollment else {
        panic!("expected an inline token, got {:?}", config.enrollment);
    };
    assert_eq!(token.tenant().as_str(), "acme");
    assert_eq!(config.name, "h", "the name defaults to the hostname");
    let stored = check("hostname: h\nname: db-1\nmachineId: m-1\n", &env(&[])).unwrap();
    assert_eq!(stored.enrollment, Enrollment::Stored);
    assert_eq!(stored.name, "db-1");
    assert_eq!(stored.machine_id.as_deref(), Some("m-1"));
}

#[test]
fn config_enrollment_problems_are_reported_without_the_token() {
    let both = format!("hostname: h\nagentId: {AGENT}\ntenant: acme\nenrollmentToken: {TOKEN}\n");
    assert_eq!(
        fields(&check(&both, &env(&[])).unwrap_err()),
        ["enrollmentToken"]
    );
    let garbled = "hostname: h\nenrollmentToken: rft1.acme.s3cret\nmachineId: 'a b'\n";
    let errors = check(garbled, &env(&[])).unwrap_err();
    assert_eq!(fields(&errors), ["enrollmentToken", "machineId"]);
    assert!(
        errors.iter().all(|e| !e.message.contains("s3cret")),
        "{errors:?}"
    );
    let two = format!("hostname: h\nenrollmentToken: {TOKEN}\nenrollmentTokenFile: /t\n");
    assert_eq!(
        fields(&check(&two, &env(&[])).unwrap_err()),
        ["enrollmentToken"]
    );
    let half = "hostname: h\ntenant: acme\n";
    assert_eq!(fields(&check(half, &env(&[])).unwrap_err()), ["agentId"]);
}

#[test]
fn hooks_are_read_with_their_timeouts_and_defaults() {
    let yaml = format!(
        "agentId: {AGENT}\ntenant: acme\nhostname: db-1\n\
         hooks:\n\
         \x20 dump-db: {{ command: [\"/usr/local/bin/dump-db\", \"--out\", \"/var/backups/db.sql\"], timeout: 10m }}\n\
         \x20 ping:\n    command: [curl, -fsS, https://hc.example/ping]\n    cwd: /tmp\n    env: {{ HC_RETRY: \"3\" }}\n"
    );
    let config = check(&yaml, &env(&[])).unwrap();
    let dump = &config.hooks.hooks["dump-db"];
    assert_eq!(
        dump.command,
        ["/usr/local/bin/dump-db", "--out", "/var/backups/db.sql"]
    );
    assert_eq!(dump.timeout, Duration::from_secs(600));
    let ping = &config.hooks.hooks["ping"];
    assert_eq!(ping.timeout, crate::executor::hooks::DEFAULT_TIMEOUT);
    assert_eq!(ping.cwd, Some(PathBuf::from("/tmp")));
    assert_eq!(ping.env["HC_RETRY"], "3");
}

#[test]
fn every_hook_problem_is_reported_at_once() {
    let yaml = format!(
        "agentId: {AGENT}\ntenant: acme\nhostname: db-1\n\
         secrets:\n  repo:\n    passwordEnv: REPO_PASS\n\
         hooks:\n\
         \x20 Dump DB: {{ command: [/bin/true] }}\n\
         \x20 no-command: {{ timeout: 10s }}\n\
         \x20 empty: {{ command: [\"\"] }}\n\
         \x20 slow: {{ command: [/bin/true], timeout: 2d }}\n\
         \x20 forever: {{ command: [/bin/true], timeout: 25h }}\n\
         \x20 relative: {{ command: [/bin/true], cwd: var/tmp }}\n\
         \x20 leaky: {{ command: [/bin/true], env: {{ RESTIC_PASSWORD: x, REPO_PASS: y, FLEET_TASK: z }} }}\n"
    );
    let errors = check(&yaml, &env(&[])).unwrap_err();
    let found = fields(&errors);
    assert_eq!(
        found,
        [
            "hooks.Dump DB",
            "hooks.empty.command",
            "hooks.forever.timeout",
            "hooks.leaky.env.FLEET_TASK",
            "hooks.leaky.env.REPO_PASS",
            "hooks.leaky.env.RESTIC_PASSWORD",
            "hooks.no-command.command",
            "hooks.relative.cwd",
            "hooks.slow.timeout",
        ],
        "{errors:?}"
    );
    let unknown = RawConfig::parse("hooks:\n  x: { command: [a], shell: true }\n").unwrap_err();
    assert!(unknown.message.contains("shell"), "{unknown:?}");
}

#[test]
fn timeouts_read_as_people_write_them() {
    assert_eq!(parse_timeout("90"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_timeout("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_timeout("1h30m"), Ok(Duration::from_secs(5400)));
    for bad in ["", "m", "10x", "1.5h", "-1s", "10m5"] {
        assert!(parse_timeout(bad).is_err(), "{bad}");
    }
}

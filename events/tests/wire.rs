//! The wire format: golden files pin every variant, and the decoder survives any input.
//!
//! To accept an intended change of the format (only appending variants or fields, with a
//! schema version bump), run `FLEET_BLESS_GOLDEN=1 cargo test -p fleet-events --test wire`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use fleet_events::codec::{CodecError, MAX_EVENT_BYTES, decode, encode};
use fleet_events::envelope::{NEWEST_SCHEMA, SCHEMA_HOOKS, SCHEMA_VERSION};
use fleet_events::event::{Event, EventType, PolicyEvent, TaskEvent, TenantEvent};
use fleet_events::samples;
use proptest::prelude::*;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

#[test]
fn golden_files_match_every_variant() {
    let bless = std::env::var_os("FLEET_BLESS_GOLDEN").is_some();
    let dir = golden_dir();
    let mut names = BTreeSet::new();
    for (name, envelope) in samples::all() {
        let path = dir.join(format!("{name}.bin"));
        let bytes = encode(&envelope).expect("sample encodes");
        if bless {
            std::fs::write(&path, &bytes).expect("write golden file");
        }
        let golden = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (new variant? bless it)", path.display()));
        assert_eq!(
            bytes,
            golden,
            "{name}: encoding drifted from {}",
            path.display()
        );
        assert_eq!(
            decode(&golden).as_ref(),
            Ok(&envelope),
            "{name}: golden bytes decode differently"
        );
        assert!(names.insert(name.clone()), "{name} twice");
    }
    for entry in std::fs::read_dir(&dir).expect("golden dir") {
        let entry = entry.expect("entry");
        if entry.path().is_dir() {
            continue;
        }
        let file = entry.file_name().to_string_lossy().into_owned();
        let name = file.trim_end_matches(".bin");
        assert!(
            names.contains(name),
            "{file} has no sample: was a variant removed?"
        );
    }
    for t in EventType::ALL {
        assert!(names.contains(t.name()), "{} has no golden file", t.name());
    }
}

#[test]
fn golden_files_match_every_protocol_message() {
    let bless = std::env::var_os("FLEET_BLESS_GOLDEN").is_some();
    let dir = golden_dir().join("protocol");
    let mut names = BTreeSet::new();
    for (name, bytes) in samples::protocol() {
        assert!(!bytes.is_empty(), "{name} encodes");
        let path = dir.join(format!("{name}.bin"));
        if bless {
            std::fs::create_dir_all(&dir).expect("golden dir");
            std::fs::write(&path, &bytes).expect("write golden file");
        }
        let golden = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (new variant? bless it)", path.display()));
        assert_eq!(
            bytes,
            golden,
            "{name}: encoding drifted from {}",
            path.display()
        );
        names.insert(name);
    }
    for entry in std::fs::read_dir(&dir).expect("golden dir") {
        let file = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        assert!(
            names.contains(file.trim_end_matches(".bin")),
            "{file} has no sample"
        );
    }
}

#[test]
fn registration_requests_of_older_agents_still_decode() {
    use fleet_events::codec::Wire;
    use fleet_events::enroll::RegisterRequest;
    let path = golden_dir().join("legacy/register.request.v1.bin");
    let old = std::fs::read(&path).expect("legacy golden file");
    let request = RegisterRequest::from_wire(&old).expect("a request without a key decodes");
    assert_eq!(request.machine, "machine-1");
    assert_eq!(request.agent_version, "0.1.0");
    assert!(request.nats_key.is_empty(), "no key in the old layout");
    let current = samples::protocol()
        .into_iter()
        .find(|(name, _)| name == "register.request")
        .expect("sample")
        .1;
    let decoded = RegisterRequest::from_wire(&current).expect("decodes");
    assert!(
        decoded.nats_key.starts_with('U'),
        "the current layout keeps its key"
    );
}

#[test]
fn event_types_round_trip_their_names() {
    for (_, envelope) in samples::all() {
        let t = envelope.event.event_type();
        assert_eq!(EventType::from_name(t.name()), Some(t));
    }
    assert_eq!(EventType::from_name("task.exploded"), None);
}

#[test]
fn unknown_variants_newer_schemas_and_trailing_bytes_are_errors() {
    let envelope = samples::envelope(EventType::TenantCreated);
    let bytes = encode(&envelope).expect("encodes");
    let event_len = postcard::to_stdvec(&envelope.event).expect("encodes").len();
    let mut unknown = bytes.clone();
    unknown[bytes.len() - event_len] = 0x63;
    assert!(matches!(decode(&unknown), Err(CodecError::Malformed(_))));

    let mut newer = bytes.clone();
    newer[0] = u8::try_from(NEWEST_SCHEMA + 1).expect("small");
    assert_eq!(
        decode(&newer),
        Err(CodecError::UnsupportedSchema {
            found: NEWEST_SCHEMA + 1
        })
    );

    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(decode(&trailing), Err(CodecError::Malformed(_))));
    assert!(matches!(decode(&[]), Err(CodecError::Malformed(_))));

    // The problems in words, not postcard's names for its internals.
    let words = |bytes: &[u8]| decode(bytes).expect_err("not an envelope").to_string();
    assert_eq!(words(&[]), "it ends before the message does (truncated)");
    assert_eq!(
        words(&bytes[..bytes.len() / 2]),
        "it ends before the message does (truncated)"
    );
    assert!(words(&unknown).starts_with("a field holds a value this build does not know"));
    assert_eq!(
        words(&trailing),
        "1 bytes follow the end of the message (garbage, or another format)"
    );
}

#[test]
fn oversized_events_are_refused_both_ways() {
    let mut envelope = samples::envelope(EventType::TenantCreated);
    envelope.event = Event::Tenant(TenantEvent::Created {
        name: "x".repeat(MAX_EVENT_BYTES),
    });
    assert!(matches!(
        encode(&envelope),
        Err(CodecError::TooLarge { .. })
    ));
    let huge = vec![1u8; MAX_EVENT_BYTES + 1];
    assert_eq!(
        decode(&huge),
        Err(CodecError::TooLarge {
            size: MAX_EVENT_BYTES + 1,
            max: MAX_EVENT_BYTES
        })
    );
}

fn corpus() -> Vec<Vec<u8>> {
    samples::all()
        .into_iter()
        .map(|(_, e)| encode(&e).expect("encodes"))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn mutated_events_never_panic_and_stay_stable(
        pick in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let corpus = corpus();
        let mut bytes = pick.get(&corpus).clone();
        for (at, value, op) in edits {
            let i = at.index(bytes.len().max(1));
            match op {
                0 if i < bytes.len() => bytes[i] = value,
                1 => bytes.insert(i.min(bytes.len()), value),
                _ => bytes.truncate(i),
            }
        }
        if let Ok(envelope) = decode(&bytes) {
            let again = encode(&envelope).expect("a decoded event encodes");
            prop_assert_eq!(decode(&again), Ok(envelope));
        }
    }
}

#[test]
fn heartbeats_of_agents_that_count_three_kinds_or_send_no_interval_still_decode() {
    use fleet_events::codec::Wire;
    use fleet_events::protocol::Heartbeat;
    let path = golden_dir().join("legacy/heartbeat.v1.bin");
    let old = std::fs::read(&path).expect("legacy golden file");
    let beat = Heartbeat::from_wire(&old).expect("a three-kind heartbeat decodes");
    assert_eq!((beat.running.backup, beat.running.prune), (1, 1));
    assert_eq!((beat.running.restore, beat.running.refresh), (0, 0));
    assert_eq!(beat.queued.total(), 2);
    assert_eq!(beat.outbox_depth, 3);
    let current = samples::protocol()
        .into_iter()
        .find(|(name, _)| name == "heartbeat")
        .expect("sample")
        .1;
    let beat = Heartbeat::from_wire(&current).expect("decodes");
    assert_eq!((beat.running.restore, beat.queued.refresh), (1, 1));
    assert_eq!(beat.every_secs, 10);
    // Agents that count every kind but do not send their interval: judged by the lease.
    let path = golden_dir().join("legacy/heartbeat.v2.bin");
    let unpaced = std::fs::read(&path).expect("legacy golden file");
    let beat = Heartbeat::from_wire(&unpaced).expect("a heartbeat without its interval decodes");
    assert_eq!((beat.running.restore, beat.queued.refresh), (1, 1));
    assert_eq!((beat.outbox_depth, beat.every_secs), (3, 0));
    let mut garbage = current.clone();
    garbage.truncate(current.len() - 3);
    assert!(Heartbeat::from_wire(&garbage).is_err());
}

/// The files in `legacy/*.v1.bin` were written before policies had hooks (schema 1): every
/// event and command holding a policy spec that an operator's log or an agent's queue may
/// hold from then.
fn legacy(name: &str) -> Vec<u8> {
    let path = golden_dir().join(format!("legacy/{name}.v1.bin"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn events_written_before_hooks_still_decode_with_no_hooks() {
    for t in [
        EventType::PolicyCreated,
        EventType::PolicyUpdated,
        EventType::TaskScheduled,
        EventType::TaskRequested,
    ] {
        let old = legacy(t.name());
        let envelope = decode(&old).unwrap_or_else(|e| panic!("{}: {e}", t.name()));
        assert_eq!(envelope.schema, SCHEMA_VERSION, "{}", t.name());
        assert_eq!(envelope, samples::envelope(t), "{}", t.name());
        let spec = match &envelope.event {
            Event::Policy {
                event: PolicyEvent::Created { spec } | PolicyEvent::Updated { spec },
                ..
            }
            | Event::Task {
                event: TaskEvent::Scheduled { spec, .. } | TaskEvent::Requested { spec, .. },
                ..
            } => spec,
            other => panic!("{}: {other:?}", t.name()),
        };
        assert!(spec.hooks.is_empty(), "{}", t.name());
        assert_eq!(encode(&envelope).as_deref(), Ok(&old[..]), "{}", t.name());
    }
}

#[test]
fn events_with_hooks_are_schema_2_and_others_stay_schema_1() {
    for (name, envelope) in samples::all() {
        let bytes = encode(&envelope).expect("encodes");
        let hooked = name.ends_with("+hooks");
        let expected = if hooked { SCHEMA_HOOKS } else { SCHEMA_VERSION };
        assert_eq!(u16::from(bytes[0]), expected, "{name}");
        assert_eq!(envelope.event.schema(), expected, "{name}");
    }
    let mut downgraded = samples::all()
        .into_iter()
        .find(|(name, _)| name == "policy.created+hooks")
        .expect("sample")
        .1;
    downgraded.schema = SCHEMA_VERSION;
    assert!(
        matches!(encode(&downgraded), Err(CodecError::Malformed(_))),
        "schema 1 cannot carry hooks: refused, not dropped"
    );
}

#[test]
fn run_commands_without_hooks_stay_schema_1_so_older_agents_run_them() {
    use fleet_events::codec::Wire;
    use fleet_events::protocol::{AgentCommand, Command};
    for name in ["command.run", "command.run_requested"] {
        let old = legacy(name);
        let command = AgentCommand::from_wire(&old).expect("a schema-1 command decodes");
        assert_eq!(command.schema, SCHEMA_VERSION, "{name}");
        let (Command::Run(order) | Command::RunRequested { order, .. }) = &command.command else {
            panic!("{name}: {command:?}")
        };
        assert!(order.spec.hooks.is_empty(), "{name}");
        assert_eq!(
            AgentCommand::new(command.command.clone())
                .to_wire()
                .as_deref(),
            Ok(&old[..]),
            "{name}: written today exactly as before"
        );
    }
    let hooked = samples::protocol()
        .into_iter()
        .find(|(name, _)| name == "command.run+hooks")
        .expect("sample")
        .1;
    assert_eq!(
        u16::from(hooked[0]),
        SCHEMA_HOOKS,
        "an agent reading only schema 1 refuses (parks) a run with hooks"
    );
    let command = AgentCommand::from_wire(&hooked).expect("decodes");
    let Command::Run(order) = &command.command else {
        panic!("{command:?}")
    };
    assert_eq!(order.spec.hooks, samples::hooked_spec().hooks);
    let downgraded = AgentCommand {
        schema: SCHEMA_VERSION,
        command: command.command.clone(),
    };
    assert!(downgraded.to_wire().is_err(), "hooks are never dropped");
}

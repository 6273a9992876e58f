//! Stream configurations: what each JetStream stream holds and for how long.
//!
//! Only fields that nats-server 2.9 understands are set (see ARCHITECTURE.md).

use std::time::Duration;

use async_nats::jetstream::stream::{Config, DiscardPolicy, RetentionPolicy, StorageType};

use crate::codec::MAX_EVENT_BYTES;
use crate::subject::{self, Channel, PARKED_PREFIX};

/// The event log: every change, forever.
pub const EVENTS: &str = "FLEET_EVENTS";
/// Work for agents: one message per dispatched attempt, removed when the agent acks it.
pub const DISPATCH: &str = "FLEET_DISPATCH";
/// What agents report: task reports, removed when intake acks them.
pub const INTAKE: &str = "FLEET_INTAKE";
/// Agents' heartbeats: the last one of each agent, kept for every reader.
pub const HEARTBEATS: &str = "FLEET_HEARTBEATS";
/// Messages a consumer could not handle, with the reason in a header.
pub const PARKED: &str = "FLEET_PARKED";

/// The key-value bucket of leases: which instance runs what must run once. Its keys
/// never expire by age (see [`leases`]); `fleet_leases`, the bucket of earlier versions
/// whose keys did, is left alone.
pub const LEASES_BUCKET: &str = "fleet_service_leases";
/// The stream behind [`LEASES_BUCKET`] (created by hand: see [`leases`]).
pub const LEASES: &str = "KV_fleet_service_leases";
/// How long a standby watches a lease's revision stand still, by its own clock, before it
/// takes the lease over.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How long a heartbeat is kept when no later one replaces it.
pub const HEARTBEAT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long agents' messages wait for their reader before they expire.
pub const AGENT_MESSAGE_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long parked messages are kept for inspection.
pub const PARKED_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Settings shared by all streams.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// 1 on one machine, 3 on a cluster.
    pub replicas: usize,
    /// How long a `Nats-Msg-Id` is remembered for deduplication.
    pub duplicate_window: Duration,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
        }
    }
}

fn base(name: &str, subjects: Vec<String>, opts: &StreamOptions) -> Config {
    Config {
        name: name.to_owned(),
        subjects,
        storage: StorageType::File,
        num_replicas: opts.replicas,
        duplicate_window: opts.duplicate_window,
        max_message_size: i32::try_from(MAX_EVENT_BYTES).unwrap_or(i32::MAX),
        discard: DiscardPolicy::Old,
        ..Config::default()
    }
}

/// `FLEET_EVENTS`: limits retention, no age limit, delete and purge denied.
pub fn events(opts: &StreamOptions) -> Config {
    Config {
        retention: RetentionPolicy::Limits,
        deny_delete: true,
        deny_purge: true,
        allow_direct: true,
        description: Some("restic-fleet event log".into()),
        ..base(EVENTS, vec![subject::all_events()], opts)
    }
}

/// Consumers `FLEET_DISPATCH` may hold: one durable consumer per agent. Set explicitly,
/// since nats-server 2.15 gives a stream that sets none a limit of 1,000 (and takes 0 or
/// -1 for "its default"), which stopped the thousand-and-first agent from receiving work.
pub const MAX_AGENT_CONSUMERS: i32 = 100_000;

/// `FLEET_DISPATCH`: a work queue of tasks per agent.
pub fn dispatch(opts: &StreamOptions) -> Config {
    Config {
        retention: RetentionPolicy::WorkQueue,
        max_consumers: MAX_AGENT_CONSUMERS,
        max_age: AGENT_MESSAGE_MAX_AGE,
        description: Some("restic-fleet tasks for agents".into()),
        ..base(DISPATCH, vec![subject::all_agents(Channel::Tasks)], opts)
    }
}

/// `FLEET_INTAKE`: a work queue of agents' reports.
pub fn intake(opts: &StreamOptions) -> Config {
    Config {
        retention: RetentionPolicy::WorkQueue,
        max_age: AGENT_MESSAGE_MAX_AGE,
        description: Some("restic-fleet reports from agents".into()),
        ..base(INTAKE, vec![subject::all_agents(Channel::Reports)], opts)
    }
}

/// The subjects `FLEET_INTAKE` held before heartbeats had a stream of their own:
/// [`crate::store::EventStore::ensure_streams`] moves them.
pub fn intake_before_heartbeats() -> Vec<String> {
    vec![
        subject::all_agents(Channel::Reports),
        subject::all_agents(Channel::Heartbeat),
    ]
}

/// `FLEET_HEARTBEATS`: the last heartbeat of each agent (one message per subject), with
/// the time the server stored it. Not a work queue: every dispatcher instance, standby or
/// active, and every projector reads it, and a new instance starts from each agent's
/// last heartbeat instead of assuming all agents were just heard.
pub fn heartbeats(opts: &StreamOptions) -> Config {
    Config {
        retention: RetentionPolicy::Limits,
        max_messages_per_subject: 1,
        max_age: HEARTBEAT_MAX_AGE,
        allow_direct: true,
        description: Some("restic-fleet last heartbeat of each agent".into()),
        ..base(
            HEARTBEATS,
            vec![subject::all_agents(Channel::Heartbeat)],
            opts,
        )
    }
}

/// `FLEET_PARKED`: dead letters, kept 30 days. Their size is not limited to an event's,
/// since what is parked may be exactly what was too large.
pub fn parked(opts: &StreamOptions) -> Config {
    Config {
        retention: RetentionPolicy::Limits,
        max_age: PARKED_MAX_AGE,
        max_message_size: -1,
        description: Some("restic-fleet messages that could not be handled".into()),
        ..base(PARKED, vec![format!("{PARKED_PREFIX}.>")], opts)
    }
}

/// `KV_fleet_service_leases`: the stream of the leases bucket, laid out as a key-value
/// bucket with history 1 and no max age: a key is never removed, only rewritten with
/// compare-and-set (see `fleet_control::lease`). nats-server 2.9.10 mishandles a key
/// expired by max age after a restart (it accepts a create on a subject that has a
/// message, then refuses updates), so nothing here expires by itself. Created as a
/// stream because async-nats cannot create a bucket on nats-server 2.9 (it reads account
/// info 2.9 does not send); opened as a bucket.
pub fn leases(opts: &StreamOptions) -> Config {
    Config {
        name: LEASES.to_owned(),
        subjects: vec![format!("$KV.{LEASES_BUCKET}.>")],
        storage: StorageType::File,
        num_replicas: opts.replicas,
        max_messages_per_subject: 1,
        duplicate_window: LEASE_TTL,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: DiscardPolicy::New,
        max_message_size: 1024,
        description: Some("restic-fleet leases".into()),
        ..Config::default()
    }
}

/// Every stream restic-fleet uses.
pub fn all(opts: &StreamOptions) -> Vec<Config> {
    vec![
        events(opts),
        dispatch(opts),
        intake(opts),
        heartbeats(opts),
        parked(opts),
        leases(opts),
    ]
}

/// The fields of `existing` that differ from `wanted` and that cannot be changed without
/// changing what the stream means (subjects, retention, storage, delete/purge denial).
pub fn conflicts(wanted: &Config, existing: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut differ = |field: &str, want: String, have: String| {
        if want != have {
            out.push(format!("{field}: wanted {want}, found {have}"));
        }
    };
    differ(
        "subjects",
        format!("{:?}", wanted.subjects),
        format!("{:?}", existing.subjects),
    );
    differ(
        "retention",
        format!("{:?}", wanted.retention),
        format!("{:?}", existing.retention),
    );
    differ(
        "storage",
        format!("{:?}", wanted.storage),
        format!("{:?}", existing.storage),
    );
    differ(
        "deny_delete",
        wanted.deny_delete.to_string(),
        existing.deny_delete.to_string(),
    );
    differ(
        "deny_purge",
        wanted.deny_purge.to_string(),
        existing.deny_purge.to_string(),
    );
    out
}

/// True if settings that can be changed in place (limits, replicas, windows) differ; the
/// consumer limit is [`raises_consumers`]' business.
pub fn needs_update(wanted: &Config, existing: &Config) -> bool {
    wanted.max_age != existing.max_age
        || wanted.duplicate_window != existing.duplicate_window
        || wanted.max_message_size != existing.max_message_size
        || wanted.num_replicas != existing.num_replicas
        || wanted.discard != existing.discard
        || wanted.allow_direct != existing.allow_direct
        || wanted.description != existing.description
}

/// True when `wanted` sets a consumer limit above the one `existing` was made with (none,
/// for a stream of an earlier version: nats-server 2.15 then applies its default of
/// 1,000, earlier servers none). Raising it is tried; a server that cannot change it
/// (before 2.13) keeps its own, which there means no limit.
pub fn raises_consumers(wanted: &Config, existing: &Config) -> bool {
    wanted.max_consumers > 0 && existing.max_consumers < wanted.max_consumers
}

/// `wanted` with `existing`'s consumer limit: the update a server that cannot change that
/// limit accepts.
pub fn keeping_consumers(wanted: &Config, existing: &Config) -> Config {
    Config {
        max_consumers: existing.max_consumers,
        ..wanted.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dispatch_streams_consumer_limit_is_raised_never_lowered() {
        let wanted = dispatch(&StreamOptions::default());
        assert_eq!(wanted.max_consumers, MAX_AGENT_CONSUMERS);
        for have in [-1, 0, 1000] {
            let existing = Config {
                max_consumers: have,
                ..wanted.clone()
            };
            assert!(raises_consumers(&wanted, &existing), "{have}");
            assert!(!needs_update(&wanted, &existing), "nothing else differs");
            assert_eq!(keeping_consumers(&wanted, &existing).max_consumers, have);
        }
        let higher = Config {
            max_consumers: MAX_AGENT_CONSUMERS * 2,
            ..wanted.clone()
        };
        assert!(!raises_consumers(&wanted, &higher));
        // Other streams set no limit and never ask for one.
        let events = events(&StreamOptions::default());
        assert!(!raises_consumers(&events, &events));
    }

    #[test]
    fn streams_do_not_overlap_and_events_are_protected() {
        let opts = StreamOptions::default();
        let e = events(&opts);
        assert!(e.deny_delete && e.deny_purge);
        assert_eq!(e.max_age, Duration::ZERO);
        assert_eq!(dispatch(&opts).retention, RetentionPolicy::WorkQueue);
        assert_eq!(
            leases(&opts).max_age,
            Duration::ZERO,
            "leases never expire by age"
        );
        assert_eq!(heartbeats(&opts).max_messages_per_subject, 1);
        let subjects: Vec<String> = all(&opts).into_iter().flat_map(|c| c.subjects).collect();
        let mut unique = subjects.clone();
        unique.dedup();
        assert_eq!(subjects.len(), unique.len());
    }

    #[test]
    fn conflicts_name_the_fields() {
        let opts = StreamOptions::default();
        let wanted = events(&opts);
        assert!(conflicts(&wanted, &wanted).is_empty());
        let other = Config {
            retention: RetentionPolicy::WorkQueue,
            deny_purge: false,
            ..wanted.clone()
        };
        let found = conflicts(&wanted, &other);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("retention"));
        assert!(!needs_update(&wanted, &other));
        let longer = Config {
            num_replicas: 3,
            ..wanted.clone()
        };
        assert!(needs_update(&wanted, &longer));
    }
}

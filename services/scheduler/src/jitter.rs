//! Deterministic jitter: each (policy, agent) pair runs a fixed offset after the fire time,
//! so a fleet does not start all at once, and every scheduler instance agrees on it.

use chrono::TimeDelta;
use fleet_events::ids::{AgentId, PolicyId};

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The delay of `agent`'s runs of `policy` after each fire time: in `[0, jitter_secs)`, in
/// whole milliseconds, the same on every machine and every release (a stable hash of the
/// two ids, never the process-seeded std hasher).
pub fn jitter_for(policy: PolicyId, agent: AgentId, jitter_secs: u32) -> TimeDelta {
    let span_ms = u64::from(jitter_secs) * 1000;
    if span_ms == 0 {
        return TimeDelta::zero();
    }
    let policy = policy.uuid();
    let agent = agent.uuid();
    let hash = policy
        .as_bytes()
        .iter()
        .chain(agent.as_bytes())
        .fold(FNV_OFFSET, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME)
        });
    let offset = i64::try_from(mix(hash) % span_ms).unwrap_or(0);
    TimeDelta::milliseconds(offset)
}

/// The splitmix64 finalizer: spreads FNV's weak low bits (ids that differ only in a few
/// bytes, such as UUIDv7s made in the same millisecond) over the whole word.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

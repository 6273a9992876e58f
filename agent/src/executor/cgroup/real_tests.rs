//! The CPU quota on this host's real cgroups: a CPU-burning child, spawned the way restic
//! is, gets throttled in its leaf, and the leaf is gone afterwards. Skips, saying why,
//! when neither cgroup v2 nor a v1 `cpu` hierarchy is usable (e.g. not root).

use std::fs;
use std::time::{Duration, Instant};

use fleet_events::policy::TaskKind;
use fleet_events::settings::IoClass;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::executor::{Invocation, Limits, RunOutcome, UNREACHABLE_AFTER, run_limited};
use crate::restic::ResticVersion;

/// The value of `field` in a `cpu.stat` file.
fn stat(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == field).then(|| value.trim().parse().ok())?
    })
}

#[tokio::test]
async fn a_cpu_burner_is_throttled_in_its_leaf_and_the_leaf_removed() {
    let limiter = CpuLimiter::start(Some(10));
    if !limiter.is_enforced() {
        eprintln!(
            "SKIPPED: no usable cgroup for CPU quotas here: {}",
            limiter.summary().unwrap_or_default()
        );
        return;
    }
    let task = TaskId::generate();
    let leaf = limiter.leaf(task, 1).expect("a leaf on a usable hierarchy");
    let dir = leaf.dir().to_owned();
    let inv = Invocation {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), "while :; do :; done".into()],
        env: Vec::new(),
        nice: 0,
        io_class: IoClass::BestEffort { level: 4 },
    };
    let cancel = CancellationToken::new();
    let version = ResticVersion::new(0, 17, 0);
    let run = run_limited(
        &inv,
        TaskKind::Check,
        Limits {
            timeout: Duration::from_secs(60),
            grace: Duration::from_secs(2),
            unreachable_after: UNREACHABLE_AFTER,
            version: &version,
            leaf: Some(&leaf),
        },
        cancel.clone(),
    );
    let observe = async {
        // About a second of burning; longer only if the child was slow to be throttled.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let until = Instant::now() + Duration::from_secs(10);
        let (procs, cpu_stat) = loop {
            let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            let cpu_stat = fs::read_to_string(dir.join("cpu.stat")).unwrap_or_default();
            if stat(&cpu_stat, "nr_throttled").unwrap_or(0) > 0 || Instant::now() > until {
                break (procs, cpu_stat);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        cancel.cancel();
        (procs, cpu_stat)
    };
    let (outcome, (procs, cpu_stat)) = tokio::join!(run, observe);
    assert_eq!(outcome, RunOutcome::Cancelled);
    eprintln!(
        "{} ({}), 10% of one core: processes {:?}; cpu.stat:\n{cpu_stat}",
        dir.display(),
        limiter.summary().unwrap_or_default(),
        procs.split_whitespace().collect::<Vec<_>>(),
    );
    assert!(!procs.trim().is_empty(), "the child ran in its leaf");
    let throttled = stat(&cpu_stat, "nr_throttled");
    assert!(throttled.is_some_and(|n| n > 0), "{cpu_stat}");

    leaf.remove().await;
    assert!(!dir.exists(), "{} removed", dir.display());
}

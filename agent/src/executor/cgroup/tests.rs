//! Tests of the CPU-quota decisions (parsing, choosing a hierarchy, what to write), and of
//! the file side on fake cgroup trees in temporary directories.

use std::fs;
use std::time::Duration;

use fleet_events::event::RunDetail;
use fleet_events::policy::TaskKind;
use fleet_events::protocol::ReportStatus;
use fleet_events::settings::IoClass;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::executor::{Invocation, Limits, RunOutcome, UNREACHABLE_AFTER, run_limited};
use crate::restic::ResticVersion;

/// This machine's kind of host: cgroup v1 hierarchies plus an empty v2 one.
const HYBRID_CGROUP: &str = "\
9:name=systemd:/
4:memory:/process_api/a5197809050e5db304b30a4807de78f4
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
";
const HYBRID_MOUNTINFO: &str = "\
22 1 0:20 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

#[test]
fn finds_the_cpu_line_of_proc_self_cgroup() {
    assert_eq!(v1_cpu_path(HYBRID_CGROUP), Some("/"));
    assert_eq!(
        v1_cpu_path("5:cpuset:/\n2:cpu,cpuacct:/system.slice/fleet-agent.service\n"),
        Some("/system.slice/fleet-agent.service")
    );
    assert_eq!(v1_cpu_path("3:cpuset:/\n2:cpuacct:/\n0::/\n"), None);
    assert_eq!(v1_cpu_path("0::/user.slice\n"), None);
    for junk in [
        "",
        "cpu",
        "1:cpu",
        "1:cpu:relative",
        ":::::",
        "\u{0}:cpu:\n",
    ] {
        assert_eq!(v1_cpu_path(junk), None, "{junk:?}");
    }
}

#[test]
fn parses_mountinfo_lines() {
    let mount = Mount::parse("32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu")
        .expect("a mount");
    assert_eq!(mount.root, Path::new("/"));
    assert_eq!(mount.mount_point, Path::new("/sys/fs/cgroup/cpu"));
    assert!(mount.is_v1_cpu());

    let with_optional = "40 31 0:37 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro,nosuid \
                         shared:9 master:2 - cgroup cgroup rw,cpu,cpuacct";
    let mount = Mount::parse(with_optional).expect("a mount");
    assert_eq!(mount.root, Path::new("/docker/abc"));
    assert_eq!(mount.mount_point, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
    assert!(mount.is_v1_cpu());

    let escaped = Mount::parse("1 2 0:3 / /mnt/my\\040cgroups\\134x rw - cgroup none rw,cpuset")
        .expect("a mount");
    assert_eq!(escaped.mount_point, Path::new("/mnt/my cgroups\\x"));
    assert!(!escaped.is_v1_cpu(), "cpuset is not cpu");
    let v2 = Mount::parse("41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw").expect("mount");
    assert!(!v2.is_v1_cpu());

    for junk in [
        "",
        "1 2 3",
        "1 2 3 / /mnt rw",
        "1 2 3 / /mnt rw - cgroup",
        "- - - -",
    ] {
        assert_eq!(Mount::parse(junk), None, "{junk:?}");
    }
}

#[test]
fn unescape_leaves_what_is_not_an_octal_escape() {
    assert_eq!(unescape("a\\040b"), Path::new("a b"));
    assert_eq!(unescape("a\\400b"), Path::new("a\\400b"), "over 255");
    assert_eq!(unescape("a\\09"), Path::new("a\\09"));
    assert_eq!(unescape("end\\"), Path::new("end\\"));
    assert_eq!(unescape("\\01"), Path::new("\\01"));
}

#[test]
fn the_agents_dir_in_the_v1_cpu_hierarchy() {
    assert_eq!(
        v1_cpu_dir(HYBRID_MOUNTINFO, HYBRID_CGROUP),
        Ok(PathBuf::from("/sys/fs/cgroup/cpu"))
    );
    let service = "2:cpu,cpuacct:/system.slice/fleet-agent.service\n";
    let merged = "40 31 0:37 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
    assert_eq!(
        v1_cpu_dir(merged, service),
        Ok(PathBuf::from(
            "/sys/fs/cgroup/cpu,cpuacct/system.slice/fleet-agent.service"
        ))
    );
    // A container sees its own cgroup as the mount's root.
    let container = "40 31 0:37 /docker/abc /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
    assert_eq!(
        v1_cpu_dir(container, "1:cpu:/docker/abc/job\n"),
        Ok(PathBuf::from("/sys/fs/cgroup/cpu/job"))
    );
    assert_eq!(
        v1_cpu_dir(container, "1:cpu:/docker/other\n"),
        Err(V1Cpu::OutsideMount {
            path: "/docker/other".into()
        })
    );
    assert_eq!(
        v1_cpu_dir(HYBRID_MOUNTINFO, "1:cpu:/a/../../etc\n"),
        Err(V1Cpu::OutsideMount {
            path: "/a/../../etc".into()
        })
    );
    assert_eq!(
        v1_cpu_dir(HYBRID_MOUNTINFO, "0::/\n"),
        Err(V1Cpu::NotInHierarchy)
    );
    let unified_only = "41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
    assert_eq!(
        v1_cpu_dir(unified_only, HYBRID_CGROUP),
        Err(V1Cpu::NotMounted)
    );
    assert_eq!(v1_cpu_dir("", ""), Err(V1Cpu::NotMounted));
}

#[test]
fn chooses_v2_then_v1_then_none() {
    let v2_dir = PathBuf::from("/sys/fs/cgroup/system.slice/fleet-agent.service");
    let v1 = V1Cpu::Available {
        dir: "/sys/fs/cgroup/cpu".into(),
    };
    let v2 = CpuQuota::Available {
        dir: v2_dir.clone(),
    };
    assert_eq!(
        choose(&v2, &v1),
        Ok(Backend::V2 {
            base: v2_dir.clone()
        })
    );
    // Started again in a process already moved into its leaf: the same base.
    let moved = CpuQuota::Available {
        dir: v2_dir.join(AGENT_LEAF),
    };
    assert_eq!(
        choose(&moved, &V1Cpu::NotMounted),
        Ok(Backend::V2 { base: v2_dir })
    );
    assert_eq!(
        choose(&CpuQuota::NoCgroupV2, &v1),
        Ok(Backend::V1 {
            base: "/sys/fs/cgroup/cpu/fleet-agent".into()
        })
    );
    let none = choose(&CpuQuota::NoCgroupV2, &V1Cpu::NotMounted).expect_err("none");
    let text = none.to_string();
    for expected in [
        "cgroup v2 no (/sys/fs/cgroup is not a cgroup v2 hierarchy)",
        "cgroup v1 no (no cgroup v1 cpu hierarchy is mounted)",
    ] {
        assert!(text.contains(expected), "{expected:?} in {text}");
    }
}

#[test]
fn quota_file_contents() {
    let v2 = Backend::V2 {
        base: "/cg/svc".into(),
    };
    let v1 = Backend::V1 {
        base: "/cg/cpu/fleet-agent".into(),
    };
    let files = |backend: &Backend, percent| {
        backend
            .quota_files(percent)
            .into_iter()
            .map(|(name, contents)| format!("{name}={contents}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(files(&v2, 10), ["cpu.max=10000 100000"]);
    assert_eq!(files(&v2, 6400), ["cpu.max=6400000 100000"]);
    assert_eq!(
        files(&v1, 150),
        ["cpu.cfs_period_us=100000", "cpu.cfs_quota_us=150000"]
    );
    // Out of range (validated away before): clamped, never 0 or unbounded.
    assert_eq!(quota_us(0), 1000);
    assert_eq!(quota_us(u16::MAX), 6_400_000);
}

#[test]
fn leaf_names() {
    let task: TaskId = "0192f1c4-5e6a-7b8c-9d0e-1f2a3b4c5d6e".parse().expect("id");
    let name = leaf_name(task, 3);
    assert_eq!(name, "restic-0192f1c4-5e6a-7b8c-9d0e-1f2a3b4c5d6e-3");
    assert!(is_leaf_name(&name));
    assert!(!is_leaf_name("restic-"));
    assert!(!is_leaf_name("fleet-agent"));
    let v1 = Backend::V1 {
        base: "/cg/fleet-agent".into(),
    };
    assert_eq!(
        v1.leaf_dir(task, 3),
        Path::new("/cg/fleet-agent").join(name)
    );
}

/// A fake v1 hierarchy mounted at `root`, with the agent in `/svc`.
fn fake_v1(root: &Path) -> (String, &'static str) {
    let mountinfo = format!(
        "32 31 0:29 / {} rw,relatime - cgroup cgroup rw,cpu\n",
        root.display()
    );
    fs::create_dir(root.join("svc")).expect("mkdir");
    (mountinfo, "1:cpu:/svc\n")
}

#[test]
fn v1_cpu_on_a_fake_hierarchy() {
    let root = tempdir();
    let (mountinfo, cgroup) = fake_v1(root.path());
    let dir = root.path().join("svc");
    assert_eq!(
        v1_cpu(&mountinfo, cgroup),
        V1Cpu::NoQuotaFile { dir: dir.clone() }
    );
    fs::write(dir.join("cpu.cfs_quota_us"), "-1\n").expect("write");
    assert_eq!(
        v1_cpu(&mountinfo, cgroup),
        V1Cpu::Available { dir: dir.clone() }
    );
    assert_eq!(
        fs::read_dir(&dir).expect("list").count(),
        1,
        "probe dir removed"
    );
    assert_eq!(v1_cpu("", cgroup), V1Cpu::NotMounted);
}

#[tokio::test]
async fn v1_start_sweeps_leftovers_and_makes_leaves() {
    let root = tempdir();
    let own = root.path().join("svc");
    let base = own.join(AGENT_LEAF);
    fs::create_dir_all(base.join("restic-old-1")).expect("mkdir");
    fs::create_dir_all(base.join("restic-busy-1")).expect("mkdir");
    fs::write(base.join("restic-busy-1/cgroup.procs"), "4242\n").expect("write");
    fs::create_dir_all(base.join("other")).expect("mkdir");

    let v1 = V1Cpu::Available { dir: own };
    let limiter = CpuLimiter::start_with(25, &CpuQuota::NoCgroupV2, &v1);
    assert!(limiter.is_enforced(), "{limiter:?}");
    assert!(
        !base.join("restic-old-1").exists(),
        "empty leftover removed"
    );
    assert!(base.join("restic-busy-1").exists(), "a leaf in use stays");
    assert!(base.join("other").exists(), "not ours");
    let summary = limiter.summary().expect("a summary");
    assert!(
        summary.starts_with("25% of one core (cgroup v1, "),
        "{summary}"
    );

    let task = TaskId::generate();
    let leaf = limiter.leaf(task, 2).expect("a leaf");
    assert_eq!(leaf.dir(), base.join(leaf_name(task, 2)));
    let read = |name: &str| fs::read_to_string(leaf.dir().join(name)).expect("read");
    assert_eq!(read("cpu.cfs_period_us"), "100000");
    assert_eq!(read("cpu.cfs_quota_us"), "25000");

    // A real cgroup has no removable files; here they go first.
    let dir = leaf.dir().to_owned();
    fs::remove_file(dir.join("cpu.cfs_period_us")).expect("rm");
    fs::remove_file(dir.join("cpu.cfs_quota_us")).expect("rm");
    leaf.remove().await;
    assert!(!dir.exists());
}

#[test]
fn v2_start_moves_the_agent_then_enables_cpu() {
    let root = tempdir();
    let own = root.path().to_owned();
    fs::write(own.join("cgroup.subtree_control"), "").expect("write");
    fs::create_dir(own.join("restic-old-1")).expect("mkdir");
    let v2 = CpuQuota::Available { dir: own.clone() };
    let limiter = CpuLimiter::start_with(10, &v2, &V1Cpu::NotMounted);
    assert_eq!(
        limiter,
        CpuLimiter::Enforced {
            backend: Backend::V2 { base: own.clone() },
            percent: 10
        }
    );
    let read = |path: PathBuf| fs::read_to_string(path).expect("read");
    assert_eq!(read(own.join(AGENT_LEAF).join("cgroup.procs")), "0");
    assert_eq!(read(own.join("cgroup.subtree_control")), "+cpu");
    assert!(!own.join("restic-old-1").exists());

    let task = TaskId::generate();
    let leaf = limiter.leaf(task, 1).expect("a leaf");
    assert_eq!(leaf.dir(), own.join(leaf_name(task, 1)));
    assert_eq!(read(leaf.dir().join("cpu.max")), "10000 100000");
}

#[test]
fn v2_start_keeps_cpu_already_enabled() {
    let root = tempdir();
    let own = root.path().to_owned();
    fs::write(own.join("cgroup.subtree_control"), "cpu memory\n").expect("write");
    let v2 = CpuQuota::Available { dir: own.clone() };
    assert!(CpuLimiter::start_with(10, &v2, &V1Cpu::NotMounted).is_enforced());
    assert_eq!(
        fs::read_to_string(own.join("cgroup.subtree_control")).expect("read"),
        "cpu memory\n"
    );
}

#[test]
fn without_a_usable_cgroup_the_quota_is_not_enforced() {
    assert_eq!(CpuLimiter::start(None), CpuLimiter::Off);
    assert_eq!(CpuLimiter::Off.summary(), None);
    assert_eq!(
        CpuLimiter::Off.leaf(TaskId::generate(), 1).map(|_| ()),
        None
    );

    let limiter = CpuLimiter::start_with(50, &CpuQuota::NoCgroupV2, &V1Cpu::NotMounted);
    assert!(!limiter.is_enforced());
    assert!(limiter.leaf(TaskId::generate(), 1).is_none());
    let summary = limiter.summary().expect("a summary");
    assert!(
        summary.starts_with("50% of one core, not enforced: no usable cgroup"),
        "{summary}"
    );

    // Chosen but not preparable: not enforced either.
    let root = tempdir();
    let gone = root.path().join("gone");
    let limiter = CpuLimiter::start_with(
        50,
        &CpuQuota::NoCgroupV2,
        &V1Cpu::Available { dir: gone.clone() },
    );
    let CpuLimiter::Unenforced { reason, .. } = &limiter else {
        panic!("{limiter:?}")
    };
    assert!(
        matches!(reason, Unenforced::Setup { dir, .. } if *dir == gone.join(AGENT_LEAF)),
        "{reason:?}"
    );
}

#[test]
fn a_leaf_that_cannot_be_made_is_none() {
    let root = tempdir();
    let limiter = CpuLimiter::Enforced {
        backend: Backend::V1 {
            base: root.path().join("gone"),
        },
        percent: 10,
    };
    assert!(limiter.leaf(TaskId::generate(), 1).is_none());
}

#[test]
fn a_dropped_leaf_is_removed_when_empty() {
    let root = tempdir();
    let dir = root.path().join("restic-x-1");
    let leaf = Leaf::create(dir.clone(), &[]).expect("a leaf");
    assert!(dir.is_dir());
    drop(leaf);
    assert!(!dir.exists());
}

#[tokio::test]
async fn the_child_writes_0_to_cgroup_procs_before_exec() {
    let root = tempdir();
    let dir = root.path().join("restic-x-1");
    let leaf = Leaf::create(dir.clone(), &[]).expect("a leaf");
    fs::write(dir.join("cgroup.procs"), "").expect("write");
    let mut command = tokio::process::Command::new("true");
    leaf.join_on_exec(&mut command);
    let status = command.status().await.expect("true runs");
    assert!(status.success());
    assert_eq!(
        fs::read_to_string(dir.join("cgroup.procs")).expect("read"),
        "0"
    );

    // No cgroup.procs: the hook fails, so does the spawn, before anything ran.
    fs::remove_file(dir.join("cgroup.procs")).expect("rm");
    let mut command = tokio::process::Command::new("true");
    leaf.join_on_exec(&mut command);
    let error = command.status().await.expect_err("the hook fails");
    assert_eq!(error.kind(), std::io::ErrorKind::NotFound, "{error}");
}

/// A leaf restic cannot join (here: no `cgroup.procs`) costs the quota, not the run.
#[tokio::test]
async fn a_run_whose_leaf_cannot_be_joined_runs_without_it() {
    let root = tempdir();
    let leaf = Leaf::create(root.path().join("restic-x-1"), &[]).expect("a leaf");
    let inv = Invocation {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), "exit 0".into()],
        env: Vec::new(),
        nice: 0,
        io_class: IoClass::BestEffort { level: 4 },
    };
    let outcome = run_limited(
        &inv,
        TaskKind::Check,
        Limits {
            timeout: Duration::from_secs(30),
            grace: Duration::from_secs(1),
            unreachable_after: UNREACHABLE_AFTER,
            version: &ResticVersion::new(0, 17, 0),
            leaf: Some(&leaf),
        },
        CancellationToken::new(),
    )
    .await;
    assert!(
        matches!(&outcome, RunOutcome::Finished(ReportStatus::Succeeded(s)) if s.detail == RunDetail::Check),
        "{outcome:?}"
    );
}

//! Tests of the probe's pure parts, and of its file checks on temporary directories.

use std::fs;

use super::*;

#[test]
fn restic_program_prefers_the_flag_then_a_non_empty_variable() {
    let os = |s: &str| Some(OsString::from(s));
    assert_eq!(
        restic_program(os("/opt/restic"), os("/env/restic")),
        "/opt/restic"
    );
    assert_eq!(restic_program(None, os("/env/restic")), "/env/restic");
    assert_eq!(restic_program(None, os("")), "restic");
    assert_eq!(restic_program(None, None), "restic");
}

#[test]
fn reads_the_cgroup_v2_line() {
    let hybrid = "4:memory:/process_api/b3\n1:cpu:/\n0::/\n";
    assert_eq!(cgroup_v2_path(hybrid), Some("/"));
    let unified = "0::/system.slice/fleet-agent.service\n";
    assert_eq!(
        cgroup_v2_path(unified),
        Some("/system.slice/fleet-agent.service")
    );
    assert_eq!(cgroup_v2_path("1:cpu:/\n"), None);
    assert_eq!(cgroup_v2_path(""), None);
}

#[test]
fn cpu_means_cpu_not_cpuset() {
    assert!(lists_cpu_controller("cpuset cpu io memory pids\n"));
    assert!(!lists_cpu_controller("cpuset io memory"));
    assert!(!lists_cpu_controller(""));
}

#[test]
fn cpu_quota_on_fake_hierarchies() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let root = root.path();
    assert_eq!(cpu_quota(root, Some("/")), CpuQuota::NoCgroupV2);

    fs::write(root.join("cgroup.controllers"), "cpuset memory\n").expect("write");
    assert_eq!(
        cpu_quota(root, None),
        CpuQuota::NoCpuController {
            dir: root.to_owned()
        }
    );

    fs::write(root.join("cgroup.controllers"), "cpuset cpu memory\n").expect("write");
    let own = root.join("agent.slice");
    fs::create_dir(&own).expect("mkdir");
    assert_eq!(
        cpu_quota(root, Some("/agent.slice")),
        CpuQuota::Available { dir: own.clone() }
    );
    assert_eq!(
        fs::read_dir(&own).expect("read_dir").count(),
        0,
        "probe dir removed"
    );

    fs::write(own.join("cgroup.controllers"), "memory\n").expect("write");
    assert_eq!(
        cpu_quota(root, Some("/agent.slice")),
        CpuQuota::NoCpuController { dir: own }
    );

    let gone = root.join("gone");
    assert_eq!(
        cpu_quota(root, Some("/gone")),
        CpuQuota::NotWritable { dir: gone }
    );
}

#[test]
fn finds_executables_on_a_path() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let tool = dir.path().join("tool");
    fs::write(&tool, "#!/bin/sh\n").expect("write");
    let path = std::env::join_paths(["/nonexistent", "", dir.path().to_str().expect("utf-8")])
        .expect("a PATH value");
    assert_eq!(find_in_path("tool", &path), None, "not executable yet");
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).expect("chmod");
    assert_eq!(find_in_path("tool", &path), Some(tool));
    assert_eq!(find_in_path("other", &path), None);
}

#[test]
fn a_missing_program_says_how_to_install_restic() {
    let error = restic_version(OsStr::new("/nonexistent/restic")).expect_err("missing");
    assert!(
        matches!(error, ProbeError::ResticMissing { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("apt-get install -y restic"),
        "{error}"
    );
}

#[test]
fn a_program_that_is_not_restic_is_refused() {
    // `true` exits 0 and prints nothing.
    let Some(program) = find_in_path("true", &std::env::var_os("PATH").unwrap_or_default()) else {
        return;
    };
    let error = restic_version(program.as_os_str()).expect_err("not restic");
    assert!(matches!(error, ProbeError::NotRestic { .. }), "{error:?}");
}

#[test]
fn the_report_names_every_capability() {
    let report = Report {
        restic_program: "restic".into(),
        restic: ResticVersion::new(0, 14, 0),
        cpu_quota: CpuQuota::NoCgroupV2,
        cpu_quota_v1: V1Cpu::Available {
            dir: PathBuf::from("/sys/fs/cgroup/cpu"),
        },
        nice: Some(PathBuf::from("/usr/bin/nice")),
        ionice: None,
    };
    let text = report.to_string();
    for expected in [
        "restic:             0.14.0 (restic)",
        "typed exit codes:   no (restic >= 0.17)",
        "--retry-lock:       no (restic >= 0.16)",
        "cpu quotas:         no (/sys/fs/cgroup is not a cgroup v2 hierarchy)",
        "cgroup v1 fallback: yes (cpu.cfs_quota_us under /sys/fs/cgroup/cpu)",
        "nice:               yes (/usr/bin/nice)",
        "ionice:             no (not on PATH)",
    ] {
        assert!(text.contains(expected), "{expected:?} in\n{text}");
    }
}

#[test]
fn the_v1_fallback_is_named_only_without_cgroup_v2() {
    let report = Report {
        restic_program: "restic".into(),
        restic: ResticVersion::new(0, 17, 0),
        cpu_quota: CpuQuota::Available {
            dir: PathBuf::from("/sys/fs/cgroup/system.slice/fleet-agent.service"),
        },
        cpu_quota_v1: V1Cpu::NotMounted,
        nice: None,
        ionice: None,
    };
    let text = report.to_string();
    assert!(
        text.contains("cpu quotas:         yes (cgroup v2 cpu.max under"),
        "{text}"
    );
    assert!(!text.contains("cgroup v1"), "{text}");
}

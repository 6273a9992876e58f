//! The Debian packages as an operator installs them: `scripts/package` builds both from
//! the programs this test run built, `dpkg -i` installs them into this machine, and the
//! installed programs run from their installed paths: `--version`, `check-config` of the
//! installed template, the systemd unit running the installed agent with the installed
//! configuration, the state directory for the agent alone. `dpkg --purge` then removes
//! every trace. Needs root and dpkg (CI has both); skips, saying so, otherwise, and on a
//! machine where /etc/fleet-agent exists without the package (an operator's own agent).

use std::path::Path;
use std::process::Command;

use crate::support::agent::agent_binary;

fn run(program: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn installed(package: &str) -> bool {
    run("dpkg-query", &["-W", "-f=${Status}", package])
        .1
        .contains("install ok installed")
}

/// Purges both packages when dropped, also when the test fails.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", "fleet-agent", "fleet"])
            .output();
    }
}

#[test]
fn the_packages_install_run_from_their_paths_and_purge_cleanly() {
    // SAFETY: geteuid(2) has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let dpkg = Command::new("dpkg-deb").arg("--version").output().is_ok();
    if !root || !dpkg {
        eprintln!("SKIPPED: installing packages needs root and dpkg (root: {root}, dpkg: {dpkg})");
        return;
    }
    if Path::new("/etc/fleet-agent").exists() && !installed("fleet-agent") {
        eprintln!("SKIPPED: /etc/fleet-agent exists and is not the package's: not touching it");
        return;
    }
    let bin_dir = agent_binary().parent().expect("target dir").to_owned();
    let out = tempfile::tempdir().expect("tempdir");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo");
    let script = repo.join("scripts/package");
    let (ok, said) = run(
        script.to_str().expect("utf-8"),
        &[
            "--bin-dir",
            bin_dir.to_str().expect("utf-8"),
            "--out",
            out.path().to_str().expect("utf-8"),
            "--compress",
            "none",
        ],
    );
    assert!(ok, "{said}");
    let debs: Vec<&str> = said.lines().filter(|l| l.ends_with(".deb")).collect();
    assert_eq!(debs.len(), 2, "{said}");
    let version = env!("CARGO_PKG_VERSION");

    let _purge = Purge;
    let mut args = vec!["-i"];
    args.extend(&debs);
    let (ok, said) = run("dpkg", &args);
    assert!(ok, "{said}");
    assert!(
        said.contains("systemctl enable --now fleet-agent"),
        "{said}"
    );
    assert!(installed("fleet-agent") && installed("fleet"));

    assert_eq!(
        run("/usr/bin/fleet-agent", &["--version"]),
        (true, format!("fleet-agent {version}\n"))
    );
    assert_eq!(
        run("/usr/bin/fleet", &["--version"]),
        (true, format!("fleet {version}\n"))
    );
    let (ok, said) = run(
        "/usr/bin/fleet-agent",
        &["check-config", "--config", "/etc/fleet-agent/agent.yaml"],
    );
    assert!(ok, "the installed template is valid: {said}");
    assert!(said.contains("configuration is valid"), "{said}");

    let unit = std::fs::read_to_string("/lib/systemd/system/fleet-agent.service").expect("unit");
    assert!(
        unit.lines()
            .any(|l| l == "ExecStart=/usr/bin/fleet-agent run --config /etc/fleet-agent/agent.yaml"),
        "{unit}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &str| std::fs::metadata(path).expect(path).permissions().mode() & 0o777;
    assert_eq!(mode("/var/lib/fleet-agent"), 0o700);
    assert_eq!(mode("/etc/fleet-agent/agent.yaml"), 0o640);
    let conffiles = run("dpkg-query", &["-W", "-f=${Conffiles}", "fleet-agent"]).1;
    assert!(
        conffiles.contains("/etc/fleet-agent/agent.yaml"),
        "{conffiles}"
    );

    let (ok, said) = run("dpkg", &["--purge", "fleet-agent", "fleet"]);
    assert!(ok, "{said}");
    for gone in [
        "/usr/bin/fleet-agent",
        "/usr/bin/fleet",
        "/etc/fleet-agent",
        "/var/lib/fleet-agent",
        "/lib/systemd/system/fleet-agent.service",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} is left after the purge");
    }
}

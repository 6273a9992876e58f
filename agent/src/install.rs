//! `fleet-agent install`: the service definition that runs `fleet-agent run` at boot, a
//! systemd unit (Linux) or a launchd plist (macOS). Rendering is pure
//! ([`render_systemd`], [`render_launchd`]); [`write_unit`] writes the file and refuses
//! to replace a different one unless forced.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// The systemd unit's name.
pub const SYSTEMD_UNIT: &str = "fleet-agent.service";
/// Where systemd units are installed by default.
pub const SYSTEMD_DIR: &str = "/etc/systemd/system";
/// The launchd job's label; the plist is `<label>.plist`.
pub const LAUNCHD_LABEL: &str = "net.restic-fleet.agent";
/// Where launchd daemons are installed by default.
pub const LAUNCHD_DIR: &str = "/Library/LaunchDaemons";
/// The state directory systemd creates for the unit (`StateDirectory=fleet-agent`).
pub const SYSTEMD_STATE_DIR: &str = "/var/lib/fleet-agent";

/// The kind of service manager a definition is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    Systemd,
    Launchd,
}

impl Manager {
    /// The service manager of this platform: launchd on macOS, systemd elsewhere.
    pub fn native() -> Self {
        if cfg!(target_os = "macos") {
            Manager::Launchd
        } else {
            Manager::Systemd
        }
    }

    /// The file name of the definition.
    pub fn file_name(self) -> String {
        match self {
            Manager::Systemd => SYSTEMD_UNIT.to_owned(),
            Manager::Launchd => format!("{LAUNCHD_LABEL}.plist"),
        }
    }

    /// The directory the definition goes to when none is given.
    pub fn default_dir(self) -> &'static Path {
        Path::new(match self {
            Manager::Systemd => SYSTEMD_DIR,
            Manager::Launchd => LAUNCHD_DIR,
        })
    }

    /// The definition running `binary run --config config`.
    pub fn render(self, binary: &Path, config: &Path) -> String {
        match self {
            Manager::Systemd => render_systemd(binary, config),
            Manager::Launchd => render_launchd(binary, config),
        }
    }

    /// The commands that load and start the installed definition at `file`.
    pub fn enable_commands(self, file: &Path) -> String {
        match self {
            Manager::Systemd => {
                "systemctl daemon-reload && systemctl enable --now fleet-agent".into()
            }
            Manager::Launchd => format!("launchctl load -w {}", file.display()),
        }
    }
}

/// The systemd unit running `binary run --config config` (both absolute paths).
pub fn render_systemd(binary: &Path, config: &Path) -> String {
    format!(
        "\
# The restic-fleet agent, from `fleet-agent install` or the fleet-agent package.
# Change it with a drop-in: `systemctl edit fleet-agent`.
[Unit]
Description=restic-fleet agent (runs restic for the fleet control plane)
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart={} run --config {}
Restart=on-failure
RestartSec=5
# control-group: stopping the agent stops every process of the unit, restic included,
# so no orphaned restic keeps running (and holding its repository lock) after the agent
# died; the agent reports that attempt as interrupted on its next start.
KillMode=control-group
# The agent's cgroup is its own to divide: it moves itself into a leaf and runs each
# restic in another with cpu.max (cpuQuotaPercent); without delegation, no cgroup v2 quota.
Delegate=cpu
StateDirectory=fleet-agent
# It holds the agent's NATS key and identity: for the agent's user only.
StateDirectoryMode=0700
NoNewPrivileges=true
# The agent itself at normal priority; restic's niceness and IO class come from the
# agent's settings (nice, ioClass).
Nice=0

[Install]
WantedBy=multi-user.target
",
        systemd_word(binary),
        systemd_word(config),
    )
}

/// The launchd plist running `binary run --config config` (both absolute paths).
pub fn render_launchd(binary: &Path, config: &Path) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- Written by `fleet-agent install`. Run it again to change it. -->
<plist version="1.0">
<dict>
  <key>Label</key>
  <string>{LAUNCHD_LABEL}</string>
  <key>ProgramArguments</key>
  <array>
    <string>{}</string>
    <string>run</string>
    <string>--config</string>
    <string>{}</string>
  </array>
  <key>RunAtLoad</key>
  <true/>
  <!-- Restarted when it fails, at most every 5 s. -->
  <key>KeepAlive</key>
  <dict>
    <key>SuccessfulExit</key>
    <false/>
  </dict>
  <key>ThrottleInterval</key>
  <integer>5</integer>
  <!-- Stopping the agent stops its process group, restic included. -->
  <key>AbandonProcessGroup</key>
  <false/>
  <!-- restic's niceness and IO class come from the agent's settings. -->
  <key>Nice</key>
  <integer>0</integer>
</dict>
</plist>
"#,
        xml_text(&binary.to_string_lossy()),
        xml_text(&config.to_string_lossy()),
    )
}

/// A path as one word of a systemd command line: `%` and `$` escaped (specifiers and
/// variables), and quoted when it holds blanks, quotes or backslashes.
fn systemd_word(path: &Path) -> String {
    let text = path.to_string_lossy().replace('%', "%%").replace('$', "$$");
    if text
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';'))
    {
        format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        text
    }
}

fn xml_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// What [`write_unit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Created,
    /// The same content was already there.
    Unchanged,
    /// A different file was replaced (`--force`).
    Replaced,
}

/// Why [`write_unit`] did not write.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{} exists and differs; use --force to replace it", .0.display())]
    Exists(PathBuf),
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Writes `contents` to `dir/name` (mode 0644, through a temporary file and a rename).
/// An existing file with other contents is replaced only if `force`.
pub fn write_unit(
    dir: &Path,
    name: &str,
    contents: &str,
    force: bool,
) -> Result<(PathBuf, Written), InstallError> {
    let path = dir.join(name);
    let io = |source| InstallError::Io {
        path: path.clone(),
        source,
    };
    let written = match std::fs::read(&path) {
        Ok(old) if old == contents.as_bytes() => return Ok((path, Written::Unchanged)),
        Ok(_) if !force => return Err(InstallError::Exists(path)),
        Ok(_) => Written::Replaced,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Written::Created,
        Err(e) => return Err(io(e)),
    };
    let temp = dir.join(format!(".{name}.tmp"));
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&temp)
        .and_then(|mut file| {
            file.write_all(contents.as_bytes())?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&temp, &path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(io(e));
    }
    Ok((path, written))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_unit() {
        let unit = render_systemd(
            Path::new("/usr/local/bin/fleet-agent"),
            Path::new("/etc/fleet-agent/config.yaml"),
        );
        let lines: Vec<&str> = unit.lines().collect();
        for expected in [
            "[Unit]",
            "Wants=network-online.target",
            "After=network-online.target",
            "[Service]",
            "ExecStart=/usr/local/bin/fleet-agent run --config /etc/fleet-agent/config.yaml",
            "Restart=on-failure",
            "RestartSec=5",
            "KillMode=control-group",
            "Delegate=cpu",
            "StateDirectory=fleet-agent",
            "StateDirectoryMode=0700",
            "NoNewPrivileges=true",
            "Nice=0",
            "[Install]",
            "WantedBy=multi-user.target",
        ] {
            assert!(lines.contains(&expected), "{expected:?} in\n{unit}");
        }
        assert!(lines.iter().any(|l| l.starts_with("Description=")));
        // The reason for KillMode sits right above it.
        let kill = lines
            .iter()
            .position(|l| l.starts_with("KillMode="))
            .unwrap();
        assert!(lines[kill - 1].starts_with('#'), "{unit}");
        assert!(unit.contains("restic"));
    }

    #[test]
    fn systemd_quotes_and_escapes_paths() {
        let unit = render_systemd(
            Path::new("/opt/fleet agent/fleet-agent"),
            Path::new("/etc/50%/$HOME/a\"b.yaml"),
        );
        assert!(
            unit.contains(
                "ExecStart=\"/opt/fleet agent/fleet-agent\" run \
                 --config \"/etc/50%%/$$HOME/a\\\"b.yaml\"\n"
            ),
            "{unit}"
        );
    }

    #[test]
    fn launchd_plist() {
        let plist = render_launchd(
            Path::new("/usr/local/bin/fleet-agent"),
            Path::new("/etc/fleet & co/config.yaml"),
        );
        assert!(plist.starts_with("<?xml"));
        assert!(plist.contains("<string>net.restic-fleet.agent</string>"));
        assert!(plist.contains(
            "<string>/usr/local/bin/fleet-agent</string>\n    <string>run</string>\n    \
             <string>--config</string>\n    <string>/etc/fleet &amp; co/config.yaml</string>"
        ));
        assert!(plist.contains("<key>SuccessfulExit</key>\n    <false/>"));
        assert!(plist.contains("<key>ThrottleInterval</key>\n  <integer>5</integer>"));
        assert!(plist.contains("<key>RunAtLoad</key>\n  <true/>"));
        assert!(plist.trim_end().ends_with("</plist>"));
    }

    #[test]
    fn native_manager() {
        let manager = Manager::native();
        if cfg!(target_os = "macos") {
            assert_eq!(manager.file_name(), "net.restic-fleet.agent.plist");
            assert_eq!(manager.default_dir(), Path::new("/Library/LaunchDaemons"));
        } else {
            assert_eq!(manager.file_name(), "fleet-agent.service");
            assert_eq!(manager.default_dir(), Path::new("/etc/systemd/system"));
        }
        assert_eq!(
            Manager::Launchd.enable_commands(Path::new("/L/x.plist")),
            "launchctl load -w /L/x.plist"
        );
    }

    #[test]
    fn writes_once_refuses_a_different_file_unless_forced() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, written) = write_unit(dir.path(), SYSTEMD_UNIT, "one\n", false).expect("create");
        assert_eq!(written, Written::Created);
        assert_eq!(path, dir.path().join(SYSTEMD_UNIT));
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o022, 0, "not writable by others: {mode:o}");

        let (_, written) = write_unit(dir.path(), SYSTEMD_UNIT, "one\n", false).expect("same");
        assert_eq!(written, Written::Unchanged);

        let refused = write_unit(dir.path(), SYSTEMD_UNIT, "two\n", false);
        assert!(
            matches!(refused, Err(InstallError::Exists(_))),
            "{refused:?}"
        );
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "one\n");

        let (_, written) = write_unit(dir.path(), SYSTEMD_UNIT, "two\n", true).expect("forced");
        assert_eq!(written, Written::Replaced);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "two\n");

        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, [SYSTEMD_UNIT], "no temporary left");
    }

    #[test]
    fn missing_dir_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let result = write_unit(&dir.path().join("nope"), SYSTEMD_UNIT, "x", false);
        assert!(matches!(result, Err(InstallError::Io { .. })), "{result:?}");
    }
}

//! The `fleet-agent` command line, parsed by hand.

use std::ffi::OsString;
use std::path::PathBuf;

/// Exit code for a command line that cannot be understood (`EX_USAGE`, sysexits.h).
pub const EX_USAGE: u8 = 64;

/// `fleet-agent --help`.
pub const USAGE: &str = "\
usage: fleet-agent <command> [options]

commands:
  run              run the agent until SIGINT or SIGTERM (needs --config); registers
                   first if the config has an enrollment token and the state
                   directory no identity
  register         register with the config's enrollment token, store the identity
                   in the state directory and print it (needs --config); exit 77 if
                   the token is refused
  check-config     check a configuration file and list every problem in it
  probe            show what this host can do: the restic version and what it
                   supports, CPU quotas (cgroup v2 cpu.max), nice and ionice
  install          write the service that runs the agent at boot (needs --config):
                   a systemd unit, fleet-agent.service in /etc/systemd/system (on
                   macOS a launchd plist in /Library/LaunchDaemons); the config is
                   checked first; prints how to enable it
  status           show what the running agent last wrote in its state directory
                   (needs --config); exit 3 if the agent is not running

options:
  --config FILE    the agent's YAML configuration (run, register, check-config,
                   install, status); see fleet-agent.example.yaml
  --restic PATH    the restic program (probe; default: $RESTIC, else restic on PATH)
  --unit-dir DIR   where install writes the service (default: see install)
  --binary PATH    the fleet-agent program the service runs (install; default:
                   this program)
  --force          let install replace a different existing service file
  -o, --output FORMAT
                   status as a table (default) or json (the status file as is)
  -h, --help       show this help
";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Print [`USAGE`].
    Help,
    /// Probe the host; `restic` is the `--restic` value, if given.
    Probe { restic: Option<OsString> },
    /// Run the agent with the configuration file `config`.
    Run { config: PathBuf },
    /// Register with the configuration's enrollment token.
    Register { config: PathBuf },
    /// Check the configuration file `config`.
    CheckConfig { config: PathBuf },
    /// Write the service definition running the agent with `config`.
    Install {
        config: PathBuf,
        /// `--unit-dir`; the platform's default if `None`.
        unit_dir: Option<PathBuf>,
        /// `--binary`; this program if `None`.
        binary: Option<PathBuf>,
        /// `--force`: replace a different existing file.
        force: bool,
    },
    /// Show the running agent's status file.
    Status { config: PathBuf, output: Output },
}

/// How `status` prints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Output {
    #[default]
    Table,
    /// The status file as is.
    Json,
}

/// A command line that cannot be understood; print it with [`USAGE`] and exit
/// [`EX_USAGE`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    #[error("no command given")]
    MissingCommand,
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    #[error("unknown option {0:?}")]
    UnknownOption(String),
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    #[error("{option} must be {expected}, not {value:?}")]
    InvalidValue {
        option: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{command} needs {option}")]
    MissingOption {
        command: &'static str,
        option: &'static str,
    },
    #[error("{option} does not apply to {command}")]
    NotApplicable {
        command: &'static str,
        option: &'static str,
    },
    #[error("unexpected argument {0:?}")]
    UnexpectedArgument(String),
}

/// The options that take a value (`--name VALUE` or `--name=VALUE`; `-o` is `--output`).
const VALUE_OPTIONS: [&str; 5] = ["--restic", "--config", "--unit-dir", "--binary", "--output"];

/// Parses the arguments after the program name. Options may come before or after the
/// command; `--help` anywhere wins.
pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Command, UsageError> {
    let mut args = args.into_iter();
    let mut command: Option<String> = None;
    // Indexed like VALUE_OPTIONS.
    let mut values: [Option<OsString>; 5] = Default::default();
    let mut force = false;
    let mut help = false;
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        let name = match text.as_ref() {
            "-o" => "--output",
            other => other.split_once('=').map_or(other, |(name, _)| name),
        };
        if let Some(index) = VALUE_OPTIONS.iter().position(|option| *option == name) {
            let option = VALUE_OPTIONS[index];
            values[index] = Some(match text.split_once('=') {
                Some((_, value)) if text.starts_with("--") => value.into(),
                _ => args.next().ok_or(UsageError::MissingValue(option))?,
            });
            continue;
        }
        match text.as_ref() {
            "-h" | "--help" => help = true,
            "--force" => force = true,
            _ if text.starts_with('-') => return Err(UsageError::UnknownOption(text.into())),
            _ if command.is_none() => command = Some(text.into_owned()),
            _ => return Err(UsageError::UnexpectedArgument(text.into())),
        }
    }
    if help {
        return Ok(Command::Help);
    }
    let [restic, config, unit_dir, binary, output] = values;
    let command: &'static str = match command.as_deref() {
        Some("help") => return Ok(Command::Help),
        Some("probe") => "probe",
        Some("run") => "run",
        Some("register") => "register",
        Some("check-config") => "check-config",
        Some("install") => "install",
        Some("status") => "status",
        Some(other) => return Err(UsageError::UnknownCommand(other.to_owned())),
        None => return Err(UsageError::MissingCommand),
    };
    let allowed: &[&str] = match command {
        "probe" => &["--restic"],
        "install" => &["--config", "--unit-dir", "--binary", "--force"],
        "status" => &["--config", "--output"],
        _ => &["--config"],
    };
    let given = [
        ("--restic", restic.is_some()),
        ("--config", config.is_some()),
        ("--unit-dir", unit_dir.is_some()),
        ("--binary", binary.is_some()),
        ("--output", output.is_some()),
        ("--force", force),
    ];
    if let Some((option, _)) = given
        .iter()
        .find(|(option, given)| *given && !allowed.contains(option))
    {
        return Err(UsageError::NotApplicable { command, option });
    }
    let config = || {
        config
            .clone()
            .map(PathBuf::from)
            .ok_or(UsageError::MissingOption {
                command,
                option: "--config",
            })
    };
    Ok(match command {
        "probe" => Command::Probe { restic },
        "run" => Command::Run { config: config()? },
        "register" => Command::Register { config: config()? },
        "check-config" => Command::CheckConfig { config: config()? },
        "install" => Command::Install {
            config: config()?,
            unit_dir: unit_dir.map(PathBuf::from),
            binary: binary.map(PathBuf::from),
            force,
        },
        _ => Command::Status {
            config: config()?,
            output: match output.as_ref().map(|o| o.to_string_lossy()).as_deref() {
                None | Some("table") => Output::Table,
                Some("json") => Output::Json,
                Some(other) => {
                    return Err(UsageError::InvalidValue {
                        option: "--output",
                        value: other.to_owned(),
                        expected: "table or json",
                    });
                }
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Command, UsageError> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn probe_with_and_without_restic() {
        let probe = |restic: Option<&str>| Command::Probe {
            restic: restic.map(OsString::from),
        };
        assert_eq!(parse_strs(&["probe"]), Ok(probe(None)));
        assert_eq!(
            parse_strs(&["probe", "--restic", "/r"]),
            Ok(probe(Some("/r")))
        );
        assert_eq!(parse_strs(&["--restic=/r", "probe"]), Ok(probe(Some("/r"))));
    }

    #[test]
    fn run_and_check_config_take_a_config() {
        assert_eq!(
            parse_strs(&["run", "--config", "/etc/a.yaml"]),
            Ok(Command::Run {
                config: "/etc/a.yaml".into()
            })
        );
        assert_eq!(
            parse_strs(&["--config=a.yaml", "check-config"]),
            Ok(Command::CheckConfig {
                config: "a.yaml".into()
            })
        );
    }

    #[test]
    fn install_options() {
        assert_eq!(
            parse_strs(&["install", "--config", "/etc/a.yaml"]),
            Ok(Command::Install {
                config: "/etc/a.yaml".into(),
                unit_dir: None,
                binary: None,
                force: false,
            })
        );
        assert_eq!(
            parse_strs(&[
                "--force",
                "install",
                "--config=a.yaml",
                "--unit-dir",
                "/tmp/units",
                "--binary=/usr/bin/fleet-agent",
            ]),
            Ok(Command::Install {
                config: "a.yaml".into(),
                unit_dir: Some("/tmp/units".into()),
                binary: Some("/usr/bin/fleet-agent".into()),
                force: true,
            })
        );
    }

    #[test]
    fn status_output() {
        let status = |output| Command::Status {
            config: "a.yaml".into(),
            output,
        };
        assert_eq!(
            parse_strs(&["status", "--config", "a.yaml"]),
            Ok(status(Output::Table))
        );
        assert_eq!(
            parse_strs(&["status", "--config", "a.yaml", "-o", "json"]),
            Ok(status(Output::Json))
        );
        assert_eq!(
            parse_strs(&["--output=table", "status", "--config", "a.yaml"]),
            Ok(status(Output::Table))
        );
    }

    #[test]
    fn usage_names_every_command_and_option() {
        for word in [
            "run",
            "check-config",
            "probe",
            "install",
            "status",
            "--config",
            "--restic",
            "--unit-dir",
            "--binary",
            "--force",
            "-o, --output",
            "/etc/systemd/system",
            "/Library/LaunchDaemons",
        ] {
            assert!(USAGE.contains(word), "{word}");
        }
    }

    #[test]
    fn help_wins() {
        for args in [
            &["--help"][..],
            &["-h"],
            &["help"],
            &["probe", "--help"],
            &["x", "-h"],
        ] {
            assert_eq!(parse_strs(args), Ok(Command::Help), "{args:?}");
        }
    }

    #[test]
    fn errors() {
        let cases = [
            (&[][..], UsageError::MissingCommand),
            (&["serve"], UsageError::UnknownCommand("serve".into())),
            (
                &["run"],
                UsageError::MissingOption {
                    command: "run",
                    option: "--config",
                },
            ),
            (
                &["run", "--config", "c", "--restic", "r"],
                UsageError::NotApplicable {
                    command: "run",
                    option: "--restic",
                },
            ),
            (
                &["probe", "--config=c"],
                UsageError::NotApplicable {
                    command: "probe",
                    option: "--config",
                },
            ),
            (
                &["install"],
                UsageError::MissingOption {
                    command: "install",
                    option: "--config",
                },
            ),
            (
                &["status", "-o", "json"],
                UsageError::MissingOption {
                    command: "status",
                    option: "--config",
                },
            ),
            (
                &["status", "--config", "c", "-o", "yaml"],
                UsageError::InvalidValue {
                    option: "--output",
                    value: "yaml".into(),
                    expected: "table or json",
                },
            ),
            (
                &["status", "--config", "c", "-o"],
                UsageError::MissingValue("--output"),
            ),
            (
                &["status", "--config", "c", "--force"],
                UsageError::NotApplicable {
                    command: "status",
                    option: "--force",
                },
            ),
            (
                &["run", "--config", "c", "--unit-dir", "d"],
                UsageError::NotApplicable {
                    command: "run",
                    option: "--unit-dir",
                },
            ),
            (
                &["install", "--config", "c", "-o", "json"],
                UsageError::NotApplicable {
                    command: "install",
                    option: "--output",
                },
            ),
            (
                &["probe", "--binary", "b"],
                UsageError::NotApplicable {
                    command: "probe",
                    option: "--binary",
                },
            ),
            (
                &["install", "--force=yes"],
                UsageError::UnknownOption("--force=yes".into()),
            ),
            (&["probe", "-v"], UsageError::UnknownOption("-v".into())),
            (&["probe", "--restic"], UsageError::MissingValue("--restic")),
            (
                &["probe", "extra"],
                UsageError::UnexpectedArgument("extra".into()),
            ),
        ];
        for (args, expected) in cases {
            assert_eq!(parse_strs(args), Err(expected), "{args:?}");
        }
    }
}

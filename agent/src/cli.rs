//! The `fleet-agent` command line, parsed by hand.

use std::ffi::OsString;
use std::path::PathBuf;

/// Exit code for a command line that cannot be understood (`EX_USAGE`, sysexits.h).
pub const EX_USAGE: u8 = 64;

/// `fleet-agent --help`.
pub const USAGE: &str = "\
usage: fleet-agent <command> [options]

commands:
  run              run the agent until SIGINT or SIGTERM (needs --config)
  check-config     check a configuration file and list every problem in it
  probe            show what this host can do: the restic version and what it
                   supports, CPU quotas (cgroup v2 cpu.max), nice and ionice

options:
  --config FILE    the agent's YAML configuration (run, check-config); see
                   fleet-agent.example.yaml
  --restic PATH    the restic program (default: $RESTIC, else restic on PATH)
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
    /// Check the configuration file `config`.
    CheckConfig { config: PathBuf },
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

/// Parses the arguments after the program name. Options may come before or after the
/// command; `--help` anywhere wins.
pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Command, UsageError> {
    let mut args = args.into_iter();
    let mut command: Option<String> = None;
    let mut restic: Option<OsString> = None;
    let mut config: Option<OsString> = None;
    let mut help = false;
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        match text.as_ref() {
            "-h" | "--help" => help = true,
            "--restic" => restic = Some(args.next().ok_or(UsageError::MissingValue("--restic"))?),
            _ if text.starts_with("--restic=") => {
                restic = Some(text["--restic=".len()..].into());
            }
            "--config" => config = Some(args.next().ok_or(UsageError::MissingValue("--config"))?),
            _ if text.starts_with("--config=") => {
                config = Some(text["--config=".len()..].into());
            }
            _ if text.starts_with('-') => return Err(UsageError::UnknownOption(text.into())),
            _ if command.is_none() => command = Some(text.into_owned()),
            _ => return Err(UsageError::UnexpectedArgument(text.into())),
        }
    }
    if help {
        return Ok(Command::Help);
    }
    let config_for = |command: &'static str| {
        if restic.is_some() {
            return Err(UsageError::NotApplicable {
                command,
                option: "--restic",
            });
        }
        config
            .clone()
            .map(PathBuf::from)
            .ok_or(UsageError::MissingOption {
                command,
                option: "--config",
            })
    };
    match command.as_deref() {
        Some("probe") if config.is_some() => Err(UsageError::NotApplicable {
            command: "probe",
            option: "--config",
        }),
        Some("probe") => Ok(Command::Probe { restic }),
        Some("run") => Ok(Command::Run {
            config: config_for("run")?,
        }),
        Some("check-config") => Ok(Command::CheckConfig {
            config: config_for("check-config")?,
        }),
        Some("help") => Ok(Command::Help),
        Some(other) => Err(UsageError::UnknownCommand(other.to_owned())),
        None => Err(UsageError::MissingCommand),
    }
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

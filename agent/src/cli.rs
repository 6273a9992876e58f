//! The `fleet-agent` command line (clap): one subcommand, its options after it.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Exit code for a command line that cannot be understood (`EX_USAGE`, sysexits.h).
pub const EX_USAGE: u8 = 64;

/// The restic-fleet agent: runs restic for the fleet control plane.
#[derive(Debug, Parser)]
#[command(name = "fleet-agent", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Run the agent until SIGINT or SIGTERM; registers first if the configuration has an
    /// enrollment token and the state directory no identity.
    Run {
        /// The agent's YAML configuration (see fleet-agent.example.yaml).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Register with the configuration's enrollment token, store the identity in the state
    /// directory and print it; exit 77 if the token is refused.
    Register {
        /// The agent's YAML configuration.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Check a configuration file and list every problem in it (exit 64 if any).
    CheckConfig {
        /// The agent's YAML configuration.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Show what this host can do: the restic version and what it supports, CPU quotas
    /// (cgroup v2 cpu.max), nice and ionice.
    Probe {
        /// The restic program (default: $RESTIC, else restic on PATH).
        #[arg(long, value_name = "PATH")]
        restic: Option<OsString>,
    },
    /// Write the service that runs the agent at boot: a systemd unit, fleet-agent.service
    /// in /etc/systemd/system (on macOS a launchd plist in /Library/LaunchDaemons); the
    /// configuration is checked first; prints how to enable it.
    Install {
        /// The agent's YAML configuration the service runs with.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Where the service file goes (default: see above).
        #[arg(long, value_name = "DIR")]
        unit_dir: Option<PathBuf>,
        /// The fleet-agent program the service runs (default: this program).
        #[arg(long, value_name = "PATH")]
        binary: Option<PathBuf>,
        /// Replace a different existing service file.
        #[arg(long)]
        force: bool,
        /// Print the service file instead of writing it; the configuration is not read
        /// (packaging uses this).
        #[arg(long, conflicts_with_all = ["force", "unit_dir"])]
        print: bool,
    },
    /// Show what the running agent last wrote in its state directory; exit 3 if the agent
    /// is not running.
    Status {
        /// The agent's YAML configuration.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// A table, or the status file as it is.
        #[arg(short, long, value_enum, default_value_t)]
        output: Output,
    },
}

/// How `status` prints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    #[default]
    Table,
    /// The status file as is.
    Json,
}

/// Parses a whole command line (the program name first).
pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Command, clap::Error> {
    Cli::try_parse_from(args).map(|cli| cli.command)
}

/// What a command line that did not parse ends with: help and version are printed on
/// stdout (exit 0); an error with its usage on stderr (exit [`EX_USAGE`]).
pub fn refused(error: &clap::Error) -> u8 {
    let _ = error.print();
    exit_code(error.kind())
}

/// 0 for help and version, [`EX_USAGE`] for every error.
fn exit_code(kind: clap::error::ErrorKind) -> u8 {
    use clap::error::ErrorKind;
    match kind {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
        // No command at all: the help, as an error.
        _ => EX_USAGE,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Command, ErrorKind> {
        parse(
            std::iter::once("fleet-agent")
                .chain(args.iter().copied())
                .map(OsString::from),
        )
        .map_err(|e| e.kind())
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
        assert_eq!(parse_strs(&["probe", "--restic=/r"]), Ok(probe(Some("/r"))));
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
            parse_strs(&["check-config", "--config=a.yaml"]),
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
                print: false,
            })
        );
        assert_eq!(
            parse_strs(&[
                "install",
                "--force",
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
                print: false,
            })
        );
        assert_eq!(
            parse_strs(&["install", "--config", "c", "--print", "--force"]),
            Err(ErrorKind::ArgumentConflict)
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
    }

    #[test]
    fn help_names_every_command_and_version_is_the_crates() {
        let help = Cli::command().render_long_help().to_string();
        for word in [
            "run",
            "register",
            "check-config",
            "probe",
            "install",
            "status",
        ] {
            assert!(help.contains(word), "{word}: {help}");
        }
        let install = Cli::command()
            .find_subcommand_mut("install")
            .expect("install")
            .render_long_help()
            .to_string();
        for word in [
            "--config",
            "--unit-dir",
            "--binary",
            "--force",
            "--print",
            "/etc/systemd/system",
        ] {
            assert!(install.contains(word), "{word}: {install}");
        }
        for args in [&["--help"][..], &["-h"], &["help"], &["probe", "--help"]] {
            assert_eq!(parse_strs(args), Err(ErrorKind::DisplayHelp), "{args:?}");
        }
        assert_eq!(parse_strs(&["--version"]), Err(ErrorKind::DisplayVersion));
        assert_eq!(
            Cli::command().get_version(),
            Some(env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn errors_are_usage_errors() {
        let cases: [(&[&str], ErrorKind); 8] = [
            (&["serve"], ErrorKind::InvalidSubcommand),
            (&["run"], ErrorKind::MissingRequiredArgument),
            (
                &["run", "--config", "c", "--restic", "r"],
                ErrorKind::UnknownArgument,
            ),
            (&["probe", "--config=c"], ErrorKind::UnknownArgument),
            (
                &["status", "--config", "c", "-o", "yaml"],
                ErrorKind::InvalidValue,
            ),
            (
                &["status", "--config", "c", "--force"],
                ErrorKind::UnknownArgument,
            ),
            (&["probe", "--restic"], ErrorKind::InvalidValue),
            (&["probe", "extra"], ErrorKind::UnknownArgument),
        ];
        for (args, expected) in cases {
            assert_eq!(parse_strs(args), Err(expected), "{args:?}");
        }
        for (args, _) in cases {
            assert_eq!(
                parse_strs(args).map_err(exit_code),
                Err(EX_USAGE),
                "{args:?}"
            );
        }
        assert_eq!(parse_strs(&["--help"]).map_err(exit_code), Err(0));
        assert_eq!(parse_strs(&["--version"]).map_err(exit_code), Err(0));
        assert_eq!(parse_strs(&[]).map_err(exit_code), Err(EX_USAGE));
    }
}

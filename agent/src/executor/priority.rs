//! Running restic at the agent's CPU and IO priority by wrapping it in `ionice` and `nice`.
//!
//! `ionice -t -c 3` (idle) or `ionice -t -c 2 -n LEVEL` (best effort), then `nice -n N`,
//! then restic. Both exec the next program, so the process the executor signals is restic
//! itself. `-t` makes `ionice` run restic even when the kernel refuses the class; `nice`
//! runs it even when it may not lower the niceness (it prints a warning on stderr).
//!
//! Fallback: a wrapper that is not on PATH is left out, and without both restic runs
//! directly at the agent's own priority; the executor logs a warning once per process.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use fleet_events::settings::IoClass;

use super::command::Invocation;
use crate::probe::find_in_path;

/// Where `nice` and `ionice` are, if installed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wrappers {
    pub nice: Option<PathBuf>,
    pub ionice: Option<PathBuf>,
}

impl Wrappers {
    /// The wrappers found in the directories of a PATH value.
    pub fn from_path(path: &OsStr) -> Self {
        Self {
            nice: find_in_path("nice", path),
            ionice: find_in_path("ionice", path),
        }
    }

    /// Neither wrapper is available: restic runs at the agent's priority.
    pub fn is_empty(&self) -> bool {
        self.nice.is_none() && self.ionice.is_none()
    }
}

/// The program to spawn and its arguments: restic's invocation behind the wrappers found.
pub fn command_line(inv: &Invocation, wrappers: &Wrappers) -> (PathBuf, Vec<OsString>) {
    let mut line: Vec<OsString> = Vec::new();
    if let Some(ionice) = &wrappers.ionice {
        line.extend([ionice.clone().into_os_string(), "-t".into()]);
        match inv.io_class {
            IoClass::Idle => line.extend(["-c".into(), "3".into()]),
            IoClass::BestEffort { level } => {
                line.extend([
                    "-c".into(),
                    "2".into(),
                    "-n".into(),
                    level.to_string().into(),
                ]);
            }
        }
    }
    if let Some(nice) = &wrappers.nice {
        line.extend([
            nice.clone().into_os_string(),
            "-n".into(),
            inv.nice.to_string().into(),
        ]);
    }
    line.push(inv.program.clone().into_os_string());
    line.extend(inv.args.iter().cloned());
    let mut parts = line.into_iter();
    let program = parts.next().map(PathBuf::from).unwrap_or_default();
    (program, parts.collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(io_class: IoClass) -> Invocation {
        Invocation {
            program: "/usr/bin/restic".into(),
            args: vec!["check".into()],
            env: Vec::new(),
            nice: 10,
            io_class,
        }
    }

    fn strings(program: PathBuf, args: Vec<OsString>) -> Vec<String> {
        std::iter::once(program.into_os_string())
            .chain(args)
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn both_wrappers_idle_and_best_effort() {
        let w = Wrappers {
            nice: Some("/usr/bin/nice".into()),
            ionice: Some("/usr/bin/ionice".into()),
        };
        let (p, a) = command_line(&inv(IoClass::Idle), &w);
        assert_eq!(
            strings(p, a),
            [
                "/usr/bin/ionice",
                "-t",
                "-c",
                "3",
                "/usr/bin/nice",
                "-n",
                "10",
                "/usr/bin/restic",
                "check"
            ]
        );
        let (p, a) = command_line(&inv(IoClass::BestEffort { level: 7 }), &w);
        assert_eq!(
            strings(p, a)[..6],
            ["/usr/bin/ionice", "-t", "-c", "2", "-n", "7"]
        );
    }

    #[test]
    fn without_wrappers_restic_runs_directly() {
        let w = Wrappers::default();
        assert!(w.is_empty());
        let (p, a) = command_line(&inv(IoClass::Idle), &w);
        assert_eq!(strings(p, a), ["/usr/bin/restic", "check"]);
        let only_nice = Wrappers {
            nice: Some("/bin/nice".into()),
            ionice: None,
        };
        let (p, a) = command_line(&inv(IoClass::Idle), &only_nice);
        assert_eq!(
            strings(p, a),
            ["/bin/nice", "-n", "10", "/usr/bin/restic", "check"]
        );
    }
}

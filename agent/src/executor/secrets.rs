//! Repository passwords: how the agent turns a policy's secret NAME into restic's
//! environment, without the value ever reaching argv, a log line or an error message.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use fleet_events::event::{ErrorClass, TaskError};

/// Where the agent finds the password behind a secret name (from its local config).
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file holding the password: passed as `RESTIC_PASSWORD_FILE`.
    File(PathBuf),
    /// A command printing the password: passed as `RESTIC_PASSWORD_COMMAND`.
    Command(String),
    /// An environment variable of the agent, whose value is passed to restic as
    /// `RESTIC_PASSWORD` (in its environment only).
    Env(String),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The command line may embed a token; show only which kind of source it is.
        match self {
            SecretSource::File(path) => f.debug_tuple("File").field(path).finish(),
            SecretSource::Command(_) => f.write_str("Command(..)"),
            SecretSource::Env(var) => f.debug_tuple("Env").field(var).finish(),
        }
    }
}

/// One environment variable that gives restic its password. `Debug` shows the variable's
/// name, never its value.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordEnv {
    /// `RESTIC_PASSWORD_FILE`, `RESTIC_PASSWORD_COMMAND` or `RESTIC_PASSWORD`.
    pub var: &'static str,
    /// A path, a command line or the password itself.
    pub value: OsString,
}

impl fmt::Debug for PasswordEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PasswordEnv({}=<redacted>)", self.var)
    }
}

/// Every environment variable through which restic reads a password or a repository;
/// the executor removes the agent's own values of these from restic's environment.
pub const RESTIC_SECRET_VARS: [&str; 5] = [
    "RESTIC_PASSWORD",
    "RESTIC_PASSWORD_FILE",
    "RESTIC_PASSWORD_COMMAND",
    "RESTIC_REPOSITORY",
    "RESTIC_REPOSITORY_FILE",
];

/// The password variable for secret `name`, reading `Env` sources from the agent's
/// environment. An unknown name or an unset variable is a `Permanent` error naming it.
pub fn resolve(
    name: &str,
    secrets: &HashMap<String, SecretSource>,
) -> Result<PasswordEnv, TaskError> {
    resolve_with(name, secrets, |var| std::env::var_os(var))
}

/// [`resolve`] with `lookup` in place of the agent's environment.
pub fn resolve_with(
    name: &str,
    secrets: &HashMap<String, SecretSource>,
    lookup: impl Fn(&str) -> Option<OsString>,
) -> Result<PasswordEnv, TaskError> {
    let source = secrets.get(name).ok_or_else(|| {
        permanent(format!(
            "the repository secret {name:?} is not configured on this agent"
        ))
    })?;
    Ok(match source {
        SecretSource::File(path) => PasswordEnv {
            var: "RESTIC_PASSWORD_FILE",
            value: path.clone().into_os_string(),
        },
        SecretSource::Command(command) => PasswordEnv {
            var: "RESTIC_PASSWORD_COMMAND",
            value: command.into(),
        },
        SecretSource::Env(var) => PasswordEnv {
            var: "RESTIC_PASSWORD",
            value: lookup(var).ok_or_else(|| {
                permanent(format!(
                    "the repository secret {name:?} comes from the environment variable \
                     {var:?}, which is not set for the agent"
                ))
            })?,
        },
    })
}

fn permanent(message: String) -> TaskError {
    TaskError::new(ErrorClass::Permanent, &message, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUE: &str = "s3cr3t-value";

    fn secrets() -> HashMap<String, SecretSource> {
        HashMap::from([
            ("file".into(), SecretSource::File("/etc/fleet/pw".into())),
            ("cmd".into(), SecretSource::Command("pass show x".into())),
            ("env".into(), SecretSource::Env("FLEET_PW".into())),
            ("unset".into(), SecretSource::Env("FLEET_UNSET".into())),
        ])
    }

    fn lookup(var: &str) -> Option<OsString> {
        (var == "FLEET_PW").then(|| VALUE.into())
    }

    #[test]
    fn each_source_becomes_its_restic_variable() {
        let s = secrets();
        let file = resolve_with("file", &s, lookup).unwrap();
        assert_eq!(
            (file.var, file.value.as_os_str()),
            ("RESTIC_PASSWORD_FILE", "/etc/fleet/pw".as_ref())
        );
        let cmd = resolve_with("cmd", &s, lookup).unwrap();
        assert_eq!(cmd.var, "RESTIC_PASSWORD_COMMAND");
        let env = resolve_with("env", &s, lookup).unwrap();
        assert_eq!(
            (env.var, env.value.as_os_str()),
            ("RESTIC_PASSWORD", VALUE.as_ref())
        );
        assert!(!format!("{env:?}").contains(VALUE), "{env:?}");
    }

    #[test]
    fn unknown_names_and_unset_variables_are_permanent_and_named() {
        let s = secrets();
        let missing = resolve_with("nope", &s, lookup).unwrap_err();
        assert_eq!(missing.class, ErrorClass::Permanent);
        assert!(missing.message.contains("\"nope\""), "{}", missing.message);
        let unset = resolve_with("unset", &s, lookup).unwrap_err();
        assert_eq!(unset.class, ErrorClass::Permanent);
        assert!(unset.message.contains("FLEET_UNSET"), "{}", unset.message);
    }
}

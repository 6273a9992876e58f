//! A hook's environment, pure: a few harmless variables of the agent's (never a secret:
//! not restic's password or repository variables, not a `passwordEnv` secret, not the
//! enrollment token), the hook's fixed `env`, then the task's `FLEET_*` variables.

use std::ffi::OsString;

use fleet_events::event::ErrorClass;
use fleet_events::ids::{PolicyId, TaskId};
use fleet_events::policy::{HookStage, TaskKind};

use super::book::HookDef;

/// The only variables a hook takes from the agent's environment.
pub const INHERITED: [&str; 8] = [
    "PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "TMPDIR",
];

/// Where a hook runs: the task and its attempt.
#[derive(Debug, Clone, Copy)]
pub struct TaskInfo<'a> {
    pub task: TaskId,
    pub policy: PolicyId,
    pub policy_name: &'a str,
    pub kind: TaskKind,
    pub attempt: u32,
}

/// How the run ended, for hooks that run after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnd {
    pub succeeded: bool,
    /// The new snapshot of a backup, when there is one.
    pub snapshot: Option<String>,
    /// The failure's class.
    pub error: Option<ErrorClass>,
}

/// The whole environment of one hook (the agent's own is not passed on otherwise).
pub fn environment(
    info: &TaskInfo<'_>,
    stage: HookStage,
    end: Option<&RunEnd>,
    def: &HookDef,
    agent_var: impl Fn(&str) -> Option<OsString>,
) -> Vec<(String, OsString)> {
    let mut env: Vec<(String, OsString)> = INHERITED
        .iter()
        .filter_map(|name| agent_var(name).map(|value| ((*name).to_owned(), value)))
        .collect();
    env.extend(def.env.iter().map(|(k, v)| (k.clone(), v.into())));
    let mut fleet = vec![
        ("FLEET_TASK", info.task.to_string()),
        ("FLEET_POLICY", info.policy.to_string()),
        ("FLEET_POLICY_NAME", info.policy_name.to_owned()),
        ("FLEET_KIND", info.kind.as_str().to_owned()),
        ("FLEET_ATTEMPT", info.attempt.to_string()),
        ("FLEET_HOOK_STAGE", stage.as_str().to_owned()),
    ];
    if let Some(end) = end {
        let outcome = if end.succeeded { "success" } else { "failure" };
        fleet.push(("FLEET_OUTCOME", outcome.to_owned()));
        if let Some(snapshot) = &end.snapshot {
            fleet.push(("FLEET_SNAPSHOT", snapshot.clone()));
        }
        if let Some(class) = end.error {
            fleet.push(("FLEET_ERROR", class.as_str().to_owned()));
        }
    }
    env.extend(fleet.into_iter().map(|(k, v)| (k.to_owned(), v.into())));
    env
}

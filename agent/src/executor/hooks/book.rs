//! The hooks an agent defines (its configuration's `hooks:`), and the plan of one task:
//! the policy's hook names resolved to those definitions, pure.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use fleet_events::event::{ErrorClass, TaskError};
use fleet_events::policy::{HookStage, PolicyHooks};

/// One command the agent may run around a task: an argv run without a shell.
#[derive(Clone, PartialEq, Eq)]
pub struct HookDef {
    /// The program, then its arguments.
    pub command: Vec<String>,
    /// The hook is killed (with its process group) after this long.
    pub timeout: Duration,
    /// Its working directory; the agent's when `None`.
    pub cwd: Option<PathBuf>,
    /// Fixed variables added to its environment.
    pub env: BTreeMap<String, String>,
}

impl fmt::Debug for HookDef {
    /// Shows the variables' names only: a value may be a monitor's key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HookDef")
            .field("command", &self.command)
            .field("timeout", &self.timeout)
            .field("cwd", &self.cwd)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Every hook this agent defines, by name, and the configuration file they come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookBook {
    pub hooks: BTreeMap<String, HookDef>,
    /// The configuration file, for the message about a hook it lacks.
    pub config: Option<PathBuf>,
}

/// A hook of a task's plan: its name, stage and definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned<'a> {
    pub name: &'a str,
    pub stage: HookStage,
    pub def: &'a HookDef,
}

/// The hooks of one task, by stage, in the order they run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan<'a> {
    pub before: Vec<Planned<'a>>,
    pub on_success: Vec<Planned<'a>>,
    pub on_failure: Vec<Planned<'a>>,
    pub after: Vec<Planned<'a>>,
}

impl Plan<'_> {
    /// The hooks to run once the run ended: `onSuccess` or `onFailure`, then `after`.
    pub fn after_run(&self, succeeded: bool) -> impl Iterator<Item = &Planned<'_>> {
        let first = if succeeded {
            &self.on_success
        } else {
            &self.on_failure
        };
        first.iter().chain(&self.after)
    }
}

impl HookBook {
    /// Resolves every name of `hooks` before anything runs. A name this agent does not
    /// define fails the task (permanent: it fails the same way until the configuration
    /// changes); never a silent skip.
    pub fn plan<'a>(&'a self, hooks: &'a PolicyHooks) -> Result<Plan<'a>, TaskError> {
        let mut plan = Plan::default();
        for stage in HookStage::ALL {
            let resolved = hooks
                .names(stage)
                .iter()
                .map(|name| {
                    let def = self.hooks.get(name).ok_or_else(|| self.undefined(name))?;
                    Ok(Planned { name, stage, def })
                })
                .collect::<Result<Vec<_>, TaskError>>()?;
            *match stage {
                HookStage::Before => &mut plan.before,
                HookStage::OnSuccess => &mut plan.on_success,
                HookStage::OnFailure => &mut plan.on_failure,
                HookStage::After => &mut plan.after,
            } = resolved;
        }
        Ok(plan)
    }

    /// What `fleet-agent check-config` prints: each hook's name, argv, timeout, working
    /// directory and the names (never the values) of its variables.
    pub fn listing(&self) -> String {
        if self.hooks.is_empty() {
            return "hooks: none\n".into();
        }
        let mut text = format!("hooks: {}\n", self.hooks.len());
        for (name, def) in &self.hooks {
            let argv: Vec<String> = def.command.iter().map(|a| quote(a)).collect();
            text.push_str(&format!(
                "  {name}: {} (timeout {}s",
                argv.join(" "),
                def.timeout.as_secs()
            ));
            if let Some(cwd) = &def.cwd {
                text.push_str(&format!(", cwd {}", cwd.display()));
            }
            if !def.env.is_empty() {
                let names: Vec<&str> = def.env.keys().map(String::as_str).collect();
                text.push_str(&format!(", env {}", names.join(" ")));
            }
            text.push_str(")\n");
        }
        text
    }

    fn undefined(&self, name: &str) -> TaskError {
        let file = match &self.config {
            Some(path) => path.display().to_string(),
            None => "its configuration file".into(),
        };
        let message = format!(
            "hook '{name}' is not defined in this agent's configuration (hooks: in {file})"
        );
        TaskError::new(ErrorClass::Permanent, &message, None)
    }
}

/// An argument as a reader would type it: quoted when it holds a space or a quote.
fn quote(arg: &str) -> String {
    if !arg.is_empty() && !arg.contains([' ', '\'', '"', '\t', '\n']) {
        return arg.to_owned();
    }
    format!("'{}'", arg.replace('\'', "'\\''"))
}

//! A policy's hooks: the names of commands the agent runs around a task. The commands
//! themselves live only in each agent's own configuration; a policy (and so the control
//! plane) never carries a command line.

use serde::{Deserialize, Serialize};

use crate::ids::check_slug;
use crate::policy::TaskKind;
use crate::validation::Problems;

/// Most hook names one stage may list.
pub const MAX_HOOKS_PER_STAGE: usize = 8;

/// When a hook runs, relative to the task's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HookStage {
    /// Before restic; a failure fails the task (class `hook`) and restic does not run.
    Before,
    /// After the run, whatever its outcome.
    After,
    /// After a successful run.
    OnSuccess,
    /// After a failed run.
    OnFailure,
}

impl HookStage {
    /// Every stage, in the order the agent runs them (`onSuccess`/`onFailure` then
    /// `after`).
    pub const ALL: [HookStage; 4] = [
        HookStage::Before,
        HookStage::OnSuccess,
        HookStage::OnFailure,
        HookStage::After,
    ];

    /// The name used in policy documents and in `FLEET_HOOK_STAGE`.
    pub fn as_str(self) -> &'static str {
        match self {
            HookStage::Before => "before",
            HookStage::After => "after",
            HookStage::OnSuccess => "onSuccess",
            HookStage::OnFailure => "onFailure",
        }
    }
}

/// The hooks a policy names, by stage. Names are agent-local: an agent runs the command
/// its configuration gives the name, and fails the task when it has none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PolicyHooks {
    pub before: Vec<String>,
    pub after: Vec<String>,
    pub on_success: Vec<String>,
    pub on_failure: Vec<String>,
    /// A task failed by a before-hook (class `hook`) is retried within the policy's retry
    /// budget; by default it is not.
    pub retry_on_failure: bool,
}

impl PolicyHooks {
    /// True if the policy runs no hook and sets nothing about them.
    pub fn is_empty(&self) -> bool {
        HookStage::ALL.iter().all(|s| self.names(*s).is_empty()) && !self.retry_on_failure
    }

    /// The names of `stage`, in the order they run.
    pub fn names(&self, stage: HookStage) -> &[String] {
        match stage {
            HookStage::Before => &self.before,
            HookStage::After => &self.after,
            HookStage::OnSuccess => &self.on_success,
            HookStage::OnFailure => &self.on_failure,
        }
    }

    /// Records every problem: names that are not slugs, a name twice in one stage, more
    /// than [`MAX_HOOKS_PER_STAGE`] in a stage, `retryOnFailure` without a before-hook.
    pub(crate) fn check(&self, p: &mut Problems, kind: TaskKind) {
        for stage in HookStage::ALL {
            let names = self.names(stage);
            let field = format!("hooks.{}", stage.as_str());
            p.check(names.len() <= MAX_HOOKS_PER_STAGE, &field, || {
                format!("at most {MAX_HOOKS_PER_STAGE} hooks, not {}", names.len())
            });
            for (i, name) in names.iter().enumerate() {
                let field = format!("{field}[{i}]");
                if let Err(e) = check_slug("hook name", name) {
                    p.add(&field, e.to_string());
                }
                p.check(!names[..i].contains(name), &field, || {
                    format!("{name:?} is named twice")
                });
            }
        }
        p.check(
            !self.retry_on_failure || !self.before.is_empty(),
            "hooks.retryOnFailure",
            || "only a before-hook's failure is retried; name one in hooks.before".into(),
        );
        p.check(self.is_empty() || kind.is_scheduled(), "hooks", || {
            format!("a {} task runs no hooks", kind.as_str())
        });
    }
}

/// The wire layout of [`PolicyHooks`] inside a policy spec: schema 1 has no such field, so
/// in postcard (not human-readable) under a schema-1 layout nothing is written and an
/// empty set is read without consuming a byte. The schema is the one of the message being
/// encoded or decoded ([`crate::codec::with_layout`]); JSON and YAML always carry the field.
pub(crate) mod wire {
    use serde::{Deserialize, Deserializer, Serialize, Serializer, ser::Error as _};

    use super::PolicyHooks;
    use crate::codec::layout;
    use crate::envelope::SCHEMA_HOOKS;

    pub fn serialize<S: Serializer>(hooks: &PolicyHooks, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() || layout() >= SCHEMA_HOOKS {
            return hooks.serialize(s);
        }
        if !hooks.is_empty() {
            return Err(S::Error::custom(
                "a policy with hooks needs schema 2; schema 1 cannot carry them",
            ));
        }
        // postcard writes no byte for a unit: the schema-1 layout.
        s.serialize_unit()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PolicyHooks, D::Error> {
        if d.is_human_readable() || layout() >= SCHEMA_HOOKS {
            return PolicyHooks::deserialize(d);
        }
        Ok(PolicyHooks::default())
    }
}

//! `task.hook_ran` as the API shows it: the hook's name, stage, how it ended, how long it
//! took, and its last output.

use fleet_events::event::{HookOutcome, HookRun};
use serde_json::{Value, json};

use super::{duration, one_line};

/// The event's data: `{attempt, name, stage, outcome, exitCode, signal, reason, durationMs,
/// output, outputCut}`; `outcome` is `exited`, `killed`, `timedOut`, `notFound`,
/// `notStarted` or `cancelled`.
pub(super) fn data(attempt: u32, hook: &HookRun) -> Value {
    let (outcome, exit_code, signal, reason) = match &hook.outcome {
        HookOutcome::Exited(code) => ("exited", Some(*code), None, None),
        HookOutcome::Killed(signal) => ("killed", None, Some(*signal), None),
        HookOutcome::TimedOut => ("timedOut", None, None, None),
        HookOutcome::NotFound => ("notFound", None, None, None),
        HookOutcome::NotStarted(why) => ("notStarted", None, None, Some(why.as_str())),
        HookOutcome::Cancelled => ("cancelled", None, None, None),
    };
    json!({
        "attempt": attempt, "name": hook.name, "stage": hook.stage.as_str(),
        "outcome": outcome, "exitCode": exit_code, "signal": signal, "reason": reason,
        "durationMs": hook.duration_ms, "output": hook.output, "outputCut": hook.output_cut,
    })
}

/// `before-hook "dump-db" of attempt 1 exited with code 2 after 1.2 s: <its last line>`.
pub(super) fn summary(attempt: u32, hook: &HookRun) -> String {
    let line = format!(
        "{}-hook {:?} of attempt {attempt} {} after {}",
        hook.stage.as_str(),
        hook.name,
        hook.outcome.describe(),
        duration(hook.duration_ms)
    );
    match hook
        .output
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
    {
        Some(last) => format!("{line}: {}", one_line(last)),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use fleet_events::event::HookOutcome;
    use fleet_events::policy::HookStage;
    use fleet_events::samples;

    use super::*;

    #[test]
    fn a_hook_run_reads_in_one_line_and_keeps_its_output() {
        let timed_out = samples::hook_run(HookStage::Before, HookOutcome::TimedOut);
        assert_eq!(
            summary(1, &timed_out),
            "before-hook \"dump-db\" of attempt 1 timed out and was killed after 1.2 s: \
             pg_dump: dumping contents of table \"public.orders\""
        );
        let exited = samples::hook_run(HookStage::After, HookOutcome::Exited(2));
        let data = data(3, &exited);
        assert_eq!(data["stage"], "after");
        assert_eq!(data["outcome"], "exited");
        assert_eq!(data["exitCode"], 2);
        assert_eq!(data["outputCut"], true);
        assert!(data["output"].as_str().unwrap().starts_with("pg_dump"));
        let silent = HookRun {
            output: String::new(),
            ..samples::hook_run(HookStage::OnSuccess, HookOutcome::Exited(0))
        };
        assert_eq!(
            summary(2, &silent),
            "onSuccess-hook \"dump-db\" of attempt 2 succeeded after 1.2 s"
        );
    }
}

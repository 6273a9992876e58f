//! The operators' verbs on the command line: what each takes, and how it reaches the API.

use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, Utc};
use clap::builder::PossibleValuesParser;
use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use fleet_events::task_state::{RunOutcomeKind, TaskStatus};

/// The operators' verbs, each over the HTTP API.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Agents (over the HTTP API): list, inspect, change limits, decommission, pre-register.
    Agent(AgentArgs),
    /// Policies (over the HTTP API): apply YAML, list, inspect, pause and resume, assign,
    /// run now, delete.
    Policy(PolicyArgs),
    /// Notification rules and the notification log (over the HTTP API): add from YAML or
    /// options, list, test, remove; what was sent and how its delivery went.
    Notify(crate::notify_args::NotifyArgs),
    /// Tasks (over the HTTP API): list, inspect with their event history, cancel.
    Task(TaskArgs),
    /// Restore a snapshot (or some of its paths) into a directory on an agent (over the
    /// HTTP API).
    Restore(RestoreArgs),
    /// Repositories (over the HTTP API): refresh a repository's snapshot inventory.
    Repo(RepoArgs),
    /// One snapshot (over the HTTP API): list a directory of it, listed by an agent.
    Snapshot(SnapshotArgs),
    /// The snapshot inventory (over the HTTP API): repositories' snapshots, newest first.
    Snapshots(SnapshotsArgs),
    /// Finished attempts (over the HTTP API): outcome, duration, snapshot or error.
    Runs(RunsArgs),
    /// The event log (over the HTTP API): one object's history, or follow it live.
    Events(EventsArgs),
    /// What ended per UTC day (over the HTTP API): a policy's days per agent, an agent's
    /// per policy, or the tenant's; kept after runs leave the read models.
    History(HistoryArgs),
}

/// Tables for people, or the API's JSON for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputArg {
    Table,
    Json,
}

/// How the API verbs reach the API, and what they print.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The fleet's HTTP API (http:// or https://).
    #[arg(
        long,
        env = "FLEET_API_URL",
        default_value = "http://127.0.0.1:8080",
        global = true,
        help_heading = "API"
    )]
    pub api: String,
    /// The tenant token to send (admin to change things, read-only to look).
    #[arg(
        long,
        env = "FLEET_TOKEN",
        hide_env_values = true,
        global = true,
        help_heading = "API"
    )]
    pub token: Option<String>,
    /// Read the token from this file (used when no --token is given).
    #[arg(long, env = "FLEET_TOKEN_FILE", global = true, help_heading = "API")]
    pub token_file: Option<PathBuf>,
    /// Also trust this CA (PEM) for an https:// API, besides the system's roots.
    #[arg(long, env = "FLEET_API_CA_FILE", global = true, help_heading = "API")]
    pub api_ca_file: Option<PathBuf>,
    /// Output: tables for people, or the API's JSON for scripts.
    #[arg(
        short,
        long,
        value_enum,
        default_value = "table",
        global = true,
        help_heading = "API"
    )]
    pub output: OutputArg,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub command: AgentCommand,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// List the agents: state, load against limits, saturation, backoff.
    Ls,
    /// One agent in detail: load per kind, saturation, backoff and pending retries,
    /// settings.
    Show(AgentRef),
    /// Change an agent's limits; the settings not given keep their values.
    Settings(AgentSettingsArgs),
    /// Decommission an agent: it gets no more work and its machine cannot register again.
    Decommission(AgentRef),
    /// Pre-register the agent of a machine before it enrolls.
    Register(AgentRegisterArgs),
}

#[derive(Debug, Args)]
pub struct AgentRef {
    /// The agent's id, or its name.
    pub agent: String,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("change").required(true).multiple(true)))]
pub struct AgentSettingsArgs {
    /// The agent's id, or its name.
    pub agent: String,
    /// Tasks at once, all kinds together.
    #[arg(long, value_name = "N", group = "change")]
    pub max_concurrent: Option<u16>,
    /// Backups at once.
    #[arg(long, value_name = "N", group = "change")]
    pub backup: Option<u16>,
    /// Checks at once.
    #[arg(long, value_name = "N", group = "change")]
    pub check: Option<u16>,
    /// Prunes at once.
    #[arg(long, value_name = "N", group = "change")]
    pub prune: Option<u16>,
    /// CPU restic may use, in percent of one core.
    #[arg(long, value_name = "PERCENT", group = "change")]
    pub cpu_quota: Option<u16>,
    /// Upload limit in KiB/s (restic --limit-upload).
    #[arg(long, value_name = "N", group = "change")]
    pub upload_kib: Option<u32>,
    /// Download limit in KiB/s (restic --limit-download).
    #[arg(long, value_name = "N", group = "change")]
    pub download_kib: Option<u32>,
    /// CPU niceness of restic, -20 to 19.
    #[arg(
        long,
        value_name = "N",
        group = "change",
        allow_negative_numbers = true
    )]
    pub nice: Option<i8>,
}

#[derive(Debug, Args)]
pub struct AgentRegisterArgs {
    /// The machine's id (its /etc/machine-id, or the agent configuration's machineId).
    pub machine: String,
    /// A name for people (default: the one the agent gives when it enrolls).
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Create or update policies to match YAML documents (separated by `---`): spec,
    /// `agents` (ids or names) and `paused`, when given.
    Apply(PolicyFileArgs),
    /// Create policies from YAML documents; a name that exists already is a conflict.
    Create(PolicyFileArgs),
    /// List the policies: kind, schedule, agents, paused, next fire.
    Ls,
    /// One policy: its spec, paused, agents and next fire times.
    Show(PolicyRef),
    /// Stop scheduling a policy's runs.
    Pause(PolicyRef),
    /// Schedule a paused policy's runs again.
    Resume(PolicyRef),
    /// Assign a policy to an agent.
    Assign(AssignArgs),
    /// Unassign a policy from an agent.
    Unassign(AssignArgs),
    /// Run a policy now, on each of its agents or on one.
    Run(PolicyRunArgs),
    /// Delete a policy: no more runs; its history stays.
    Delete(PolicyRef),
}

#[derive(Debug, Args)]
pub struct PolicyFileArgs {
    /// The YAML file, `-` for stdin.
    #[arg(short, long, value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct PolicyRef {
    /// The policy's id, or its name.
    pub policy: String,
}

#[derive(Debug, Args)]
pub struct AssignArgs {
    /// The policy's id, or its name.
    pub policy: String,
    /// The agent's id, or its name.
    pub agent: String,
}

#[derive(Debug, Args)]
pub struct PolicyRunArgs {
    /// The policy's id, or its name.
    pub policy: String,
    /// Only on this agent (id or name); by default on every assigned agent.
    #[arg(long)]
    pub agent: Option<String>,
}

#[derive(Debug, Args)]
pub struct TaskArgs {
    #[command(subcommand)]
    pub command: TaskCommand,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// List tasks, newest first.
    Ls(TaskLsArgs),
    /// One task and its events, in order.
    Show(TaskRef),
    /// Cancel a task (an agent running it is told to stop).
    Cancel(TaskCancelArgs),
    /// Follow a task live: its progress (restic's, about once a second) and its events,
    /// until it ends; exits 0 only if it succeeded.
    Watch(TaskRef),
}

#[derive(Debug, Args)]
pub struct TaskLsArgs {
    /// Only tasks in this state.
    #[arg(long, value_parser = task_states())]
    pub state: Option<String>,
    /// Only tasks of this agent (id or name).
    #[arg(long)]
    pub agent: Option<String>,
    /// Only tasks of this policy (id or name).
    #[arg(long)]
    pub policy: Option<String>,
    /// Only tasks from this time on: RFC 3339, or an age such as 30m, 2h, 7d.
    #[arg(long, value_name = "TIME", value_parser = time_arg)]
    pub since: Option<DateTime<Utc>>,
    /// At most this many (the API's default is 100, its maximum 1000).
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
}

fn task_states() -> PossibleValuesParser {
    PossibleValuesParser::new(TaskStatus::ALL.map(TaskStatus::as_str))
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The snapshot: its id or a prefix of it (restic's short id), as `fleet snapshots`
    /// lists it.
    pub snapshot: String,
    /// The agent that restores (id or name): the one that made the snapshot or any other
    /// holding the repository's secret.
    #[arg(long)]
    pub agent: String,
    /// The directory on the agent to restore into; files land under their snapshot paths.
    #[arg(long, value_name = "DIR")]
    pub target: String,
    /// Restore only this path of the snapshot (a file or a directory); repeat it.
    #[arg(long, value_name = "PATH")]
    pub include: Vec<String>,
    /// Count what would be restored and skipped; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// A file that exists in the target: leave it (never), replace it when its size or
    /// modification time differs (if-changed), or always replace it.
    #[arg(long, value_parser = ["never", "if-changed", "always"], default_value = "never")]
    pub overwrite: String,
    /// The policy whose repository and secret to use (default: the snapshot's own, else
    /// the one live policy on its repository).
    #[arg(long)]
    pub policy: Option<String>,
    /// Follow the restore until it ends (as `fleet task watch`).
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub command: SnapshotCommand,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// List a directory of a snapshot (restic ls on an agent holding the repository's
    /// secret), every page of it.
    Ls(SnapshotLsArgs),
}

#[derive(Debug, Args)]
pub struct SnapshotLsArgs {
    /// The snapshot: its id or a prefix of it, as `fleet snapshots` lists it.
    pub snapshot: String,
    /// The directory in the snapshot.
    #[arg(default_value = "/")]
    pub path: String,
    /// The agent that lists it (id or name).
    #[arg(long)]
    pub agent: String,
    /// The policy whose repository and secret to use (default: the snapshot's own, else
    /// the one live policy on its repository).
    #[arg(long)]
    pub policy: Option<String>,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct RepoArgs {
    #[command(subcommand)]
    pub command: RepoCommand,
}

#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// List the repository of a policy into the snapshot inventory (snapshots made outside
    /// the fleet included).
    Refresh(RefreshArgs),
}

#[derive(Debug, Args)]
pub struct RefreshArgs {
    /// The policy (id or name) whose repository to list.
    pub policy: String,
    /// The agent that lists it (id or name; default: the policy's first agent).
    #[arg(long)]
    pub agent: Option<String>,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct TaskRef {
    /// The task's id.
    pub task: String,
}

#[derive(Debug, Args)]
pub struct TaskCancelArgs {
    /// The task's id.
    pub task: String,
    /// Why, for the log.
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    /// Only this repository's: its id or its URL.
    #[arg(long)]
    pub repo: Option<String>,
    /// Only the snapshots of this agent's host (its id or name): the fleet's and those
    /// made there by hand.
    #[arg(long)]
    pub agent: Option<String>,
    /// Only this policy's (id or name).
    #[arg(long)]
    pub policy: Option<String>,
    /// At most this many, newest first (default: every one).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Print the API's JSON (an array of snapshots), as `-o json` does.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only runs of this agent (id or name).
    #[arg(long)]
    pub agent: Option<String>,
    /// Only runs of this policy (id or name).
    #[arg(long)]
    pub policy: Option<String>,
    /// Only runs with this outcome.
    #[arg(long, value_parser = run_outcomes())]
    pub outcome: Option<String>,
    /// Only runs from this time on: RFC 3339, or an age such as 30m, 2h, 7d.
    #[arg(long, value_name = "TIME", value_parser = time_arg)]
    pub since: Option<DateTime<Utc>>,
    /// At most this many (the API's default is 100, its maximum 1000).
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// A policy's days, per agent (id or name).
    #[arg(long)]
    pub policy: Option<String>,
    /// An agent's days, per policy (id or name); with --policy, that pair's days.
    #[arg(long)]
    pub agent: Option<String>,
    /// Days from this one on: a UTC day (2025-01-02), an RFC 3339 time, or an age such
    /// as 30d.
    #[arg(long, value_name = "DAY", value_parser = day_arg)]
    pub since: Option<NaiveDate>,
    /// At most this many rows (the API's default is 100, its maximum 1000).
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    #[command(flatten)]
    pub api: ApiArgs,
}

fn day_arg(text: &str) -> Result<NaiveDate, String> {
    match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(day) => Ok(day),
        Err(_) => time_arg(text)
            .map(|t| t.date_naive())
            .map_err(|e| format!("{e}, nor a day such as 2025-01-02")),
    }
}

fn run_outcomes() -> PossibleValuesParser {
    PossibleValuesParser::new(RunOutcomeKind::ALL.map(RunOutcomeKind::as_str))
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(subcommand)]
    pub command: EventsCommand,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// The events of one agent, task or policy, in order: one line each (sequence, time,
    /// type, aggregate, summary).
    Replay(ReplayArgs),
    /// Follow the tenant's events as they happen, until Ctrl-C (`-o json`: one JSON object
    /// per line).
    Tail,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("aggregate").required(true).args(["agent", "task", "policy"])))]
pub struct ReplayArgs {
    /// The events of this agent (id or name).
    #[arg(long)]
    pub agent: Option<String>,
    /// The events of this task.
    #[arg(long)]
    pub task: Option<String>,
    /// The events of this policy (id or name).
    #[arg(long)]
    pub policy: Option<String>,
    /// Only events from this time on: RFC 3339, or an age such as 30m, 2h, 7d.
    #[arg(long, value_name = "TIME", value_parser = time_arg)]
    pub since: Option<DateTime<Utc>>,
    /// Only events up to this time: RFC 3339, or an age such as 30m, 2h, 7d.
    #[arg(long, value_name = "TIME", value_parser = time_arg)]
    pub until: Option<DateTime<Utc>>,
}

/// A time argument: RFC 3339, or an age before now (`90s`, `30m`, `2h`, `7d`).
fn time_arg(text: &str) -> Result<DateTime<Utc>, String> {
    time_at(text, Utc::now())
}

fn time_at(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    let unit_at = text.char_indices().last().map_or(0, |(at, _)| at);
    let (number, unit) = text.split_at(unit_at);
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    let age = number
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0 && seconds > 0)
        .and_then(|n| n.checked_mul(seconds))
        .and_then(chrono::TimeDelta::try_seconds);
    match age.and_then(|age| now.checked_sub_signed(age)) {
        Some(time) => Ok(time),
        None => Err(format!(
            "{text:?} is neither an RFC 3339 time (2025-01-02T03:04:05Z) nor an age such \
             as 30m, 2h or 7d"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn time_arguments_are_rfc3339_or_an_age() {
        let now = Utc.with_ymd_and_hms(2025, 3, 10, 12, 0, 0).unwrap();
        assert_eq!(
            time_at("2025-01-02T04:04:05+01:00", now),
            Ok(Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap())
        );
        assert_eq!(
            time_at("90s", now),
            Ok(Utc.with_ymd_and_hms(2025, 3, 10, 11, 58, 30).unwrap())
        );
        assert_eq!(
            time_at("2h", now),
            Ok(Utc.with_ymd_and_hms(2025, 3, 10, 10, 0, 0).unwrap())
        );
        assert_eq!(
            time_at("7d", now),
            Ok(Utc.with_ymd_and_hms(2025, 3, 3, 12, 0, 0).unwrap())
        );
        for bad in [
            "",
            "h",
            "2",
            "-1h",
            "2é",
            "2w",
            "yesterday",
            "99999999999999999d",
        ] {
            assert!(time_at(bad, now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_command_line_parses() {
        use clap::{CommandFactory, Parser};

        use crate::testing::Cli;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "fleet", "agent", "settings", "web-1", "--nice", "-5", "--backup", "1", "-o", "json",
        ])
        .expect("parses");
        let Command::Agent(AgentArgs {
            command: AgentCommand::Settings(settings),
            api,
        }) = cli.command
        else {
            panic!("agent settings: {:?}", cli.command);
        };
        assert_eq!((settings.nice, settings.backup), (Some(-5), Some(1)));
        assert_eq!(api.output, OutputArg::Json);

        // A settings change needs at least one setting; a replay exactly one aggregate.
        for args in [
            &["fleet", "agent", "settings", "web-1"][..],
            &["fleet", "events", "replay"],
            &["fleet", "events", "replay", "--task", "t", "--agent", "a"],
            &["fleet", "task", "ls", "--state", "sleeping"],
            &["fleet", "runs", "--since", "soon"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }
}

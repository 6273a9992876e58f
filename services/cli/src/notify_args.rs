//! The `fleet notify` command line: notification rules (added from YAML or from options,
//! listed, tested, removed) and the notification log.

use std::path::PathBuf;

use clap::builder::PossibleValuesParser;
use clap::{ArgGroup, Args, Subcommand};
use fleet_events::notify::NotificationState;
use fleet_events::notify::Trigger;

use crate::args::ApiArgs;

#[derive(Debug, Args)]
pub struct NotifyArgs {
    #[command(subcommand)]
    pub command: NotifyCommand,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Add notification rules from YAML documents (-f, separated by `---`), or one rule
    /// from options; a rule of the same name is replaced.
    Add(Box<NotifyAddArgs>),
    /// List the notification rules: triggers, target, filters.
    Ls,
    /// Delete a notification rule (its notifications stay in the log).
    Rm(RuleArg),
    /// Ask for a test notification through a rule (the notifier sends it; `fleet notify
    /// log` shows how it went).
    Test(RuleArg),
    /// The notifications, newest first: what each said and how its delivery went.
    Log(NotifyLogArgs),
}

#[derive(Debug, Args)]
pub struct RuleArg {
    /// The rule's name, or its id.
    pub rule: String,
}

/// The target options of the short form: exactly one.
const TARGETS: [&str; 7] = [
    "webhook",
    "webhook_secret",
    "slack_secret",
    "ntfy",
    "ntfy_secret",
    "gotify_secret",
    "healthchecks_secret",
];

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").args(TARGETS).multiple(false)))]
pub struct NotifyAddArgs {
    /// The rule's name (lowercase letters, digits, `-` and `_`), for a rule given by
    /// options.
    #[arg(required_unless_present = "file", requires = "target")]
    pub name: Option<String>,
    /// A YAML file of rule documents (separated by `---`), `-` for stdin.
    #[arg(
        short,
        long,
        value_name = "FILE",
        conflicts_with_all = ["name", "target", "on", "policy", "agent", "hmac_secret"]
    )]
    pub file: Option<PathBuf>,
    /// POST a JSON document to this URL (no credentials or query string in it).
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
    /// POST a JSON document to the URL the notifier's secrets file holds under NAME.
    #[arg(long, value_name = "NAME")]
    pub webhook_secret: Option<String>,
    /// A Slack-compatible incoming webhook whose URL the secrets file holds under NAME.
    #[arg(long, value_name = "NAME")]
    pub slack_secret: Option<String>,
    /// An ntfy topic URL.
    #[arg(long, value_name = "URL")]
    pub ntfy: Option<String>,
    /// An ntfy topic URL (with its token) the secrets file holds under NAME.
    #[arg(long, value_name = "NAME")]
    pub ntfy_secret: Option<String>,
    /// A Gotify message URL (with its token) the secrets file holds under NAME.
    #[arg(long, value_name = "NAME")]
    pub gotify_secret: Option<String>,
    /// A healthchecks ping URL the secrets file holds under NAME.
    #[arg(long, value_name = "NAME")]
    pub healthchecks_secret: Option<String>,
    /// React to this; repeat it (default: taskExhausted, policyOverdue, policyCaughtUp,
    /// agentOffline, agentOnline, circuitOpened, circuitClosed).
    #[arg(long, value_name = "TRIGGER", value_parser = triggers())]
    pub on: Vec<String>,
    /// Only events of this policy (its name); repeat it.
    #[arg(long, value_name = "POLICY")]
    pub policy: Vec<String>,
    /// Only events of this agent (its name); repeat it.
    #[arg(long, value_name = "AGENT")]
    pub agent: Vec<String>,
    /// Sign a webhook's body with the HMAC key the secrets file holds under NAME.
    #[arg(long, value_name = "NAME")]
    pub hmac_secret: Option<String>,
}

fn triggers() -> PossibleValuesParser {
    PossibleValuesParser::new(Trigger::ALL.map(Trigger::as_str))
}

#[derive(Debug, Args)]
pub struct NotifyLogArgs {
    /// Only notifications of this rule (name or id).
    #[arg(long)]
    pub rule: Option<String>,
    /// Only notifications in this state.
    #[arg(long, value_parser = states())]
    pub state: Option<String>,
    /// At most this many (the API's default is 100, its maximum 1000).
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
}

fn states() -> PossibleValuesParser {
    PossibleValuesParser::new(NotificationState::ALL.map(NotificationState::as_str))
}

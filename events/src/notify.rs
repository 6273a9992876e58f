//! Notification rules: which events of a tenant to tell whom, and how patiently.
//!
//! A [`RuleSpec`] is validated with [`RuleSpec::validate`], which reports every problem at
//! once. A target's address either is a plain URL without credentials or names a secret of
//! the notifier's own secrets file: URLs that carry tokens never enter the log.

use serde::{Deserialize, Serialize};

use crate::ids::check_slug;
use crate::validation::{Invalid, Problems};

/// What a rule reacts to. Each trigger is one event type of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Trigger {
    /// `task.failed`: one attempt failed (it may still be retried).
    TaskFailed,
    /// `task.exhausted`: the task failed for good (not retryable, or its budget is spent).
    TaskExhausted,
    /// `task.succeeded`.
    TaskSucceeded,
    /// `assignment.overdue`: a policy has had no success on an agent within its period.
    PolicyOverdue,
    /// `assignment.caught_up`: an overdue policy succeeded again on that agent.
    PolicyCaughtUp,
    /// `agent.went_offline`.
    AgentOffline,
    /// `agent.came_online`.
    AgentOnline,
    /// `repo.circuit_opened`: a repository's tasks are held after repeated failures.
    CircuitOpened,
    /// `repo.circuit_closed`.
    CircuitClosed,
}

impl Trigger {
    /// Every trigger, in a fixed order.
    pub const ALL: [Trigger; 9] = [
        Trigger::TaskFailed,
        Trigger::TaskExhausted,
        Trigger::TaskSucceeded,
        Trigger::PolicyOverdue,
        Trigger::PolicyCaughtUp,
        Trigger::AgentOffline,
        Trigger::AgentOnline,
        Trigger::CircuitOpened,
        Trigger::CircuitClosed,
    ];

    /// What a rule without `on` reacts to: the problems an operator must hear of, and
    /// their recoveries.
    pub const DEFAULT: [Trigger; 7] = [
        Trigger::TaskExhausted,
        Trigger::PolicyOverdue,
        Trigger::PolicyCaughtUp,
        Trigger::AgentOffline,
        Trigger::AgentOnline,
        Trigger::CircuitOpened,
        Trigger::CircuitClosed,
    ];

    /// The camelCase name used in rule documents and payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::TaskFailed => "taskFailed",
            Trigger::TaskExhausted => "taskExhausted",
            Trigger::TaskSucceeded => "taskSucceeded",
            Trigger::PolicyOverdue => "policyOverdue",
            Trigger::PolicyCaughtUp => "policyCaughtUp",
            Trigger::AgentOffline => "agentOffline",
            Trigger::AgentOnline => "agentOnline",
            Trigger::CircuitOpened => "circuitOpened",
            Trigger::CircuitClosed => "circuitClosed",
        }
    }

    /// The trigger named `name`.
    pub fn from_name(name: &str) -> Option<Trigger> {
        Trigger::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// True for the good news: a recovery or a success.
    pub fn is_recovery(self) -> bool {
        matches!(
            self,
            Trigger::TaskSucceeded
                | Trigger::PolicyCaughtUp
                | Trigger::AgentOnline
                | Trigger::CircuitClosed
        )
    }
}

/// Where a rule sends its notifications, and in which shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TargetKind {
    /// A JSON document POSTed to the URL, optionally signed (`X-Fleet-Signature`).
    Webhook,
    /// A Slack-compatible incoming webhook (`{"text": …}`; Mattermost, Rocket.Chat too).
    Slack,
    /// An ntfy topic URL: the text as body, title and priority as headers.
    Ntfy,
    /// A Gotify message URL (`…/message?token=…`): `{"title","message","priority"}`.
    Gotify,
    /// A healthchecks-style ping URL: a success pings it, a failure pings `<url>/fail`.
    Healthchecks,
}

impl TargetKind {
    /// The camelCase name used in rule documents.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Webhook => "webhook",
            TargetKind::Slack => "slack",
            TargetKind::Ntfy => "ntfy",
            TargetKind::Gotify => "gotify",
            TargetKind::Healthchecks => "healthchecks",
        }
    }

    /// True if this kind's URL is itself a credential (a Slack hook, a Gotify token, a
    /// healthchecks check): it must come from the notifier's secrets.
    pub fn url_is_secret(self) -> bool {
        matches!(
            self,
            TargetKind::Slack | TargetKind::Gotify | TargetKind::Healthchecks
        )
    }
}

/// A rule's target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    pub kind: TargetKind,
    /// A URL without credentials (no user info, no query string).
    #[serde(default)]
    pub url: Option<String>,
    /// The name of an entry of the notifier's secrets file holding the URL.
    #[serde(default)]
    pub url_secret: Option<String>,
    /// The name of an entry of the notifier's secrets file holding the HMAC-SHA256 key
    /// that signs a webhook's body (webhook only).
    #[serde(default)]
    pub hmac_secret: Option<String>,
}

/// How patiently a notification is delivered before it is dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct DeliveryRetry {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The wait after the first failed attempt, doubled after each further one.
    pub base_delay_secs: u64,
    /// No wait is longer than this.
    pub max_delay_secs: u64,
}

impl Default for DeliveryRetry {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay_secs: 10,
            max_delay_secs: 900,
        }
    }
}

/// A notification rule as operators write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    /// What the rule reacts to; [`Trigger::DEFAULT`] when empty.
    #[serde(default)]
    pub on: Vec<Trigger>,
    /// Only events of these policies (by name); every policy when empty. Agent and
    /// circuit events concern no policy and pass a policy filter only when it is empty.
    #[serde(default)]
    pub policies: Vec<String>,
    /// Only events of these agents (by name); every agent when empty.
    #[serde(default)]
    pub agents: Vec<String>,
    pub target: Target,
    #[serde(default)]
    pub retry: DeliveryRetry,
}

const MAX_NAME: usize = 64;
const MAX_URL: usize = 2048;
const MAX_FILTER: usize = 256;
const MAX_ATTEMPTS: u32 = 50;
const DAY: u64 = 24 * 3600;

impl RuleSpec {
    /// The triggers this rule reacts to: `on`, else [`Trigger::DEFAULT`] (a healthchecks
    /// target: successes and exhausted tasks, what a check's pings mean).
    pub fn triggers(&self) -> &[Trigger] {
        const PINGS: [Trigger; 2] = [Trigger::TaskSucceeded, Trigger::TaskExhausted];
        match (self.on.is_empty(), self.target.kind) {
            (false, _) => &self.on,
            (true, TargetKind::Healthchecks) => &PINGS,
            (true, _) => &Trigger::DEFAULT,
        }
    }

    /// Checks every field; returns every problem found.
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut p = Problems::default();
        if let Err(e) = check_slug("rule", &self.name) {
            p.add("name", e.to_string());
        }
        p.check(self.name.len() <= MAX_NAME, "name", || {
            format!("must be at most {MAX_NAME} characters")
        });
        let mut seen = std::collections::BTreeSet::new();
        for (i, t) in self.on.iter().enumerate() {
            p.check(seen.insert(*t), &format!("on[{i}]"), || {
                format!("{} is listed twice", t.as_str())
            });
        }
        check_names(&mut p, "policies", &self.policies);
        check_names(&mut p, "agents", &self.agents);
        self.check_target(&mut p);
        let r = &self.retry;
        p.check(
            (1..=MAX_ATTEMPTS).contains(&r.max_attempts),
            "retry.maxAttempts",
            || format!("must be between 1 and {MAX_ATTEMPTS}"),
        );
        p.check(
            (1..=DAY).contains(&r.base_delay_secs),
            "retry.baseDelaySecs",
            || "must be between 1 s and one day".to_owned(),
        );
        p.check(
            r.max_delay_secs >= r.base_delay_secs && r.max_delay_secs <= DAY,
            "retry.maxDelaySecs",
            || "must be at least retry.baseDelaySecs and at most one day".to_owned(),
        );
        p.finish()
    }

    fn check_target(&self, p: &mut Problems) {
        let t = &self.target;
        let kind = t.kind.as_str();
        match (&t.url, &t.url_secret) {
            (Some(_), Some(_)) => p.add("target", "give either url or urlSecret, not both"),
            (None, None) => p.add("target", "needs url or urlSecret"),
            (Some(_), None) if t.kind.url_is_secret() => p.add(
                "target.url",
                format!(
                    "a {kind} URL is a credential: put it in the notifier's secrets file and \
                     name it with urlSecret"
                ),
            ),
            (Some(url), None) => {
                if let Err(problem) = check_plain_url(url) {
                    p.add("target.url", problem);
                }
            }
            (None, Some(name)) => check_secret_name(p, "target.urlSecret", name),
        }
        if let Some(name) = &t.hmac_secret {
            if t.kind == TargetKind::Webhook {
                check_secret_name(p, "target.hmacSecret", name);
            } else {
                p.add(
                    "target.hmacSecret",
                    format!("only a webhook is signed, not {kind}"),
                );
            }
        }
    }
}

fn check_names(p: &mut Problems, field: &str, names: &[String]) {
    p.check(names.len() <= MAX_FILTER, field, || {
        format!("at most {MAX_FILTER} names")
    });
    for (i, name) in names.iter().enumerate() {
        let bad = name.trim().is_empty() || name.len() > 128 || name.chars().any(char::is_control);
        p.check(!bad, &format!("{field}[{i}]"), || {
            "must be a name of 1 to 128 characters without control characters".to_owned()
        });
    }
}

fn check_secret_name(p: &mut Problems, field: &str, name: &str) {
    if let Err(e) = check_slug("secret", name) {
        p.add(field, e.to_string());
    }
}

/// A URL the log may hold: http or https, a host, no user info and no query string (where
/// tokens hide). Returns the problem in words.
pub fn check_plain_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_URL {
        return Err(format!("must be at most {MAX_URL} bytes"));
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("must not contain spaces or control characters".into());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return Err("has no host".into());
    }
    if authority.contains('@') {
        return Err(
            "carries credentials (user:password@): put the URL in the notifier's secrets file \
             and name it with urlSecret"
                .into(),
        );
    }
    if url.contains('?') {
        return Err(
            "has a query string, where tokens hide: put the URL in the notifier's secrets file \
             and name it with urlSecret"
                .into(),
        );
    }
    Ok(())
}

/// Where a notification's delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NotificationState {
    /// Triggered; no attempt claimed yet.
    Pending,
    /// An attempt is being sent.
    Sending,
    /// The target accepted it.
    Delivered,
    /// The last attempt failed; another one is due.
    Failed,
    /// Every attempt the rule allows failed: no more attempts.
    DeadLettered,
}

impl NotificationState {
    /// Every state, in the order a delivery goes through them.
    pub const ALL: [NotificationState; 5] = [
        NotificationState::Pending,
        NotificationState::Sending,
        NotificationState::Delivered,
        NotificationState::Failed,
        NotificationState::DeadLettered,
    ];

    /// The camelCase name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationState::Pending => "pending",
            NotificationState::Sending => "sending",
            NotificationState::Delivered => "delivered",
            NotificationState::Failed => "failed",
            NotificationState::DeadLettered => "deadLettered",
        }
    }

    /// True once nothing more will happen to it.
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            NotificationState::Delivered | NotificationState::DeadLettered
        )
    }
}

#[cfg(test)]
mod tests;

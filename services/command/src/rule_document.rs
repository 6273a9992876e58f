//! Reading a notification rule document (JSON, as the API receives it; YAML is turned into
//! JSON first) so that every problem is reported at once: unknown fields, wrong types,
//! unknown triggers and target kinds, missing fields, then every rule of
//! [`RuleSpec::validate`] (URLs with credentials, secret names, retry bounds), each with
//! its field.

use fleet_events::notify::{DeliveryRetry, RuleSpec, Target, TargetKind, Trigger};
use fleet_events::validation::{FieldError, Invalid, Problems};
use serde_json::{Map, Value};

const FIELDS: &[&str] = &["name", "on", "policies", "agents", "target", "retry"];
const TARGET_FIELDS: &[&str] = &["kind", "url", "urlSecret", "hmacSecret"];
const RETRY_FIELDS: &[&str] = &["maxAttempts", "baseDelaySecs", "maxDelaySecs"];
const KINDS: [TargetKind; 5] = [
    TargetKind::Webhook,
    TargetKind::Slack,
    TargetKind::Ntfy,
    TargetKind::Gotify,
    TargetKind::Healthchecks,
];

/// Problems found so far, and the fields they concern (a later check of the same field,
/// or of a field inside it, is not reported again).
#[derive(Default)]
struct Found {
    problems: Problems,
    fields: Vec<String>,
}

impl Found {
    fn add(&mut self, field: &str, message: impl Into<String>) {
        self.fields.push(field.to_owned());
        self.problems.add(field, message);
    }

    /// Whether `field`, or an object or list holding it, was reported already.
    fn covers(&self, field: &str) -> bool {
        self.fields.iter().any(|f| {
            field == f
                || field
                    .strip_prefix(f.as_str())
                    .is_some_and(|rest| rest.starts_with(['.', '[']))
        })
    }
}

/// Reads a rule document; every problem found, each with its field, or the rule.
pub fn read(document: &Value) -> Result<RuleSpec, Invalid> {
    let Value::Object(fields) = document else {
        return Err(Invalid(vec![FieldError {
            field: String::new(),
            message: "a rule document is an object (name, on, policies, agents, target, retry)"
                .into(),
        }]));
    };
    let mut found = Found::default();
    unknown(&mut found, fields, FIELDS, "", "a rule");
    let name = match fields.get("name") {
        None | Some(Value::Null) => {
            found.add("name", "is required");
            String::new()
        }
        Some(Value::String(name)) => name.clone(),
        Some(_) => {
            found.add("name", "must be a string");
            String::new()
        }
    };
    let on = triggers(&mut found, fields.get("on"));
    let policies = names(&mut found, fields.get("policies"), "policies");
    let agents = names(&mut found, fields.get("agents"), "agents");
    let target = target(&mut found, fields.get("target"));
    let retry = retry(&mut found, fields.get("retry"));
    let spec = RuleSpec {
        name,
        on,
        policies,
        agents,
        target,
        retry,
    };
    if let Err(invalid) = spec.validate() {
        for problem in invalid.0 {
            if !found.covers(&problem.field) {
                found.add(&problem.field, problem.message);
            }
        }
    }
    found.problems.finish()?;
    Ok(spec)
}

/// Reports the keys of `fields` that are not in `known`.
fn unknown(found: &mut Found, fields: &Map<String, Value>, known: &[&str], at: &str, of: &str) {
    for key in fields.keys().filter(|k| !known.contains(&k.as_str())) {
        found.add(
            &format!("{at}{key}"),
            format!("not a field of {of} (it has {})", known.join(", ")),
        );
    }
}

fn triggers(found: &mut Found, value: Option<&Value>) -> Vec<Trigger> {
    let items = match value {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => {
            found.add("on", "must be a list of triggers");
            return Vec::new();
        }
    };
    let mut on = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item.as_str().and_then(Trigger::from_name) {
            // Named by its place in the document (a list of the triggers read would skip
            // the unknown ones).
            Some(trigger) if on.contains(&trigger) => found.add(
                &format!("on[{i}]"),
                format!("{} is listed twice", trigger.as_str()),
            ),
            Some(trigger) => on.push(trigger),
            None => {
                let all: Vec<&str> = Trigger::ALL.iter().map(|t| t.as_str()).collect();
                found.add(
                    &format!("on[{i}]"),
                    format!("{item} is not a trigger: one of {}", all.join(", ")),
                );
            }
        }
    }
    on
}

fn names(found: &mut Found, value: Option<&Value>, field: &str) -> Vec<String> {
    let items = match value {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => {
            found.add(field, "must be a list of names");
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(name) => out.push(name.clone()),
            _ => found.add(&format!("{field}[{i}]"), "must be a name (a string)"),
        }
    }
    out
}

/// A string field of an object: `None` when absent or null.
fn text(found: &mut Found, fields: &Map<String, Value>, key: &str, at: &str) -> Option<String> {
    match fields.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => {
            found.add(&format!("{at}{key}"), "must be a string");
            None
        }
    }
}

/// The target; a stand-in webhook where the document has none that can be read, so that
/// the rest of it is still checked.
fn target(found: &mut Found, value: Option<&Value>) -> Target {
    let mut target = Target {
        kind: TargetKind::Webhook,
        url: None,
        url_secret: None,
        hmac_secret: None,
    };
    let fields = match value {
        None | Some(Value::Null) => {
            found.add("target", "is required: {kind, url or urlSecret}");
            return target;
        }
        Some(Value::Object(fields)) => fields,
        Some(_) => {
            found.add("target", "must be an object: {kind, url or urlSecret}");
            return target;
        }
    };
    unknown(found, fields, TARGET_FIELDS, "target.", "a target");
    let names: Vec<&str> = KINDS.iter().map(|k| k.as_str()).collect();
    match fields.get("kind") {
        None | Some(Value::Null) => {
            found.add(
                "target.kind",
                format!("is required: one of {}", names.join(", ")),
            );
        }
        Some(kind) => match KINDS.iter().find(|k| kind.as_str() == Some(k.as_str())) {
            Some(kind) => target.kind = *kind,
            None => found.add(
                "target.kind",
                format!("{kind} is not a target kind: one of {}", names.join(", ")),
            ),
        },
    }
    target.url = text(found, fields, "url", "target.");
    target.url_secret = text(found, fields, "urlSecret", "target.");
    target.hmac_secret = text(found, fields, "hmacSecret", "target.");
    if found.covers("target.kind") {
        // Which rules apply to the address depends on the kind: only its form is checked.
        if let Some(url) = target.url.take()
            && let Err(problem) = fleet_events::notify::check_plain_url(&url)
        {
            found.add("target.url", problem);
        }
        if target.url_secret.is_none() {
            target.url_secret = Some("stand-in".into());
        }
        target.hmac_secret = None;
    }
    target
}

fn retry(found: &mut Found, value: Option<&Value>) -> DeliveryRetry {
    let mut retry = DeliveryRetry::default();
    let fields = match value {
        None | Some(Value::Null) => return retry,
        Some(Value::Object(fields)) => fields,
        Some(_) => {
            found.add(
                "retry",
                "must be an object: {maxAttempts, baseDelaySecs, maxDelaySecs}",
            );
            return retry;
        }
    };
    unknown(found, fields, RETRY_FIELDS, "retry.", "retry");
    let mut number = |key: &str, max: u64| -> Option<u64> {
        match fields.get(key) {
            None | Some(Value::Null) => None,
            Some(value) => match value.as_u64().filter(|n| *n <= max) {
                Some(n) => Some(n),
                None => {
                    let field = format!("retry.{key}");
                    found.add(&field, format!("must be a whole number from 0 to {max}"));
                    None
                }
            },
        }
    };
    if let Some(n) = number("maxAttempts", u64::from(u32::MAX)) {
        retry.max_attempts = u32::try_from(n).unwrap_or(u32::MAX);
    }
    if let Some(n) = number("baseDelaySecs", u64::MAX) {
        retry.base_delay_secs = n;
    }
    if let Some(n) = number("maxDelaySecs", u64::MAX) {
        retry.max_delay_secs = n;
    }
    retry
}

#[cfg(test)]
mod tests;

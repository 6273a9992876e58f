//! Reading a policy document (JSON, as the API receives it; YAML is turned into it by the
//! CLI) so that every problem of the whole document is reported at once: unknown fields,
//! numbers out of range and required fields are checked on the raw document; typed
//! decoding stops at its first error, so each field it cannot decode (an unknown kind, a
//! wrong type) is reported and *stood in* for by a sample's value, and decoding goes on;
//! then the typed spec is validated, and its problems are reported except those of stood-in
//! fields (and, when the kind was stood in, those that depend on the kind), which would
//! be about the sample, not the operator's document.

use fleet_events::policy::PolicySpec;
use fleet_events::validation::{FieldError, Invalid, Problems};
use serde_json::{Map, Value};

mod stand_in;

/// A policy document: a spec, plus optionally the agents (ids or names) it should run on
/// and whether it is paused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDocument {
    pub spec: PolicySpec,
    pub agents: Option<Vec<String>>,
    pub paused: Option<bool>,
}

/// Fields of a spec, and of its nested objects, that a document may have.
const SPEC_FIELDS: &[&str] = &[
    "name",
    "schedule",
    "kind",
    "repository",
    "include",
    "exclude",
    "retention",
    "execution",
    "retry",
    "overlap",
    "missed",
    "priority",
    "jitterSecs",
    "hooks",
];
const DOCUMENT_FIELDS: &[&str] = &["agents", "paused"];
const REQUIRED: &[&str] = &["name", "schedule", "kind", "repository"];
const NESTED: &[(&str, &[&str])] = &[
    ("repository", &["url", "secret"]),
    (
        "retention",
        &[
            "keepLast",
            "keepHourly",
            "keepDaily",
            "keepWeekly",
            "keepMonthly",
            "keepYearly",
            "keepWithin",
            "keepTags",
        ],
    ),
    (
        "execution",
        &["runTimeoutSecs", "tags", "host", "initIfMissing"],
    ),
    ("retry", &["maxRetries", "baseDelaySecs", "maxDelaySecs"]),
    (
        "hooks",
        &[
            "before",
            "after",
            "onSuccess",
            "onFailure",
            "retryOnFailure",
        ],
    ),
];
/// Whole-number fields and their largest value.
const NUMBERS: &[(&[&str], u64)] = &[
    (&["priority"], u8::MAX as u64),
    (&["jitterSecs"], u32::MAX as u64),
    (&["retention", "keepLast"], u32::MAX as u64),
    (&["retention", "keepHourly"], u32::MAX as u64),
    (&["retention", "keepDaily"], u32::MAX as u64),
    (&["retention", "keepWeekly"], u32::MAX as u64),
    (&["retention", "keepMonthly"], u32::MAX as u64),
    (&["retention", "keepYearly"], u32::MAX as u64),
    (&["execution", "runTimeoutSecs"], u64::MAX),
    (&["retry", "maxRetries"], u32::MAX as u64),
    (&["retry", "baseDelaySecs"], u64::MAX),
    (&["retry", "maxDelaySecs"], u64::MAX),
    (&["schedule", "interval", "everySecs"], u64::MAX),
    (&["missed", "runOnce", "startingDeadlineSecs"], u64::MAX),
];

/// Reads a policy document; every problem found, each with its field, or the document.
pub fn read(document: &Value) -> Result<PolicyDocument, Invalid> {
    let Value::Object(fields) = document else {
        return Err(one("", "a policy document is a JSON object"));
    };
    let mut p = Problems::default();
    let mut reported: Vec<String> = Vec::new();
    let mut report = |p: &mut Problems, field: String, message: String| {
        reported.push(field.clone());
        p.add(field, message);
    };
    for key in fields.keys() {
        if !SPEC_FIELDS.contains(&key.as_str()) && !DOCUMENT_FIELDS.contains(&key.as_str()) {
            report(&mut p, key.clone(), "not a field of a policy".into());
        }
    }
    for (object, known) in NESTED {
        if let Some(Value::Object(inner)) = fields.get(*object) {
            for key in inner.keys().filter(|k| !known.contains(&k.as_str())) {
                let field = format!("{object}.{key}");
                report(&mut p, field, format!("not a field of {object}"));
            }
        }
    }
    for field in REQUIRED.iter().filter(|f| !fields.contains_key(**f)) {
        report(&mut p, (*field).into(), "is required".into());
    }
    let agents = read_agents(fields.get("agents"), &mut |f, m| report(&mut p, f, m));
    let paused = match fields.get("paused") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(paused)) => Some(*paused),
        Some(_) => {
            report(&mut p, "paused".into(), "must be true or false".into());
            None
        }
    };
    let mut spec_fields: Map<String, Value> = fields
        .iter()
        .filter(|(key, _)| SPEC_FIELDS.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    for (path, max) in NUMBERS {
        if let Some(slot) = lookup(&mut spec_fields, path)
            && !is_whole_up_to(slot, *max)
        {
            let field = path.join(".");
            report(
                &mut p,
                field,
                format!("must be a whole number from 0 to {max}"),
            );
            // Stand in a number so typed decoding can go on to the other fields.
            *slot = Value::from(1);
        }
    }
    let mut stood_in = stand_in::StoodIn::default();
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|f| !spec_fields.contains_key(*f))
        .collect();
    for field in missing {
        stood_in.insert(&mut spec_fields, &[stand_in::Step::Key(field.into())]);
    }
    let spec = loop {
        match serde_path_to_error::deserialize::<_, PolicySpec>(Value::Object(spec_fields.clone()))
        {
            Ok(spec) => break spec,
            Err(error) => {
                let field = error.path().to_string();
                let steps = stand_in::steps(error.path());
                if !reported.contains(&field) && !stood_in.holds(&field) {
                    p.add(field.clone(), error.into_inner().to_string());
                }
                // Each round stands in one more field, or gives up: the loop ends.
                if !stood_in.insert(&mut spec_fields, &steps) {
                    return Err(finish(p));
                }
            }
        }
    };
    if let Err(invalid) = spec.validate() {
        for problem in invalid.0 {
            if !reported.contains(&problem.field) && !stood_in.covers(&problem.field) {
                p.add(problem.field, problem.message);
            }
        }
    }
    p.finish()?;
    Ok(PolicyDocument {
        spec,
        agents,
        paused,
    })
}

fn read_agents(
    value: Option<&Value>,
    report: &mut dyn FnMut(String, String),
) -> Option<Vec<String>> {
    match value {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let mut agents = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item.as_str().map(str::trim) {
                    Some(name) if !name.is_empty() => agents.push(name.to_owned()),
                    _ => report(
                        format!("agents[{i}]"),
                        "must be an agent's id or name".into(),
                    ),
                }
            }
            Some(agents)
        }
        Some(_) => {
            report(
                "agents".into(),
                "must be a list of agent ids or names".into(),
            );
            None
        }
    }
}

/// The value at `path` in `fields`, if every step exists.
fn lookup<'a>(fields: &'a mut Map<String, Value>, path: &[&str]) -> Option<&'a mut Value> {
    let (first, rest) = path.split_first()?;
    let mut value = fields.get_mut(*first)?;
    for key in rest {
        value = value.as_object_mut()?.get_mut(*key)?;
    }
    Some(value)
}

fn is_whole_up_to(value: &Value, max: u64) -> bool {
    match value {
        Value::Null => true,
        Value::Number(n) => n.as_u64().is_some_and(|n| n <= max),
        _ => false,
    }
}

fn finish(p: Problems) -> Invalid {
    p.finish()
        .err()
        .unwrap_or_else(|| one("", "the document is not a policy"))
}

fn one(field: &str, message: &str) -> Invalid {
    Invalid(vec![FieldError {
        field: field.into(),
        message: message.into(),
    }])
}

#[cfg(test)]
mod tests;

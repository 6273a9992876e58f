//! Standing in for the fields of a policy document that cannot be decoded, so that typed
//! decoding goes on to the others: each is replaced by a sample policy's value at the same
//! place, or at the nearest enclosing place the sample has.

use fleet_events::samples;
use serde_json::{Map, Value};
use serde_path_to_error::{Path, Segment};

/// One step into a JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    Key(String),
    Index(usize),
}

/// The steps of a decoding error's path, up to the first one that cannot be followed.
pub(super) fn steps(path: &Path) -> Vec<Step> {
    let mut steps = Vec::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => steps.push(Step::Index(*index)),
            Segment::Map { key } => steps.push(Step::Key(key.clone())),
            Segment::Enum { variant } => steps.push(Step::Key(variant.clone())),
            Segment::Unknown => break,
        }
    }
    steps
}

/// The fields stood in so far.
#[derive(Debug, Default)]
pub(super) struct StoodIn {
    paths: Vec<String>,
}

/// Fields whose problems depend on the policy's kind.
const KIND_DEPENDENT: &[&str] = &["include", "retention", "hooks"];

impl StoodIn {
    /// Replaces the value at `steps` in `document`, or the nearest enclosing value not yet
    /// stood in, with the sample's; false when there is none (the loop that calls this
    /// ends, as every call stands in a new field or returns false).
    pub(super) fn insert(&mut self, document: &mut Map<String, Value>, steps: &[Step]) -> bool {
        let sample = sample();
        for len in (1..=steps.len()).rev() {
            let place = &steps[..len];
            let path = render(place);
            if self.paths.contains(&path) {
                continue;
            }
            let Some(value) = get(&sample, place) else {
                continue;
            };
            if set(document, place, value.clone()) {
                self.paths.push(path);
                return true;
            }
        }
        false
    }

    /// Whether `field` is, or is inside, a stood-in value: a decoding error there is about
    /// the sample, not the operator's document.
    pub(super) fn holds(&self, field: &str) -> bool {
        self.paths.iter().any(|path| is_under(field, path))
    }

    /// Whether a validation problem of `field` is about a stood-in value or, when the kind
    /// was stood in, depends on the kind.
    pub(super) fn covers(&self, field: &str) -> bool {
        self.holds(field)
            || (self.holds("kind") && KIND_DEPENDENT.iter().any(|path| is_under(field, path)))
    }
}

/// `field` is `path` or a field inside it.
fn is_under(field: &str, path: &str) -> bool {
    field
        .strip_prefix(path)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

/// A complete policy document: every field and nested field has a value (lists at least
/// one), so most places can be stood in for directly.
fn sample() -> Value {
    let mut spec = samples::policy_spec();
    spec.hooks.before = vec!["stand-in".into()];
    spec.hooks.after = vec!["stand-in".into()];
    spec.hooks.on_success = vec!["stand-in".into()];
    spec.hooks.on_failure = vec!["stand-in".into()];
    serde_json::to_value(spec).unwrap_or(Value::Null)
}

/// `schedule.cron.expr`, `include[0]`: as decoding errors name their fields.
fn render(steps: &[Step]) -> String {
    let mut path = String::new();
    for step in steps {
        match step {
            Step::Key(key) if path.is_empty() => path.push_str(key),
            Step::Key(key) => {
                path.push('.');
                path.push_str(key);
            }
            Step::Index(index) => path.push_str(&format!("[{index}]")),
        }
    }
    path
}

/// The sample's value at `steps`; a list's first item stands for any of its items.
fn get<'a>(value: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    steps.iter().try_fold(value, |value, step| match step {
        Step::Key(key) => value.as_object()?.get(key),
        Step::Index(_) => value.as_array()?.first(),
    })
}

/// Puts `value` at `steps` in `document`, whose enclosing value must exist.
fn set(document: &mut Map<String, Value>, steps: &[Step], value: Value) -> bool {
    let mut root = Value::Object(std::mem::take(document));
    let done = put(&mut root, steps, value);
    if let Value::Object(map) = root {
        *document = map;
    }
    done
}

fn put(here: &mut Value, steps: &[Step], value: Value) -> bool {
    match steps {
        [] => false,
        [Step::Key(key)] => here
            .as_object_mut()
            .map(|map| map.insert(key.clone(), value))
            .is_some(),
        [Step::Index(i)] => match here.as_array_mut().and_then(|items| items.get_mut(*i)) {
            Some(slot) => {
                *slot = value;
                true
            }
            None => false,
        },
        [step, rest @ ..] => {
            let next = match step {
                Step::Key(key) => here.as_object_mut().and_then(|map| map.get_mut(key)),
                Step::Index(i) => here.as_array_mut().and_then(|items| items.get_mut(*i)),
            };
            next.is_some_and(|next| put(next, rest, value))
        }
    }
}

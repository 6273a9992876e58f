//! The shape of every crate's metric catalogue (name, type, labels, HELP text), describing
//! a catalogue to the recorder, and finding the metrics a crate's sources emit, so a test
//! can refuse a metric that has no entry. This crate's own entries are in [`CATALOG`].

use std::path::{Path, PathBuf};

/// A Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    /// The macro that emits a metric of this kind (`counter`, `gauge`, `histogram`).
    pub fn macro_name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric: what it is called, its type, its labels and what it means.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    /// The HELP text.
    pub help: &'static str,
}

/// Gives the recorder the HELP text (and, for names ending in `_seconds` or `_bytes`, the
/// unit) of every metric of `catalog`.
pub fn describe(catalog: &[Metric]) {
    for metric in catalog {
        let unit = if metric.name.ends_with("_seconds") {
            Some(metrics::Unit::Seconds)
        } else if metric.name.ends_with("_bytes") || metric.name.ends_with("_bytes_total") {
            Some(metrics::Unit::Bytes)
        } else {
            None
        };
        match (metric.kind, unit) {
            (Kind::Counter, Some(unit)) => {
                metrics::describe_counter!(metric.name, unit, metric.help)
            }
            (Kind::Counter, None) => metrics::describe_counter!(metric.name, metric.help),
            (Kind::Gauge, Some(unit)) => metrics::describe_gauge!(metric.name, unit, metric.help),
            (Kind::Gauge, None) => metrics::describe_gauge!(metric.name, metric.help),
            (Kind::Histogram, Some(unit)) => {
                metrics::describe_histogram!(metric.name, unit, metric.help)
            }
            (Kind::Histogram, None) => metrics::describe_histogram!(metric.name, metric.help),
        }
    }
}

/// The metrics this crate emits.
pub const CATALOG: &[Metric] = &[
    Metric {
        name: "fleet_parked_messages_total",
        kind: Kind::Counter,
        labels: &["consumer", "kind"],
        help: "Messages a reader could not handle, stored on fleet.parked.<consumer> and \
               acked; kind: undecodable, rejected, retries_exhausted",
    },
    Metric {
        name: "fleet_replay_consumer_retries_total",
        kind: Kind::Counter,
        labels: &[],
        help: "Ordered consumers for a replay or follow created again after the server \
               did not answer",
    },
    Metric {
        name: "fleet_replay_stalls_total",
        kind: Kind::Counter,
        labels: &[],
        help: "Replays or follows ended because they delivered nothing for 15 s while the \
               log held more",
    },
];

/// The kinds of parking, the values of `fleet_parked_messages_total{kind}`.
pub const PARK_KINDS: [&str; 3] = ["undecodable", "rejected", "retries_exhausted"];

/// Registers `consumer`'s parked-message counters at zero, one per kind, so alerts see
/// them from the first scrape.
pub fn register_parked(consumer: &str) {
    for kind in PARK_KINDS {
        metrics::counter!("fleet_parked_messages_total", "consumer" => consumer.to_owned(), "kind" => kind)
            .increment(0);
    }
}

/// Registers the counters of the event-store readers at zero.
pub fn register_store() {
    metrics::counter!("fleet_replay_consumer_retries_total").increment(0);
    metrics::counter!("fleet_replay_stalls_total").increment(0);
}

/// One metric a source emits: the macro's kind and the name, resolved through the
/// crate's `const` string items when the source names a constant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emitted {
    pub kind: Kind,
    pub name: String,
    /// The file and the line, for the message of a failing test.
    pub at: String,
}

/// Every `counter!`, `gauge!` and `histogram!` of `sources` (path, text) outside tests
/// (from a `#[cfg(test)]` line on, and files named `tests.rs` or under `tests/`, are
/// passed over) and outside catalogues (`metrics_catalog.rs`, whose registrations are
/// checked by running them, see [`recorded`]): its name, a string literal or a constant defined with a literal in one of
/// `sources`. A name that is neither is returned as `?IDENT` (a test then fails on it).
pub fn emitted(sources: &[(PathBuf, String)]) -> Vec<Emitted> {
    let constants: Vec<(String, String)> = sources
        .iter()
        .flat_map(|(_, text)| string_constants(text))
        .collect();
    let mut out = Vec::new();
    for (path, text) in sources {
        let in_tests = path.file_name().is_some_and(|f| f == "tests.rs")
            || path.components().any(|c| c.as_os_str() == "tests");
        if in_tests || path.file_name().is_some_and(|f| f == "metrics_catalog.rs") {
            continue;
        }
        for (number, line) in text.lines().enumerate() {
            if line.trim() == "#[cfg(test)]" {
                break;
            }
            for kind in [Kind::Counter, Kind::Gauge, Kind::Histogram] {
                let call = format!("{}!(", kind.macro_name());
                let mut rest = line;
                while let Some(found) = rest.find(&call) {
                    let before = &rest[..found];
                    rest = &rest[found + call.len()..];
                    // `describe_counter!(` and the like describe, they do not emit.
                    if before.ends_with('_') || before.ends_with(|c: char| c.is_alphanumeric()) {
                        continue;
                    }
                    let argument = first_argument(rest, text, number);
                    // A call inside a string literal (a test's source text).
                    if argument.is_empty() {
                        continue;
                    }
                    let name = match argument.strip_prefix('"') {
                        Some(literal) => literal.trim_end_matches('"').to_owned(),
                        None => constants
                            .iter()
                            .find(|(ident, _)| *ident == argument)
                            .map(|(_, value)| value.clone())
                            .unwrap_or_else(|| format!("?{argument}")),
                    };
                    out.push(Emitted {
                        kind,
                        name,
                        at: format!("{}:{}", path.display(), number + 1),
                    });
                }
            }
        }
    }
    out
}

/// The first argument of a macro call starting at `rest`, or on the next line when the
/// call breaks after its parenthesis.
fn first_argument(rest: &str, text: &str, number: usize) -> String {
    let rest = match rest.trim() {
        "" => text.lines().nth(number + 1).unwrap_or("").trim(),
        rest => rest,
    };
    if let Some(literal) = rest.strip_prefix('"') {
        let end = literal.find('"').unwrap_or(literal.len());
        return format!("\"{}\"", &literal[..end]);
    }
    rest.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect::<String>()
        .rsplit("::")
        .next()
        .unwrap_or("")
        .to_owned()
}

/// `const NAME: &str = "value";` items of `text`.
fn string_constants(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line
                .trim()
                .trim_start_matches("pub(crate) ")
                .trim_start_matches("pub ");
            let rest = line.strip_prefix("const ")?;
            let (ident, rest) = rest.split_once(':')?;
            let value = rest.split_once('=')?.1.trim().strip_prefix('"')?;
            let value = value.split_once('"')?.0;
            Some((ident.trim().to_owned(), value.to_owned()))
        })
        .collect()
}

/// Every `.rs` file under `dir`, with its text (for a test over a crate's sources).
pub fn sources(dir: &Path) -> std::io::Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path)?;
                out.push((path, text));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// What is wrong between `emitted` and `catalog`: a metric emitted without an entry, or
/// emitted as another type than its entry says. Empty when all is well.
pub fn problems(emitted: &[Emitted], catalog: &[Metric]) -> Vec<String> {
    let mut out = Vec::new();
    for metric in emitted {
        match catalog.iter().find(|m| m.name == metric.name) {
            None => out.push(format!(
                "{}: {} `{}` is not in the catalogue",
                metric.at,
                metric.kind.macro_name(),
                metric.name
            )),
            Some(entry) if entry.kind != metric.kind => out.push(format!(
                "{}: `{}` is emitted as a {} but catalogued as a {}",
                metric.at,
                metric.name,
                metric.kind.macro_name(),
                entry.kind.macro_name()
            )),
            Some(_) => {}
        }
    }
    let mut names: Vec<&str> = catalog.iter().map(|m| m.name).collect();
    names.sort_unstable();
    for pair in names.windows(2) {
        if pair[0] == pair[1] {
            out.push(format!("`{}` is catalogued twice", pair[0]));
        }
    }
    out
}

/// The histograms of `catalog` without buckets in `buckets`: each would be exported as a
/// summary, whose quantiles cannot be aggregated.
pub fn bucket_problems(catalog: &[Metric], buckets: &[(&str, &[f64])]) -> Vec<String> {
    catalog
        .iter()
        .filter(|m| m.kind == Kind::Histogram)
        .filter(|m| !buckets.iter().any(|(name, _)| *name == m.name))
        .map(|m| format!("{} has no buckets: it would be a summary", m.name))
        .collect()
}

/// One metric registered while [`recorded`] ran: its kind, name and label names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub kind: Kind,
    pub name: String,
    pub labels: Vec<String>,
}

/// The metrics `f` registers (on this thread), for tests of registration code.
pub fn recorded(f: impl FnOnce()) -> Vec<Registered> {
    use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};

    #[derive(Default)]
    struct Collect(std::sync::Mutex<Vec<Registered>>);

    impl Collect {
        fn push(&self, kind: Kind, key: &Key) {
            let labels = key.labels().map(|l| l.key().to_owned()).collect();
            if let Ok(mut all) = self.0.lock() {
                all.push(Registered {
                    kind,
                    name: key.name().to_owned(),
                    labels,
                });
            }
        }
    }

    impl metrics::Recorder for Collect {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            self.push(Kind::Counter, key);
            Counter::noop()
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            self.push(Kind::Gauge, key);
            Gauge::noop()
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            self.push(Kind::Histogram, key);
            Histogram::noop()
        }
    }

    let collect = Collect::default();
    metrics::with_local_recorder(&collect, f);
    collect.0.into_inner().unwrap_or_default()
}

/// What is wrong between what was `registered` and `catalog`: a name without an entry,
/// another type, or other label names than the entry lists. Empty when all is well.
pub fn registration_problems(registered: &[Registered], catalog: &[Metric]) -> Vec<String> {
    let mut out = Vec::new();
    for metric in registered {
        let Some(entry) = catalog.iter().find(|m| m.name == metric.name) else {
            out.push(format!("`{}` is not in the catalogue", metric.name));
            continue;
        };
        if entry.kind != metric.kind {
            out.push(format!(
                "`{}` is registered as a {}",
                metric.name,
                metric.kind.macro_name()
            ));
        }
        let mut labels: Vec<&str> = metric.labels.iter().map(String::as_str).collect();
        let mut expected = entry.labels.to_vec();
        labels.sort_unstable();
        expected.sort_unstable();
        if labels != expected {
            out.push(format!(
                "`{}` is registered with labels {labels:?}, not {expected:?}",
                metric.name
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_are_checked_against_the_catalogue() {
        let registered = recorded(|| {
            register_parked("intake-reports");
            register_store();
            metrics::counter!("fleet_replay_stalls_total", "extra" => "x").increment(0);
        });
        assert_eq!(registered.len(), 6);
        let problems = registration_problems(&registered, CATALOG);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("[\"extra\"]"), "{problems:?}");
    }

    fn source(text: &str) -> Vec<(PathBuf, String)> {
        vec![(PathBuf::from("x.rs"), text.to_owned())]
    }

    #[test]
    fn tests_are_passed_over() {
        let call = "metrics::counter!(\"fleet_x_total\").increment(1);\n";
        let sources = vec![
            (PathBuf::from("a/tests.rs"), call.to_owned()),
            (PathBuf::from("a/tests/b.rs"), call.to_owned()),
            (PathBuf::from("a.rs"), format!("#[cfg(test)]\n{call}")),
        ];
        assert_eq!(emitted(&sources), []);
    }

    #[test]
    fn literals_and_constants_are_found_and_descriptions_are_not_emissions() {
        let text = "const M: &str = \"fleet_m_total\";\n\
                    metrics::counter!(\"fleet_a_total\", \"k\" => v).increment(1);\n\
                    metrics::gauge!(M).set(1.0);\n\
                    metrics::describe_counter!(M, \"help\");\n\
                    metrics::histogram!(\n    \"fleet_b_seconds\",\n).record(1.0);\n\
                    metrics::counter!(UNKNOWN).increment(1);\n";
        let found: Vec<(Kind, String)> = emitted(&source(text))
            .into_iter()
            .map(|e| (e.kind, e.name))
            .collect();
        assert_eq!(
            found,
            [
                (Kind::Counter, "fleet_a_total".to_owned()),
                (Kind::Gauge, "fleet_m_total".to_owned()),
                (Kind::Histogram, "fleet_b_seconds".to_owned()),
                (Kind::Counter, "?UNKNOWN".to_owned()),
            ]
        );
    }

    #[test]
    fn a_metric_without_an_entry_or_of_another_type_is_a_problem() {
        let found = emitted(&source(
            "metrics::counter!(\"fleet_parked_messages_total\").increment(1);\n\
             metrics::gauge!(\"fleet_replay_stalls_total\").set(1.0);\n\
             metrics::counter!(\"fleet_nowhere_total\").increment(1);\n",
        ));
        let problems = problems(&found, CATALOG);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("x.rs:2"), "{problems:?}");
        assert!(problems[1].contains("fleet_nowhere_total"), "{problems:?}");
    }

    #[test]
    fn every_metric_this_crate_emits_is_catalogued() {
        let sources = sources(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))).unwrap();
        let found = emitted(&sources);
        assert!(
            found
                .iter()
                .any(|e| e.name == "fleet_parked_messages_total"),
            "the scan finds the crate's metrics"
        );
        let problems = problems(&found, CATALOG);
        assert!(problems.is_empty(), "{problems:#?}");
    }
}

//! ARCHITECTURE's event catalogue is complete and names only real events: one row for
//! every event type (`| `name` | …`), and no row for a type that does not exist.

use std::collections::BTreeSet;

use fleet_events::event::EventType;

#[test]
fn every_event_type_has_its_row_in_the_catalogue_and_no_row_is_stale() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../ARCHITECTURE.md");
    let text = std::fs::read_to_string(path).expect("ARCHITECTURE.md");
    let section = text
        .split("## Event catalogue")
        .nth(1)
        .expect("ARCHITECTURE.md has an `## Event catalogue` section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let rows: Vec<&str> = section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`').map(|(name, _)| name))
        .collect();
    let listed: BTreeSet<&str> = rows.iter().copied().collect();
    assert_eq!(listed.len(), rows.len(), "a type has two rows: {rows:?}");
    let missing: Vec<&str> = EventType::ALL
        .iter()
        .map(|t| t.name())
        .filter(|name| !listed.contains(name))
        .collect();
    let stale: Vec<&&str> = listed
        .iter()
        .filter(|name| EventType::from_name(name).is_none())
        .collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "event types without a catalogue row: {missing:?}; rows of no event type: {stale:?}"
    );
}

/// Each event variant's doc names its writer (`Written by: …`), as its catalogue row does.
#[test]
fn every_event_variant_names_its_writer() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/event");
    let mut variants = 0;
    let mut silent = Vec::new();
    for file in ["other.rs", "task.rs", "notify.rs"] {
        let text = std::fs::read_to_string(format!("{dir}/{file}")).expect("event source");
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            let Some(enum_name) = line
                .strip_prefix("pub enum ")
                .and_then(|rest| rest.strip_suffix(" {"))
                .filter(|name| name.ends_with("Event"))
            else {
                continue;
            };
            let mut doc = String::new();
            for line in lines.by_ref() {
                if line == "}" {
                    break;
                }
                if let Some(text) = line.strip_prefix("    ///") {
                    doc.push_str(text);
                    continue;
                }
                let variant = line
                    .strip_prefix("    ")
                    .filter(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
                    .map(|rest| rest.split([' ', ',', '(', '{']).next().unwrap_or(rest));
                if let Some(variant) = variant {
                    variants += 1;
                    if !doc.contains("Written by: ") {
                        silent.push(format!("{enum_name}::{variant}"));
                    }
                }
                if !line.starts_with("    #[") {
                    doc.clear();
                }
            }
        }
    }
    assert_eq!(variants, EventType::ALL.len(), "one variant per event type");
    assert!(
        silent.is_empty(),
        "variants whose doc names no writer: {silent:?}"
    );
}

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

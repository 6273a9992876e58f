//! The metrics of the projection runtime: their types, labels and HELP text, and their
//! registration at zero when a projection starts.

use fleet_events::metrics_catalog::{Kind, Metric};

/// The metrics this crate emits, all labelled by `projection` (the read model's name).
pub const CATALOG: &[Metric] = &[
    Metric {
        name: "fleet_projection_applied_events_total",
        kind: Kind::Counter,
        labels: &["projection"],
        help: "Events a read model applied (its state and checkpoint moved in one \
               transaction)",
    },
    Metric {
        name: "fleet_projection_checkpoint_sequence",
        kind: Kind::Gauge,
        labels: &["projection"],
        help: "The last stream sequence of FLEET_EVENTS a read model applied or rejected",
    },
    Metric {
        name: "fleet_projection_rejected_events_total",
        kind: Kind::Counter,
        labels: &["projection", "reason"],
        help: "Events a read model refused (recorded in its rejected tree, never dropped), \
               by reason",
    },
    Metric {
        name: "fleet_projection_retired_total",
        kind: Kind::Counter,
        labels: &["projection"],
        help: "Ended tasks and runs a read model retired after its history days (their \
               per-day totals stay; the log keeps everything)",
    },
];

/// Registers `projection`'s applied-events and retired counters at zero (the checkpoint
/// gauge is set as soon as it reads its checkpoint).
pub fn register(projection: &'static str) {
    metrics::counter!("fleet_projection_applied_events_total", "projection" => projection)
        .increment(0);
    metrics::counter!("fleet_projection_retired_total", "projection" => projection).increment(0);
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use fleet_events::metrics_catalog::{emitted, problems, sources};

    #[test]
    fn every_metric_this_crate_emits_is_catalogued() {
        let sources = sources(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))).unwrap();
        let found = emitted(&sources);
        assert!(
            found.len() >= 3,
            "the scan finds the crate's metrics: {found:?}"
        );
        let problems = problems(&found, super::CATALOG);
        assert!(problems.is_empty(), "{problems:#?}");
    }
}

//! Every metric the agent emits: type, labels and HELP text; the histograms' buckets;
//! and the counters registered at zero at start for every label value they can take.

use fleet_events::metrics_catalog::{Kind, Metric};
use fleet_events::policy::TaskKind;

use crate::executor::progress::PUBLISHED_METRIC;

/// The agent's metrics.
pub const CATALOG: &[Metric] = &[
    Metric {
        name: "fleet_agent_outbox_depth",
        kind: Kind::Gauge,
        labels: &[],
        help: "Reports in the agent's outbox not yet stored by JetStream",
    },
    Metric {
        name: "fleet_agent_concurrency_limit",
        kind: Kind::Gauge,
        labels: &[],
        help: "Tasks the agent runs at once, at most",
    },
    Metric {
        name: "fleet_agent_undecodable_commands_total",
        kind: Kind::Counter,
        labels: &[],
        help: "Commands on the agent's task subject that could not be decoded (logged and \
               dropped)",
    },
    Metric {
        name: "fleet_agent_tasks_running",
        kind: Kind::Gauge,
        labels: &["kind"],
        help: "restic runs in progress, by task kind",
    },
    Metric {
        name: "fleet_agent_restic_duration_seconds",
        kind: Kind::Histogram,
        labels: &["kind", "outcome"],
        help: "How long a task's restic ran, by task kind and outcome (succeeded, failed, \
               interrupted)",
    },
    Metric {
        name: "fleet_agent_tasks_total",
        kind: Kind::Counter,
        labels: &["kind", "outcome"],
        help: "Tasks the agent ran to an end, by kind and outcome (succeeded, failed, \
               interrupted)",
    },
    Metric {
        name: "fleet_agent_bytes_added_total",
        kind: Kind::Counter,
        labels: &[],
        help: "Bytes successful backups added to their repositories (restic's data_added)",
    },
    Metric {
        name: "fleet_agent_snapshots_forgotten_total",
        kind: Kind::Counter,
        labels: &[],
        help: "Snapshots removed by the retention (restic forget) after backups",
    },
    Metric {
        name: "fleet_agent_retention_runs_total",
        kind: Kind::Counter,
        labels: &["outcome"],
        help: "Retention runs (restic forget) after a backup, by outcome (applied, failed)",
    },
    Metric {
        name: PUBLISHED_METRIC,
        kind: Kind::Counter,
        labels: &["outcome"],
        help: "Live progress messages by outcome: sent, failed (refused or too slow), \
               disconnected (NATS away: not sent) and dropped (queue full or stale)",
    },
    Metric {
        name: "fleet_agent_browse_requests_total",
        kind: Kind::Counter,
        labels: &["outcome"],
        help: "Browse requests by outcome: ok, failed (restic, secret, snapshot or path), \
               invalid, refused (another tenant), malformed, busy, unanswerable (no reply \
               subject)",
    },
    Metric {
        name: "fleet_agent_browse_seconds",
        kind: Kind::Histogram,
        labels: &[],
        help: "Time from a browse request to its answer",
    },
    Metric {
        name: "fleet_agent_stale_unlocks_total",
        kind: Kind::Counter,
        labels: &["outcome"],
        help: "restic unlock runs before a run, after attempts the agent left running \
               (done, failed)",
    },
    Metric {
        name: "fleet_agent_files_restored_total",
        kind: Kind::Counter,
        labels: &[],
        help: "Files restores wrote",
    },
    Metric {
        name: "fleet_agent_snapshot_listings_total",
        kind: Kind::Counter,
        labels: &["outcome"],
        help: "Snapshot listings (restic snapshots) by outcome (listed, failed)",
    },
];

/// The buckets of each histogram, in seconds: a restic run takes from a second to half a
/// day; a browse answers within the API's two minutes.
pub const BUCKETS: &[(&str, &[f64])] = &[
    (
        "fleet_agent_restic_duration_seconds",
        &[
            1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
            14400.0, 28800.0, 43200.0,
        ],
    ),
    (
        "fleet_agent_browse_seconds",
        &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0],
    ),
];

/// How a task's restic can end, the values of `outcome` on the task metrics.
pub const RUN_OUTCOMES: [&str; 3] = ["succeeded", "failed", "interrupted"];

/// Registers every counter (and the per-kind running gauge) at zero with every label value
/// it can take, so rates and `absent()` see them from the first scrape.
pub fn register() {
    fleet_events::metrics_catalog::describe(CATALOG);
    for kind in TaskKind::ALL {
        metrics::gauge!("fleet_agent_tasks_running", "kind" => kind.as_str()).set(0.0);
        for outcome in RUN_OUTCOMES {
            metrics::counter!("fleet_agent_tasks_total", "kind" => kind.as_str(), "outcome" => outcome)
                .increment(0);
        }
    }
    let labelled: [(&str, &[&str]); 5] = [
        ("fleet_agent_retention_runs_total", &["applied", "failed"]),
        ("fleet_agent_stale_unlocks_total", &["done", "failed"]),
        ("fleet_agent_snapshot_listings_total", &["listed", "failed"]),
        (
            PUBLISHED_METRIC,
            &["sent", "failed", "disconnected", "dropped"],
        ),
        (
            "fleet_agent_browse_requests_total",
            &[
                "ok",
                "failed",
                "invalid",
                "refused",
                "malformed",
                "busy",
                "unanswerable",
            ],
        ),
    ];
    for (name, outcomes) in labelled {
        for outcome in outcomes {
            metrics::counter!(name, "outcome" => *outcome).increment(0);
        }
    }
    for name in [
        "fleet_agent_undecodable_commands_total",
        "fleet_agent_bytes_added_total",
        "fleet_agent_snapshots_forgotten_total",
        "fleet_agent_files_restored_total",
    ] {
        metrics::counter!(name).increment(0);
    }
}

/// A Prometheus exporter for the agent serving on `addr`, with the catalogue's buckets
/// (no histogram is left a summary).
pub fn prometheus(
    addr: std::net::SocketAddr,
) -> Result<metrics_exporter_prometheus::PrometheusBuilder, metrics_exporter_prometheus::BuildError>
{
    let mut builder =
        metrics_exporter_prometheus::PrometheusBuilder::new().with_http_listener(addr);
    for (name, buckets) in BUCKETS {
        builder = builder.set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full((*name).to_owned()),
            buckets,
        )?;
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use fleet_events::metrics_catalog::{
        Kind, bucket_problems, emitted, problems, recorded, registration_problems, sources,
    };

    use super::*;

    #[test]
    fn every_metric_the_agent_emits_is_catalogued_and_every_histogram_has_buckets() {
        let sources = sources(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))).unwrap();
        let found = emitted(&sources);
        assert!(
            found.len() >= 15,
            "the scan finds the agent's metrics: {found:?}"
        );
        let mut problems = problems(&found, CATALOG);
        problems.extend(bucket_problems(CATALOG, BUCKETS));
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn registration_at_zero_covers_every_counter_with_its_labels() {
        let registered = recorded(register);
        let problems = registration_problems(&registered, CATALOG);
        assert!(problems.is_empty(), "{problems:#?}");
        let tasks = registered
            .iter()
            .filter(|r| r.name == "fleet_agent_tasks_total")
            .count();
        assert_eq!(tasks, TaskKind::ALL.len() * RUN_OUTCOMES.len());
        for metric in CATALOG.iter().filter(|m| m.kind == Kind::Counter) {
            assert!(
                registered.iter().any(|r| r.name == metric.name),
                "{} is not registered at zero",
                metric.name
            );
        }
    }
}

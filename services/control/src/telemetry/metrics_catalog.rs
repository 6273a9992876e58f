//! Every metric the control-plane services emit: type, labels and HELP text; the
//! histograms' buckets; and, per service, the counters registered at zero when it starts,
//! one per label value they can take.

use fleet_events::event::{ErrorClass, EventType};
use fleet_events::metrics_catalog::{Kind, Metric, register_parked};

use crate::serve::Service;

const fn counter(
    name: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind: Kind::Counter,
        labels,
        help,
    }
}

const fn gauge(name: &'static str, labels: &'static [&'static str], help: &'static str) -> Metric {
    Metric {
        name,
        kind: Kind::Gauge,
        labels,
        help,
    }
}

const fn histogram(
    name: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind: Kind::Histogram,
        labels,
        help,
    }
}

/// The services' metrics emitted through the `metrics` recorder. The per-agent,
/// per-policy and per-repository gauges are rendered apart, see [`super::fleet_state`].
pub const CATALOG: &[Metric] = &[
    counter(
        "fleet_scheduler_decisions_total",
        &["outcome"],
        "Fires the scheduler recorded, by outcome: scheduled, replaced, skipped_overlap, \
         skipped_missed",
    ),
    counter(
        "fleet_tasks_dispatched_total",
        &[],
        "Tasks the dispatcher sent to their agent",
    ),
    histogram(
        "fleet_dispatch_delay_seconds",
        &[],
        "Time from a task's due time to its dispatch",
    ),
    histogram(
        "fleet_heartbeat_lag_seconds",
        &[],
        "Time from a heartbeat's storing by NATS to the dispatcher reading it (live ones)",
    ),
    counter(
        "fleet_snapshot_loads_total",
        &["service", "outcome"],
        "Starts of a service by what came of reading its snapshot: loaded, missing, damaged, \
         stale (another release, fold version or event stream); all but loaded replay the log",
    ),
    counter(
        "fleet_snapshot_writes_total",
        &["service", "outcome"],
        "Snapshots of a service's folded state written, by outcome: written, failed",
    ),
    counter(
        "fleet_orders_resent_total",
        &[],
        "Commands of dispatched but unacknowledged attempts sent again by a dispatcher \
         taking over",
    ),
    counter(
        "fleet_tasks_timed_out_total",
        &[],
        "Running tasks the dispatcher failed for exceeding their run timeout",
    ),
    counter(
        "fleet_liveness_events_total",
        &["event"],
        "Liveness events the dispatcher recorded: agent.went_offline, agent.came_online, \
         task.lost, task.failed (timed out)",
    ),
    gauge(
        "fleet_saturated_agents",
        &[],
        "Agents that take no more work now (at their limits or queue threshold)",
    ),
    gauge(
        "fleet_waiting_tasks",
        &[],
        "Tasks due but not dispatched (their agent is offline, full or in backoff)",
    ),
    counter(
        "fleet_intake_reports_total",
        &["status"],
        "Agent reports recorded in the log, by status",
    ),
    counter(
        "fleet_tasks_failed_total",
        &["class"],
        "Failed attempts reported by agents, by error class",
    ),
    counter(
        "fleet_intake_rejected_reports_total",
        &[],
        "Reports intake refused (and parked): forged, illegal, or never preceded by their \
         earlier steps",
    ),
    counter(
        "fleet_intake_early_reports_total",
        &[],
        "Reports ahead of the log, judged again shortly",
    ),
    counter(
        "fleet_intake_late_reports_total",
        &[],
        "Reports of a step the log has already passed (acked, nothing appended)",
    ),
    counter(
        "fleet_intake_superseded_reports_total",
        &[],
        "Reports about an attempt the control plane already settled",
    ),
    counter(
        "fleet_retry_decisions_total",
        &["event"],
        "Retry enforcer decisions recorded: task.retry_scheduled, task.retry_due, \
         task.exhausted, repo.circuit_opened, repo.circuit_closed",
    ),
    gauge(
        "fleet_tasks_in_backoff",
        &[],
        "Failed tasks waiting for their retry",
    ),
    gauge(
        "fleet_open_circuits",
        &[],
        "Repositories whose circuit breaker is open or half-open",
    ),
    counter(
        "fleet_undecodable_events_total",
        &["service"],
        "Events in the log a service could not decode and passed over",
    ),
    counter(
        "fleet_access_renders_total",
        &[],
        "NATS authorization configurations the access service rendered",
    ),
    counter(
        "fleet_access_reloads_total",
        &["outcome"],
        "Reloads of nats-server after a render, by outcome (signalled, failed)",
    ),
    gauge(
        "fleet_access_admitted_agents",
        &[],
        "Agents whose NATS key the rendered authorization admits",
    ),
    counter(
        "fleet_registrations_total",
        &["outcome"],
        "Agent registration requests, by outcome",
    ),
    gauge(
        "fleet_lease_held",
        &["lease"],
        "1 in the instance acting for a leased service (scheduler, dispatcher), 0 in a \
         standby",
    ),
    counter(
        "fleet_lease_acquired_total",
        &["lease"],
        "Times this instance took a lease",
    ),
    counter(
        "fleet_lease_lost_total",
        &["lease"],
        "Times this instance gave a lease up without stopping (NATS unreachable, or the \
         key taken)",
    ),
    counter(
        "fleet_queries_total",
        &["query", "outcome"],
        "Read-model queries the projector answered, by query and outcome",
    ),
    counter(
        "fleet_api_requests_total",
        &["method", "route", "status"],
        "HTTP requests to the API, by method, route and status",
    ),
    histogram(
        "fleet_api_request_seconds",
        &["method", "route"],
        "Time the API took to answer a request",
    ),
    counter(
        "fleet_api_writes_total",
        &["command", "outcome"],
        "Operator commands through the API, by command and outcome",
    ),
    counter(
        "fleet_api_auth_failures_total",
        &[],
        "Requests refused for a missing, unknown or revoked token",
    ),
    counter(
        "fleet_api_auth_delayed_total",
        &[],
        "Failed authentications answered late (throttled per client address)",
    ),
    counter(
        "fleet_notification_attempts_total",
        &["outcome"],
        "Notification attempts this notifier sent, by outcome: delivered (2xx), failed",
    ),
    counter(
        "fleet_notifier_events_total",
        &["event"],
        "Events the notifier appended, by type (notification.*, assignment.*)",
    ),
    gauge(
        "fleet_notifications_pending",
        &[],
        "Notifications triggered and not yet delivered or dead-lettered",
    ),
    counter(
        "fleet_notifications_stale_total",
        &[],
        "Events not notified because they were older than --notify-max-age-secs when \
         first seen",
    ),
];

/// The buckets of each histogram, in seconds: a dispatch follows its due time within
/// milliseconds, or waits up to an hour for a full or offline agent; an API request takes
/// milliseconds, a browse up to two minutes.
pub const BUCKETS: &[(&str, &[f64])] = &[
    (
        "fleet_dispatch_delay_seconds",
        &[
            0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
            1800.0, 3600.0,
        ],
    ),
    (
        "fleet_heartbeat_lag_seconds",
        &[
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            60.0,
        ],
    ),
    (
        "fleet_api_request_seconds",
        &[
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            120.0,
        ],
    ),
];

/// The consumer names under which services park messages.
pub const INTAKE_CONSUMER: &str = crate::intake::REPORTS_CONSUMER;

/// Registers what `service` counts at zero, with every label value it can take, so rates
/// and `absent()` see them from the first scrape.
pub fn register(service: Service) {
    fn zero(name: &'static str) {
        metrics::counter!(name).increment(0);
    }
    fn zero_by(name: &'static str, label: &'static str, values: &[&'static str]) {
        for value in values {
            metrics::counter!(name, label => *value).increment(0);
        }
    }
    match service {
        Service::Scheduler => {
            let outcomes = crate::scheduler::Outcome::ALL.map(crate::scheduler::Outcome::name);
            zero_by("fleet_scheduler_decisions_total", "outcome", &outcomes);
            undecodable("scheduler");
            snapshots("scheduler");
        }
        Service::Dispatcher => {
            zero("fleet_tasks_dispatched_total");
            zero("fleet_orders_resent_total");
            zero("fleet_tasks_timed_out_total");
            zero_by(
                "fleet_liveness_events_total",
                "event",
                &[
                    "agent.went_offline",
                    "agent.came_online",
                    "task.lost",
                    "task.failed",
                ],
            );
            metrics::gauge!("fleet_saturated_agents").set(0.0);
            metrics::gauge!("fleet_waiting_tasks").set(0.0);
            register_parked(crate::dispatcher::HEARTBEAT_READER);
            undecodable("dispatcher");
            snapshots("dispatcher");
        }
        Service::Intake => {
            zero_by(
                "fleet_intake_reports_total",
                "status",
                &fleet_events::protocol::ReportStatus::NAMES,
            );
            let classes = ErrorClass::ALL.map(ErrorClass::as_str);
            zero_by("fleet_tasks_failed_total", "class", &classes);
            zero("fleet_intake_rejected_reports_total");
            zero("fleet_intake_early_reports_total");
            zero("fleet_intake_late_reports_total");
            zero("fleet_intake_superseded_reports_total");
            register_parked(INTAKE_CONSUMER);
        }
        Service::Retry => {
            zero_by(
                "fleet_retry_decisions_total",
                "event",
                &[
                    "task.retry_scheduled",
                    "task.retry_due",
                    "task.exhausted",
                    "repo.circuit_opened",
                    "repo.circuit_closed",
                ],
            );
            metrics::gauge!("fleet_tasks_in_backoff").set(0.0);
            metrics::gauge!("fleet_open_circuits").set(0.0);
            undecodable("retry");
            snapshots("retry");
        }
        Service::Access => {
            zero("fleet_access_renders_total");
            zero_by(
                "fleet_access_reloads_total",
                "outcome",
                &["signalled", "failed"],
            );
            undecodable("access");
        }
        Service::Registrar => zero_by(
            "fleet_registrations_total",
            "outcome",
            &crate::enroll::OUTCOMES,
        ),
        Service::Projector => register_parked(crate::projector::models::HEARTBEAT_READER),
        Service::Notifier => {
            zero_by(
                "fleet_notification_attempts_total",
                "outcome",
                &["delivered", "failed"],
            );
            let events = [
                EventType::NotificationTriggered,
                EventType::NotificationSending,
                EventType::NotificationDelivered,
                EventType::NotificationFailed,
                EventType::NotificationDeadLettered,
                EventType::AssignmentOverdue,
                EventType::AssignmentCaughtUp,
            ]
            .map(EventType::name);
            zero_by("fleet_notifier_events_total", "event", &events);
            zero("fleet_notifications_stale_total");
            metrics::gauge!("fleet_notifications_pending").set(0.0);
            undecodable("notifier");
        }
        Service::Api => {
            zero("fleet_api_auth_failures_total");
            zero("fleet_api_auth_delayed_total");
            undecodable("api");
        }
    }
}

/// Registers a service's snapshot counters at zero, with every outcome.
fn snapshots(service: &'static str) {
    for outcome in ["loaded", "missing", "damaged", "stale"] {
        metrics::counter!("fleet_snapshot_loads_total", "service" => service, "outcome" => outcome)
            .increment(0);
    }
    for outcome in ["written", "failed"] {
        metrics::counter!("fleet_snapshot_writes_total", "service" => service, "outcome" => outcome)
            .increment(0);
    }
}

/// Registers `fleet_undecodable_events_total{service}` at zero.
fn undecodable(service: &'static str) {
    metrics::counter!("fleet_undecodable_events_total", "service" => service).increment(0);
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use fleet_events::metrics_catalog::{
        bucket_problems, emitted, problems, recorded, registration_problems, sources,
    };

    use super::*;

    /// Every catalogue of the `fleet` process.
    fn all() -> Vec<fleet_events::metrics_catalog::Metric> {
        [
            CATALOG,
            fleet_events::metrics_catalog::CATALOG,
            fleet_projections::metrics_catalog::CATALOG,
        ]
        .concat()
    }

    #[test]
    fn every_metric_the_services_emit_is_catalogued_and_every_histogram_has_buckets() {
        let sources = sources(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))).unwrap();
        let found = emitted(&sources);
        assert!(found.len() >= 40, "the scan finds the metrics: {found:?}");
        let mut problems = problems(&found, CATALOG);
        problems.extend(bucket_problems(CATALOG, BUCKETS));
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn each_service_registers_its_counters_at_zero_with_catalogued_labels() {
        let registered = recorded(|| Service::ALL.into_iter().for_each(register));
        let problems = registration_problems(&registered, &all());
        assert!(problems.is_empty(), "{problems:#?}");
        let count = |name: &str| registered.iter().filter(|r| r.name == name).count();
        assert_eq!(count("fleet_tasks_failed_total"), ErrorClass::ALL.len());
        assert_eq!(count("fleet_intake_reports_total"), 8);
        assert_eq!(count("fleet_parked_messages_total"), 3 * 3);
        assert_eq!(count("fleet_scheduler_decisions_total"), 4);
        assert_eq!(count("fleet_registrations_total"), 8);
    }

    #[test]
    fn only_what_a_service_counts_is_registered_for_it() {
        let registered = recorded(|| register(Service::Registrar));
        assert!(
            registered
                .iter()
                .all(|r| r.name == "fleet_registrations_total")
        );
    }
}

//! Publishes the fleet gauges ([`crate::fleet_state`]) from the read models:
//! at start and then every [`EVERY`], each time from the live fleet as the models hold it,
//! so what an agent's deletion or a policy's removal takes out disappears from `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use fleet_projections::ProjectionError;
use tokio_util::sync::CancellationToken;

use super::ReadModels;
use crate::fleet_state::{self, FleetView};

/// How often the gauges are computed again.
pub const EVERY: Duration = Duration::from_secs(10);

/// Publishes the gauges every [`EVERY`] until `shutdown`.
pub async fn run(models: Arc<ReadModels>, shutdown: CancellationToken) {
    loop {
        let computed = {
            let models = models.clone();
            tokio::task::spawn_blocking(move || view(&models)).await
        };
        match computed {
            Ok(Ok(view)) => fleet_state::publish(fleet_state::render(&fleet_state::samples(&view))),
            Ok(Err(error)) => tracing::warn!(%error, "cannot compute the fleet gauges"),
            Err(error) => tracing::warn!(%error, "computing the fleet gauges failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// The live fleet as the read models hold it now.
fn view(models: &ReadModels) -> Result<FleetView, ProjectionError> {
    let agents = models.agents.all()?;
    let policies = models.policies.all_live()?;
    let mut tenants: Vec<_> = policies.iter().map(|p| p.tenant.clone()).collect();
    tenants.sort();
    tenants.dedup();
    let mut view = FleetView {
        agents,
        policies,
        ..FleetView::default()
    };
    for tenant in &tenants {
        for success in models.runs.last_successes(tenant)? {
            view.last_successes.push((tenant.clone(), success));
        }
        view.repos.extend(models.repos.list(tenant)?);
        for late in models.notifications.overdue(tenant)? {
            view.overdue.push((tenant.clone(), late.policy, late.agent));
        }
    }
    for agent in view.agents.iter().filter(|a| !a.decommissioned) {
        for waiting in &agent.backoff {
            if let Some(task) = models.tasks.task(waiting.task)? {
                view.backoff.push((task.tenant, task.policy));
            }
        }
    }
    Ok(view)
}

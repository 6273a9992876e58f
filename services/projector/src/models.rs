//! The read models the projector keeps, in one sled database: opened together, each fed
//! from the log by its own loop, rebuilt together from one replay.

use std::path::Path;
use std::sync::Arc;

use fleet_events::store::EventStore;

use fleet_projections::drive::rebuild_together;
use fleet_projections::{
    Agents, Checkpointed, Notifications, Policies, Projection, ProjectionError, Repos, Runs,
    Snapshots, Status, Tasks,
};
use fleet_runtime::heard::LastHeard;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Every read model.
pub struct ReadModels {
    pub tasks: Checkpointed<Tasks>,
    pub agents: Checkpointed<Agents>,
    pub runs: Checkpointed<Runs>,
    pub policies: Checkpointed<Policies>,
    pub repos: Checkpointed<Repos>,
    pub snapshots: Checkpointed<Snapshots>,
    pub notifications: Checkpointed<Notifications>,
    /// Agents' last heartbeats, live from `FLEET_HEARTBEATS`: what "last seen" shows.
    /// Not a read model of the log, and not stored.
    pub heard: LastHeard,
}

/// One projection's progress, as `fleet projections status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectionStatus {
    pub projection: String,
    /// The last stream sequence applied.
    pub checkpoint: u64,
    /// The last sequence of the events it reads, when asked.
    pub last_sequence: u64,
    /// Events behind that.
    pub lag: u64,
    /// Events it refused (recorded, never dropped).
    pub rejected: u64,
}

/// The name the projector reads heartbeats under; bad ones are parked on
/// `fleet.parked.projector-heartbeats` (once, whichever reader sees them first).
pub const HEARTBEAT_READER: &str = "projector-heartbeats";

impl ReadModels {
    /// Opens (or creates) the database in `dir`; a model stored with another format
    /// version is reset and rebuilt by its loop.
    /// The task and run models keep ended tasks and runs for `history_days` days of the
    /// log's clock (their per-day totals stay).
    pub fn open(dir: &Path, history_days: u32) -> Result<Self, ProjectionError> {
        let db = fleet_projections::runtime::open_sled(dir)?;
        Ok(Self {
            tasks: Checkpointed::with_db(db.clone(), Tasks::keeping(history_days))?,
            agents: Checkpointed::with_db(db.clone(), Agents)?,
            runs: Checkpointed::with_db(db.clone(), Runs::keeping(history_days))?,
            policies: Checkpointed::with_db(db.clone(), Policies)?,
            repos: Checkpointed::with_db(db.clone(), Repos)?,
            snapshots: Checkpointed::with_db(db.clone(), Snapshots)?,
            notifications: Checkpointed::with_db(db, Notifications)?,
            heard: LastHeard::default(),
        })
    }

    /// Starts every model's loop on `tracker` until `shutdown`; a model that fails stops
    /// the others (cancelling `shutdown`).
    pub fn spawn(
        self: &Arc<Self>,
        tracker: &TaskTracker,
        store: &EventStore,
        shutdown: &CancellationToken,
    ) {
        macro_rules! feed {
            ($field:ident, $model:ty) => {{
                let models = Arc::clone(self);
                let (store, stop) = (store.clone(), shutdown.clone());
                tracker.spawn(async move {
                    if let Err(error) = models.$field.run(&store, stop.clone()).await {
                        tracing::error!(projection = <$model>::NAME, %error, "projection stopped");
                        stop.cancel();
                    }
                });
            }};
        }
        feed!(tasks, Tasks);
        feed!(agents, Agents);
        feed!(runs, Runs);
        feed!(policies, Policies);
        feed!(repos, Repos);
        feed!(snapshots, Snapshots);
        feed!(notifications, Notifications);
        let (heard, store, stop) = (self.heard.clone(), store.clone(), shutdown.clone());
        tracker.spawn(async move { heard.follow(store, HEARTBEAT_READER, stop).await });
    }

    /// The progress of every model: its checkpoint against the last event of the log it
    /// reads (its filter), so a caught-up model shows no lag.
    pub async fn status(&self, store: &EventStore) -> Result<Vec<ProjectionStatus>, StatusError> {
        Ok(vec![
            one(&self.tasks, store).await?,
            one(&self.agents, store).await?,
            one(&self.runs, store).await?,
            one(&self.policies, store).await?,
            one(&self.repos, store).await?,
            one(&self.snapshots, store).await?,
            one(&self.notifications, store).await?,
        ])
    }

    /// Drops every model and replays the log from sequence 1 into them, all from one
    /// replay, in memory ([`rebuild_together`]).
    pub async fn rebuild(&mut self, store: &EventStore) -> Result<(), ProjectionError> {
        rebuild_together(
            &mut [
                &mut self.tasks.in_memory(),
                &mut self.agents.in_memory(),
                &mut self.runs.in_memory(),
                &mut self.policies.in_memory(),
                &mut self.repos.in_memory(),
                &mut self.snapshots.in_memory(),
                &mut self.notifications.in_memory(),
            ],
            store,
        )
        .await?;
        Ok(())
    }
}

/// Why a status could not be told.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error("cannot read the log: {0}")]
    Read(#[from] fleet_events::store::ReadError),
}

async fn one<P: Projection>(
    model: &Checkpointed<P>,
    store: &EventStore,
) -> Result<ProjectionStatus, StatusError> {
    let status: Status = model.status()?;
    let last_sequence = store.last_sequence(&model.projection().filter()).await?;
    Ok(ProjectionStatus {
        projection: P::NAME.to_owned(),
        checkpoint: status.checkpoint,
        last_sequence,
        lag: status.lag(last_sequence),
        rejected: status.rejected,
    })
}

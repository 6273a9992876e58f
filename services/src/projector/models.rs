//! The read models the projector keeps, in one sled database: opened together, each fed
//! from the log by its own loop.

use std::path::Path;
use std::sync::Arc;

use fleet_events::store::EventStore;
use fleet_projections::{Agents, Checkpointed, Projection, ProjectionError, Status, Tasks};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Every read model.
pub struct ReadModels {
    pub tasks: Checkpointed<Tasks>,
    pub agents: Checkpointed<Agents>,
}

/// One projection's progress, as `fleet projections status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectionStatus {
    pub projection: String,
    /// The last stream sequence applied.
    pub checkpoint: u64,
    /// The last sequence of the event log when asked.
    pub last_sequence: u64,
    /// Events behind the log (events the projection does not read count too).
    pub lag: u64,
    /// Events it refused (recorded, never dropped).
    pub rejected: u64,
}

impl ReadModels {
    /// Opens (or creates) the database in `dir`; a model stored with another format
    /// version is reset and rebuilt by its loop.
    pub fn open(dir: &Path) -> Result<Self, ProjectionError> {
        let db = fleet_projections::runtime::open_sled(dir)?;
        Ok(Self {
            tasks: Checkpointed::with_db(db.clone(), Tasks)?,
            agents: Checkpointed::with_db(db.clone(), Agents)?,
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
    }

    /// The progress of every model against a log ending at `last_sequence`.
    pub fn status(&self, last_sequence: u64) -> Result<Vec<ProjectionStatus>, ProjectionError> {
        Ok(vec![
            one(Tasks::NAME, self.tasks.status()?, last_sequence),
            one(Agents::NAME, self.agents.status()?, last_sequence),
        ])
    }

    /// Drops every model and replays the log from sequence 1 into it.
    pub async fn rebuild(&mut self, store: &EventStore) -> Result<(), ProjectionError> {
        self.tasks.rebuild(store).await?;
        self.agents.rebuild(store).await?;
        Ok(())
    }
}

fn one(name: &str, status: Status, last_sequence: u64) -> ProjectionStatus {
    ProjectionStatus {
        projection: name.to_owned(),
        checkpoint: status.checkpoint,
        last_sequence,
        lag: status.lag(last_sequence),
        rejected: status.rejected,
    }
}

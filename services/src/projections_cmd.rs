//! `fleet projections status|rebuild`.

use anyhow::Context;
use fleet_control::projector::query::request;
use fleet_control::projector::{ProjectionStatus, ReadModels};
use fleet_events::store::EventStore;
use fleet_events::subject;

use crate::cli::{OutputArg, ProjectionsCommand};

/// Runs one `fleet projections` command.
pub async fn run(command: ProjectionsCommand) -> anyhow::Result<()> {
    match command {
        ProjectionsCommand::Status(args) => {
            let client = args.nats.connect().await?;
            let value = request(&client, subject::projections_status(), b"{}".to_vec()).await?;
            if args.output == OutputArg::Json {
                println!("{}", serde_json::to_string_pretty(&value)?);
                return Ok(());
            }
            let rows: Vec<ProjectionStatus> =
                serde_json::from_value(value).context("the projector's answer")?;
            println!(
                "{:<12} {:>12} {:>12} {:>8} {:>9}",
                "PROJECTION", "CHECKPOINT", "LOG END", "LAG", "REJECTED"
            );
            for row in rows {
                println!(
                    "{:<12} {:>12} {:>12} {:>8} {:>9}",
                    row.projection, row.checkpoint, row.last_sequence, row.lag, row.rejected
                );
            }
            Ok(())
        }
        ProjectionsCommand::Rebuild(args) => {
            let dir = &args.projections_dir;
            let mut models = ReadModels::open(dir, args.history_days).with_context(|| {
                format!(
                    "opening the read models in {} (is the projector still running? stop it first)",
                    dir.display()
                )
            })?;
            let client = args.nats.connect().await?;
            let store = EventStore::new(client);
            models.rebuild(&store).await.context("rebuilding")?;
            for row in models.status(&store).await? {
                println!(
                    "{}: rebuilt up to sequence {} ({} rejected)",
                    row.projection, row.checkpoint, row.rejected
                );
            }
            Ok(())
        }
    }
}

//! The operators' side of `fleet`: the verbs that look at and change the fleet (agents,
//! policies, notifications, tasks, runs, daily history, snapshots, restores, the event log), each a client
//! of the HTTP API. Nothing here reaches NATS, a read model or a server's code: the API's
//! JSON is all it knows.

mod agent_cmd;
pub mod api_client;
mod args;
mod events_cmd;
mod history_cmd;
mod lookup;
mod notify_args;
mod notify_cmd;
mod output;
mod policy_cmd;
mod request_cmd;
mod snapshots_cmd;
mod table;
mod task_cmd;

pub use api_client::{exit, report};
pub use args::*;
pub use notify_args::*;

/// Runs one operator verb.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Agent(args) => agent_cmd::run(args).await,
        Command::Policy(args) => policy_cmd::run(args).await,
        Command::Notify(args) => notify_cmd::run(args).await,
        Command::Task(args) => task_cmd::run(args).await,
        Command::Runs(args) => task_cmd::runs(args).await,
        Command::Snapshots(args) => snapshots_cmd::run(args).await,
        Command::Restore(args) => request_cmd::restore(args).await,
        Command::Snapshot(args) => match args.command {
            SnapshotCommand::Ls(args) => request_cmd::ls(args).await,
        },
        Command::Repo(args) => match args.command {
            RepoCommand::Refresh(args) => request_cmd::refresh(args).await,
        },
        Command::Events(args) => events_cmd::run(args).await,
        Command::History(args) => history_cmd::run(args).await,
    }
}

/// `fleet` with only the operators' verbs, for this crate's tests of parsing.
#[cfg(test)]
pub(crate) mod testing {
    /// restic-fleet's operator verbs.
    #[derive(Debug, clap::Parser)]
    #[command(name = "fleet")]
    pub struct Cli {
        #[command(subcommand)]
        pub command: crate::Command,
    }
}

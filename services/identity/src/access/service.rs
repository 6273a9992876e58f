//! The access service's loop: follow the agents' events, write the rendered config when
//! it changes, reload the server, ensure every working agent's task consumer.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use fleet_events::access::{agent_consumer, agent_consumer_config};
use fleet_events::ids::AgentId;
use fleet_events::store::EventStore;
use fleet_events::store::connect::write_private;
use fleet_events::streams::DISPATCH;
use fleet_events::subject::{Aggregate, aggregate_events};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::book::AccessBook;
use super::render::{RenderConfig, render};
use fleet_runtime::follow::Follower;

/// How long to wait before trying again what failed (a consumer, a write).
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// How long changes gather before one render and reload: [`BATCH`], plus this much per
/// agent admitted (a reload costs nats-server time in proportion to its users: at 10,000
/// agents, one every 6 s).
pub const BATCH: Duration = Duration::from_secs(1);
pub const BATCH_PER_AGENT: Duration = Duration::from_micros(500);

/// How long the changes starting now gather, with `admitted` agents in the config.
pub fn batch_for(admitted: usize) -> Duration {
    BATCH + BATCH_PER_AGENT * u32::try_from(admitted).unwrap_or(u32::MAX)
}

/// How the server learns of a new config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// Nobody is told (an operator reloads; `fleet nats-config` says how).
    Never,
    /// SIGHUP to this process (`fleet up`'s own nats-server).
    Pid(u32),
    /// SIGHUP to the process whose id is in this file (nats-server's `pid_file`).
    PidFile(PathBuf),
}

/// What the access service writes and whom it tells.
#[derive(Debug, Clone)]
pub struct AccessConfig {
    /// Where the rendered authorization config goes (the server's configuration includes
    /// it); `None` only keeps the agents' consumers.
    pub out: Option<PathBuf>,
    pub render: RenderConfig,
    pub reload: Reload,
}

/// Runs until `shutdown`: catch up with the agents' events, then keep the config and the
/// consumers in step with them. Changes are batched: the config is rendered and the server
/// reloaded [`batch_for`] after the first change not yet rendered, with every change that
/// came meanwhile, so a thousand registrations in a minute are a few dozen reloads, not a
/// thousand (each reload makes nats-server read every agent's user again).
pub async fn run(
    store: EventStore,
    config: AccessConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let filter = aggregate_events(Aggregate::Agent);
    let mut follower = Follower::open(store.clone(), filter, "access")
        .await
        .context("following the agents' events")?;
    let mut book = AccessBook::default();
    let mut written = config
        .out
        .as_ref()
        .and_then(|out| std::fs::read_to_string(out).ok());
    let mut ensured = HashSet::new();
    // When to settle next: at once when caught up the first time.
    let mut due = Some(Instant::now());
    loop {
        if follower.caught_up()
            && let Some(at) = due
            && Instant::now() >= at
        {
            due = match settle(&store, &config, &book, &mut written, &mut ensured).await {
                true => None,
                false => Some(Instant::now() + RETRY_AFTER),
            };
        }
        let wake_at = due.filter(|_| follower.caught_up());
        let wake = async {
            match wake_at {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = wake => {}
            stored = follower.next(&shutdown) => match stored {
                Some(stored) => {
                    if book.apply(&stored.envelope) {
                        due.get_or_insert_with(|| {
                            Instant::now() + batch_for(book.admitted().count())
                        });
                    }
                }
                None => break,
            },
        }
    }
    Ok(())
}

/// Writes the config if it changed (then reloads) and ensures consumers; true when
/// everything is done.
async fn settle(
    store: &EventStore,
    config: &AccessConfig,
    book: &AccessBook,
    written: &mut Option<String>,
    ensured: &mut HashSet<AgentId>,
) -> bool {
    let mut done = true;
    let missing: Vec<AgentId> = book
        .working()
        .filter(|agent| !ensured.contains(agent))
        .collect();
    for agent in missing {
        match ensure_consumer(store, agent).await {
            Ok(()) => {
                ensured.insert(agent);
            }
            Err(error) => {
                tracing::warn!(agent_id = %agent, %error, "cannot create the agent's task consumer; retrying");
                done = false;
            }
        }
    }
    metrics::gauge!("fleet_access_admitted_agents").set(book.admitted().count() as f64);
    let Some(out) = &config.out else {
        return done;
    };
    let text = render(book, &config.render);
    if written.as_deref() == Some(text.as_str()) {
        return done;
    }
    if let Err(error) = write_private(out, &text) {
        tracing::error!(%error, "cannot write the NATS authorization config; retrying");
        return false;
    }
    *written = Some(text);
    metrics::counter!("fleet_access_renders_total").increment(1);
    tracing::info!(file = %out.display(), agents = book.admitted().count(), "NATS authorization config written");
    match reload(&config.reload) {
        Ok(true) => {
            metrics::counter!("fleet_access_reloads_total", "outcome" => "signalled").increment(1);
            tracing::info!("nats-server told to reload (SIGHUP)");
        }
        Ok(false) => {}
        Err(error) => {
            metrics::counter!("fleet_access_reloads_total", "outcome" => "failed").increment(1);
            tracing::error!(%error, "cannot tell nats-server to reload; reload it by hand");
        }
    }
    done
}

/// Creates the agent's task consumer, or finds it there.
pub(crate) async fn ensure_consumer(store: &EventStore, agent: AgentId) -> anyhow::Result<()> {
    let stream = store.jetstream().get_stream_no_info(DISPATCH).await?;
    stream
        .get_or_create_consumer(&agent_consumer(agent), agent_consumer_config(agent))
        .await?;
    Ok(())
}

/// Sends SIGHUP as `reload` says; false when nobody is to be told.
fn reload(reload: &Reload) -> anyhow::Result<bool> {
    let pid = match reload {
        Reload::Never => return Ok(false),
        Reload::Pid(pid) => *pid,
        Reload::PidFile(path) => read_pid(path)?,
    };
    let pid = libc::pid_t::try_from(pid).context("process id out of range")?;
    // SAFETY: kill(2) with a valid signal number only sends a signal.
    let sent = unsafe { libc::kill(pid, libc::SIGHUP) };
    if sent != 0 {
        anyhow::bail!("kill -HUP {pid}: {}", std::io::Error::last_os_error());
    }
    Ok(true)
}

fn read_pid(path: &Path) -> anyhow::Result<u32> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the pid file {}", path.display()))?;
    text.trim()
        .parse()
        .with_context(|| format!("{} does not hold a process id", path.display()))
}

/// `fleet nats-config`: reads every agent event once, writes the config to `out` and
/// returns how many agents it admits.
/// Writes the config before any agent is known (no log read): the control plane and, if
/// so configured, anonymous registration; the access service adds agents later.
pub fn render_bootstrap(render_config: &RenderConfig, out: &Path) -> anyhow::Result<()> {
    write_private(out, &render(&AccessBook::default(), render_config))
        .with_context(|| format!("writing {}", out.display()))
}

pub async fn render_once(
    store: &EventStore,
    render_config: &RenderConfig,
    out: &Path,
) -> anyhow::Result<usize> {
    let filter = aggregate_events(Aggregate::Agent);
    let mut events = store.replay(&filter, 1).await.context("reading the log")?;
    let mut book = AccessBook::default();
    while let Some(stored) = events.next().await {
        book.apply(&stored.context("reading the log")?.envelope);
    }
    write_private(out, &render(&book, render_config))
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(book.admitted().count())
}

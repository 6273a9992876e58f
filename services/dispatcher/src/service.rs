//! The dispatcher service: follows the log into [`Fleet`], hears heartbeats, hands work to
//! agents with room, and applies the lease.
//!
//! A dispatch is two writes: `TaskDispatched` appended with the task's expected sequence
//! (so two dispatchers never dispatch one attempt twice: the loser gets a conflict and
//! abandons it), then the command published on `fleet.agent.<agent>.tasks` with msg id
//! `run:<task>:<attempt>`, retried until stored. When the log cancels a task an agent
//! holds (an operator, or a replacing run), the agent is sent `Command::Cancel`.
//!
//! Run timeouts are a backstop for agents that hang while still heartbeating: an attempt
//! past its policy's run timeout plus [`DispatcherConfig::timeout_margin`] is recorded as
//! failed with class `Timeout`, and its agent is sent `Command::Cancel` to stop restic.

use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use chrono::{DateTime, TimeDelta, Utc};
use fleet_events::envelope::Envelope;
use fleet_events::event::{AgentEvent, Event};
use fleet_events::ids::TaskId;
use fleet_events::protocol::{AgentCommand, Heartbeat};
use fleet_events::store::{Append, AppendError, EventStore, Expect, ReadError};
use fleet_events::subject::{self};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::snapshot::{self, Folded};
use super::{Circuits, Dispatch, DispatchConfig, Fleet, TimedOut, ToAgent};
use fleet_runtime::clock::Clock;
use fleet_runtime::follow::{Follower, append_retrying};
use fleet_runtime::heard;
use fleet_runtime::lease::{self, Held};
use fleet_runtime::pace::Pace;
use fleet_runtime::snapshot::Snapshots;

/// The name the dispatcher reads heartbeats under; bad ones are parked on
/// `fleet.parked.dispatcher-heartbeats`.
pub const HEARTBEAT_READER: &str = "dispatcher-heartbeats";

/// The dispatcher's settings.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    pub dispatch: DispatchConfig,
    /// An agent not heard from for this long goes offline (or for [`crate::MISSED_BEATS`]
    /// of its own heartbeat interval, if that is longer: [`crate::agent_lease`]).
    pub lease: Duration,
    /// An agent offline for this long after its lease loses the attempts it holds.
    pub grace: Duration,
    /// How long past its policy's run timeout an attempt may go before the control plane
    /// fails it as timed out (default 30 s, the default lease). The agent enforces the
    /// timeout itself: the margin gives its own `Timeout` failure time to arrive first.
    pub timeout_margin: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            dispatch: DispatchConfig::default(),
            lease: Duration::from_secs(30),
            grace: Duration::from_secs(60),
            timeout_margin: Duration::from_secs(30),
        }
    }
}

/// Runs the dispatcher until `shutdown` is cancelled. Every instance follows the log and
/// the heartbeats (a warm standby); only while `held` reads true does it act: liveness,
/// run timeouts, dispatches and cancels. Taking over costs no replay. Starts from its
/// snapshot when `snapshots` has a usable one, writes one when due and at a clean stop.
pub async fn run(
    store: EventStore,
    clock: Clock,
    config: DispatcherConfig,
    mut held: Held,
    snapshots: Snapshots,
    shutdown: CancellationToken,
) -> Result<(), ReadError> {
    let empty = || Folded {
        fleet: Fleet::new(config.dispatch),
        circuits: Circuits::new(),
    };
    let start = snapshots.start(&store, empty).await;
    let (mut last_seq, mut writer) = (start.covers, start.writer);
    let Folded {
        mut fleet,
        mut circuits,
    } = start.state;
    let mut log = Follower::open_from(
        store.clone(),
        subject::all_events(),
        "dispatcher",
        last_seq + 1,
    )
    .await?;
    while !log.caught_up() {
        let Some(stored) = log.next(&shutdown).await else {
            return Ok(());
        };
        fleet.apply_stored(&stored);
        circuits.apply(&stored.envelope);
        last_seq = stored.seq;
    }
    tracing::info!(seq = last_seq, "dispatcher caught up with the log");
    writer
        .maybe_write_image::<Folded>(last_seq, || snapshot::image(&fleet, &circuits))
        .await;
    let (beats_tx, mut beats) = mpsc::channel(1024);
    let started_at = chrono::Utc::now();
    // The listener stops with this function, even when its future is dropped unfinished.
    let listening = shutdown.child_token();
    let _stop_listening = listening.clone().drop_guard();
    let listener = tokio::spawn(heard::follow(
        store.clone(),
        HEARTBEAT_READER,
        beats_tx,
        listening,
    ));
    let check_every = (config.lease / 4).max(Duration::from_secs(1));
    let mut active = false;
    let mut next_check = clock.now();
    // The gauges pass over every agent: once a second, not after every event.
    let mut gauges = Pace::second();
    loop {
        let now = clock.now();
        let holds = *held.borrow_and_update();
        match (active, holds) {
            (false, true) => {
                tracing::info!("dispatcher active");
                active = true;
                next_check = now;
                resend_orders(&store, &fleet, &shutdown).await;
                // Agents heard while standing by whose return the log does not know yet:
                // an agent that dies before its next heartbeat is still recorded as back.
                for (heartbeat, heard_at) in fleet.take_owed_online() {
                    let lease = crate::agent_lease(config.lease, heartbeat.every_secs);
                    came_online(&store, &fleet, &heartbeat, heard_at, now, lease, &shutdown).await;
                }
            }
            (true, false) => {
                tracing::info!("dispatcher standing by");
                active = false;
            }
            _ => {}
        }
        let mut wake = None;
        if active {
            if now >= next_check {
                for event in fleet.liveness(now, config.lease, config.grace) {
                    let append = event.as_append();
                    record(&store, append, &shutdown).await;
                }
                next_check = now + TimeDelta::from_std(check_every).unwrap_or(TimeDelta::MAX);
            }
            for timed_out in fleet.take_timeouts(now, config.timeout_margin) {
                time_out(&store, timed_out, &shutdown).await;
            }
            if fleet.needs_plan(now) {
                let plan = fleet.plan(now, &mut circuits);
                dispatch(&store, &mut fleet, plan, now, &shutdown).await;
            }
            let timers = [
                fleet.next_wakeup(),
                fleet.next_timeout(now, config.timeout_margin),
            ];
            wake = Some(timers.into_iter().flatten().fold(next_check, DateTime::min));
        }
        tokio::select! {
            item = log.next(&shutdown) => match item {
                Some(stored) => {
                    let cancel = if active { fleet.cancel_owed(&stored) } else { None };
                    fleet.apply_stored(&stored);
                    circuits.apply(&stored.envelope);
                    last_seq = stored.seq;
                    if let Some(ToAgent { subject, command }) = cancel {
                        tell_agent(&store, &subject, &command, &shutdown).await;
                    }
                    writer
                        .maybe_write_image::<Folded>(last_seq, || snapshot::image(&fleet, &circuits))
                        .await;
                }
                None => break,
            },
            Some(beat) = beats.recv() => {
                let now = clock.now();
                let heard_at = beat.stored_at.min(now);
                // Heartbeats stored before this instance started are read back at start,
                // not late: only live ones tell how far behind the reading is. Measured
                // by the wall clock, as the server's storing time is.
                let wall = chrono::Utc::now();
                if beat.stored_at >= started_at {
                    let lag = (wall - beat.stored_at).to_std().unwrap_or_default();
                    metrics::histogram!("fleet_heartbeat_lag_seconds").record(lag.as_secs_f64());
                }
                let lease = crate::agent_lease(config.lease, beat.heartbeat.every_secs);
                if active {
                    came_online(&store, &fleet, &beat.heartbeat, heard_at, now, lease, &shutdown).await;
                } else {
                    fleet.heard_standing_by(&beat.heartbeat, heard_at, now, lease);
                }
                fleet.observe_heartbeat(&beat.heartbeat, heard_at);
            }
            () = lease::changed(&mut held) => {}
            () = clock.sleep_until_some(wake) => {}
        }
        if gauges.due() {
            let stats = fleet.stats(clock.now());
            metrics::gauge!("fleet_saturated_agents").set(stats.saturated as f64);
            metrics::gauge!("fleet_waiting_tasks").set(stats.waiting as f64);
        }
    }
    let _ = listener.await;
    writer
        .write_image::<Folded>(last_seq, || snapshot::image(&fleet, &circuits))
        .await;
    Ok(())
}

/// Fails an attempt past its run timeout and tells its agent to cancel it.
async fn time_out(store: &EventStore, timed_out: TimedOut, shutdown: &CancellationToken) {
    let TimedOut {
        task,
        attempt,
        agent,
        failure,
        cancel,
    } = timed_out;
    tracing::warn!(task_id = %task, agent_id = %agent, attempt, "attempt past its run timeout");
    metrics::counter!("fleet_tasks_timed_out_total").increment(1);
    let append = failure.as_append();
    record(store, append, shutdown).await;
    tell_agent(store, &cancel.subject, &cancel.command, shutdown).await;
}

/// Records that a registered agent is back (offline until now), or heard from for the
/// first time since its registration.
async fn came_online(
    store: &EventStore,
    fleet: &Fleet,
    beat: &Heartbeat,
    heard_at: DateTime<Utc>,
    now: DateTime<Utc>,
    lease: Duration,
    shutdown: &CancellationToken,
) {
    let Some(view) = fleet.agent(beat.agent, now) else {
        return;
    };
    if view.tenant.as_ref() != Some(&beat.tenant) {
        return;
    }
    let Some(msg_id) = fleet.came_online_key(beat.agent, heard_at, now, lease) else {
        return;
    };
    let event = Event::Agent {
        agent: beat.agent,
        event: AgentEvent::CameOnline {
            agent_version: beat.agent_version.clone(),
            restic_version: beat.restic_version.clone(),
        },
    };
    let envelope = Envelope::new(beat.tenant.clone(), now, event);
    record(
        store,
        Append {
            envelope: &envelope,
            msg_id: &msg_id,
            expect: Expect::Any,
        },
        shutdown,
    )
    .await;
}

async fn record(store: &EventStore, append: Append<'_>, shutdown: &CancellationToken) {
    let kind = append.envelope.event.event_type().name();
    match append_retrying(store, append, shutdown).await {
        Ok(appended) if !appended.duplicate => {
            // went_offline, came_online, task.lost, task.failed (run timeout).
            metrics::counter!("fleet_liveness_events_total", "event" => kind).increment(1);
            tracing::info!(event = kind, subject = %append.envelope.subject(), "liveness recorded")
        }
        Ok(_) | Err(AppendError::Conflict { .. }) => {
            tracing::debug!(event = kind, "liveness event already recorded")
        }
        Err(e) => tracing::error!(event = kind, error = %e, "liveness event could not be recorded"),
    }
}

/// Dispatches in flight at once: each is its own task's append and its own agent's
/// order, so a plan of thousands (a top-of-hour burst without jitter) is not sent one
/// round trip after another.
const IN_FLIGHT: usize = 64;

/// Records and sends a plan's dispatches, up to [`IN_FLIGHT`] at once; a dispatch whose
/// event could not be recorded is abandoned (the task waits, or another dispatcher moved
/// it first). An order is sent only once its event is stored.
async fn dispatch(
    store: &EventStore,
    fleet: &mut Fleet,
    plan: Vec<Dispatch>,
    now: DateTime<Utc>,
    shutdown: &CancellationToken,
) {
    let plan: Vec<(Dispatch, Option<DateTime<Utc>>)> = plan
        .into_iter()
        .map(|d| {
            let run_at = fleet.task(d.task).and_then(|t| t.run_at);
            (d, run_at)
        })
        .collect();
    let unrecorded: Vec<TaskId> = futures::stream::iter(plan)
        .map(|(d, run_at)| async move {
            let recorded = dispatch_one(store, &d, run_at, now, shutdown).await;
            (!recorded).then_some(d.task)
        })
        .buffer_unordered(IN_FLIGHT)
        .filter_map(std::future::ready)
        .collect()
        .await;
    for task in unrecorded {
        fleet.abandon(task);
    }
}

/// Records one dispatch and sends its order; false when the event was not recorded.
async fn dispatch_one(
    store: &EventStore,
    d: &Dispatch,
    run_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    shutdown: &CancellationToken,
) -> bool {
    let msg_id = d.event_msg_id();
    let append = Append {
        envelope: &d.envelope,
        msg_id: &msg_id,
        expect: d.expect,
    };
    match append_retrying(store, append, shutdown).await {
        Ok(_) => {}
        Err(AppendError::Conflict { .. }) => {
            tracing::debug!(task = %d.task, "another dispatcher moved this task first");
            return false;
        }
        Err(e) => {
            tracing::warn!(task = %d.task, error = %e, "dispatch not recorded; the task waits");
            return false;
        }
    }
    if let Err(e) = publish_command(store, d, shutdown).await {
        tracing::error!(task = %d.task, agent = %d.agent, error = %e, "task dispatched but not delivered");
        return true;
    }
    metrics::counter!("fleet_tasks_dispatched_total").increment(1);
    if let Some(run_at) = run_at {
        let late = (now - run_at).to_std().unwrap_or(Duration::ZERO);
        metrics::histogram!("fleet_dispatch_delay_seconds").record(late.as_secs_f64());
    }
    tracing::info!(task = %d.task, agent = %d.agent, attempt = d.attempt, "task dispatched");
    true
}

/// Sends again the orders of attempts dispatched but not acknowledged, which an instance
/// that died between its two writes may never have sent.
async fn resend_orders(store: &EventStore, fleet: &Fleet, shutdown: &CancellationToken) {
    let owed = fleet.unacknowledged_orders();
    if owed.is_empty() {
        return;
    }
    tracing::info!(orders = owed.len(), "sending unacknowledged orders again");
    for ToAgent { subject, command } in owed {
        match publish(store, &subject, &command, shutdown).await {
            Ok(()) => metrics::counter!("fleet_orders_resent_total").increment(1),
            Err(e) => tracing::error!(%subject, error = %e, "an order could not be sent again"),
        }
    }
}

/// Publishes a cancel command; logs when it cannot.
async fn tell_agent(
    store: &EventStore,
    subject: &str,
    command: &AgentCommand,
    shutdown: &CancellationToken,
) {
    match publish(store, subject, command, shutdown).await {
        Ok(()) => tracing::info!(%subject, "cancel sent to the agent"),
        Err(e) => tracing::error!(%subject, error = %e, "cancel could not be sent"),
    }
}

/// Publishes the dispatch's command, retrying with its msg id while NATS is unavailable.
async fn publish_command(
    store: &EventStore,
    d: &Dispatch,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    publish(store, &d.subject(), &d.command, shutdown).await
}

/// Publishes `command` on `subject` with its msg id, retrying while NATS is unavailable.
async fn publish(
    store: &EventStore,
    subject: &str,
    command: &AgentCommand,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let payload = command.to_wire().map_err(|e| e.to_string())?;
    let mut backoff = fleet_runtime::follow::Backoff::nats();
    loop {
        let message = PublishMessage::build()
            .payload(payload.clone().into())
            .message_id(command.msg_id());
        let result = match store
            .jetstream()
            .send_publish(subject.to_owned(), message)
            .await
        {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(()) => return Ok(()),
            Err(e) if shutdown.is_cancelled() => return Err(e),
            Err(e) => {
                tracing::warn!(%subject, error = %e, "publishing to the agent failed; retrying");
                backoff.pause(shutdown).await;
            }
        }
    }
}

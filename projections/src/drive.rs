//! Feeding a projection from the event store: catch up to the end of the log, follow it
//! live until shutdown, rebuild from sequence 1 (several models from one replay, in
//! memory: [`rebuild_together`]). Whatever messages are already waiting
//! (up to [`MAX_BATCH`]) are applied together in one transaction: a catch-up or rebuild
//! gets large batches, while a lone live event is applied at once.

use std::path::Path;
use std::time::Duration;

use fleet_events::store::{EventStore, ReadError, Stored};
use fleet_events::subject;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::error::ProjectionError;
use crate::projection::Projection;
use crate::runtime::{Checkpointed, Outcome, Rebuild};

/// How often applied events are flushed while events keep coming.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How long to wait before reading the log again after a transport error.
pub const RETRY_DELAY: Duration = Duration::from_secs(1);
/// The most messages applied in one transaction ([`Checkpointed::apply_batch`]).
pub const MAX_BATCH: usize = 512;

/// What one catch-up did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Events applied.
    pub applied: u64,
    /// Events at or below the checkpoint, applied before.
    pub skipped: u64,
    /// Events recorded as rejected.
    pub rejected: u64,
    /// The checkpoint afterwards.
    pub checkpoint: u64,
}

impl Progress {
    fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Applied => self.applied += 1,
            Outcome::Skipped => self.skipped += 1,
            Outcome::Rejected(_) => self.rejected += 1,
        }
    }
}

/// Why [`Checkpointed::pump`] returned.
enum End {
    Cancelled,
    /// The events ended, or the bound was reached.
    Exhausted,
}

type Events = BoxStream<'static, Result<Stored, ReadError>>;

impl<P: Projection> Checkpointed<P> {
    /// Applies every event from the checkpoint to the last one matching the filter when
    /// called, then flushes. Returns [`ProjectionError::Read`] if the log cannot be read:
    /// call again.
    pub async fn catch_up(&self, store: &EventStore) -> Result<Progress, ProjectionError> {
        self.catch_up_until(store, &CancellationToken::new()).await
    }

    /// Drops the model's state and replays from sequence 1 in memory
    /// ([`rebuild_together`] of this model alone).
    pub async fn rebuild(&mut self, store: &EventStore) -> Result<Progress, ProjectionError> {
        let progress = rebuild_together(&mut [&mut self.in_memory()], store).await?;
        Ok(progress[0])
    }

    /// Catches up, then follows the log, applying each new event, until `shutdown` is
    /// cancelled; flushes every [`FLUSH_INTERVAL`] and before returning. Stops only
    /// between batches. A transport error is logged and the log read again from the
    /// checkpoint after [`RETRY_DELAY`]; storage trouble or corrupt state is returned.
    pub async fn run(
        &self,
        store: &EventStore,
        shutdown: CancellationToken,
    ) -> Result<(), ProjectionError> {
        crate::metrics_catalog::register(P::NAME);
        metrics::gauge!("fleet_projection_checkpoint_sequence", "projection" => P::NAME)
            .set(self.checkpoint()? as f64);
        let mut caught_up = false;
        while !shutdown.is_cancelled() {
            let result = if caught_up {
                self.follow_until(store, &shutdown).await
            } else {
                self.catch_up_until(store, &shutdown).await.map(|progress| {
                    tracing::info!(
                        projection = P::NAME,
                        checkpoint = progress.checkpoint,
                        applied = progress.applied,
                        rejected = progress.rejected,
                        "caught up; following the log"
                    );
                    caught_up = true;
                })
            };
            match result {
                Ok(()) => {}
                Err(ProjectionError::Read(e)) => {
                    tracing::warn!(projection = P::NAME, error = %e, "cannot read the log; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(RETRY_DELAY) => {}
                    }
                }
                Err(e) => return Err(e),
            }
        }
        self.flush().await
    }

    /// Catches up to the last event matching the filter when called. That bound is read
    /// first because the end of a replay alone cannot be trusted: nats-server 2.9.10
    /// sometimes over-counts a new filtered consumer's pending messages, and the replay
    /// then waits for a message that never comes.
    async fn catch_up_until(
        &self,
        store: &EventStore,
        shutdown: &CancellationToken,
    ) -> Result<Progress, ProjectionError> {
        let filter = self.projection().filter();
        let mut progress = Progress {
            checkpoint: self.checkpoint()?,
            ..Progress::default()
        };
        let last = store
            .last_sequence(&filter)
            .await
            .map_err(ProjectionError::Read)?;
        if last <= progress.checkpoint {
            return Ok(progress);
        }
        let events = store
            .replay(&filter, progress.checkpoint + 1)
            .await
            .map_err(ProjectionError::Read)?;
        let result = self.pump(events, shutdown, Some(last), &mut progress).await;
        self.flush().await?;
        result?;
        progress.checkpoint = self.checkpoint()?;
        Ok(progress)
    }

    async fn follow_until(
        &self,
        store: &EventStore,
        shutdown: &CancellationToken,
    ) -> Result<(), ProjectionError> {
        let from = self.checkpoint()? + 1;
        let events = store
            .follow(&self.projection().filter(), from)
            .await
            .map_err(ProjectionError::Read)?;
        let result = self
            .pump(events, shutdown, None, &mut Progress::default())
            .await;
        self.flush().await?;
        match result? {
            End::Cancelled => Ok(()),
            End::Exhausted => Err(ProjectionError::Read(ReadError::Nats {
                what: format!("following {}", self.projection().filter()),
                message: "the subscription ended".into(),
            })),
        }
    }

    /// Applies `events` until they end, one at or past `until` is applied, or `shutdown`
    /// is cancelled; flushes every [`FLUSH_INTERVAL`] while there is something to flush.
    /// The messages ready at once, up to [`MAX_BATCH`], are applied as one batch; a batch
    /// is cut after the message at or past `until`, so nothing beyond it is applied.
    async fn pump(
        &self,
        events: Events,
        shutdown: &CancellationToken,
        until: Option<u64>,
        progress: &mut Progress,
    ) -> Result<End, ProjectionError> {
        let mut batches = events.ready_chunks(MAX_BATCH);
        let mut tick = tokio::time::interval(FLUSH_INTERVAL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut dirty = false;
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(End::Cancelled),
                _ = tick.tick(), if dirty => {
                    self.flush().await?;
                    dirty = false;
                }
                next = batches.next() => {
                    let Some(mut batch) = next else { return Ok(End::Exhausted) };
                    let end = until.and_then(|until| {
                        batch.iter().position(|item| seq_of(item).is_some_and(|seq| seq >= until))
                    });
                    if let Some(at) = end {
                        batch.truncate(at + 1);
                    }
                    for outcome in self.apply_batch(batch)? {
                        dirty |= outcome != Outcome::Skipped;
                        progress.count(outcome);
                    }
                    if end.is_some() {
                        return Ok(End::Exhausted);
                    }
                }
            }
        }
    }
}

/// The stream sequence of a message; `None` for a transport error.
fn seq_of(item: &Result<Stored, ReadError>) -> Option<u64> {
    match item {
        Ok(stored) => Some(stored.seq),
        Err(ReadError::Undecodable { seq, .. }) => Some(*seq),
        Err(ReadError::Nats { .. }) => None,
    }
}

/// Rebuilds `models` from sequence 1 with one replay of the log, each in memory
/// ([`Rebuild`]): each model gets the events its filter matches, up to the last event
/// when called, and stores the same bytes as its incremental run over them. Returns each
/// model's progress, in order. On an error the models stay marked as being rebuilt (and
/// are reset when next opened): call again.
pub async fn rebuild_together(
    models: &mut [&mut dyn Rebuild],
    store: &EventStore,
) -> Result<Vec<Progress>, ProjectionError> {
    let filters: Vec<String> = models.iter().map(|model| model.filter()).collect();
    let filter = match filters.split_first() {
        Some((first, rest)) if rest.iter().all(|f| f == first) => first.clone(),
        _ => subject::all_events(),
    };
    for model in models.iter_mut() {
        model.begin()?;
    }
    let last = store
        .last_sequence(&filter)
        .await
        .map_err(ProjectionError::Read)?;
    if last > 0 {
        let events = store
            .replay(&filter, 1)
            .await
            .map_err(ProjectionError::Read)?;
        // The replay (receiving, decoding) runs on its own task, a few batches ahead of
        // the models applying them here: on two cores they overlap.
        let (sender, mut batches) = tokio::sync::mpsc::channel(READ_AHEAD);
        let reader = tokio::spawn(async move {
            let mut events = events.ready_chunks(MAX_BATCH);
            while let Some(batch) = events.next().await {
                if sender.send(batch).await.is_err() {
                    break;
                }
            }
        });
        let _reader = AbortOnDrop(reader);
        'replay: while let Some(batch) = batches.recv().await {
            for item in batch {
                let (seq, subject) = match &item {
                    Ok(stored) => (stored.seq, stored.subject.as_str()),
                    Err(ReadError::Undecodable { seq, subject, .. }) => (*seq, subject.as_str()),
                    Err(ReadError::Nats { what, message }) => {
                        return Err(ProjectionError::Read(ReadError::Nats {
                            what: what.clone(),
                            message: message.clone(),
                        }));
                    }
                };
                for (model, filter) in models.iter_mut().zip(&filters) {
                    if subject::matches(filter, subject) {
                        model.feed(&item)?;
                    }
                }
                if seq >= last {
                    break 'replay;
                }
            }
            for model in models.iter_mut() {
                model.write_out_if_large()?;
            }
        }
    }
    let mut progress = Vec::with_capacity(models.len());
    for model in models.iter_mut() {
        let done = model.finish()?;
        tracing::info!(
            projection = model.name(),
            checkpoint = done.checkpoint,
            applied = done.applied,
            rejected = done.rejected,
            "rebuilt"
        );
        progress.push(done);
    }
    Ok(progress)
}

/// Batches a rebuild's replay reads ahead of the models.
const READ_AHEAD: usize = 8;

/// Stops a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Opens the database at `path`, drops what `projection` stored there and replays the log
/// from sequence 1 into it.
pub async fn rebuild<P: Projection>(
    path: impl AsRef<Path>,
    projection: P,
    store: &EventStore,
) -> Result<Checkpointed<P>, ProjectionError> {
    let mut model = Checkpointed::open(path, projection)?;
    model.rebuild(store).await?;
    Ok(model)
}

#[cfg(test)]
mod tests;

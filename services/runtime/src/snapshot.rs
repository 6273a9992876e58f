//! Snapshots of a service's folded state: written to a local file with the stream sequence
//! they cover, read at start so that the service follows the log from the next sequence
//! instead of from 1. Start time is then bounded by the live state and the log written
//! since the snapshot, not by the whole history.
//!
//! A snapshot is used only when everything about it checks out: the file's magic and
//! SHA-256, the service, the fold version (bumped whenever a fold changes meaning), the
//! release that wrote it, the event stream it covers (its creation time, so a stream made
//! anew is never mistaken for the old one) and a covered sequence the stream has reached.
//! Anything else is logged and counted, and the service replays the log from sequence 1:
//! a snapshot can make a start slow, never wrong.
//!
//! The file: `FLTSNAP1`, the SHA-256 of the rest, then postcard of ([`Header`], image).
//! It is written to a temporary file, synced and renamed, so a crash leaves the old one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use fleet_events::store::EventStore;
use fleet_events::streams;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A service state that can be written down and read back.
///
/// `image` must be canonical: two states folded from the same events give the same
/// bytes (sorted maps and sets, nothing process-local such as queue generations), and
/// `restore(empty, image())` followed by more events must fold to what a full replay folds.
pub trait Snapshot: Sized + Send + 'static {
    /// The service's name: the file's name and the header's.
    const SERVICE: &'static str;
    /// Bumped whenever the fold or the image changes meaning: older snapshots are ignored.
    const FOLD_VERSION: u32;
    type Image: Serialize + DeserializeOwned;
    /// The folded state as written.
    fn image(&self) -> Self::Image;
    /// `empty` (a state before any event, with this process's configuration) brought to
    /// what `image` describes; an error when the image cannot be used.
    fn restore(empty: Self, image: Self::Image) -> Result<Self, String>;
}

/// A map's entries as an image keeps them: sorted by key, each value made by `f`, so two
/// instances holding the same map write the same bytes (a map's own order is per process).
pub fn sorted<K: Ord + Clone, V, W>(
    map: &std::collections::HashMap<K, V>,
    f: impl Fn(&V) -> W,
) -> Vec<(K, W)> {
    let mut items: Vec<(K, W)> = map.iter().map(|(k, v)| (k.clone(), f(v))).collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    items
}

/// What a snapshot says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub service: String,
    pub fold_version: u32,
    /// The release that wrote it (the crate version): any upgrade replays once.
    pub release: String,
    /// The event stream's creation time, nanoseconds since the Unix epoch.
    pub stream_created: i128,
    /// The last stream sequence folded into the state.
    pub covers: u64,
    pub written_at: DateTime<Utc>,
}

const MAGIC: &[u8; 8] = b"FLTSNAP1";
const DIGEST_LEN: usize = 32;
/// The release written into headers.
const RELEASE: &str = env!("CARGO_PKG_VERSION");

/// Why a snapshot was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    #[error("no snapshot")]
    Missing,
    #[error("unreadable: {0}")]
    Unreadable(String),
    #[error("damaged: {0}")]
    Damaged(String),
    #[error("written for {0}")]
    Other(String),
    #[error("the event stream is not the one it covers: {0}")]
    OtherStream(String),
}

impl Unusable {
    /// The metric label.
    pub fn outcome(&self) -> &'static str {
        match self {
            Unusable::Missing => "missing",
            Unusable::Unreadable(_) | Unusable::Damaged(_) => "damaged",
            Unusable::Other(_) | Unusable::OtherStream(_) => "stale",
        }
    }
}

/// Encodes `state` under `header`.
pub fn encode<S: Snapshot>(state: &S, header: &Header) -> Result<Vec<u8>, String> {
    encode_image::<S>(&state.image(), header)
}

/// Encodes an image of `S` under `header`.
pub fn encode_image<S: Snapshot>(image: &S::Image, header: &Header) -> Result<Vec<u8>, String> {
    let body = postcard::to_allocvec(&(header, image)).map_err(|e| e.to_string())?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &body);
    let mut bytes = Vec::with_capacity(MAGIC.len() + DIGEST_LEN + body.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(digest.as_ref());
    bytes.extend_from_slice(&body);
    Ok(bytes)
}

/// Decodes a snapshot of `S` onto `empty` and checks what it says about itself (not yet
/// the stream).
pub fn decode<S: Snapshot>(bytes: &[u8], empty: S) -> Result<(Header, S), Unusable> {
    let rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| Unusable::Damaged("not a snapshot file".into()))?;
    if rest.len() < DIGEST_LEN {
        return Err(Unusable::Damaged("truncated".into()));
    }
    let (digest, body) = rest.split_at(DIGEST_LEN);
    if ring::digest::digest(&ring::digest::SHA256, body).as_ref() != digest {
        return Err(Unusable::Damaged("its checksum does not match".into()));
    }
    // The header first: an image of another version may not decode as this one.
    let (header, image): (Header, &[u8]) =
        postcard::take_from_bytes(body).map_err(|e| Unusable::Damaged(e.to_string()))?;
    let expected = (S::SERVICE, S::FOLD_VERSION, RELEASE);
    let found = (
        header.service.as_str(),
        header.fold_version,
        header.release.as_str(),
    );
    if found != expected {
        return Err(Unusable::Other(format!(
            "service {}, fold version {}, release {} (this is {}, {}, {})",
            found.0, found.1, found.2, expected.0, expected.1, expected.2
        )));
    }
    let image: S::Image =
        postcard::from_bytes(image).map_err(|e| Unusable::Damaged(e.to_string()))?;
    let state = S::restore(empty, image).map_err(Unusable::Damaged)?;
    Ok((header, state))
}

/// Where a service keeps its snapshot and how often it writes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshots {
    /// `None`: no snapshots, every start replays the log.
    pub dir: Option<PathBuf>,
    /// A snapshot is written once this many events were folded since the last one...
    pub every_events: u64,
    /// ...or this long passed with at least one event folded.
    pub every: Duration,
}

impl Default for Snapshots {
    fn default() -> Self {
        Self::off()
    }
}

/// The event stream the sequences belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamMark {
    created: i128,
    last_seq: u64,
}

impl StreamMark {
    /// The event stream as it is now.
    pub async fn read(store: &EventStore) -> Result<Self, String> {
        let mut stream = store
            .jetstream()
            .get_stream(streams::EVENTS)
            .await
            .map_err(|e| e.to_string())?;
        let info = stream.info().await.map_err(|e| e.to_string())?;
        Ok(Self {
            created: info.created.unix_timestamp_nanos(),
            last_seq: info.state.last_sequence,
        })
    }

    /// Whether a snapshot under `header` belongs to this stream.
    pub fn check(&self, header: &Header) -> Result<(), Unusable> {
        if header.stream_created != self.created {
            return Err(Unusable::OtherStream("it was created anew".into()));
        }
        if header.covers > self.last_seq {
            return Err(Unusable::OtherStream(format!(
                "the snapshot covers sequence {} but the stream ends at {}",
                header.covers, self.last_seq
            )));
        }
        Ok(())
    }
}

/// What a service starts from.
pub struct Start<S> {
    /// The state read from the snapshot, or an empty one.
    pub state: S,
    /// The last sequence `state` covers: the log is read from the next (0: from the start).
    pub covers: u64,
    /// Writes the service's next snapshots.
    pub writer: Writer,
}

impl Snapshots {
    /// No snapshots.
    pub fn off() -> Self {
        Self {
            dir: None,
            every_events: 100_000,
            every: Duration::from_secs(600),
        }
    }

    /// Snapshots in `dir`, every 100,000 events or 10 minutes.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: Some(dir.into()),
            ..Self::off()
        }
    }

    /// The snapshot file of `service`.
    pub fn path(&self, service: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|dir| dir.join(format!("{service}.snapshot")))
    }

    /// Reads `S`'s snapshot onto `empty()` if there is a usable one, else starts from
    /// `empty()`; logs and counts the outcome.
    pub async fn start<S: Snapshot>(&self, store: &EventStore, empty: impl Fn() -> S) -> Start<S> {
        let mut writer = Writer {
            path: self.path(S::SERVICE),
            mark: None,
            every_events: self.every_events.max(1),
            every: self.every,
            written_covers: 0,
            written_at: Instant::now(),
        };
        let from_scratch = |writer| Start {
            state: empty(),
            covers: 0,
            writer,
        };
        let Some(path) = writer.path.clone() else {
            return from_scratch(writer);
        };
        let mark = match StreamMark::read(store).await {
            Ok(mark) => mark,
            Err(error) => {
                tracing::warn!(service = S::SERVICE, %error, "cannot read the event stream's identity: no snapshot read or written this run");
                return from_scratch(writer);
            }
        };
        writer.mark = Some(mark);
        let started = Instant::now();
        let base = empty();
        let read = tokio::task::spawn_blocking(move || read_file::<S>(&path, &mark, base))
            .await
            .unwrap_or_else(|e| Err(Unusable::Unreadable(e.to_string())));
        match read {
            Ok((header, state)) => {
                tracing::info!(service = S::SERVICE, covers = header.covers, written_at = %header.written_at,
                    took_ms = started.elapsed().as_millis() as u64, "started from a snapshot");
                metrics::counter!("fleet_snapshot_loads_total", "service" => S::SERVICE, "outcome" => "loaded")
                    .increment(1);
                writer.written_covers = header.covers;
                Start {
                    state,
                    covers: header.covers,
                    writer,
                }
            }
            Err(unusable) => {
                match &unusable {
                    Unusable::Missing => {
                        tracing::info!(service = S::SERVICE, "no snapshot yet: replaying the log")
                    }
                    other => {
                        tracing::warn!(service = S::SERVICE, reason = %other, "snapshot not used: replaying the log")
                    }
                }
                metrics::counter!("fleet_snapshot_loads_total", "service" => S::SERVICE, "outcome" => unusable.outcome())
                    .increment(1);
                from_scratch(writer)
            }
        }
    }
}

fn read_file<S: Snapshot>(
    path: &Path,
    mark: &StreamMark,
    empty: S,
) -> Result<(Header, S), Unusable> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Unusable::Missing),
        Err(e) => return Err(Unusable::Unreadable(format!("{}: {e}", path.display()))),
    };
    let (header, state) = decode::<S>(&bytes, empty)?;
    mark.check(&header)?;
    Ok((header, state))
}

/// Writes a service's snapshots when they are due.
#[derive(Debug)]
pub struct Writer {
    path: Option<PathBuf>,
    mark: Option<StreamMark>,
    every_events: u64,
    every: Duration,
    written_covers: u64,
    written_at: Instant,
}

impl Writer {
    /// True when a snapshot covering `seq` is due (the service has caught up to it).
    pub fn due(&self, seq: u64) -> bool {
        self.path.is_some()
            && self.mark.is_some()
            && seq > self.written_covers
            && (seq - self.written_covers >= self.every_events
                || self.written_at.elapsed() >= self.every)
    }

    /// Writes `state`, which covers the stream up to `seq`, if a snapshot is due.
    pub async fn maybe_write<S: Snapshot>(&mut self, state: &S, seq: u64) {
        if self.due(seq) {
            self.write(state, seq).await;
        }
    }

    /// Writes `state`, which covers the stream up to `seq` (at a clean stop, say).
    pub async fn write<S: Snapshot>(&mut self, state: &S, seq: u64) {
        self.write_image::<S>(seq, || state.image()).await;
    }

    /// Writes the image `image` makes, of a state covering the stream up to `seq`, if a
    /// snapshot is due (for a service whose state is not one value).
    pub async fn maybe_write_image<S: Snapshot>(
        &mut self,
        seq: u64,
        image: impl FnOnce() -> S::Image,
    ) {
        if self.due(seq) {
            self.write_image::<S>(seq, image).await;
        }
    }

    /// Writes the image `image` makes, of a state covering the stream up to `seq`.
    pub async fn write_image<S: Snapshot>(&mut self, seq: u64, image: impl FnOnce() -> S::Image) {
        let (Some(path), Some(mark)) = (self.path.clone(), self.mark) else {
            return;
        };
        if seq <= self.written_covers {
            return;
        }
        self.written_at = Instant::now();
        let header = Header {
            service: S::SERVICE.into(),
            fold_version: S::FOLD_VERSION,
            release: RELEASE.into(),
            stream_created: mark.created,
            covers: seq,
            written_at: Utc::now(),
        };
        let started = Instant::now();
        let written = match encode_image::<S>(&image(), &header) {
            Ok(bytes) => {
                let size = bytes.len();
                tokio::task::spawn_blocking(move || write_file(&path, &bytes))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()))
                    .map(|()| size)
            }
            Err(e) => Err(e),
        };
        match written {
            Ok(bytes) => {
                self.written_covers = seq;
                tracing::info!(
                    service = S::SERVICE,
                    covers = seq,
                    bytes,
                    took_ms = started.elapsed().as_millis() as u64,
                    "snapshot written"
                );
                metrics::counter!("fleet_snapshot_writes_total", "service" => S::SERVICE, "outcome" => "written")
                    .increment(1);
            }
            Err(error) => {
                tracing::warn!(service = S::SERVICE, %error, "cannot write a snapshot; the next start replays more of the log");
                metrics::counter!("fleet_snapshot_writes_total", "service" => S::SERVICE, "outcome" => "failed")
                    .increment(1);
            }
        }
    }
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let dir = path.parent().ok_or("a snapshot path without a directory")?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let temporary = path.with_extension("snapshot.partial");
    let mut file =
        std::fs::File::create(&temporary).map_err(|e| format!("{}: {e}", temporary.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("{}: {e}", temporary.display()))?;
    std::fs::rename(&temporary, path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

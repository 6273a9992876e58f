//! The notifier service: follows the log into the [`Notifier`], appends its decisions and
//! delivers notifications over HTTP(S), several at a time.
//!
//! Every instance is active: triggers, claims and outcomes are appended with expected
//! sequences, so instances never send one attempt twice and the log says who did what.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fleet_events::envelope::Envelope;
use fleet_events::store::{AppendError, EventStore};
use fleet_events::subject;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::core::{Action, Job, Notifier, NotifierConfig, ToAppend};
use super::secrets::Secrets;
use super::target;
use fleet_runtime::clock::Clock;
use fleet_runtime::follow::{Follower, append_retrying};

/// Deliveries in flight at once.
const PARALLEL: usize = 16;
/// Longest part of a failed response's body kept in the error.
const MAX_BODY_IN_ERROR: usize = 200;

/// The notifier's settings.
#[derive(Debug, Clone)]
pub struct NotifierSettings {
    pub core: NotifierConfig,
    pub secrets: Secrets,
    /// A CA certificate (PEM) to trust besides the system's roots.
    pub ca_file: Option<PathBuf>,
    /// How long one HTTP request may take.
    pub http_timeout: Duration,
}

impl Default for NotifierSettings {
    fn default() -> Self {
        Self {
            core: NotifierConfig::default(),
            secrets: Secrets::default(),
            ca_file: None,
            http_timeout: Duration::from_secs(10),
        }
    }
}

/// A delivery that ended.
struct Done {
    job: Job,
    claim: Envelope,
    claim_seq: u64,
    result: Result<u16, String>,
}

/// Runs the notifier until `shutdown` is cancelled.
pub async fn run(
    store: EventStore,
    clock: Clock,
    settings: NotifierSettings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let client =
        fleet_https_client::http_client(settings.ca_file.as_deref(), settings.http_timeout)?;
    let secrets = Arc::new(settings.secrets);
    let mut core = Notifier::new(settings.core);
    let mut log = Follower::open(store.clone(), subject::all_events(), "notifier").await?;
    while !log.caught_up() {
        match log.next(&shutdown).await {
            Some(stored) => core.apply(&stored),
            None => return Ok(()),
        }
    }
    tracing::info!(pending = core.pending(), "notifier caught up with the log");
    let (done_tx, mut done_rx) = mpsc::channel::<Done>(PARALLEL);
    let slots = Arc::new(Semaphore::new(PARALLEL));
    loop {
        for action in core.due(clock.now()) {
            match action {
                Action::Append { write, note } => {
                    append(&store, &write, &shutdown).await;
                    if let Some(id) = note {
                        core.release(id, clock.now());
                    }
                }
                Action::Deliver { claim, job } => {
                    let id = job.notification;
                    match append(&store, &claim, &shutdown).await {
                        Some(seq) => {
                            let (client, secrets, tx) =
                                (client.clone(), secrets.clone(), done_tx.clone());
                            let slots = slots.clone();
                            let envelope = claim.envelope;
                            tokio::spawn(async move {
                                let _slot = slots.acquire_owned().await;
                                let result = deliver(&client, &secrets, &job).await;
                                let done = Done {
                                    job: *job,
                                    claim: envelope,
                                    claim_seq: seq,
                                    result,
                                };
                                let _ = tx.send(done).await;
                            });
                        }
                        None => core.release(id, clock.now()),
                    }
                }
            }
        }
        metrics::gauge!("fleet_notifications_pending").set(core.pending() as f64);
        metrics::counter!("fleet_notifications_stale_total").absolute(core.stale());
        let wake = core.next_wake();
        tokio::select! {
            item = log.next(&shutdown) => match item {
                Some(stored) => core.apply(&stored),
                None => return Ok(()),
            },
            Some(done) = done_rx.recv() => {
                let outcome = match &done.result {
                    Ok(_) => "delivered",
                    Err(_) => "failed",
                };
                metrics::counter!("fleet_notification_attempts_total", "outcome" => outcome).increment(1);
                if let Err(error) = &done.result {
                    tracing::warn!(notification = %done.job.notification, rule = %done.job.spec.name, attempt = done.job.attempt, %error, "notification attempt failed");
                } else {
                    tracing::info!(notification = %done.job.notification, rule = %done.job.spec.name, attempt = done.job.attempt, "notification delivered");
                }
                let write = core.finished(&done.job, &done.claim, done.claim_seq, done.result, clock.now());
                append(&store, &write, &shutdown).await;
                core.release(done.job.notification, clock.now());
            },
            () = clock.sleep_until_some(wake) => {}
        }
    }
}

/// Appends `write`; its sequence if this call stored it, `None` if it was there already,
/// lost a race or could not be written.
async fn append(store: &EventStore, write: &ToAppend, shutdown: &CancellationToken) -> Option<u64> {
    let append = write.as_append();
    let kind = write.envelope.event.event_type().name();
    match append_retrying(store, append, shutdown).await {
        Ok(appended) if !appended.duplicate => {
            metrics::counter!("fleet_notifier_events_total", "event" => kind).increment(1);
            tracing::debug!(subject = %write.envelope.subject(), event = kind, "notifier event recorded");
            Some(appended.seq)
        }
        Ok(_) | Err(AppendError::Conflict { .. }) => {
            tracing::debug!(
                event = kind,
                "already recorded or overtaken (another notifier)"
            );
            None
        }
        Err(e) => {
            tracing::error!(event = kind, error = %e, "notifier event could not be recorded");
            None
        }
    }
}

/// Sends one attempt: the HTTP status on a 2xx answer, else the problem in words (never
/// the URL, which may be a secret).
async fn deliver(client: &reqwest::Client, secrets: &Secrets, job: &Job) -> Result<u16, String> {
    let tenant = job.tenant.as_str();
    let t = &job.spec.target;
    let url = match (&t.url, &t.url_secret) {
        (Some(url), _) => url.clone(),
        (None, Some(name)) => secrets.get(tenant, name)?.to_owned(),
        (None, None) => return Err("the rule names no URL".into()),
    };
    let key = match &t.hmac_secret {
        Some(name) => Some(secrets.get(tenant, name)?.as_bytes().to_vec()),
        None => None,
    };
    let request = target::request(job, &url, key.as_deref());
    let mut builder = client.post(&request.url).body(request.body);
    for (name, value) in &request.headers {
        builder = builder.header(*name, value);
    }
    let response = builder
        .send()
        .await
        .map_err(|e| describe(&e.without_url()))?;
    let status = response.status();
    if status.is_success() {
        return Ok(status.as_u16());
    }
    let body = response.text().await.unwrap_or_default();
    let mut body: String = body.chars().filter(|c| !c.is_control()).collect();
    if body.len() > MAX_BODY_IN_ERROR {
        let mut end = MAX_BODY_IN_ERROR;
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        body.truncate(end);
        body.push('…');
    }
    Err(format!("HTTP {status}: {body}")
        .trim_end_matches([' ', ':'])
        .to_owned())
}

/// An HTTP error in words an operator reads: what failed and its root cause (`error
/// sending request: Connection refused (os error 111)`), without the URL.
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut root = None;
    let mut source = error.source();
    while let Some(cause) = source {
        root = Some(cause);
        source = cause.source();
    }
    match root {
        Some(root) => format!("{error}: {root}"),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn an_http_error_is_told_by_what_failed_and_its_root_cause() {
        let refused = Layer("Connection refused (os error 111)", None);
        let tcp = Layer("tcp connect error", Some(Box::new(refused)));
        let client = Layer("client error (Connect)", Some(Box::new(tcp)));
        let error = Layer("error sending request", Some(Box::new(client)));
        assert_eq!(
            describe(&error),
            "error sending request: Connection refused (os error 111)"
        );
        assert_eq!(describe(&Layer("builder error", None)), "builder error");
    }
}

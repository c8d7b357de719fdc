//! The relay: publishes every committed event, in position order, to the JetStream stream
//! `LEDGER_EVENTS`, so that stream sequence N is ledger position N.
//!
//! Exactly once, without a checkpoint of its own: on start (and after any failure) the relay
//! reads the stream's last sequence and checks that message against the ledger (its event id
//! and position), then publishes from the next position. Every publish carries
//! `Nats-Expected-Last-Sequence: position − 1`, so the server itself refuses a gap or a
//! duplicate, also beyond the dedupe window; `Nats-Msg-Id` (the event id) is kept for
//! consumers and tools that rely on it. Because of that header the stream is always a prefix
//! of the log, so the relay asks for an acknowledgement only every 256 events, at the end of
//! each batch and on the first message of each session (see `ACK_EVERY`).

use super::BusError;
use crate::envelope::cloudevents::{encode, subject_of};
use crate::store::{EventStore, RecordedEvent};
use crate::support::cause::Cause;
use crate::support::progress::Progress;
use async_nats::jetstream::{self, stream};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod acks;
mod prepare;

use acks::{Acks, ACK_EVERY};
pub use prepare::ledger_source;
use prepare::{prepare, PUBLISH_STALL};

/// The JetStream stream the relay publishes to.
pub const STREAM: &str = "LEDGER_EVENTS";

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// NATS server URL(s), comma-separated.
    pub nats_url: String,
    /// Stream replicas (1 for a single server, 3 for a production cluster); `None`: a new
    /// stream gets 1, an existing one keeps its own.
    pub replicas: Option<usize>,
    /// Keep following new commits (`false`: stop once the stream holds the whole log).
    pub follow: bool,
    /// Events published and not yet covered by an acknowledgement, at most (the relay asks
    /// for one acknowledgement every 256 events: see `ACK_EVERY`).
    pub max_in_flight: usize,
    /// Updated with the last position the stream holds, as it grows.
    pub progress: Progress,
    /// How long NATS may stay unreachable without progress before the run ends with an
    /// error (None: retry for ever, as a following relay does). `relay --once` sets 30 s
    /// (`--retry-for`): a run from cron or a script must end, and the next one resumes.
    pub give_up_after: Option<Duration>,
    /// Where the relay says how it stands (part `relay`): running, failing and retrying, or
    /// stopped, each with its reason, as it happens (`serve`'s `/readyz` and `/metrics`).
    pub health: crate::support::health::Health,
}

impl RelayOptions {
    /// Defaults for one server.
    pub fn new(nats_url: impl Into<String>) -> RelayOptions {
        RelayOptions {
            nats_url: nats_url.into(),
            replicas: None,
            follow: true,
            max_in_flight: 4096,
            progress: Progress::default(),
            give_up_after: None,
            health: Default::default(),
        }
    }
}

/// Outage bookkeeping shared with the connection's event callback.
#[derive(Default)]
struct Outage {
    down: AtomicBool,
    count: AtomicU64,
    /// Bumped at every reconnection: a session started before it resyncs.
    generation: AtomicU64,
    /// When the last outage ended (ms since the Unix epoch).
    ended_ms: AtomicU64,
    /// When the current outage began (ms since the Unix epoch).
    began_ms: AtomicU64,
    /// Errors seen during the current outage (one logged, the rest counted).
    failures: AtomicU64,
    /// Set when an outage ends, cleared when the relay has caught up with the log again.
    catching_up: AtomicBool,
    /// The last error the server sent (a permission refused), said once until it changes.
    server_said: std::sync::Mutex<String>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Outage {
    fn begin(&self, why: &(impl std::fmt::Display + ?Sized)) {
        if self.down.swap(true, Ordering::SeqCst) {
            // The same outage: counted, said when it ends.
            self.failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %why, "NATS still unavailable");
            return;
        }
        self.failures.store(1, Ordering::Relaxed);
        self.began_ms.store(now_ms(), Ordering::SeqCst);
        if let Some(refused) = crate::nats::security::refusal(&why.to_string()) {
            // Not the network: NATS refused who we are. Said plainly, and retried (the
            // server's accounts may be fixed meanwhile).
            self.count.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("{refused}; the relay retries with backoff");
            return;
        }
        // Acknowledgements lost in an outage that just ended surface a little later: the same
        // outage, not a new one.
        if now_ms().saturating_sub(self.ended_ms.load(Ordering::SeqCst)) < 15_000
            && self.count.load(Ordering::SeqCst) > 0
        {
            tracing::debug!(error = %why, "publishes lost in the last outage; resyncing");
            return;
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(error = %why, "NATS unavailable; the relay retries with backoff and resumes where the stream ends");
    }
    fn end(&self) {
        if self.down.swap(false, Ordering::SeqCst) {
            self.ended_ms.store(now_ms(), Ordering::SeqCst);
            // At the outage warning's level, so that whoever sees one sees the other.
            let failures = self.failures.swap(0, Ordering::Relaxed);
            let secs = now_ms().saturating_sub(self.began_ms.load(Ordering::SeqCst)) / 1000;
            tracing::warn!(
                failures,
                outage_seconds = secs,
                "NATS reachable again after {secs}s and {failures} failed attempt(s) (logged once); the relay resumes where the stream ends"
            );
            self.catching_up.store(true, Ordering::SeqCst);
        }
    }

    /// An error the server sent on the connection (a publish it refused): said once until it
    /// changes, with what to do.
    fn server_error(&self, error: &str) {
        // One line per kind of refusal (not per subject refused): the subject of the first.
        let kind = error.split(" to \"").next().unwrap_or(error);
        let mut last = self.server_said.lock().unwrap_or_else(|e| e.into_inner());
        if *last != kind {
            *last = kind.to_string();
            match crate::nats::security::refusal(error) {
                Some(refused) => tracing::warn!("{refused}"),
                None => tracing::warn!(error, "the NATS server reports an error"),
            }
        } else {
            tracing::debug!(error, "the NATS server reports an error (said before)");
        }
    }

    /// The relay has published everything the log holds: after an outage, says so once.
    fn caught_up(&self, position: u64) {
        if self.catching_up.swap(false, Ordering::SeqCst) {
            tracing::warn!(
                position,
                "relay caught up after the outage: the stream holds positions 1..{position}"
            );
        }
    }
}

/// What a relay run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RelayReport {
    /// Events this run stored in the stream, counted at each acknowledged checkpoint (exact
    /// when one relay runs alone; with several relays racing on one stream, a window whose
    /// checkpoint was stored by another relay counts for that one).
    pub published: u64,
    /// The last position the stream holds.
    pub position: u64,
    /// Times the relay lost NATS and resumed.
    pub outages: u64,
    /// `position`, shared with whoever watches the relay (metrics).
    #[serde(skip)]
    pub progress: Progress,
}

enum SessionEnd {
    /// The whole log is in the stream (only without `follow`), or shutdown was requested.
    Done,
    /// Start a new session (the server moved under us: resync from the stream's end).
    Resync,
}

/// Runs the relay until `shutdown` completes (or, without `follow`, until the stream holds the
/// whole log). NATS outages are retried with backoff, logged once each. How it stands is
/// said in `options.health` as it happens; an error that ends it is logged when it happens.
pub async fn relay(
    store: Arc<dyn EventStore>,
    options: RelayOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<RelayReport, BusError> {
    let health = options.health.clone();
    health.starting("relay");
    let run = run(store, options, shutdown).await;
    if let Err(e) = &run {
        tracing::error!(error = %e, "the relay stopped");
        health.stopped("relay", e);
    }
    run
}

async fn run(
    store: Arc<dyn EventStore>,
    options: RelayOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<RelayReport, BusError> {
    tokio::pin!(shutdown);
    crate::nats::server_addrs(&options.nats_url)?; // a bad URL fails now, not after retries
    let mut report = RelayReport {
        progress: options.progress.clone(),
        ..RelayReport::default()
    };
    // Set while NATS is unreachable, by the connection's events or a failed session, so that
    // each outage is logged once however it shows itself.
    let outage = Arc::new(Outage::default());
    let mut backoff = Duration::from_millis(100);
    let mut stalled_at: Option<u64> = None;
    let mut refused: Option<String> = None;
    // Since when (and at which position) NATS has been unreachable, for `give_up_after`.
    let mut unreachable: Option<(Instant, u64)> = None;
    loop {
        let session = session(&store, &options, &mut report, &outage, &mut shutdown);
        let pause = match session.await {
            Ok(SessionEnd::Done) => {
                report.outages = outage.count.load(Ordering::Relaxed);
                return Ok(report);
            }
            Ok(SessionEnd::Resync) => {
                unreachable = None;
                // A resync that found the stream where the last one did made no progress (a
                // message the server keeps refusing): the next session's first message is a
                // checkpoint, which reports why; meanwhile, back off instead of spinning.
                let stalled = stalled_at == Some(report.position);
                stalled_at = Some(report.position);
                if !stalled {
                    backoff = Duration::from_millis(100);
                }
                stalled
            }
            Err(BusError::Nats(e)) => {
                outage.begin(&e);
                options.health.failing("relay", &e);
                let (since, at) = *unreachable.get_or_insert((Instant::now(), report.position));
                if at != report.position {
                    unreachable = Some((Instant::now(), report.position));
                } else if let Some(limit) = options.give_up_after.filter(|l| since.elapsed() >= *l)
                {
                    // A refusal the server sent (a publish this identity may not make) explains
                    // a silence better than the silence does.
                    let said = outage
                        .server_said
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone();
                    let refused = crate::nats::security::refusal(&e.to_string())
                        .or_else(|| crate::nats::security::refusal(&said));
                    let message = match refused {
                        Some(refused) => format!(
                            "{refused}; gave up after {}s. The relay resumes where the stream ends (position {}) once NATS accepts it",
                            limit.as_secs(),
                            report.position
                        ),
                        None => format!(
                            "{} unreachable for {}s, the last time: {e}. Start nats-server -js there or fix --nats, then run the relay again: it resumes where the stream ends (position {})",
                            options.nats_url,
                            limit.as_secs(),
                            report.position
                        ),
                    };
                    return Err(BusError::Nats(Cause::with_source(message, e)));
                }
                true
            }
            Err(BusError::Refused(why)) => {
                // Not an outage: NATS answers, and refuses. Said once per reason.
                unreachable = None;
                options.health.failing("relay", &why);
                if refused.as_deref() != Some(why.as_str()) {
                    tracing::warn!(
                        "{why}; the relay retries with backoff: fix the stream's limits or the server's storage"
                    );
                    refused = Some(why);
                }
                true
            }
            Err(other) => return Err(other),
        };
        if pause {
            tokio::select! {
                _ = &mut shutdown => {
                    report.outages = outage.count.load(Ordering::Relaxed);
                    return Ok(report);
                }
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

/// Creates the stream (with `replicas`, or 1), or updates an existing one's replicas when
/// `replicas` is given and differs; returns it.
async fn ensure_stream(
    js: &jetstream::Context,
    replicas: Option<usize>,
) -> Result<stream::Stream, BusError> {
    let config = stream::Config {
        name: STREAM.to_string(),
        subjects: vec![format!(
            "{}.>",
            crate::envelope::cloudevents::SUBJECT_PREFIX
        )],
        storage: stream::StorageType::File,
        num_replicas: replicas.unwrap_or(1),
        duplicate_window: Duration::from_secs(120),
        allow_direct: true,
        ..Default::default()
    };
    match js.get_stream(STREAM).await {
        Ok(mut s) => {
            let info = s.info().await.map_err(BusError::nats)?;
            if let Some(replicas) = replicas.filter(|r| *r != info.config.num_replicas) {
                let mut c = info.config.clone();
                c.num_replicas = replicas;
                js.update_stream(c).await.map_err(BusError::nats)?;
            }
            Ok(s)
        }
        Err(_) => js
            .get_or_create_stream(config)
            .await
            .map_err(BusError::nats),
    }
}

fn header<'a>(m: &'a async_nats::jetstream::message::StreamMessage, name: &str) -> Option<&'a str> {
    m.headers.get(name).map(|v| v.as_str())
}

async fn session(
    store: &Arc<dyn EventStore>,
    options: &RelayOptions,
    report: &mut RelayReport,
    outage: &Arc<Outage>,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<SessionEnd, BusError> {
    let client = connect(options, outage).await?;
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(client.clone());
    let mut s = ensure_stream(&js, options.replicas).await?;
    let last = s.info().await.map_err(BusError::nats)?.state.last_sequence;
    if last > 0 {
        check_stream_end(store, &s, last, options).await?;
    }
    outage.end();
    options.health.running("relay");
    let generation = outage.generation.load(Ordering::SeqCst);
    report.position = last;
    report.progress.set(last);
    // Acknowledgements of the checkpoints come to `<inbox>.<position>`.
    let inbox = client.new_inbox();
    let mut acks = Acks {
        subscription: client
            .subscribe(format!("{inbox}.*"))
            .await
            .map_err(BusError::nats)?,
        pending: VecDeque::new(),
    };
    let every = (options.max_in_flight as u64).clamp(1, ACK_EVERY);
    let max_pending = (options.max_in_flight as u64 / every).max(1) as usize;
    let source = Arc::new(std::sync::OnceLock::new());
    let mut pos = last;
    // Reading and encoding the next batch overlaps with publishing this one.
    let mut next = prepare(store.clone(), pos, source.clone(), false);
    // Whether `next` waits for new commits (then a shutdown ends the session at once).
    let mut waiting = false;
    loop {
        let batch = tokio::select! {
            biased;
            r = &mut next => r.map_err(BusError::nats)??,
            _ = shutdown.as_mut(), if waiting => return Ok(SessionEnd::Done),
        };
        if batch.is_empty() {
            // Everything read is published: settle the checkpoints, then wait for more.
            if let Some(end) = acks.settle_all(report, outage, generation).await? {
                return Ok(end);
            }
            outage.caught_up(pos);
            if !options.follow {
                return Ok(SessionEnd::Done);
            }
            next = prepare(store.clone(), pos, source.clone(), true);
            waiting = true;
            continue;
        }
        waiting = false;
        if outage.generation.load(Ordering::SeqCst) != generation {
            // The connection was re-established: what was in flight may be lost. Resync.
            return Ok(SessionEnd::Resync);
        }
        let end = batch.last().map(|p| p.position).unwrap_or(pos);
        next = prepare(store.clone(), end, source.clone(), false);
        for p in batch {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", p.event_id.as_str());
            headers.insert(
                "Nats-Expected-Last-Sequence",
                (p.position - 1).to_string().as_str(),
            );
            headers.insert("Ledger-Position", p.position.to_string().as_str());
            headers.insert("Content-Type", crate::envelope::cloudevents::CONTENT_TYPE);
            // The first message of a session is a checkpoint too: should the server refuse it
            // (a size or storage limit), its own error comes back instead of a wrong-sequence
            // error at the next checkpoint and an endless resync.
            let checkpoint = p.position % every == 0 || p.position == end || p.position == last + 1;
            // A publish that cannot even be handed to the client for this long means the
            // connection is wedged: end the session (new client, resync) rather than wait.
            let send = async {
                if checkpoint {
                    let reply = format!("{inbox}.{}", p.position);
                    client
                        .publish_with_reply_and_headers(p.subject, reply, headers, p.payload.into())
                        .await
                } else {
                    client
                        .publish_with_headers(p.subject, headers, p.payload.into())
                        .await
                }
            };
            tokio::time::timeout(PUBLISH_STALL, send)
                .await
                .map_err(|_| {
                    BusError::nats_because(format!(
                        "a publish waited {PUBLISH_STALL:?} to be sent; reconnecting"
                    ))
                })?
                .map_err(BusError::nats)?;
            pos = p.position;
            if checkpoint {
                acks.pending.push_back(p.position);
                while acks.pending.len() > max_pending {
                    if let Some(end) = acks.settle_one(report, outage, generation).await? {
                        return Ok(end);
                    }
                }
            }
        }
    }
}

/// Deletes the stream `LEDGER_EVENTS` from the server(s) at `url` (`relay --delete-stream`),
/// for a stream that belongs to another ledger and is not needed: returns how many messages it
/// held (`None` when there was no such stream). Consumers of it must start again from position
/// 1 of the ledger the relay then publishes.
pub async fn delete_stream(url: &str) -> Result<Option<u64>, BusError> {
    let addrs = crate::nats::server_addrs(url)?;
    let client = crate::nats::security::connect_options()?
        .connection_timeout(Duration::from_secs(5))
        .connect(addrs)
        .await
        .map_err(BusError::nats)?;
    let js = async_nats::jetstream::new(client);
    let mut stream = match js.get_stream(STREAM).await {
        Ok(s) => s,
        Err(e)
            if matches!(e.kind(), async_nats::jetstream::context::GetStreamErrorKind::JetStream(ref j)
                if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(BusError::nats(e)),
    };
    let held = stream.info().await.map_err(BusError::nats)?.state.messages;
    js.delete_stream(STREAM).await.map_err(BusError::nats)?;
    Ok(Some(held))
}

/// A client whose connection events feed `outage` (a reconnection bumps its generation: what
/// was in flight may be lost, so the session resyncs).
async fn connect(
    options: &RelayOptions,
    outage: &Arc<Outage>,
) -> Result<async_nats::Client, BusError> {
    let events = outage.clone();
    let lost = Arc::new(AtomicBool::new(false));
    crate::nats::security::connect_options()?
        .connection_timeout(Duration::from_secs(2))
        .event_callback(move |event| {
            let (events, lost) = (events.clone(), lost.clone());
            async move {
                match event {
                    async_nats::Event::Disconnected => {
                        lost.store(true, Ordering::SeqCst);
                        events.begin("connection lost");
                    }
                    async_nats::Event::Connected => {
                        // A reconnection of this client (not its first connection): what it had
                        // in flight may be lost, so its session resyncs.
                        if lost.swap(false, Ordering::SeqCst) {
                            events.generation.fetch_add(1, Ordering::SeqCst);
                        }
                        events.end();
                    }
                    async_nats::Event::ServerError(e) => events.server_error(&e.to_string()),
                    _ => {}
                }
            }
        })
        .connect(crate::nats::server_addrs(&options.nats_url)?)
        .await
        .map_err(BusError::nats)
}

/// The stream's end must be this ledger's event at that position: a stream of another
/// ledger (or written to by another publisher) is refused, never continued.
async fn check_stream_end(
    store: &Arc<dyn EventStore>,
    s: &stream::Stream,
    last: u64,
    options: &RelayOptions,
) -> Result<(), BusError> {
    // The stream's end must be this ledger's event at that position.
    let m = s.get_raw_message(last).await.map_err(BusError::nats)?;
    let st = store.clone();
    let ours: Vec<RecordedEvent> = tokio::task::spawn_blocking(move || st.read_all(last - 1, 1))
        .await
        .map_err(BusError::nats)??;
    let pos_ok = header(&m, "Ledger-Position") == Some(last.to_string().as_str());
    let id_ok = ours
        .first()
        .is_some_and(|e| header(&m, "Nats-Msg-Id") == Some(e.event_id.to_string().as_str()));
    if !pos_ok || !id_ok {
        let what = if ours.is_empty() {
            format!(
                "it holds {last} events and this ledger ({}) fewer",
                store.describe()
            )
        } else {
            format!(
                "its message {last} is not this ledger's event at position {last} ({})",
                store.describe()
            )
        };
        return Err(BusError::Mismatch(format!(
            "stream {STREAM} at {} belongs to another ledger (or was written to by another publisher): {what}. \
             Point --nats at this ledger's own NATS server, or, if that stream is not needed, delete it (`campaign-ledger relay --delete-stream`, which says how many messages it held) and the relay publishes this ledger from position 1",
            options.nats_url
        )));
    }
    Ok(())
}

//! The relay: publishes every committed event, in position order, to the JetStream stream
//! `LEDGER_EVENTS`, so that stream sequence N is ledger position N.
//!
//! Exactly once, without a checkpoint of its own: on start (and after any failure) the relay
//! reads the stream's last sequence and checks that message against the ledger (its event id
//! and position), then publishes from the next position. Every publish carries
//! `Nats-Expected-Last-Sequence: position − 1`, so the server itself refuses a gap or a
//! duplicate, also beyond the dedupe window; `Nats-Msg-Id` (the event id) is kept for
//! consumers and tools that rely on it.

use super::cloudevents::{encode, subject_of};
use super::BusError;
use crate::store::{EventStore, RecordedEvent};
use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The JetStream stream the relay publishes to.
pub const STREAM: &str = "LEDGER_EVENTS";

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// NATS server URL(s), comma-separated.
    pub nats_url: String,
    /// Stream replicas (1 for a single server, 3 for a production cluster).
    pub replicas: usize,
    /// Keep following new commits (`false`: stop once the stream holds the whole log).
    pub follow: bool,
    /// Publishes awaiting their acknowledgement at most.
    pub max_in_flight: usize,
    /// Updated with the last position the stream holds, as it grows.
    pub progress: Progress,
}

impl RelayOptions {
    /// Defaults for one server.
    pub fn new(nats_url: impl Into<String>) -> RelayOptions {
        RelayOptions {
            nats_url: nats_url.into(),
            replicas: 1,
            follow: true,
            max_in_flight: 4096,
            progress: Progress::default(),
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
            tracing::info!("NATS reachable again; the relay resumes");
        }
    }
}

/// What a relay run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RelayReport {
    /// Events published by this run.
    pub published: u64,
    /// The last position the stream holds.
    pub position: u64,
    /// Times the relay lost NATS and resumed.
    pub outages: u64,
    /// `position`, shared with whoever watches the relay (metrics).
    #[serde(skip)]
    pub progress: Progress,
}

/// The last position the stream is known to hold, readable while the relay runs.
#[derive(Debug, Clone, Default)]
pub struct Progress(pub Arc<AtomicU64>);

impl Progress {
    /// The position.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    fn set(&self, position: u64) {
        self.0.store(position, Ordering::Relaxed);
    }
}

impl PartialEq for Progress {
    /// Reports compare by their figures, not by who watches them.
    fn eq(&self, _: &Progress) -> bool {
        true
    }
}
impl Eq for Progress {}

enum SessionEnd {
    /// The whole log is in the stream (only without `follow`), or shutdown was requested.
    Done,
    /// Start a new session (the server moved under us: resync from the stream's end).
    Resync,
}

/// Runs the relay until `shutdown` completes (or, without `follow`, until the stream holds the
/// whole log). NATS outages are retried with backoff, logged once each.
pub async fn relay(
    store: Arc<dyn EventStore>,
    options: RelayOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<RelayReport, BusError> {
    tokio::pin!(shutdown);
    super::server_addrs(&options.nats_url)?; // a bad URL fails now, not after retries
    let mut report = RelayReport {
        progress: options.progress.clone(),
        ..RelayReport::default()
    };
    // Set while NATS is unreachable, by the connection's events or a failed session, so that
    // each outage is logged once however it shows itself.
    let outage = Arc::new(Outage::default());
    let mut backoff = Duration::from_millis(100);
    loop {
        let session = session(&store, &options, &mut report, &outage, &mut shutdown);
        match session.await {
            Ok(SessionEnd::Done) => {
                report.outages = outage.count.load(Ordering::Relaxed);
                return Ok(report);
            }
            Ok(SessionEnd::Resync) => continue,
            Err(BusError::Nats(e)) => {
                outage.begin(&e);
                tokio::select! {
                    _ = &mut shutdown => {
                        report.outages = outage.count.load(Ordering::Relaxed);
                        return Ok(report);
                    }
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(other) => return Err(other),
        }
    }
}

/// Creates the stream, or updates its replicas; returns it.
async fn ensure_stream(
    js: &jetstream::Context,
    replicas: usize,
) -> Result<stream::Stream, BusError> {
    let config = stream::Config {
        name: STREAM.to_string(),
        subjects: vec![format!("{}.>", super::cloudevents::SUBJECT_PREFIX)],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        duplicate_window: Duration::from_secs(120),
        allow_direct: true,
        ..Default::default()
    };
    match js.get_stream(STREAM).await {
        Ok(mut s) => {
            let info = s.info().await.map_err(BusError::nats)?;
            if info.config.num_replicas != replicas {
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
    let events = outage.clone();
    let lost = Arc::new(AtomicBool::new(false));
    let client = async_nats::ConnectOptions::new()
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
                    _ => {}
                }
            }
        })
        .connect(super::server_addrs(&options.nats_url)?)
        .await
        .map_err(BusError::nats)?;
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .max_ack_inflight(options.max_in_flight)
        .backpressure_on_inflight(true)
        .build(client);
    let mut s = ensure_stream(&js, options.replicas).await?;
    let last = s.info().await.map_err(BusError::nats)?.state.last_sequence;
    if last > 0 {
        // The stream's end must be this ledger's event at that position.
        let m = s.get_raw_message(last).await.map_err(BusError::nats)?;
        let st = store.clone();
        let ours: Vec<RecordedEvent> =
            tokio::task::spawn_blocking(move || st.read_all(last - 1, 1))
                .await
                .map_err(BusError::nats)??;
        let pos_ok = header(&m, "Ledger-Position") == Some(last.to_string().as_str());
        let id_ok = ours
            .first()
            .is_some_and(|e| header(&m, "Nats-Msg-Id") == Some(e.event_id.to_string().as_str()));
        if !pos_ok || !id_ok {
            return Err(BusError::Mismatch(format!(
                "stream {STREAM} ends at sequence {last}, which is not this ledger's event at position {last}"
            )));
        }
    }
    outage.end();
    let generation = outage.generation.load(Ordering::SeqCst);
    report.position = last;
    report.progress.set(last);
    let source: Arc<str> = format!("/campaign-ledger/{}", store.describe()).into();
    let mut pos = last;
    let mut inflight: VecDeque<(u64, jetstream::context::PublishAckFuture)> = VecDeque::new();
    // Reading and encoding the next batch overlaps with publishing this one.
    let mut next = prepare(store.clone(), pos, source.clone());
    loop {
        let batch = next.await.map_err(BusError::nats)??;
        if batch.is_empty() {
            // Everything read is published: settle the acknowledgements, then wait for more.
            while let Some((p, ack)) = inflight.pop_front() {
                // A position already stored (an acknowledgement lost in an outage) resyncs
                // from the stream's end, as in the publishing loop; it must not end the relay.
                if let Some(end) = settle_or_resync(p, ack, report).await? {
                    return Ok(end);
                }
            }
            if !options.follow {
                return Ok(SessionEnd::Done);
            }
            let st = store.clone();
            let wait = tokio::task::spawn_blocking(move || {
                st.wait_beyond(pos, Duration::from_millis(500))
            });
            tokio::select! {
                _ = shutdown.as_mut() => return Ok(SessionEnd::Done),
                r = wait => { r.map_err(BusError::nats)??; }
            }
            next = prepare(store.clone(), pos, source.clone());
            continue;
        }
        if outage.generation.load(Ordering::SeqCst) != generation {
            // The connection was re-established: what was in flight may be lost. Resync.
            return Ok(SessionEnd::Resync);
        }
        let end = batch.last().map(|p| p.position).unwrap_or(pos);
        next = prepare(store.clone(), end, source.clone());
        for p in batch {
            let message = jetstream::message::PublishMessage::build()
                .payload(p.payload.into())
                .message_id(p.event_id)
                .expected_last_sequence(p.position - 1)
                .header("Ledger-Position", p.position.to_string().as_str());
            // A publish that cannot even be handed to the client for this long means the
            // connection is wedged: end the session (new client, resync) rather than wait.
            let ack = tokio::time::timeout(PUBLISH_STALL, js.send_publish(p.subject, message))
                .await
                .map_err(|_| {
                    BusError::nats(format!(
                        "a publish waited {PUBLISH_STALL:?} to be sent; reconnecting"
                    ))
                })?
                .map_err(BusError::nats)?;
            inflight.push_back((p.position, ack));
            while inflight.len() >= options.max_in_flight {
                let (p, ack) = inflight.pop_front().expect("non-empty");
                if let Some(end) = settle_or_resync(p, ack, report).await? {
                    return Ok(end);
                }
            }
            pos = p.position;
        }
        // Settle what is already acknowledged without waiting, to keep the report current.
        while let Some((p, _)) = inflight.front() {
            if *p + (options.max_in_flight as u64) / 2 > pos {
                break;
            }
            let (p, ack) = inflight.pop_front().expect("non-empty");
            if let Some(end) = settle_or_resync(p, ack, report).await? {
                return Ok(end);
            }
        }
    }
}

/// An event ready to publish.
struct Prepared {
    position: u64,
    event_id: String,
    subject: String,
    payload: Vec<u8>,
}

/// Reads and encodes the events after `after` on a blocking thread.
fn prepare(
    store: Arc<dyn EventStore>,
    after: u64,
    source: Arc<str>,
) -> tokio::task::JoinHandle<Result<Vec<Prepared>, crate::store::StoreError>> {
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::with_capacity(BATCH as usize);
        store.scan(after, after + BATCH, &mut |e| {
            out.push(Prepared {
                position: e.position,
                event_id: e.event_id.to_string(),
                subject: subject_of(&e),
                payload: encode(&e, &source),
            });
            true
        })?;
        Ok(out)
    })
}

const BATCH: u64 = 4096;

/// How long a publish may wait to be handed to the client before the session is abandoned.
const PUBLISH_STALL: Duration = Duration::from_secs(10);

async fn settle_or_resync(
    position: u64,
    ack: jetstream::context::PublishAckFuture,
    report: &mut RelayReport,
) -> Result<Option<SessionEnd>, BusError> {
    match settle(position, ack, report).await {
        Ok(()) => Ok(None),
        Err(BusError::Mismatch(_)) => Ok(Some(SessionEnd::Resync)),
        Err(e) => Err(e),
    }
}

async fn settle(
    position: u64,
    ack: jetstream::context::PublishAckFuture,
    report: &mut RelayReport,
) -> Result<(), BusError> {
    let ack = tokio::time::timeout(PUBLISH_STALL, ack)
        .await
        .map_err(|_| {
            BusError::nats(format!(
                "no acknowledgement within {PUBLISH_STALL:?}; reconnecting"
            ))
        })?;
    match ack {
        Ok(a) if a.sequence == position => {
            if !a.duplicate {
                report.published += 1;
            }
            report.position = report.position.max(position);
            report.progress.set(report.position);
            Ok(())
        }
        Ok(a) => Err(BusError::Mismatch(format!(
            "position {position} was stored at sequence {}",
            a.sequence
        ))),
        // Someone (an earlier run whose acknowledgement was lost) already stored this position:
        // resync from the stream's end rather than publish anything twice.
        Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
            tracing::debug!(position, "stream already past this position; resyncing");
            Err(BusError::Mismatch("resync".into()))
        }
        Err(e) => Err(BusError::nats(e)),
    }
}

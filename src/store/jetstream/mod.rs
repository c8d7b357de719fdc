//! JetStream as the log: `--store nats://HOST:PORT[,nats://HOST:PORT…][?replicas=N][&publish=batch|each]`.
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
//!   server stores all of it or none, with one write and, under `sync_interval: always`, one
//!   fsync. Only the commit message asks for a reply. With `publish=each` a group of
//!   single-event commands is published one message each, pipelined, each chained to the one
//!   before (`Nats-Expected-Last-Msg-Id`): faster on a server that does not fsync each write
//!   (its default), slower on one that does (see BENCHMARKS.md).
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
use crate::support::cause::Cause;
use async_nats::jetstream::{self, stream};
use async_nats::{Client, HeaderMap};
use futures_util::{StreamExt, TryStreamExt};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

mod index;
mod setup;
mod subjects;
mod url;
mod writer;

use index::{catch_up, Index};
use setup::{check_version, ensure_log};
pub use subjects::{log_subject, log_subject_in, subject_prefix};
use url::parse_url;
use writer::Writer;

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

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Unavailable(Cause::with_source(format!("NATS: {e}"), e))
}

impl From<NatsError> for StoreError {
    /// NATS errors as the store's kinds (the message as NATS gave it).
    fn from(e: NatsError) -> StoreError {
        match e {
            NatsError::BadUrl(m) => StoreError::Invalid(format!("--nats {m}").into()),
            NatsError::Settings(m) => StoreError::Invalid(m.into()),
            NatsError::Unavailable(c) => StoreError::Unavailable(c.prefixed("NATS: ")),
            NatsError::Corrupt(c) => StoreError::Corrupt(c),
        }
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
    /// The subjects' prefix of the log's JetStream stream (`subject_prefix`).
    prefix: Arc<str>,
    url: String,
    runtime: tokio::runtime::Runtime,
    stream: stream::Stream,
    shared: Arc<Shared>,
    jobs: tokio::sync::mpsc::Sender<Job>,
    /// For imports (appends go through the writer task).
    js: jetstream::Context,
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
        let url::LogUrl {
            servers,
            replicas,
            batch,
            stream: name,
        } = parse_url(url)?;
        let prefix: Arc<str> = subject_prefix(&name).into();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("nats-store")
            .enable_all()
            .build()
            .map_err(unavailable)?;
        let addrs = crate::nats::server_addrs(&servers).map_err(unavailable)?;
        let shown = url.to_string();
        let subjects = format!("{prefix}.>");
        let (client, writer_js, stream) = run_on(&runtime, async move {
            // Servers that are still starting get 5 s to accept the connection.
            let deadline = Instant::now() + Duration::from_secs(5);
            let client = loop {
                let attempt = crate::nats::security::connect_options()?
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
                        ).into()))
                    }
                }
            };
            check_version(&client)?;
            let js = jetstream::new(client.clone());
            let stream = ensure_log(&js, replicas, &name, &subjects).await?;
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
        let (jobs, rx) = tokio::sync::mpsc::channel(crate::store::sqlite::QUEUE_LIMIT);
        let writer = Writer {
            js: writer_js.clone(),
            client,
            stream: stream.clone(),
            shared: shared.clone(),
            clock,
            batch,
            prefix: prefix.clone(),
        };
        runtime.spawn(writer.run(rx));
        Ok(JetStreamStore {
            prefix,
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

async fn get_events(
    stream: &stream::Stream,
    positions: Vec<u64>,
) -> Result<Vec<RecordedEvent>, StoreError> {
    futures_util::stream::iter(positions)
        .map(|p| {
            let s = stream.clone();
            async move {
                let m = s.direct_get(p).await.map_err(unavailable)?;
                let e = crate::envelope::cloudevents::decode(&m.payload).map_err(|e| {
                    StoreError::Corrupt(Cause::with_source(
                        format!("{LOG_STREAM} sequence {p}: {e}"),
                        e,
                    ))
                })?;
                if e.position != p {
                    return Err(StoreError::Corrupt(
                        format!("{LOG_STREAM} sequence {p} holds position {}", e.position).into(),
                    ));
                }
                Ok(e)
            }
        })
        .buffered(64)
        .try_collect()
        .await
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
            ).into()));
        }
        let (reply, rx) = std::sync::mpsc::sync_channel(1);
        let job = Job { request, reply };
        let closed = || StoreError::Unavailable("the NATS store is closed".into());
        // The queue is bounded: a thread waits for a place; a caller inside a runtime (which
        // must not block) is told to retry.
        if tokio::runtime::Handle::try_current().is_ok() {
            use tokio::sync::mpsc::error::TrySendError;
            self.jobs.try_send(job).map_err(|e| match e {
                TrySendError::Full(_) => StoreError::Unavailable(
                    format!(
                        "the NATS log's write queue is full ({} appends waiting); retry in a moment",
                        crate::store::sqlite::QUEUE_LIMIT
                    )
                    .into(),
                ),
                TrySendError::Closed(_) => closed(),
            })?;
        } else {
            self.jobs.blocking_send(job).map_err(|_| closed())?;
        }
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

    fn commands_of_hash_version_1(&self) -> Result<Vec<CommandRecord>, StoreError> {
        Ok(self.shared.index().of_hash_version_1())
    }

    /// The log's messages cannot be rewritten (deletes and purges are denied): the index
    /// takes the version-2 hashes, which exports, idempotency and imports use from then on;
    /// the messages keep their `Ledger-Command-Hash` of version 1 (see the README, and
    /// `campaign-ledger copy-log`, which copies the log into a stream with version-2 headers).
    fn rehash_commands(&self, hashes: &[(Uuid, [u8; 32])]) -> Result<(), StoreError> {
        self.shared.index().rehash(hashes);
        Ok(())
    }

    fn keeps_tree(&self) -> bool {
        true
    }

    fn tree_nodes(
        &self,
        ids: &[crate::envelope::merkle::NodeId],
    ) -> Result<Vec<crate::envelope::merkle::Hash>, StoreError> {
        let index = self.shared.index();
        ids.iter()
            .map(|id| {
                index.tree.node(*id).ok_or_else(|| {
                    StoreError::Invalid(
                        format!(
                            "the Merkle tree of {LOG_STREAM} has no node at level {} index {}: it covers {} events",
                            id.level,
                            id.index,
                            index.tree.size()
                        )
                        .into(),
                    )
                })
            })
            .collect()
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
                if ie.hash_version >= 2 {
                    h.insert(
                        "Ledger-Command-Hash-Version",
                        ie.hash_version.to_string().as_str(),
                    );
                }
                h.insert("Content-Type", crate::envelope::cloudevents::CONTENT_TYPE);
                h.insert("Nats-Msg-Id", e.event_id.to_string().as_str());
                h.insert(
                    "Nats-Expected-Last-Sequence",
                    (e.position - 1).to_string().as_str(),
                );
                let payload: bytes::Bytes = encode(&e.as_ref(), SOURCE).into();
                (
                    log_subject_in(&self.prefix, &e.stream_id),
                    h,
                    payload,
                    e.position,
                )
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
                        ).into())
                    })?;
                    if a.sequence != position || a.duplicate {
                        return Err(StoreError::Corrupt(format!(
                            "NATS stored position {position} at sequence {} (duplicate: {})",
                            a.sequence, a.duplicate
                        ).into()));
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
        format!(
            "nats:{}/{}",
            self.url.trim_start_matches("nats:"),
            self.stream.cached_info().config.name
        )
    }
}

#[cfg(test)]
mod tests;

//! The log: the `EventStore` trait every backend implements, the envelope, the hash chain,
//! and the backends (`sqlite`, the embedded default). A store knows no event type by name:
//! it stores typed envelopes around opaque JSON data.

mod clock;
mod jetstream;
mod sqlite;
mod subscription;

use crate::envelope::merkle::{Hash as MerkleHash, NodeId};
pub(crate) use crate::envelope::ChainCheck;
pub use crate::envelope::{
    chain_hash, format_occurred_at, format_recorded_at, Actor, ChainBreak, DataRef, EventRef,
    RecordedEvent, GENESIS_HASH,
};
pub use crate::support::cause::Cause;
pub use clock::{Clock, ManualClock, SystemClock};
pub use jetstream::{log_subject, JetStreamStore, LOG_STREAM, LOG_SUBJECT_PREFIX};
pub use sqlite::SqliteStore;
pub use subscription::Subscription;

use chrono::{DateTime, FixedOffset};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// An event to append, before the store gives it an id, position and hash.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Explicit, stable type name (`DoseAdministered`).
    pub event_type: String,
    /// Version of the data's schema.
    pub schema_version: u32,
    /// Business time of the fact.
    pub occurred_at: DateTime<FixedOffset>,
    /// The data as canonical JSON text (object keys sorted).
    pub data: String,
}

/// The command an append belongs to: recorded once, forever, for idempotency.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandMeta {
    /// Client-chosen command id.
    pub command_id: Uuid,
    /// SHA-256 of the command's canonical content, to tell a resubmission from a reused id.
    pub content_hash: [u8; 32],
    /// Correlation id.
    pub correlation_id: Option<String>,
    /// Who sent it.
    pub actor: Actor,
}

/// The optimistic concurrency check of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ExpectedVersion {
    /// No check (the unchecked path; use sparingly).
    Any,
    /// The stream's current version must be exactly this (0 = the stream does not exist yet).
    Exact(u64),
}

/// One atomic append: all events or none, to one stream, for one command.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendRequest {
    /// Target stream.
    pub stream_id: String,
    /// Concurrency check.
    pub expected: ExpectedVersion,
    /// The causing command.
    pub command: CommandMeta,
    /// Events, in order (at least one).
    pub events: Vec<NewEvent>,
    /// A person seen for the first time: their entry in the log's person index, written in
    /// the same transaction as the events (stores that keep the index, `keeps_persons`; the
    /// others ignore it). Refused with `PersonTaken` when the index already holds the lookup.
    pub person: Option<PersonLink>,
}

/// One entry of the person index: a person's lookup (an HMAC of their ref under the key
/// store's lookup key; the ref itself is never stored) and the pseudonym their events use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonLink {
    /// HMAC-SHA256 of the person's ref.
    pub lookup: [u8; 32],
    /// The person's pseudonym (`person/<person_id>` is their stream).
    pub person_id: String,
}

/// What the store remembers of an accepted command, forever.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandRecord {
    /// The command id.
    pub command_id: Uuid,
    /// SHA-256 of its canonical content (hex in JSON).
    #[serde(serialize_with = "crate::envelope::hex_ser")]
    pub content_hash: [u8; 32],
    /// The stream its events went to.
    pub stream_id: String,
    /// Global position of its first event.
    pub first_position: u64,
    /// Global position of its last event.
    pub last_position: u64,
    /// Commit time.
    pub recorded_at: String,
    /// The content hash's version: 2 (with the person's pseudonym in place of the ref), or 1
    /// (the canonical JSON as sent, by older builds) until the ledger's migration rewrites it.
    pub hash_version: u32,
}

/// The content hash version every append records (see `CommandEnvelope::content_hash`).
pub const CONTENT_HASH_VERSION: u32 = 2;

/// The result of an append.
#[derive(Debug, Clone, PartialEq)]
pub enum AppendResult {
    /// Durably committed.
    Committed(CommandRecord),
    /// The command id was already recorded (by this or an earlier append): nothing appended.
    /// The caller compares content hashes to tell a resubmission from a reused id.
    Duplicate(CommandRecord),
}

/// The head of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Last position (0 when empty).
    pub position: u64,
    /// Hash at that position (zeros when empty).
    pub hash: [u8; 32],
}

/// Errors of the log. Each variant says how a caller handles it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream moved since it was read. Read it again, decide again, retry (HTTP 409 if
    /// retries run out).
    #[error(
        "stream {stream} is at version {actual}, not {expected}: it changed since it was read"
    )]
    Conflict {
        /// Stream id.
        stream: String,
        /// Version the caller expected.
        expected: u64,
        /// Version found.
        actual: u64,
    },
    /// The append names a new person the person index already holds: another writer recorded
    /// the same person at the same moment. Look the person up again and retry.
    #[error("the person was recorded by another writer at the same moment: look them up again and retry")]
    PersonTaken,
    /// The request itself is wrong (no events, bad URL). Fix the call (HTTP 400).
    #[error("{0}")]
    Invalid(Cause),
    /// The store cannot be reached or written now (disk full, locked, closed). Retry later
    /// (HTTP 503 with Retry-After).
    #[error("the event store is unavailable: {0}")]
    Unavailable(Cause),
    /// What is stored is not what the store wrote (unreadable row, broken invariant). Stop and
    /// run `audit verify` (HTTP 500).
    #[error("the event store is damaged: {0}")]
    Corrupt(Cause),
    /// The backend failed in a way the kinds above do not name (a database or I/O error):
    /// report it (HTTP 500). The backend's own error is kept as the cause.
    #[error("{backend}: {source}")]
    Backend {
        /// Which backend (`SQLite`, `NATS`).
        backend: &'static str,
        /// Its error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    /// The error behind this one, when a backend or the system gave one.
    pub fn cause(&self) -> Option<&(dyn std::error::Error + 'static)> {
        use std::error::Error as _;
        match self {
            StoreError::Invalid(c) | StoreError::Unavailable(c) | StoreError::Corrupt(c) => {
                c.source()
            }
            StoreError::Backend { source, .. } => Some(source.as_ref()),
            StoreError::Conflict { .. } | StoreError::PersonTaken => None,
        }
    }
}

/// The contract every backend implements: the `tests/integration/store_contract.rs` suite checks it.
pub trait EventStore: Send + Sync {
    /// Appends all events or none, if the stream is at the expected version and the command id
    /// was never recorded; durable on return.
    fn append(&self, request: AppendRequest) -> Result<AppendResult, StoreError>;

    /// `append` for a caller that awaits the outcome rather than blocking a thread on it (an
    /// HTTP request): the append is queued at once and its outcome comes once durable. A
    /// backend whose appends do not queue answers at once (`PendingAppend::Ready`), having
    /// blocked for it; `appends_async` says which.
    fn start_append(&self, request: AppendRequest) -> PendingAppend {
        PendingAppend::Ready(self.append(request))
    }

    /// Whether `start_append` queues without blocking the caller, and the backend's reads
    /// are short reads of local files (no runtime of its own to block on), so that the command
    /// path may run on an async runtime's threads.
    fn appends_async(&self) -> bool {
        false
    }

    /// All events of one stream, in version order.
    fn read_stream(&self, stream_id: &str) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Up to `limit` events with position > `after`, in position order.
    fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Calls `f` for each event with position > `after` up to `to` (inclusive), in order,
    /// without copying them; returns how many were seen. Stops early if `f` returns false.
    fn scan(
        &self,
        after: u64,
        to: u64,
        f: &mut dyn FnMut(EventRef<'_>) -> bool,
    ) -> Result<u64, StoreError> {
        let mut seen = 0;
        let mut pos = after;
        while pos < to {
            let batch = self.read_all(pos, 4096)?;
            if batch.is_empty() {
                break;
            }
            for e in &batch {
                if e.position > to {
                    return Ok(seen);
                }
                seen += 1;
                pos = e.position;
                if !f(e.as_ref()) {
                    return Ok(seen);
                }
            }
        }
        Ok(seen)
    }

    /// Like `scan`, with only what readers of event data need (no ids, actor or prev_hash):
    /// the projection engine's replay path. Backends may override it with a narrower read.
    fn scan_data(
        &self,
        after: u64,
        to: u64,
        f: &mut dyn FnMut(DataRef<'_>) -> bool,
    ) -> Result<u64, StoreError> {
        self.scan(after, to, &mut |e| f(e.data_ref()))
    }

    /// What the store remembers of a command id, if it was ever accepted.
    fn command(&self, command_id: Uuid) -> Result<Option<CommandRecord>, StoreError>;

    /// The head of the log.
    fn head(&self) -> Result<Head, StoreError>;

    /// The head's position only (a backend may answer it with one round trip less).
    fn head_position(&self) -> Result<u64, StoreError> {
        Ok(self.head()?.position)
    }

    /// Blocks until the head is beyond `position` or `timeout` passes; returns the head position.
    fn wait_beyond(&self, position: u64, timeout: Duration) -> Result<u64, StoreError>;

    /// A description for messages (`sqlite:./ledger-data/ledger.db`).
    fn describe(&self) -> String;

    /// Whether the store keeps the person index (lookup → pseudonym) in the log's own
    /// database, written with the events (`AppendRequest::person`). Stores that do not leave it
    /// to the key store.
    fn keeps_persons(&self) -> bool {
        false
    }

    /// The pseudonym the person index gives a lookup, if it holds it. Without `fresh`, a
    /// store may answer from what this process remembers: a person another process recorded
    /// a moment ago may be missing (recording them again is refused with `PersonTaken`; the
    /// command path looks again with `fresh` before a refusal), and one it erased may still be
    /// there. With `fresh`, the store itself is read.
    fn person_id(&self, lookup: &[u8; 32], fresh: bool) -> Result<Option<String>, StoreError> {
        let _ = (lookup, fresh);
        Ok(None)
    }

    /// Adds entries to the person index, keeping those it holds already, and records that
    /// the log up to `upto` was searched for people the index lacks (events imported from an
    /// export, or written by an older build). Durable on return.
    fn link_persons(&self, links: &[PersonLink], upto: u64) -> Result<(), StoreError> {
        let _ = (links, upto);
        Err(StoreError::Invalid(
            format!("{} keeps no person index", self.describe()).into(),
        ))
    }

    /// How far the log was searched for people the person index lacks (`link_persons`).
    fn person_index_upto(&self) -> Result<u64, StoreError> {
        Err(StoreError::Invalid(
            format!("{} keeps no person index", self.describe()).into(),
        ))
    }

    /// Every pseudonym the person index holds (for a search of the log after
    /// `person_index_upto`).
    fn person_ids(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        Err(StoreError::Invalid(
            format!("{} keeps no person index", self.describe()).into(),
        ))
    }

    /// Removes a person's entry from the person index so that no byte of it stays in the
    /// store's files (erasure). Durable on return; nothing to do when absent.
    fn forget_person(&self, lookup: &[u8; 32]) -> Result<(), StoreError> {
        let _ = lookup;
        Ok(())
    }

    /// `forget_person` by pseudonym (a restore applying an erasure journal, which holds no
    /// ref): every index entry naming `person_id` is removed, its bytes gone from the files.
    fn forget_person_id(&self, person_id: &str) -> Result<(), StoreError> {
        let _ = person_id;
        Ok(())
    }

    /// Whether the store keeps the log's Merkle tree (`tree_nodes` answers).
    fn keeps_tree(&self) -> bool {
        false
    }

    /// Removes the stored Merkle tree and builds it again from the events (`audit
    /// rebuild-tree`, after `audit verify` named it missing or damaged). A store that keeps no
    /// stored tree (the NATS log rebuilds it in memory at every open) has nothing to do.
    fn rebuild_tree(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// The lowest level of the Merkle tree the store keeps; lower subtrees are recomputed from
    /// the events when asked for (`audit verify` checks what is kept).
    fn tree_min_stored_level(&self) -> u32 {
        1
    }

    /// Events the stored Merkle tree covers: the head position, unless events were removed
    /// under it (`audit verify` reports that).
    fn tree_size(&self) -> Result<u64, StoreError> {
        self.head_position()
    }

    /// The hashes of complete subtrees of the log's RFC 9162 Merkle tree (see
    /// `envelope::merkle`), in the order asked. The tree always covers the head: a store keeps
    /// it in step with the log (on SQLite in the same transaction as the events). Only subtrees
    /// within the head position may be asked for. A store that keeps no tree refuses.
    fn tree_nodes(&self, ids: &[NodeId]) -> Result<Vec<MerkleHash>, StoreError> {
        let _ = ids;
        Err(StoreError::Invalid(
            format!(
                "{} keeps no Merkle tree: ask the ledger's own store (its sqlite: file or its JetStream log)",
                self.describe()
            )
            .into(),
        ))
    }

    /// The commands whose content hash is of version 1 (written by an older build, or imported
    /// from an export of one), with their first event's position and their hash: what the
    /// ledger's migration (`app::migrate_content_hashes`) rewrites.
    fn commands_of_hash_version_1(&self) -> Result<Vec<CommandRecord>, StoreError> {
        Ok(Vec::new())
    }

    /// Replaces the content hashes of these commands by their version 2, durably, so that no
    /// version-1 hash stays in the store's files (a store whose messages cannot be rewritten,
    /// the NATS log, keeps them in its index only).
    fn rehash_commands(&self, hashes: &[(Uuid, [u8; 32])]) -> Result<(), StoreError> {
        if hashes.is_empty() {
            return Ok(());
        }
        Err(StoreError::Invalid(
            format!("{} cannot rewrite content hashes", self.describe()).into(),
        ))
    }

    /// Appends events exactly as another store recorded them (ids, positions, times,
    /// hashes): `campaign-ledger import`. The first must be at the head + 1 with the head's
    /// hash as its `prev_hash`; every hash must verify, stream versions follow the store's and
    /// no command id may be known already. A call holds whole commands (a command's events
    /// are never split over two calls). Checked before anything is written; durable on
    /// return; returns the new head.
    fn import(&self, events: &[ImportedEvent]) -> Result<Head, StoreError> {
        let _ = events;
        Err(StoreError::Invalid(
            format!("{} cannot import events", self.describe()).into(),
        ))
    }
}

/// An append handed to the store: its outcome now, or once the store has made it durable.
pub enum PendingAppend {
    /// The outcome.
    Ready(Result<AppendResult, StoreError>),
    /// The outcome to come.
    Waiting(tokio::sync::oneshot::Receiver<Result<AppendResult, StoreError>>),
}

impl PendingAppend {
    /// Waits for the outcome without blocking a thread.
    pub async fn outcome(self) -> Result<AppendResult, StoreError> {
        match self {
            PendingAppend::Ready(r) => r,
            PendingAppend::Waiting(rx) => rx.await.unwrap_or_else(|_| {
                Err(StoreError::Unavailable(
                    "the writer stopped before the append was settled; retry: a command already recorded is reported as a duplicate".into(),
                ))
            }),
        }
    }
}

/// One event of an import: its envelope as exported and its command's content hash.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedEvent {
    /// The envelope, exactly as the exporting store recorded it.
    pub event: RecordedEvent,
    /// The content hash of the command that caused it (for permanent idempotency).
    pub content_hash: [u8; 32],
    /// Its version (1 in exports of older builds; see `CommandRecord::hash_version`).
    pub hash_version: u32,
}

/// Checks that `events` continue a log whose head is `head` (the chain's checks, see
/// `ChainCheck`), that each stream continues from its version in the store (`version_of`)
/// and that no command id is known (`known`) or split.
pub(crate) fn check_import(
    head: Head,
    head_recorded_at: &str,
    events: &[ImportedEvent],
    version_of: &mut dyn FnMut(&str) -> Result<u64, StoreError>,
    known: &mut dyn FnMut(Uuid) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let mut chain = ChainCheck::after(head.position, head.hash, head_recorded_at);
    let mut commands: std::collections::HashSet<Uuid> = std::collections::HashSet::new();
    let mut last_command: Option<Uuid> = None;
    for ie in events {
        let e = ie.event.as_ref();
        let bad = |position: u64, why: String| {
            StoreError::Invalid(format!(
                "the import's event at position {position} cannot follow: {why}; nothing was imported from this batch",
            ).into())
        };
        chain.check(&e).map_err(|b| bad(b.position, b.reason))?;
        // A stream's first event here continues the stream as the store holds it.
        if chain.first_seen(&e) {
            let v = version_of(e.stream_id)?;
            if e.stream_version != v + 1 {
                return Err(bad(
                    e.position,
                    format!(
                        "stream {} is at version {v}, and this event has version {}",
                        e.stream_id, e.stream_version
                    ),
                ));
            }
        }
        if last_command != Some(e.command_id) {
            if !commands.insert(e.command_id) || known(e.command_id)? {
                return Err(bad(
                    e.position,
                    format!("command {} is recorded already", e.command_id),
                ));
            }
            last_command = Some(e.command_id);
        }
    }
    Ok(())
}

/// Catch-up then live subscription from a position: no gap, no duplicate.
pub fn subscribe(store: Arc<dyn EventStore>, after: u64) -> Subscription {
    Subscription::new(store, after)
}

/// Opens a store from its URL: `sqlite:PATH`, or `nats://HOST:PORT[,…][?replicas=N]` (JetStream
/// as the log).
pub fn open(url: &str, clock: Arc<dyn Clock>) -> Result<Arc<dyn EventStore>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        if path.is_empty() {
            return Err(StoreError::Invalid("The store URL \"sqlite:\" names no file; use sqlite:PATH (for example sqlite:./ledger-data/ledger.db) or nats://HOST:PORT.".into()));
        }
        return Ok(Arc::new(SqliteStore::open(path, clock)?));
    }
    if url.starts_with("nats://") {
        return Ok(Arc::new(JetStreamStore::open(url, clock)?));
    }
    if url.starts_with("esdb://") {
        return Err(StoreError::Invalid(format!(
            "The store URL {url:?} names a backend this build does not include yet; use sqlite:PATH."
        ).into()));
    }
    Err(StoreError::Invalid(format!(
        "The store URL {url:?} is not understood; use sqlite:PATH (for example sqlite:./ledger-data/ledger.db) or nats://HOST:PORT."
    ).into()))
}

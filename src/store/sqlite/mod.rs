//! The embedded SQLite backend: one file, WAL, `synchronous=FULL` (a commit is on disk before
//! it is acknowledged), gapless global positions, a permanent command-id table, and group
//! commit: one writer thread takes every waiting append into one transaction and one fsync.
//!
//! The concurrency check costs no extra index: the `(stream_id, stream_version)` index that
//! stream reads need anyway is UNIQUE, so even a second process writing the same file cannot
//! slip an event in at a version already taken. The writer keeps a cache of stream versions and
//! drops it whenever the head moved under it (another process wrote).

use super::{
    format_occurred_at, format_recorded_at, AppendRequest, AppendResult, Clock, CommandRecord,
    EventStore, ExpectedVersion, Head, RecordedEvent, StoreError,
};
use super::{Cause, DataRef, ImportedEvent, PendingAppend, PersonLink};
use crate::envelope::merkle::{Frontier, Hash, NodeId};
use crate::envelope::{chain_hash, EventRef, GENESIS_HASH};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;
use uuid::Uuid;

mod errors;
mod hashes;
mod import;
mod persons;
mod rows;
mod schema;
mod tree;
mod writer;

use errors::sqlite_time;
use rows::{command_from_row, corrupt, event_from_row, hash_col, text};

use writer::Writer;

const EVENT_COLUMNS: &str =
    "position, event_id, stream_id, stream_version, event_type, schema_version, \
     occurred_at, recorded_at, command_id, correlation_id, actor, data, prev_hash, hash";

/// Where an append's outcome goes once durable: a thread waiting for it, or a task.
enum Reply {
    Thread(mpsc::SyncSender<Result<AppendResult, StoreError>>),
    Task(tokio::sync::oneshot::Sender<Result<AppendResult, StoreError>>),
}

impl Reply {
    fn send(self, outcome: Result<AppendResult, StoreError>) {
        // A caller that stopped waiting loses nothing: the outcome is in the store.
        match self {
            Reply::Thread(s) => {
                let _ = s.send(outcome);
            }
            Reply::Task(s) => {
                let _ = s.send(outcome);
            }
        }
    }
}

struct Job {
    request: AppendRequest,
    reply: Reply,
}

/// Head position, shared by the writer with waiting subscribers.
struct Notify {
    head: Mutex<u64>,
    /// The last position known to be on disk (fsynced by this process, or by a read that
    /// made sure of it): readers hand out nothing beyond it.
    durable: std::sync::atomic::AtomicU64,
    changed: Condvar,
    /// (group commits, appends in them), for diagnostics.
    commits: Mutex<(u64, u64)>,
}

/// The most appends waiting for the writer: beyond it a thread waits for a place and an
/// async caller is told to retry (`Unavailable`, HTTP 503). Far above what the writer takes
/// in one group (`MAX_BATCH`).
pub const QUEUE_LIMIT: usize = 16_384;

/// The SQLite event store.
pub struct SqliteStore {
    path: PathBuf,
    /// Shared by every appending thread (a read lock); `close` takes it away (the write lock).
    jobs: RwLock<Option<mpsc::SyncSender<Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    notify: Arc<Notify>,
    /// The person index in memory (`persons::Memo`), shared with the writer.
    persons: Arc<persons::Memo>,
}

fn open_conn(path: &Path, create: bool) -> Result<Connection, StoreError> {
    use crate::support::sqlite::{open, OpenError, Options};
    open(
        path,
        Options {
            create,
            synchronous: "FULL",
        },
    )
    .map_err(|e| {
        let message = match &e {
            OpenError::Unusable(e) => {
                format!("{} is not a usable SQLite database: {e}", path.display())
            }
            OpenError::Open(e) => format!("cannot open {}: {e}", path.display()),
            OpenError::Dir(e) | OpenError::Write(e) => {
                format!("cannot open {}: {e}", path.display())
            }
        };
        StoreError::Unavailable(Cause::with_source(message, e))
    })
}

impl SqliteStore {
    /// Opens (creating if needed) the store file at `path`, and starts its writer thread.
    pub fn open(path: impl AsRef<Path>, clock: Arc<dyn Clock>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::support::files::private_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(
                    format!("cannot create the directory {}: {e}", dir.display()).into(),
                )
            })?;
        }
        let conn = open_conn(&path, true)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match conn.execute_batch(&format!(
                "{}{}{}",
                schema::SCHEMA,
                tree::SCHEMA,
                persons::SCHEMA
            )) {
                Ok(()) => break,
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if f.code == rusqlite::ErrorCode::DatabaseBusy
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    return Err(StoreError::Unavailable(
                        format!("{} cannot hold a ledger: {e}", path.display()).into(),
                    ))
                }
            }
        }
        let format: String =
            conn.query_row("SELECT value FROM meta WHERE key='format'", [], |r| {
                r.get(0)
            })?;
        if format != "campaign-ledger/1" {
            return Err(StoreError::Invalid(
                format!(
                    "{} holds a ledger of format {format:?}, which this build cannot read.",
                    path.display()
                )
                .into(),
            ));
        }
        // A log of an older build: its command table gains the content hash's version (its rows
        // are of version 1 until the ledger's migration rewrites them: `hashes.rs`).
        hashes::add_version_column(&conn)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display()).into()))?;
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        let persons = Arc::new(persons::Memo::load(&conn)?);
        let mut writer = Writer::new(conn, clock, PathBuf::from(wal))?;
        writer.persons = Some(persons.clone());
        let notify = Arc::new(Notify {
            head: Mutex::new(writer.head.0),
            durable: std::sync::atomic::AtomicU64::new(0),
            changed: Condvar::new(),
            commits: Mutex::new((0, 0)),
        });
        writer.notify = Some(notify.clone());
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE_LIMIT);
        let handle = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the writer thread: {e}").into())
            })?;
        Ok(SqliteStore {
            path,
            jobs: RwLock::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            readers: Mutex::new(Vec::new()),
            notify,
            persons,
        })
    }

    /// Makes sure everything up to `position` is on disk before a reader hands it out: a
    /// group is readable once committed, a moment before the fsync that acknowledges it, and
    /// a relay or a projection must never pass on what a power cut could still take back.
    /// Usually the fsync thread got there first; otherwise one fsync of the WAL (from any
    /// process, it covers every frame written before it) settles it.
    fn ensure_durable(&self, position: u64) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        if position <= self.notify.durable.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let synced = match std::fs::File::open(&wal) {
            Ok(f) => f.sync_data(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::File::open(&self.path).and_then(|f| f.sync_data())
            }
            Err(e) => Err(e),
        };
        synced.map_err(|e| {
            StoreError::Unavailable(
                format!("the log could not be made durable before it is read (fsync: {e}); retry")
                    .into(),
            )
        })?;
        self.notify.durable.fetch_max(position, Ordering::SeqCst);
        Ok(())
    }

    /// Called with each position a read is about to hand on, in order: the first one beyond
    /// what is known durable makes the log durable (`ensure_durable`), which covers the rest
    /// of the read (its snapshot holds only what was committed before that fsync), and each
    /// later one is recorded as durable too. `synced` starts false for each read. One read
    /// transaction instead of a second one asking for the head first.
    fn durable_before(&self, position: u64, synced: &mut bool) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        if *synced {
            self.notify.durable.fetch_max(position, Ordering::SeqCst);
        } else if position > self.notify.durable.load(Ordering::SeqCst) {
            self.ensure_durable(position)?;
            *synced = true;
        }
        Ok(())
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = open_conn(&self.path, false)?;
                c.pragma_update(None, "query_only", true)?;
                c
            }
        };
        let out = f(&conn);
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
        out
    }

    /// Group commits so far and the appends they carried (average group size = appends / commits).
    pub fn commit_stats(&self) -> (u64, u64) {
        *self
            .notify
            .commits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Hands an append to the writer thread.
    fn queue(&self, request: AppendRequest, reply: Reply) -> Result<(), StoreError> {
        if request.events.is_empty() {
            return Err(StoreError::Invalid(
                "an append needs at least one event".into(),
            ));
        }
        let jobs = self.jobs.read().unwrap_or_else(|e| e.into_inner());
        let tx = jobs
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("the store is closed".into()))?;
        let stopped = || StoreError::Unavailable("the writer thread stopped".into());
        match reply {
            // A thread waits for its place in the queue (back-pressure to the caller)...
            Reply::Thread(_) => tx.send(Job { request, reply }).map_err(|_| stopped()),
            // ...an async task never blocks its runtime: a full queue is "retry shortly".
            Reply::Task(_) => tx.try_send(Job { request, reply }).map_err(|e| match e {
                mpsc::TrySendError::Full(_) => StoreError::Unavailable(
                    format!("the log's write queue is full ({QUEUE_LIMIT} appends waiting); retry in a moment").into(),
                ),
                mpsc::TrySendError::Disconnected(_) => stopped(),
            }),
        }
    }

    /// Stops the writer after the appends already queued; later appends fail with `Unavailable`.
    pub fn close(&self) {
        self.jobs.write().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
    }
}

impl EventStore for SqliteStore {
    fn append(&self, request: AppendRequest) -> Result<AppendResult, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.queue(request, Reply::Thread(reply))?;
        answer
            .recv()
            .map_err(|_| StoreError::Unavailable("the writer thread stopped".into()))?
    }

    fn start_append(&self, request: AppendRequest) -> PendingAppend {
        let (reply, answer) = tokio::sync::oneshot::channel();
        match self.queue(request, Reply::Task(reply)) {
            Ok(()) => PendingAppend::Waiting(answer),
            Err(e) => PendingAppend::Ready(Err(e)),
        }
    }

    fn read_stream(&self, stream_id: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        self.with_reader(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ?1 ORDER BY stream_version"
            ))?;
            let rows = st.query_map([stream_id], event_from_row)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(corrupt)
        })
    }

    fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.with_reader(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE position > ?1 ORDER BY position LIMIT ?2"
            ))?;
            let rows = st.query_map(params![after as i64, limit as i64], event_from_row)?;
            let events = rows.collect::<Result<Vec<_>, _>>().map_err(corrupt)?;
            if let Some(last) = events.last() {
                self.ensure_durable(last.position)?;
            }
            Ok(events)
        })
    }

    fn scan(
        &self,
        after: u64,
        to: u64,
        f: &mut dyn FnMut(EventRef<'_>) -> bool,
    ) -> Result<u64, StoreError> {
        self.with_reader(|c| {
            let mut synced = false;
            let mut st = c.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE position > ?1 AND position <= ?2 ORDER BY position"
            ))?;
            let mut rows = st.query(params![after as i64, to.min(i64::MAX as u64) as i64])?;
            let mut seen = 0;
            let blob = |row: &rusqlite::Row, i: usize| -> Result<[u8; 32], StoreError> {
                let v = row.get_ref(i)?.as_blob().map_err(|e| StoreError::Corrupt(e.to_string().into()))?;
                v.try_into().map_err(|_| StoreError::Corrupt(format!("column {i} is not a 32-byte hash").into()))
            };
            let uuid = |row: &rusqlite::Row, i: usize| -> Result<Uuid, StoreError> {
                Uuid::parse_str(text(row, i)?).map_err(|e| StoreError::Corrupt(format!("bad uuid in column {i}: {e}").into()))
            };
            while let Some(row) = rows.next()? {
                let correlation = row.get_ref(9)?;
                let position = row.get::<_, i64>(0)? as u64;
                self.durable_before(position, &mut synced)?;
                let e = EventRef {
                    position,
                    event_id: uuid(row, 1)?,
                    stream_id: text(row, 2)?,
                    stream_version: row.get::<_, i64>(3)? as u64,
                    event_type: text(row, 4)?,
                    schema_version: row.get::<_, i64>(5)? as u32,
                    occurred_at: text(row, 6)?,
                    recorded_at: text(row, 7)?,
                    command_id: uuid(row, 8)?,
                    correlation_id: match correlation {
                        rusqlite::types::ValueRef::Null => None,
                        v => Some(v.as_str().map_err(|e| StoreError::Corrupt(e.to_string().into()))?),
                    },
                    actor: text(row, 10)?,
                    data: text(row, 11)?,
                    prev_hash: blob(row, 12)?,
                    hash: blob(row, 13)?,
                };
                seen += 1;
                if !f(e) {
                    break;
                }
            }
            Ok(seen)
        })
    }

    fn scan_data(
        &self,
        after: u64,
        to: u64,
        f: &mut dyn FnMut(DataRef<'_>) -> bool,
    ) -> Result<u64, StoreError> {
        self.with_reader(|c| {
            let mut synced = false;
            let mut st = c.prepare_cached(
                "SELECT position, stream_id, event_type, occurred_at, recorded_at, data, hash, schema_version \
                 FROM events WHERE position > ?1 AND position <= ?2 ORDER BY position",
            )?;
            let mut rows = st.query(params![after as i64, to.min(i64::MAX as u64) as i64])?;
            let mut seen = 0;
            while let Some(row) = rows.next()? {
                let hash: [u8; 32] = row
                    .get_ref(6)?
                    .as_blob()
                    .map_err(|e| StoreError::Corrupt(e.to_string().into()))?
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("hash is not 32 bytes".into()))?;
                let position = row.get::<_, i64>(0)? as u64;
                self.durable_before(position, &mut synced)?;
                let e = DataRef {
                    position,
                    stream_id: text(row, 1)?,
                    event_type: text(row, 2)?,
                    schema_version: row.get::<_, i64>(7)? as u32,
                    occurred_at: text(row, 3)?,
                    recorded_at: text(row, 4)?,
                    data: text(row, 5)?,
                    hash,
                };
                seen += 1;
                if !f(e) {
                    break;
                }
            }
            Ok(seen)
        })
    }

    fn command(&self, command_id: Uuid) -> Result<Option<CommandRecord>, StoreError> {
        self.with_reader(|c| {
            let mut st = c.prepare_cached(
                "SELECT command_id, content_hash, stream_id, first_position, last_position, recorded_at, hash_version \
                 FROM commands WHERE command_id = ?1",
            )?;
            st.query_row([command_id.to_string()], command_from_row).optional().map_err(corrupt)
        })
    }

    fn commands_of_hash_version_1(&self) -> Result<Vec<CommandRecord>, StoreError> {
        self.with_reader(hashes::of_version_1)
    }

    fn rehash_commands(&self, hashes: &[(Uuid, [u8; 32])]) -> Result<(), StoreError> {
        if hashes.is_empty() {
            return Ok(());
        }
        let conn = open_conn(&self.path, false)?;
        hashes::rewrite(&conn, &self.path, hashes)
    }

    fn keeps_tree(&self) -> bool {
        true
    }

    fn tree_min_stored_level(&self) -> u32 {
        tree::MIN_STORED_LEVEL
    }

    fn tree_size(&self) -> Result<u64, StoreError> {
        self.with_reader(tree::size)
    }

    fn rebuild_tree(&self) -> Result<(), StoreError> {
        let conn = open_conn(&self.path, false)?;
        let head: i64 =
            conn.query_row("SELECT COALESCE(MAX(position), 0) FROM events", [], |r| {
                r.get(0)
            })?;
        tree::rebuild(&conn, head as u64)
    }

    fn tree_nodes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, StoreError> {
        self.with_reader(|c| tree::read_nodes(c, ids))
    }

    fn head(&self) -> Result<Head, StoreError> {
        self.with_reader(|c| {
            let head = c
                .query_row(
                    "SELECT position, hash FROM events ORDER BY position DESC LIMIT 1",
                    [],
                    |r| {
                        Ok(Head {
                            position: r.get::<_, i64>(0)? as u64,
                            hash: hash_col(r, 1)?,
                        })
                    },
                )
                .optional()
                .map_err(corrupt)?;
            Ok(head.unwrap_or(Head {
                position: 0,
                hash: GENESIS_HASH,
            }))
        })
    }

    fn wait_beyond(&self, position: u64, timeout: Duration) -> Result<u64, StoreError> {
        // In-process commits wake us at once; commits by another process are seen by polling.
        let slice = timeout.min(Duration::from_millis(50));
        let guard = self.notify.head.lock().unwrap_or_else(|e| e.into_inner());
        if *guard > position {
            return Ok(*guard);
        }
        let (guard, _) = self
            .notify
            .changed
            .wait_timeout_while(guard, slice, |h| *h <= position)
            .unwrap_or_else(|e| e.into_inner());
        if *guard > position {
            return Ok(*guard);
        }
        drop(guard);
        Ok(self.head()?.position)
    }

    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    fn appends_async(&self) -> bool {
        true
    }

    fn keeps_persons(&self) -> bool {
        true
    }

    fn person_id(&self, lookup: &[u8; 32], fresh: bool) -> Result<Option<String>, StoreError> {
        self.find_person(lookup, fresh)
    }

    fn link_persons(&self, links: &[PersonLink], upto: u64) -> Result<(), StoreError> {
        self.link_all(links, upto)
    }

    fn person_index_upto(&self) -> Result<u64, StoreError> {
        self.with_reader(|c| Ok(persons::upto(c)?))
    }

    fn person_ids(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        self.with_reader(|c| Ok(persons::ids(c)?))
    }

    fn forget_person_id(&self, person_id: &str) -> Result<(), StoreError> {
        self.forget_id(person_id)
    }

    fn forget_person(&self, lookup: &[u8; 32]) -> Result<(), StoreError> {
        self.forget(lookup)
    }

    fn import(&self, events: &[ImportedEvent]) -> Result<Head, StoreError> {
        self.import_events(events)
    }
}

#[cfg(test)]
mod tests;

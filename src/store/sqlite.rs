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
use super::{DataRef, ImportedEvent, PreCommit};
use crate::envelope::{chain_hash, EventRef, GENESIS_HASH};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;
use uuid::Uuid;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    position       INTEGER PRIMARY KEY,
    event_id       TEXT NOT NULL,
    stream_id      TEXT NOT NULL,
    stream_version INTEGER NOT NULL,
    event_type     TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    occurred_at    TEXT NOT NULL,
    recorded_at    TEXT NOT NULL,
    command_id     TEXT NOT NULL,
    correlation_id TEXT,
    actor          TEXT NOT NULL,
    data           TEXT NOT NULL,
    prev_hash      BLOB NOT NULL,
    hash           BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_stream ON events(stream_id, stream_version);
CREATE TABLE IF NOT EXISTS commands (
    command_id     TEXT PRIMARY KEY,
    content_hash   BLOB NOT NULL,
    stream_id      TEXT NOT NULL,
    first_position INTEGER NOT NULL,
    last_position  INTEGER NOT NULL,
    recorded_at    TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS events_append_only_u BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_append_only_d BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS commands_append_only_u BEFORE UPDATE ON commands
    BEGIN SELECT RAISE(ABORT, 'the command table is append-only'); END;
CREATE TRIGGER IF NOT EXISTS commands_append_only_d BEFORE DELETE ON commands
    BEGIN SELECT RAISE(ABORT, 'the command table is append-only'); END;
INSERT OR IGNORE INTO meta(key, value) VALUES ('format', 'campaign-ledger/1');
"#;

const EVENT_COLUMNS: &str =
    "position, event_id, stream_id, stream_version, event_type, schema_version, \
     occurred_at, recorded_at, command_id, correlation_id, actor, data, prev_hash, hash";

type Reply = mpsc::SyncSender<Result<AppendResult, StoreError>>;

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

/// The SQLite event store.
pub struct SqliteStore {
    path: PathBuf,
    /// Shared by every appending thread (a read lock); `close` takes it away (the write lock).
    jobs: RwLock<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Mutex<Vec<Connection>>,
    notify: Arc<Notify>,
    pre_commit: Arc<RwLock<Vec<PreCommit>>>,
}

fn sqlite_time(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::ReadOnly
            ) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Sqlite(e),
    }
}

fn open_conn(path: &Path, create: bool) -> Result<Connection, StoreError> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // Two processes creating the same file at once: switching a new file to WAL can answer
    // "busy" without waiting (SQLite avoids a deadlock there), so it is retried for 10 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Ok(()) => break,
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                return Err(StoreError::Unavailable(format!(
                    "{} is not a usable SQLite database: {e}",
                    path.display()
                )))
            }
        }
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

fn uuid_col(row: &rusqlite::Row, i: usize) -> rusqlite::Result<Uuid> {
    let s: String = row.get(i)?;
    Uuid::parse_str(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn hash_col(row: &rusqlite::Row, i: usize) -> rusqlite::Result<[u8; 32]> {
    let v: Vec<u8> = row.get(i)?;
    v.try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Blob,
            "hash is not 32 bytes".into(),
        )
    })
}

fn event_from_row(row: &rusqlite::Row) -> rusqlite::Result<RecordedEvent> {
    Ok(RecordedEvent {
        position: row.get::<_, i64>(0)? as u64,
        event_id: uuid_col(row, 1)?,
        stream_id: row.get(2)?,
        stream_version: row.get::<_, i64>(3)? as u64,
        event_type: row.get(4)?,
        schema_version: row.get::<_, i64>(5)? as u32,
        occurred_at: row.get(6)?,
        recorded_at: row.get(7)?,
        command_id: uuid_col(row, 8)?,
        correlation_id: row.get(9)?,
        actor: row.get(10)?,
        data: row.get(11)?,
        prev_hash: hash_col(row, 12)?,
        hash: hash_col(row, 13)?,
    })
}

fn command_from_row(row: &rusqlite::Row) -> rusqlite::Result<CommandRecord> {
    Ok(CommandRecord {
        command_id: uuid_col(row, 0)?,
        content_hash: hash_col(row, 1)?,
        stream_id: row.get(2)?,
        first_position: row.get::<_, i64>(3)? as u64,
        last_position: row.get::<_, i64>(4)? as u64,
        recorded_at: row.get(5)?,
    })
}

fn text<'r>(row: &'r rusqlite::Row, i: usize) -> Result<&'r str, StoreError> {
    let v = row.get_ref(i)?;
    v.as_str()
        .map_err(|e| StoreError::Corrupt(format!("column {i} is not text: {e}")))
}

fn corrupt(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => {
            StoreError::Corrupt(e.to_string())
        }
        other => sqlite_time(other),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store file at `path`, and starts its writer thread.
    pub fn open(path: impl AsRef<Path>, clock: Arc<dyn Clock>) -> Result<SqliteStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot create the directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let conn = open_conn(&path, true)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match conn.execute_batch(SCHEMA) {
                Ok(()) => break,
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if f.code == rusqlite::ErrorCode::DatabaseBusy
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    return Err(StoreError::Unavailable(format!(
                        "{} cannot hold a ledger: {e}",
                        path.display()
                    )))
                }
            }
        }
        let format: String =
            conn.query_row("SELECT value FROM meta WHERE key='format'", [], |r| {
                r.get(0)
            })?;
        if format != "campaign-ledger/1" {
            return Err(StoreError::Invalid(format!(
                "{} holds a ledger of format {format:?}, which this build cannot read.",
                path.display()
            )));
        }
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        let mut writer = Writer::new(conn, clock, PathBuf::from(wal))?;
        let notify = Arc::new(Notify {
            head: Mutex::new(writer.head.0),
            durable: std::sync::atomic::AtomicU64::new(0),
            changed: Condvar::new(),
            commits: Mutex::new((0, 0)),
        });
        writer.notify = Some(notify.clone());
        let pre_commit: Arc<RwLock<Vec<PreCommit>>> = Arc::new(RwLock::new(Vec::new()));
        writer.pre_commit = pre_commit.clone();
        let (tx, rx) = mpsc::channel::<Job>();
        let handle = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer thread: {e}")))?;
        Ok(SqliteStore {
            path,
            jobs: RwLock::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            readers: Mutex::new(Vec::new()),
            notify,
            pre_commit,
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
            StoreError::Unavailable(format!(
                "the log could not be made durable before it is read (fsync: {e}); retry"
            ))
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
        if request.events.is_empty() {
            return Err(StoreError::Invalid(
                "an append needs at least one event".into(),
            ));
        }
        let (reply, answer) = mpsc::sync_channel(1);
        {
            let jobs = self.jobs.read().unwrap_or_else(|e| e.into_inner());
            let tx = jobs
                .as_ref()
                .ok_or_else(|| StoreError::Unavailable("the store is closed".into()))?;
            tx.send(Job { request, reply })
                .map_err(|_| StoreError::Unavailable("the writer thread stopped".into()))?;
        }
        answer
            .recv()
            .map_err(|_| StoreError::Unavailable("the writer thread stopped".into()))?
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
                let v = row.get_ref(i)?.as_blob().map_err(|e| StoreError::Corrupt(e.to_string()))?;
                v.try_into().map_err(|_| StoreError::Corrupt(format!("column {i} is not a 32-byte hash")))
            };
            let uuid = |row: &rusqlite::Row, i: usize| -> Result<Uuid, StoreError> {
                Uuid::parse_str(text(row, i)?).map_err(|e| StoreError::Corrupt(format!("bad uuid in column {i}: {e}")))
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
                        v => Some(v.as_str().map_err(|e| StoreError::Corrupt(e.to_string()))?),
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
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?
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
                "SELECT command_id, content_hash, stream_id, first_position, last_position, recorded_at \
                 FROM commands WHERE command_id = ?1",
            )?;
            st.query_row([command_id.to_string()], command_from_row).optional().map_err(corrupt)
        })
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

    fn set_pre_commit(&self, hook: PreCommit) -> bool {
        self.pre_commit
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(hook);
        true
    }

    fn import(&self, events: &[ImportedEvent]) -> Result<Head, StoreError> {
        // A connection of its own, in one immediate transaction: the writer thread waits
        // for it and, at its next commit, sees the head moved and reloads it.
        let mut conn = open_conn(&self.path, false)?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sqlite_time)?;
        let (position, hash, recorded_at) = tx
            .query_row(
                "SELECT position, hash, recorded_at FROM events ORDER BY position DESC LIMIT 1",
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        hash_col(r, 1)?,
                        r.get::<_, String>(2)?,
                    ))
                },
            )
            .optional()
            .map_err(corrupt)?
            .unwrap_or((0, GENESIS_HASH, String::new()));
        super::check_import(
            Head { position, hash },
            &recorded_at,
            events,
            &mut |stream| {
                tx.prepare_cached(
                    "SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE stream_id = ?1",
                )?
                .query_row([stream], |r| r.get::<_, i64>(0))
                .map(|v| v as u64)
                .map_err(StoreError::from)
            },
            &mut |id| {
                tx.prepare_cached("SELECT 1 FROM commands WHERE command_id = ?1")?
                    .query_row([id.to_string()], |_| Ok(()))
                    .optional()
                    .map(|f| f.is_some())
                    .map_err(StoreError::from)
            },
        )?;
        {
            let mut ins = tx.prepare_cached(&format!(
                "INSERT INTO events ({EVENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
            ))?;
            let mut cmd = tx.prepare_cached(
                "INSERT INTO commands (command_id, content_hash, stream_id, first_position, last_position, recorded_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for (i, ie) in events.iter().enumerate() {
                let e = &ie.event;
                ins.execute(params![
                    e.position as i64,
                    e.event_id.to_string(),
                    e.stream_id,
                    e.stream_version as i64,
                    e.event_type,
                    e.schema_version as i64,
                    e.occurred_at,
                    e.recorded_at,
                    e.command_id.to_string(),
                    e.correlation_id,
                    e.actor,
                    e.data,
                    &e.prev_hash[..],
                    &e.hash[..],
                ])?;
                let first = i == 0 || events[i - 1].event.command_id != e.command_id;
                if first {
                    let last = events[i..]
                        .iter()
                        .take_while(|x| x.event.command_id == e.command_id)
                        .last()
                        .map_or(e.position, |x| x.event.position);
                    cmd.execute(params![
                        e.command_id.to_string(),
                        &ie.content_hash[..],
                        e.stream_id,
                        e.position as i64,
                        last as i64,
                        e.recorded_at,
                    ])?;
                }
            }
        }
        // synchronous=FULL on this connection: the commit is on disk when it returns.
        tx.commit().map_err(sqlite_time)?;
        let head = match events.last() {
            Some(e) => Head {
                position: e.event.position,
                hash: e.event.hash,
            },
            None => Head { position, hash },
        };
        self.notify
            .durable
            .fetch_max(head.position, std::sync::atomic::Ordering::SeqCst);
        *self.notify.head.lock().unwrap_or_else(|e| e.into_inner()) = head.position;
        self.notify.changed.notify_all();
        Ok(head)
    }
}

/// What became of one append inside a group.
enum Step {
    Done(Result<AppendResult, StoreError>),
    /// An insert hit a constraint: the group's transaction must be rolled back.
    Constraint,
    /// Anything else: the whole group fails.
    Failed(StoreError),
}

/// A committed group on its way to the fsync thread.
struct Synced {
    replies: Vec<(Reply, Result<AppendResult, StoreError>)>,
    head: u64,
}

impl Synced {
    fn fail(self, why: &str) {
        for (reply, _) in self.replies {
            let _ = reply.send(Err(StoreError::Unavailable(why.to_string())));
        }
    }
}

/// Makes committed groups durable: one fsync of the WAL covers every group committed before
/// it; only then are their appends acknowledged and subscribers woken.
fn sync_loop(rx: mpsc::Receiver<Synced>, wal: PathBuf, notify: Option<Arc<Notify>>) {
    let mut file: Option<std::fs::File> = None;
    while let Ok(first) = rx.recv() {
        let mut groups = vec![first];
        while let Ok(g) = rx.try_recv() {
            groups.push(g);
        }
        let synced = (|| -> std::io::Result<()> {
            if file.is_none() {
                file = Some(std::fs::OpenOptions::new().read(true).open(&wal)?);
            }
            file.as_ref().expect("opened").sync_data()
        })();
        if let Err(e) = &synced {
            file = None;
            tracing::error!(error = %e, wal = %wal.display(), "fsync of the WAL failed; appends are refused");
        }
        let head = groups.last().map(|g| g.head).unwrap_or(0);
        for g in groups {
            match &synced {
                Ok(()) => {
                    for (reply, result) in g.replies {
                        let _ = reply.send(result);
                    }
                }
                Err(e) => g.fail(&format!("the commit could not be made durable (fsync: {e}); retry: a command already recorded is reported as a duplicate")),
            }
        }
        if synced.is_ok() {
            if let Some(n) = &notify {
                n.durable
                    .fetch_max(head, std::sync::atomic::Ordering::SeqCst);
                *n.head.lock().unwrap_or_else(|e| e.into_inner()) = head;
                n.changed.notify_all();
            }
        }
    }
}

/// The single writer: takes every queued append into one transaction (group commit).
struct Writer {
    conn: Connection,
    wal_path: PathBuf,
    clock: Arc<dyn Clock>,
    /// Position, hash and commit time of the last event.
    head: (u64, [u8; 32], String),
    versions: HashMap<String, u64>,
    notify: Option<Arc<Notify>>,
    pre_commit: Arc<RwLock<Vec<PreCommit>>>,
}

const MAX_BATCH: usize = 512;
const LINGER: Duration = Duration::from_micros(300);
const MAX_CACHED_STREAMS: usize = 200_000;

impl Writer {
    fn new(
        conn: Connection,
        clock: Arc<dyn Clock>,
        wal_path: PathBuf,
    ) -> Result<Writer, StoreError> {
        // The commit itself does not fsync; the fsync thread does, before acknowledging
        // (SQLite still syncs around checkpoints).
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Fewer, larger checkpoints: pages written many times are copied to the file once.
        conn.pragma_update(None, "wal_autocheckpoint", 8192)?;
        let mut w = Writer {
            conn,
            wal_path,
            clock,
            head: (0, GENESIS_HASH, String::new()),
            versions: HashMap::new(),
            notify: None,
            pre_commit: Arc::new(RwLock::new(Vec::new())),
        };
        w.head = w.read_head()?;
        Ok(w)
    }

    fn read_head(&self) -> Result<(u64, [u8; 32], String), StoreError> {
        let head = self
            .conn
            .prepare_cached(
                "SELECT position, hash, recorded_at FROM events ORDER BY position DESC LIMIT 1",
            )?
            .query_row([], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    hash_col(r, 1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .optional()
            .map_err(corrupt)?;
        Ok(head.unwrap_or((0, GENESIS_HASH, String::new())))
    }

    fn run(mut self, rx: mpsc::Receiver<Job>) {
        // Pipelined group commit: the writer commits group k+1 while the syncer makes group k
        // durable; appends are acknowledged only after the fsync that covers them.
        // Bounded: while one committed group waits for the fsync, the writer does not commit
        // another but lets appends queue up, so groups grow to what one fsync can carry.
        let (sync_tx, sync_rx) = mpsc::sync_channel::<Synced>(1);
        let wal = self.wal_path.clone();
        let notify = self.notify.clone();
        let syncer = std::thread::Builder::new()
            .name("ledger-fsync".into())
            .spawn(move || sync_loop(sync_rx, wal, notify))
            .ok();
        // Adaptive group size: when the last group carried many appends, many clients are
        // cycling; wait a little (at most LINGER) for most of them before committing, so one
        // commit and one fsync carry them all. A lone writer never waits.
        let mut last_group = 1usize;
        while let Ok(first) = rx.recv() {
            let mut jobs = vec![first];
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            let target = (last_group * 3 / 4).min(MAX_BATCH);
            if jobs.len() < target {
                let deadline = std::time::Instant::now() + LINGER;
                while jobs.len() < target {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    match rx.recv_timeout(left) {
                        Ok(j) => jobs.push(j),
                        Err(_) => break,
                    }
                }
            }
            last_group = jobs.len();
            let _span = tracing::debug_span!("group_commit", appends = jobs.len()).entered();
            // What must be durable before these appends (new person keys), now: every job
            // here was queued after its own work was done.
            let hooks = self
                .pre_commit
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let head = self.head.0;
            let results = match hooks.iter().try_for_each(|h| h(head)) {
                Ok(()) => self.commit_batch(&jobs),
                Err(e) => {
                    let msg = format!("nothing was recorded: {e}");
                    jobs.iter()
                        .map(|_| Err(StoreError::Unavailable(msg.clone())))
                        .collect()
                }
            };
            let replies: Vec<(Reply, Result<AppendResult, StoreError>)> =
                jobs.into_iter().map(|j| j.reply).zip(results).collect();
            let group = Synced {
                replies,
                head: self.head.0,
            };
            match &syncer {
                Some(_) => {
                    if let Err(mpsc::SendError(group)) = sync_tx.send(group) {
                        group.fail("the fsync thread stopped");
                    }
                }
                None => group.fail("the fsync thread could not start"),
            }
        }
        drop(sync_tx);
        if let Some(h) = syncer {
            let _ = h.join();
        }
        // Checkpoint on close so that the file alone holds everything.
        let _ = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
    }

    fn commit_batch(&mut self, jobs: &[Job]) -> Vec<Result<AppendResult, StoreError>> {
        let mut settled: Vec<Option<Result<AppendResult, StoreError>>> =
            (0..jobs.len()).map(|_| None).collect();
        loop {
            match self.try_commit_batch(jobs, &mut settled) {
                Ok(true) => break,
                Ok(false) => continue, // one append hit a constraint: settled, retry the others
                Err(e) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    self.versions.clear();
                    if let Ok(h) = self.read_head() {
                        self.head = h;
                    }
                    tracing::error!(error = %e, "group commit failed; every append in it is refused");
                    let msg = e.to_string();
                    for slot in settled.iter_mut().filter(|s| s.is_none()) {
                        *slot = Some(Err(StoreError::Unavailable(msg.clone())));
                    }
                    break;
                }
            }
        }
        if let Some(n) = &self.notify {
            let mut c = n.commits.lock().unwrap_or_else(|e| e.into_inner());
            c.0 += 1;
            c.1 += jobs.len() as u64;
        }
        settled
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StoreError::Unavailable("not run".into()))))
            .collect()
    }

    /// One transaction over the unsettled appends. Returns `Ok(false)` when an insert hit a
    /// constraint (a concurrent writer took the version, or the command id is known): the
    /// transaction is rolled back, that append is settled, and the caller runs the rest again.
    fn try_commit_batch(
        &mut self,
        jobs: &[Job],
        settled: &mut [Option<Result<AppendResult, StoreError>>],
    ) -> Result<bool, StoreError> {
        self.conn
            .prepare_cached("BEGIN IMMEDIATE")?
            .execute([])
            .map_err(sqlite_time)?;
        let on_disk = self.read_head()?;
        if on_disk.0 != self.head.0 || on_disk.1 != self.head.1 {
            // Another process wrote: our version cache may be stale.
            self.versions.clear();
            self.head = on_disk;
        }
        if self.versions.len() > MAX_CACHED_STREAMS {
            self.versions.clear();
        }
        let saved_head = self.head.clone();
        let now = format_recorded_at(self.clock.now());
        let recorded_at = if now > self.head.2 {
            now
        } else {
            self.head.2.clone()
        };
        let mut tentative: Vec<(usize, Result<AppendResult, StoreError>)> =
            Vec::with_capacity(jobs.len());
        let mut batch_ids: HashMap<Uuid, CommandRecord> = HashMap::new();
        let mut touched: HashSet<String> = HashSet::new();
        for (i, job) in jobs.iter().enumerate() {
            if settled[i].is_some() {
                continue;
            }
            match self.append_one(&job.request, &recorded_at, &mut batch_ids, &mut touched) {
                Step::Done(r) => tentative.push((i, r)),
                Step::Constraint => {
                    self.conn.prepare_cached("ROLLBACK")?.execute([])?;
                    self.head = saved_head;
                    for s in &touched {
                        self.versions.remove(s);
                    }
                    self.versions.remove(&job.request.stream_id);
                    settled[i] = Some(self.explain_constraint(&job.request));
                    return Ok(false);
                }
                Step::Failed(e) => return Err(e),
            }
        }
        if let Err(e) = self.conn.prepare_cached("COMMIT")?.execute([]) {
            self.head = saved_head;
            for s in touched {
                self.versions.remove(&s);
            }
            return Err(sqlite_time(e));
        }
        for (i, r) in tentative {
            settled[i] = Some(r);
        }
        Ok(true)
    }

    /// After a constraint failure (outside any transaction): a known command id is a
    /// duplicate, anything else a conflict on the stream.
    fn explain_constraint(&mut self, req: &AppendRequest) -> Result<AppendResult, StoreError> {
        if let Some(rec) = self.command_record(req.command.command_id)? {
            return Ok(AppendResult::Duplicate(rec));
        }
        let actual = self.stream_version(&req.stream_id)?;
        Err(StoreError::Conflict {
            stream: req.stream_id.clone(),
            expected: match req.expected {
                ExpectedVersion::Exact(v) => v,
                ExpectedVersion::Any => actual,
            },
            actual,
        })
    }

    fn stream_version(&mut self, stream: &str) -> Result<u64, StoreError> {
        if let Some(v) = self.versions.get(stream) {
            return Ok(*v);
        }
        let v: i64 = self
            .conn
            .prepare_cached(
                "SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE stream_id = ?1",
            )?
            .query_row([stream], |r| r.get(0))?;
        self.versions.insert(stream.to_string(), v as u64);
        Ok(v as u64)
    }

    fn append_one(
        &mut self,
        req: &AppendRequest,
        recorded_at: &str,
        batch_ids: &mut HashMap<Uuid, CommandRecord>,
        touched: &mut HashSet<String>,
    ) -> Step {
        let id = req.command.command_id;
        if let Some(rec) = batch_ids.get(&id) {
            return Step::Done(Ok(AppendResult::Duplicate(rec.clone())));
        }
        // A new stream needs no lookup: the unique (stream, version) index refuses version 1
        // if the stream exists after all. A known id is caught by the commands primary key.
        let current = match (self.versions.get(&req.stream_id), req.expected) {
            (Some(v), _) => *v,
            (None, ExpectedVersion::Exact(0)) => 0,
            _ => match self.stream_version(&req.stream_id) {
                Ok(v) => v,
                Err(e) => return Step::Failed(e),
            },
        };
        if let ExpectedVersion::Exact(expected) = req.expected {
            if expected != current {
                return Step::Done(Err(StoreError::Conflict {
                    stream: req.stream_id.clone(),
                    expected,
                    actual: current,
                }));
            }
        }
        match self.insert_events(req, current, recorded_at) {
            Ok(rec) => {
                self.versions
                    .insert(req.stream_id.clone(), current + req.events.len() as u64);
                touched.insert(req.stream_id.clone());
                batch_ids.insert(id, rec.clone());
                Step::Done(Ok(AppendResult::Committed(rec)))
            }
            Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _)))
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Step::Constraint
            }
            Err(e) => Step::Failed(e),
        }
    }

    fn command_record(&self, id: Uuid) -> Result<Option<CommandRecord>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT command_id, content_hash, stream_id, first_position, last_position, recorded_at \
                 FROM commands WHERE command_id = ?1",
            )?
            .query_row([id.to_string()], command_from_row)
            .optional()
            .map_err(corrupt)
    }

    fn insert_events(
        &mut self,
        req: &AppendRequest,
        current: u64,
        recorded_at: &str,
    ) -> Result<CommandRecord, StoreError> {
        let actor = req.command.actor.to_json();
        let first_position = self.head.0 + 1;
        let command_id = req.command.command_id;
        let rec = CommandRecord {
            command_id,
            content_hash: req.command.content_hash,
            stream_id: req.stream_id.clone(),
            first_position,
            last_position: self.head.0 + req.events.len() as u64,
            recorded_at: recorded_at.to_string(),
        };
        self.conn
            .prepare_cached(
                "INSERT INTO commands (command_id, content_hash, stream_id, first_position, last_position, recorded_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                command_id.to_string(),
                &rec.content_hash[..],
                rec.stream_id,
                rec.first_position as i64,
                rec.last_position as i64,
                rec.recorded_at
            ])?;
        let mut st = self.conn.prepare_cached(&format!(
            "INSERT INTO events ({EVENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
        ))?;
        for (i, ev) in req.events.iter().enumerate() {
            let position = self.head.0 + 1;
            let event_id = Uuid::now_v7();
            let occurred_at = format_occurred_at(ev.occurred_at);
            let mut r = EventRef {
                position,
                event_id,
                stream_id: &req.stream_id,
                stream_version: current + 1 + i as u64,
                event_type: &ev.event_type,
                schema_version: ev.schema_version,
                occurred_at: &occurred_at,
                recorded_at,
                command_id,
                correlation_id: req.command.correlation_id.as_deref(),
                actor: &actor,
                data: &ev.data,
                prev_hash: self.head.1,
                hash: GENESIS_HASH,
            };
            r.hash = chain_hash(&self.head.1, &r);
            st.execute(params![
                position as i64,
                event_id.to_string(),
                r.stream_id,
                r.stream_version as i64,
                r.event_type,
                r.schema_version as i64,
                r.occurred_at,
                r.recorded_at,
                command_id.to_string(),
                r.correlation_id,
                r.actor,
                r.data,
                &r.prev_hash[..],
                &r.hash[..],
            ])?;
            self.head = (position, r.hash, recorded_at.to_string());
        }
        Ok(rec)
    }
}

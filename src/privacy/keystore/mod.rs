//! The key store: one data key per person, kept apart from the log (its own SQLite file,
//! `<store>.keys.db` by default) so that destroying a key erases the person's data from
//! every copy of the log at once (crypto-shredding) while the log itself, and its hash
//! chain, stay as they were.
//!
//! - A person is found by `lookup = HMAC-SHA256(lookup key, person_ref)` (the ref itself is
//!   never stored) and has a `person_id` (32 hex digits, at least 64 bits of them random: the
//!   pseudonym the log uses, `person/<person_id>`) and a random 256-bit data key.
//! - Each data key is stored wrapped (AES-256-GCM under a key derived from the master key,
//!   bound to its person_id). The master key is given at start-up (`LEDGER_MASTER_KEY`, or
//!   a key file) and never stored here; a check value tells a wrong master key at once.
//! - Erasure deletes the person's row with `secure_delete` on and a rollback journal, so the
//!   wrapped key's bytes are overwritten in the file, not merely unlinked; the person_id is
//!   kept in `erased` (when, not who), so reads can say "erased" rather than "unknown".
//! - New keys are durable before they are used. Where the log keeps the person index (the
//!   SQLite log: the lookup → pseudonym entry is written with the person's first events), a
//!   new person takes a key made in advance (`take_new`: 1,024 at a time, written and fsynced
//!   before any is handed out, assigned to nobody here). Elsewhere (a JetStream log) the key
//!   store keeps the lookup itself: a writer thread commits the keys asked for together, with
//!   their lookups, in one transaction and one fsync of the WAL (group commit).
//! - The WAL is checkpointed into the file and truncated on erasure.
//!
//! The store knows no event type: it keeps keys by person.

use crate::store::StoreError;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use rusqlite::{params, Connection, OptionalExtension};
use sha2::Sha256;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

mod durable;
mod master;

use durable::write_keys;
pub use master::MasterKey;

/// A person's data key, unwrapped.
#[derive(Clone)]
pub struct PersonKey {
    /// The pseudonym the log knows the person by.
    pub person_id: String,
    /// The data key (AES-256-GCM).
    pub key: [u8; 32],
}

impl std::fmt::Debug for PersonKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersonKey")
            .field("person_id", &self.person_id)
            .finish_non_exhaustive()
    }
}

/// What the key store says about a person_id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    /// The key is here.
    Present([u8; 32]),
    /// The key was destroyed at this time.
    Erased(String),
    /// This key store never held it (another key store, or data written without one).
    Unknown,
}

struct Inner {
    conn: Connection,
    /// Keys made in advance (written and fsynced, assigned to nobody here) that this process
    /// hands to new people (`take_new`).
    pool: Vec<PersonKey>,
    /// Erasures seen (the `erasures` counter in `meta`): the cache is dropped when it moves.
    erasures: i64,
    data_version: i64,
}

/// The key store.
pub struct KeyStore {
    path: PathBuf,
    wrap: Aes256Gcm,
    lookup_key: [u8; 32],
    inner: Mutex<Inner>,
    /// New keys with their lookup (`create`) go to the writer thread, which commits those that
    /// arrive together in one transaction and one fsync (group commit), and answers each with
    /// the key stored for its person (another thread's or process's, if it came first).
    /// Bounded (`WRITER_QUEUE`): a caller waits for a place (each caller also waits for its
    /// answer, so the queue never holds more than the threads asking).
    writer: std::sync::mpsc::SyncSender<NewKey>,
    /// The WAL, for `refill` and `assign` (one fsync at a time).
    wal: Mutex<Option<std::fs::File>>,
    /// person lookup → key, for persons seen recently (cleared on erasure, by this process
    /// at once, by another within `FRESH_EVERY`).
    cache: std::sync::RwLock<HashMap<[u8; 32], PersonKey>>,
    /// When the cache was last checked against erasures by other processes (µs since
    /// `opened`).
    checked: std::sync::atomic::AtomicU64,
    opened: std::time::Instant,
}

type NewKeyReply = std::sync::mpsc::SyncSender<Result<(String, Vec<u8>), StoreError>>;

struct NewKey {
    lookup: [u8; 32],
    person_id: String,
    wrapped: Vec<u8>,
    reply: NewKeyReply,
}

const CHECK_LABEL: &str = "campaign-ledger key store check v1";
const MAX_CACHED: usize = 100_000;
/// How often the cache is checked against erasures by other processes: an erasure another
/// process makes is seen here within this time (this process's own, at once). The check is a
/// read of the key store's file header; made for every command it cost as much as sealing.
const FRESH_EVERY: std::time::Duration = std::time::Duration::from_millis(20);
/// New keys waiting for the key writer, at most.
const WRITER_QUEUE: usize = 4096;
/// Keys made in advance at a time (`take_new`).
const POOL: usize = 1024;

fn unavailable(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("key store {}: {e}", path.display()).into())
}

/// A write to the key store that failed: a full disk (or file-size limit) says so and what to
/// do; anything else as `unavailable`.
fn write_error(path: &Path, e: rusqlite::Error) -> StoreError {
    if crate::support::sqlite::disk_refused(&e) {
        let why = format!(
            "cannot write the key store {}: {}",
            path.display(),
            crate::support::sqlite::DISK_REFUSED
        );
        return StoreError::Unavailable(crate::store::Cause::with_source(why, e));
    }
    unavailable(path, e)
}

impl KeyStore {
    /// Opens (creating if needed) the key store at `path` with the master key. A key store
    /// created for a log that already holds events (`log_was_empty` false) remembers that
    /// older events may name people in clear.
    pub fn open(
        path: &Path,
        master: &MasterKey,
        log_was_empty: bool,
    ) -> Result<KeyStore, StoreError> {
        // WAL without a sync per commit (new keys are made durable by the writer's fsync of
        // the WAL, see `write_keys`), and secure_delete: an erased key's bytes are overwritten
        // with zeros; the erasure then checkpoints the WAL into the file and truncates it.
        // Several processes creating the file at once: creating its tables can answer
        // "locked" without waiting; retried like the switch to WAL.
        let options = crate::support::sqlite::Options {
            create: true,
            synchronous: "NORMAL",
        };
        let conn = crate::support::sqlite::open(path, options).map_err(|e| unavailable(path, e))?;
        let retry = |f: &dyn Fn() -> rusqlite::Result<()>| {
            crate::support::sqlite::retry_busy(f).map_err(|e| unavailable(path, e))
        };
        conn.pragma_update(None, "secure_delete", true)?;
        retry(&|| {
            conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS persons (
                 lookup      BLOB PRIMARY KEY,
                 person_id   TEXT NOT NULL UNIQUE,
                 wrapped_key BLOB NOT NULL,
                 created_at  TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS erased (
                 person_id  TEXT PRIMARY KEY,
                 erased_at  TEXT NOT NULL
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;",
        )
        })?;
        let wrap = Aes256Gcm::new_from_slice(&master.derive("campaign-ledger wrap v1"))
            .expect("32-byte key");
        let check = hex::encode(master.derive(CHECK_LABEL));
        // The first opener writes the check value and the key store's id (random: what a log
        // that binds its person writer names it by); every opener compares the check value.
        let mut id = [0u8; 16];
        getrandom::getrandom(&mut id)
            .map_err(|e| StoreError::Unavailable(format!("no random bytes: {e}").into()))?;
        let id = hex::encode(id);
        retry(&|| {
            conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('check', ?1), ('legacy', ?2), ('id', ?3)",
                params![check, if log_was_empty { "0" } else { "1" }, id],
            )
            .map(|_| ())
        })?;
        let stored: String =
            conn.query_row("SELECT value FROM meta WHERE key = 'check'", [], |r| {
                r.get(0)
            })?;
        if stored != check {
            return Err(StoreError::Invalid(format!(
                "the master key does not open the key store {}: give the key it was created with (LEDGER_MASTER_KEY or --master-key)",
                path.display()
            ).into()));
        }
        let data_version: i64 = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        let erasures = erasure_count(&conn)?;
        let writer_conn =
            crate::support::sqlite::open(path, options).map_err(|e| unavailable(path, e))?;
        writer_conn.pragma_update(None, "secure_delete", true)?;
        let (writer, jobs) = std::sync::mpsc::sync_channel(WRITER_QUEUE);
        let wal = {
            let mut w = path.as_os_str().to_owned();
            w.push("-wal");
            PathBuf::from(w)
        };
        std::thread::Builder::new()
            .name("key-writer".into())
            .spawn(move || write_keys(writer_conn, wal, jobs))
            .map_err(|e| unavailable(path, e))?;
        Ok(KeyStore {
            path: path.to_path_buf(),
            wrap,
            lookup_key: master.derive("campaign-ledger lookup v1"),
            inner: Mutex::new(Inner {
                conn,
                pool: Vec::new(),
                erasures,
                data_version,
            }),
            writer,
            wal: Mutex::new(None),
            cache: std::sync::RwLock::new(HashMap::new()),
            checked: std::sync::atomic::AtomicU64::new(0),
            opened: std::time::Instant::now(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the log held events before this key store existed (they may name people in
    /// clear, in streams `person/<person_ref>`).
    pub fn legacy(&self) -> bool {
        self.meta("legacy").ok().flatten().as_deref() == Some("1")
    }

    /// The key store's id: random, made with it (a copy of the file has the same id).
    pub fn id(&self) -> Result<String, StoreError> {
        self.meta("id")?.ok_or_else(|| {
            StoreError::Corrupt(format!("key store {}: no id", self.path.display()).into())
        })
    }

    /// How far a log was searched for people this key store lacks (`set_checked_upto`).
    pub fn checked_upto(&self) -> Result<u64, StoreError> {
        Ok(self
            .meta("checked_upto")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Records that the log up to `upto` names no person this key store lacks (keys are never
    /// lost but by erasure, so it stays true).
    pub fn set_checked_upto(&self, upto: u64) -> Result<(), StoreError> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.conn.execute(
            "INSERT INTO meta(key, value) VALUES ('checked_upto', ?1) \
             ON CONFLICT(key) DO UPDATE SET value = MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
            [upto.to_string()],
        )?;
        Ok(())
    }

    /// A value of the `meta` table.
    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let v = inner
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?;
        Ok(v)
    }

    /// A person's lookup: HMAC-SHA256 of their ref under a key derived from the master key
    /// (what the person index and this store find people by; the ref is never stored).
    pub fn lookup(&self, person_ref: &str) -> [u8; 32] {
        let mut m =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.lookup_key).expect("any key length");
        m.update(person_ref.as_bytes());
        m.finalize().into_bytes().into()
    }

    fn unwrap_key(&self, person_id: &str, wrapped: &[u8]) -> Result<[u8; 32], StoreError> {
        if wrapped.len() < 12 {
            return Err(StoreError::Corrupt(
                format!(
                    "key store {}: the key of {person_id} is damaged",
                    self.path.display()
                )
                .into(),
            ));
        }
        let (nonce, ct) = wrapped.split_at(12);
        let key = self
            .wrap
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: person_id.as_bytes(),
                },
            )
            .map_err(|_| {
                StoreError::Corrupt(format!(
                    "key store {}: the key of {person_id} does not unwrap (damaged, or moved to another person)",
                    self.path.display()
                ).into())
            })?;
        key.try_into()
            .map_err(|_| StoreError::Corrupt("a data key is not 32 bytes".into()))
    }

    /// Drops the cache when a key was erased since (by another connection or process).
    fn fresh(&self, inner: &mut Inner) -> Result<(), StoreError> {
        let v: i64 = inner
            .conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?;
        if v != inner.data_version {
            inner.data_version = v;
            let e = erasure_count(&inner.conn)?;
            if e != inner.erasures {
                self.forget_all();
                inner.erasures = e;
            }
        }
        Ok(())
    }

    fn forget_all(&self) {
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The key of a person, if this store holds it under their lookup (a log that does not
    /// keep the person index; on one that does, see `cached` and the index).
    pub fn find(&self, person_ref: &str) -> Result<Option<PersonKey>, StoreError> {
        let lookup = self.lookup(person_ref);
        if let Some(k) = self.cached(&lookup)? {
            return Ok(Some(k));
        }
        let row: Option<(String, Vec<u8>)> = {
            let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let row = inner
                .conn
                .prepare_cached("SELECT person_id, wrapped_key FROM persons WHERE lookup = ?1")?
                .query_row([&lookup[..]], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            row
        };
        let Some((person_id, wrapped)) = row else {
            return Ok(None);
        };
        let key = PersonKey {
            key: self.unwrap_key(&person_id, &wrapped)?,
            person_id,
        };
        self.remember(&lookup, &key);
        Ok(Some(key))
    }

    /// The key this process last saw for a lookup, unless a key was erased since (by any
    /// process; see `FRESH_EVERY`): then nothing is trusted and the cache starts again.
    pub fn cached(&self, lookup: &[u8; 32]) -> Result<Option<PersonKey>, StoreError> {
        use std::sync::atomic::Ordering;
        let now = self.opened.elapsed().as_micros() as u64;
        let last = self.checked.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= FRESH_EVERY.as_micros() as u64
            && self
                .checked
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = self.fresh(&mut inner) {
                // Checked again by the next caller.
                self.checked.store(last, Ordering::Relaxed);
                return Err(e);
            }
        }
        Ok(self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(lookup)
            .cloned())
    }

    /// Remembers a person's key by lookup, once the log or this store records it as theirs.
    pub fn remember(&self, lookup: &[u8; 32], key: &PersonKey) {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(*lookup, key.clone());
    }

    /// A key made in advance, durable and assigned to nobody here, for a new person whose
    /// lookup → pseudonym entry the log records with their first events. A key whose entry
    /// never reaches the log (the append failed) stays unused.
    pub fn take_new(&self) -> Result<PersonKey, StoreError> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.pool.is_empty() {
            self.refill(&mut inner, POOL)?;
        }
        Ok(inner.pool.pop().expect("refilled"))
    }

    /// The key of a person, created (and durable) if the key store holds none.
    pub fn find_or_create(&self, person_ref: &str) -> Result<PersonKey, StoreError> {
        if let Some(k) = self.find(person_ref)? {
            return Ok(k);
        }
        Ok(self.create(person_ref)?.0)
    }

    /// A key made in advance (`take_new`) whose person's append did not commit goes back to
    /// the pool: nothing names it.
    pub fn give_back(&self, key: PersonKey) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.pool.push(key);
    }

    /// A new key for a person the caller just looked up in vain, recorded here with their
    /// lookup, durable on return. When another thread or process recorded the person first,
    /// the writer keeps theirs: the key stored for the person, and whether it is the one made
    /// by this call.
    pub fn create(&self, person_ref: &str) -> Result<(PersonKey, bool), StoreError> {
        let lookup = self.lookup(person_ref);
        let (made_id, _, wrapped) = self.new_key(None)?;
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let closed = || StoreError::Unavailable("the key store's writer stopped".into());
        self.writer
            .send(NewKey {
                lookup,
                person_id: made_id.clone(),
                wrapped,
                reply,
            })
            .map_err(|_| closed())?;
        let (person_id, wrapped) = answer.recv().map_err(|_| closed())??;
        let created = person_id == made_id;
        let key = PersonKey {
            key: self.unwrap_key(&person_id, &wrapped)?,
            person_id,
        };
        self.remember(&lookup, &key);
        Ok((key, created))
    }

    /// What the key store holds for a person_id (reads of old events).
    pub fn state(&self, person_id: &str) -> Result<KeyState, StoreError> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let row: Option<Vec<u8>> = inner
            .conn
            .prepare_cached("SELECT wrapped_key FROM persons WHERE person_id = ?1")?
            .query_row([person_id], |r| r.get(0))
            .optional()?;
        if let Some(w) = row {
            drop(inner);
            return Ok(KeyState::Present(self.unwrap_key(person_id, &w)?));
        }
        let erased: Option<String> = inner
            .conn
            .prepare_cached("SELECT erased_at FROM erased WHERE person_id = ?1")?
            .query_row([person_id], |r| r.get(0))
            .optional()?;
        Ok(erased.map_or(KeyState::Unknown, KeyState::Erased))
    }

    /// Destroys a person's key: the row is deleted and its bytes overwritten in the file
    /// (secure_delete), durably. Returns whether there was a key to destroy.
    pub fn erase(&self, person_id: &str, erased_at: &str) -> Result<bool, StoreError> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        self.forget_all();
        let tx = inner.conn.transaction()?;
        if tx.execute("DELETE FROM persons WHERE person_id = ?1", [person_id])? == 0 {
            return Ok(false);
        }
        tx.execute(
            "INSERT OR REPLACE INTO erased (person_id, erased_at) VALUES (?1, ?2)",
            params![person_id, erased_at],
        )?;
        tx.execute(
            "INSERT INTO meta(key, value) VALUES ('erasures', '1') \
             ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
            [],
        )?;
        tx.commit().map_err(|e| write_error(&self.path, e))?;
        // Copy the zeroed pages into the file and empty the WAL, whose older frames still
        // hold the key; then make the file durable.
        // A reader in another process blocks it for a moment: retry for up to 10 s.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let busy = loop {
            let busy: i64 = inner
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
                .map_err(|e| unavailable(&self.path, e))?;
            if busy == 0 || std::time::Instant::now() >= deadline {
                break busy;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        drop(inner);
        if busy != 0 {
            return Err(StoreError::Unavailable(format!(
                "key store {}: the key is destroyed (nothing can use it any more), but another process kept the file busy, so its bytes may stay in {}-wal until the next checkpoint; stop that process (serve, submit) and open the key store once",
                self.path.display(),
                self.path.display()
            ).into()));
        }
        std::fs::File::open(&self.path)
            .and_then(|f| f.sync_all())
            .map_err(|e| unavailable(&self.path, format!("fsync: {e}")))?;
        Ok(true)
    }
}

fn erasure_count(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'erasures'")?
        .query_row([], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_by_ref_unwrapped_and_destroyed_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.db");
        let master = MasterKey::generate().unwrap();
        let ks = KeyStore::open(&path, &master, true).unwrap();
        assert!(!ks.legacy(), "created for an empty log");
        assert!(ks.find("p-1").unwrap().is_none());
        let k = ks.find_or_create("p-1").unwrap();
        assert_eq!(ks.find_or_create("p-1").unwrap().key, k.key);
        assert_eq!(ks.state(&k.person_id).unwrap(), KeyState::Present(k.key));
        let other = ks.find_or_create("p-2").unwrap();
        assert_ne!(other.person_id, k.person_id);
        // The wrapped key is in the file; the raw key and the ref are not.
        let wrapped: Vec<u8> = {
            let inner = ks.inner.lock().unwrap();
            inner
                .conn
                .query_row(
                    "SELECT wrapped_key FROM persons WHERE person_id = ?1",
                    [&k.person_id],
                    |r| r.get(0),
                )
                .unwrap()
        };
        // The file and its WAL.
        let has = |needle: &[u8]| {
            let mut bytes = std::fs::read(&path).unwrap();
            bytes.extend(std::fs::read(dir.path().join("k.db-wal")).unwrap_or_default());
            bytes.windows(needle.len()).any(|w| w == needle)
        };
        assert!(has(&wrapped));
        assert!(!has(&k.key) && !has(b"p-1"));
        assert!(ks
            .erase(&k.person_id, "2021-12-01T00:00:00.000000Z")
            .unwrap());
        assert!(
            !has(&wrapped),
            "the wrapped key's bytes are still in the file"
        );
        assert!(matches!(
            ks.state(&k.person_id).unwrap(),
            KeyState::Erased(_)
        ));
        assert!(ks.find("p-1").unwrap().is_none());
        assert!(!ks
            .erase(&k.person_id, "2021-12-01T00:00:00.000000Z")
            .unwrap());
        // Another master key does not open it; the same one does.
        drop(ks);
        let wrong = KeyStore::open(&path, &MasterKey::generate().unwrap(), true);
        assert!(matches!(wrong, Err(StoreError::Invalid(_))));
        let again = KeyStore::open(&path, &master, true).unwrap();
        assert_eq!(again.find("p-2").unwrap().unwrap().key, other.key);
    }
}

//! The person index on SQLite: table `persons` (a person's lookup, the HMAC of their ref, to
//! the pseudonym their events use), in the log's own file. A new person's entry is inserted by
//! the writer in the same transaction as the group holding their first events, so that the
//! index and the log never disagree after a crash and a new person costs no second database
//! transaction. The lookup is the primary key: two writers (threads or processes) recording
//! the same new person at once cannot both succeed; the second is told `PersonTaken`.
//!
//! Erasure deletes the entry with `secure_delete` on (its bytes are overwritten in the page),
//! then checkpoints the WAL into the file and truncates it (older frames still hold the
//! entry), and syncs the file. Every connection that writes the log has `secure_delete` on,
//! so that pages rebalanced by later inserts leave no stale copy of an entry either.

use super::{open_conn, SqliteStore, StoreError};
use crate::store::PersonLink;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// Entries the in-memory copy holds at most (about 60 bytes each); beyond, lookups read the
/// table.
const MEMO_MAX: usize = 2_000_000;

/// The index in memory, loaded at open and kept by this process's writer (a lookup of a
/// person costs a hash-map read instead of a read transaction on the file). What another
/// process wrote since is not in it: a person it recorded a moment ago is found by the index's
/// primary key when this process's append names them as new (`PersonTaken`, and the entry is
/// then added here), and a command about them that the rules refuse on the empty history of a
/// new person is looked up again with `fresh` (the command path does), so that every command is
/// judged on the person's real history; readers that must see the file itself ask with
/// `fresh`.
pub(super) struct Memo {
    /// `None`: too many entries (or one whose pseudonym is not 32 hex digits): not used.
    map: RwLock<Option<HashMap<[u8; 32], [u8; 16]>>>,
}

impl Memo {
    /// Loads every entry of the table.
    pub(super) fn load(conn: &Connection) -> Result<Memo, StoreError> {
        let mut map = HashMap::new();
        let mut usable = true;
        let mut st = conn.prepare("SELECT lookup, person_id FROM persons")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let lookup: Vec<u8> = r.get(0)?;
            let id: String = r.get(1)?;
            match (<[u8; 32]>::try_from(lookup.as_slice()), decode_id(&id)) {
                (Ok(l), Some(i)) if map.len() < MEMO_MAX => {
                    map.insert(l, i);
                }
                _ => {
                    usable = false;
                    break;
                }
            }
        }
        Ok(Memo {
            map: RwLock::new(usable.then_some(map)),
        })
    }

    /// `Some(answer)` when the copy is in use.
    pub(super) fn get(&self, lookup: &[u8; 32]) -> Option<Option<String>> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.as_ref().map(|m| m.get(lookup).map(hex::encode))
    }

    pub(super) fn put(&self, lookup: &[u8; 32], person_id: &str) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        let fits = map.as_ref().is_some_and(|m| m.len() < MEMO_MAX);
        match (decode_id(person_id), map.as_mut()) {
            (Some(id), Some(m)) if fits => {
                m.insert(*lookup, id);
            }
            _ => *map = None,
        }
    }

    pub(super) fn remove(&self, lookup: &[u8; 32]) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = map.as_mut() {
            m.remove(lookup);
        }
    }
}

fn decode_id(id: &str) -> Option<[u8; 16]> {
    // Lower-case hex only, so that encoding it again gives the same text.
    if id.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    hex::decode(id).ok()?.try_into().ok()
}

/// The index's part of the schema.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS persons (lookup BLOB PRIMARY KEY, person_id TEXT NOT NULL) WITHOUT ROWID;
"#;

/// Inserts a new person's entry (inside the writer's transaction). A lookup already there
/// fails with a constraint violation.
pub(super) fn insert(conn: &Connection, link: &PersonLink) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT INTO persons (lookup, person_id) VALUES (?1, ?2)")?
        .execute(params![&link.lookup[..], link.person_id])
        .map(|_| ())
}

/// The pseudonym of a lookup, if the index holds it.
pub(super) fn find(conn: &Connection, lookup: &[u8; 32]) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT person_id FROM persons WHERE lookup = ?1")?
        .query_row([&lookup[..]], |r| r.get(0))
        .optional()
}

/// How far the log was searched for people the index lacks.
pub(super) fn upto(conn: &Connection) -> rusqlite::Result<u64> {
    let upto: Option<i64> = conn
        .query_row(
            "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'persons_upto'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(upto.unwrap_or(0).max(0) as u64)
}

/// The pseudonyms the index holds.
pub(super) fn ids(conn: &Connection) -> rusqlite::Result<std::collections::HashSet<String>> {
    let mut ids = std::collections::HashSet::new();
    let mut st = conn.prepare("SELECT person_id FROM persons")?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        ids.insert(r.get::<_, String>(0)?);
    }
    Ok(ids)
}

impl SqliteStore {
    /// A connection of its own for the index's rare writes (taking over, erasure), with
    /// `secure_delete` on; it waits for the writer's lock like any other process would.
    fn index_conn(&self) -> Result<Connection, StoreError> {
        let conn = open_conn(&self.path, false)?;
        conn.pragma_update(None, "secure_delete", true)?;
        Ok(conn)
    }

    pub(super) fn find_person(
        &self,
        lookup: &[u8; 32],
        fresh: bool,
    ) -> Result<Option<String>, StoreError> {
        if !fresh {
            if let Some(answer) = self.persons.get(lookup) {
                return Ok(answer);
            }
        }
        let found = self.with_reader(|c| Ok(find(c, lookup)?))?;
        match &found {
            Some(id) => self.persons.put(lookup, id),
            None => self.persons.remove(lookup),
        }
        Ok(found)
    }

    pub(super) fn link_all(&self, links: &[PersonLink], upto: u64) -> Result<(), StoreError> {
        let mut conn = self.index_conn()?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut ins = tx.prepare_cached(
                "INSERT OR IGNORE INTO persons (lookup, person_id) VALUES (?1, ?2)",
            )?;
            for l in links {
                ins.execute(params![&l.lookup[..], l.person_id])?;
            }
        }
        tx.execute(
            "INSERT INTO meta(key, value) VALUES ('persons_upto', ?1) \
             ON CONFLICT(key) DO UPDATE SET value = MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
            [upto.to_string()],
        )?;
        tx.commit()?;
        for l in links {
            // What the index holds (an entry it had already stays).
            self.find_person(&l.lookup, true)?;
        }
        Ok(())
    }

    pub(super) fn forget(&self, lookup: &[u8; 32]) -> Result<(), StoreError> {
        let lookup_bytes: &[u8] = &lookup[..];
        self.forget_where("lookup = ?1", &[&lookup_bytes])?;
        self.persons.remove(lookup);
        Ok(())
    }

    pub(super) fn forget_id(&self, person_id: &str) -> Result<(), StoreError> {
        let conn = self.index_conn()?;
        let lookups: Vec<Vec<u8>> = conn
            .prepare("SELECT lookup FROM persons WHERE person_id = ?1")?
            .query_map([person_id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        drop(conn);
        self.forget_where("person_id = ?1", &[&person_id])?;
        for l in lookups {
            if let Ok(l) = <[u8; 32]>::try_from(l.as_slice()) {
                self.persons.remove(&l);
            }
        }
        Ok(())
    }

    /// Deletes the index entries `filter` selects, then empties the WAL of their older
    /// frames and syncs the file.
    fn forget_where(&self, filter: &str, args: &[&dyn rusqlite::ToSql]) -> Result<(), StoreError> {
        let conn = self.index_conn()?;
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::Unavailable(format!("{}: {what}: {e}", self.path.display()).into())
        };
        // Absent already (an erasure run again after an interruption): the checkpoint below
        // still empties the WAL of older frames.
        conn.execute(&format!("DELETE FROM persons WHERE {filter}"), args)
            .map_err(|e| unavailable("removing the person's index entry", &e))?;
        // Copy the zeroed page into the file and empty the WAL, whose older frames still hold
        // the entry. A reader in the middle of a read blocks it for a moment: retry for 10 s.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let busy: i64 = conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
                .map_err(|e| unavailable("checkpoint", &e))?;
            if busy == 0 {
                break;
            }
            if Instant::now() >= deadline {
                return Err(StoreError::Unavailable(format!(
                    "{}: the person's index entry is deleted, but another process kept the log busy, so its bytes may stay in {}-wal until the next checkpoint; run erase-person again when the log is quieter",
                    self.path.display(),
                    self.path.display()
                ).into()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::File::open(&self.path)
            .and_then(|f| f.sync_all())
            .map_err(|e| unavailable("fsync", &e))
    }
}

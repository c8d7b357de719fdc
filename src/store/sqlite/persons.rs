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
use std::time::{Duration, Instant};

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

impl SqliteStore {
    /// A connection of its own for the index's rare writes (taking over, erasure), with
    /// `secure_delete` on; it waits for the writer's lock like any other process would.
    fn index_conn(&self) -> Result<Connection, StoreError> {
        let conn = open_conn(&self.path, false)?;
        conn.pragma_update(None, "secure_delete", true)?;
        Ok(conn)
    }

    pub(super) fn link_all(&self, links: &[PersonLink]) -> Result<(), StoreError> {
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
        tx.commit()?;
        Ok(())
    }

    pub(super) fn forget(&self, lookup: &[u8; 32]) -> Result<(), StoreError> {
        let conn = self.index_conn()?;
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::Unavailable(format!("{}: {what}: {e}", self.path.display()).into())
        };
        // Absent already (an erasure run again after an interruption): the checkpoint below
        // still empties the WAL of older frames.
        conn.execute("DELETE FROM persons WHERE lookup = ?1", [&lookup[..]])
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

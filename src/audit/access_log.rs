//! The access log of person-level reads: every HTTP answer that showed events naming a person
//! (`GET /v1/streams/{id}`, `GET /v1/events`) adds one entry: when, who (token id and role),
//! what (the route), which people (their pseudonyms, never their refs) and how many of their
//! events, and how many refs were shown in clear. Its own SQLite file
//! (`<store>.access.db` by default), append-only (triggers refuse updates and deletes);
//! auditors read it with `GET /v1/audit/access-log` or `campaign-ledger audit access-log`.

use crate::store::StoreError;
use rusqlite::{params, Connection};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One person-level read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessEntry {
    /// Sequence number (1-based).
    pub id: u64,
    /// When (UTC, RFC 3339).
    pub at: String,
    /// The token id (`-` without tokens).
    pub caller: String,
    /// Its role.
    pub role: String,
    /// What was read (method and path with query).
    pub route: String,
    /// The people whose events were shown (pseudonyms).
    pub persons: Vec<String>,
    /// Events naming a person that were shown.
    pub events: u64,
    /// Person refs shown in clear.
    pub revealed: u64,
}

/// The access log.
pub struct AccessLog {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl AccessLog {
    /// Opens (creating if needed) the log at `path`.
    pub fn open(path: &Path) -> Result<AccessLog, StoreError> {
        let unavailable = |e: &dyn std::fmt::Display| {
            StoreError::Unavailable(format!("access log {}: {e}", path.display()).into())
        };
        let options = crate::support::sqlite::Options {
            create: true,
            synchronous: "FULL",
        };
        let conn = crate::support::sqlite::open(path, options).map_err(|e| unavailable(&e))?;
        crate::support::sqlite::retry_busy(|| {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS access (
                 id       INTEGER PRIMARY KEY,
                 at       TEXT NOT NULL,
                 caller   TEXT NOT NULL,
                 role     TEXT NOT NULL,
                 route    TEXT NOT NULL,
                 persons  TEXT NOT NULL,
                 events   INTEGER NOT NULL,
                 revealed INTEGER NOT NULL
             );
             CREATE TRIGGER IF NOT EXISTS access_append_only_u BEFORE UPDATE ON access
                 BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;
             CREATE TRIGGER IF NOT EXISTS access_append_only_d BEFORE DELETE ON access
                 BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;",
            )
        })
        .map_err(|e| unavailable(&e))?;
        Ok(AccessLog {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records a read (durable on return: the answer is sent only after).
    pub fn record(
        &self,
        caller: &str,
        role: &str,
        route: &str,
        persons: &[String],
        events: u64,
        revealed: u64,
    ) -> Result<(), StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        conn.prepare_cached(
            "INSERT INTO access (at, caller, role, route, persons, events, revealed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            crate::store::format_recorded_at(chrono::Utc::now()),
            caller,
            role,
            route,
            serde_json::to_string(persons).expect("strings serialize"),
            events as i64,
            revealed as i64
        ])?;
        Ok(())
    }

    /// Entries after `after`, oldest first, at most `limit`; only those naming `person` when
    /// given.
    pub fn entries(
        &self,
        after: u64,
        limit: usize,
        person: Option<&str>,
    ) -> Result<Vec<AccessEntry>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut st = conn.prepare_cached(
            "SELECT id, at, caller, role, route, persons, events, revealed FROM access \
             WHERE id > ?1 AND (?2 IS NULL OR instr(persons, ?2) > 0) ORDER BY id LIMIT ?3",
        )?;
        let needle = person.map(|p| format!("\"{p}\""));
        let rows = st.query_map(params![after as i64, needle, limit as i64], |r| {
            Ok(AccessEntry {
                id: r.get::<_, i64>(0)? as u64,
                at: r.get(1)?,
                caller: r.get(2)?,
                role: r.get(3)?,
                route: r.get(4)?,
                persons: serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or_default(),
                events: r.get::<_, i64>(6)? as u64,
                revealed: r.get::<_, i64>(7)? as u64,
            })
        })?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::from)
    }
}

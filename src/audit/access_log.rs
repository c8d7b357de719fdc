//! The access log of disclosures of person-level data: every answer that showed facts of a
//! person's record adds one entry, before the answer leaves — reads of events naming a person
//! (`GET /v1/streams/{id}`, `GET /v1/events`), a person looked up by ref or proven, an event's
//! proof, the findings, the command line's person reads, and every refusal of a command about
//! a person the ledger knows (its message states facts of their history). An entry says when,
//! who (token id and role), through what (the route, or the command line's subcommand), which
//! people (their pseudonyms, never their refs), how many of their events, how many refs were
//! shown in clear, and what kind of fact was disclosed (`disclosed`). Its own SQLite file
//! (`<store>.access.db` by default), append-only (triggers refuse updates and deletes);
//! auditors read it with `GET /v1/audit/access-log` or `campaign-ledger audit access-log`.
//!
//! It is hash-chained like the log. An entry of version 2 (every entry written now) hashes as
//! `SHA-256(hash of entry n−1 ‖ F("v2") ‖ F(id) ‖ F(at) ‖ F(caller) ‖ F(role) ‖ F(route) ‖
//! F(persons) ‖ F(events) ‖ F(revealed) ‖ F(disclosed))`; an entry of version 1 (written before
//! entries had a version and a kind) as `SHA-256(hash of entry n−1 ‖ F(id) ‖ F(at) ‖ F(caller) ‖
//! F(role) ‖ F(route) ‖ F(persons) ‖ F(events) ‖ F(revealed))` (F as in the log's chain: a
//! 4-byte big-endian length, then the UTF-8 bytes; numbers in decimal; `persons` the stored JSON
//! text; 32 zero bytes before the first entry). Old entries keep verifying. Signed digests carry
//! its head (`access_log_size`, `access_log_hash`) beside the log's, and `audit verify`
//! recomputes it. Entries written before the chain existed have no stored hash; they are
//! chained all the same (the first stored hash follows from them).

use crate::store::StoreError;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The version of the entries written now (see the module's doc).
pub const ENTRY_VERSION: u32 = 2;

/// A disclosure of person-level data, as the access log records it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disclosure {
    /// The token id (`-` without tokens; the user on the command line).
    pub caller: String,
    /// Its role (`cli` on the command line).
    pub role: String,
    /// Through what: the HTTP method and path with query, or the command line's subcommand.
    pub route: String,
    /// The people whose data was shown (pseudonyms).
    pub persons: Vec<String>,
    /// Events naming a person that were shown.
    pub events: u64,
    /// Person refs shown in clear.
    pub revealed: u64,
    /// What kind of fact: `events`, `person_record`, `person_proof`, `event_proof`, `findings`,
    /// or `refusal:<code>` (a refused command's message about the person's history).
    pub disclosed: String,
}

/// One disclosure of person-level data.
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
    /// The entry's version (1: written before entries had a kind; see the module's doc).
    pub version: u32,
    /// What kind of fact was disclosed (absent in version 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disclosed: Option<String>,
}

/// The access log.
pub struct AccessLog {
    path: PathBuf,
    conn: Mutex<Connection>,
}

/// The head of the access log's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessHead {
    /// Entries (the last id).
    pub size: u64,
    /// The last entry's hash (hex; zeros when empty).
    pub hash: String,
}

/// Where the access log's chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessBreak {
    /// The first bad entry id.
    pub id: u64,
    /// What is wrong there.
    pub reason: String,
}

/// One stored row, as hashed.
struct Row {
    id: u64,
    at: String,
    caller: String,
    role: String,
    route: String,
    persons: String,
    events: i64,
    revealed: i64,
    hash: Option<Vec<u8>>,
    /// `None`: version 1.
    version: Option<i64>,
    disclosed: Option<String>,
}

fn entry_hash(prev: &[u8; 32], r: &Row) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(prev);
    let field = |h: &mut Sha256, x: &str| {
        h.update((x.len() as u32).to_be_bytes());
        h.update(x.as_bytes());
    };
    let v2 = r.version.is_some_and(|v| v >= 2);
    if v2 {
        field(&mut h, "v2");
    }
    for x in [
        r.id.to_string().as_str(),
        &r.at,
        &r.caller,
        &r.role,
        &r.route,
        &r.persons,
        r.events.to_string().as_str(),
        r.revealed.to_string().as_str(),
    ] {
        field(&mut h, x);
    }
    if v2 {
        field(&mut h, r.disclosed.as_deref().unwrap_or(""));
    }
    h.finalize().into()
}

const ROW_COLUMNS: &str =
    "id, at, caller, role, route, persons, events, revealed, hash, version, disclosed";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        id: r.get::<_, i64>(0)? as u64,
        at: r.get(1)?,
        caller: r.get(2)?,
        role: r.get(3)?,
        route: r.get(4)?,
        persons: r.get(5)?,
        events: r.get(6)?,
        revealed: r.get(7)?,
        hash: r.get(8)?,
        version: r.get(9)?,
        disclosed: r.get(10)?,
    })
}

/// The last entry's id and hash: stored, or (entries from before the chain) recomputed.
fn last_link(conn: &Connection) -> Result<(u64, [u8; 32]), StoreError> {
    let last: Option<(i64, Option<Vec<u8>>)> = conn
        .prepare_cached("SELECT id, hash FROM access ORDER BY id DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match last {
        None => Ok((0, [0u8; 32])),
        Some((id, Some(h))) if h.len() == 32 => {
            Ok((id as u64, <[u8; 32]>::try_from(h).expect("32 bytes")))
        }
        Some(_) => match walk(conn)? {
            Ok(head) => Ok((
                head.size,
                hex::decode(&head.hash)
                    .ok()
                    .and_then(|h| h.try_into().ok())
                    .expect("hex of 32 bytes"),
            )),
            Err(b) => Err(StoreError::Corrupt(
                format!(
                    "the access log's chain breaks at entry {}: {}; run `campaign-ledger audit verify`",
                    b.id, b.reason
                )
                .into(),
            )),
        },
    }
}

/// Recomputes the chain of every entry: the head, or where it breaks.
fn walk(conn: &Connection) -> Result<Result<AccessHead, AccessBreak>, StoreError> {
    let mut st = conn.prepare_cached(&format!("SELECT {ROW_COLUMNS} FROM access ORDER BY id"))?;
    let mut rows = st.query([])?;
    let (mut prev, mut n) = ([0u8; 32], 0u64);
    while let Some(r) = rows.next()? {
        let r = row(r)?;
        if r.id != n + 1 {
            return Ok(Err(AccessBreak {
                id: n + 1,
                reason: format!("entry {} is missing (the next one is {})", n + 1, r.id),
            }));
        }
        let h = entry_hash(&prev, &r);
        if r.hash.as_ref().is_some_and(|s| s.as_slice() != h) {
            return Ok(Err(AccessBreak {
                id: r.id,
                reason:
                    "its content is not what was recorded (its hash differs): the entry was changed"
                        .into(),
            }));
        }
        prev = h;
        n = r.id;
    }
    Ok(Ok(AccessHead {
        size: n,
        hash: hex::encode(prev),
    }))
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
                 revealed INTEGER NOT NULL,
                 hash     BLOB,
                 version  INTEGER,
                 disclosed TEXT
             );
             CREATE TRIGGER IF NOT EXISTS access_append_only_u BEFORE UPDATE ON access
                 BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;
             CREATE TRIGGER IF NOT EXISTS access_append_only_d BEFORE DELETE ON access
                 BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;",
            )
        })
        .map_err(|e| unavailable(&e))?;
        // A log written before the chain, or before entries had a version and a kind: add the
        // columns (old rows keep what they had: no hash, version 1).
        for (column, ty) in [
            ("hash", "BLOB"),
            ("version", "INTEGER"),
            ("disclosed", "TEXT"),
        ] {
            let has: bool = conn
                .prepare("SELECT 1 FROM pragma_table_info('access') WHERE name = ?1")?
                .exists([column])?;
            if !has {
                crate::support::sqlite::retry_busy(|| {
                    conn.execute_batch(&format!("ALTER TABLE access ADD COLUMN {column} {ty}"))
                })
                .map_err(|e| unavailable(&e))?;
            }
        }
        Ok(AccessLog {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records a disclosure (durable on return: the answer is sent only after).
    pub fn record(&self, d: &Disclosure) -> Result<(), StoreError> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let (size, prev) = last_link(&tx)?;
        let id = size + 1;
        let r = Row {
            id,
            at: crate::store::format_recorded_at(chrono::Utc::now()),
            caller: d.caller.clone(),
            role: d.role.clone(),
            route: d.route.clone(),
            persons: serde_json::to_string(&d.persons).expect("strings serialize"),
            events: d.events as i64,
            revealed: d.revealed as i64,
            hash: None,
            version: Some(i64::from(ENTRY_VERSION)),
            disclosed: Some(d.disclosed.clone()),
        };
        let h = entry_hash(&prev, &r);
        tx.prepare_cached(
            "INSERT INTO access (id, at, caller, role, route, persons, events, revealed, hash, version, disclosed) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?
        .execute(params![
            r.id as i64,
            r.at,
            r.caller,
            r.role,
            r.route,
            r.persons,
            r.events,
            r.revealed,
            &h[..],
            r.version,
            r.disclosed
        ])?;
        tx.commit()?;
        Ok(())
    }

    /// The head of the chain (recomputed when the last entry predates the chain).
    pub fn head(&self) -> Result<AccessHead, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let (size, hash) = last_link(&conn)?;
        Ok(AccessHead {
            size,
            hash: hex::encode(hash),
        })
    }

    /// Recomputes the whole chain: its head, or the first entry that breaks it.
    pub fn verify(&self) -> Result<Result<AccessHead, AccessBreak>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        walk(&conn)
    }

    /// Checks that the log extends the log whose head a digest names: the chain verifies and
    /// entry `size` has `hash`.
    pub fn verify_extends(
        &self,
        size: u64,
        hash: &str,
    ) -> Result<Result<AccessHead, AccessBreak>, StoreError> {
        let head = match self.verify()? {
            Ok(h) => h,
            Err(b) => return Ok(Err(b)),
        };
        if head.size < size {
            return Ok(Err(AccessBreak {
                id: head.size + 1,
                reason: format!("the access log ends at entry {} but the digest was taken at {size}: entries were removed", head.size),
            }));
        }
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut st = conn.prepare_cached(&format!(
            "SELECT {ROW_COLUMNS} FROM access WHERE id <= ?1 ORDER BY id"
        ))?;
        let mut rows = st.query([size as i64])?;
        let mut prev = [0u8; 32];
        while let Some(r) = rows.next()? {
            prev = entry_hash(&prev, &row(r)?);
        }
        if size > 0 && hex::encode(prev) != hash {
            return Ok(Err(AccessBreak {
                id: size,
                reason: "the access log was rewritten at or before the digest's entry (its hash differs from the digest's)".into(),
            }));
        }
        Ok(Ok(head))
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
            "SELECT id, at, caller, role, route, persons, events, revealed, version, disclosed FROM access \
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
                // A damaged row is an error, not "no persons": an auditor must not read it as
                // a read of nobody.
                persons: serde_json::from_str(&r.get::<_, String>(5)?).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        5,
                        rusqlite::types::Type::Text,
                        format!("the access log's entry has a damaged person list ({e})").into(),
                    )
                })?,
                events: r.get::<_, i64>(6)? as u64,
                revealed: r.get::<_, i64>(7)? as u64,
                version: r.get::<_, Option<i64>>(8)?.map_or(1, |v| v as u32),
                disclosed: r.get(9)?,
            })
        })?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disclosure(kind: &str) -> Disclosure {
        Disclosure {
            caller: "auditor-1".into(),
            role: "auditor".into(),
            route: "POST /v1/persons/record".into(),
            persons: vec!["00ff".into()],
            events: 2,
            revealed: 1,
            disclosed: kind.into(),
        }
    }

    /// An entry written by an older build (version 1, no kind) keeps verifying among entries of
    /// version 2, and a changed kind breaks the chain.
    #[test]
    fn entries_of_both_versions_chain_and_a_changed_kind_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let log = AccessLog::open(&dir.path().join("a.db")).unwrap();
        {
            // What the previous build wrote: the v1 hash, no version, no kind.
            let conn = log.conn.lock().unwrap();
            let r = Row {
                id: 1,
                at: "2021-12-17T10:00:00.000000Z".into(),
                caller: "aud".into(),
                role: "auditor".into(),
                route: "GET /v1/events".into(),
                persons: "[\"00ff\"]".into(),
                events: 3,
                revealed: 0,
                hash: None,
                version: None,
                disclosed: None,
            };
            let h = entry_hash(&[0; 32], &r);
            conn.execute(
                "INSERT INTO access (id, at, caller, role, route, persons, events, revealed, hash) \
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, 3, 0, ?6)",
                params![r.at, r.caller, r.role, r.route, r.persons, &h[..]],
            )
            .unwrap();
        }
        log.record(&disclosure("person_record")).unwrap();
        log.record(&disclosure("refusal:no_first_dose")).unwrap();
        let head = log.verify().unwrap().unwrap();
        assert_eq!(head.size, 3);
        let entries = log.entries(0, 10, Some("00ff")).unwrap();
        assert_eq!(entries[0].version, 1);
        assert_eq!(entries[0].disclosed, None);
        assert_eq!(entries[2].version, 2);
        assert_eq!(
            entries[2].disclosed.as_deref(),
            Some("refusal:no_first_dose")
        );
        {
            let conn = log.conn.lock().unwrap();
            conn.execute_batch(
                "DROP TRIGGER access_append_only_u;
                 UPDATE access SET disclosed = 'events' WHERE id = 3;",
            )
            .unwrap();
        }
        let broken = log.verify().unwrap().unwrap_err();
        assert_eq!(broken.id, 3, "{}", broken.reason);
    }
}

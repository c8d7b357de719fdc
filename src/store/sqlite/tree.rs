//! The Merkle tree on SQLite: the hash of every complete subtree of 8 leaves or more (level ≥
//! [`MIN_STORED_LEVEL`]) in table `merkle`, written in the transaction of the events it covers.
//! Smaller subtrees are recomputed from the events' own hashes when asked for (at most 4
//! consecutive rows): a quarter of the rows to write, 15 bytes per event instead of 54, for a
//! few more reads per proof. A node's row id is `last leaf × 64 + level`, so that nodes are
//! inserted in increasing id order as the log grows: each group commit adds to one page.
//!
//! `meta.merkle_size` says how far a build of an older log got (a number), or `follows` once
//! the tree covers the head and is kept with every group (nothing more is written to `meta`).
//! A log written before the tree existed gets it built when it is opened, a chunk per
//! transaction (an interrupted build resumes where it stopped).

use super::{corrupt, hash_col, StoreError};
use crate::envelope::merkle::{leaf_hash, node_hash, root_plan, Frontier, Hash, NodeId};
use rusqlite::{params, Connection, OptionalExtension};

/// The tree's part of the schema: append-only like the events.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS merkle (id INTEGER PRIMARY KEY, hash BLOB NOT NULL);
CREATE TRIGGER IF NOT EXISTS merkle_append_only_u BEFORE UPDATE ON merkle
    BEGIN SELECT RAISE(ABORT, 'the Merkle tree is append-only'); END;
CREATE TRIGGER IF NOT EXISTS merkle_append_only_d BEFORE DELETE ON merkle
    BEGIN SELECT RAISE(ABORT, 'the Merkle tree is append-only'); END;
"#;

/// The lowest level kept in the table.
pub(super) const MIN_STORED_LEVEL: u32 = 3;

/// Events per transaction when building the tree of an older log.
const BUILD_CHUNK: u64 = 100_000;

/// The row id of a node: its last leaf × 64 + its level (increasing as the log grows).
pub(super) fn row_id(id: &NodeId) -> i64 {
    let last = ((id.index + 1) << id.level) - 1;
    (last as i64) * 64 + id.level as i64
}

/// Leaves the stored tree covers: the head once it follows the log (more, if events were
/// removed under it), else how far a build got.
pub(super) fn size(conn: &Connection) -> Result<u64, StoreError> {
    let v: Option<String> = conn
        .prepare_cached("SELECT value FROM meta WHERE key = 'merkle_size'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    match v.as_deref() {
        None => Ok(0),
        Some("follows") => {
            let head: i64 = conn
                .prepare_cached("SELECT COALESCE(MAX(position), 0) FROM events")?
                .query_row([], |r| r.get(0))?;
            let last: Option<i64> = conn
                .prepare_cached("SELECT MAX(id) FROM merkle")?
                .query_row([], |r| r.get(0))?;
            // The tree is whole up to just after its last stored node's last leaf. Kept with
            // every group, that is the head rounded down to 8; more means events were removed
            // under it, less that events were added without it (not by this ledger).
            let (head, covered) = (head as u64, last.map_or(0, |id| (id / 64) as u64 + 1));
            let whole = head / (1 << MIN_STORED_LEVEL) * (1 << MIN_STORED_LEVEL);
            Ok(if covered > head || covered < whole {
                covered
            } else {
                head
            })
        }
        Some(v) => v.parse().map_err(|_| {
            StoreError::Corrupt(format!("meta.merkle_size is {v:?}, not a number").into())
        }),
    }
}

fn set_size(conn: &Connection, value: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES ('merkle_size', ?1) \
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )?
    .execute([value])?;
    Ok(())
}

/// The hashes of complete subtrees, in the order asked: leaves from the events' hashes, inner
/// nodes from the table.
pub(super) fn read_nodes(conn: &Connection, ids: &[NodeId]) -> Result<Vec<Hash>, StoreError> {
    let mut leaves = conn.prepare_cached(
        "SELECT hash FROM events WHERE position > ?1 AND position <= ?2 ORDER BY position",
    )?;
    let mut inner = conn.prepare_cached("SELECT hash FROM merkle WHERE id = ?1")?;
    let missing = |id: &NodeId| {
        StoreError::Corrupt(
            format!(
                "the Merkle tree has no node at level {} index {}: run `campaign-ledger audit verify`",
                id.level, id.index
            )
            .into(),
        )
    };
    ids.iter()
        .map(|id| {
            if id.level >= MIN_STORED_LEVEL {
                return inner
                    .query_row([row_id(id)], |r| hash_col(r, 0))
                    .optional()
                    .map_err(corrupt)?
                    .ok_or_else(|| missing(id));
            }
            // A small subtree: its leaves, folded.
            let (first, width) = (id.first_leaf(), 1u64 << id.level);
            let mut level: Vec<Hash> = leaves
                .query_map([first as i64, (first + width) as i64], |r| hash_col(r, 0))?
                .map(|h| h.map(|h| leaf_hash(&h)).map_err(corrupt))
                .collect::<Result<_, _>>()?;
            if level.len() as u64 != width {
                return Err(missing(id));
            }
            while level.len() > 1 {
                level = level
                    .chunks_exact(2)
                    .map(|p| node_hash(&p[0], &p[1]))
                    .collect();
            }
            Ok(level[0])
        })
        .collect()
}

/// The frontier of the tree of `size` leaves, from what is stored.
pub(super) fn frontier_at(conn: &Connection, size: u64) -> Result<Frontier, StoreError> {
    let roots = read_nodes(conn, &root_plan(size))?;
    Frontier::from_roots(size, roots)
        .ok_or_else(|| StoreError::Corrupt("the Merkle tree's edge is incomplete".into()))
}

/// Writes the nodes a group completed (inside the caller's transaction); those below
/// [`MIN_STORED_LEVEL`] are not kept.
pub(super) fn insert_nodes(conn: &Connection, nodes: &[(NodeId, Hash)]) -> Result<(), StoreError> {
    let mut st = conn.prepare_cached("INSERT INTO merkle (id, hash) VALUES (?1, ?2)")?;
    for (id, h) in nodes.iter().filter(|(id, _)| id.level >= MIN_STORED_LEVEL) {
        st.execute(params![row_id(id), &h[..]])?;
    }
    Ok(())
}

/// Extends the stored tree, which covers `from` leaves, by the events `from + 1 ..= to`
/// (inside the caller's transaction).
pub(super) fn extend(conn: &Connection, from: u64, to: u64) -> Result<(), StoreError> {
    let mut frontier = frontier_at(conn, from)?;
    let mut nodes = Vec::new();
    let mut st = conn.prepare_cached(
        "SELECT hash FROM events WHERE position > ?1 AND position <= ?2 ORDER BY position",
    )?;
    let mut rows = st.query([from as i64, to as i64])?;
    while let Some(r) = rows.next()? {
        let h = hash_col(r, 0).map_err(corrupt)?;
        frontier.push(&h, |id, n| {
            if id.level >= MIN_STORED_LEVEL {
                nodes.push((id, n))
            }
        });
    }
    if frontier.size() != to {
        return Err(StoreError::Corrupt(
            format!(
                "the log has a gap below position {to}: the tree reached {}",
                frontier.size()
            )
            .into(),
        ));
    }
    insert_nodes(conn, &nodes)
}

/// Removes the stored tree and builds it again from the events (`audit rebuild-tree`, after
/// `audit verify` named it missing or damaged): in one transaction per chunk, as a build of an
/// older log. The events are not touched.
pub(super) fn rebuild(conn: &Connection, head: u64) -> Result<(), StoreError> {
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         DROP TRIGGER IF EXISTS merkle_append_only_d;
         DELETE FROM merkle;
         DELETE FROM meta WHERE key = 'merkle_size';
         CREATE TRIGGER merkle_append_only_d BEFORE DELETE ON merkle
             BEGIN SELECT RAISE(ABORT, 'the Merkle tree is append-only'); END;
         COMMIT;",
    )?;
    catch_up(conn, head)
}

/// Builds what the stored tree lacks of a log of `head` events, a chunk per transaction, and
/// says how far it got. Nothing to do on a log written since the tree exists.
pub(super) fn catch_up(conn: &Connection, head: u64) -> Result<(), StoreError> {
    let follows = conn
        .prepare_cached("SELECT 1 FROM meta WHERE key = 'merkle_size' AND value = 'follows'")?
        .exists([])?;
    let done = size(conn)?;
    if follows && done == head {
        return Ok(());
    }
    if follows && done < head {
        // The tree followed the log, and lost nodes since (a wiped or damaged table): it is
        // never rebuilt silently. Opening still works, so that `audit verify` can name it;
        // appends are refused until `audit rebuild-tree`.
        return Err(StoreError::Corrupt(
            format!(
                "the Merkle tree covers {done} of the log's {head} events: it is missing or damaged; run `campaign-ledger audit verify`, then `campaign-ledger audit rebuild-tree` to build it again from the events"
            )
            .into(),
        ));
    }
    if done > head {
        // Events were removed under the tree: opening still works, so that `audit verify` can
        // say what is missing; appending would collide with the tree's nodes and is refused.
        tracing::error!(
            tree = done,
            log = head,
            "the Merkle tree covers more events than the log holds: events were removed; run `campaign-ledger audit verify`"
        );
        return Ok(());
    }
    if done < head {
        // A warning, so that the command line shows it by default: the first open after an
        // upgrade takes a moment on a long log.
        tracing::warn!(
            from = done,
            to = head,
            "building the Merkle tree of this log (once; resumable if interrupted)"
        );
    }
    loop {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        // Read again inside the transaction: another process may have built some of it.
        let step = size(conn).and_then(|done| {
            let to = (done + BUILD_CHUNK).min(head).max(done);
            if done < to {
                extend(conn, done, to)?;
            }
            // From the head on, the writer keeps the tree with every group.
            set_size(
                conn,
                &if to >= head {
                    "follows".to_string()
                } else {
                    to.to_string()
                },
            )?;
            Ok(to)
        });
        match step {
            Ok(to) => {
                conn.execute_batch("COMMIT")?;
                if to >= head {
                    return Ok(());
                }
                tracing::warn!(done = to, of = head, "Merkle tree built so far");
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
    }
}

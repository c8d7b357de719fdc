//! The content hash's version in the command table: a log of an older build gains the column
//! (its rows are of version 1), and the ledger's migration (`app::migrate_content_hashes`)
//! rewrites them as version 2 in one transaction, with `secure_delete` on and the WAL then
//! checkpointed and truncated, so that no version-1 hash (a function of the ref) stays in the
//! file or its WAL.

use super::rows::command_from_row;
use super::StoreError;
use crate::store::CommandRecord;
use rusqlite::{params, Connection};
use std::path::Path;
use uuid::Uuid;

/// Adds `hash_version` to a command table of an older build (every row: version 1).
pub(super) fn add_version_column(conn: &Connection) -> rusqlite::Result<()> {
    let has: bool = conn
        .prepare("SELECT 1 FROM pragma_table_info('commands') WHERE name = 'hash_version'")?
        .exists([])?;
    if !has {
        crate::support::sqlite::retry_busy(|| {
            conn.execute_batch(
                "ALTER TABLE commands ADD COLUMN hash_version INTEGER NOT NULL DEFAULT 1",
            )
        })?;
    }
    // The rows of version 1 found at once, without reading the table (empty once migrated).
    crate::support::sqlite::retry_busy(|| {
        conn.execute_batch(
            "CREATE INDEX IF NOT EXISTS commands_hash_v1 ON commands(hash_version) WHERE hash_version < 2",
        )
    })
}

/// The commands whose hash is of version 1.
pub(super) fn of_version_1(conn: &Connection) -> Result<Vec<CommandRecord>, StoreError> {
    let mut st = conn.prepare(
        "SELECT command_id, content_hash, stream_id, first_position, last_position, recorded_at, hash_version \
         FROM commands WHERE hash_version < 2",
    )?;
    let rows = st.query_map([], command_from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Rewrites the hashes as version 2 (the table is append-only: its update trigger is lifted
/// for this one transaction), then empties the WAL of the older frames and syncs the file.
pub(super) fn rewrite(
    conn: &Connection,
    path: &Path,
    hashes: &[(Uuid, [u8; 32])],
) -> Result<(), StoreError> {
    conn.pragma_update(None, "secure_delete", true)?;
    conn.execute_batch("BEGIN IMMEDIATE; DROP TRIGGER IF EXISTS commands_append_only_u;")?;
    let done = (|| -> rusqlite::Result<()> {
        let mut st = conn.prepare(
            "UPDATE commands SET content_hash = ?2, hash_version = 2 WHERE command_id = ?1",
        )?;
        for (id, h) in hashes {
            st.execute(params![id.to_string(), &h[..]])?;
        }
        conn.execute_batch(
            "CREATE TRIGGER commands_append_only_u BEFORE UPDATE ON commands
                 BEGIN SELECT RAISE(ABORT, 'the command table is append-only'); END;
             COMMIT;",
        )
    })();
    if let Err(e) = done {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(e.into());
    }
    // The older frames of the WAL still hold the version-1 hashes: copied into the file (where
    // secure_delete overwrote them) and truncated. A reader in another process blocks it for a
    // moment: retried for 10 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy == 0 {
            break;
        }
        if std::time::Instant::now() >= deadline {
            return Err(StoreError::Unavailable(format!(
                "{}: the content hashes are rewritten, but another process kept the log busy, so older bytes may stay in its WAL until the next checkpoint; open the ledger again when it is quieter",
                path.display()
            ).into()));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::Unavailable(format!("{}: fsync: {e}", path.display()).into()))
}

//! Opening the ledger's SQLite files one way: the log, the key store, the projections and the
//! access log. Its directory is created, a busy timeout set, the file switched to WAL and the
//! asked synchronous level set. Switching a new file to WAL (or creating its tables) can answer
//! "busy" or "locked" without waiting when two processes create the file at once (SQLite avoids
//! a deadlock there), so those steps are retried for 10 s ([`retry_busy`]).

use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a busy or locked file is waited for.
pub const BUSY_FOR: Duration = Duration::from_secs(10);

/// Why a SQLite file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Its directory could not be created.
    #[error("cannot create its directory: {0}")]
    Dir(#[source] std::io::Error),
    /// The file could not be opened (missing and not to be created, no permission…).
    #[error("cannot open it: {0}")]
    Open(#[source] rusqlite::Error),
    /// It opened but is not a usable SQLite database (or stayed locked for 10 s).
    #[error("not a usable SQLite database: {0}")]
    Unusable(#[source] rusqlite::Error),
}

/// How to open a file.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Create it (and its directory) when missing.
    pub create: bool,
    /// `PRAGMA synchronous`: `FULL` where acknowledged writes must be durable, `NORMAL` where
    /// a lost last write is rebuilt or made durable by another file's fsync.
    pub synchronous: &'static str,
}

/// Opens `path` in WAL mode with a busy timeout (see the module's doc).
pub fn open(path: &Path, options: Options) -> Result<Connection, OpenError> {
    if options.create {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(OpenError::Dir)?;
        }
    }
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if options.create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags).map_err(OpenError::Open)?;
    conn.busy_timeout(BUSY_FOR).map_err(OpenError::Unusable)?;
    retry_busy(|| conn.pragma_update(None, "journal_mode", "WAL")).map_err(OpenError::Unusable)?;
    conn.pragma_update(None, "synchronous", options.synchronous)
        .map_err(OpenError::Unusable)?;
    Ok(conn)
}

/// Runs `f` again while it answers busy or locked, for [`BUSY_FOR`] at most.
pub fn retry_busy<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = Instant::now() + BUSY_FOR;
    loop {
        match f() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20))
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_opens_in_wal_and_a_missing_one_is_not_created_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/x.db");
        let keep = Options {
            create: false,
            synchronous: "FULL",
        };
        assert!(matches!(open(&path, keep), Err(OpenError::Open(_))));
        assert!(!path.exists());
        let conn = open(
            &path,
            Options {
                create: true,
                synchronous: "NORMAL",
            },
        )
        .unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(conn);
        assert!(open(&path, keep).is_ok());
        std::fs::write(
            dir.path().join("junk.db"),
            b"not a database at all, not at all",
        )
        .unwrap();
        assert!(matches!(
            open(&dir.path().join("junk.db"), keep),
            Err(OpenError::Unusable(_))
        ));
    }
}

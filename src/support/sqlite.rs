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
    /// It (or its directory) could not be created.
    #[error("cannot create it or its directory: {0}")]
    Dir(#[source] std::io::Error),
    /// The file could not be opened (missing and not to be created, no permission…).
    #[error("cannot open it: {0}")]
    Open(#[source] rusqlite::Error),
    /// It opened but is not a usable SQLite database (or stayed locked for 10 s).
    #[error("not a usable SQLite database: {0}")]
    Unusable(#[source] rusqlite::Error),
    /// A copy could not be written to disk.
    #[error("cannot write it: {0}")]
    Write(#[source] std::io::Error),
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
        // 0600 (and its directory 0700) before SQLite creates it: its -wal and -shm follow.
        super::files::ensure_private_file(path).map_err(OpenError::Dir)?;
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

/// What a write the file system refused means, and what to do.
pub const DISK_REFUSED: &str =
    "the disk is full or a file-size limit was reached; free space and send again \
                                (what is stored is intact, and writing resumes by itself)";

/// Whether `e` is a full disk, or a write the file system refused (SQLITE_IOERR_WRITE, _FSYNC,
/// _TRUNCATE, _SHMSIZE: ENOSPC, EFBIG, EDQUOT).
pub fn disk_refused(e: &rusqlite::Error) -> bool {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => {
            f.code == rusqlite::ErrorCode::DiskFull
                || (f.code == rusqlite::ErrorCode::SystemIoFailure
                    && matches!(f.extended_code, 778 | 1034 | 1546 | 4874))
        }
        _ => false,
    }
}

/// Copies the SQLite file `source` to `dest` (a new file) while other connections, in this
/// process or others, keep writing: SQLite's online backup, run inside one read transaction of
/// the source, so the copy is the database as of that transaction's start, whole and
/// consistent, and no write in the meantime makes the backup start over. A writer is never
/// blocked (WAL). `progress(copied, total)` is called in pages after each step.
pub fn backup(
    source: &Path,
    dest: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), OpenError> {
    let src = open(
        source,
        Options {
            create: false,
            synchronous: "NORMAL",
        },
    )?;
    super::files::ensure_private_file(dest).map_err(OpenError::Write)?;
    let mut dst = Connection::open(dest).map_err(OpenError::Open)?;
    // The read transaction starts at its first read: from then on the source's pages are
    // those of one snapshot.
    src.execute_batch("BEGIN")
        .and_then(|_| src.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(())))
        .map_err(OpenError::Unusable)?;
    {
        use rusqlite::backup::{Backup, StepResult};
        let b = Backup::new(&src, &mut dst).map_err(OpenError::Unusable)?;
        loop {
            let step = b.step(256).map_err(OpenError::Unusable)?;
            let p = b.progress();
            let total = p.pagecount.max(0) as u64;
            progress(total.saturating_sub(p.remaining.max(0) as u64), total);
            match step {
                StepResult::Done => break,
                StepResult::More => {}
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
    src.execute_batch("COMMIT").map_err(OpenError::Unusable)?;
    // One self-contained file: the copy's pages written back from its own WAL.
    dst.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .map_err(OpenError::Unusable)?;
    drop(dst);
    std::fs::File::open(dest)
        .and_then(|f| f.sync_all())
        .map_err(OpenError::Write)
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

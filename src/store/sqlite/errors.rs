//! SQLite's errors as the store's kinds: a busy or full database is `Unavailable` (retry
//! later), anything else a `Backend` error with SQLite's own kept as the cause.

use super::{Cause, StoreError};
use crate::support::sqlite::{disk_refused, DISK_REFUSED};

impl From<rusqlite::Error> for StoreError {
    /// SQLite's errors as the shared kinds: a busy, locked, full or read-only database is
    /// `Unavailable` (retry later); anything else is a `Backend` failure with SQLite's error
    /// as its cause.
    fn from(e: rusqlite::Error) -> StoreError {
        sqlite_time(e)
    }
}

pub(super) fn sqlite_time(e: rusqlite::Error) -> StoreError {
    if disk_refused(&e) {
        return StoreError::Unavailable(Cause::with_source(DISK_REFUSED.to_string(), e));
    }
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
            StoreError::Unavailable(Cause::with_source(e.to_string(), e))
        }
        _ => StoreError::Backend {
            backend: "SQLite",
            source: Box::new(e),
        },
    }
}

/// What to tell the callers of a group commit that failed with `e`: a full disk or a file-size
/// limit (SQLite's "full", or an I/O error while writing) says so, names the file and what to
/// do; anything else is `e`'s own words, without the kind's prefix.
pub(super) fn write_failure(e: &StoreError, wal: &std::path::Path) -> String {
    let refused = e.cause().is_some_and(|c| {
        let mut c: Option<&(dyn std::error::Error + 'static)> = Some(c);
        while let Some(x) = c {
            if x.downcast_ref::<rusqlite::Error>()
                .is_some_and(disk_refused)
            {
                return true;
            }
            c = x.source();
        }
        false
    });
    if refused {
        return format!("cannot write {}: {DISK_REFUSED}", wal.display());
    }
    match e {
        StoreError::Unavailable(c) | StoreError::Corrupt(c) | StoreError::Invalid(c) => {
            c.to_string()
        }
        other => other.to_string(),
    }
}

//! SQLite's errors as the store's kinds: a busy or full database is `Unavailable` (retry
//! later), anything else a `Backend` error with SQLite's own kept as the cause.

use super::{Cause, StoreError};

impl From<rusqlite::Error> for StoreError {
    /// SQLite's errors as the shared kinds: a busy, locked, full or read-only database is
    /// `Unavailable` (retry later); anything else is a `Backend` failure with SQLite's error
    /// as its cause.
    fn from(e: rusqlite::Error) -> StoreError {
        sqlite_time(e)
    }
}

pub(super) fn sqlite_time(e: rusqlite::Error) -> StoreError {
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

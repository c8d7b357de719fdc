//! The projection layer's error: each variant says how a caller handles it.

use crate::store::StoreError;

/// Errors of the projection layer. Each says how a caller handles it.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// No projection has this name. Run `projections list` (HTTP 404).
    #[error(
        "there is no projection named {0:?}; run `campaign-ledger projections list` to see them"
    )]
    Unknown(String),
    /// Reading the log failed (see the store error).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The projection database could not be read or written. Check the file; it can be deleted
    /// and rebuilt from the log at any time.
    #[error("projection database {path}: {message}")]
    Db {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
    /// An event's data could not be read back as its type (run `audit verify`).
    #[error("the event at position {position} cannot be read: {message}; run `campaign-ledger audit verify`")]
    Data {
        /// Its position.
        position: u64,
        /// What is wrong.
        message: String,
    },
}

impl ProjectionError {
    /// The name asked for, when no projection has it.
    pub fn unknown_name(&self) -> Option<String> {
        match self {
            ProjectionError::Unknown(n) => Some(n.clone()),
            _ => None,
        }
    }
}

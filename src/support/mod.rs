//! Small helpers below every layer that touches files: opening the ledger's SQLite files one
//! way, writing private files (keys, tokens) atomically, a progress counter shared between
//! tasks, what background parts say of their health. No knowledge of events.

pub mod cause;
pub mod files;
pub mod health;
pub mod progress;
pub mod sqlite;

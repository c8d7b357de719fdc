//! Small helpers below every layer that touches files: opening the ledger's SQLite files one
//! way, and writing private files (keys, tokens) atomically. No knowledge of events.

pub mod files;
pub mod sqlite;

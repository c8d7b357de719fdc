//! The migration of content hashes to version 2. A ledger of an older build kept, for each
//! command, the SHA-256 of its canonical JSON, ref in clear: every other field of the command
//! is in its event, so whoever held an export could try every ref of a small space against
//! it. Version 2 puts the person's pseudonym in place of the ref
//! (`CommandEnvelope::content_hash`). The four commands that name a person copy every field
//! into their one event (`Command::recorded_by`), so their version-2 hash is made again from
//! the log — also for an erased person, whose ref is gone but whose pseudonym is in the event;
//! the other commands name no person and keep their hash, now of version 2.
//!
//! Run when a ledger is opened (`migrate_content_hashes`), and after an import of an older
//! export; a store with nothing of version 1 answers at once.

use super::AppError;
use crate::domain::{content_hash, Command, Event};
use crate::store::EventStore;
use std::collections::HashMap;

/// Rewrites every content hash of version 1 in `store` as version 2; returns how many.
pub fn migrate_content_hashes(store: &dyn EventStore) -> Result<usize, AppError> {
    let old = store.commands_of_hash_version_1()?;
    if old.is_empty() {
        return Ok(0);
    }
    // By the position of each command's first event: its hash, kept unless the event rebuilds
    // a command naming a person.
    let mut by_first: HashMap<u64, (uuid::Uuid, [u8; 32])> = old
        .iter()
        .map(|c| (c.first_position, (c.command_id, c.content_hash)))
        .collect();
    let from = old.iter().map(|c| c.first_position).min().unwrap_or(1);
    let to = old.iter().map(|c| c.first_position).max().unwrap_or(0);
    let mut failed: Option<AppError> = None;
    store.scan(from - 1, to, &mut |e| {
        let Some(entry) = by_first.get_mut(&e.position) else {
            return true;
        };
        if entry.0 != e.command_id {
            return true;
        }
        match Event::decode(e.event_type, e.schema_version, e.data) {
            Ok(event) => {
                if let Some(command) = Command::recorded_by(&event) {
                    let person = crate::privacy::person_named(e.data);
                    entry.1 = content_hash(&command, person.as_deref());
                }
                true
            }
            Err(source) => {
                failed = Some(AppError::Decode {
                    stream: e.stream_id.to_string(),
                    source,
                });
                false
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    let hashes: Vec<(uuid::Uuid, [u8; 32])> = by_first.into_values().collect();
    store.rehash_commands(&hashes)?;
    tracing::info!(
        commands = hashes.len(),
        "content hashes of an older build rewritten as version 2"
    );
    Ok(hashes.len())
}

//! One key store writes persons to a log that does not keep the person index itself (the NATS
//! log, until the keys live in the cluster). Two key stores — or a copy of one that missed
//! people recorded since — would each take a ref they do not know for a new person: one ref,
//! two pseudonyms, counted twice. So before a new person is recorded:
//!
//! - the log names the key store that writes persons (`KeyStoreBound` in the stream
//!   `ledger/key-store`, appended by the first writer of a person, expected version 0, so that
//!   of two racing key stores one wins); a process whose key store has another id refuses;
//! - the events after the last search are read, and a person the log seals whose key this key
//!   store never held (`KeyState::Unknown`) means it is not the key store the people were
//!   written with: it refuses too. How far the log was searched is kept in the key store.
//!
//! Reads, reports and audits never ask: only recording a new person does.

use super::{AppError, Ledger};
use crate::domain::{Event, KeyStoreBound};
use crate::privacy::{sealed_person_id, sealed_ref_in, KeyState, KeyStore};
use crate::store::{
    Actor, AppendRequest, AppendResult, CommandMeta, ExpectedVersion, NewEvent, StoreError,
};

/// The stream that names the person writer.
pub const KEY_STORE_STREAM: &str = "ledger/key-store";

/// How many events are searched between two saves of how far the search went.
const SAVE_EVERY: u64 = 4096;

/// What this process knows of its right to record persons.
#[derive(Default)]
pub(super) struct WriterCheck {
    /// The log names this key store as its person writer.
    bound: bool,
    /// The log up to here names no person the key store lacks.
    upto: u64,
    /// What the key store holds of `upto`.
    saved: u64,
}

impl Ledger {
    /// Whether this process's key store may record new persons in the log (see the module).
    pub(super) fn check_person_writer(&self, keys: &KeyStore) -> Result<(), AppError> {
        let mut checked = self
            .writer_checked
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !checked.bound {
            let id = keys.id()?;
            self.bind_key_store(keys, &id)?;
            checked.bound = true;
            checked.upto = keys.checked_upto()?;
            checked.saved = checked.upto;
        }
        let head = self.store.head_position()?;
        if head > checked.upto {
            let mut missing: Option<String> = None;
            let mut failed: Option<StoreError> = None;
            self.store.scan_data(checked.upto, head, &mut |e| {
                let Some(pid) = sealed_ref_in(e.data).and_then(sealed_person_id) else {
                    return true;
                };
                match keys.state(pid) {
                    Ok(KeyState::Unknown) => {
                        missing = Some(pid.to_string());
                        false
                    }
                    Ok(_) => true,
                    Err(err) => {
                        failed = Some(err);
                        false
                    }
                }
            })?;
            if let Some(e) = failed {
                return Err(e.into());
            }
            if let Some(pid) = missing {
                return Err(refused(
                    keys,
                    &format!("the log holds person {pid}, whose key this key store never held: it is a copy that missed the people recorded since, or another key store"),
                ));
            }
            checked.upto = head;
            // Kept in the key store now and then: the next process starts its search there.
            if head - checked.saved >= SAVE_EVERY {
                keys.set_checked_upto(head)?;
                checked.saved = head;
            }
        }
        Ok(())
    }

    /// Names `id` as the log's person writer, unless the log names one already: then it must
    /// be `id`.
    fn bind_key_store(&self, keys: &KeyStore, id: &str) -> Result<(), AppError> {
        let bound = |events: &[crate::store::RecordedEvent]| -> Option<String> {
            let e = events.first()?;
            match Event::decode(&e.event_type, e.schema_version, &e.data) {
                Ok(Event::KeyStoreBound(b)) => Some(b.key_store_id),
                _ => None,
            }
        };
        let mut existing = bound(&self.store.read_stream(KEY_STORE_STREAM)?);
        if existing.is_none() {
            let now = self.clock.now();
            let event = Event::KeyStoreBound(KeyStoreBound {
                key_store_id: id.to_string(),
                bound_at: now.fixed_offset(),
            });
            let request = AppendRequest {
                stream_id: KEY_STORE_STREAM.into(),
                expected: ExpectedVersion::Exact(0),
                command: CommandMeta {
                    command_id: uuid::Uuid::now_v7(),
                    content_hash: crate::domain::content_hash_of_text(&format!(
                        "bind key store {id}"
                    )),
                    correlation_id: None,
                    actor: Actor {
                        role: "ledger".into(),
                        directorate: None,
                        agent_ref: None,
                    },
                },
                events: vec![NewEvent {
                    event_type: event.event_type().to_string(),
                    schema_version: event.schema_version(),
                    occurred_at: event.occurred_at(),
                    data: event.data_json(),
                }],
                person: None,
            };
            match self.store.append(request) {
                Ok(AppendResult::Committed(_)) | Ok(AppendResult::Duplicate(_)) => return Ok(()),
                // Another process bound its key store first: the log says which.
                Err(StoreError::Conflict { .. }) => {
                    existing = bound(&self.store.read_stream(KEY_STORE_STREAM)?);
                }
                Err(e) => return Err(e.into()),
            }
        }
        match existing {
            Some(other) if other != id => Err(refused(
                keys,
                &format!(
                    "the log's persons are written with key store {other}, and this one is {id}"
                ),
            )),
            _ => Ok(()),
        }
    }
}

fn refused(keys: &KeyStore, why: &str) -> AppError {
    StoreError::Unavailable(
        format!(
            "this process cannot record new persons with the key store {}: {why}. Recording them here would give one ref two pseudonyms. \
             Give every process that writes to this log the same key store (--key-store, LEDGER_KEY_STORE) and its master key; \
             reads, reports, audits and commands about people this key store knows go on",
            keys.path().display()
        )
        .into(),
    )
    .into()
}

//! Erasure (crypto-shredding): `PersonErased` in the person's stream, the erasure journal,
//! then the key destroyed and the index entry removed; and the journal applied again to a
//! ledger restored from a backup taken before some of its erasures.

use super::persons::Found;
use super::{AppError, Ledger};
use crate::domain::{streams, Event};
use crate::store::{Actor, AppendRequest, CommandMeta, ExpectedVersion, NewEvent, StoreError};
use serde::Serialize;

/// What `erase-person` did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Erasure {
    /// The person's pseudonym.
    pub person_id: String,
    /// The position of the `PersonErased` event (an earlier one, if the erasure was
    /// interrupted after it was recorded).
    pub position: u64,
}

impl Ledger {
    /// Erases a person: records `PersonErased` (who and when, by the person's pseudonym) in
    /// their stream, then destroys their key. Running it again after an interruption
    /// finishes the job. `Ok(None)`: the key store has no key for this ref (never recorded,
    /// or erased already).
    pub fn erase_person(
        &self,
        person_ref: &str,
        actor: &Actor,
    ) -> Result<Option<Erasure>, AppError> {
        crate::domain::check_person_ref(person_ref).map_err(|e| {
            StoreError::Invalid(format!("{e} Give the ref exactly as the commands gave it.").into())
        })?;
        let Some(keys) = &self.keys else {
            return Err(StoreError::Invalid(
                "this ledger runs without a key store: nothing can be erased".into(),
            )
            .into());
        };
        let person_id = match self.find_person(keys, person_ref, true)? {
            Found::Key(key) => key.person_id,
            Found::Erasing(person_id) => person_id,
            Found::Nobody => {
                if self.legacy_log
                    && !self
                        .store
                        .read_stream(&streams::person(person_ref))?
                        .is_empty()
                {
                    return Err(StoreError::Invalid(format!(
                        "{person_ref} was recorded before the ledger encrypted person refs: those events hold the ref in clear and cannot be erased by destroying a key, and the ledger never rewrites its log. What to do instead: record the request in your register of erasure requests, restrict who may read this ledger's files, exports and NATS stream, and keep exports of it out of circulation; people recorded from now on are sealed and erasable"
                    ).into())
                    .into());
                }
                return Ok(None);
            }
        };
        let (position, erased_at) = self.record_erasure(&person_id, actor, None)?;
        // In the journal before the key goes: a restore of an older backup applies it again.
        if let Some(journal) = &self.journal {
            journal.record(&crate::privacy::JournalEntry {
                ledger: self.ledger_id()?,
                person_id: person_id.clone(),
                erased_at: erased_at.clone(),
            })?;
        }
        // The key first, then the index entry: an erasure interrupted between the two is
        // found again by the entry (`Found::Erasing`) and finished by running it again.
        keys.erase(&person_id, &erased_at)?;
        if self.store.keeps_persons() {
            self.store.forget_person(&keys.lookup(person_ref))?;
        }
        Ok(Some(Erasure {
            person_id,
            position,
        }))
    }

    /// The person's `PersonErased` in their stream (the one there, or one appended now, its
    /// data carrying `erased_at` when given, else now): its position and erasure time.
    fn record_erasure(
        &self,
        person_id: &str,
        actor: &Actor,
        erased_at: Option<&str>,
    ) -> Result<(u64, String), AppError> {
        let stream = streams::person(person_id);
        let existing = self
            .store
            .read_stream(&stream)?
            .into_iter()
            .find(|e| e.event_type == "PersonErased");
        if let Some(e) = existing {
            let at = match Event::decode(&e.event_type, e.schema_version, &e.data) {
                Ok(Event::PersonErased(p)) => {
                    crate::store::format_recorded_at(p.erased_at.to_utc())
                }
                _ => e.recorded_at.clone(),
            };
            return Ok((e.position, at));
        }
        // One instant, to the microsecond, for the event and the key store.
        let erased_at = match erased_at {
            Some(t) => t.to_string(),
            None => crate::store::format_recorded_at(self.clock.now()),
        };
        let when = chrono::DateTime::parse_from_rfc3339(&erased_at).map_err(|e| {
            StoreError::Invalid(
                format!("the erasure time {erased_at:?} is not RFC 3339: {e}").into(),
            )
        })?;
        let event = Event::PersonErased(crate::domain::PersonErased {
            person_id: person_id.to_string(),
            erased_at: when,
        });
        let request = AppendRequest {
            stream_id: stream,
            expected: ExpectedVersion::Any,
            command: CommandMeta {
                command_id: uuid::Uuid::now_v7(),
                content_hash: crate::domain::content_hash_of_text(&format!(
                    "erase-person {person_id}"
                )),
                correlation_id: None,
                actor: actor.clone(),
            },
            events: vec![NewEvent {
                event_type: event.event_type().to_string(),
                schema_version: event.schema_version(),
                occurred_at: event.occurred_at(),
                data: event.data_json(),
            }],
            person: None,
        };
        let position = match self.store.append(request)? {
            crate::store::AppendResult::Committed(r) | crate::store::AppendResult::Duplicate(r) => {
                r.first_position
            }
        };
        Ok((position, erased_at))
    }

    /// The ledger's id: the hash of its first event (hex; empty for an empty log).
    fn ledger_id(&self) -> Result<String, AppError> {
        Ok(self
            .store
            .read_all(0, 1)?
            .first()
            .map(|e| hex::encode(e.hash))
            .unwrap_or_default())
    }

    /// Applies an erasure journal to this ledger (a restore of a backup taken before some of
    /// its erasures): for each erasure the log lacks, appends `PersonErased` (recorded now, its
    /// data carrying the original time), then destroys the key and the index entry, as
    /// `erase_person` does. Returns how many erasures the log lacked. A journal of another
    /// ledger is refused.
    pub fn apply_erasure_journal(
        &self,
        journal: &crate::privacy::ErasureJournal,
        actor: &Actor,
    ) -> Result<usize, AppError> {
        let Some(keys) = &self.keys else {
            return Err(StoreError::Invalid(
                "applying an erasure journal needs the key store and its master key".into(),
            )
            .into());
        };
        let ledger = self.ledger_id()?;
        let mut applied = 0;
        for entry in journal.entries()? {
            if entry.ledger != ledger {
                return Err(StoreError::Invalid(format!(
                    "the erasure journal {} is of the ledger {}, and this one is {ledger}: give this ledger's journal",
                    journal.path().display(),
                    entry.ledger
                ).into()).into());
            }
            let stream = streams::person(&entry.person_id);
            let erased = self
                .store
                .read_stream(&stream)?
                .iter()
                .any(|e| e.event_type == "PersonErased");
            if !erased {
                self.record_erasure(&entry.person_id, actor, Some(&entry.erased_at))?;
                applied += 1;
            }
            keys.erase(&entry.person_id, &entry.erased_at)?;
            if self.store.keeps_persons() {
                self.store.forget_person_id(&entry.person_id)?;
            }
        }
        Ok(applied)
    }
}

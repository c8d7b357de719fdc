//! Crypto-shredding in the command path and on reads.
//!
//! With a key store (`Ledger::with_keys`, which the CLI and the server always give), a
//! command naming a person works on the stream `person/<person_id>` (a random pseudonym from
//! the key store, never the ref), and the person-level field of every event it appends
//! (`person_ref`) is stored sealed: `enc2:<person_id>:<base64url(nonce ‖ AES-256-GCM
//! ciphertext)>`, the ref padded to one length, the associated data binding it to the person
//! and the field (`privacy::seal`; `enc1:` values of older builds keep opening). The hash chain
//! covers these bytes, so destroying the key (`erase-person`) changes nothing in the log:
//! `audit verify` still passes, every projection (none reads `person_ref`) keeps its counts,
//! and the ref no longer leads to the person's stream, so their history no longer takes part
//! in any rule. Free-text fields: the events have none (lot numbers, sites and partner
//! centres are not personal).
//!
//! A log written before the key store existed keeps its clear refs (`person/<person_ref>`
//! streams): the ledger goes on using them for those people, and says that they cannot be
//! erased by destroying a key.

use super::{AppError, Ledger};
use crate::domain::{streams, Event};
use crate::privacy::{open_sealed, seal, sealed_person_id, sealed_ref_in};
use crate::privacy::{KeyState, PersonKey};
use crate::store::{Actor, PersonLink, RecordedEvent, StoreError};
use serde::Serialize;

/// What a read shows of an event's person.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PersonView {
    /// `revealed` (the key opened it), `erased` (the key was destroyed), `clear` (written
    /// before encryption), or `no_key` (this key store never held the key).
    pub status: &'static str,
    /// The person's pseudonym (sealed values only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person_id: Option<String>,
    /// The ref, when it can be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person_ref: Option<String>,
    /// When the key was destroyed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub erased_at: Option<String>,
}

/// The person a command names, as the ledger knows them.
pub(super) enum Named {
    /// The command names no person, or the ledger runs without a key store.
    Nobody,
    /// A person the ledger knows.
    Known(Person),
    /// A ref the ledger does not know: nothing is made for them until the rules accept.
    New,
}

/// The person a command works on.
#[derive(Clone)]
pub(super) struct Person {
    /// The stream the person's events go to.
    pub stream: String,
    /// The key their fields are sealed with (`None`: a person recorded in clear before the
    /// key store existed).
    pub key: Option<PersonKey>,
    /// A person seen for the first time on a log that keeps the person index: the entry the
    /// append records with their first events.
    pub link: Option<PersonLink>,
}

impl Person {
    /// Their pseudonym: their key's, or for a person recorded in clear by an older build the
    /// ref itself (their stream's name).
    pub fn person_id(&self, person_ref: Option<&str>) -> String {
        match &self.key {
            Some(k) => k.person_id.clone(),
            None => person_ref.unwrap_or_default().to_string(),
        }
    }
}

/// The key of a pseudonym, if it is to be found again (`Ledger::sealed_persons`).
type KeyOf<'a> = dyn FnMut(&str) -> Result<Option<[u8; 32]>, AppError> + 'a;

/// What the key store and the person index say about a ref.
pub(super) enum Found {
    /// The person's key.
    Key(PersonKey),
    /// The person index still names this pseudonym, whose key is destroyed: an erasure was
    /// interrupted (or is under way in another process).
    Erasing(String),
    /// Never recorded, or erased.
    Nobody,
}

impl Ledger {
    /// What the ref leads to: on a log that keeps the person index (SQLite), the index gives
    /// the pseudonym and the key store its key; on the others, the key store gives both.
    ///
    /// Commands look up without `fresh` (a person another process recorded a moment ago and
    /// this one does not know yet is refused by the index when recorded again, and looked up
    /// afresh); erasure and reads by ref look at the log itself.
    pub(super) fn find_person(
        &self,
        keys: &crate::privacy::KeyStore,
        person_ref: &str,
        fresh: bool,
    ) -> Result<Found, AppError> {
        if !self.store.keeps_persons() {
            return Ok(keys.find(person_ref)?.map_or(Found::Nobody, Found::Key));
        }
        let lookup = keys.lookup(person_ref);
        if let Some(k) = keys.cached(&lookup)? {
            return Ok(Found::Key(k));
        }
        let Some(person_id) = self.store.person_id(&lookup, fresh)? else {
            return Ok(Found::Nobody);
        };
        Ok(match keys.state(&person_id)? {
            KeyState::Present(key) => {
                let key = PersonKey { person_id, key };
                keys.remember(&lookup, &key);
                Found::Key(key)
            }
            // Erased by another process since this one remembered the entry? The log says.
            KeyState::Erased(_) if !fresh => return self.find_person(keys, person_ref, true),
            KeyState::Erased(_) => Found::Erasing(person_id),
            KeyState::Unknown => {
                return Err(StoreError::Corrupt(
                    format!(
                        "the log's person index names {person_id}, whose key {} never held: give the key store this log was written with (--keys)",
                        keys.path().display()
                    )
                    .into(),
                )
                .into())
            }
        })
    }

    /// The person a command names, as the ledger knows them: their key and stream, a person
    /// of an older build recorded in clear, or nobody yet (`New`: nothing is made for them
    /// here; see `make_person`). With `fresh`, the store itself is read.
    pub(super) fn named(&self, person_ref: &str, fresh: bool) -> Result<Named, AppError> {
        let Some(keys) = &self.keys else {
            return Ok(Named::Nobody);
        };
        match self.find_person(keys, person_ref, fresh)? {
            Found::Key(key) => {
                return Ok(Named::Known(Person {
                    stream: streams::person(&key.person_id),
                    key: Some(key),
                    link: None,
                }))
            }
            Found::Erasing(_) => {
                return Err(StoreError::Invalid(
                    "this person's erasure is under way or was interrupted: if no erase-person is running, run it again to finish it; then the ref can be recorded afresh"
                        .into(),
                )
                .into())
            }
            Found::Nobody => {}
        }
        if self.legacy_log {
            let clear = streams::person(person_ref);
            if !self.store.read_stream(&clear)?.is_empty() {
                return Ok(Named::Known(Person {
                    stream: clear,
                    key: None,
                    link: None,
                }));
            }
        }
        // A ref this key store does not know, where the key store records persons: unless it
        // is the log's person writer, the ref may be a person another key store recorded,
        // whose command must not be judged on an empty history.
        if !self.store.keeps_persons() {
            self.check_person_writer(keys)?;
        }
        Ok(Named::New)
    }

    /// A key and stream for a person the rules just accepted a first command about. Where
    /// the log keeps the person index (SQLite), a key made in advance, whose index entry the
    /// append records with the events; elsewhere (the NATS log) the key store records the
    /// person, keeping the one another process made first: `false` then (not made here).
    pub(super) fn make_person(&self, person_ref: &str) -> Result<(Person, bool), AppError> {
        let keys = self
            .keys
            .as_ref()
            .expect("only a key store names new persons");
        if !self.store.keeps_persons() {
            self.check_person_writer(keys)?;
            let (key, created) = keys.create(person_ref)?;
            return Ok((
                Person {
                    stream: streams::person(&key.person_id),
                    key: Some(key),
                    link: None,
                },
                created,
            ));
        }
        let key = keys.take_new()?;
        Ok((
            Person {
                stream: streams::person(&key.person_id),
                link: Some(PersonLink {
                    lookup: keys.lookup(person_ref),
                    person_id: key.person_id.clone(),
                }),
                key: Some(key),
            },
            true,
        ))
    }

    /// A key made in advance for a person whose append did not commit goes back to the pool
    /// (it was never anyone's: the log holds no entry naming it).
    pub(super) fn give_back(&self, made: bool, person: Option<Person>) {
        if let (
            true,
            Some(keys),
            Some(Person {
                key: Some(key),
                link: Some(_),
                ..
            }),
        ) = (made, &self.keys, person)
        {
            keys.give_back(key);
        }
    }

    /// Records in the access log that `actor` was shown a fact of a person's record (a
    /// refusal's message) through this ledger's channel.
    pub(super) fn disclosed(
        &self,
        actor: &Actor,
        person_id: String,
        disclosed: &str,
    ) -> Result<(), AppError> {
        let Some((log, via)) = &self.access_log else {
            return Ok(());
        };
        log.record(&crate::audit::Disclosure {
            caller: actor.agent_ref.clone().unwrap_or_else(|| "-".into()),
            role: actor.role.clone(),
            route: via.clone(),
            persons: vec![person_id],
            events: 0,
            revealed: 0,
            disclosed: disclosed.to_string(),
        })?;
        Ok(())
    }

    /// Makes every person of the log findable by ref again, where events reached the log
    /// without their index entry: a log imported from an export, a log of an older build (whose
    /// key store recorded the assignments, lazily), or an assignment a crash took back there.
    /// The events after the last search are read; each person they seal whom the index lacks
    /// is found again from their event (the sealed ref, opened with their key, gives the ref
    /// back) and indexed: in the log's person index where the log keeps one, else in the key
    /// store. Returns how many were indexed. Run when the ledger opens with its keys.
    pub(super) fn index_persons(&self) -> Result<usize, AppError> {
        let Some(keys) = &self.keys else {
            return Ok(0);
        };
        let head = self.store.head_position()?;
        if !self.store.keeps_persons() {
            let from = keys.assignments_durable_upto()?;
            let found = self.sealed_persons(from, head, &mut |id| Ok(keys.unassigned(id)?))?;
            keys.assign(&found, head)?;
            return Ok(self.found_again(found.len()));
        }
        // The assignments an older build kept in the key store, taken over once.
        let mut links: Vec<PersonLink> = Vec::new();
        let older = !keys.persons_in_log()?;
        if older {
            links.extend(
                keys.assignments()?
                    .into_iter()
                    .map(|(lookup, person_id)| PersonLink { lookup, person_id }),
            );
        }
        let from = self.store.person_index_upto()?;
        let found = if head > from {
            let known = self.store.person_ids()?;
            self.sealed_persons(from, head, &mut |id| {
                if known.contains(id) {
                    return Ok(None);
                }
                Ok(match keys.state(id)? {
                    KeyState::Present(k) => Some(k),
                    _ => None,
                })
            })?
        } else {
            Vec::new()
        };
        let again = found.len();
        links.extend(found.into_iter().map(|(r, person_id)| PersonLink {
            lookup: keys.lookup(&r),
            person_id,
        }));
        if !links.is_empty() || head > from {
            self.store.link_persons(&links, head)?;
        }
        if older {
            keys.set_persons_in_log()?;
        }
        Ok(self.found_again(again))
    }

    fn found_again(&self, n: usize) -> usize {
        if n > 0 {
            tracing::warn!(
                persons = n,
                "people of the log the person index lacked (an import, an older build, or an interrupted run) were found again from their events"
            );
        }
        n
    }

    /// The people sealed in events (from, to] for whom `key_of` gives a key: (ref, person_id),
    /// each once, the ref read back from their sealed field.
    fn sealed_persons(
        &self,
        from: u64,
        to: u64,
        key_of: &mut KeyOf<'_>,
    ) -> Result<Vec<(String, String)>, AppError> {
        let mut found: Vec<(String, String)> = Vec::new();
        let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut failed: Option<AppError> = None;
        if to > from {
            self.store.scan_data(from, to, &mut |e| {
                let Some(value) = sealed_ref_in(e.data) else {
                    return true;
                };
                let Some(person_id) = sealed_person_id(value) else {
                    return true;
                };
                if !seen.insert(person_id.to_string()) {
                    return true;
                }
                match key_of(person_id) {
                    Ok(Some(k)) => {
                        if let Some(r) = open_sealed(&k, value) {
                            found.push((r, person_id.to_string()));
                        }
                        true
                    }
                    Ok(None) => true,
                    Err(err) => {
                        failed = Some(err);
                        false
                    }
                }
            })?;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(found),
        }
    }

    /// Seals the person-level field of events that carry `person_ref` in clear.
    pub(super) fn seal_events(
        &self,
        events: &mut [Event],
        person_ref: &str,
        key: &PersonKey,
    ) -> Result<(), AppError> {
        for e in events {
            if let Some(r) = e.person_ref_mut() {
                if r == person_ref {
                    *r = seal(key, person_ref)?;
                }
            }
        }
        Ok(())
    }

    /// A person found by their ref (the key store's lookup; nothing is created): their
    /// pseudonym and the positions of every event naming them, in log order. `None` when the
    /// key store holds no key for the ref (never recorded, or erased). Reads the whole log.
    pub fn person_events(&self, person_ref: &str) -> Result<Option<(String, Vec<u64>)>, AppError> {
        let Some(keys) = &self.keys else {
            return Ok(None);
        };
        let Found::Key(key) = self.find_person(keys, person_ref, true)? else {
            return Ok(None);
        };
        let id = key.person_id.clone();
        let mut positions = Vec::new();
        let head = self.store.head_position()?;
        self.store.scan(0, head, &mut |e| {
            if sealed_ref_in(e.data).and_then(sealed_person_id) == Some(id.as_str()) {
                positions.push(e.position);
            }
            true
        })?;
        Ok(Some((id, positions)))
    }

    /// What a reader may see of an event's person (`None` for events naming no person).
    pub fn reveal(&self, e: &RecordedEvent) -> Result<Option<PersonView>, AppError> {
        #[derive(serde::Deserialize)]
        struct P {
            person_ref: Option<String>,
        }
        let Ok(P {
            person_ref: Some(value),
        }) = serde_json::from_str::<P>(&e.data)
        else {
            return Ok(None);
        };
        let Some(person_id) = sealed_person_id(&value) else {
            return Ok(Some(PersonView {
                status: "clear",
                person_id: None,
                person_ref: Some(value),
                erased_at: None,
            }));
        };
        let view = |status, person_ref, erased_at| PersonView {
            status,
            person_id: Some(person_id.to_string()),
            person_ref,
            erased_at,
        };
        let Some(keys) = &self.keys else {
            return Ok(Some(view("no_key", None, None)));
        };
        Ok(Some(match keys.state(person_id)? {
            KeyState::Present(k) => match open_sealed(&k, &value) {
                Some(clear) => view("revealed", Some(clear), None),
                None => {
                    return Err(StoreError::Corrupt(format!(
                        "the person_ref of the event at position {} does not open with its person's key",
                        e.position
                    ).into())
                    .into())
                }
            },
            KeyState::Erased(at) => view("erased", None, Some(at)),
            KeyState::Unknown => view("no_key", None, None),
        }))
    }
}

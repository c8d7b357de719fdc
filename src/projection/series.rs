//! The `data_quality` projection's fold: each person's dose series, folded by the domain's own
//! `evolve`, and the findings the domain derives from it (`domain::findings`).
//!
//! The fold keeps one `PersonState` per person stream in memory and advances from the last
//! position it read, like the other projections; it is not saved (a series is needed whole to
//! judge a later entry), so a process folds the person streams once on its first read of
//! `data_quality` and then only what is new. `known_at` reads fold afresh up to that commit
//! time; `as_of` keeps the findings dated on or before the day (the domain dates each finding
//! at the entry that no longer holds, judged on the entries dated at or before it).

use super::error::ProjectionError;
use super::state::{day_number, Cell, State};
use crate::domain::{findings_as_of, Event, Finding, Origin, Policy, StreamState};
use crate::store::{EventRef, EventStore};
use chrono::NaiveDate;
use std::collections::HashMap;

/// The event types the fold reads (all of them on person streams).
const TYPES: [&str; 5] = [
    "DoseAdministered",
    "ExternalDoseRecorded",
    "DoseEntryReversed",
    "ExternalDoseReversed",
    "PersonErased",
];

/// Where the fold stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// The last position read.
    pub position: u64,
    /// Its hash (to tell that the log under the fold was not replaced).
    pub hash: [u8; 32],
}

/// Every person's series, as far as the log was read.
#[derive(Debug, Clone)]
pub struct SeriesFold {
    persons: HashMap<String, StreamState>,
    /// The last position read.
    pub mark: Mark,
}

/// One person's open finding, for the list a supervisor reads.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonFinding {
    /// The person's stream (`person/<person_id>`).
    pub stream_id: String,
    /// The stored (sealed, or for a log written before the key store, clear) `person_ref`.
    pub stored_ref: String,
    /// The finding.
    pub finding: Finding,
}

impl Default for SeriesFold {
    fn default() -> Self {
        SeriesFold {
            persons: HashMap::new(),
            mark: Mark {
                position: 0,
                hash: crate::store::GENESIS_HASH,
            },
        }
    }
}

impl SeriesFold {
    /// Folds one event (any event: those of other types are only noted as read).
    pub fn apply(&mut self, e: &EventRef<'_>, policy: &Policy) -> Result<(), ProjectionError> {
        self.mark = Mark {
            position: e.position,
            hash: e.hash,
        };
        if !TYPES.contains(&e.event_type) || !e.stream_id.starts_with("person/") {
            return Ok(());
        }
        let event = Event::decode(e.event_type, e.schema_version, e.data).map_err(|err| {
            ProjectionError::Data {
                position: e.position,
                message: err.to_string(),
            }
        })?;
        if matches!(event, Event::PersonErased(_)) {
            // Erased: no command can reach the series any more, so nothing can resolve it.
            self.persons.remove(e.stream_id);
            return Ok(());
        }
        let origin = Origin {
            event_id: e.event_id,
            command_id: e.command_id,
        };
        self.persons
            .entry(e.stream_id.to_string())
            .or_default()
            .evolve(&event, origin, policy);
        Ok(())
    }

    /// Reads `(self.mark, to]` from the log, stopping before the first event recorded after
    /// `known_at` (text as the store writes it).
    pub fn advance(
        &mut self,
        store: &dyn EventStore,
        to: u64,
        known_at: Option<&str>,
        policy: &Policy,
    ) -> Result<(), ProjectionError> {
        let mut failed = None;
        store.scan(self.mark.position, to, &mut |e| {
            if known_at.is_some_and(|k| e.recorded_at > k) {
                return false;
            }
            match self.apply(&e, policy) {
                Ok(()) => true,
                Err(err) => {
                    failed = Some(err);
                    false
                }
            }
        })?;
        failed.map_or(Ok(()), Err)
    }

    /// The open findings dated on or before `as_of`, by person stream then date.
    pub fn open(&self, policy: &Policy, as_of: Option<NaiveDate>) -> Vec<PersonFinding> {
        let mut out: Vec<PersonFinding> = Vec::new();
        for (stream, state) in &self.persons {
            let found = findings_as_of(&state.person, policy, as_of);
            if found.is_empty() {
                continue;
            }
            let stored_ref = state
                .person
                .doses
                .first()
                .map(|d| d.person_ref.clone())
                .unwrap_or_default();
            out.extend(found.into_iter().map(|finding| PersonFinding {
                stream_id: stream.clone(),
                stored_ref: stored_ref.clone(),
                finding,
            }));
        }
        out.sort_by(|a, b| {
            (a.finding.date, &a.stream_id, a.finding.kind).cmp(&(
                b.finding.date,
                &b.stream_id,
                b.finding.kind,
            ))
        });
        out
    }

    /// The findings as a projection state: groups `[directorate, kind]` (the directorate
    /// `unassigned` for a series with no OFII dose), one count per finding on its date.
    /// `keys` picks and orders the group fields (a subset of `directorate` and `kind`).
    pub fn state(&self, policy: &Policy, keys: &[String]) -> State {
        let mut state = State::default();
        for p in self.open(policy, None) {
            let f = &p.finding;
            let key: Vec<String> = keys
                .iter()
                .map(|k| match k.as_str() {
                    "kind" => f.kind.code().to_string(),
                    _ => f.directorate.clone().unwrap_or_else(|| "unassigned".into()),
                })
                .collect();
            let cells = state
                .groups
                .entry(key)
                .or_default()
                .entry(day_number(f.date))
                .or_insert_with(|| vec![Cell::N(0)]);
            cells[0].merge(&Cell::N(1));
        }
        state
    }
}

/// A finding as lists show it (CLI and HTTP): never the ref, only the person's pseudonym.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FindingView {
    /// The directorate that must act (`unassigned`: no OFII dose in the series).
    pub directorate: String,
    /// What no longer holds (`second_dose_without_first`, …).
    pub kind: &'static str,
    /// The date of the entry that no longer holds.
    pub date: NaiveDate,
    /// The person's pseudonym; `None` for a person of a log written before the key store
    /// (whose stream is named by the ref itself, which a list never shows).
    pub person_id: Option<String>,
    /// The entries involved: the one that no longer holds first.
    pub entries: Vec<crate::domain::InvolvedEntry>,
    /// What to do, in one sentence.
    pub action: &'static str,
}

impl PersonFinding {
    /// The person's pseudonym, when the log has one for them.
    pub fn person_id(&self) -> Option<&str> {
        crate::privacy::is_sealed(&self.stored_ref)
            .then(|| self.stream_id.strip_prefix("person/"))
            .flatten()
    }

    /// The directorate that must act (`unassigned` when no OFII dose names one).
    pub fn directorate(&self) -> &str {
        self.finding.directorate.as_deref().unwrap_or("unassigned")
    }

    /// As lists show it.
    pub fn view(&self) -> FindingView {
        FindingView {
            directorate: self.directorate().to_string(),
            kind: self.finding.kind.code(),
            date: self.finding.date,
            person_id: self.person_id().map(str::to_string),
            entries: self.finding.entries.clone(),
            action: self.finding.kind.advice(),
        }
    }
}

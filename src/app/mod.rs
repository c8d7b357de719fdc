//! Command handling: load the streams a command needs → `decide` → append with the expected
//! version; retry on conflict with a fresh read; idempotency by command id, forever.
//! No business rules here: they live in `domain::decide`.

mod changes;
mod command;
mod erasure;
mod hashes;
mod person_writer;
mod persons;
mod read;
mod submit;

pub use changes::{ChangedEntry, Changes, FigureChange};
pub use erasure::Erasure;
pub use hashes::migrate_content_hashes;
pub use persons::PersonView;
pub use read::Reader;
pub use submit::{
    handle_envelope, handle_text, invalid_outcome, line_outcome, submit_lines, ErrorBody,
    LineOutcome, SubmitSummary,
};

use crate::domain::{self, Command, Event, Origin, Policy, Reference, Rejection, StreamState};
use crate::store::{Clock, CommandRecord, EventStore, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// What became of a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Recorded now.
    Accepted(CommandRecord),
    /// Recorded earlier with the same content: nothing appended.
    Duplicate(CommandRecord),
    /// Refused by a rule (or a reused command id): nothing appended.
    Rejected(Rejection),
}

impl Outcome {
    /// `accepted`, `duplicate` or `rejected`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Accepted(_) => "accepted",
            Outcome::Duplicate(_) => "duplicate",
            Outcome::Rejected(_) => "rejected",
        }
    }
}

/// Errors of command handling that are not rejections.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The store failed, or a conflict survived every retry (`Conflict`: HTTP 409, try again).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored event could not be read back: the log is damaged or newer than this build.
    #[error("a stored event of stream {stream} cannot be read: {source}")]
    Decode {
        /// The stream.
        stream: String,
        /// Why.
        #[source]
        source: domain::DecodeError,
    },
    /// A projection could not be read (`Unknown`: no projection of that name).
    #[error(transparent)]
    Projection(#[from] crate::projection::ProjectionError),
    /// A Merkle proof could not be made (`Invalid`, `OtherLedger`: the request is wrong).
    #[error(transparent)]
    Proof(#[from] crate::audit::tree::ProofError),
}

/// What kind of failure an `AppError` is, for a transport to answer with the right status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A conflict that survived the retries: send again (HTTP 409).
    Conflict,
    /// The request itself is wrong: fix it (HTTP 400).
    Invalid,
    /// The store cannot be reached now: retry later (HTTP 503).
    Unavailable,
    /// No projection of that name (HTTP 404).
    UnknownProjection,
    /// A proof about a tree or a position the log does not have (HTTP 404).
    NotInLog,
    /// The log cannot be read or written as it should: an operator must look (HTTP 500).
    StoreFailure,
    /// A stored event cannot be read back (HTTP 500).
    Undecodable,
    /// The projection database failed (HTTP 500).
    ProjectionFailure,
}

impl AppError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        use crate::audit::tree::ProofError as P2;
        use crate::projection::ProjectionError as P;
        let store = |s: &StoreError| match s {
            StoreError::Conflict { .. } | StoreError::PersonTaken => ErrorKind::Conflict,
            StoreError::Invalid(_) => ErrorKind::Invalid,
            StoreError::Unavailable(_) => ErrorKind::Unavailable,
            _ => ErrorKind::StoreFailure,
        };
        match self {
            AppError::Store(s) => store(s),
            AppError::Decode { .. } => ErrorKind::Undecodable,
            AppError::Projection(P::Unknown(_)) => ErrorKind::UnknownProjection,
            AppError::Projection(P::Store(s)) => store(s),
            AppError::Projection(_) => ErrorKind::ProjectionFailure,
            AppError::Proof(P2::Invalid(_) | P2::OtherLedger(_)) => ErrorKind::Invalid,
            AppError::Proof(P2::NotInLog(_)) => ErrorKind::NotInLog,
            AppError::Proof(P2::Store(s)) => store(s),
            AppError::Proof(P2::Diverged(_)) => ErrorKind::StoreFailure,
        }
    }
}

/// What a command concerns, for access control (see [`Ledger::command_scope`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandScope {
    /// The directorate it acts for.
    pub directorate: Option<String>,
    /// The partner centre of the ticket it concerns.
    pub partner_centre: Option<String>,
    /// The scope was read from the ticket, session or entry the command acts on (it names
    /// no directorate itself).
    pub looked_up: bool,
    /// That ticket, session or entry is in the log (meaningful when `looked_up`).
    pub found: bool,
}

/// The command side of the ledger.
pub struct Ledger {
    store: Arc<dyn EventStore>,
    policy: Policy,
    reference: Reference,
    clock: Arc<dyn Clock>,
    sites: RwLock<HashMap<String, StreamState>>,
    /// Per-person keys (crypto-shredding); `None`: person refs are stored in clear.
    keys: Option<Arc<crate::privacy::KeyStore>>,
    /// The log held events before the key store existed (some people are in clear).
    legacy_log: bool,
    /// Where disclosures of person data this ledger makes are recorded (a refusal about a
    /// known person), and through what channel it serves commands (`POST /v1/commands`,
    /// `submit`).
    access_log: Option<(Arc<crate::audit::AccessLog>, String)>,
    /// Whether the log names this key store as its person writer, and how far this process
    /// searched it for people the key store lacks (`person_writer`).
    writer_checked: std::sync::Mutex<person_writer::WriterCheck>,
    /// Where each erasure is recorded before the key is destroyed (see `privacy::journal`).
    journal: Option<crate::privacy::ErasureJournal>,
}

impl Ledger {
    /// A ledger over a store, with the rules and reference data in force.
    pub fn new(
        store: Arc<dyn EventStore>,
        policy: Policy,
        reference: Reference,
        clock: Arc<dyn Clock>,
    ) -> Ledger {
        Ledger {
            store,
            policy,
            reference,
            clock,
            sites: RwLock::new(HashMap::new()),
            keys: None,
            legacy_log: false,
            access_log: None,
            writer_checked: Default::default(),
            journal: None,
        }
    }

    /// Records every erasure in `journal` (kept apart from the backups) before the person's
    /// key is destroyed, so that a restore of an older backup can apply it again.
    pub fn with_erasure_journal(mut self, journal: crate::privacy::ErasureJournal) -> Ledger {
        self.journal = Some(journal);
        self
    }

    /// Records in `log` every refusal of a command about a person the ledger knows (its
    /// message states facts of their history), as made through `via` (`POST /v1/commands`,
    /// `submit`).
    pub fn with_access_log(mut self, log: Arc<crate::audit::AccessLog>, via: &str) -> Ledger {
        self.access_log = Some((log, via.to_string()));
        self
    }

    /// The access log this ledger records disclosures in.
    pub fn access_log(&self) -> Option<&Arc<crate::audit::AccessLog>> {
        self.access_log.as_ref().map(|(log, _)| log)
    }

    /// Stores person refs sealed with per-person keys from `keys` (see `app::persons`). First
    /// makes every person of the log findable by ref (`index_persons`: after an import, or on
    /// a log of an older build).
    pub fn with_keys(mut self, keys: Arc<crate::privacy::KeyStore>) -> Result<Ledger, AppError> {
        migrate_content_hashes(self.store.as_ref())?;
        self.legacy_log = keys.legacy();
        self.keys = Some(keys);
        self.index_persons()?;
        Ok(self)
    }

    /// The key store, when person refs are sealed.
    pub fn keys(&self) -> Option<&Arc<crate::privacy::KeyStore>> {
        self.keys.as_ref()
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The reference data.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    fn load(&self, stream: &str) -> Result<StreamState, AppError> {
        let mut state = StreamState::default();
        for e in self.store.read_stream(stream)? {
            let event =
                Event::decode(&e.event_type, e.schema_version, &e.data).map_err(|source| {
                    AppError::Decode {
                        stream: stream.to_string(),
                        source,
                    }
                })?;
            state.evolve(
                &event,
                Origin {
                    event_id: e.event_id,
                    command_id: e.command_id,
                },
                &self.policy,
            );
        }
        Ok(state)
    }

    /// A site's state. Authorisations are never withdrawn, so an authorised site is cached;
    /// an unknown one is read again every time.
    fn load_site(&self, stream: &str) -> Result<StreamState, AppError> {
        if let Some(s) = self
            .sites
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(stream)
        {
            return Ok(s.clone());
        }
        let state = self.load(stream)?;
        if state.site.is_some() {
            self.sites
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(stream.to_string(), state.clone());
        }
        Ok(state)
    }

    /// What a command concerns, for access control: the directorate it acts for and, for
    /// tickets, the partner centre. Commands that name a directorate give it; the others
    /// (redeeming or expiring a ticket, closing a session, reversing an entry) take it from
    /// the stream they act on. `None` when the command concerns no directorate (an external
    /// dose) or its target is not in the log (the rules will then reject it as unknown).
    pub fn command_scope(&self, command: &Command) -> Result<CommandScope, AppError> {
        let named = |d: &str| CommandScope {
            directorate: Some(d.to_string()),
            ..CommandScope::default()
        };
        let from_stream = |stream: &str, command_id: Option<uuid::Uuid>| {
            let events = self.store.read_stream(stream)?;
            let event = events
                .iter()
                .find(|e| command_id.is_none_or(|c| e.command_id == c));
            let field = |name: &str| {
                event.and_then(|e| {
                    serde_json::from_str::<serde_json::Value>(&e.data)
                        .ok()
                        .and_then(|v| v.get(name).and_then(|f| f.as_str()).map(str::to_string))
                })
            };
            Ok::<_, AppError>(CommandScope {
                directorate: field("directorate"),
                // A log written before centres had ids names the centre: read as its id.
                partner_centre: field("partner_centre")
                    .map(|c| self.reference().centre_id(&c).to_string()),
                looked_up: true,
                found: event.is_some(),
            })
        };
        Ok(match command {
            Command::AuthoriseSite(c) => named(&c.directorate),
            Command::AdministerDose(c) => named(&c.directorate),
            Command::RecordDoseNotAdministered(c) => named(&c.directorate),
            Command::IssueTicket(c) => CommandScope {
                directorate: Some(c.directorate.clone()),
                partner_centre: Some(c.partner_centre.clone()),
                ..CommandScope::default()
            },
            Command::OpenSession(c) => named(&c.directorate),
            Command::AnswerCoverageSurvey(c) => named(&c.directorate),
            Command::RecordExternalDose(_) => CommandScope::default(),
            Command::ReverseDoseEntry(r) => match self.store.command(r.reverses)? {
                Some(rec) => from_stream(&rec.stream_id, Some(r.reverses))?,
                None => CommandScope {
                    looked_up: true,
                    ..CommandScope::default()
                },
            },
            // A partner reports for the centre it names (the ticket's own when it names none).
            Command::RedeemTicket(crate::domain::RedeemTicket {
                partner_centre: Some(centre),
                ..
            }) => {
                let target = command.routing().target.unwrap_or_default();
                CommandScope {
                    partner_centre: Some(centre.clone()),
                    ..from_stream(&target, None)?
                }
            }
            Command::RedeemTicket(_) | Command::ExpireTicket(_) | Command::CloseSession(_) => {
                match command.routing().target {
                    Some(t) => from_stream(&t, None)?,
                    None => CommandScope {
                        looked_up: true,
                        ..CommandScope::default()
                    },
                }
            }
        })
    }
}

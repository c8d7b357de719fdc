//! Command handling: load the streams a command needs → `decide` → append with the expected
//! version; retry on conflict with a fresh read; idempotency by command id, forever.
//! No business rules here: they live in `domain::decide`.

mod changes;
mod persons;
mod read;
mod submit;

pub use changes::{ChangedEntry, Changes, FigureChange};
use persons::Person;
pub use persons::{Erasure, PersonView};
pub use read::Reader;
pub use submit::{
    handle_envelope, handle_text, invalid_outcome, line_outcome, submit_lines, ErrorBody,
    LineOutcome, SubmitSummary,
};

use crate::domain::{
    self, Command, CommandEnvelope, Context, Event, Origin, Policy, Reference, Rejection,
    StreamState,
};
use crate::store::{
    Actor, AppendRequest, AppendResult, Clock, CommandMeta, CommandRecord, EventStore,
    ExpectedVersion, NewEvent, StoreError,
};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tracing::field::Empty;
use tracing::Instrument as _;

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

/// How many times a command is decided again after a concurrency conflict.
const MAX_ATTEMPTS: usize = 8;

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
        }
    }

    /// Stores person refs sealed with per-person keys from `keys` (see `app::persons`). First
    /// makes every person of the log findable by ref (`index_persons`: after an import, or on
    /// a log of an older build).
    pub fn with_keys(mut self, keys: Arc<crate::privacy::KeyStore>) -> Result<Ledger, AppError> {
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

    /// Handles one command on behalf of `actor`; returns once the outcome is durable.
    pub fn handle(&self, envelope: &CommandEnvelope, actor: &Actor) -> Result<Outcome, AppError> {
        use futures_util::FutureExt as _;
        // Every await below is on a ready future: one poll settles it.
        let append = |r: AppendRequest| std::future::ready(self.store.append(r));
        self.traced(envelope, actor, &append)
            .now_or_never()
            .expect("a blocking append is ready when polled")
    }

    /// `handle` for a caller on an async runtime (the HTTP server): where the store queues
    /// appends (`EventStore::appends_async`, SQLite), the task waits for the group commit
    /// without holding a thread, so concurrent requests join the same group. Elsewhere the
    /// append blocks: call it off the async threads then (`handle` in `spawn_blocking`).
    pub async fn handle_async(
        &self,
        envelope: &CommandEnvelope,
        actor: &Actor,
    ) -> Result<Outcome, AppError> {
        let append = |r: AppendRequest| self.store.start_append(r).outcome();
        self.traced(envelope, actor, &append).await
    }

    async fn traced<A, F>(
        &self,
        envelope: &CommandEnvelope,
        actor: &Actor,
        append: &A,
    ) -> Result<Outcome, AppError>
    where
        A: Fn(AppendRequest) -> F,
        F: std::future::Future<Output = Result<AppendResult, StoreError>>,
    {
        let span = tracing::info_span!(
            "command",
            command_id = %envelope.command_id,
            kind = envelope.command.type_name(),
            outcome = Empty,
            code = Empty
        );
        // A new person another writer recorded at the same moment: once more, finding theirs.
        let result = match self
            .handle_inner(envelope, actor, append)
            .instrument(span.clone())
            .await
        {
            Err(AppError::Store(StoreError::PersonTaken)) => {
                self.handle_inner(envelope, actor, append)
                    .instrument(span.clone())
                    .await
            }
            other => other,
        };
        let _entered = span.enter();
        match &result {
            Ok(o) => {
                span.record("outcome", o.label());
                if let Outcome::Rejected(r) = o {
                    span.record("code", r.code());
                }
                tracing::debug!("handled");
            }
            Err(e) => {
                span.record("outcome", "error");
                tracing::warn!(error = %e, "command failed");
            }
        }
        result
    }

    async fn handle_inner<A, F>(
        &self,
        envelope: &CommandEnvelope,
        actor: &Actor,
        append: &A,
    ) -> Result<Outcome, AppError>
    where
        A: Fn(AppendRequest) -> F,
        F: std::future::Future<Output = Result<AppendResult, StoreError>>,
    {
        let content_hash: [u8; 32] = Sha256::digest(envelope.content_bytes()).into();
        let known = |rec: CommandRecord| {
            if rec.content_hash == content_hash {
                Outcome::Duplicate(rec)
            } else {
                Outcome::Rejected(Rejection::CommandIdReused(envelope.command_id))
            }
        };
        let routing = envelope.command.routing();
        // The person the command names: their pseudonymous stream and key.
        let person = match envelope.command.person_ref() {
            Some(r) => self.person(r)?.map(|p| (r, p)),
            None => None,
        };
        let target = match (&routing.target, &envelope.command) {
            (Some(t), _) => match &person {
                Some((r, p)) if *t == domain::streams::person(r) => p.stream.clone(),
                _ => t.clone(),
            },
            (None, Command::ReverseDoseEntry(r)) => match self.store.command(r.reverses)? {
                Some(rec) if rec.stream_id.starts_with("person/") => rec.stream_id,
                _ => return Ok(Outcome::Rejected(Rejection::UnknownEntry(r.reverses))),
            },
            (None, _) => unreachable!("only reversals look their stream up"),
        };
        let site = routing
            .site
            .as_deref()
            .map(|s| self.load_site(s))
            .transpose()?;
        let session = routing
            .session
            .as_deref()
            .map(|s| self.load(s))
            .transpose()?;
        let meta = CommandMeta {
            command_id: envelope.command_id,
            content_hash,
            correlation_id: envelope.correlation_id.clone(),
            actor: actor.clone(),
        };
        let mut attempt = 0;
        // Decide on an empty state first when the command usually starts its stream; the
        // append's expected version 0 then proves the stream was empty.
        let mut assume_empty = routing.likely_new;
        loop {
            attempt += 1;
            let state = if assume_empty {
                StreamState::default()
            } else {
                self.load(&target)?
            };
            let ctx = Context {
                now: self.clock.now(),
                policy: &self.policy,
                reference: &self.reference,
                site: site.as_ref(),
                session: session.as_ref(),
            };
            let mut events = match domain::decide(&envelope.command, &state, &ctx) {
                Ok(events) => events,
                // A resubmitted command is usually refused by the rules (its effect is there
                // already): the command table tells a duplicate from a real rejection. Accepted
                // decisions need no such read: the append itself refuses a known command id.
                Err(_) if assume_empty => {
                    // Refused on an assumed state: decide again on the real one.
                    assume_empty = false;
                    attempt -= 1;
                    continue;
                }
                Err(rejection) => {
                    return Ok(match self.store.command(envelope.command_id)? {
                        Some(rec) => known(rec),
                        None => Outcome::Rejected(rejection),
                    })
                }
            };
            if let Some((r, Person { key: Some(k), .. })) = &person {
                self.seal_events(&mut events, r, k)?;
            }
            let link = person.as_ref().and_then(|(_, p)| p.link.clone());
            let request = AppendRequest {
                stream_id: target.clone(),
                expected: ExpectedVersion::Exact(state.version),
                command: meta.clone(),
                person: link.clone(),
                events: events
                    .iter()
                    .map(|e| NewEvent {
                        event_type: e.event_type().to_string(),
                        schema_version: e.schema_version(),
                        occurred_at: e.occurred_at(),
                        data: e.data_json(),
                    })
                    .collect(),
            };
            match append(request).await {
                Ok(AppendResult::Committed(rec)) => {
                    // The log now holds the new person's entry: their key is theirs.
                    if let (Some(l), Some((_, Person { key: Some(k), .. })), Some(keys)) =
                        (&link, &person, &self.keys)
                    {
                        keys.remember(&l.lookup, k);
                    }
                    return Ok(Outcome::Accepted(rec));
                }
                Ok(AppendResult::Duplicate(rec)) => return Ok(known(rec)),
                Err(StoreError::Conflict { .. }) if attempt < MAX_ATTEMPTS => {
                    assume_empty = false;
                    tracing::debug!(
                        attempt,
                        "concurrency conflict; deciding again on a fresh read"
                    );
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

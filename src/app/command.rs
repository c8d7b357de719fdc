//! The command path: find the person the command names (nothing is made for a ref the ledger
//! does not know until the rules accept), load the streams it needs, `decide`, append with the
//! expected version; retry on a conflict with a fresh read; tell a resubmission from a reused
//! id by the content hash; and log a refusal about a known person in the access log, since its
//! message states facts of their history.
//!
//! The content hash (version 2) is the SHA-256 of the command's canonical JSON with its
//! `person_ref` replaced by the person's pseudonym (`CommandEnvelope::content_hash`): nothing
//! kept, exported or published is a function of the ref an adversary could try candidates
//! against. It is computed after every lookup of the person, so a retry that finds another
//! pseudonym (`PersonTaken`) hashes with it.

use super::persons::{Named, Person};
use super::{AppError, Ledger, Outcome};
use crate::domain::{self, Command, CommandEnvelope, Context, Rejection, StreamState};
use crate::store::{
    Actor, AppendRequest, AppendResult, CommandMeta, CommandRecord, ExpectedVersion, NewEvent,
    StoreError,
};
use tracing::field::Empty;
use tracing::Instrument as _;

/// How many times a command is decided again after a concurrency conflict.
const MAX_ATTEMPTS: usize = 8;

impl Ledger {
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
        let result = self
            .handle_inner(envelope, actor, append)
            .instrument(span.clone())
            .await;
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

    /// The stream the command's events go to (a reversal's is the stream of the entry it
    /// reverses), or the rejection when that entry is not in the log.
    fn target(
        &self,
        envelope: &CommandEnvelope,
        named: &Named,
    ) -> Result<Result<String, Rejection>, AppError> {
        let routing = envelope.command.routing();
        Ok(match (&routing.target, &envelope.command) {
            (Some(t), _) => match (named, envelope.command.person_ref()) {
                (Named::Known(p), Some(r)) if *t == domain::streams::person(r) => {
                    Ok(p.stream.clone())
                }
                _ => Ok(t.clone()),
            },
            (None, Command::ReverseDoseEntry(r)) => match self.store.command(r.reverses)? {
                Some(rec) if rec.stream_id.starts_with("person/") => Ok(rec.stream_id),
                _ => Err(Rejection::UnknownEntry(r.reverses)),
            },
            (None, _) => unreachable!("only reversals look their stream up"),
        })
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
        let routing = envelope.command.routing();
        let person_ref = envelope.command.person_ref();
        // The person the command names: their pseudonymous stream and key, or nobody yet.
        let mut named = match person_ref {
            Some(r) => self.named(r, false)?,
            None => Named::Nobody,
        };
        let (site, session) = (
            routing
                .site
                .as_deref()
                .map(|s| self.load_site(s))
                .transpose()?,
            routing
                .session
                .as_deref()
                .map(|s| self.load(s))
                .transpose()?,
        );
        let mut attempt = 0;
        // Decide on an empty state first when the command usually starts its stream; the
        // append's expected version 0 then proves the stream was empty.
        let mut assume_empty = routing.likely_new;
        // Whether the person was looked up in the store itself (not this process's copy).
        let mut fresh = false;
        loop {
            attempt += 1;
            let target = match self.target(envelope, &named)? {
                Ok(t) => t,
                Err(rejection) => return Ok(Outcome::Rejected(rejection)),
            };
            // A new person has no history: their stream does not exist yet.
            let empty = assume_empty || matches!(named, Named::New);
            let state = if empty {
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
            let events = match domain::decide(&envelope.command, &state, &ctx) {
                Ok(events) => events,
                Err(_) if assume_empty && !matches!(named, Named::New) => {
                    // Refused on an assumed state: decide again on the real one.
                    assume_empty = false;
                    attempt -= 1;
                    continue;
                }
                // Refused on the empty history of a person this process did not know: another
                // process may have recorded them a moment ago (its copy of the index is behind),
                // and the decision must be made on their real history.
                Err(_) if matches!(named, Named::New) && self.store.keeps_persons() && !fresh => {
                    fresh = true;
                    named = self.named(person_ref.expect("a new person is named"), true)?;
                    attempt -= 1;
                    continue;
                }
                // A resubmitted command is usually refused by the rules (its effect is there
                // already): the command table tells a duplicate from a real rejection.
                Err(rejection) => {
                    return self.refused(envelope, actor, &named, &target, &state, rejection)
                }
            };
            // Accepted: only now is anything made for a person the ledger did not know.
            let mut target = target;
            let made = matches!(named, Named::New);
            if made {
                match self.make_for(envelope, person_ref.expect("a new person is named"))? {
                    Made::Answered(outcome) => return Ok(outcome),
                    // Another process recorded them at this moment: their history counts.
                    Made::Theirs(p) => {
                        named = Named::Known(p);
                        attempt -= 1;
                        assume_empty = false;
                        continue;
                    }
                    Made::Ours(p) => named = Named::Known(p),
                }
                target = match self.target(envelope, &named)? {
                    Ok(t) => t,
                    Err(rejection) => return Ok(Outcome::Rejected(rejection)),
                };
            }
            let person = match &named {
                Named::Known(p) => Some(p.clone()),
                _ => None,
            };
            let request = self.request(
                envelope,
                actor,
                &target,
                state.version,
                person.as_ref(),
                events,
            )?;
            let result = append(request).await;
            match self.settle(result, envelope, person_ref, made, person, attempt)? {
                Settled::Done(outcome) => return Ok(outcome),
                Settled::Again(again) => {
                    if let Some(n) = again {
                        named = n;
                    }
                    assume_empty = false;
                }
            }
        }
    }

    /// A refused command: a duplicate or a reused id when the command id is known, else the
    /// rejection — logged in the access log when it concerns a person the ledger knows.
    fn refused(
        &self,
        envelope: &CommandEnvelope,
        actor: &Actor,
        named: &Named,
        target: &str,
        state: &StreamState,
        rejection: Rejection,
    ) -> Result<Outcome, AppError> {
        let person_id = match named {
            Named::Known(p) => Some(p.person_id(envelope.command.person_ref())),
            _ => None,
        };
        let outcome = match self.store.command(envelope.command_id)? {
            // A new person's pseudonym is not made yet: no record can be theirs.
            Some(_) if matches!(named, Named::New) => {
                Outcome::Rejected(Rejection::CommandIdReused(envelope.command_id))
            }
            Some(rec) => reused_or_duplicate(envelope, person_id.as_deref(), rec),
            None => Outcome::Rejected(rejection),
        };
        if let Outcome::Rejected(r) = &outcome {
            if let Some(about) = person_id.or_else(|| person_of_stream(target, state)) {
                self.disclosed(actor, about, &format!("refusal:{}", r.code()))?;
            }
        }
        Ok(outcome)
    }
}

impl Ledger {
    /// The append of a command's accepted events, sealed with the person's key, with the
    /// content hash of the command with the person's pseudonym.
    fn request(
        &self,
        envelope: &CommandEnvelope,
        actor: &Actor,
        target: &str,
        version: u64,
        person: Option<&Person>,
        mut events: Vec<crate::domain::Event>,
    ) -> Result<AppendRequest, AppError> {
        let person_ref = envelope.command.person_ref();
        if let (Some(r), Some(Person { key: Some(k), .. })) = (person_ref, person) {
            self.seal_events(&mut events, r, k)?;
        }
        let person_id = person.map(|p| p.person_id(person_ref));
        Ok(AppendRequest {
            stream_id: target.to_string(),
            expected: ExpectedVersion::Exact(version),
            command: CommandMeta {
                command_id: envelope.command_id,
                content_hash: envelope.content_hash(person_id.as_deref()),
                correlation_id: envelope.correlation_id.clone(),
                actor: actor.clone(),
            },
            person: person.and_then(|p| p.link.clone()),
            events: events.iter().map(new_event).collect(),
        })
    }
}

/// What an append's result makes of a command.
enum Settled {
    /// Its outcome.
    Done(Outcome),
    /// Decide again on a fresh read (with the person looked up again, when given).
    Again(Option<Named>),
}

impl Ledger {
    /// An append's result: accepted, a duplicate or reused id, or (a conflict, a person another
    /// writer recorded at that moment) another attempt; a key made for a new person goes back
    /// when the append did not commit.
    fn settle(
        &self,
        result: Result<AppendResult, StoreError>,
        envelope: &CommandEnvelope,
        person_ref: Option<&str>,
        made: bool,
        person: Option<Person>,
        attempt: usize,
    ) -> Result<Settled, AppError> {
        let person_id = person.as_ref().map(|p| p.person_id(person_ref));
        match result {
            Ok(AppendResult::Committed(rec)) => {
                // The log now holds the new person's entry: their key is theirs.
                if let (
                    Some(Person {
                        key: Some(k),
                        link: Some(l),
                        ..
                    }),
                    Some(keys),
                ) = (&person, &self.keys)
                {
                    keys.remember(&l.lookup, k);
                }
                Ok(Settled::Done(Outcome::Accepted(rec)))
            }
            Ok(AppendResult::Duplicate(rec)) => {
                self.give_back(made, person);
                Ok(Settled::Done(reused_or_duplicate(
                    envelope,
                    person_id.as_deref(),
                    rec,
                )))
            }
            Err(StoreError::Conflict { .. }) if attempt < MAX_ATTEMPTS => {
                tracing::debug!(
                    attempt,
                    "concurrency conflict; deciding again on a fresh read"
                );
                if !made {
                    return Ok(Settled::Again(None));
                }
                // The key made for them goes back; who they are is looked up again.
                self.give_back(made, person);
                let r = person_ref.expect("a person was made");
                Ok(Settled::Again(Some(self.named(r, true)?)))
            }
            // A new person another writer recorded at the same moment: once more, finding theirs.
            Err(StoreError::PersonTaken) if attempt < MAX_ATTEMPTS => {
                self.give_back(made, person);
                let r = person_ref.expect("a person was made");
                Ok(Settled::Again(Some(self.named(r, true)?)))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// What was made for a person the rules accepted a first command about.
enum Made {
    /// A key and stream of their own.
    Ours(Person),
    /// Another process recorded them at this moment: theirs.
    Theirs(Person),
    /// Nothing: the command id is known (a resubmission), and this is its outcome.
    Answered(Outcome),
}

impl Ledger {
    /// A key and stream for a new person the rules accepted a command about. Where the key is
    /// recorded before the events (the NATS log's key store), a known command id is answered
    /// first, so that nothing is made for a resubmission.
    fn make_for(&self, envelope: &CommandEnvelope, person_ref: &str) -> Result<Made, AppError> {
        if !self.store.keeps_persons() {
            if let Some(rec) = self.store.command(envelope.command_id)? {
                return Ok(Made::Answered(reused_or_duplicate(envelope, None, rec)));
            }
        }
        Ok(match self.make_person(person_ref)? {
            (p, true) => Made::Ours(p),
            (p, false) => Made::Theirs(p),
        })
    }
}

fn new_event(e: &crate::domain::Event) -> NewEvent {
    NewEvent {
        event_type: e.event_type().to_string(),
        schema_version: e.schema_version(),
        occurred_at: e.occurred_at(),
        data: e.data_json(),
    }
}

/// What a known command id makes of a command: a duplicate when the recorded content hash is
/// this command's (with the person's pseudonym), else a reused id.
fn reused_or_duplicate(
    envelope: &CommandEnvelope,
    person_id: Option<&str>,
    rec: CommandRecord,
) -> Outcome {
    if rec.content_hash == envelope.content_hash(person_id) {
        Outcome::Duplicate(rec)
    } else {
        Outcome::Rejected(Rejection::CommandIdReused(envelope.command_id))
    }
}

/// The person a command's target stream is about, when it names no person itself: a person's
/// stream (a reversal's), or a ticket issued to a person.
fn person_of_stream(target: &str, state: &StreamState) -> Option<String> {
    if state.version == 0 {
        return None;
    }
    if let Some(id) = target.strip_prefix("person/") {
        return Some(id.to_string());
    }
    let t = state.ticket.as_ref()?;
    Some(
        crate::privacy::sealed_person_id(&t.issued.person_ref)
            .unwrap_or(&t.issued.person_ref)
            .to_string(),
    )
}

//! The read side that the HTTP layer and the CLI call: a stream's events, events after a
//! position, the live feed, the head and its digest, and the projections read against this
//! ledger's log. Transports never reach the store themselves; they read through here.

use super::{AppError, Ledger};
use crate::audit::Digest;
use crate::envelope::RecordedEvent;
use crate::projection::{Engine, PersonFinding, Rebuilt, Report, Status};
use crate::store::{EventStore, Head, Subscription};
use chrono::{DateTime, FixedOffset, NaiveDate};
use std::sync::Arc;
use std::time::Duration;

/// A ledger's read side: its log and its projections.
#[derive(Clone)]
pub struct Reader {
    pub(super) store: Arc<dyn EventStore>,
    pub(super) engine: Arc<Engine>,
}

impl Reader {
    /// The read side of `ledger`, with `engine` folding its projections.
    pub fn new(ledger: &Ledger, engine: Arc<Engine>) -> Reader {
        Reader {
            store: ledger.store().clone(),
            engine,
        }
    }

    /// Every event of one stream, in version order.
    pub fn stream(&self, stream_id: &str) -> Result<Vec<RecordedEvent>, AppError> {
        Ok(self.store.read_stream(stream_id)?)
    }

    /// Up to `limit` events after a position, in order.
    pub fn events_after(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, AppError> {
        Ok(self.store.read_all(after, limit)?)
    }

    /// The live feed: every event after `after`, then each new one (no gap, no duplicate).
    pub fn subscribe(&self, after: u64) -> Subscription {
        crate::store::subscribe(self.store.clone(), after)
    }

    /// The head of the log.
    pub fn head(&self) -> Result<Head, AppError> {
        Ok(self.store.head()?)
    }

    /// Waits until the head is beyond `position` or `timeout` passes; returns the head position.
    pub fn wait_beyond(&self, position: u64, timeout: Duration) -> Result<u64, AppError> {
        Ok(self.store.wait_beyond(position, timeout)?)
    }

    /// The head's digest (position, hash, commit time), unsigned.
    pub fn digest(&self) -> Result<Digest, AppError> {
        Ok(crate::audit::digest(self.store.as_ref())?)
    }

    /// The inclusion proof of the event at `position` in the tree of `tree_size` events (the
    /// head when `None`), with a digest of the log at that size signed by `sign`.
    pub fn inclusion_proof(
        &self,
        position: u64,
        tree_size: Option<u64>,
        sign: impl FnOnce(Digest) -> crate::audit::SignedDigest,
    ) -> Result<crate::audit::proofs::InclusionDocument, AppError> {
        let size = match tree_size {
            Some(s) => s,
            None => self.store.head_position()?,
        };
        Ok(crate::audit::proofs::inclusion_at(
            self.store.as_ref(),
            position,
            size,
            sign,
        )?)
    }

    /// The consistency proof from the tree of `first` events to that of `second` (the head
    /// when `None`), with digests of the log at both sizes signed by `sign`.
    pub fn consistency_proof(
        &self,
        first: u64,
        second: Option<u64>,
        sign: impl Fn(Digest) -> crate::audit::SignedDigest,
    ) -> Result<crate::audit::proofs::ConsistencyDocument, AppError> {
        let second = match second {
            Some(s) => s,
            None => self.store.head_position()?,
        };
        Ok(crate::audit::proofs::consistency_at(
            self.store.as_ref(),
            first,
            second,
            sign,
        )?)
    }

    /// A person's record: the events at `positions`, each proved against a digest of the head
    /// signed by `sign`.
    pub fn person_proof(
        &self,
        person: &str,
        positions: &[u64],
        sign: impl FnOnce(Digest) -> crate::audit::SignedDigest,
    ) -> Result<crate::audit::proofs::PersonDocument, AppError> {
        let digest = sign(crate::audit::digest(self.store.as_ref())?);
        Ok(crate::audit::proofs::person_document(
            self.store.as_ref(),
            person,
            positions,
            digest,
        )?)
    }

    /// A projection as of a business date and, optionally, as known at a commit time.
    pub fn report(
        &self,
        name: &str,
        as_of: Option<NaiveDate>,
        known_at: Option<DateTime<FixedOffset>>,
    ) -> Result<Report, AppError> {
        Ok(self
            .engine
            .report(self.store.as_ref(), name, as_of, known_at)?)
    }

    /// The open data-quality findings dated on or before `as_of`; with the last position read.
    pub fn findings(
        &self,
        as_of: Option<NaiveDate>,
        known_at: Option<DateTime<FixedOffset>>,
    ) -> Result<(Vec<PersonFinding>, u64), AppError> {
        Ok(self.engine.findings(self.store.as_ref(), as_of, known_at)?)
    }

    /// Rebuilds a projection beside the live one and swaps it in.
    pub fn rebuild(&self, name: &str) -> Result<Rebuilt, AppError> {
        Ok(self.engine.rebuild(self.store.as_ref(), name)?)
    }

    /// Every projection's status.
    pub fn projections(&self) -> Result<Vec<Status>, AppError> {
        Ok(self.engine.status(self.store.as_ref())?)
    }

    /// Folds every event committed since the projections' checkpoints; returns the position
    /// they reached.
    pub fn catch_up(&self) -> Result<u64, AppError> {
        Ok(self.engine.catch_up(self.store.as_ref())?)
    }
}

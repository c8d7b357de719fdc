//! Tamper evidence: recompute the hash chain (`verify`), state the head (`digest`), sign it
//! and prove that a later log extends it (`signing`).
//! Reads only; mutates nothing.

mod export;
mod signing;

pub use export::{
    export, import, verify_export, ExportOptions, Exported, Imported, VerifiedExport,
};
pub use signing::{verify_extends, LedgerKey, SignedDigest, FORMAT};

use crate::store::{chain_hash, EventRef, EventStore, Head, StoreError, GENESIS_HASH};
use serde::Serialize;
use std::collections::HashMap;

/// A verified log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verified {
    /// Events checked.
    pub events: u64,
    /// Head position.
    pub position: u64,
    /// Head hash (hex).
    pub hash: String,
}

/// Why verification failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The log is not what was written: `position` is the first bad one.
    #[error("the chain breaks at position {position}: {reason}")]
    Broken {
        /// First bad position.
        position: u64,
        /// What is wrong there.
        reason: String,
    },
    /// The log could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An export could not be read (not a file of `campaign-ledger export`, I/O error).
    #[error("{0}")]
    Input(String),
}

/// Checks events one after another as the chain requires: positions follow one another,
/// each `prev_hash` is the previous `hash`, each `hash` matches the event's bytes, stream
/// versions follow one another and commit times never go backwards. Shared by `verify` (a
/// store, in parallel segments), `verify_export` and `import` (an export).
pub(crate) struct ChainCheck {
    /// The next position expected (`None` before the first event of a window).
    next: Option<u64>,
    /// The hash the next event must name as its `prev_hash` (`None` before the first event
    /// of a window or segment: its predecessor is outside it).
    prev: Option<[u8; 32]>,
    /// The first event's position, `prev_hash` and commit time (a segment's link to the one
    /// before).
    first: Option<(u64, [u8; 32], String)>,
    last_recorded: String,
    /// Per stream: the last version seen.
    versions: HashMap<String, u64>,
    /// Per stream first seen here: its first version and position (segments only; checked
    /// against the segments before when they are joined).
    first_versions: Option<HashMap<String, (u64, u64)>>,
    /// Whether the checked events start at position 1 (every stream starts at version 1).
    from_start: bool,
    events: u64,
}

impl ChainCheck {
    /// For a whole log, from position 1.
    pub(crate) fn from_start() -> ChainCheck {
        ChainCheck {
            next: Some(1),
            prev: Some(GENESIS_HASH),
            first: None,
            last_recorded: String::new(),
            versions: HashMap::new(),
            first_versions: None,
            from_start: true,
            events: 0,
        }
    }

    /// For a window starting anywhere (an export with --from or --since): its first event
    /// is taken as it comes, the rest must follow it.
    pub(crate) fn window() -> ChainCheck {
        ChainCheck {
            next: None,
            prev: None,
            from_start: false,
            ..ChainCheck::from_start()
        }
    }

    /// For the segment of a log starting at `start` (> 1), to be joined to the one before.
    fn segment(start: u64) -> ChainCheck {
        ChainCheck {
            next: Some(start),
            first_versions: Some(HashMap::new()),
            ..ChainCheck::window()
        }
    }

    /// The position the next event must have (`None` before the first of a window).
    pub(crate) fn next(&self) -> Option<u64> {
        self.next
    }

    /// The hash of the last event checked (the genesis hash before any).
    pub(crate) fn head_hash(&self) -> [u8; 32] {
        self.prev.unwrap_or(GENESIS_HASH)
    }

    /// Checks the next event; the error names what is wrong with it.
    pub(crate) fn check(&mut self, e: &EventRef<'_>) -> Result<(), VerifyError> {
        let fail = |position: u64, reason: String| VerifyError::Broken { position, reason };
        let expected = match self.next {
            Some(n) => n,
            None if e.position == 1 => {
                self.from_start = true;
                self.prev = Some(GENESIS_HASH);
                1
            }
            None => e.position,
        };
        if e.position != expected {
            return Err(fail(
                expected.min(e.position),
                if e.position > expected {
                    format!(
                        "position {expected} is missing (the next event found is at {})",
                        e.position
                    )
                } else {
                    format!("position {} appears after {}", e.position, expected - 1)
                },
            ));
        }
        let prev = *self.prev.get_or_insert(e.prev_hash);
        if e.prev_hash != prev {
            return Err(fail(expected, "its prev_hash is not the hash of the event before it (an event was removed, inserted or reordered)".into()));
        }
        if chain_hash(&prev, e) != e.hash {
            return Err(fail(
                expected,
                "its contents do not match its hash (the event was altered)".into(),
            ));
        }
        if e.recorded_at < self.last_recorded.as_str() {
            return Err(fail(
                expected,
                format!(
                    "it is recorded at {} before the event before it ({})",
                    e.recorded_at, self.last_recorded
                ),
            ));
        }
        match self.versions.get_mut(e.stream_id) {
            Some(v) if e.stream_version == *v + 1 => *v += 1,
            Some(v) => {
                return Err(fail(
                    expected,
                    format!(
                        "stream {} jumps from version {} to {}",
                        e.stream_id, v, e.stream_version
                    ),
                ))
            }
            None if self.from_start && e.stream_version != 1 => {
                return Err(fail(
                    expected,
                    format!(
                        "stream {} starts at version {}, not 1",
                        e.stream_id, e.stream_version
                    ),
                ))
            }
            None => {
                self.versions
                    .insert(e.stream_id.to_string(), e.stream_version);
                if let Some(f) = &mut self.first_versions {
                    f.insert(e.stream_id.to_string(), (e.stream_version, e.position));
                }
            }
        }
        if self.first.is_none() {
            self.first = Some((e.position, e.prev_hash, e.recorded_at.to_string()));
        }
        self.prev = Some(e.hash);
        if e.recorded_at != self.last_recorded {
            self.last_recorded.clear();
            self.last_recorded.push_str(e.recorded_at);
        }
        self.next = Some(expected + 1);
        self.events += 1;
        Ok(())
    }

    /// Joins the segment that follows this one (checked on its own): its first event must
    /// name this one's last hash, its times must not go back, and each stream it continues
    /// must go on from this one's last version. `error` is the segment's own first break, if
    /// any; the earliest break of the two is returned.
    fn join(&mut self, next: ChainCheck, error: Option<VerifyError>) -> Result<(), VerifyError> {
        let mut breaks: Vec<(u64, String)> = Vec::new();
        if let Some(VerifyError::Broken { position, reason }) = &error {
            breaks.push((*position, reason.clone()));
        } else if let Some(e) = error {
            return Err(e);
        }
        let start = self.next.unwrap_or(1);
        if let Some((first_position, first_prev, first_recorded)) = &next.first {
            if *first_position != start {
                breaks.push((
                    start,
                    format!(
                        "position {start} is missing (the next event found is at {first_position})"
                    ),
                ));
            } else if Some(*first_prev) != self.prev {
                breaks.push((start, "its prev_hash is not the hash of the event before it (an event was removed, inserted or reordered)".into()));
            } else if first_recorded.as_str() < self.last_recorded.as_str() {
                breaks.push((
                    start,
                    format!(
                        "it is recorded at {first_recorded} before the event before it ({})",
                        self.last_recorded
                    ),
                ));
            }
        } else if breaks.is_empty() {
            // The segment's range held no event at all.
            breaks.push((start, format!("position {start} is missing")));
        }
        for (stream, (version, position)) in next.first_versions.iter().flatten() {
            let before = self.versions.get(stream).copied().unwrap_or(0);
            if *version != before + 1 {
                breaks.push((
                    *position,
                    if before == 0 {
                        format!("stream {stream} starts at version {version}, not 1")
                    } else {
                        format!("stream {stream} jumps from version {before} to {version}")
                    },
                ));
            }
        }
        if let Some((position, reason)) = breaks.into_iter().min_by_key(|(p, _)| *p) {
            return Err(VerifyError::Broken { position, reason });
        }
        self.versions.extend(next.versions);
        self.prev = next.prev.or(self.prev);
        self.last_recorded = next.last_recorded;
        self.next = next.next;
        self.events += next.events;
        Ok(())
    }
}

/// Logs shorter than this are verified on one thread.
const PARALLEL_FROM: u64 = 200_000;

/// Recomputes the whole chain (see `ChainCheck`) and checks that it ends at the store's
/// head. A long log is cut into one segment per core, each read and hashed by its own
/// thread (each event's hash depends only on its own bytes and its stored `prev_hash`),
/// then the segments are joined in order: the links between them, the stream versions and
/// the commit times across them. The first bad position is reported, as on one thread.
/// `progress` is called as segments complete.
pub fn verify(
    store: &dyn EventStore,
    progress: &mut dyn FnMut(u64),
) -> Result<Verified, VerifyError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8) as u64;
    let parts = if store.head_position()? >= PARALLEL_FROM {
        threads
    } else {
        1
    };
    verify_in_parts(store, parts, progress)
}

/// `verify` with the log cut into `parts` segments, each on its own thread (the result is
/// the same for any number of parts).
pub fn verify_in_parts(
    store: &dyn EventStore,
    parts: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<Verified, VerifyError> {
    let head = store.head()?;
    let parts = parts.clamp(1, head.position.max(1));
    let bounds: Vec<(u64, u64)> = (0..parts)
        .map(|i| (head.position * i / parts, head.position * (i + 1) / parts))
        .collect();
    // Each segment reads up to its bound: the log as of the head taken above (a server may
    // append while it runs).
    let run = |after: u64, to: u64| -> (ChainCheck, Option<VerifyError>) {
        let mut chain = if after == 0 {
            ChainCheck::from_start()
        } else {
            ChainCheck::segment(after + 1)
        };
        let mut broken = None;
        let scanned = store.scan(after, to, &mut |e| match chain.check(&e) {
            Ok(()) => true,
            Err(b) => {
                broken = Some(b);
                false
            }
        });
        if let Err(e) = scanned {
            broken = Some(VerifyError::Store(e));
        }
        (chain, broken)
    };
    let results: Vec<(ChainCheck, Option<VerifyError>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = bounds
            .iter()
            .map(|&(after, to)| scope.spawn(move || run(after, to)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a verify thread panicked"))
            .collect()
    });
    let mut results = results.into_iter();
    let (mut chain, first_error) = results.next().expect("one segment at least");
    if let Some(e) = first_error {
        return Err(e);
    }
    progress(chain.events);
    for (segment, error) in results {
        chain.join(segment, error)?;
        progress(chain.events);
    }
    let events = chain.events;
    if events != head.position || (events > 0 && chain.head_hash() != head.hash) {
        return Err(VerifyError::Broken {
            position: events + 1,
            reason: format!(
                "the store's head is at {} but the chain ends at {events}",
                head.position
            ),
        });
    }
    Ok(Verified {
        events,
        position: head.position,
        hash: hex::encode(head.hash),
    })
}

/// The head of the log as a small document an auditor can keep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Digest {
    /// Which store.
    pub store: String,
    /// Head position.
    pub position: u64,
    /// Head hash (hex).
    pub hash: String,
    /// Commit time of the head event.
    pub recorded_at: Option<String>,
}

/// The current digest.
pub fn digest(store: &dyn EventStore) -> Result<Digest, StoreError> {
    let Head { position, hash } = store.head()?;
    let mut recorded_at = None;
    if position > 0 {
        store.scan(position - 1, position, &mut |e| {
            recorded_at = Some(e.recorded_at.to_string());
            false
        })?;
    }
    Ok(Digest {
        store: store.describe(),
        position,
        hash: hex::encode(hash),
        recorded_at,
    })
}

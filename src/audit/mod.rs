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
/// store), `verify_export` and `import` (an export).
pub(crate) struct ChainCheck {
    /// The next position expected (`None` before the first event of a window).
    next: Option<u64>,
    prev: [u8; 32],
    last_recorded: String,
    versions: HashMap<String, u64>,
    /// Whether the checked events start at position 1 (every stream starts at version 1).
    from_start: bool,
}

impl ChainCheck {
    /// For a whole log, from position 1.
    pub(crate) fn from_start() -> ChainCheck {
        ChainCheck {
            next: Some(1),
            prev: GENESIS_HASH,
            last_recorded: String::new(),
            versions: HashMap::new(),
            from_start: true,
        }
    }

    /// For a window starting anywhere (an export with --from or --since): its first event
    /// is taken as it comes, the rest must follow it.
    pub(crate) fn window() -> ChainCheck {
        ChainCheck {
            next: None,
            from_start: false,
            ..ChainCheck::from_start()
        }
    }

    /// The position the next event must have (`None` before the first of a window).
    pub(crate) fn next(&self) -> Option<u64> {
        self.next
    }

    /// The hash of the last event checked (the genesis hash before any).
    pub(crate) fn head_hash(&self) -> [u8; 32] {
        self.prev
    }

    /// Checks the next event; the error names what is wrong with it.
    pub(crate) fn check(&mut self, e: &EventRef<'_>) -> Result<(), VerifyError> {
        let fail = |position: u64, reason: String| VerifyError::Broken { position, reason };
        let expected = match self.next {
            Some(n) => n,
            None => {
                // The first event of a window: its predecessor is outside it.
                if e.position == 1 {
                    self.from_start = true;
                } else {
                    self.prev = e.prev_hash;
                }
                e.position
            }
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
        if e.prev_hash != self.prev {
            return Err(fail(expected, "its prev_hash is not the hash of the event before it (an event was removed, inserted or reordered)".into()));
        }
        if chain_hash(&self.prev, e) != e.hash {
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
            }
        }
        self.prev = e.hash;
        if e.recorded_at != self.last_recorded {
            self.last_recorded.clear();
            self.last_recorded.push_str(e.recorded_at);
        }
        self.next = Some(expected + 1);
        Ok(())
    }
}

/// Recomputes the whole chain (see `ChainCheck`) and checks that it ends at the store's
/// head. `progress` is called every 65,536 events.
pub fn verify(
    store: &dyn EventStore,
    progress: &mut dyn FnMut(u64),
) -> Result<Verified, VerifyError> {
    let head = store.head()?;
    let mut chain = ChainCheck::from_start();
    let mut broken: Option<VerifyError> = None;
    let mut events = 0u64;
    store.scan(0, u64::MAX, &mut |e| {
        if let Err(b) = chain.check(&e) {
            broken = Some(b);
            return false;
        }
        events += 1;
        if events.is_multiple_of(65_536) {
            progress(events);
        }
        true
    })?;
    if let Some(b) = broken {
        return Err(b);
    }
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

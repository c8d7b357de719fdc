//! Tamper evidence: recompute the hash chain (`verify`), state the head (`digest`), sign it
//! and prove that a later log extends it (`signing`).
//! Reads only; mutates nothing.

mod signing;

pub use signing::{verify_extends, LedgerKey, SignedDigest, FORMAT};

use crate::store::{chain_hash, EventStore, Head, StoreError, GENESIS_HASH};
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
}

/// Recomputes the whole chain: positions follow one another from 1, each `prev_hash` is the
/// previous `hash`, each `hash` matches the event's bytes, stream versions follow one another,
/// and commit times never go backwards. `progress` is called every 65,536 events.
pub fn verify(
    store: &dyn EventStore,
    progress: &mut dyn FnMut(u64),
) -> Result<Verified, VerifyError> {
    let head = store.head()?;
    let mut prev = GENESIS_HASH;
    let mut expected = 1u64;
    let mut last_recorded = String::new();
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut broken: Option<VerifyError> = None;
    let fail = |position: u64, reason: String| VerifyError::Broken { position, reason };
    store.scan(0, u64::MAX, &mut |e| {
        let problem = if e.position != expected {
            Some(if e.position > expected {
                format!("position {expected} is missing (the next event found is at {})", e.position)
            } else {
                format!("position {} appears after {}", e.position, expected - 1)
            })
        } else if e.prev_hash != prev {
            Some("its prev_hash is not the hash of the event before it (an event was removed, inserted or reordered)".into())
        } else if chain_hash(&prev, &e) != e.hash {
            Some("its contents do not match its hash (the event was altered)".into())
        } else if e.recorded_at < last_recorded.as_str() {
            Some(format!("it is recorded at {} before the event before it ({last_recorded})", e.recorded_at))
        } else {
            let v = versions.entry(e.stream_id.to_string()).or_insert(0);
            if e.stream_version != *v + 1 {
                Some(format!("stream {} jumps from version {} to {}", e.stream_id, v, e.stream_version))
            } else {
                *v += 1;
                None
            }
        };
        if let Some(reason) = problem {
            broken = Some(fail(expected.min(e.position), reason));
            return false;
        }
        prev = e.hash;
        if e.recorded_at != last_recorded {
            last_recorded = e.recorded_at.to_string();
        }
        if expected.is_multiple_of(65_536) {
            progress(expected);
        }
        expected += 1;
        true
    })?;
    if let Some(b) = broken {
        return Err(b);
    }
    let events = expected - 1;
    if events != head.position || (events > 0 && prev != head.hash) {
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

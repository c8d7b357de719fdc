//! Tamper evidence: recompute the hash chain (`verify`), state the head (`digest`), sign it
//! and prove that a later log extends it (`signing`); export and import; the access log of
//! person-level reads (`access_log`). Never mutates the log.

pub mod access_log;
pub mod backup;
mod export;
pub mod follow;
pub mod proofs;
mod signing;
pub mod tree;
pub mod trust;

pub use access_log::{AccessBreak, AccessEntry, AccessHead, AccessLog, Disclosure, ENTRY_VERSION};
pub use export::{
    export, import, verify_export, ExportOptions, Exported, Imported, VerifiedExport,
};
pub use signing::{
    check_not_backdated, verify_extends, LatestCheckpoint, LedgerKey, SignedDigest,
    CLOCK_SLACK_SECS, FORMAT, FORMAT_V1,
};
pub use trust::{check_checkpoint, Checked, KeySet, Trust, TrustedKey};

use crate::store::{ChainBreak, ChainCheck, EventStore, Head, StoreError};
use serde::Serialize;

impl From<ChainBreak> for VerifyError {
    fn from(b: ChainBreak) -> VerifyError {
        VerifyError::Broken {
            position: b.position,
            reason: b.reason,
        }
    }
}

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
    /// A digest of another ledger: the wrong file, not evidence of tampering.
    #[error("{0}")]
    OtherLedger(String),
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
    type Segment = Result<(ChainCheck, Option<ChainBreak>), StoreError>;
    let run = |after: u64, to: u64| -> Segment {
        let mut chain = if after == 0 {
            ChainCheck::from_start()
        } else {
            ChainCheck::segment(after + 1)
        };
        let mut broken = None;
        store.scan(after, to, &mut |e| match chain.check(&e) {
            Ok(()) => true,
            Err(b) => {
                broken = Some(b);
                false
            }
        })?;
        Ok((chain, broken))
    };
    let results: Vec<Segment> = std::thread::scope(|scope| {
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
    let (mut chain, first_error) = results.next().expect("one segment at least")?;
    if let Some(b) = first_error {
        return Err(b.into());
    }
    progress(chain.events());
    for segment in results {
        let (segment, error) = segment?;
        chain.join(segment, error)?;
        progress(chain.events());
    }
    let events = chain.events();
    if events != head.position || (events > 0 && chain.head_hash() != head.hash) {
        return Err(VerifyError::Broken {
            position: events + 1,
            reason: format!(
                "the store's head is at {} but the chain ends at {events}",
                head.position
            ),
        });
    }
    tree::verify_tree(store, head.position)?;
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
    /// The ledger's id: the hash (hex) of its first event, the genesis of its chain; none
    /// while the log is empty.
    pub ledger: Option<String>,
    /// Leaves of the Merkle tree the digest states (the head position).
    pub tree_size: u64,
    /// Root of that tree (hex), RFC 9162 `MTH`.
    pub root_hash: String,
    /// The access log's head, when the digest is taken where the access log is.
    pub access_log: Option<AccessHead>,
}

impl Digest {
    /// The same digest, stating the access log's head too.
    pub fn with_access_log(mut self, log: Option<&AccessLog>) -> Result<Digest, StoreError> {
        if let Some(log) = log {
            self.access_log = Some(log.head()?);
        }
        Ok(self)
    }
}

/// The current digest.
pub fn digest(store: &dyn EventStore) -> Result<Digest, StoreError> {
    let Head { position, .. } = store.head()?;
    tree::digest_at(store, position)
}

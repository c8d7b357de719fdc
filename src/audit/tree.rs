//! The Merkle tree seen by an auditor: the root and the digest of any prefix of the log,
//! inclusion and consistency proofs read from the store's nodes (O(log n) reads), and the check
//! that the stored tree is the tree of the events (`audit verify`).

use super::{Digest, VerifyError};
use crate::envelope::merkle::{self, Frontier, Hash, NodeId};
use crate::store::{EventStore, StoreError};
use serde::{Deserialize, Serialize};

/// Why a proof cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// The request is malformed (a size of 0). Fix the request (HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// The request names a tree the log does not have (yet), a position outside the tree, or a
    /// proof from a newer tree to an older one: there is no such proof (HTTP 404).
    #[error("{0}")]
    NotInLog(String),
    /// A digest of another ledger: not evidence of tampering, the wrong file (exit 2).
    #[error("{0}")]
    OtherLedger(String),
    /// The log does not hold the tree a digest states: it was changed (exit 1).
    #[error("{0}")]
    Diverged(String),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The root of the tree of the first `size` events.
pub fn root_at(store: &dyn EventStore, size: u64) -> Result<Hash, StoreError> {
    merkle::root_of(size, |ids| store.tree_nodes(ids))
}

/// The digest of the log as it was at `size` events: that event's hash and time, the tree's
/// root at that size, the ledger's id. `size` must not be beyond the head.
pub fn digest_at(store: &dyn EventStore, size: u64) -> Result<Digest, StoreError> {
    let mut hash = hex::encode([0u8; 32]);
    let mut recorded_at = None;
    let mut ledger = None;
    if size > 0 {
        store.scan(size - 1, size, &mut |e| {
            hash = hex::encode(e.hash);
            recorded_at = Some(e.recorded_at.to_string());
            false
        })?;
        ledger = ledger_id(store)?;
    }
    Ok(Digest {
        store: store.describe(),
        position: size,
        hash,
        recorded_at,
        ledger,
        tree_size: size,
        root_hash: hex::encode(root_at(store, size)?),
        access_log: None,
    })
}

/// The ledger's id: the hash (hex) of its first event. A ledger has one from its first event
/// on; an export imported elsewhere keeps it (it is the same chain).
pub fn ledger_id(store: &dyn EventStore) -> Result<Option<String>, StoreError> {
    let mut id = None;
    store.scan(0, 1, &mut |e| {
        id = Some(hex::encode(e.hash));
        false
    })?;
    Ok(id)
}

/// Why a digest naming ledger `theirs` is not of this store's ledger, if it is not (a digest
/// without an id, or an empty log, is not refused here).
pub fn other_ledger(
    store: &dyn EventStore,
    theirs: Option<&str>,
) -> Result<Option<String>, StoreError> {
    Ok(match (theirs, ledger_id(store)?) {
        (Some(theirs), Some(ours)) if theirs != ours => Some(format!(
            "this digest is of another ledger (id {theirs}); this ledger's id is {ours}: give a digest taken from this ledger"
        )),
        _ => None,
    })
}

/// An inclusion proof (RFC 9162 §2.1.3): the event at position `leaf_index + 1` is in the
/// tree of `tree_size` events whose root is `root_hash`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// The leaf, from 0 (the event's position − 1).
    pub leaf_index: u64,
    /// Leaves of the tree.
    pub tree_size: u64,
    /// `SHA-256(0x00 ‖ chain hash)`, hex.
    pub leaf_hash: String,
    /// The audit path, leaf to root, hex.
    pub audit_path: Vec<String>,
    /// The tree's root, hex.
    pub root_hash: String,
}

/// A consistency proof (RFC 9162 §2.1.4): the tree of `second` events extends the tree of
/// `first` events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// Leaves of the older tree.
    pub first: u64,
    /// Leaves of the newer tree.
    pub second: u64,
    /// Root of the older tree, hex.
    pub first_root: String,
    /// Root of the newer tree, hex.
    pub second_root: String,
    /// The consistency path, hex.
    pub consistency_path: Vec<String>,
}

/// Refuses a tree size of 0 or beyond the head, saying why.
pub fn check_size(what: &str, size: u64, head: u64) -> Result<(), ProofError> {
    if size == 0 {
        return Err(ProofError::Invalid(format!(
            "{what} must be at least 1: a proof is against a tree of one event or more"
        )));
    }
    if size > head {
        return Err(ProofError::NotInLog(format!(
            "{what} {size} is beyond the log's head ({head} events): give a size from 1 to {head}"
        )));
    }
    Ok(())
}

/// Refuses an inclusion proof of a position outside a tree of `tree_size` events, or of a
/// tree the log of `head` events does not have, saying why.
pub fn check_inclusion_request(position: u64, tree_size: u64, head: u64) -> Result<(), ProofError> {
    check_size("tree_size", tree_size, head)?;
    if position == 0 {
        return Err(ProofError::Invalid(
            "position must be at least 1: positions start at 1".into(),
        ));
    }
    if position > tree_size {
        return Err(ProofError::NotInLog(format!(
            "position {position} is outside the tree of {tree_size} events (positions 1 to {tree_size})"
        )));
    }
    Ok(())
}

/// Refuses a consistency proof between sizes the log of `head` events does not have, or from
/// a newer tree to an older one, saying why.
pub fn check_consistency_request(first: u64, second: u64, head: u64) -> Result<(), ProofError> {
    check_size("first", first, head)?;
    check_size("second", second, head)?;
    if first > second {
        return Err(ProofError::NotInLog(format!(
            "first ({first}) is larger than second ({second}): a consistency proof goes from an older tree to a newer one"
        )));
    }
    Ok(())
}

/// The leaf hash and audit path of the event at `position` in the tree of `tree_size` events
/// (the request checked; no root computed).
pub fn audit_path(
    store: &dyn EventStore,
    position: u64,
    tree_size: u64,
) -> Result<(Hash, Vec<Hash>), ProofError> {
    check_inclusion_request(position, tree_size, store.head_position()?)?;
    let index = position - 1;
    let leaf = store.tree_nodes(&[NodeId { level: 0, index }])?[0];
    let path = merkle::prove(&merkle::inclusion_plan(index, tree_size), |ids| {
        store.tree_nodes(ids)
    })?;
    Ok((leaf, path))
}

/// The consistency path between the trees of `first` and `second` events (the request
/// checked; no root computed).
pub fn consistency_path(
    store: &dyn EventStore,
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, ProofError> {
    check_consistency_request(first, second, store.head_position()?)?;
    Ok(merkle::prove(
        &merkle::consistency_plan(first, second),
        |ids| store.tree_nodes(ids),
    )?)
}

/// The inclusion proof of the event at `position` in the tree of `tree_size` events.
pub fn prove_inclusion(
    store: &dyn EventStore,
    position: u64,
    tree_size: u64,
) -> Result<InclusionProof, ProofError> {
    let (leaf, path) = audit_path(store, position, tree_size)?;
    Ok(InclusionProof {
        leaf_index: position - 1,
        tree_size,
        leaf_hash: hex::encode(leaf),
        audit_path: path.iter().map(hex::encode).collect(),
        root_hash: hex::encode(root_at(store, tree_size)?),
    })
}

/// The consistency proof from the tree of `first` events to the tree of `second`.
pub fn prove_consistency(
    store: &dyn EventStore,
    first: u64,
    second: u64,
) -> Result<ConsistencyProof, ProofError> {
    let path = consistency_path(store, first, second)?;
    Ok(ConsistencyProof {
        first,
        second,
        first_root: hex::encode(root_at(store, first)?),
        second_root: hex::encode(root_at(store, second)?),
        consistency_path: path.iter().map(hex::encode).collect(),
    })
}

/// Nodes compared per read of the store.
const CHECK_BATCH: usize = 4096;

/// Checks the stored tree of the first `size` events against the events: every inner node
/// the store keeps is recomputed from the events' hashes. Names the first node that differs.
pub fn verify_tree(store: &dyn EventStore, size: u64) -> Result<(), VerifyError> {
    if !store.keeps_tree() {
        return Ok(());
    }
    // The tree and the head move together (one transaction): read the tree's size, then the
    // head, so that an append in between cannot look like a removal.
    let covered = store.tree_size()?;
    let now = store.head_position()?;
    if covered > now {
        return Err(VerifyError::Broken {
            position: now + 1,
            reason: format!(
                "the Merkle tree covers {covered} events but the log ends at {now}: events {}..={covered} were removed",
                now + 1
            ),
        });
    }
    if covered < size {
        return Err(VerifyError::Broken {
            position: covered + 1,
            reason: format!(
                "the Merkle tree covers {covered} events but the log holds {size}: the tree is missing or damaged (or events were added without it, not by this ledger). Compare the log with a checkpoint you hold (`audit verify --digest`); `campaign-ledger audit rebuild-tree` builds the tree again from the events"
            ),
        });
    }
    let mut frontier = Frontier::new();
    let mut pending: Vec<(NodeId, Hash)> = Vec::with_capacity(CHECK_BATCH + 64);
    let mut failure: Option<VerifyError> = None;
    let compare = |pending: &mut Vec<(NodeId, Hash)>| -> Result<(), VerifyError> {
        let ids: Vec<NodeId> = pending.iter().map(|(id, _)| *id).collect();
        let stored = store.tree_nodes(&ids)?;
        for ((id, want), got) in pending.iter().zip(stored) {
            if got != *want {
                let first = id.first_leaf() + 1;
                return Err(VerifyError::Broken {
                    position: first,
                    reason: format!(
                        "the stored Merkle tree's node at level {} index {} (positions {first} to {}) is not the hash of those events: the tree was altered",
                        id.level,
                        id.index,
                        first + (1u64 << id.level) - 1
                    ),
                });
            }
        }
        pending.clear();
        Ok(())
    };
    let kept = store.tree_min_stored_level();
    store.scan(0, size, &mut |e| {
        frontier.push(&e.hash, |id, h| {
            if id.level >= kept {
                pending.push((id, h))
            }
        });
        if pending.len() >= CHECK_BATCH {
            if let Err(err) = compare(&mut pending) {
                failure = Some(err);
                return false;
            }
        }
        true
    })?;
    if let Some(err) = failure {
        return Err(err);
    }
    compare(&mut pending)?;
    // The edge of the tree (subtrees that are leaves included) folds to the stored root.
    let root = root_at(store, size)?;
    if root != frontier.root() {
        return Err(VerifyError::Broken {
            position: size,
            reason: "the stored Merkle tree's root is not the root of the events".into(),
        });
    }
    Ok(())
}

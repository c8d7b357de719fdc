//! Proof documents an auditor keeps or hands on, and their offline check.
//!
//! - an inclusion proof (`campaign-ledger-inclusion-proof/1`): one event's export line, its
//!   leaf hash and audit path, and the signed digest whose tree it is in;
//! - a consistency proof (`campaign-ledger-consistency-proof/1`): two signed digests and the
//!   path proving the newer tree extends the older;
//! - a person's record (`campaign-ledger-person-proof/1`): every event naming one person, each
//!   with its path to the root of one signed digest, and nothing of anyone else.
//!
//! [`check`] needs no store: it recomputes each event's chain hash from its line, its leaf,
//! the path to the digest's root, and the digest's signature.

use super::tree::{
    audit_path, check_consistency_request, check_inclusion_request, consistency_path, digest_at,
    other_ledger, root_at, ProofError,
};
use super::trust::Trust;
use super::{Digest, SignedDigest};
use crate::envelope::chain::chain_hash;
use crate::envelope::cloudevents::{decode_export, encode_export};
use crate::envelope::merkle::{leaf_hash, verify_consistency, verify_inclusion, Hash};
use crate::store::EventStore;
use serde::{Deserialize, Serialize};

/// Format label of an inclusion proof.
pub const INCLUSION_FORMAT: &str = "campaign-ledger-inclusion-proof/1";
/// Format label of a consistency proof.
pub const CONSISTENCY_FORMAT: &str = "campaign-ledger-consistency-proof/1";
/// Format label of a person's record.
pub const PERSON_FORMAT: &str = "campaign-ledger-person-proof/1";

/// One event proved in a tree: its export line, leaf hash and audit path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvedEvent {
    /// The leaf, from 0 (the event's position − 1).
    pub leaf_index: u64,
    /// `SHA-256(0x00 ‖ the event's chain hash)`, hex.
    pub leaf_hash: String,
    /// RFC 9162 audit path, leaf to root, hex.
    pub audit_path: Vec<String>,
    /// The event as `campaign-ledger export` writes it (one JSON line, kept as text so that
    /// its bytes are those hashed).
    pub event: String,
}

/// An inclusion proof of one event against a signed digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionDocument {
    /// Always [`INCLUSION_FORMAT`].
    pub format: String,
    /// Leaves of the tree (the digest's `tree_size`).
    pub tree_size: u64,
    /// The leaf, from 0 (the event's position − 1).
    pub leaf_index: u64,
    /// `SHA-256(0x00 ‖ the event's chain hash)`, hex.
    pub leaf_hash: String,
    /// RFC 9162 audit path, leaf to root, hex.
    pub audit_path: Vec<String>,
    /// The event as `campaign-ledger export` writes it.
    pub event: String,
    /// The digest whose root the path leads to.
    pub digest: SignedDigest,
}

/// A consistency proof between two signed digests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyDocument {
    /// Always [`CONSISTENCY_FORMAT`].
    pub format: String,
    /// Leaves of the older tree.
    pub first: u64,
    /// Leaves of the newer tree.
    pub second: u64,
    /// RFC 9162 consistency path, hex.
    pub consistency_path: Vec<String>,
    /// The older digest.
    pub from: SignedDigest,
    /// The newer digest.
    pub to: SignedDigest,
}

/// A person's events, each proved against one signed digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonDocument {
    /// Always [`PERSON_FORMAT`].
    pub format: String,
    /// The person's pseudonym (as events show it).
    pub person: String,
    /// Leaves of the tree (the digest's `tree_size`).
    pub tree_size: u64,
    /// Their events, in log order.
    pub events: Vec<ProvedEvent>,
    /// The digest whose root every path leads to.
    pub digest: SignedDigest,
}

/// Checks that `digest` is of this ledger and states this log's tree: the same ledger id and,
/// at its tree size, the same root. A digest of another ledger is `OtherLedger`; a root that
/// differs means the log changed at or before that size (`Diverged`).
pub fn check_digest_against(
    store: &dyn EventStore,
    digest: &SignedDigest,
) -> Result<u64, ProofError> {
    let (Some(size), Some(root)) = (digest.tree_size, digest.root_hash.as_deref()) else {
        return Err(ProofError::Invalid(
            "this digest was taken before the ledger kept a Merkle tree (it has no tree_size and root_hash): take a new one with `campaign-ledger audit digest`".into(),
        ));
    };
    if let Some(why) = other_ledger(store, digest.ledger.as_deref())? {
        return Err(ProofError::OtherLedger(why));
    }
    let head = store.head_position()?;
    if size > head {
        return Err(ProofError::Diverged(format!(
            "the digest states a tree of {size} events but the log holds {head}: events were removed"
        )));
    }
    let ours = hex::encode(root_at(store, size)?);
    if ours != root {
        return Err(ProofError::Diverged(format!(
            "the log's tree of {size} events has root {ours}, the digest says {root}: the log was changed at or before position {size}"
        )));
    }
    Ok(size)
}

/// The export line of the event at `position`.
fn export_line(store: &dyn EventStore, position: u64) -> Result<String, ProofError> {
    let Some(e) = store.read_all(position - 1, 1)?.pop() else {
        return Err(ProofError::Invalid(format!(
            "there is no event at position {position}"
        )));
    };
    let content_hash = store
        .command(e.command_id)?
        .map(|c| crate::envelope::cloudevents::CommandHash {
            hash: c.content_hash,
            version: c.hash_version,
        })
        .unwrap_or(crate::envelope::cloudevents::CommandHash {
            hash: [0u8; 32],
            version: crate::store::CONTENT_HASH_VERSION,
        });
    Ok(String::from_utf8(encode_export(&e.as_ref(), &content_hash)).expect("JSON is UTF-8"))
}

/// One event's path to the root of `size` events (the root itself was compared with the
/// digest's by `check_digest_against`, once for every event of a document).
fn proved(store: &dyn EventStore, position: u64, size: u64) -> Result<ProvedEvent, ProofError> {
    let (leaf, path) = audit_path(store, position, size)?;
    Ok(ProvedEvent {
        leaf_index: position - 1,
        leaf_hash: hex::encode(leaf),
        audit_path: path.iter().map(hex::encode).collect(),
        event: export_line(store, position)?,
    })
}

/// The inclusion proof of the event at `position` against `digest` (checked against the log
/// first, see [`check_digest_against`]).
pub fn inclusion_document(
    store: &dyn EventStore,
    position: u64,
    digest: SignedDigest,
) -> Result<InclusionDocument, ProofError> {
    let size = check_digest_against(store, &digest)?;
    let p = proved(store, position, size)?;
    Ok(InclusionDocument {
        format: INCLUSION_FORMAT.into(),
        tree_size: size,
        leaf_index: p.leaf_index,
        leaf_hash: p.leaf_hash,
        audit_path: p.audit_path,
        event: p.event,
        digest,
    })
}

/// The inclusion proof of the event at `position` in the tree of `tree_size` events, against
/// a digest of the log at that size made now and signed by `sign`.
pub fn inclusion_at(
    store: &dyn EventStore,
    position: u64,
    tree_size: u64,
    sign: impl FnOnce(Digest) -> SignedDigest,
) -> Result<InclusionDocument, ProofError> {
    check_inclusion_request(position, tree_size, store.head_position()?)?;
    inclusion_document(store, position, sign(digest_at(store, tree_size)?))
}

/// The consistency proof between the trees of `first` and `second` events, against digests
/// of the log at those sizes made now and signed by `sign`.
pub fn consistency_at(
    store: &dyn EventStore,
    first: u64,
    second: u64,
    sign: impl Fn(Digest) -> SignedDigest,
) -> Result<ConsistencyDocument, ProofError> {
    check_consistency_request(first, second, store.head_position()?)?;
    consistency_document(
        store,
        sign(digest_at(store, first)?),
        sign(digest_at(store, second)?),
    )
}

/// The consistency proof from `from`'s tree to `to`'s (both checked against the log).
pub fn consistency_document(
    store: &dyn EventStore,
    from: SignedDigest,
    to: SignedDigest,
) -> Result<ConsistencyDocument, ProofError> {
    let first = check_digest_against(store, &from)?;
    let second = check_digest_against(store, &to)?;
    let path = consistency_path(store, first, second)?;
    Ok(ConsistencyDocument {
        format: CONSISTENCY_FORMAT.into(),
        first,
        second,
        consistency_path: path.iter().map(hex::encode).collect(),
        from,
        to,
    })
}

/// A person's record: the events at `positions` (those naming the person, in log order),
/// each proved against `digest`.
pub fn person_document(
    store: &dyn EventStore,
    person: &str,
    positions: &[u64],
    digest: SignedDigest,
) -> Result<PersonDocument, ProofError> {
    let size = check_digest_against(store, &digest)?;
    let events = positions
        .iter()
        .filter(|p| **p <= size)
        .map(|p| proved(store, *p, size))
        .collect::<Result<_, _>>()?;
    Ok(PersonDocument {
        format: PERSON_FORMAT.into(),
        person: person.to_string(),
        tree_size: size,
        events,
        digest,
    })
}

/// Why a proof document does not check.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Not a proof document this ledger writes (exit 2).
    #[error("{0}")]
    Unreadable(String),
    /// The proof does not hold: says what failed (exit 1).
    #[error("{0}")]
    Failed(String),
}

fn hash_of(what: &str, h: &str) -> Result<Hash, CheckError> {
    hex::decode(h)
        .ok()
        .and_then(|b| <Hash>::try_from(b).ok())
        .ok_or_else(|| CheckError::Unreadable(format!("{what} is not 64 hex digits: {h:?}")))
}

fn path_of(what: &str, path: &[String]) -> Result<Vec<Hash>, CheckError> {
    path.iter().map(|h| hash_of(what, h)).collect()
}

/// The digest's tree, checked against what the verifier trusts: its size and root, and how it
/// was witnessed.
fn digest_tree(
    which: &str,
    d: &SignedDigest,
    trust: &Trust,
) -> Result<(u64, Hash, String), CheckError> {
    let checked = d
        .check(trust)
        .map_err(|e| CheckError::Failed(format!("{which}: {e}")))?;
    let witnessed = checked.as_ref().map_or_else(
        || "unwitnessed (first format)".to_string(),
        |c| c.witness_summary(),
    );
    match (d.tree_size, d.root_hash.as_deref()) {
        (Some(size), Some(root)) => Ok((size, hash_of("the digest's root_hash", root)?, witnessed)),
        _ => Err(CheckError::Failed(format!(
            "{which} has no tree_size and root_hash (taken before the Merkle tree): it can back no proof"
        ))),
    }
}

/// A tree the auditor holds a checked checkpoint of (`--trusted`): a proof is checked against
/// it, never against a checkpoint it brings along alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pinned {
    /// Its size.
    pub size: u64,
    /// Its root.
    pub root: Hash,
}

/// The tree a proof stands on must be the auditor's own.
fn pin(which: &str, size: u64, root: &Hash, pinned: Option<Pinned>) -> Result<(), CheckError> {
    let Some(p) = pinned else { return Ok(()) };
    if p.size != size {
        return Err(CheckError::Failed(format!(
            "{which} states a tree of {size} events and your trusted checkpoint one of {}: ask for the proof at your size (tree_size={} over HTTP, or `audit prove … --digest YOUR_CHECKPOINT`), or first prove that {size} extends {} (`audit follow`, or a consistency proof from your checkpoint)",
            p.size, p.size, p.size
        )));
    }
    if p.root != *root {
        return Err(CheckError::Failed(format!(
            "{which} states a tree of {size} events whose root is not the root of your trusted checkpoint of that size: the ledger showed you two different histories (a fork): keep both documents as evidence"
        )));
    }
    Ok(())
}

/// Checks one event against a tree of `size` leaves with root `root`; returns its position.
fn check_event(e: &ProvedEvent, size: u64, root: &Hash) -> Result<u64, CheckError> {
    let (event, _) = decode_export(e.event.as_bytes()).map_err(|err| {
        CheckError::Unreadable(format!("the event line is not an export line ({err})"))
    })?;
    let at = event.position;
    if chain_hash(&event.prev_hash, &event.as_ref()) != event.hash {
        return Err(CheckError::Failed(format!(
            "the event at position {at}: its hash is not the hash of its content: the event was changed"
        )));
    }
    let leaf = leaf_hash(&event.hash);
    if hex::encode(leaf) != e.leaf_hash {
        return Err(CheckError::Failed(format!(
            "the event at position {at}: leaf_hash is not SHA-256(0x00 ‖ its hash)"
        )));
    }
    if e.leaf_index + 1 != at {
        return Err(CheckError::Failed(format!(
            "leaf_index {} is not the event's position {at} − 1",
            e.leaf_index
        )));
    }
    let path = path_of("an audit_path entry", &e.audit_path)?;
    if !verify_inclusion(e.leaf_index, size, &leaf, &path, root) {
        return Err(CheckError::Failed(format!(
            "the audit path of the event at position {at} does not lead to the digest's root: the event is not in that tree"
        )));
    }
    Ok(at)
}

/// Checks a proof document (any of the three formats) with no store: the events' hashes from
/// their lines, the paths to the roots, the roots against the signed digests, the digests
/// against what the verifier trusts (keys, witnesses, quorum), and, with `pinned`, the tree
/// against the auditor's own checkpoint. Returns one line per thing checked.
pub fn check(text: &str, trust: &Trust, pinned: Option<Pinned>) -> Result<Vec<String>, CheckError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| CheckError::Unreadable(format!("not JSON ({e})")))?;
    let format = value
        .get("format")
        .and_then(|f| f.as_str())
        .unwrap_or("")
        .to_string();
    let parse_err =
        |e: serde_json::Error| CheckError::Unreadable(format!("not a {format} document ({e})"));
    let pinned_note = if pinned.is_some() {
        "; the tree is your trusted checkpoint's"
    } else {
        ""
    };
    match format.as_str() {
        INCLUSION_FORMAT => {
            let d: InclusionDocument = serde_json::from_str(text).map_err(parse_err)?;
            let (size, root, witnessed) = digest_tree("the digest", &d.digest, trust)?;
            if size != d.tree_size {
                return Err(CheckError::Failed(format!(
                    "the proof is for a tree of {} events, the digest states {size}",
                    d.tree_size
                )));
            }
            pin("the proof", size, &root, pinned)?;
            let proved = ProvedEvent {
                leaf_index: d.leaf_index,
                leaf_hash: d.leaf_hash,
                audit_path: d.audit_path,
                event: d.event,
            };
            let at = check_event(&proved, size, &root)?;
            Ok(vec![
                format!("ok: the event at position {at} hashes to its recorded hash"),
                format!("ok: its audit path leads to the root of the tree of {size} events"),
                format!("ok: that root is the digest's, signed by a key you trust, {witnessed}{pinned_note}"),
            ])
        }
        CONSISTENCY_FORMAT => {
            let d: ConsistencyDocument = serde_json::from_str(text).map_err(parse_err)?;
            if let (Some(a), Some(b)) = (&d.from.ledger, &d.to.ledger) {
                if a != b {
                    return Err(CheckError::Failed(format!(
                        "the two digests are of different ledgers ({a} and {b})"
                    )));
                }
            }
            let (first, first_root, _) = digest_tree("the older digest", &d.from, trust)?;
            let (second, second_root, witnessed) = digest_tree("the newer digest", &d.to, trust)?;
            pin("the older digest", first, &first_root, pinned)?;
            if (first, second) != (d.first, d.second) {
                return Err(CheckError::Failed(format!(
                    "the proof is from {} to {} events, the digests state {first} and {second}",
                    d.first, d.second
                )));
            }
            let path = path_of("a consistency_path entry", &d.consistency_path)?;
            if !verify_consistency(first, second, &first_root, &second_root, &path) {
                return Err(CheckError::Failed(format!(
                    "the consistency path does not prove that the tree of {second} events extends the tree of {first}: the log was changed at or before position {first}"
                )));
            }
            Ok(vec![
                format!("ok: the tree of {second} events extends the tree of {first} (nothing before position {first} changed)"),
                format!("ok: both roots are the digests', signed by a key you trust; the newer {witnessed}{pinned_note}"),
            ])
        }
        PERSON_FORMAT => {
            let d: PersonDocument = serde_json::from_str(text).map_err(parse_err)?;
            let (size, root, witnessed) = digest_tree("the digest", &d.digest, trust)?;
            if size != d.tree_size {
                return Err(CheckError::Failed(format!(
                    "the record is proved in a tree of {} events, the digest states {size}",
                    d.tree_size
                )));
            }
            pin("the record", size, &root, pinned)?;
            let mut lines = Vec::new();
            for e in &d.events {
                let at = check_event(e, size, &root)?;
                lines.push(format!(
                    "ok: the event at position {at} is in the tree of {size} events"
                ));
            }
            lines.push(format!(
                "ok: {} events of person {}, every path leads to the digest's root, signed by a key you trust, {witnessed}{pinned_note}",
                d.events.len(),
                d.person
            ));
            Ok(lines)
        }
        other => Err(CheckError::Unreadable(format!(
            "format {other:?} is not a proof of this ledger: give a file from `audit prove` or `audit consistency` ({INCLUSION_FORMAT}, {CONSISTENCY_FORMAT}, {PERSON_FORMAT})"
        ))),
    }
}

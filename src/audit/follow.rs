//! `audit follow`: the auditor keeps, on their own machine, the last checkpoint they verified of
//! each ledger, and checks every newer one against it (as immudb's client keeps its last
//! verified state): a newer tree must come with a consistency proof from the one kept; a tree of
//! the same size must have the same root; a smaller tree is a rollback. A fork or a rollback is
//! refused and both signed checkpoints are kept as evidence beside the state.
//!
//! The state is a directory: `<hex SHA-256 of the origin>.checkpoint` (the last verified signed
//! note, written whole and synced, mode 0600), and `…evidence-<n>.txt` for each refusal.

use super::trust::{check_checkpoint, Checked, Trust};
use crate::envelope::merkle::{verify_consistency, Hash};
use crate::envelope::note::Checkpoint;
use sha2::Digest as _;
use std::path::{Path, PathBuf};

/// What following a checkpoint found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    /// The first checkpoint of this ledger the auditor keeps (trusted on first use).
    First(u64),
    /// The same tree as the one kept.
    Same(u64),
    /// A larger tree, proved to extend the one kept.
    Grew {
        /// The size kept before.
        from: u64,
        /// The new size.
        to: u64,
    },
}

/// Why a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// It does not check against what the auditor trusts (keys, witnesses, quorum).
    Untrusted(String),
    /// It contradicts the checkpoint kept (fork, rollback, a proof that fails): evidence kept.
    Contradicts {
        /// What it is.
        why: String,
        /// The evidence file.
        evidence: PathBuf,
    },
    /// A larger tree needs a consistency proof from the size kept.
    NeedsProof(u64),
    /// The state could not be read or written.
    State(String),
}

fn state_file(dir: &Path, origin: &str) -> PathBuf {
    dir.join(format!(
        "{}.checkpoint",
        hex::encode(sha2::Sha256::digest(origin.as_bytes()))
    ))
}

/// The size kept for the origin of `note`, if any (to ask for the right consistency proof).
pub fn kept_size(dir: &Path, note: &str) -> Option<u64> {
    let n = crate::envelope::note::Note::parse(note).ok()?;
    let cp = Checkpoint::parse(&n.text).ok()?;
    let kept = std::fs::read_to_string(state_file(dir, &cp.origin)).ok()?;
    let k = crate::envelope::note::Note::parse(&kept).ok()?;
    Checkpoint::parse(&k.text).ok().map(|c| c.size)
}

/// Checks `note` against the auditor's trust and the checkpoint kept in `dir`; `proof` is the
/// consistency proof from the size kept to the note's, when it is larger. On success the note
/// becomes the one kept.
pub fn follow(
    dir: &Path,
    note: &str,
    trust: &Trust,
    proof: Option<&[Hash]>,
) -> Result<(Followed, Checked), Refused> {
    let checked = check_checkpoint(note, trust).map_err(Refused::Untrusted)?;
    let new = &checked.checkpoint;
    crate::support::files::private_dir_all(dir)
        .map_err(|e| Refused::State(format!("{}: {e}", dir.display())))?;
    let file = state_file(dir, &new.origin);
    let kept = match std::fs::read_to_string(&file) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Refused::State(format!("{}: {e}", file.display()))),
    };
    let outcome = match &kept {
        None => Followed::First(new.size),
        Some(text) => {
            // Checked when it was kept; read again as it is (keys may have rotated since).
            let old = crate::envelope::note::Note::parse(text)
                .ok()
                .and_then(|n| Checkpoint::parse(&n.text).ok())
                .ok_or_else(|| Refused::State(format!("{} is not a checkpoint", file.display())))?;
            let contradiction = |why: String| -> Refused {
                match keep_evidence(dir, &file, text, note) {
                    Ok(evidence) => Refused::Contradicts { why, evidence },
                    Err(e) => Refused::State(e),
                }
            };
            if new.size < old.size {
                return Err(contradiction(format!(
                    "a rollback: this checkpoint states {} events, and you verified {} before",
                    new.size, old.size
                )));
            }
            if new.size == old.size {
                if new.root != old.root {
                    return Err(contradiction(format!(
                        "a fork: two checkpoints of {} events with different roots, both signed by the ledger",
                        new.size
                    )));
                }
                Followed::Same(new.size)
            } else {
                let Some(path) = proof else {
                    return Err(Refused::NeedsProof(old.size));
                };
                if !verify_consistency(old.size, new.size, &old.root, &new.root, path) {
                    return Err(contradiction(format!(
                        "the consistency proof does not prove that the tree of {} events extends the {} you verified: the history was changed (a fork)",
                        new.size, old.size
                    )));
                }
                Followed::Grew {
                    from: old.size,
                    to: new.size,
                }
            }
        }
    };
    crate::support::files::write_private(&file, note).map_err(|e| Refused::State(e.to_string()))?;
    Ok((outcome, checked))
}

fn keep_evidence(dir: &Path, file: &Path, kept: &str, received: &str) -> Result<PathBuf, String> {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    for n in 1.. {
        let p = dir.join(format!("{stem}.evidence-{n}.txt"));
        if !p.exists() {
            let text = format!(
                "# the checkpoint you had verified\n{kept}\n# the checkpoint that contradicts it\n{received}"
            );
            crate::support::files::write_private(&p, &text).map_err(|e| e.to_string())?;
            return Ok(p);
        }
    }
    unreachable!("some n is free")
}

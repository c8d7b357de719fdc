//! `audit prove`, `audit consistency`, `audit check-proof`: the Merkle proofs an auditor makes
//! and checks (see `campaign_ledger::audit::proofs`).

use super::args::*;
use super::trust::read_digest;
use anyhow::{anyhow, bail, Context as _, Result};
use campaign_ledger::audit;
use campaign_ledger::audit::proofs::{self, CheckError};
use campaign_ledger::audit::tree::ProofError;
use std::path::Path;
use std::process::ExitCode;

/// Runs the proof actions of `audit`.
pub(super) fn run(cli: &Cli) -> Result<ExitCode> {
    let Cmd::Audit { key, action } = &cli.command else {
        unreachable!("dispatched on its own subcommand")
    };
    match action {
        AuditCmd::Prove {
            position,
            person,
            digest,
        } => prove(
            cli,
            key.as_deref(),
            *position,
            person.as_deref(),
            digest.as_deref(),
        ),
        AuditCmd::Consistency { from, to } => consistency(cli, key.as_deref(), from, to.as_deref()),
        AuditCmd::CheckProof {
            file,
            trust,
            trusted,
        } => check_proof(file, trust, trusted.as_deref()),
        _ => unreachable!("dispatched on its own action"),
    }
}

/// The ledger's signing key, or why there is none and how to make one.
pub(super) fn signer(cli: &Cli, key: Option<&Path>) -> Result<audit::LedgerKey> {
    let path = cli.key_path(key);
    if !path.exists() {
        bail!(
            "there is no signing key at {}: create one with `campaign-ledger audit keygen` (or give --key FILE)",
            path.display()
        );
    }
    audit::LedgerKey::load(&path).map_err(|e| anyhow!(e))
}

/// Prints a proof document, or says why it cannot be made: exit 1 when the log no longer
/// holds the digest's tree, 2 for a wrong request or another ledger's digest.
fn emit<T: serde::Serialize>(made: Result<T, ProofError>) -> Result<ExitCode> {
    match made {
        Ok(doc) => {
            println!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(ProofError::Diverged(why)) => {
            println!("BROKEN: {why}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(anyhow!("{e}")),
    }
}

fn prove(
    cli: &Cli,
    key: Option<&Path>,
    position: Option<u64>,
    person: Option<&str>,
    digest: Option<&Path>,
) -> Result<ExitCode> {
    let digest = digest.map(read_digest).transpose()?;
    let env = cli.open(false, false)?;
    let store = env.store.as_ref();
    let digest = match digest {
        Some(d) => d,
        None => signer(cli, key)?.sign(audit::digest(store).map_err(|e| anyhow!("{e}"))?),
    };
    match (position, person) {
        (Some(p), _) => {
            // The proof carries the event's export line: one naming a person is a disclosure.
            let named = store
                .read_all(p.saturating_sub(1), 1)
                .map_err(|e| anyhow!("{e}"))?
                .into_iter()
                .find(|e| e.position == p)
                .and_then(|e| campaign_ledger::privacy::person_named(&e.data));
            cli.disclose(
                "audit prove",
                named.into_iter().collect(),
                1,
                0,
                "event_proof",
            )?;
            emit(proofs::inclusion_document(store, p, digest))
        }
        (None, Some(r)) => {
            let Some((pseudonym, positions)) =
                env.ledger.person_events(r).map_err(|e| anyhow!("{e}"))?
            else {
                bail!(
                    "the key store holds no key for this person_ref: never recorded, or erased (an erased person's record can no longer be gathered; every proof of the log still checks)"
                );
            };
            cli.disclose(
                "audit prove --person",
                vec![pseudonym.clone()],
                positions.len() as u64,
                1,
                "person_proof",
            )?;
            emit(proofs::person_document(
                store, &pseudonym, &positions, digest,
            ))
        }
        (None, None) => bail!("give a POSITION or --person REF"),
    }
}

fn consistency(cli: &Cli, key: Option<&Path>, from: &Path, to: Option<&Path>) -> Result<ExitCode> {
    let from = read_digest(from)?;
    let to = to.map(read_digest).transpose()?;
    let env = cli.open(false, false)?;
    let store = env.store.as_ref();
    let to = match to {
        Some(d) => d,
        None => signer(cli, key)?.sign(audit::digest(store).map_err(|e| anyhow!("{e}"))?),
    };
    emit(proofs::consistency_document(store, from, to))
}

fn check_proof(file: &Path, trust: &TrustArgs, trusted: Option<&Path>) -> Result<ExitCode> {
    let trust = trust.trust()?;
    // The auditor's own checkpoint, checked first: the proof must stand on its tree.
    let pinned = match trusted {
        None => None,
        Some(p) => {
            let d = read_digest(p)?;
            if let Err(e) = d.check(&trust) {
                println!("FAILED: your trusted checkpoint {}: {e}", p.display());
                return Ok(ExitCode::from(1));
            }
            let root = d
                .root_hash
                .as_deref()
                .and_then(|r| hex::decode(r).ok())
                .and_then(|r| r.try_into().ok())
                .ok_or_else(|| anyhow!("{} states no tree", p.display()))?;
            Some(proofs::Pinned {
                size: d.tree_size.unwrap_or(d.position),
                root,
            })
        }
    };
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the proof {}; check the path", file.display()))?;
    match proofs::check(&text, &trust, pinned) {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(CheckError::Failed(why)) => {
            println!("FAILED: {why}");
            Ok(ExitCode::from(1))
        }
        Err(CheckError::Unreadable(why)) => Err(anyhow!("{}: {why}", file.display())),
    }
}

//! What the verifying subcommands trust, from their flags: `--keys`/`--public-key`,
//! `--witness-keys`, `--quorum`; and reading a digest or a checkpoint file.

use super::args::TrustArgs;
use anyhow::{anyhow, bail, Context as _, Result};
use campaign_ledger::audit::{KeySet, SignedDigest, Trust};
use std::path::Path;

impl TrustArgs {
    /// The trust these flags give. A verifier needs the ledger's keys: the key a document names
    /// proves nothing by itself.
    pub(super) fn trust(&self) -> Result<Trust> {
        let mut keys = match &self.keys {
            Some(p) => KeySet::load(p).map_err(|e| anyhow!(e))?,
            None => KeySet::default(),
        };
        if let Some(k) = &self.public_key {
            let one = KeySet::one_given(k).map_err(|e| anyhow!("--public-key: {e}"))?;
            keys.0.extend(one.0);
        }
        if keys.is_empty() {
            bail!(
                "no trusted key: give the ledger's key (--keys FILE, one verifier key a line, or --public-key KEY, \
                 as `campaign-ledger audit public-key` prints it, obtained from the ledger's operator apart from \
                 the documents); the key a document names proves nothing by itself"
            );
        }
        let witnesses = match &self.witness_keys {
            Some(p) => KeySet::load(p).map_err(|e| anyhow!(e))?,
            None => KeySet::default(),
        };
        if let Some(q) = self.quorum {
            if q > witnesses.0.len() {
                bail!(
                    "--quorum {q} asks for more cosignatures than the {} witness key(s) you trust (--witness-keys)",
                    witnesses.0.len()
                );
            }
        }
        Ok(Trust {
            keys,
            witnesses,
            quorum: self.quorum,
        })
    }
}

/// A digest (`audit digest`, a line of `digests.jsonl`) or a checkpoint (`audit checkpoint`,
/// `GET /v1/audit/checkpoint`) from a file.
pub(super) fn read_digest(path: &Path) -> Result<SignedDigest> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the digest {}; check the path", path.display()))?;
    if !text.trim_start().starts_with('{') {
        return SignedDigest::from_checkpoint(&text)
            .map_err(|e| anyhow!("{}: {e}", path.display()));
    }
    serde_json::from_str(&text).map_err(|e| {
        let several = text.trim().lines().count() > 1
            && text.trim().lines().all(|l| l.trim_start().starts_with('{'));
        anyhow!(
            "{} is not a digest from `audit digest` ({e}){}",
            path.display(),
            if several {
                "; it looks like several digests, one per line (digests.jsonl): put the one to use in a file of its own"
            } else {
                ""
            }
        )
    })
}

//! Signed digests: the head of the log (position, hash, time) signed with the ledger's Ed25519
//! key, and the proof that today's log extends the log a digest was taken from.
//!
//! The key is a file holding the 32-byte secret seed in hex, readable by its owner only
//! (`audit keygen`; default `signing.key` beside the store file). The signature covers the
//! canonical JSON of every field but `public_key` and `signature`, in this order:
//! `format, store, position, hash, recorded_at, signed_at`, then, when present, `ledger,
//! tree_size, root_hash, access_log_size, access_log_hash` (digests made before the Merkle tree have none of them and verify as
//! they always did).

use super::{verify, Digest, Verified, VerifyError};
use crate::store::EventStore;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The digest document's format label.
pub const FORMAT: &str = "campaign-ledger-digest/1";

/// A digest as kept by an auditor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedDigest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Which store.
    pub store: String,
    /// Head position when taken.
    pub position: u64,
    /// Head hash (hex).
    pub hash: String,
    /// Commit time of the head event.
    pub recorded_at: Option<String>,
    /// When the digest was taken (UTC, RFC 3339).
    pub signed_at: String,
    /// The ledger's id (the hash of its first event); absent in digests made before ids, or of
    /// an empty log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<String>,
    /// Leaves of the Merkle tree at that head; absent in digests made before the tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree_size: Option<u64>,
    /// The tree's root (hex); absent in digests made before the tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_hash: Option<String>,
    /// Entries in the access log of person-level reads when taken; absent where there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log_size: Option<u64>,
    /// The access log's chain head (hex) at that entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log_hash: Option<String>,
    /// The signer's public key (hex, 32 bytes); absent when unsigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Ed25519 signature (hex, 64 bytes); absent when unsigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

#[derive(Serialize)]
struct Signed<'a> {
    format: &'a str,
    store: &'a str,
    position: u64,
    hash: &'a str,
    recorded_at: &'a Option<String>,
    signed_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ledger: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tree_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    root_hash: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_log_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_log_hash: &'a Option<String>,
}

impl SignedDigest {
    /// An unsigned digest document of `d`, taken now.
    pub fn unsigned(d: Digest) -> SignedDigest {
        SignedDigest {
            format: FORMAT.into(),
            store: d.store,
            position: d.position,
            hash: d.hash,
            recorded_at: d.recorded_at,
            signed_at: crate::store::format_recorded_at(chrono::Utc::now()),
            ledger: d.ledger,
            tree_size: Some(d.tree_size),
            root_hash: Some(d.root_hash),
            access_log_size: d.access_log.as_ref().map(|h| h.size),
            access_log_hash: d.access_log.map(|h| h.hash),
            public_key: None,
            signature: None,
        }
    }

    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&Signed {
            format: &self.format,
            store: &self.store,
            position: self.position,
            hash: &self.hash,
            recorded_at: &self.recorded_at,
            signed_at: &self.signed_at,
            ledger: &self.ledger,
            tree_size: self.tree_size,
            root_hash: &self.root_hash,
            access_log_size: self.access_log_size,
            access_log_hash: &self.access_log_hash,
        })
        .expect("digests serialize")
    }

    /// Checks the signature, and that it was made by `trusted` (hex public key) when given.
    pub fn check_signature(&self, trusted: Option<&str>) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "this is not a digest of this ledger's format (format {:?}, expected {FORMAT:?})",
                self.format
            ));
        }
        let (Some(pk), Some(sig)) = (&self.public_key, &self.signature) else {
            return Err("the digest is not signed; take one with a signing key (`audit keygen`, then `audit digest`)".into());
        };
        if let Some(t) = trusted {
            if !t.trim().eq_ignore_ascii_case(pk) {
                return Err(format!(
                    "the digest was signed by key {pk}, not by the trusted key {}",
                    t.trim()
                ));
            }
        }
        let key = hex32(pk)
            .and_then(|b| VerifyingKey::from_bytes(&b).map_err(|e| e.to_string()))
            .map_err(|e| format!("the digest's public key is not an Ed25519 key ({e})"))?;
        let sig = hex::decode(sig)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(|b| Signature::from_bytes(&b))
            .ok_or("the digest's signature is not 64 bytes of hex")?;
        key.verify(&self.signed_bytes(), &sig).map_err(|_| {
            "the signature does not match the digest: the document was changed after it was signed"
                .to_string()
        })
    }
}

fn hex32(s: &str) -> Result<[u8; 32], String> {
    hex::decode(s.trim())
        .map_err(|e| e.to_string())?
        .try_into()
        .map_err(|_| "not 32 bytes".to_string())
}

/// The ledger's signing key.
pub struct LedgerKey(SigningKey);

impl LedgerKey {
    /// Creates a key file (refusing to replace one) and returns the key.
    pub fn generate(path: &Path) -> Result<LedgerKey, String> {
        if path.exists() {
            return Err(format!(
                "{} exists already; a ledger keeps its key (digests signed with it must stay verifiable). \
                 Move it away first if you really mean to replace it",
                path.display()
            ));
        }
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed)
            .map_err(|e| format!("the system gave no random bytes ({e})"))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::support::files::private_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        crate::support::files::write_private(path, &(hex::encode(seed) + "\n"))
            .map_err(|e| e.to_string())?;
        Ok(LedgerKey(SigningKey::from_bytes(&seed)))
    }

    /// Reads a key file.
    pub fn load(path: &Path) -> Result<LedgerKey, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read the signing key {}: {e}; create one with `campaign-ledger audit keygen`",
                path.display()
            )
        })?;
        let seed = hex32(&text).map_err(|_| {
            format!(
                "{} is not a signing key (64 hex digits expected)",
                path.display()
            )
        })?;
        Ok(LedgerKey(SigningKey::from_bytes(&seed)))
    }

    /// The public key, hex.
    pub fn public_hex(&self) -> String {
        hex::encode(self.0.verifying_key().to_bytes())
    }

    /// Signs a digest taken now.
    pub fn sign(&self, d: Digest) -> SignedDigest {
        let mut s = SignedDigest::unsigned(d);
        s.public_key = Some(self.public_hex());
        s.signature = Some(hex::encode(self.0.sign(&s.signed_bytes()).to_bytes()));
        s
    }
}

/// Proves that the log extends the log `digest` was taken from: the whole chain verifies, it
/// reaches the digest's position, and the event there has the digest's hash (so nothing at or
/// before it changed, nothing was removed, nothing reordered). Names the first bad position.
pub fn verify_extends(
    store: &dyn EventStore,
    digest: &SignedDigest,
) -> Result<Verified, VerifyError> {
    if let Some(why) = super::tree::other_ledger(store, digest.ledger.as_deref())? {
        return Err(VerifyError::OtherLedger(why));
    }
    let v = verify(store, &mut |_| {})?;
    if v.position < digest.position {
        return Err(VerifyError::Broken {
            position: v.position + 1,
            reason: format!(
                "the log ends at position {} but the digest was taken at {}: events {}..={} were removed",
                v.position,
                digest.position,
                v.position + 1,
                digest.position
            ),
        });
    }
    if digest.position > 0 {
        let mut found = None;
        store.scan(digest.position - 1, digest.position, &mut |e| {
            found = Some(hex::encode(e.hash));
            false
        })?;
        if found.as_deref() != Some(digest.hash.as_str()) {
            return Err(VerifyError::Broken {
                position: digest.position,
                reason: format!(
                    "the event at the digest's position has hash {}, the digest says {}: the log was rewritten at or before this position (its chain was recomputed)",
                    found.unwrap_or_default(),
                    digest.hash
                ),
            });
        }
    }
    Ok(v)
}

//! Signed digests: the head of the log signed with the ledger's Ed25519 key, and the proof
//! that today's log extends the log a digest was taken from.
//!
//! The key is a file holding the 32-byte secret seed in hex, readable by its owner only
//! (`audit keygen`; default `signing.key` beside the store file).
//!
//! A digest of the current format (`campaign-ledger-digest/2`) is a view of one signed
//! checkpoint (C2SP `tlog-checkpoint`, see `envelope::note`): its `checkpoint` member is the
//! signed note — origin `campaign-ledger/<ledger id>`, tree size, root, and the extension lines
//! `chain <hex>` (the chain hash at that size) and `access <size> <hex>` (the access log's head,
//! where it was known) — with any witnesses' cosignatures; the other members say the same in
//! JSON for tools, and a verifier checks that they do. Only the note's signatures count.
//!
//! Digests of the first format (`campaign-ledger-digest/1`, in older `digests.jsonl` files)
//! keep verifying: their signature covers the canonical JSON of every member but `public_key`
//! and `signature`, in this order: `format, store, position, hash, recorded_at, signed_at`,
//! then, when present, `ledger, tree_size, root_hash, access_log_size, access_log_hash`. They
//! cannot be witnessed.

use super::trust::{check_checkpoint, Checked, Trust};
use super::{verify, Digest, Verified, VerifyError};
use crate::envelope::note::{origin_of, Checkpoint, Note, VerifierKey, TYPE_ED25519};
use crate::store::EventStore;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The digest document's format label: a view of a signed checkpoint.
pub const FORMAT: &str = "campaign-ledger-digest/2";
/// The format of digests made before checkpoints (signed JSON, never witnessed).
pub const FORMAT_V1: &str = "campaign-ledger-digest/1";

/// A digest as kept by an auditor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedDigest {
    /// [`FORMAT`] ([`FORMAT_V1`] in older files).
    pub format: String,
    /// Which store (first format only: the current one names no path or host).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub store: String,
    /// Head position when taken.
    pub position: u64,
    /// Head hash (hex).
    pub hash: String,
    /// Commit time of the head event (first format only: a checkpoint states no time; its
    /// witnesses' cosignatures do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_at: Option<String>,
    /// When the digest was taken (UTC, RFC 3339; first format only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
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
    /// The signed checkpoint (C2SP signed note, with any cosignatures): what the document
    /// states; absent when unsigned, and in the first format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// The signer's public key (hex, 32 bytes); first format only.
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
            store: String::new(),
            position: d.position,
            hash: d.hash,
            recorded_at: d.recorded_at,
            signed_at: crate::store::format_recorded_at(chrono::Utc::now()),
            ledger: d.ledger,
            tree_size: Some(d.tree_size),
            root_hash: Some(d.root_hash),
            access_log_size: d.access_log.as_ref().map(|h| h.size),
            access_log_hash: d.access_log.map(|h| h.hash),
            checkpoint: None,
            public_key: None,
            signature: None,
        }
    }

    /// The digest view of a signed checkpoint (the text `audit checkpoint` prints and
    /// `GET /v1/audit/checkpoint` serves): every member read from the note (check it with
    /// `check`).
    pub fn from_checkpoint(note_text: &str) -> Result<SignedDigest, String> {
        let note = Note::parse(note_text).map_err(|e| format!("not a checkpoint: {e}"))?;
        let cp = Checkpoint::parse(&note.text).map_err(|e| format!("not a checkpoint: {e}"))?;
        let ledger = cp
            .origin
            .strip_prefix("campaign-ledger/")
            .ok_or_else(|| {
                format!(
                    "the checkpoint's origin {:?} is not a campaign-ledger's (campaign-ledger/<ledger id>)",
                    cp.origin
                )
            })?
            .to_string();
        let (access_log_size, access_log_hash) = match cp.extension("access") {
            Some(a) => {
                let (n, h) = a
                    .split_once(' ')
                    .ok_or("the checkpoint's access line is not `access <size> <hash>`")?;
                (
                    Some(
                        n.parse()
                            .map_err(|_| "the checkpoint's access size is not a number")?,
                    ),
                    Some(h.to_string()),
                )
            }
            None => (None, None),
        };
        Ok(SignedDigest {
            format: FORMAT.into(),
            store: String::new(),
            position: cp.size,
            hash: cp
                .extension("chain")
                .unwrap_or(&hex::encode(crate::store::GENESIS_HASH))
                .to_string(),
            recorded_at: None,
            signed_at: String::new(),
            ledger: Some(ledger),
            tree_size: Some(cp.size),
            root_hash: Some(hex::encode(cp.root)),
            access_log_size,
            access_log_hash,
            checkpoint: Some(note.to_text()),
            public_key: None,
            signature: None,
        })
    }

    /// The checkpoint this digest states (its note's body), for signing.
    pub fn checkpoint_body(&self) -> Option<Checkpoint> {
        let ledger = self.ledger.as_deref()?;
        let root = hex::decode(self.root_hash.as_deref()?)
            .ok()?
            .try_into()
            .ok()?;
        let mut extensions = Vec::new();
        if self.position > 0 {
            extensions.push(format!("chain {}", self.hash));
        }
        if let (Some(n), Some(h)) = (self.access_log_size, &self.access_log_hash) {
            extensions.push(format!("access {n} {h}"));
        }
        Some(Checkpoint {
            origin: origin_of(ledger),
            size: self.tree_size?,
            root,
            extensions,
        })
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

    /// Checks the digest against what the verifier trusts: for the current format, its
    /// checkpoint (see `trust::check_checkpoint`) and that every member says what the checkpoint
    /// says; for the first format, its signature by a trusted key (never witnessed, so only
    /// with `--quorum 0`). Returns the checked checkpoint (`None` for the first format).
    pub fn check(&self, trust: &Trust) -> Result<Option<Checked>, String> {
        match self.format.as_str() {
            FORMAT => {}
            FORMAT_V1 => return self.check_v1(trust).map(|_| None),
            other => {
                return Err(format!(
                    "this is not a digest of this ledger's format (format {other:?}, expected {FORMAT:?})"
                ))
            }
        }
        let Some(note) = &self.checkpoint else {
            return Err("the digest is not signed; take one with a signing key (`audit keygen`, then `audit digest`)".into());
        };
        let checked = check_checkpoint(note, trust)?;
        let cp = &checked.checkpoint;
        if self.recorded_at.is_some() || !self.signed_at.is_empty() || !self.store.is_empty() {
            return Err("the digest carries members its checkpoint does not sign (recorded_at, signed_at, store): it was changed after it was signed".into());
        }
        let differs = |what: &str| {
            Err(format!(
                "the digest's {what} is not what its signed checkpoint says: the document was changed after it was signed"
            ))
        };
        if cp.size != self.position || Some(cp.size) != self.tree_size {
            return differs("position");
        }
        if self.root_hash.as_deref() != Some(hex::encode(cp.root).as_str()) {
            return differs("root_hash");
        }
        if self.ledger.as_deref().map(origin_of).as_deref() != Some(cp.origin.as_str()) {
            return differs("ledger");
        }
        if cp.size > 0 && cp.extension("chain") != Some(self.hash.as_str()) {
            return differs("hash");
        }
        let access = match (self.access_log_size, &self.access_log_hash) {
            (Some(n), Some(h)) => Some(format!("{n} {h}")),
            _ => None,
        };
        if cp.extension("access") != access.as_deref() {
            return differs("access log head");
        }
        Ok(Some(checked))
    }

    /// A digest of the first format: signed JSON, by a trusted key.
    fn check_v1(&self, trust: &Trust) -> Result<(), String> {
        let (Some(pk), Some(sig)) = (&self.public_key, &self.signature) else {
            return Err("the digest is not signed; take one with a signing key (`audit keygen`, then `audit digest`)".into());
        };
        let raw = hex32(pk)
            .map_err(|e| format!("the digest's public key is not 32 bytes of hex ({e})"))?;
        if trust.keys.by_public_key(&raw).is_none() {
            return Err(format!(
                "the digest was signed by key {pk}, which is not among the keys you trust (--keys, --public-key)"
            ));
        }
        if trust.quorum != Some(0) {
            return Err(format!(
                "this digest is of the first format ({FORMAT_V1}): it was never witnessed, so nothing shows that others were shown the same history; accept it unwitnessed with --quorum 0"
            ));
        }
        let key = VerifyingKey::from_bytes(&raw)
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

    /// The verifier key auditors trust for the checkpoints of the ledger `ledger_id` (named by
    /// its origin).
    pub fn verifier(&self, ledger_id: &str) -> VerifierKey {
        VerifierKey::new(&origin_of(ledger_id), TYPE_ED25519, self.0.verifying_key())
    }

    /// Signs a digest taken now: its checkpoint, as a signed note (a digest of an empty log,
    /// which has no id yet, stays unsigned).
    pub fn sign(&self, d: Digest) -> SignedDigest {
        let mut s = SignedDigest::unsigned(d);
        // Nothing in the document but what the checkpoint signs.
        s.recorded_at = None;
        s.signed_at = String::new();
        if let Some(cp) = s.checkpoint_body() {
            let text = cp.text();
            let sig = crate::envelope::note::sign(&text, &cp.origin, &self.0);
            s.checkpoint = Some(
                Note {
                    text,
                    signatures: vec![sig],
                }
                .to_text(),
            );
        }
        s
    }

    /// Signs a digest in the first format (signed JSON): for the test vectors of old files.
    #[doc(hidden)]
    pub fn sign_v1(&self, d: Digest) -> SignedDigest {
        let mut s = SignedDigest::unsigned(d);
        s.format = FORMAT_V1.into();
        s.store = "sqlite:ledger.db".into();
        s.public_key = Some(self.public_hex());
        s.signature = Some(hex::encode(self.0.sign(&s.signed_bytes()).to_bytes()));
        s
    }
}

/// How long before a checkpoint's witnessed time an event after it may say it was recorded
/// (clocks of machines differ a little; a backdated entry differs by more).
pub const CLOCK_SLACK_SECS: i64 = 5;

/// Checks that an event after a checkpoint witnessed at `witnessed` (seconds) was not recorded
/// more than [`CLOCK_SLACK_SECS`] before it: an entry backdated after the fact.
pub fn check_not_backdated(
    position: u64,
    recorded_at: &str,
    after: u64,
    witnessed: u64,
) -> Result<(), VerifyError> {
    let at =
        chrono::DateTime::parse_from_rfc3339(recorded_at).map_err(|e| VerifyError::Broken {
            position,
            reason: format!("its commit time {recorded_at:?} is not RFC 3339 ({e})"),
        })?;
    if at.timestamp() + CLOCK_SLACK_SECS < witnessed as i64 {
        let w = chrono::DateTime::from_timestamp(witnessed as i64, 0)
            .map(|d| d.to_rfc3339())
            .unwrap_or_default();
        return Err(VerifyError::Broken {
            position,
            reason: format!(
                "it says it was recorded at {recorded_at}, more than {CLOCK_SLACK_SECS} s before the checkpoint of position {after} was witnessed ({w}), which it follows: it was backdated"
            ),
        });
    }
    Ok(())
}

/// Proves that the log extends the log `digest` was taken from: the whole chain verifies, it
/// reaches the digest's position, and the event there has the digest's hash (so nothing at or
/// before it changed, nothing was removed, nothing reordered); and, when the digest's
/// checkpoint was witnessed at `witnessed` (seconds), that no event after it was recorded more
/// than [`CLOCK_SLACK_SECS`] before (backdated). Names the first bad position.
pub fn verify_extends(
    store: &dyn EventStore,
    digest: &SignedDigest,
    witnessed: Option<u64>,
) -> Result<Verified, VerifyError> {
    let v = verify(store, &mut |_| {})?;
    // The ledger's id is its first event's hash: another first event is a rewritten log (or
    // the checkpoint of another ledger), named at position 1 either way.
    if let (Some(theirs), Some(ours)) = (digest.ledger.as_deref(), super::tree::ledger_id(store)?) {
        if theirs != ours {
            return Err(VerifyError::Broken {
                position: 1,
                reason: format!(
                    "the first event's hash is {ours}, and the checkpoint's ledger began with {theirs}: the log was rewritten from its first event (or the checkpoint is of another ledger)"
                ),
            });
        }
    }
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
    if let Some(w) = witnessed {
        let mut late: Option<VerifyError> = None;
        store.scan(
            digest.position,
            v.position,
            &mut |e| match check_not_backdated(e.position, e.recorded_at, digest.position, w) {
                Ok(()) => true,
                Err(err) => {
                    late = Some(err);
                    false
                }
            },
        )?;
        if let Some(e) = late {
            return Err(e);
        }
    }
    Ok(v)
}

/// The newest checkpoint a server signed (and had witnesses cosign), for
/// `GET /v1/audit/checkpoint` and the digests it publishes.
#[derive(Default)]
pub struct LatestCheckpoint(std::sync::RwLock<Option<SignedDigest>>);

impl LatestCheckpoint {
    /// Keeps `d` as the newest.
    pub fn set(&self, d: SignedDigest) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(d);
    }

    /// The newest, if any was signed yet.
    pub fn get(&self) -> Option<SignedDigest> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

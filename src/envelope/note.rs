//! Signed notes, checkpoints and cosignatures in the formats transparency logs and witnesses
//! already speak (C2SP `signed-note`, `tlog-checkpoint`, `tlog-cosignature`): the bytes of a
//! signed head others' tools can verify. Pure functions over text and keys; no IO.
//!
//! - A **note** is UTF-8 text ending in a newline, a blank line, then signature lines
//!   `— <key name> <base64(key id ‖ signature)>` (an em dash U+2014 and a space). No control
//!   character but the newline.
//! - A **key id** is the first 4 bytes of `SHA-256(name ‖ 0x0A ‖ type ‖ public key)`; a
//!   **verifier key** is written `<name>+<8 hex digits of the id>+<base64(type ‖ public key)>`.
//! - Type `0x01`: Ed25519 over the note text (the log's signature). Type `0x04`: a witness's
//!   cosignature, Ed25519 over `cosignature/v1\ntime <seconds>\n` ‖ the note text, its
//!   signature bytes `timestamp (8, big-endian) ‖ signature (64)`.
//! - A **checkpoint** is a note whose text is the origin, the tree size in decimal, the base64
//!   root hash (RFC 6962 / 9162), then optional extension lines.

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

/// Signature type of an Ed25519 note signature (the log's).
pub const TYPE_ED25519: u8 = 0x01;
/// Signature type of a timestamped Ed25519 checkpoint cosignature (a witness's).
pub const TYPE_COSIGNATURE: u8 = 0x04;
/// The most signatures a note may carry here (the spec asks verifiers to take at least 16).
pub const MAX_SIGNATURES: usize = 64;
/// The most bytes a note may have here.
pub const MAX_NOTE: usize = 64 * 1024;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const DASH: &str = "\u{2014} ";

/// Why a note, a key or a checkpoint cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NoteError(pub String);

fn bad(why: impl Into<String>) -> NoteError {
    NoteError(why.into())
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key's name.
    pub name: String,
    /// The key id.
    pub key_id: u32,
    /// The signature bytes after the key id.
    pub bytes: Vec<u8>,
}

impl NoteSignature {
    /// The line, with its newline.
    pub fn line(&self) -> String {
        let mut b = self.key_id.to_be_bytes().to_vec();
        b.extend_from_slice(&self.bytes);
        format!("{DASH}{} {}\n", self.name, B64.encode(b))
    }

    /// Reads a line (without its newline).
    pub fn parse(line: &str) -> Result<NoteSignature, NoteError> {
        let rest = line.strip_prefix(DASH).ok_or_else(|| {
            bad(format!(
                "{line:?} is not a signature line (— name signature)"
            ))
        })?;
        let (name, sig) = rest
            .split_once(' ')
            .ok_or_else(|| bad(format!("the signature line {line:?} has no signature")))?;
        check_name(name)?;
        let raw = B64
            .decode(sig)
            .map_err(|e| bad(format!("the signature of {name} is not base64: {e}")))?;
        if raw.len() < 5 {
            return Err(bad(format!("the signature of {name} is too short")));
        }
        Ok(NoteSignature {
            name: name.to_string(),
            key_id: u32::from_be_bytes(raw[..4].try_into().expect("4 bytes")),
            bytes: raw[4..].to_vec(),
        })
    }
}

/// A signed note: its text (ending in a newline) and its signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The text, with its final newline.
    pub text: String,
    /// The signatures, in order.
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// Reads a signed note: the text is everything up to the last blank line.
    pub fn parse(note: &str) -> Result<Note, NoteError> {
        if note.len() > MAX_NOTE {
            return Err(bad(format!("the note is over {MAX_NOTE} bytes")));
        }
        if let Some(c) = note.chars().find(|&c| c != '\n' && c.is_control()) {
            return Err(bad(format!(
                "the note holds the control character {c:?}: notes have newlines only"
            )));
        }
        if !note.ends_with('\n') {
            return Err(bad("the note does not end with a newline"));
        }
        let split = note
            .rfind("\n\n")
            .ok_or_else(|| bad("the note has no blank line before its signatures"))?;
        let text = &note[..split + 1];
        let sigs = &note[split + 2..];
        let signatures = sigs
            .lines()
            .map(NoteSignature::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if signatures.is_empty() {
            return Err(bad("the note has no signature"));
        }
        if signatures.len() > MAX_SIGNATURES {
            return Err(bad(format!(
                "the note has {} signatures, more than {MAX_SIGNATURES}",
                signatures.len()
            )));
        }
        Ok(Note {
            text: text.to_string(),
            signatures,
        })
    }

    /// The note as text: its text, a blank line, its signature lines.
    pub fn to_text(&self) -> String {
        let mut s = self.text.clone();
        s.push('\n');
        for sig in &self.signatures {
            s.push_str(&sig.line());
        }
        s
    }

    /// Adds signature lines, skipping any the note carries already.
    pub fn add(&mut self, sigs: impl IntoIterator<Item = NoteSignature>) {
        for s in sigs {
            if !self.signatures.contains(&s) {
                self.signatures.push(s);
            }
        }
    }
}

/// A key name: not empty, no white space, no `+`.
pub fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
        return Err(bad(format!(
            "{name:?} is not a key name (one word without '+')"
        )));
    }
    Ok(())
}

/// A key's id: the first 4 bytes of `SHA-256(name ‖ 0x0A ‖ type ‖ public key)`.
pub fn key_id(name: &str, sig_type: u8, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', sig_type]);
    h.update(public);
    u32::from_be_bytes(h.finalize()[..4].try_into().expect("4 bytes"))
}

/// A verifier key: who signs, with what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    /// The key's name (a log's origin; a witness's name).
    pub name: String,
    /// Its id.
    pub key_id: u32,
    /// [`TYPE_ED25519`] or [`TYPE_COSIGNATURE`].
    pub sig_type: u8,
    /// The Ed25519 public key.
    pub key: VerifyingKey,
}

impl VerifierKey {
    /// The verifier key of `key` under `name`, for signatures of `sig_type`.
    pub fn new(name: &str, sig_type: u8, key: VerifyingKey) -> VerifierKey {
        VerifierKey {
            name: name.to_string(),
            key_id: key_id(name, sig_type, key.as_bytes()),
            sig_type,
            key,
        }
    }

    /// Reads `<name>+<hex id>+<base64(type ‖ key)>` (the id is checked against the key).
    pub fn parse(text: &str) -> Result<VerifierKey, NoteError> {
        let text = text.trim();
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad(format!(
                "{text:?} is not a verifier key (name+id+key, as `audit public-key` prints)"
            )));
        };
        check_name(name)?;
        let id = u32::from_str_radix(id, 16)
            .ok()
            .filter(|_| id.len() == 8)
            .ok_or_else(|| bad(format!("the key id {id:?} is not 8 hex digits")))?;
        let raw = B64
            .decode(key)
            .map_err(|e| bad(format!("the key of {name} is not base64: {e}")))?;
        let (sig_type, public) = match raw.split_first() {
            Some((&t, k)) if (t == TYPE_ED25519 || t == TYPE_COSIGNATURE) && k.len() == 32 => {
                (t, <[u8; 32]>::try_from(k).expect("32 bytes"))
            }
            Some((&t, _)) if t != TYPE_ED25519 && t != TYPE_COSIGNATURE => {
                return Err(bad(format!(
                    "the key of {name} is of type {t:#04x}; this build reads Ed25519 keys (0x01) and Ed25519 cosigners (0x04)"
                )))
            }
            _ => return Err(bad(format!("the key of {name} is not 33 bytes"))),
        };
        let key = VerifyingKey::from_bytes(&public)
            .map_err(|e| bad(format!("the key of {name} is not an Ed25519 key: {e}")))?;
        let vk = VerifierKey::new(name, sig_type, key);
        if vk.key_id != id {
            return Err(bad(format!(
                "the key id of {name} is {id:08x}, but its key gives {:08x}: the line was changed",
                vk.key_id
            )));
        }
        Ok(vk)
    }

    /// Whether a signature line is this key's (same name and id).
    pub fn signed(&self, s: &NoteSignature) -> bool {
        s.name == self.name && s.key_id == self.key_id
    }

    /// Checks a signature of this key on `text`: `Some(timestamp)` for a valid cosignature,
    /// `Some(0)` for a valid note signature, `None` when it does not verify.
    pub fn verify(&self, text: &str, s: &NoteSignature) -> Option<u64> {
        if !self.signed(s) {
            return None;
        }
        match self.sig_type {
            TYPE_ED25519 => {
                let sig = ed25519_dalek::Signature::from_slice(&s.bytes).ok()?;
                self.key
                    .verify_strict(text.as_bytes(), &sig)
                    .ok()
                    .map(|_| 0)
            }
            _ => {
                if s.bytes.len() != 72 {
                    return None;
                }
                let ts = u64::from_be_bytes(s.bytes[..8].try_into().expect("8 bytes"));
                if ts > i64::MAX as u64 {
                    return None;
                }
                let sig = ed25519_dalek::Signature::from_slice(&s.bytes[8..]).ok()?;
                self.key
                    .verify_strict(&cosigned_message(text, ts), &sig)
                    .ok()
                    .map(|_| ts)
            }
        }
    }
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = vec![self.sig_type];
        raw.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.key_id, B64.encode(raw))
    }
}

/// What a cosignature signs: `cosignature/v1\ntime <seconds>\n` then the checkpoint's text.
fn cosigned_message(text: &str, ts: u64) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {ts}\n").into_bytes();
    m.extend_from_slice(text.as_bytes());
    m
}

/// The log's Ed25519 signature line of `text` under `name`.
pub fn sign(text: &str, name: &str, key: &SigningKey) -> NoteSignature {
    NoteSignature {
        name: name.to_string(),
        key_id: key_id(name, TYPE_ED25519, key.verifying_key().as_bytes()),
        bytes: key.sign(text.as_bytes()).to_bytes().to_vec(),
    }
}

/// A witness's cosignature line of a checkpoint's `text` under `name`, at `ts` (seconds).
pub fn cosign(text: &str, name: &str, key: &SigningKey, ts: u64) -> NoteSignature {
    let mut bytes = ts.to_be_bytes().to_vec();
    bytes.extend_from_slice(&key.sign(&cosigned_message(text, ts)).to_bytes());
    NoteSignature {
        name: name.to_string(),
        key_id: key_id(name, TYPE_COSIGNATURE, key.verifying_key().as_bytes()),
        bytes,
    }
}

/// The body of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin (`campaign-ledger/<ledger id>` for this ledger).
    pub origin: String,
    /// Leaves of the tree.
    pub size: u64,
    /// Its root (RFC 9162 `MTH`).
    pub root: [u8; 32],
    /// Extension lines (this ledger writes `chain <hex>` and `access <size> <hex>`).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text.
    pub fn text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Reads a note text as a checkpoint.
    pub fn parse(text: &str) -> Result<Checkpoint, NoteError> {
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("a checkpoint's text ends with a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(bad("the checkpoint has no origin line"));
        }
        let size_line = lines
            .next()
            .ok_or_else(|| bad("the checkpoint has no tree size"))?;
        let size: u64 = size_line
            .parse()
            .ok()
            .filter(|n: &u64| n.to_string() == size_line)
            .ok_or_else(|| {
                bad(format!(
                    "the tree size {size_line:?} is not a decimal number"
                ))
            })?;
        let root_line = lines
            .next()
            .ok_or_else(|| bad("the checkpoint has no root hash"))?;
        let root = B64
            .decode(root_line)
            .ok()
            .and_then(|r| <[u8; 32]>::try_from(r).ok())
            .ok_or_else(|| {
                bad(format!(
                    "the root hash {root_line:?} is not 32 bytes of base64"
                ))
            })?;
        let extensions: Vec<String> = lines.map(str::to_string).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(bad("a checkpoint's extension line is empty"));
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            extensions,
        })
    }

    /// The value of the extension line that starts with `key` and a space.
    pub fn extension(&self, key: &str) -> Option<&str> {
        self.extensions
            .iter()
            .find_map(|e| e.strip_prefix(key)?.strip_prefix(' '))
    }
}

/// The origin of a ledger's checkpoints: named by its id (the hash of its first event), never
/// by a path or a host.
pub fn origin_of(ledger_id: &str) -> String {
    format!("campaign-ledger/{ledger_id}")
}

/// Base64 (standard, padded) of a hash, as checkpoints and the witness protocol write them.
pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// A hash written in base64, as checkpoints and the witness protocol write them.
pub fn b64_hash(text: &str) -> Result<[u8; 32], NoteError> {
    B64.decode(text.trim())
        .ok()
        .and_then(|r| <[u8; 32]>::try_from(r).ok())
        .ok_or_else(|| bad(format!("{text:?} is not a hash (32 bytes of base64)")))
}

#[cfg(test)]
#[path = "note_tests.rs"]
mod tests;

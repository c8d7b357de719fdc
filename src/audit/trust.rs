//! What a verifier trusts, and the check of a checkpoint against it. An auditor brings their own
//! keys: nothing a checkpoint says about who signed it counts.
//!
//! - A **key set** is a text file, one verifier key a line (`<name>+<id>+<key>`, as `audit
//!   public-key` and `witness keygen` print them), optionally followed by the start and the end
//!   of its validity (RFC 3339, or `-` for open), so that a ledger served by several machines,
//!   or a key rotated, is covered; `#` starts a comment.
//! - A checkpoint **checks** when a trusted key named as its origin signed it (and no trusted
//!   key's signature on it fails), and when at least `quorum` of the trusted witnesses
//!   cosigned it. With no witness trusted, a verifier says the checkpoint is unwitnessed and what
//!   that leaves open (the operator could show another history to others), and accepts it only
//!   with an explicit `--quorum 0`.
//! - A key's window is checked at the checkpoint's witnessed time: the earliest of its trusted
//!   cosignatures (the latest a witness saw it); an unwitnessed checkpoint, at the time of the
//!   check.

use crate::envelope::note::{
    Checkpoint, Note, NoteError, VerifierKey, TYPE_COSIGNATURE, TYPE_ED25519,
};
use chrono::{DateTime, Utc};
use std::path::Path;

/// A trusted key and the window it is valid in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    /// The key.
    pub key: VerifierKey,
    /// Trusted under any name (a raw public key given in hex, as older digests name it): its
    /// name and id are those of the origin it is checked for.
    pub any_name: bool,
    /// Valid from (inclusive).
    pub from: Option<DateTime<Utc>>,
    /// Valid until (inclusive).
    pub until: Option<DateTime<Utc>>,
}

impl TrustedKey {
    fn valid_at(&self, at: DateTime<Utc>) -> bool {
        self.from.is_none_or(|f| at >= f) && self.until.is_none_or(|u| at <= u)
    }
}

/// Keys a verifier trusts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet(pub Vec<TrustedKey>);

impl KeySet {
    /// Reads a key set's text (see the module's doc).
    pub fn parse(text: &str) -> Result<KeySet, String> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let vkey = words.next().expect("a non-empty line has a word");
            let at = |w: Option<&str>| -> Result<Option<DateTime<Utc>>, String> {
                match w {
                    None | Some("-") => Ok(None),
                    Some(t) => DateTime::parse_from_rfc3339(t)
                        .map(|t| Some(t.to_utc()))
                        .map_err(|e| {
                            format!("line {}: {t:?} is not an RFC 3339 time or '-' ({e})", i + 1)
                        }),
                }
            };
            let (key, any_name) = parse_key(vkey).map_err(|e| format!("line {}: {e}", i + 1))?;
            let (from, until) = (at(words.next())?, at(words.next())?);
            if let Some(extra) = words.next() {
                return Err(format!(
                    "line {}: {extra:?} after the validity window: a line is a key, then its start and end",
                    i + 1
                ));
            }
            keys.push(TrustedKey {
                key,
                any_name,
                from,
                until,
            });
        }
        Ok(KeySet(keys))
    }

    /// Reads a key set file.
    pub fn load(path: &Path) -> Result<KeySet, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the key set {}: {e}", path.display()))?;
        KeySet::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The set of one key, always valid.
    pub fn one(key: VerifierKey) -> KeySet {
        KeySet(vec![TrustedKey {
            key,
            any_name: false,
            from: None,
            until: None,
        }])
    }

    /// The set of one key given on the command line: a verifier key, or 64 hex digits (trusted
    /// under any name).
    pub fn one_given(text: &str) -> Result<KeySet, String> {
        let (key, any_name) = parse_key(text)?;
        Ok(KeySet(vec![TrustedKey {
            key,
            any_name,
            from: None,
            until: None,
        }]))
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The keys of one signature type.
    fn of_type(&self, t: u8) -> impl Iterator<Item = &TrustedKey> {
        self.0.iter().filter(move |k| k.key.sig_type == t)
    }

    /// The trusted key with these raw bytes (digests of the first format name no key name).
    pub fn by_public_key(&self, public: &[u8; 32]) -> Option<&TrustedKey> {
        self.of_type(TYPE_ED25519)
            .find(|k| k.key.key.as_bytes() == public)
    }
}

/// A verifier key, or a raw Ed25519 public key in hex (trusted under any name).
fn parse_key(text: &str) -> Result<(VerifierKey, bool), String> {
    let t = text.trim();
    if t.len() == 64 && !t.contains('+') {
        let raw: [u8; 32] = hex::decode(t)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                format!("{t:?} is neither a verifier key (name+id+key) nor 64 hex digits")
            })?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&raw)
            .map_err(|e| format!("{t:?} is not an Ed25519 key ({e})"))?;
        return Ok((VerifierKey::new("any", TYPE_ED25519, key), true));
    }
    VerifierKey::parse(t)
        .map(|k| (k, false))
        .map_err(|e| e.to_string())
}

/// What a verifier trusts: the ledgers' keys, the witnesses' keys, and how many witnesses must
/// have cosigned (`None`: all the trusted witnesses).
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// Keys of the ledgers (type 0x01, named by their origin).
    pub keys: KeySet,
    /// Keys of the witnesses (type 0x04).
    pub witnesses: KeySet,
    /// Cosignatures required.
    pub quorum: Option<usize>,
}

impl Trust {
    /// Trust in these ledger keys, no witness: accepts unwitnessed checkpoints (`--quorum 0`).
    pub fn keys_only(keys: KeySet) -> Trust {
        Trust {
            keys,
            witnesses: KeySet::default(),
            quorum: Some(0),
        }
    }

    /// How many cosignatures are required.
    pub fn required(&self) -> usize {
        self.quorum
            .unwrap_or(self.witnesses.of_type(TYPE_COSIGNATURE).count())
    }
}

/// A checkpoint that checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// Its body.
    pub checkpoint: Checkpoint,
    /// The signed note (log signature and cosignatures).
    pub note: Note,
    /// The trusted witnesses that cosigned it, with their times (seconds since the epoch).
    pub cosigned: Vec<(String, u64)>,
}

impl Checked {
    /// The earliest time a trusted witness cosigned it (`None`: unwitnessed).
    pub fn witnessed_at(&self) -> Option<u64> {
        self.cosigned.iter().map(|(_, t)| *t).min()
    }

    /// A sentence on how it was witnessed, for verifiers' output.
    pub fn witness_summary(&self) -> String {
        match self.witnessed_at() {
            None => "unwitnessed (accepted with --quorum 0: nothing shows that others were shown the same history)".into(),
            Some(t) => format!(
                "cosigned by {} ({}), witnessed at {}",
                self.cosigned.len(),
                self.cosigned
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                DateTime::from_timestamp(t as i64, 0)
                    .map(|d| d.to_rfc3339())
                    .unwrap_or_default()
            ),
        }
    }
}

/// Checks a signed checkpoint against what the verifier trusts (see the module's doc).
pub fn check_checkpoint(note_text: &str, trust: &Trust) -> Result<Checked, String> {
    let note = Note::parse(note_text).map_err(|e: NoteError| format!("the checkpoint: {e}"))?;
    let checkpoint = Checkpoint::parse(&note.text).map_err(|e| format!("the checkpoint: {e}"))?;
    // Witnesses first: their time is when the keys' windows are checked.
    let mut cosigned: Vec<(String, u64)> = Vec::new();
    for w in trust.witnesses.of_type(TYPE_COSIGNATURE) {
        for s in note.signatures.iter().filter(|s| w.key.signed(s)) {
            match w.key.verify(&note.text, s) {
                Some(ts) => {
                    if !cosigned.iter().any(|(n, _)| *n == w.key.name) {
                        cosigned.push((w.key.name.clone(), ts));
                    }
                }
                None => {
                    return Err(format!(
                        "the cosignature of witness {} does not verify: the checkpoint or the signature was changed",
                        w.key.name
                    ))
                }
            }
        }
    }
    let at = cosigned
        .iter()
        .map(|(_, t)| *t)
        .min()
        .and_then(|t| DateTime::from_timestamp(t as i64, 0))
        .unwrap_or_else(Utc::now);
    let mut signed = false;
    let mut known = false;
    for k in trust.keys.of_type(TYPE_ED25519) {
        let key = if k.any_name {
            VerifierKey::new(&checkpoint.origin, TYPE_ED25519, k.key.key)
        } else if k.key.name == checkpoint.origin {
            k.key.clone()
        } else {
            continue;
        };
        for s in note.signatures.iter().filter(|s| key.signed(s)) {
            known = true;
            if key.verify(&note.text, s).is_none() {
                return Err(format!(
                    "the signature of {} does not verify: the checkpoint was changed after it was signed",
                    key.name
                ));
            }
            if k.valid_at(at) {
                signed = true;
            }
        }
    }
    if !signed {
        return Err(if known {
            format!(
                "the checkpoint of {} is signed by a trusted key outside its validity window (at {at})",
                checkpoint.origin
            )
        } else {
            format!(
                "the checkpoint of {} is not signed by a key you trust: give the ledger's key (--keys FILE, one verifier key a line, or --public-key KEY as `audit public-key` prints it); the key a document names proves nothing alone",
                checkpoint.origin
            )
        });
    }
    let required = trust.required();
    if trust.witnesses.is_empty() && trust.quorum != Some(0) {
        return Err(format!(
            "the checkpoint of {} is not checked against any witness: the operator could show other auditors another history of the same size and nothing here would say so. Give the witnesses you trust (--witness-keys FILE, --quorum K), or accept it unwitnessed with --quorum 0",
            checkpoint.origin
        ));
    }
    if cosigned.len() < required {
        return Err(format!(
            "the checkpoint of {} is cosigned by {} of the witnesses you trust ({}), and {required} are required (--quorum): ask its witnesses for their cosignatures, or the operator for a witnessed checkpoint",
            checkpoint.origin,
            cosigned.len(),
            cosigned
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(Checked {
        checkpoint,
        note,
        cosigned,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::note::{cosign, sign};
    use ed25519_dalek::SigningKey;

    fn setup() -> (SigningKey, SigningKey, Checkpoint) {
        (
            SigningKey::from_bytes(&[0; 32]),
            SigningKey::from_bytes(&[1; 32]),
            Checkpoint {
                origin: "campaign-ledger/ab".into(),
                size: 3,
                root: [7; 32],
                extensions: vec!["chain 00".into()],
            },
        )
    }

    #[test]
    fn a_checkpoint_checks_only_with_trusted_keys_windows_and_a_quorum() {
        let (log, witness, cp) = setup();
        let origin = cp.origin.clone();
        let mut note = Note {
            text: cp.text(),
            signatures: vec![sign(&cp.text(), &origin, &log)],
        };
        let lk = VerifierKey::new(&origin, TYPE_ED25519, log.verifying_key());
        let wk = VerifierKey::new("w.example/1", TYPE_COSIGNATURE, witness.verifying_key());
        let keys = KeySet::one(lk.clone());
        // Unwitnessed: refused unless --quorum 0.
        let mut trust = Trust {
            keys: keys.clone(),
            ..Default::default()
        };
        let e = check_checkpoint(&note.to_text(), &trust).unwrap_err();
        assert!(e.contains("--quorum 0"), "{e}");
        trust.quorum = Some(0);
        let c = check_checkpoint(&note.to_text(), &trust).unwrap();
        assert_eq!(c.witnessed_at(), None);
        // Another key (the one the document would name) proves nothing.
        let other = SigningKey::from_bytes(&[9; 32]);
        let forged = Note {
            text: cp.text(),
            signatures: vec![sign(&cp.text(), &origin, &other)],
        };
        let e = check_checkpoint(&forged.to_text(), &trust).unwrap_err();
        assert!(e.contains("not signed by a key you trust"), "{e}");
        // One witness required.
        trust.witnesses = KeySet::one(wk.clone());
        trust.quorum = None;
        let e = check_checkpoint(&note.to_text(), &trust).unwrap_err();
        assert!(e.contains("0 of the witnesses"), "{e}");
        note.add([cosign(
            &note.text.clone(),
            "w.example/1",
            &witness,
            1_700_000_000,
        )]);
        let c = check_checkpoint(&note.to_text(), &trust).unwrap();
        assert_eq!(c.witnessed_at(), Some(1_700_000_000));
        // The key's window is checked at the witnessed time.
        let text = format!("{lk} 2024-01-01T00:00:00Z -\n{wk}\n");
        let set = KeySet::parse(&text).unwrap();
        trust.keys = KeySet(vec![set.0[0].clone()]);
        let e = check_checkpoint(&note.to_text(), &trust).unwrap_err();
        assert!(e.contains("validity window"), "{e}");
        // A changed body fails the trusted key's signature.
        let changed = note.to_text().replacen("\n3\n", "\n4\n", 1);
        trust.keys = keys;
        let e = check_checkpoint(&changed, &trust).unwrap_err();
        assert!(e.contains("does not verify"), "{e}");
    }

    #[test]
    fn key_sets_name_the_line_at_fault() {
        let e = KeySet::parse("# keys\n\nnot-a-key\n").unwrap_err();
        assert!(e.contains("line 3"), "{e}");
        let e = KeySet::parse(
            "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k yesterday\n",
        )
        .unwrap_err();
        assert!(e.contains("RFC 3339"), "{e}");
    }
}

//! Sealing person-level fields with a person's key (AES-256-GCM, bound to the person and the
//! field). Pure functions over keys.
//!
//! - `enc2:<person_id>:<base64url(nonce ‖ ciphertext)>` (every seal made now): the ref is padded
//!   with zero bytes to one block of [`REF_BLOCK`] bytes (the limit on refs, which never hold a
//!   zero byte) before it is sealed, so every sealed ref has one length and tells nothing of
//!   the ref's. The associated data is `campaign-ledger person_ref v2 <person_id>`.
//! - `enc1:` (older builds): the ciphertext as long as the ref; values in the log stay as they
//!   are (the chain covers them) and keep opening.

use super::PersonKey;
use crate::store::StoreError;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;

/// The prefix of a field sealed now.
pub const SEALED: &str = "enc2:";
/// The prefix of a field sealed by an older build (the ciphertext as long as the ref).
const SEALED_V1: &str = "enc1:";
/// The length every ref is padded to before it is sealed (`enc2:`): the limit on refs.
pub const REF_BLOCK: usize = 128;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn aad(person_id: &str) -> Vec<u8> {
    format!("campaign-ledger person_ref {person_id}").into_bytes()
}

fn aad_v2(person_id: &str) -> Vec<u8> {
    format!("campaign-ledger person_ref v2 {person_id}").into_bytes()
}

/// Seals a person-level value with the person's key (`enc2:`, padded to [`REF_BLOCK`]).
pub fn seal(key: &PersonKey, clear: &str) -> Result<String, StoreError> {
    if clear.len() > REF_BLOCK || clear.as_bytes().contains(&0) {
        return Err(StoreError::Invalid(
            format!("a person_ref has at most {REF_BLOCK} characters and no zero byte").into(),
        ));
    }
    let mut nonce = [0u8; 12];
    getrandom::getrandom(&mut nonce)
        .map_err(|e| StoreError::Unavailable(format!("no random bytes: {e}").into()))?;
    let mut block = [0u8; REF_BLOCK];
    block[..clear.len()].copy_from_slice(clear.as_bytes());
    let cipher = Aes256Gcm::new_from_slice(&key.key).expect("32-byte key");
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &block,
                aad: &aad_v2(&key.person_id),
            },
        )
        .expect("AES-GCM encrypts");
    let mut body = nonce.to_vec();
    body.extend(ct);
    Ok(format!("{SEALED}{}:{}", key.person_id, B64.encode(body)))
}

/// A sealed value's version (1 or 2) and the rest (`<person_id>:<body>`).
fn sealed_parts(value: &str) -> Option<(u8, &str)> {
    if let Some(rest) = value.strip_prefix(SEALED) {
        return Some((2, rest));
    }
    value.strip_prefix(SEALED_V1).map(|rest| (1, rest))
}

/// The person_id a sealed value names, or `None` for a clear value.
pub fn sealed_person_id(value: &str) -> Option<&str> {
    sealed_parts(value)?.1.split_once(':').map(|(id, _)| id)
}

/// The sealed `person_ref` in an event's stored data, found without parsing it (the ledger
/// writes it as `"person_ref":"enc2:…"`, or `enc1:` in older events; a sealed value holds no
/// quote or backslash).
pub fn sealed_ref_in(data: &str) -> Option<&str> {
    const FIELD: &str = "\"person_ref\":\"";
    let start = data.find(FIELD)? + FIELD.len();
    let value = &data[start..];
    let value = &value[..value.find('"')?];
    sealed_parts(value).map(|_| value)
}

/// The person an event's data names, as the access log names them: the pseudonym of a sealed
/// `person_ref`, or the ref itself of one stored in clear by an older build (`None`: the event
/// names no person).
pub fn person_named(data: &str) -> Option<String> {
    if let Some(id) = sealed_ref_in(data).and_then(sealed_person_id) {
        return Some(id.to_string());
    }
    #[derive(serde::Deserialize)]
    struct P {
        person_ref: Option<String>,
    }
    serde_json::from_str::<P>(data).ok()?.person_ref
}

/// Whether a stored `person_ref` is sealed (either version), rather than a ref in clear.
pub fn is_sealed(value: &str) -> bool {
    sealed_parts(value).is_some()
}

/// Opens a sealed value (`enc2:` or `enc1:`) with its key (`None` if it is not sealed for this
/// key).
pub fn open_sealed(key: &[u8; 32], value: &str) -> Option<String> {
    let (version, rest) = sealed_parts(value)?;
    let (person_id, body) = rest.split_once(':')?;
    let body = B64.decode(body).ok()?;
    if body.len() < 12 {
        return None;
    }
    let (nonce, ct) = body.split_at(12);
    let aad = if version == 2 {
        aad_v2(person_id)
    } else {
        aad(person_id)
    };
    let mut clear = Aes256Gcm::new_from_slice(key)
        .ok()?
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
        .ok()?;
    if version == 2 {
        let len = clear.iter().position(|&b| b == 0).unwrap_or(clear.len());
        clear.truncate(len);
    }
    String::from_utf8(clear).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_ref_opens_only_with_its_key_and_names_its_person() {
        let k = PersonKey {
            person_id: "00ff".into(),
            key: [7; 32],
        };
        let s = seal(&k, "p-1a2b").unwrap();
        assert!(s.starts_with("enc2:00ff:"), "{s}");
        assert!(!s.contains("p-1a2b"));
        assert_ne!(seal(&k, "p-1a2b").unwrap(), s, "a fresh nonce each time");
        assert_eq!(sealed_person_id(&s), Some("00ff"));
        assert_eq!(open_sealed(&[7; 32], &s).as_deref(), Some("p-1a2b"));
        assert_eq!(open_sealed(&[8; 32], &s), None);
        // Bound to its person: the same ciphertext under another person_id does not open.
        let moved = s.replacen("00ff", "00fe", 1);
        assert_eq!(open_sealed(&[7; 32], &moved), None);
        assert_eq!(sealed_person_id("p-1a2b"), None);
    }

    #[test]
    fn new_seals_of_refs_of_any_length_have_one_length_and_old_ones_still_open() {
        let k = PersonKey {
            person_id: "0123456789abcdef0123456789abcdef".into(),
            key: [3; 32],
        };
        let lengths: std::collections::BTreeSet<usize> = (1..=128)
            .map(|n| {
                let r: String = "P".repeat(n);
                let s = seal(&k, &r).unwrap();
                assert!(s.starts_with("enc2:"), "{s}");
                assert_eq!(open_sealed(&k.key, &s).as_deref(), Some(r.as_str()));
                s.len()
            })
            .collect();
        assert_eq!(lengths.len(), 1, "sealed lengths {lengths:?}");
        // A value sealed as an older build did (enc1: the ciphertext as long as the ref) opens.
        let nonce = [9u8; 12];
        let ct = Aes256Gcm::new_from_slice(&k.key)
            .unwrap()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: b"p-1a2b",
                    aad: &aad(&k.person_id),
                },
            )
            .unwrap();
        let old = format!(
            "enc1:{}:{}",
            k.person_id,
            B64.encode([nonce.to_vec(), ct].concat())
        );
        assert_eq!(sealed_person_id(&old), Some(k.person_id.as_str()));
        assert_eq!(open_sealed(&k.key, &old).as_deref(), Some("p-1a2b"));
    }
}

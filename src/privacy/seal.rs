//! Sealing person-level fields with a person's key (AES-256-GCM, bound to the person and the
//! field): `enc1:<person_id>:<base64url(nonce ‖ ciphertext)>`. Pure functions over keys.

use super::PersonKey;
use crate::store::StoreError;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;

/// The prefix of a sealed field.
pub const SEALED: &str = "enc1:";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn aad(person_id: &str) -> Vec<u8> {
    format!("campaign-ledger person_ref {person_id}").into_bytes()
}

/// Seals a person-level value with the person's key.
pub fn seal(key: &PersonKey, clear: &str) -> Result<String, StoreError> {
    let mut nonce = [0u8; 12];
    getrandom::getrandom(&mut nonce)
        .map_err(|e| StoreError::Unavailable(format!("no random bytes: {e}").into()))?;
    let cipher = Aes256Gcm::new_from_slice(&key.key).expect("32-byte key");
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: clear.as_bytes(),
                aad: &aad(&key.person_id),
            },
        )
        .expect("AES-GCM encrypts");
    let mut body = nonce.to_vec();
    body.extend(ct);
    Ok(format!("{SEALED}{}:{}", key.person_id, B64.encode(body)))
}

/// The person_id a sealed value names, or `None` for a clear value.
pub fn sealed_person_id(value: &str) -> Option<&str> {
    value
        .strip_prefix(SEALED)?
        .split_once(':')
        .map(|(id, _)| id)
}

/// The sealed `person_ref` in an event's stored data, found without parsing it (the ledger
/// writes it as `"person_ref":"enc1:…"`; a sealed value holds no quote or backslash).
pub fn sealed_ref_in(data: &str) -> Option<&str> {
    const FIELD: &str = "\"person_ref\":\"";
    let start = data.find(&format!("{FIELD}{SEALED}"))? + FIELD.len();
    let value = &data[start..];
    value.find('"').map(|end| &value[..end])
}

/// Opens a sealed value with its key (`None` if it is not sealed for this key).
pub fn open_sealed(key: &[u8; 32], value: &str) -> Option<String> {
    let (person_id, body) = value.strip_prefix(SEALED)?.split_once(':')?;
    let body = B64.decode(body).ok()?;
    if body.len() < 12 {
        return None;
    }
    let (nonce, ct) = body.split_at(12);
    let clear = Aes256Gcm::new_from_slice(key)
        .ok()?
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ct,
                aad: &aad(person_id),
            },
        )
        .ok()?;
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
        assert!(s.starts_with("enc1:00ff:"), "{s}");
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
}

//! The master key: it wraps every person key (and never leaves the machine it is kept on).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The master key (32 bytes), from which the wrapping and lookup keys are derived.
pub struct MasterKey([u8; 32]);

impl MasterKey {
    /// From 64 hex digits (`LEDGER_MASTER_KEY`, or the content of a key file).
    pub fn from_hex(text: &str) -> Result<MasterKey, String> {
        let bytes = hex::decode(text.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or("a master key is 64 hex digits (32 random bytes)")?;
        Ok(MasterKey(bytes))
    }

    /// A new random master key.
    pub fn generate() -> Result<MasterKey, String> {
        let mut k = [0u8; 32];
        getrandom::getrandom(&mut k).map_err(|e| format!("no random bytes: {e}"))?;
        Ok(MasterKey(k))
    }

    /// As 64 hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub(super) fn derive(&self, label: &str) -> [u8; 32] {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("any key length");
        m.update(label.as_bytes());
        m.finalize().into_bytes().into()
    }
}

//! The hash chain: `hash = SHA-256(prev_hash ‖ canonical bytes of the event)`.
//!
//! Canonical bytes: the envelope fields in a fixed order, each as a 4-byte big-endian length
//! followed by its UTF-8 bytes (numbers in decimal, UUIDs hyphenated lower-case, an absent
//! correlation id as the empty string). The data and actor are the stored canonical JSON text.
//! Any change to any stored byte, any reordering or removal changes a hash.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The `prev_hash` of the first event.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// A borrowed event envelope.
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct EventRef<'a> {
    pub position: u64,
    pub event_id: Uuid,
    pub stream_id: &'a str,
    pub stream_version: u64,
    pub event_type: &'a str,
    pub schema_version: u32,
    pub occurred_at: &'a str,
    pub recorded_at: &'a str,
    pub command_id: Uuid,
    pub correlation_id: Option<&'a str>,
    pub actor: &'a str,
    pub data: &'a str,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

impl<'a> EventRef<'a> {
    /// An owned copy.
    pub fn to_recorded(&self) -> super::RecordedEvent {
        super::RecordedEvent {
            position: self.position,
            event_id: self.event_id,
            stream_id: self.stream_id.to_string(),
            stream_version: self.stream_version,
            event_type: self.event_type.to_string(),
            schema_version: self.schema_version,
            occurred_at: self.occurred_at.to_string(),
            recorded_at: self.recorded_at.to_string(),
            command_id: self.command_id,
            correlation_id: self.correlation_id.map(str::to_string),
            actor: self.actor.to_string(),
            data: self.data.to_string(),
            prev_hash: self.prev_hash,
            hash: self.hash,
        }
    }

    /// The part of the event that readers of its data need.
    pub fn data_ref(&self) -> super::DataRef<'a> {
        super::DataRef {
            position: self.position,
            stream_id: self.stream_id,
            event_type: self.event_type,
            schema_version: self.schema_version,
            occurred_at: self.occurred_at,
            recorded_at: self.recorded_at,
            data: self.data,
            hash: self.hash,
        }
    }
}

fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u32).to_be_bytes());
    h.update(bytes);
}

/// Computes the hash of an event from its predecessor's hash and its own fields
/// (its stored `prev_hash` and `hash` are ignored).
pub fn chain_hash(prev: &[u8; 32], e: &EventRef<'_>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    let mut num = itoa_buf();
    field(&mut h, fmt_u64(&mut num, e.position));
    let mut ub = Uuid::encode_buffer();
    field(
        &mut h,
        e.event_id.hyphenated().encode_lower(&mut ub).as_bytes(),
    );
    field(&mut h, e.stream_id.as_bytes());
    field(&mut h, fmt_u64(&mut num, e.stream_version));
    field(&mut h, e.event_type.as_bytes());
    field(&mut h, fmt_u64(&mut num, e.schema_version as u64));
    field(&mut h, e.occurred_at.as_bytes());
    field(&mut h, e.recorded_at.as_bytes());
    field(
        &mut h,
        e.command_id.hyphenated().encode_lower(&mut ub).as_bytes(),
    );
    field(&mut h, e.correlation_id.unwrap_or("").as_bytes());
    field(&mut h, e.actor.as_bytes());
    field(&mut h, e.data.as_bytes());
    h.finalize().into()
}

fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

fn fmt_u64(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_decimal() {
        let mut b = itoa_buf();
        assert_eq!(fmt_u64(&mut b, 0), b"0");
        assert_eq!(fmt_u64(&mut b, 1234567890123), b"1234567890123");
        assert_eq!(fmt_u64(&mut b, u64::MAX), u64::MAX.to_string().as_bytes());
    }
}

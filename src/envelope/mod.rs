//! The wire: the bytes every other layer reads and writes. The stored envelope
//! (`RecordedEvent`, `Actor`), the hash chain (`chain`), and the CloudEvents / export-line codec
//! (`cloudevents`). It does no IO: the store, the bus and the audit all encode events through it,
//! and none of them imports another for it.

pub mod chain;
pub mod cloudevents;
pub mod merkle;
pub mod note;
pub mod witness;

pub(crate) use chain::ChainCheck;
pub use chain::{chain_hash, ChainBreak, EventRef, GENESIS_HASH};

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who caused an event (recorded in its envelope).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Actor {
    /// Role: `cli`, `agent`, `partner`, `supervisor`, `auditor`, `admin`, `system`.
    pub role: String,
    /// Directorate the actor acts for, if scoped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directorate: Option<String>,
    /// The agent's or token's reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_ref: Option<String>,
}

impl Actor {
    /// Canonical JSON of the actor (keys in fixed order), as stored and hashed.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("actors serialize")
    }
}

/// Stored JSON written as the JSON value it is, byte for byte (as the CloudEvent's `data`), not
/// as a string holding JSON; text that is not JSON (never stored) is written as a string.
fn raw_json_ser<S: serde::Serializer>(json: &str, s: S) -> Result<S::Ok, S::Error> {
    match serde_json::from_str::<&serde_json::value::RawValue>(json) {
        Ok(raw) => raw.serialize(s),
        Err(_) => s.serialize_str(json),
    }
}

pub(crate) fn hex_ser<S: serde::Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(h))
}

/// A stored event with its full envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedEvent {
    /// Global position, 1-based and gapless.
    pub position: u64,
    /// Event id (UUID v7).
    pub event_id: Uuid,
    /// Stream id.
    pub stream_id: String,
    /// Version within the stream, 1-based.
    pub stream_version: u64,
    /// Type name.
    pub event_type: String,
    /// Schema version of `data`.
    pub schema_version: u32,
    /// Business time (RFC 3339 with the offset given).
    pub occurred_at: String,
    /// Commit time (UTC, RFC 3339, microseconds, `Z`): sorts as text.
    pub recorded_at: String,
    /// Causing command.
    pub command_id: Uuid,
    /// Correlation id.
    pub correlation_id: Option<String>,
    /// Actor as canonical JSON (serialized as that JSON object, not a string).
    #[serde(serialize_with = "raw_json_ser")]
    pub actor: String,
    /// Data as canonical JSON (serialized as that JSON object, byte for byte).
    #[serde(serialize_with = "raw_json_ser")]
    pub data: String,
    /// Hash of the previous event (zeros for the first).
    #[serde(serialize_with = "hex_ser")]
    pub prev_hash: [u8; 32],
    /// `SHA-256(prev_hash ‖ canonical bytes of this event)`.
    #[serde(serialize_with = "hex_ser")]
    pub hash: [u8; 32],
}

impl RecordedEvent {
    /// A borrowed view, for hashing and fast scans.
    pub fn as_ref(&self) -> EventRef<'_> {
        EventRef {
            position: self.position,
            event_id: self.event_id,
            stream_id: &self.stream_id,
            stream_version: self.stream_version,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            occurred_at: &self.occurred_at,
            recorded_at: &self.recorded_at,
            command_id: self.command_id,
            correlation_id: self.correlation_id.as_deref(),
            actor: &self.actor,
            data: &self.data,
            prev_hash: self.prev_hash,
            hash: self.hash,
        }
    }
}

/// The part of an event that readers of its data need (see `EventStore::scan_data`).
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct DataRef<'a> {
    pub position: u64,
    pub stream_id: &'a str,
    pub event_type: &'a str,
    pub schema_version: u32,
    pub occurred_at: &'a str,
    pub recorded_at: &'a str,
    pub data: &'a str,
    pub hash: [u8; 32],
}

/// Formats a commit time the way the store records it (sorts as text).
pub fn format_recorded_at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Formats a business time the way the store records it.
pub fn format_occurred_at(t: DateTime<FixedOffset>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

//! The CloudEvents 1.0 mapping (structured JSON) of a ledger event, as published on NATS.
//!
//! Standard attributes: `id` (event id), `source`, `type`
//! (`fr.ofii.campaign-ledger.<EventType>.v<N>`), `subject` (stream id), `time` (occurred_at),
//! `datacontenttype`, `data` (the stored JSON, byte for byte). Extension attributes carry the
//! rest of the envelope, so a consumer can recompute the hash chain on its own:
//! `ledgerposition`, `ledgerstreamversion`, `ledgereventtype`, `ledgerschemaversion`,
//! `ledgerrecordedat`, `ledgercommandid`, `ledgercorrelationid` (absent when none),
//! `ledgeractor` (the actor's JSON as a string), `ledgerprevhash`, `ledgerhash` (hex).

use super::{EventRef, RecordedEvent};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use uuid::Uuid;

/// Why a payload is not a ledger CloudEvent. The message names the field; a JSON error is kept
/// as the cause (`WireError::json`), its text already in the message.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Not JSON, or not the attributes of a ledger CloudEvent.
    #[error("not a ledger CloudEvent: {0}")]
    Json(serde_json::Error),
    /// A CloudEvents version this ledger does not write.
    #[error("unsupported CloudEvents specversion {0}")]
    SpecVersion(String),
    /// An attribute the ledger derives from the envelope (`type`, `datacontenttype`) that is not
    /// what the envelope gives: the line was changed.
    #[error("{attribute} is {found:?}, but this event's envelope makes it {expected:?}: the line was changed")]
    Derived {
        /// The attribute.
        attribute: &'static str,
        /// What the line says.
        found: String,
        /// What the envelope gives.
        expected: String,
    },
    /// A hash attribute that is not 64 hex digits.
    #[error("{field} is not 32 bytes ({digits} hex digits instead of 64)")]
    HashLength {
        /// The attribute.
        field: &'static str,
        /// How many digits it has.
        digits: usize,
    },
    /// A hash attribute with a character that is not a hex digit.
    #[error("{field} is not hex: {value:?}")]
    NotHex {
        /// The attribute.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// An attribute of a version this build does not read (a newer build wrote it).
    #[error("{0}")]
    Unsupported(String),
}

impl WireError {
    /// The JSON parser's error, when that is what failed.
    pub fn json(&self) -> Option<&serde_json::Error> {
        match self {
            WireError::Json(e) => Some(e),
            _ => None,
        }
    }
}

/// The `Content-Type` header of every NATS message carrying a ledger event: the CloudEvents
/// NATS binding reads a message with it as structured mode (the whole event in the payload);
/// without it, as binary mode.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// Prefix of every event subject: `ledger.v1.events.<directorate>.<EventType>`.
pub const SUBJECT_PREFIX: &str = "ledger.v1.events";

#[derive(Serialize, Deserialize)]
struct Wire<'a> {
    specversion: Cow<'a, str>,
    id: Uuid,
    #[serde(borrow)]
    source: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    #[serde(borrow)]
    subject: Cow<'a, str>,
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(borrow)]
    datacontenttype: Cow<'a, str>,
    ledgerposition: u64,
    ledgerstreamversion: u64,
    #[serde(borrow)]
    ledgereventtype: Cow<'a, str>,
    ledgerschemaversion: u32,
    #[serde(borrow)]
    ledgerrecordedat: Cow<'a, str>,
    ledgercommandid: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    ledgercorrelationid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    ledgeractor: Cow<'a, str>,
    #[serde(borrow)]
    ledgerprevhash: Cow<'a, str>,
    #[serde(borrow)]
    ledgerhash: Cow<'a, str>,
    /// In exports only: the content hash of the causing command (not covered by the chain;
    /// an import needs it to keep command ids idempotent forever).
    #[serde(default, skip_serializing_if = "Option::is_none", borrow)]
    ledgercommandhash: Option<Cow<'a, str>>,
    /// The version of `ledgercommandhash` (absent: 1, the SHA-256 of the command's canonical
    /// JSON, written by older builds; 2: with the person's pseudonym in place of the ref).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ledgercommandhashversion: Option<u32>,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// The directorate an event's data names, or `_` (a subject token).
pub fn directorate_of(data: &str) -> String {
    named_directorate(data).unwrap_or_else(|| "_".to_string())
}

/// The directorate token of an event's subject: the directorate its data names; for an event
/// whose data names none (a dose given elsewhere, its reversal, an erasure), the directorate of
/// the actor who recorded it, which the event already carries (`ledgeractor`); `_` when
/// neither names one (an unscoped administrator or the command line). A directorate's
/// consumer reading `ledger.v1.events.<directorate>.>` thus gets every event its own agents
/// recorded; `ledger.v1.events._.>` holds the few recorded by unscoped callers.
pub fn subject_directorate(e: &EventRef<'_>) -> String {
    named_directorate(e.data)
        .or_else(|| named_directorate(e.actor))
        .unwrap_or_else(|| "_".to_string())
}

/// The `directorate` member of a JSON object, when it is a valid subject token.
fn named_directorate(json: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct D<'a> {
        #[serde(borrow, default)]
        directorate: Option<Cow<'a, str>>,
    }
    serde_json::from_str::<D>(json)
        .ok()
        .and_then(|d| d.directorate)
        .filter(|d| {
            !d.is_empty()
                && d.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(|d| d.into_owned())
}

/// The NATS subject of an event: `ledger.v1.events.<directorate>.<EventType>`, the directorate
/// as [`subject_directorate`] gives it.
pub fn subject_of(e: &EventRef<'_>) -> String {
    format!(
        "{SUBJECT_PREFIX}.{}.{}",
        subject_directorate(e),
        e.event_type
    )
}

/// Encodes an event as a structured CloudEvent.
pub fn encode(e: &EventRef<'_>, source: &str) -> Vec<u8> {
    encode_with(e, source, None)
}

/// The `source` of exported events: the same whichever backend they come from, so that
/// exports of the same log are byte-identical.
pub const EXPORT_SOURCE: &str = "/campaign-ledger/export";

/// A command's content hash and its version, as an export line carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandHash {
    /// The hash.
    pub hash: [u8; 32],
    /// Its version (1 or 2; see `CommandEnvelope::content_hash`).
    pub version: u32,
}

/// Encodes an event as one line of an export: the CloudEvent with `ledgercommandhash` and
/// `ledgercommandhashversion` (written from version 2 on).
pub fn encode_export(e: &EventRef<'_>, command_hash: &CommandHash) -> Vec<u8> {
    encode_with(e, EXPORT_SOURCE, Some(command_hash))
}

fn encode_with(e: &EventRef<'_>, source: &str, command_hash: Option<&CommandHash>) -> Vec<u8> {
    let owned;
    let data: &RawValue = match serde_json::from_str(e.data) {
        Ok(d) => d,
        // Stored data is always JSON; should it not be, carry it as a JSON string.
        Err(_) => {
            let s = serde_json::to_string(e.data).expect("strings serialize");
            owned = RawValue::from_string(s).expect("a JSON string is JSON");
            &owned
        }
    };
    let mut w = wire(e, source, data);
    w.ledgercommandhash = command_hash.map(|h| hex::encode(h.hash).into());
    w.ledgercommandhashversion = command_hash.map(|h| h.version).filter(|&v| v >= 2);
    serde_json::to_vec(&w).expect("cloud events serialize")
}

fn wire<'a>(e: &'a EventRef<'a>, source: &'a str, data: &'a RawValue) -> Wire<'a> {
    Wire {
        specversion: "1.0".into(),
        id: e.event_id,
        source: source.into(),
        ty: format!(
            "fr.ofii.campaign-ledger.{}.v{}",
            e.event_type, e.schema_version
        )
        .into(),
        subject: e.stream_id.into(),
        time: e.occurred_at.into(),
        datacontenttype: "application/json".into(),
        ledgerposition: e.position,
        ledgerstreamversion: e.stream_version,
        ledgereventtype: e.event_type.into(),
        ledgerschemaversion: e.schema_version,
        ledgerrecordedat: e.recorded_at.into(),
        ledgercommandid: e.command_id,
        ledgercorrelationid: e.correlation_id.map(Cow::Borrowed),
        ledgeractor: e.actor.into(),
        ledgerprevhash: hex::encode(e.prev_hash).into(),
        ledgerhash: hex::encode(e.hash).into(),
        ledgercommandhash: None,
        ledgercommandhashversion: None,
        data,
    }
}

/// The attributes the hash does not cover because the envelope gives them (`specversion`,
/// `type`, `datacontenttype`) must be what the envelope gives: a line whose `type` says one
/// event type while `ledgereventtype` says another is refused, not read. (`source` names where
/// the line was written, the relay's ledger or an export, and is not evidence.)
fn check_derived(w: &Wire<'_>) -> Result<(), WireError> {
    if w.specversion != "1.0" {
        return Err(WireError::SpecVersion(w.specversion.to_string()));
    }
    let ty = format!(
        "fr.ofii.campaign-ledger.{}.v{}",
        w.ledgereventtype, w.ledgerschemaversion
    );
    if w.ty != ty {
        return Err(WireError::Derived {
            attribute: "type",
            found: w.ty.to_string(),
            expected: ty,
        });
    }
    if w.datacontenttype != "application/json" {
        return Err(WireError::Derived {
            attribute: "datacontenttype",
            found: w.datacontenttype.to_string(),
            expected: "application/json".into(),
        });
    }
    Ok(())
}

fn hash(field: &'static str, h: &str) -> Result<[u8; 32], WireError> {
    // Two hashes per event: decoded by table, into the array (a general-purpose hex decoder
    // with a vector on the way was a tenth of a NATS-fed catch-up).
    const fn table() -> [u8; 256] {
        let mut t = [0xFF; 256];
        let mut i = 0;
        while i < 10 {
            t[b'0' as usize + i] = i as u8;
            i += 1;
        }
        let mut i = 0;
        while i < 6 {
            t[b'a' as usize + i] = 10 + i as u8;
            t[b'A' as usize + i] = 10 + i as u8;
            i += 1;
        }
        t
    }
    const HEX: [u8; 256] = table();
    let b = h.as_bytes();
    if b.len() != 64 {
        return Err(WireError::HashLength {
            field,
            digits: b.len(),
        });
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let (hi, lo) = (HEX[pair[0] as usize], HEX[pair[1] as usize]);
        if hi > 15 || lo > 15 {
            return Err(WireError::NotHex {
                field,
                value: h.to_string(),
            });
        }
        *o = hi << 4 | lo;
    }
    Ok(out)
}

/// Decodes a CloudEvent and hands `f` a borrowed view of the event (no copies of its text).
pub fn with_event<R>(payload: &[u8], f: impl FnOnce(EventRef<'_>) -> R) -> Result<R, WireError> {
    let w: Wire = serde_json::from_slice(payload).map_err(WireError::Json)?;
    check_derived(&w)?;
    Ok(f(EventRef {
        position: w.ledgerposition,
        event_id: w.id,
        stream_id: &w.subject,
        stream_version: w.ledgerstreamversion,
        event_type: &w.ledgereventtype,
        schema_version: w.ledgerschemaversion,
        occurred_at: &w.time,
        recorded_at: &w.ledgerrecordedat,
        command_id: w.ledgercommandid,
        correlation_id: w.ledgercorrelationid.as_deref(),
        actor: &w.ledgeractor,
        data: w.data.get(),
        prev_hash: hash("ledgerprevhash", &w.ledgerprevhash)?,
        hash: hash("ledgerhash", &w.ledgerhash)?,
    }))
}

/// Decodes a CloudEvent published by the relay back into the stored event, exactly.
pub fn decode(payload: &[u8]) -> Result<RecordedEvent, WireError> {
    decode_export(payload).map(|(e, _)| e)
}

/// Decodes a line of an export: the event and its command's content hash, when present.
pub fn decode_export(payload: &[u8]) -> Result<(RecordedEvent, Option<CommandHash>), WireError> {
    let w: Wire = serde_json::from_slice(payload).map_err(WireError::Json)?;
    check_derived(&w)?;
    let event = RecordedEvent {
        position: w.ledgerposition,
        event_id: w.id,
        stream_id: w.subject.into_owned(),
        stream_version: w.ledgerstreamversion,
        event_type: w.ledgereventtype.into_owned(),
        schema_version: w.ledgerschemaversion,
        occurred_at: w.time.into_owned(),
        recorded_at: w.ledgerrecordedat.into_owned(),
        command_id: w.ledgercommandid,
        correlation_id: w.ledgercorrelationid.map(Cow::into_owned),
        actor: w.ledgeractor.into_owned(),
        data: w.data.get().to_string(),
        prev_hash: hash("ledgerprevhash", &w.ledgerprevhash)?,
        hash: hash("ledgerhash", &w.ledgerhash)?,
    };
    let command_hash = match &w.ledgercommandhash {
        Some(h) => Some(CommandHash {
            hash: hash("ledgercommandhash", h)?,
            version: match w.ledgercommandhashversion {
                None | Some(1) => 1,
                Some(2) => 2,
                Some(v) => {
                    return Err(WireError::Unsupported(format!(
                        "ledgercommandhashversion {v} is not one this build reads (1 or 2)"
                    )))
                }
            },
        }),
        None if w.ledgercommandhashversion.is_some() => {
            return Err(WireError::Unsupported(
                "ledgercommandhashversion without ledgercommandhash".into(),
            ))
        }
        None => None,
    };
    Ok((event, command_hash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{chain_hash, GENESIS_HASH};

    #[test]
    fn a_type_or_content_type_the_envelope_does_not_give_is_refused() {
        let e = RecordedEvent {
            position: 1,
            event_id: Uuid::now_v7(),
            stream_id: "s-1".into(),
            stream_version: 1,
            event_type: "SessionOpened".into(),
            schema_version: 1,
            occurred_at: "2021-10-04T10:00:00+02:00".into(),
            recorded_at: "2021-10-04T08:05:00.000000Z".into(),
            command_id: Uuid::now_v7(),
            correlation_id: None,
            actor: "{}".into(),
            data: "{}".into(),
            prev_hash: [0; 32],
            hash: [1; 32],
        };
        let line = String::from_utf8(encode(&e.as_ref(), "/x")).unwrap();
        assert!(decode(line.as_bytes()).is_ok());
        for (from, to) in [
            ("SessionOpened.v1\"", "SessionClosed.v1\""),
            ("\"application/json\"", "\"text/plain\""),
        ] {
            let changed = line.replacen(from, to, 1);
            assert_ne!(changed, line);
            let err = decode(changed.as_bytes()).unwrap_err();
            assert!(err.to_string().contains("the line was changed"), "{err}");
        }
    }

    #[test]
    fn events_without_a_directorate_take_the_recording_actors() {
        let mut e = RecordedEvent {
            position: 1,
            event_id: Uuid::nil(),
            stream_id: "person/p-1".into(),
            stream_version: 1,
            event_type: "ExternalDoseRecorded".into(),
            schema_version: 1,
            occurred_at: "2021-06-01T10:00:00+02:00".into(),
            recorded_at: "2021-06-01T10:00:00+02:00".into(),
            command_id: Uuid::nil(),
            correlation_id: None,
            actor: r#"{"role":"agent","directorate":"lyon","agent_ref":"t1"}"#.into(),
            data: r#"{"person_ref":"p-1"}"#.into(),
            prev_hash: [0; 32],
            hash: [1; 32],
        };
        assert_eq!(
            subject_of(&e.as_ref()),
            "ledger.v1.events.lyon.ExternalDoseRecorded"
        );
        // The data's own directorate wins over the actor's.
        e.data = r#"{"directorate":"paris"}"#.into();
        assert_eq!(subject_directorate(&e.as_ref()), "paris");
        // Neither names one (an unscoped administrator): `_`.
        e.data = r#"{"person_id":"p-1"}"#.into();
        e.actor = r#"{"role":"admin"}"#.into();
        assert_eq!(subject_directorate(&e.as_ref()), "_");
        // A directorate that is not a subject token is not used.
        e.actor = r#"{"role":"agent","directorate":"ly.on"}"#.into();
        assert_eq!(subject_directorate(&e.as_ref()), "_");
    }

    #[test]
    fn round_trip_is_exact_and_the_hash_verifies() {
        let mut e = RecordedEvent {
            position: 1,
            event_id: Uuid::now_v7(),
            stream_id: "person/p-1".into(),
            stream_version: 1,
            event_type: "DoseAdministered".into(),
            schema_version: 1,
            occurred_at: "2021-10-04T10:00:00+02:00".into(),
            recorded_at: "2021-10-04T08:05:00.000000Z".into(),
            command_id: Uuid::now_v7(),
            correlation_id: None,
            actor: r#"{"role":"cli","agent_ref":"é \"q\""}"#.into(),
            data: r#"{"person_ref":"p-1","directorate":"lyon","lot":"a\u00e9\"b","n":1.50}"#.into(),
            prev_hash: GENESIS_HASH,
            hash: [0; 32],
        };
        e.hash = chain_hash(&GENESIS_HASH, &e.as_ref());
        let bytes = encode(&e.as_ref(), "/campaign-ledger/test");
        let back = decode(&bytes).unwrap();
        assert_eq!(back, e);
        assert_eq!(chain_hash(&back.prev_hash, &back.as_ref()), back.hash);
        assert_eq!(
            subject_of(&e.as_ref()),
            "ledger.v1.events.lyon.DoseAdministered"
        );
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["type"], "fr.ofii.campaign-ledger.DoseAdministered.v1");
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(directorate_of(r#"{"person_ref":"x"}"#), "_");
        assert_eq!(directorate_of(r#"{"directorate":"a.b"}"#), "_");
        // A hash that is not 64 hex digits is refused, saying which and why.
        let hex_hash = hex::encode(e.hash);
        for (bad, says) in [
            (hex_hash[..62].to_string(), "ledgerhash is not 32 bytes"),
            (format!("{hex_hash}00"), "ledgerhash is not 32 bytes"),
            (format!("zz{}", &hex_hash[2..]), "ledgerhash is not hex"),
        ] {
            let text = String::from_utf8(bytes.clone())
                .unwrap()
                .replace(&hex_hash, &bad);
            let err = with_event(text.as_bytes(), |_| ()).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        // Not JSON: the parser's error is kept as the cause, its text in the message.
        let err = decode(b"{not json").unwrap_err();
        let parser = err.json().expect("the JSON error is kept");
        assert!(err.to_string().ends_with(&parser.to_string()), "{err}");
    }

    #[test]
    fn the_asyncapi_document_lists_every_event_type_and_attribute() {
        let doc = include_str!("../../schemas/asyncapi.yaml");
        // Its example is a real event: it decodes, its hash is the hash of its content, and
        // its subject follows the rule.
        let example = doc
            .lines()
            .find_map(|l| l.trim_start().strip_prefix("payload: {"))
            .map(|rest| format!("{{{rest}"))
            .expect("schemas/asyncapi.yaml has an example payload");
        let real = decode(example.as_bytes()).unwrap();
        assert_eq!(chain_hash(&real.prev_hash, &real.as_ref()), real.hash);
        assert!(real.stream_id.starts_with("person/"));
        assert!(!real.data.contains("\"person_ref\":\"p-"), "a ref in clear");
        assert_eq!(
            subject_of(&real.as_ref()),
            format!("ledger.v1.events.limoges.{}", real.event_type)
        );
        for t in crate::domain::Event::TYPES {
            assert!(
                doc.contains(&format!("- {t}\n")),
                "schemas/asyncapi.yaml lacks {t}"
            );
        }
        let e = RecordedEvent {
            position: 1,
            event_id: Uuid::nil(),
            stream_id: "s".into(),
            stream_version: 1,
            event_type: "T".into(),
            schema_version: 1,
            occurred_at: "t".into(),
            recorded_at: "t".into(),
            command_id: Uuid::nil(),
            correlation_id: Some("c".into()),
            actor: "{}".into(),
            data: "{}".into(),
            prev_hash: GENESIS_HASH,
            hash: GENESIS_HASH,
        };
        let v: serde_json::Value = serde_json::from_slice(&encode(&e.as_ref(), "x")).unwrap();
        for key in v.as_object().unwrap().keys() {
            assert!(
                doc.contains(&format!("        {key}:")),
                "schemas/asyncapi.yaml lacks the attribute {key}"
            );
        }
    }
}

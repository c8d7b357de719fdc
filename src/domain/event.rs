//! Events: facts the ledger recorded. Stored type names are explicit strings with a schema
//! version; the data is the JSON of the variant's struct.

use super::types::*;
use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Every event type, with its data.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum Event {
    SiteAuthorised(SiteAuthorised),
    DoseAdministered(DoseAdministered),
    ExternalDoseRecorded(ExternalDoseRecorded),
    DoseNotAdministered(DoseNotAdministered),
    DoseEntryReversed(DoseEntryReversed),
    ExternalDoseReversed(ExternalDoseReversed),
    TicketIssued(TicketIssued),
    TicketRedeemed(TicketRedeemed),
    TicketExpired(TicketExpired),
    SessionOpened(SessionOpened),
    SessionClosed(SessionClosed),
    CoverageSurveyAnswered(CoverageSurveyAnswered),
    PersonErased(PersonErased),
    KeyStoreBound(KeyStoreBound),
}

/// A site was authorised as a vaccination site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[allow(missing_docs)]
pub struct SiteAuthorised {
    pub directorate: String,
    pub site: String,
    pub site_kind: SiteKind,
    pub authorised_on: NaiveDate,
}

/// The OFII gave a dose. Schema version 2: `series_doses` added (FHIR
/// `protocolApplied.seriesDoses`); version 1 data is read through `DoseAdministeredV1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[allow(missing_docs)]
pub struct DoseAdministered {
    pub person_ref: String,
    pub age_band: AgeBand,
    pub recipient: Recipient,
    pub directorate: String,
    pub site: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    pub product: Product,
    pub lot: String,
    pub dose: DoseKind,
    /// Rank of this dose among the person's valid doses, external ones included (1-based;
    /// FHIR `protocolApplied.doseNumber`).
    pub dose_number: u32,
    /// Doses in the product's primary series (FHIR `protocolApplied.seriesDoses`): 1 for
    /// Jcovden, 2 for the others. A `dose_number` above it is a booster.
    pub series_doses: u32,
    pub administered_at: DateTime<FixedOffset>,
    pub prior_infection_counted: bool,
}

/// `DoseAdministered` as schema version 1 stored it (before `series_doses`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[allow(missing_docs)]
pub struct DoseAdministeredV1 {
    pub person_ref: String,
    pub age_band: AgeBand,
    pub recipient: Recipient,
    pub directorate: String,
    pub site: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    pub product: Product,
    pub lot: String,
    pub dose: DoseKind,
    /// Rank of this dose among the person's valid doses, external ones included (1-based).
    pub dose_number: u32,
    pub administered_at: DateTime<FixedOffset>,
    pub prior_infection_counted: bool,
}

impl From<DoseAdministeredV1> for DoseAdministered {
    /// The upcaster from version 1: the product says how many doses its primary series has.
    fn from(v: DoseAdministeredV1) -> DoseAdministered {
        DoseAdministered {
            series_doses: v.product.primary_series_doses(),
            person_ref: v.person_ref,
            age_band: v.age_band,
            recipient: v.recipient,
            directorate: v.directorate,
            site: v.site,
            session_id: v.session_id,
            product: v.product,
            lot: v.lot,
            dose: v.dose,
            dose_number: v.dose_number,
            administered_at: v.administered_at,
            prior_infection_counted: v.prior_infection_counted,
        }
    }
}

/// A dose given elsewhere was recorded from a certificate or declaration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[allow(missing_docs)]
pub struct ExternalDoseRecorded {
    pub person_ref: String,
    pub product: Product,
    pub dose: DoseKind,
    pub administered_at: DateTime<FixedOffset>,
    pub evidence: Evidence,
}

/// A planned dose was not given (FHIR `not-done`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[allow(missing_docs)]
pub struct DoseNotAdministered {
    pub person_ref: String,
    pub directorate: String,
    pub site: String,
    pub reason: NotAdministeredReason,
    pub at: DateTime<FixedOffset>,
}

/// A dose entry was reversed. Carries the attributes of what it reverses, under the same names,
/// so every projection can subtract it without a lookup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[allow(missing_docs)]
pub struct DoseEntryReversed {
    pub reversed_event_id: Uuid,
    pub reversed_command_id: Uuid,
    pub reason: ReversalReason,
    pub person_ref: String,
    pub age_band: AgeBand,
    pub recipient: Recipient,
    pub directorate: String,
    pub site: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    pub product: Product,
    pub dose: DoseKind,
    pub administered_at: DateTime<FixedOffset>,
}

/// A dose given elsewhere was recorded in error and is reversed (it never counted in OFII
/// totals; it stops counting for the person's series).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[allow(missing_docs)]
pub struct ExternalDoseReversed {
    pub reversed_event_id: Uuid,
    pub reversed_command_id: Uuid,
    pub reason: ReversalReason,
    pub person_ref: String,
    pub product: Product,
    pub dose: DoseKind,
    pub administered_at: DateTime<FixedOffset>,
}

/// A ticket for walk-in vaccination at a partner centre was handed out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[allow(missing_docs)]
pub struct TicketIssued {
    pub ticket_id: String,
    pub person_ref: String,
    pub directorate: String,
    pub partner_centre: String,
    pub issued_at: DateTime<FixedOffset>,
    pub valid_until: NaiveDate,
}

/// The partner centre used the ticket (its dose is theirs, not the OFII's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[allow(missing_docs)]
pub struct TicketRedeemed {
    pub ticket_id: String,
    pub directorate: String,
    pub partner_centre: String,
    pub redeemed_at: DateTime<FixedOffset>,
    pub dose: DoseKind,
}

/// An unused ticket expired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[allow(missing_docs)]
pub struct TicketExpired {
    pub ticket_id: String,
    pub directorate: String,
    pub partner_centre: String,
    pub at: DateTime<FixedOffset>,
}

/// A vaccination session opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[allow(missing_docs)]
pub struct SessionOpened {
    pub session_id: String,
    pub directorate: String,
    pub site: String,
    pub opened_at: DateTime<FixedOffset>,
}

/// A vaccination session closed with its attendance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[allow(missing_docs)]
pub struct SessionClosed {
    pub session_id: String,
    pub directorate: String,
    pub site: String,
    pub opened_at: DateTime<FixedOffset>,
    pub closed_at: DateTime<FixedOffset>,
    pub attendance: u32,
}

/// A structure answered the coverage survey (a later answer supersedes an earlier one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[allow(missing_docs)]
pub struct CoverageSurveyAnswered {
    pub survey_id: String,
    pub structure_id: String,
    pub structure_type: StructureType,
    pub directorate: String,
    pub as_of: NaiveDate,
    pub residents: u32,
    pub residents_with_one_dose: u32,
    pub residents_fully_vaccinated: u32,
}

/// A person's data key was destroyed (crypto-shredding): the person's encrypted fields in
/// every earlier event can no longer be read, and their ref no longer leads to their history.
/// Names the person only by the pseudonym of their stream; who erased is the envelope's actor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[allow(missing_docs)]
pub struct PersonErased {
    /// The pseudonym (`person/<person_id>` is the person's stream).
    pub person_id: String,
    pub erased_at: DateTime<FixedOffset>,
}

/// The key store that writes persons to this log, named once (stream `ledger/key-store`) on a
/// log that does not keep the person index itself (the NATS log, until the keys live in the
/// cluster): a process with another key store refuses to write persons, so that one ref never
/// gets two pseudonyms. Names the key store by an id of its own (random, made with it), never
/// by a path or a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[allow(missing_docs)]
pub struct KeyStoreBound {
    /// The key store's id (32 hex digits).
    pub key_store_id: String,
    pub bound_at: DateTime<FixedOffset>,
}

/// An event's stored data could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The type name or version is not one this build knows. Upgrade the binary.
    #[error("unknown event type {0} v{1}")]
    UnknownType(String, u32),
    /// The JSON does not match the type. The log is damaged or was written by another program.
    #[error("event {0} v{1} has unreadable data: {2}")]
    BadData(String, u32, #[source] serde_json::Error),
}

/// The field names serde would read for `T` (captured from `deserialize_struct`).
fn struct_fields<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{value::Error, Deserializer, Error as _, Visitor};
    struct Capture<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Capture<'_> {
        type Error = Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            Err(Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Error> {
            *self.0 = fields;
            Err(Error::custom("captured"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Capture(&mut fields));
    fields
}

macro_rules! event_names {
    ($($v:ident),+) => {
        impl Event {
            /// The stored type name.
            pub fn event_type(&self) -> &'static str {
                match self { $(Event::$v(_) => stringify!($v)),+ }
            }
            /// Every stored type name this build writes.
            pub const TYPES: &'static [&'static str] = &[$(stringify!($v)),+];
            /// The JSON Schema of the data of each event type, at the version this build
            /// writes (see `domain::schema`).
            pub fn data_schemas() -> Vec<(&'static str, schemars::Schema)> {
                vec![$((stringify!($v), schemars::schema_for!($v))),+]
            }
            /// The data as a JSON value.
            pub fn to_data(&self) -> serde_json::Value {
                match self { $(Event::$v(e) => serde_json::to_value(e).expect("events serialize")),+ }
            }
            /// The data as stored: the JSON text of the event's struct, fields in declaration
            /// order. These exact bytes are what the hash chain covers.
            pub fn data_json(&self) -> String {
                match self { $(Event::$v(e) => serde_json::to_string(e).expect("events serialize")),+ }
            }
            /// The data fields of an event type (as named in JSON), or `None` for an unknown type.
            pub fn fields(event_type: &str) -> Option<&'static [&'static str]> {
                match event_type {
                    $(stringify!($v) => Some(struct_fields::<$v>()),)+
                    _ => None,
                }
            }
            /// Reads stored data back, upcasting an older schema version to the current one.
            pub fn decode(event_type: &str, schema_version: u32, data: &str) -> Result<Event, DecodeError> {
                let current = Self::current_version(event_type)
                    .ok_or_else(|| DecodeError::UnknownType(event_type.to_string(), schema_version))?;
                if schema_version != current {
                    return match Self::upcast(event_type, schema_version, data)? {
                        Some(up) => Self::decode(event_type, current, &up),
                        None => Err(DecodeError::UnknownType(event_type.to_string(), schema_version)),
                    };
                }
                match event_type {
                    $(stringify!($v) => serde_json::from_str(data)
                        .map(Event::$v)
                        .map_err(|e| DecodeError::BadData(event_type.to_string(), schema_version, e)),)+
                    other => Err(DecodeError::UnknownType(other.to_string(), schema_version)),
                }
            }
        }
    };
}

event_names!(
    SiteAuthorised,
    DoseAdministered,
    ExternalDoseRecorded,
    DoseNotAdministered,
    DoseEntryReversed,
    ExternalDoseReversed,
    TicketIssued,
    TicketRedeemed,
    TicketExpired,
    SessionOpened,
    SessionClosed,
    CoverageSurveyAnswered,
    PersonErased,
    KeyStoreBound
);

impl Event {
    /// The schema versions of an event type this build reads (oldest first; the last is the
    /// one it writes), or `None` for an unknown type.
    pub fn versions(event_type: &str) -> Option<&'static [u32]> {
        match event_type {
            "DoseAdministered" => Some(&[1, 2]),
            t if Self::TYPES.contains(&t) => Some(&[1]),
            _ => None,
        }
    }

    /// The schema version this build writes for an event type.
    pub fn current_version(event_type: &str) -> Option<u32> {
        Self::versions(event_type).and_then(|v| v.last().copied())
    }

    /// The schema version of this event's data.
    pub fn schema_version(&self) -> u32 {
        Self::current_version(self.event_type()).expect("every event type has a version")
    }

    /// The upcasters: stored data of an older schema version rewritten as the current
    /// version's JSON (`None` when no upcaster applies: the version is current or unknown).
    /// Projections and the domain read old events through them; the log keeps the bytes it
    /// stored (the hash chain covers them).
    pub fn upcast(
        event_type: &str,
        schema_version: u32,
        data: &str,
    ) -> Result<Option<String>, DecodeError> {
        let bad = |e| DecodeError::BadData(event_type.to_string(), schema_version, e);
        match (event_type, schema_version) {
            ("DoseAdministered", 1) => {
                let v1: DoseAdministeredV1 = serde_json::from_str(data).map_err(bad)?;
                Ok(Some(
                    serde_json::to_string(&DoseAdministered::from(v1)).expect("events serialize"),
                ))
            }
            _ => Ok(None),
        }
    }

    /// Business time of the fact (the envelope's `occurred_at`). A reversal has no business
    /// time of its own: it takes effect when the reversed entry did.
    pub fn occurred_at(&self) -> DateTime<FixedOffset> {
        fn day(d: NaiveDate) -> DateTime<FixedOffset> {
            d.and_hms_opt(0, 0, 0).unwrap().and_utc().fixed_offset()
        }
        match self {
            Event::SiteAuthorised(e) => day(e.authorised_on),
            Event::DoseAdministered(e) => e.administered_at,
            Event::ExternalDoseRecorded(e) => e.administered_at,
            Event::DoseNotAdministered(e) => e.at,
            Event::DoseEntryReversed(e) => e.administered_at,
            Event::ExternalDoseReversed(e) => e.administered_at,
            Event::TicketIssued(e) => e.issued_at,
            Event::TicketRedeemed(e) => e.redeemed_at,
            Event::TicketExpired(e) => e.at,
            Event::SessionOpened(e) => e.opened_at,
            Event::SessionClosed(e) => e.closed_at,
            Event::CoverageSurveyAnswered(e) => day(e.as_of),
            Event::PersonErased(e) => e.erased_at,
            Event::KeyStoreBound(e) => e.bound_at,
        }
    }

    /// The person-level field of the event (`person_ref`), which the ledger stores encrypted
    /// with the person's key; `None` for events that name no person.
    pub fn person_ref_mut(&mut self) -> Option<&mut String> {
        match self {
            Event::DoseAdministered(e) => Some(&mut e.person_ref),
            Event::ExternalDoseRecorded(e) => Some(&mut e.person_ref),
            Event::DoseNotAdministered(e) => Some(&mut e.person_ref),
            Event::DoseEntryReversed(e) => Some(&mut e.person_ref),
            Event::ExternalDoseReversed(e) => Some(&mut e.person_ref),
            Event::TicketIssued(e) => Some(&mut e.person_ref),
            Event::SiteAuthorised(_)
            | Event::TicketRedeemed(_)
            | Event::TicketExpired(_)
            | Event::SessionOpened(_)
            | Event::SessionClosed(_)
            | Event::CoverageSurveyAnswered(_)
            | Event::PersonErased(_)
            | Event::KeyStoreBound(_) => None,
        }
    }

    /// The directorate the event belongs to, if any (used for NATS subjects and scoping).
    pub fn directorate(&self) -> Option<&str> {
        match self {
            Event::SiteAuthorised(e) => Some(&e.directorate),
            Event::DoseAdministered(e) => Some(&e.directorate),
            Event::ExternalDoseRecorded(_) => None,
            Event::DoseNotAdministered(e) => Some(&e.directorate),
            Event::DoseEntryReversed(e) => Some(&e.directorate),
            Event::ExternalDoseReversed(_) => None,
            Event::TicketIssued(e) => Some(&e.directorate),
            Event::TicketRedeemed(e) => Some(&e.directorate),
            Event::TicketExpired(e) => Some(&e.directorate),
            Event::SessionOpened(e) => Some(&e.directorate),
            Event::SessionClosed(e) => Some(&e.directorate),
            Event::CoverageSurveyAnswered(e) => Some(&e.directorate),
            Event::PersonErased(_) | Event::KeyStoreBound(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_lists_come_from_the_types() {
        let f = Event::fields("DoseAdministered").unwrap();
        assert!(
            f.contains(&"directorate")
                && f.contains(&"session_id")
                && f.contains(&"administered_at")
        );
        assert_eq!(Event::fields("CoverageSurveyAnswered").unwrap().len(), 8);
        assert!(Event::fields("Nope").is_none());
        for t in Event::TYPES {
            assert!(!Event::fields(t).unwrap().is_empty(), "{t}");
        }
    }
}

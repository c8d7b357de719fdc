//! Commands: what staff ask the ledger to record. The JSON form is a public contract.

use super::types::*;
use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A command as submitted: a client-chosen id, an optional correlation id, and the command.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandEnvelope {
    /// Client-chosen UUID; resubmitting it is idempotent, forever.
    pub command_id: Uuid,
    /// Groups related commands (a file, a scenario, a workflow). Not part of the content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The command itself.
    #[serde(flatten)]
    pub command: Command,
}

/// Why a command line could not even be read as a command (outcome `invalid`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidCommand {
    /// Stable code: `malformed_json`, `not_an_object`, `missing_command_id`, `bad_command_id`, `invalid_command`.
    pub code: &'static str,
    /// A sentence saying what is wrong and what to do.
    pub message: String,
    /// The command id, when it could be read.
    pub command_id: Option<Uuid>,
}

impl CommandEnvelope {
    /// Parses one JSON command (one line of a command file, or one HTTP body element).
    pub fn parse(text: &str) -> Result<CommandEnvelope, InvalidCommand> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| InvalidCommand {
            code: "malformed_json",
            message: format!("This line is not valid JSON ({e}); write one JSON object per line."),
            command_id: None,
        })?;
        Self::from_value(value)
    }

    /// Reads a command from an already parsed JSON value.
    pub fn from_value(value: serde_json::Value) -> Result<CommandEnvelope, InvalidCommand> {
        let serde_json::Value::Object(mut map) = value else {
            return Err(InvalidCommand {
                code: "not_an_object",
                message: "A command must be a JSON object with a \"type\" and a \"command_id\"."
                    .into(),
                command_id: None,
            });
        };
        let command_id = match map.remove("command_id") {
            None => {
                return Err(InvalidCommand {
                    code: "missing_command_id",
                    message: "The command has no \"command_id\"; give every command a UUID of your choosing so that it can be resubmitted safely.".into(),
                    command_id: None,
                })
            }
            Some(v) => match v.as_str().and_then(|s| Uuid::parse_str(s).ok()) {
                Some(id) => id,
                None => {
                    return Err(InvalidCommand {
                        code: "bad_command_id",
                        message: format!("\"command_id\" must be a UUID such as \"0193a1e2-7c4b-7d2e-9f00-2b1c3d4e5f60\", not {v}."),
                        command_id: None,
                    })
                }
            },
        };
        let correlation_id = match map.remove("correlation_id") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s),
            Some(other) => {
                return Err(InvalidCommand {
                    code: "invalid_command",
                    message: format!("\"correlation_id\" must be a string, not {other}."),
                    command_id: Some(command_id),
                })
            }
        };
        let invalid = |message: String| InvalidCommand {
            code: "invalid_command",
            message,
            command_id: Some(command_id),
        };
        let ty = match map.remove("type") {
            Some(serde_json::Value::String(t)) => t,
            _ => {
                return Err(invalid(format!(
                    "The command has no \"type\"; use one of {}.",
                    Command::TYPES.join(", ")
                )))
            }
        };
        let command = Command::from_fields(&ty, serde_json::Value::Object(map)).map_err(invalid)?;
        command.validate().map_err(|message| InvalidCommand {
            code: "invalid_command",
            message,
            command_id: Some(command_id),
        })?;
        Ok(CommandEnvelope {
            command_id,
            correlation_id,
            command,
        })
    }

    /// The canonical bytes of the command's content (type and fields, not the ids; keys sorted, so
    /// spacing and key order do not matter). The content hash (`content_hash`) hashes them with
    /// the person's pseudonym in place of the ref.
    pub fn content_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::to_value(&self.command).expect("commands serialize"))
            .expect("values serialize")
    }
}

/// Every command the ledger accepts, tagged by `type` in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
#[allow(missing_docs)]
pub enum Command {
    AuthoriseSite(AuthoriseSite),
    AdministerDose(AdministerDose),
    RecordExternalDose(RecordExternalDose),
    RecordDoseNotAdministered(RecordDoseNotAdministered),
    ReverseDoseEntry(ReverseDoseEntry),
    IssueTicket(IssueTicket),
    RedeemTicket(RedeemTicket),
    ExpireTicket(ExpireTicket),
    OpenSession(OpenSession),
    CloseSession(CloseSession),
    AnswerCoverageSurvey(AnswerCoverageSurvey),
}

/// Authorise a vaccination site of a directorate from a date.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct AuthoriseSite {
    #[schemars(pattern(ID_PATTERN))]
    pub directorate: String,
    #[schemars(pattern(ID_PATTERN))]
    pub site: String,
    pub site_kind: SiteKind,
    pub authorised_on: NaiveDate,
}

/// Record a dose given by the OFII.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct AdministerDose {
    #[schemars(pattern(ID_PATTERN))]
    pub person_ref: String,
    pub age_band: AgeBand,
    pub recipient: Recipient,
    #[schemars(pattern(ID_PATTERN))]
    pub directorate: String,
    #[schemars(pattern(ID_PATTERN))]
    pub site: String,
    pub product: Product,
    #[schemars(pattern(TEXT_PATTERN), length(max = 256))]
    pub lot: String,
    pub dose: DoseKind,
    pub administered_at: DateTime<FixedOffset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(ID_PATTERN))]
    pub session_id: Option<String>,
    #[serde(default)]
    pub prior_infection_counted: bool,
}

/// Record a dose given elsewhere (certificate shown): it counts for the series, never in OFII totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RecordExternalDose {
    #[schemars(pattern(ID_PATTERN))]
    pub person_ref: String,
    pub product: Product,
    pub dose: DoseKind,
    pub administered_at: DateTime<FixedOffset>,
    pub evidence: Evidence,
}

/// Record that a planned dose was not given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RecordDoseNotAdministered {
    #[schemars(pattern(ID_PATTERN))]
    pub person_ref: String,
    #[schemars(pattern(ID_PATTERN))]
    pub directorate: String,
    #[schemars(pattern(ID_PATTERN))]
    pub site: String,
    pub reason: NotAdministeredReason,
    pub at: DateTime<FixedOffset>,
}

/// Reverse a dose entry made in error, named by the command id that recorded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ReverseDoseEntry {
    pub reverses: Uuid,
    pub reason: ReversalReason,
}

/// Hand a person a ticket for walk-in vaccination at a partner centre.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct IssueTicket {
    #[schemars(pattern(ID_PATTERN))]
    pub ticket_id: String,
    #[schemars(pattern(ID_PATTERN))]
    pub person_ref: String,
    #[schemars(pattern(ID_PATTERN))]
    pub directorate: String,
    /// The partner centre's id in the reference list (`reference/partner_centres.toml`): a
    /// centre of the ticket's directorate, active on the day the ticket is issued.
    #[schemars(pattern(TEXT_PATTERN), length(max = 256))]
    pub partner_centre: String,
    pub issued_at: DateTime<FixedOffset>,
    pub valid_until: NaiveDate,
}

/// The partner centre reports the ticket used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RedeemTicket {
    #[schemars(pattern(ID_PATTERN))]
    pub ticket_id: String,
    pub redeemed_at: DateTime<FixedOffset>,
    pub dose: DoseKind,
    /// The partner centre that reports the redemption (an id of the ticket's directorate,
    /// active that day); absent: the centre the ticket was issued for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(TEXT_PATTERN), length(max = 256))]
    pub partner_centre: Option<String>,
}

/// Mark an unused ticket as expired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ExpireTicket {
    #[schemars(pattern(ID_PATTERN))]
    pub ticket_id: String,
    pub at: DateTime<FixedOffset>,
}

/// Open a vaccination session at a site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct OpenSession {
    #[schemars(pattern(ID_PATTERN))]
    pub session_id: String,
    #[schemars(pattern(ID_PATTERN))]
    pub directorate: String,
    #[schemars(pattern(ID_PATTERN))]
    pub site: String,
    pub opened_at: DateTime<FixedOffset>,
}

/// Close a session with its attendance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct CloseSession {
    #[schemars(pattern(ID_PATTERN))]
    pub session_id: String,
    pub closed_at: DateTime<FixedOffset>,
    pub attendance: u32,
}

/// One accommodation structure's answer to the coverage survey.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct AnswerCoverageSurvey {
    #[schemars(pattern(ID_PATTERN))]
    pub survey_id: String,
    #[schemars(pattern(ID_PATTERN))]
    pub structure_id: String,
    pub structure_type: StructureType,
    #[schemars(pattern(ID_PATTERN))]
    pub directorate: String,
    pub as_of: NaiveDate,
    pub residents: u32,
    pub residents_with_one_dose: u32,
    pub residents_fully_vaccinated: u32,
}

/// What `check_id` accepts, as the JSON Schemas state it.
pub const ID_PATTERN: &str = "^[A-Za-z0-9_:-]{1,128}$";
/// What `check_text` accepts (with at most 256 characters), as the JSON Schemas state it:
/// something besides white space, and no control character.
pub const TEXT_PATTERN: &str =
    "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$";

/// Identifiers become stream ids and NATS subject tokens: keep them to a safe alphabet.
/// Checks a person ref as every command does (for reads and erasure that name one).
pub fn check_person_ref(value: &str) -> Result<(), String> {
    check_id("person_ref", value)
}

fn check_id(field: &str, value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "\"{field}\" must be 1 to 128 characters among letters, digits, '-', '_' and ':' (got {value:?})."
        ))
    }
}

fn check_text(field: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() || value.chars().count() > 256 || value.chars().any(char::is_control)
    {
        Err(format!("\"{field}\" must be non-empty text of at most 256 characters without control characters."))
    } else {
        Ok(())
    }
}

/// Numbers with nothing after the point (`12.0`) as integers: JSON Schema counts them as
/// integers, and so does the ledger (the command is the same as with `12`).
fn integral(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&f) => {
                Value::from(f as u64)
            }
            Some(f) if f.fract() == 0.0 && (-9_223_372_036_854_775_808.0..0.0).contains(&f) => {
                Value::from(f as i64)
            }
            _ => Value::Number(n),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(integral).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, integral(v))).collect()),
        other => other,
    }
}

/// Reads one command type's fields, naming the field at fault in errors.
fn fields_of<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(integral(value)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let hint = if ["premature end of input", "input is out of range", "input contains invalid characters", "trailing input", "invalid characters"]
            .iter()
            .any(|m| inner.contains(m))
        {
            " Times are RFC 3339 with an offset (2021-10-04T10:00:00+02:00); dates are YYYY-MM-DD (2021-10-04)."
        } else {
            ""
        };
        let field = if path == "." { String::new() } else { format!("field {path:?}: ") };
        format!(
            "The command cannot be read: {field}{inner}.{hint} The README's \"Commands\" section lists every command's fields."
        )
    })
}

macro_rules! command_types {
    ($($v:ident),+) => {
        impl Command {
            /// Every command type name.
            pub const TYPES: &'static [&'static str] = &[$(stringify!($v)),+];

            /// The JSON Schema of each command type's fields (see `domain::schema`).
            pub fn field_schemas() -> Vec<(&'static str, schemars::Schema)> {
                vec![$((stringify!($v), schemars::schema_for!($v))),+]
            }

            fn from_fields(ty: &str, fields: serde_json::Value) -> Result<Command, String> {
                match ty {
                    $(stringify!($v) => fields_of(fields).map(Command::$v),)+
                    other => Err(format!(
                        "{other:?} is not a command type; use one of {}.",
                        Command::TYPES.join(", ")
                    )),
                }
            }
        }
    };
}

command_types!(
    AuthoriseSite,
    AdministerDose,
    RecordExternalDose,
    RecordDoseNotAdministered,
    ReverseDoseEntry,
    IssueTicket,
    RedeemTicket,
    ExpireTicket,
    OpenSession,
    CloseSession,
    AnswerCoverageSurvey
);

impl Command {
    /// The person the command names, if any (its `person_ref`).
    pub fn person_ref(&self) -> Option<&str> {
        match self {
            Command::AdministerDose(c) => Some(&c.person_ref),
            Command::RecordExternalDose(c) => Some(&c.person_ref),
            Command::RecordDoseNotAdministered(c) => Some(&c.person_ref),
            Command::IssueTicket(c) => Some(&c.person_ref),
            Command::AuthoriseSite(_)
            | Command::ReverseDoseEntry(_)
            | Command::RedeemTicket(_)
            | Command::ExpireTicket(_)
            | Command::OpenSession(_)
            | Command::CloseSession(_)
            | Command::AnswerCoverageSurvey(_) => None,
        }
    }

    /// The command's type name as in JSON.
    pub fn type_name(&self) -> &'static str {
        match self {
            Command::AuthoriseSite(_) => "AuthoriseSite",
            Command::AdministerDose(_) => "AdministerDose",
            Command::RecordExternalDose(_) => "RecordExternalDose",
            Command::RecordDoseNotAdministered(_) => "RecordDoseNotAdministered",
            Command::ReverseDoseEntry(_) => "ReverseDoseEntry",
            Command::IssueTicket(_) => "IssueTicket",
            Command::RedeemTicket(_) => "RedeemTicket",
            Command::ExpireTicket(_) => "ExpireTicket",
            Command::OpenSession(_) => "OpenSession",
            Command::CloseSession(_) => "CloseSession",
            Command::AnswerCoverageSurvey(_) => "AnswerCoverageSurvey",
        }
    }

    /// Shape checks that need no state (identifier alphabet, text length).
    fn validate(&self) -> Result<(), String> {
        match self {
            Command::AuthoriseSite(c) => {
                check_id("directorate", &c.directorate)?;
                check_id("site", &c.site)
            }
            Command::AdministerDose(c) => {
                check_id("person_ref", &c.person_ref)?;
                check_id("directorate", &c.directorate)?;
                check_id("site", &c.site)?;
                check_text("lot", &c.lot)?;
                if let Some(s) = &c.session_id {
                    check_id("session_id", s)?;
                }
                Ok(())
            }
            Command::RecordExternalDose(c) => check_id("person_ref", &c.person_ref),
            Command::RecordDoseNotAdministered(c) => {
                check_id("person_ref", &c.person_ref)?;
                check_id("directorate", &c.directorate)?;
                check_id("site", &c.site)
            }
            Command::ReverseDoseEntry(_) => Ok(()),
            Command::IssueTicket(c) => {
                check_id("ticket_id", &c.ticket_id)?;
                check_id("person_ref", &c.person_ref)?;
                check_id("directorate", &c.directorate)?;
                check_text("partner_centre", &c.partner_centre)
            }
            Command::RedeemTicket(c) => {
                check_id("ticket_id", &c.ticket_id)?;
                match &c.partner_centre {
                    Some(p) => check_text("partner_centre", p),
                    None => Ok(()),
                }
            }
            Command::ExpireTicket(c) => check_id("ticket_id", &c.ticket_id),
            Command::OpenSession(c) => {
                check_id("session_id", &c.session_id)?;
                check_id("directorate", &c.directorate)?;
                check_id("site", &c.site)
            }
            Command::CloseSession(c) => check_id("session_id", &c.session_id),
            Command::AnswerCoverageSurvey(c) => {
                check_id("survey_id", &c.survey_id)?;
                check_id("structure_id", &c.structure_id)?;
                check_id("directorate", &c.directorate)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_integer_written_with_a_point_is_the_same_command() {
        let a = r#"{"type":"CloseSession","command_id":"0193a1e2-7c4b-7d2e-9f00-2b1c3d4e5f60","session_id":"s1","closed_at":"2021-09-14T18:00:00+02:00","attendance":12}"#;
        let b = a.replace(":12}", ":12.0}");
        let a = CommandEnvelope::parse(a).unwrap();
        let b = CommandEnvelope::parse(&b).unwrap();
        assert_eq!(a.content_bytes(), b.content_bytes());
        let c = r#"{"type":"CloseSession","command_id":"0193a1e2-7c4b-7d2e-9f00-2b1c3d4e5f60","session_id":"s1","closed_at":"2021-09-14T18:00:00+02:00","attendance":12.5}"#;
        assert!(CommandEnvelope::parse(c).is_err());
    }

    #[test]
    fn parses_a_dose_and_ignores_key_order_for_content() {
        let a = r#"{"type":"AdministerDose","command_id":"0193a1e2-7c4b-7d2e-9f00-2b1c3d4e5f60","person_ref":"p1","age_band":"30-39","recipient":"user","directorate":"lyon","site":"lyon-dt","product":"comirnaty","lot":"FF1234","dose":"first","administered_at":"2021-09-14T10:00:00+02:00"}"#;
        let b = r#"{"lot":"FF1234","command_id":"0193a1e2-7c4b-7d2e-9f00-2b1c3d4e5f60","type":"AdministerDose","person_ref":"p1","age_band":"30-39","recipient":"user","directorate":"lyon","site":"lyon-dt","product":"comirnaty","dose":"first","administered_at":"2021-09-14T10:00:00+02:00","prior_infection_counted":false}"#;
        let a = CommandEnvelope::parse(a).unwrap();
        let b = CommandEnvelope::parse(b).unwrap();
        assert_eq!(a.content_bytes(), b.content_bytes());
    }

    #[test]
    fn unknown_fields_and_bad_ids_are_invalid_with_a_reason() {
        let e = CommandEnvelope::parse(r#"{"type":"ExpireTicket","command_id":"0193a1e2-7c4b-7d2e-9f00-2b1c3d4e5f60","ticket_id":"t1","at":"2021-10-01T00:00:00Z","sesion":1}"#).unwrap_err();
        assert_eq!(e.code, "invalid_command");
        assert!(e.message.contains("sesion"), "{}", e.message);
        let e =
            CommandEnvelope::parse(r#"{"type":"ExpireTicket","command_id":"nope"}"#).unwrap_err();
        assert_eq!(e.code, "bad_command_id");
        let e = CommandEnvelope::parse(r#"{"type":"ExpireTicket","command_id":"0193a1e2-7c4b-7d2e-9f00-2b1c3d4e5f60","ticket_id":"t1","at":"2021-02-30T10:00:00+01:00"}"#).unwrap_err();
        assert!(
            e.message.contains("field \"at\"") && e.message.contains("RFC 3339"),
            "{}",
            e.message
        );
        let e = CommandEnvelope::parse("{not json").unwrap_err();
        assert_eq!(e.code, "malformed_json");
        let e = CommandEnvelope::parse(r#"{"type":"ExpireTicket","command_id":"0193a1e2-7c4b-7d2e-9f00-2b1c3d4e5f60","ticket_id":"a b","at":"2021-10-01T00:00:00Z"}"#).unwrap_err();
        assert!(e.message.contains("ticket_id"));
    }
}

//! Stream naming and which streams a command reads and writes.

use crate::domain::command::*;
use crate::domain::types::*;

/// Stream ids. `/` cannot occur in identifiers, so ids never collide across kinds.
pub mod streams {
    /// A site's stream.
    pub fn site(directorate: &str, site: &str) -> String {
        format!("site/{directorate}/{site}")
    }
    /// A person's stream.
    pub fn person(person_ref: &str) -> String {
        format!("person/{person_ref}")
    }
    /// A ticket's stream.
    pub fn ticket(ticket_id: &str) -> String {
        format!("ticket/{ticket_id}")
    }
    /// A session's stream.
    pub fn session(session_id: &str) -> String {
        format!("session/{session_id}")
    }
    /// A structure's answers to one survey.
    pub fn survey(survey_id: &str, structure_id: &str) -> String {
        format!("survey/{survey_id}/{structure_id}")
    }
}

/// Which streams a command reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// The stream the events go to; `None` when it must be looked up (a reversal names the
    /// command it reverses, whose stream the store knows).
    pub target: Option<String>,
    /// A site stream to consult.
    pub site: Option<String>,
    /// A session stream to consult.
    pub session: Option<String>,
    /// The command usually starts its target stream (a first dose, a new ticket…): the
    /// handler may decide on an empty state first and let the store's expected-version check
    /// (stream must not exist) confirm it, saving a read. A wrong guess costs a retry, never
    /// a wrong decision.
    pub likely_new: bool,
}

impl Command {
    /// Streams to load before deciding.
    pub fn routing(&self) -> Routing {
        let likely_new = match self {
            Command::AdministerDose(c) => c.dose == DoseKind::First,
            Command::RecordExternalDose(c) => c.dose == DoseKind::First,
            Command::AuthoriseSite(_) | Command::IssueTicket(_) | Command::OpenSession(_) => true,
            _ => false,
        };
        let r = |target: Option<String>, site: Option<String>, session: Option<String>| Routing {
            target,
            site,
            session,
            likely_new,
        };
        match self {
            Command::AuthoriseSite(c) => {
                r(Some(streams::site(&c.directorate, &c.site)), None, None)
            }
            Command::AdministerDose(c) => r(
                Some(streams::person(&c.person_ref)),
                Some(streams::site(&c.directorate, &c.site)),
                c.session_id.as_deref().map(streams::session),
            ),
            Command::RecordExternalDose(c) => r(Some(streams::person(&c.person_ref)), None, None),
            Command::RecordDoseNotAdministered(c) => r(
                Some(streams::person(&c.person_ref)),
                Some(streams::site(&c.directorate, &c.site)),
                None,
            ),
            Command::ReverseDoseEntry(_) => r(None, None, None),
            Command::IssueTicket(c) => r(Some(streams::ticket(&c.ticket_id)), None, None),
            Command::RedeemTicket(c) => r(Some(streams::ticket(&c.ticket_id)), None, None),
            Command::ExpireTicket(c) => r(Some(streams::ticket(&c.ticket_id)), None, None),
            Command::OpenSession(c) => r(
                Some(streams::session(&c.session_id)),
                Some(streams::site(&c.directorate, &c.site)),
                None,
            ),
            Command::CloseSession(c) => r(Some(streams::session(&c.session_id)), None, None),
            Command::AnswerCoverageSurvey(c) => r(
                Some(streams::survey(&c.survey_id, &c.structure_id)),
                None,
                None,
            ),
        }
    }
}

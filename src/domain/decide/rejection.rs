//! Why a command was refused: stable codes and sentences for the person at the desk.

use chrono::{DateTime, FixedOffset, NaiveDate};
use uuid::Uuid;

/// Why a command was refused. `code()` is a stable snake_case string; `Display` is a sentence
/// for the person at the desk. A rejected command appends nothing and may be corrected and resent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs)]
pub enum Rejection {
    #[error("Site {site} of directorate {directorate} is not authorised for vaccination; authorise it first (AuthoriseSite).")]
    SiteNotAuthorised { directorate: String, site: String },
    #[error("Site {site} of directorate {directorate} is authorised only from {authorised_on}; check the date.")]
    SiteNotYetAuthorised {
        directorate: String,
        site: String,
        authorised_on: NaiveDate,
    },
    #[error(
        "Site {site} of directorate {directorate} is already authorised (since {authorised_on})."
    )]
    SiteAlreadyAuthorised {
        directorate: String,
        site: String,
        authorised_on: NaiveDate,
    },
    #[error("Directorate {0:?} is not in the reference list of directorates; check its id (for example \"lyon\").")]
    UnknownDirectorate(String),
    #[error("This person already has a first dose, given on {on} ({product}); record a second dose or a booster instead.")]
    FirstDoseAlreadyRecorded {
        on: NaiveDate,
        product: &'static str,
    },
    #[error("No first dose is recorded for this person; record the first dose (or the one given elsewhere, with RecordExternalDose) before the second.")]
    NoFirstDose,
    #[error("The second dose can be given from {earliest}, {days} days after the first ({product} on {first}).")]
    SecondDoseTooEarly {
        earliest: NaiveDate,
        days: i64,
        product: &'static str,
        first: NaiveDate,
    },
    #[error(
        "The primary series is already complete (since {completed}); record a booster instead."
    )]
    PrimarySeriesAlreadyComplete { completed: NaiveDate },
    #[error("The primary series is not complete yet; a booster needs two doses, one Jcovden dose, or one dose with a prior infection counted.")]
    PrimarySeriesIncomplete,
    #[error("Boosters are not open to the {band} age band on {on}; they open on {opens}.")]
    BoosterNotOpen {
        band: &'static str,
        on: NaiveDate,
        opens: NaiveDate,
    },
    #[error("Boosters are not open to the {band} age band under the current policy.")]
    BoosterNotOpenForBand { band: &'static str },
    #[error("The booster can be given from {earliest}, {months} months after the primary series was completed on {completed}.")]
    BoosterTooEarly {
        earliest: NaiveDate,
        months: u32,
        completed: NaiveDate,
    },
    #[error(
        "This person already had a booster on {on}; a second booster is not part of the policy."
    )]
    BoosterAlreadyGiven { on: NaiveDate },
    #[error("{product} is not allowed for the {band} age band ({rule}).")]
    ProductNotAllowedForAge {
        product: &'static str,
        band: &'static str,
        rule: &'static str,
    },
    #[error("The dose is dated {at}, which is in the future; check the date and time.")]
    AdministeredInFuture { at: DateTime<FixedOffset> },
    #[error("The {field} {at} is in the future; check the date and time.")]
    DatedInFuture {
        field: &'static str,
        at: DateTime<FixedOffset>,
    },
    #[error("No dose entry was recorded by command {0}; give the command_id of the AdministerDose or RecordExternalDose to reverse.")]
    UnknownEntry(Uuid),
    #[error("The entry recorded by command {0} is already reversed.")]
    AlreadyReversed(Uuid),
    #[error("Ticket {0} was never issued; check the ticket number.")]
    UnknownTicket(String),
    #[error("Ticket {0} was already issued; use a new ticket number.")]
    TicketAlreadyIssued(String),
    #[error("Ticket {0} was already redeemed on {1}.")]
    TicketAlreadyRedeemed(String, NaiveDate),
    #[error("Ticket {0} expired (valid until {1}).")]
    TicketExpired(String, NaiveDate),
    #[error("Ticket {0} is still valid until {1}; it can expire only after that day.")]
    TicketStillValid(String, NaiveDate),
    #[error("The ticket's validity ends on {valid_until}, before it is issued on {issued_on}; check the dates.")]
    TicketValidityInvalid {
        valid_until: NaiveDate,
        issued_on: NaiveDate,
    },
    #[error("Partner centre {centre:?} {problem}; {hint}.")]
    UnknownPartnerCentre {
        centre: String,
        problem: String,
        hint: String,
    },
    #[error("Ticket {0} is redeemed before it was issued; check the date.")]
    RedeemedBeforeIssued(String),
    #[error("Session {0} was never opened at this directorate and site; open it first (OpenSession) or check its id.")]
    UnknownSession(String),
    #[error("Session {0} is already open; use a new session id.")]
    SessionAlreadyOpened(String),
    #[error("Session {0} is already closed.")]
    SessionAlreadyClosed(String),
    #[error("Session {0} cannot close before it opened ({1}); check the time.")]
    SessionClosedBeforeOpened(String, DateTime<FixedOffset>),
    #[error("The survey answer is inconsistent: {0}; check the counts.")]
    SurveyCountsInconsistent(&'static str),
    #[error("Command id {0} was already used for a different command; choose a new id for a new command.")]
    CommandIdReused(Uuid),
}

impl Rejection {
    /// The stable code clients match on.
    pub fn code(&self) -> &'static str {
        use Rejection::*;
        match self {
            SiteNotAuthorised { .. } | SiteNotYetAuthorised { .. } => "site_not_authorised",
            SiteAlreadyAuthorised { .. } => "site_already_authorised",
            UnknownDirectorate(_) => "unknown_directorate",
            FirstDoseAlreadyRecorded { .. } => "first_dose_already_recorded",
            NoFirstDose => "no_first_dose",
            SecondDoseTooEarly { .. } => "second_dose_too_early",
            PrimarySeriesAlreadyComplete { .. } => "primary_series_already_complete",
            PrimarySeriesIncomplete => "primary_series_incomplete",
            BoosterNotOpen { .. } | BoosterNotOpenForBand { .. } => "booster_not_open",
            BoosterTooEarly { .. } => "booster_too_early",
            BoosterAlreadyGiven { .. } => "booster_already_given",
            ProductNotAllowedForAge { .. } => "product_not_allowed_for_age",
            AdministeredInFuture { .. } => "administered_in_future",
            DatedInFuture { .. } => "dated_in_future",
            UnknownEntry(_) => "unknown_entry",
            AlreadyReversed(_) => "already_reversed",
            UnknownTicket(_) => "unknown_ticket",
            TicketAlreadyIssued(_) => "ticket_already_issued",
            TicketAlreadyRedeemed(..) => "ticket_already_redeemed",
            TicketExpired(..) => "ticket_expired",
            TicketStillValid(..) => "ticket_still_valid",
            TicketValidityInvalid { .. } => "ticket_validity_invalid",
            RedeemedBeforeIssued(_) => "redeemed_before_issued",
            UnknownPartnerCentre { .. } => "unknown_partner_centre",
            UnknownSession(_) => "unknown_session",
            SessionAlreadyOpened(_) => "session_already_opened",
            SessionAlreadyClosed(_) => "session_already_closed",
            SessionClosedBeforeOpened(..) => "session_closed_before_opened",
            SurveyCountsInconsistent(_) => "survey_counts_inconsistent",
            CommandIdReused(_) => "command_id_reused",
        }
    }
}

//! The decider: `decide(command, state, context) -> events | rejection`, and the fold
//! (`StreamState::evolve`). Pure: no IO, no clock (now comes in the context), no storage.
//! One file per aggregate (`doses`, `tickets`, `sessions`, `sites`); the stream names and
//! routing in `routing`, the state in `state`, the refusals in `rejection`.

mod doses;
mod rejection;
mod routing;
mod sessions;
mod sites;
mod state;
mod tickets;

pub use rejection::Rejection;
pub use routing::{streams, Routing};
pub use state::{DoseEntry, Origin, PersonState, SessionState, StreamState, TicketState};

use super::command::*;
use super::event::*;
use super::policy::{Policy, Reference};
use chrono::{DateTime, Duration, FixedOffset, Utc};

/// Everything `decide` may consult besides the target stream's state.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The current instant (from the command handler's clock).
    pub now: DateTime<Utc>,
    /// Rules in force.
    pub policy: &'a Policy,
    /// Reference data.
    pub reference: &'a Reference,
    /// State of the site stream the command names, if it names one.
    pub site: Option<&'a StreamState>,
    /// State of the session stream the command names, if it names one.
    pub session: Option<&'a StreamState>,
}

pub(super) fn not_future(
    ctx: &Context,
    field: &'static str,
    at: DateTime<FixedOffset>,
) -> Result<(), Rejection> {
    if at.with_timezone(&Utc) > ctx.now + Duration::seconds(ctx.policy.future_tolerance_secs) {
        Err(if field == "dose" {
            Rejection::AdministeredInFuture { at }
        } else {
            Rejection::DatedInFuture { field, at }
        })
    } else {
        Ok(())
    }
}

pub(super) fn known_directorate(ctx: &Context, id: &str) -> Result<(), Rejection> {
    if ctx.reference.directorates.contains_key(id) {
        Ok(())
    } else {
        Err(Rejection::UnknownDirectorate(id.to_string()))
    }
}

pub(super) fn site_open(
    ctx: &Context,
    directorate: &str,
    site: &str,
    at: DateTime<FixedOffset>,
) -> Result<(), Rejection> {
    match ctx.site.and_then(|s| s.site.as_ref()) {
        None => Err(Rejection::SiteNotAuthorised {
            directorate: directorate.into(),
            site: site.into(),
        }),
        Some(a) if ctx.policy.local_date(at) < a.authorised_on => {
            Err(Rejection::SiteNotYetAuthorised {
                directorate: directorate.into(),
                site: site.into(),
                authorised_on: a.authorised_on,
            })
        }
        Some(_) => Ok(()),
    }
}

/// Decides what a command records, given the state of its target stream and the context.
pub fn decide(
    command: &Command,
    state: &StreamState,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    match command {
        Command::AdministerDose(c) => doses::administer_dose(c, state, ctx),
        Command::RecordExternalDose(c) => doses::record_external_dose(c, state, ctx),
        Command::RecordDoseNotAdministered(c) => doses::record_dose_not_administered(c, ctx),
        Command::ReverseDoseEntry(c) => doses::reverse_dose_entry(c, state),
        Command::IssueTicket(c) => tickets::issue_ticket(c, state, ctx),
        Command::RedeemTicket(c) => tickets::redeem_ticket(c, state, ctx),
        Command::ExpireTicket(c) => tickets::expire_ticket(c, state, ctx),
        Command::OpenSession(c) => sessions::open_session(c, state, ctx),
        Command::CloseSession(c) => sessions::close_session(c, state, ctx),
        Command::AuthoriseSite(c) => sites::authorise_site(c, state, ctx),
        Command::AnswerCoverageSurvey(c) => sites::answer_coverage_survey(c, ctx),
    }
}

//! The folded state of one stream (`evolve`): a person's doses, a ticket, a session, a site.

use crate::domain::event::*;
use crate::domain::policy::Policy;
use crate::domain::types::*;
use chrono::{DateTime, FixedOffset, NaiveDate};
use uuid::Uuid;

/// Where an event came from: what `evolve` needs beyond the event data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The event's id.
    pub event_id: Uuid,
    /// The command that recorded it.
    pub command_id: Uuid,
}

/// A dose in a person's history.
#[derive(Debug, Clone, PartialEq)]
pub struct DoseEntry {
    /// The event that recorded it.
    pub origin: Origin,
    /// Whose dose.
    pub person_ref: String,
    /// Given by the OFII (`Some`) or elsewhere (`None`).
    pub given: Option<DoseAdministered>,
    /// Kind of dose.
    pub kind: DoseKind,
    /// Product.
    pub product: Product,
    /// When.
    pub at: DateTime<FixedOffset>,
    /// Counts a prior infection as a dose of the primary series.
    pub prior_infection_counted: bool,
    /// Reversed as entered in error.
    pub reversed: bool,
}

/// A person's vaccination history, as far as the rules need it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PersonState {
    /// Every dose entry, reversed ones included.
    pub doses: Vec<DoseEntry>,
}

impl PersonState {
    pub(super) fn valid(&self) -> impl Iterator<Item = &DoseEntry> {
        self.doses.iter().filter(|d| !d.reversed)
    }

    /// The valid first dose, if any.
    pub fn first(&self) -> Option<&DoseEntry> {
        self.valid().find(|d| d.kind == DoseKind::First)
    }

    /// The valid booster, if any.
    pub fn booster(&self) -> Option<&DoseEntry> {
        self.valid().find(|d| d.kind == DoseKind::Booster)
    }

    /// When the primary series was completed: after two doses, one Jcovden dose, or one dose
    /// with a prior infection counted.
    pub fn series_completed_at(&self, policy: &Policy) -> Option<NaiveDate> {
        let mut primary: Vec<&DoseEntry> = self
            .valid()
            .filter(|d| d.kind != DoseKind::Booster)
            .collect();
        primary.sort_by_key(|d| d.at);
        for (i, d) in primary.iter().enumerate() {
            if i >= 1 || d.product == Product::Jcovden || d.prior_infection_counted {
                return Some(policy.local_date(d.at));
            }
        }
        None
    }
}

/// A ticket's life.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketState {
    /// As issued.
    pub issued: TicketIssued,
    /// Redemption date, if redeemed.
    pub redeemed_on: Option<NaiveDate>,
    /// Expired.
    pub expired: bool,
}

/// A session's life.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionState {
    /// As opened.
    pub opened: SessionOpened,
    /// Closed.
    pub closed: bool,
}

/// The folded state of one stream. Each stream holds one kind of entity, so only one part is
/// ever filled; one type keeps loading and folding uniform.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamState {
    /// Number of events folded (the stream version).
    pub version: u64,
    /// Site authorisation.
    pub site: Option<SiteAuthorised>,
    /// Person history.
    pub person: PersonState,
    /// Ticket.
    pub ticket: Option<TicketState>,
    /// Session.
    pub session: Option<SessionState>,
}

impl StreamState {
    /// Folds one event into the state.
    pub fn evolve(&mut self, event: &Event, origin: Origin, policy: &Policy) {
        self.version += 1;
        match event {
            Event::SiteAuthorised(e) => self.site = Some(e.clone()),
            Event::DoseAdministered(e) => self.person.doses.push(DoseEntry {
                origin,
                person_ref: e.person_ref.clone(),
                given: Some(e.clone()),
                kind: e.dose,
                product: e.product,
                at: e.administered_at,
                prior_infection_counted: e.prior_infection_counted,
                reversed: false,
            }),
            Event::ExternalDoseRecorded(e) => self.person.doses.push(DoseEntry {
                origin,
                person_ref: e.person_ref.clone(),
                given: None,
                kind: e.dose,
                product: e.product,
                at: e.administered_at,
                prior_infection_counted: false,
                reversed: false,
            }),
            Event::DoseEntryReversed(DoseEntryReversed {
                reversed_event_id, ..
            })
            | Event::ExternalDoseReversed(ExternalDoseReversed {
                reversed_event_id, ..
            }) => {
                if let Some(d) = self
                    .person
                    .doses
                    .iter_mut()
                    .find(|d| d.origin.event_id == *reversed_event_id)
                {
                    d.reversed = true;
                }
            }
            Event::DoseNotAdministered(_)
            | Event::CoverageSurveyAnswered(_)
            | Event::PersonErased(_)
            | Event::KeyStoreBound(_) => {}
            Event::TicketIssued(e) => {
                self.ticket = Some(TicketState {
                    issued: e.clone(),
                    redeemed_on: None,
                    expired: false,
                })
            }
            Event::TicketRedeemed(e) => {
                if let Some(t) = &mut self.ticket {
                    t.redeemed_on = Some(policy.local_date(e.redeemed_at));
                }
            }
            Event::TicketExpired(_) => {
                if let Some(t) = &mut self.ticket {
                    t.expired = true;
                }
            }
            Event::SessionOpened(e) => {
                self.session = Some(SessionState {
                    opened: e.clone(),
                    closed: false,
                })
            }
            Event::SessionClosed(_) => {
                if let Some(s) = &mut self.session {
                    s.closed = true;
                }
            }
        }
    }
}

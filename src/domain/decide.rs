//! The decider: `decide(command, state, context) -> events | rejection` and `evolve`.
//! Pure: no IO, no clock (now comes in the context), no storage.

use super::command::*;
use super::event::*;
use super::policy::{Policy, Reference};
use super::types::*;
use chrono::{DateTime, Duration, FixedOffset, Months, NaiveDate, Utc};
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
    fn valid(&self) -> impl Iterator<Item = &DoseEntry> {
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
            | Event::PersonErased(_) => {}
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

fn not_future(
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

fn known_directorate(ctx: &Context, id: &str) -> Result<(), Rejection> {
    if ctx.reference.directorates.contains_key(id) {
        Ok(())
    } else {
        Err(Rejection::UnknownDirectorate(id.to_string()))
    }
}

fn site_open(
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

/// The partner centre `id` as a centre of `directorate` taking tickets on `day`.
fn partner_centre(
    ctx: &Context,
    id: &str,
    directorate: &str,
    day: NaiveDate,
) -> Result<(), Rejection> {
    let hint = || {
        let own: Vec<String> = ctx
            .reference
            .partner_centres
            .values()
            .filter(|c| c.directorate == directorate && c.active_on(day))
            .map(|c| format!("{} ({})", c.id, c.name))
            .collect();
        if own.is_empty() {
            format!("directorate {directorate} has no partner centre taking tickets on {day} in the reference list")
        } else {
            format!(
                "give the id of one of {directorate}'s centres: {}",
                own.join(", ")
            )
        }
    };
    let refuse = |problem: String| {
        Err(Rejection::UnknownPartnerCentre {
            centre: id.to_string(),
            problem,
            hint: hint(),
        })
    };
    match ctx.reference.partner_centres.get(id) {
        None => match ctx.reference.partner_centre(id) {
            Some(c) => refuse(format!("is a name; centres are named by id ({})", c.id)),
            None => refuse("is not in the reference list of partner centres".into()),
        },
        Some(c) if c.directorate != directorate => refuse(format!(
            "belongs to directorate {}, not {directorate}",
            c.directorate
        )),
        Some(c) if !c.active_on(day) => refuse(format!(
            "does not take tickets on {day} (active from {}{})",
            c.active_from,
            c.active_until
                .map(|u| format!(" until {u}"))
                .unwrap_or_default()
        )),
        Some(_) => Ok(()),
    }
}

fn product_allowed(product: Product, band: AgeBand) -> Result<(), Rejection> {
    let refuse = |rule| {
        Err(Rejection::ProductNotAllowedForAge {
            product: product.label(),
            band: band.as_str(),
            rule,
        })
    };
    if band.is_minor() && product != Product::Comirnaty {
        return refuse("12-17 year olds receive Comirnaty only");
    }
    if matches!(product, Product::Vaxzevria | Product::Jcovden) && !band.is_55_plus() {
        return refuse("Vaxzevria and Jcovden are for people aged 55 and over");
    }
    Ok(())
}

/// The schedule rules shared by OFII doses and doses given elsewhere. Intervals and boosters'
/// opening apply only to the OFII's own doses (`checked`): a certificate records what happened.
fn series_rules(
    person: &PersonState,
    ctx: &Context,
    kind: DoseKind,
    at: DateTime<FixedOffset>,
    band: Option<AgeBand>,
) -> Result<(), Rejection> {
    let policy = ctx.policy;
    let day = policy.local_date(at);
    let completed = person.series_completed_at(policy);
    match kind {
        DoseKind::First => {
            if let Some(first) = person.first() {
                return Err(Rejection::FirstDoseAlreadyRecorded {
                    on: policy.local_date(first.at),
                    product: first.product.label(),
                });
            }
        }
        DoseKind::Second => {
            let Some(first) = person.first() else {
                return Err(Rejection::NoFirstDose);
            };
            if let Some(completed) = completed {
                return Err(Rejection::PrimarySeriesAlreadyComplete { completed });
            }
            if band.is_some() {
                if let Some(&days) = policy.second_dose_min_days.get(&first.product) {
                    let first_day = policy.local_date(first.at);
                    let earliest = first_day + Duration::days(days);
                    if day < earliest {
                        return Err(Rejection::SecondDoseTooEarly {
                            earliest,
                            days,
                            product: first.product.label(),
                            first: first_day,
                        });
                    }
                }
            }
        }
        DoseKind::Booster => {
            if let Some(band) = band {
                match policy.booster_opening(band) {
                    None => {
                        return Err(Rejection::BoosterNotOpenForBand {
                            band: band.as_str(),
                        })
                    }
                    Some(opens) if day < opens => {
                        return Err(Rejection::BoosterNotOpen {
                            band: band.as_str(),
                            on: day,
                            opens,
                        })
                    }
                    Some(_) => {}
                }
            }
            let Some(completed) = completed else {
                return Err(Rejection::PrimarySeriesIncomplete);
            };
            if let Some(b) = person.booster() {
                return Err(Rejection::BoosterAlreadyGiven {
                    on: policy.local_date(b.at),
                });
            }
            if band.is_some() {
                let months = policy.booster_delay_months(day);
                let earliest = completed
                    .checked_add_months(Months::new(months))
                    .unwrap_or(completed);
                if day < earliest {
                    return Err(Rejection::BoosterTooEarly {
                        earliest,
                        months,
                        completed,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Decides what a command records, given the state of its target stream and the context.
pub fn decide(
    command: &Command,
    state: &StreamState,
    ctx: &Context,
) -> Result<Vec<Event>, Rejection> {
    let policy = ctx.policy;
    match command {
        Command::AuthoriseSite(c) => {
            known_directorate(ctx, &c.directorate)?;
            if let Some(a) = &state.site {
                return Err(Rejection::SiteAlreadyAuthorised {
                    directorate: c.directorate.clone(),
                    site: c.site.clone(),
                    authorised_on: a.authorised_on,
                });
            }
            Ok(vec![Event::SiteAuthorised(SiteAuthorised {
                directorate: c.directorate.clone(),
                site: c.site.clone(),
                site_kind: c.site_kind,
                authorised_on: c.authorised_on,
            })])
        }
        Command::AdministerDose(c) => {
            not_future(ctx, "dose", c.administered_at)?;
            site_open(ctx, &c.directorate, &c.site, c.administered_at)?;
            if let Some(sid) = &c.session_id {
                let matches = ctx
                    .session
                    .and_then(|s| s.session.as_ref())
                    .is_some_and(|s| {
                        s.opened.directorate == c.directorate && s.opened.site == c.site
                    });
                if !matches {
                    return Err(Rejection::UnknownSession(sid.clone()));
                }
            }
            product_allowed(c.product, c.age_band)?;
            series_rules(
                &state.person,
                ctx,
                c.dose,
                c.administered_at,
                Some(c.age_band),
            )?;
            let dose_number = state
                .person
                .valid()
                .filter(|d| d.at <= c.administered_at)
                .count() as u32
                + 1;
            Ok(vec![Event::DoseAdministered(DoseAdministered {
                person_ref: c.person_ref.clone(),
                age_band: c.age_band,
                recipient: c.recipient,
                directorate: c.directorate.clone(),
                site: c.site.clone(),
                session_id: c.session_id.clone(),
                product: c.product,
                lot: c.lot.clone(),
                dose: c.dose,
                dose_number,
                series_doses: c.product.primary_series_doses(),
                administered_at: c.administered_at,
                prior_infection_counted: c.prior_infection_counted,
            })])
        }
        Command::RecordExternalDose(c) => {
            not_future(ctx, "dose", c.administered_at)?;
            series_rules(&state.person, ctx, c.dose, c.administered_at, None)?;
            Ok(vec![Event::ExternalDoseRecorded(ExternalDoseRecorded {
                person_ref: c.person_ref.clone(),
                product: c.product,
                dose: c.dose,
                administered_at: c.administered_at,
                evidence: c.evidence,
            })])
        }
        Command::RecordDoseNotAdministered(c) => {
            not_future(ctx, "time", c.at)?;
            site_open(ctx, &c.directorate, &c.site, c.at)?;
            Ok(vec![Event::DoseNotAdministered(DoseNotAdministered {
                person_ref: c.person_ref.clone(),
                directorate: c.directorate.clone(),
                site: c.site.clone(),
                reason: c.reason,
                at: c.at,
            })])
        }
        Command::ReverseDoseEntry(c) => {
            let entry = state
                .person
                .doses
                .iter()
                .find(|d| d.origin.command_id == c.reverses)
                .ok_or(Rejection::UnknownEntry(c.reverses))?;
            if entry.reversed {
                return Err(Rejection::AlreadyReversed(c.reverses));
            }
            // Accepted whatever was recorded after it (a correction states a fact about the
            // record): what it breaks in the series becomes a finding (`findings`), not a refusal.
            match &entry.given {
                Some(given) => Ok(vec![Event::DoseEntryReversed(DoseEntryReversed {
                    reversed_event_id: entry.origin.event_id,
                    reversed_command_id: entry.origin.command_id,
                    reason: c.reason,
                    person_ref: given.person_ref.clone(),
                    age_band: given.age_band,
                    recipient: given.recipient,
                    directorate: given.directorate.clone(),
                    site: given.site.clone(),
                    session_id: given.session_id.clone(),
                    product: given.product,
                    dose: given.dose,
                    administered_at: given.administered_at,
                })]),
                None => Ok(vec![Event::ExternalDoseReversed(ExternalDoseReversed {
                    reversed_event_id: entry.origin.event_id,
                    reversed_command_id: entry.origin.command_id,
                    reason: c.reason,
                    person_ref: entry.person_ref.clone(),
                    product: entry.product,
                    dose: entry.kind,
                    administered_at: entry.at,
                })]),
            }
        }
        Command::IssueTicket(c) => {
            known_directorate(ctx, &c.directorate)?;
            not_future(ctx, "issue time", c.issued_at)?;
            if state.ticket.is_some() {
                return Err(Rejection::TicketAlreadyIssued(c.ticket_id.clone()));
            }
            let issued_on = policy.local_date(c.issued_at);
            partner_centre(ctx, &c.partner_centre, &c.directorate, issued_on)?;
            if c.valid_until < issued_on {
                return Err(Rejection::TicketValidityInvalid {
                    valid_until: c.valid_until,
                    issued_on,
                });
            }
            Ok(vec![Event::TicketIssued(TicketIssued {
                ticket_id: c.ticket_id.clone(),
                person_ref: c.person_ref.clone(),
                directorate: c.directorate.clone(),
                partner_centre: c.partner_centre.clone(),
                issued_at: c.issued_at,
                valid_until: c.valid_until,
            })])
        }
        Command::RedeemTicket(c) => {
            not_future(ctx, "redemption time", c.redeemed_at)?;
            let t = state
                .ticket
                .as_ref()
                .ok_or_else(|| Rejection::UnknownTicket(c.ticket_id.clone()))?;
            if let Some(on) = t.redeemed_on {
                return Err(Rejection::TicketAlreadyRedeemed(c.ticket_id.clone(), on));
            }
            if t.expired || policy.local_date(c.redeemed_at) > t.issued.valid_until {
                return Err(Rejection::TicketExpired(
                    c.ticket_id.clone(),
                    t.issued.valid_until,
                ));
            }
            if c.redeemed_at < t.issued.issued_at {
                return Err(Rejection::RedeemedBeforeIssued(c.ticket_id.clone()));
            }
            let centre = match &c.partner_centre {
                Some(id) => {
                    let day = policy.local_date(c.redeemed_at);
                    partner_centre(ctx, id, &t.issued.directorate, day)?;
                    id.clone()
                }
                // A ticket of a log written before centres had ids names its centre.
                None => ctx
                    .reference
                    .centre_id(&t.issued.partner_centre)
                    .to_string(),
            };
            Ok(vec![Event::TicketRedeemed(TicketRedeemed {
                ticket_id: c.ticket_id.clone(),
                directorate: t.issued.directorate.clone(),
                partner_centre: centre,
                redeemed_at: c.redeemed_at,
                dose: c.dose,
            })])
        }
        Command::ExpireTicket(c) => {
            not_future(ctx, "expiry time", c.at)?;
            let t = state
                .ticket
                .as_ref()
                .ok_or_else(|| Rejection::UnknownTicket(c.ticket_id.clone()))?;
            if let Some(on) = t.redeemed_on {
                return Err(Rejection::TicketAlreadyRedeemed(c.ticket_id.clone(), on));
            }
            if t.expired {
                return Err(Rejection::TicketExpired(
                    c.ticket_id.clone(),
                    t.issued.valid_until,
                ));
            }
            if policy.local_date(c.at) <= t.issued.valid_until {
                return Err(Rejection::TicketStillValid(
                    c.ticket_id.clone(),
                    t.issued.valid_until,
                ));
            }
            Ok(vec![Event::TicketExpired(TicketExpired {
                ticket_id: c.ticket_id.clone(),
                directorate: t.issued.directorate.clone(),
                partner_centre: ctx
                    .reference
                    .centre_id(&t.issued.partner_centre)
                    .to_string(),
                at: c.at,
            })])
        }
        Command::OpenSession(c) => {
            not_future(ctx, "opening time", c.opened_at)?;
            if state.session.is_some() {
                return Err(Rejection::SessionAlreadyOpened(c.session_id.clone()));
            }
            site_open(ctx, &c.directorate, &c.site, c.opened_at)?;
            Ok(vec![Event::SessionOpened(SessionOpened {
                session_id: c.session_id.clone(),
                directorate: c.directorate.clone(),
                site: c.site.clone(),
                opened_at: c.opened_at,
            })])
        }
        Command::CloseSession(c) => {
            not_future(ctx, "closing time", c.closed_at)?;
            let s = state
                .session
                .as_ref()
                .ok_or_else(|| Rejection::UnknownSession(c.session_id.clone()))?;
            if s.closed {
                return Err(Rejection::SessionAlreadyClosed(c.session_id.clone()));
            }
            if c.closed_at < s.opened.opened_at {
                return Err(Rejection::SessionClosedBeforeOpened(
                    c.session_id.clone(),
                    s.opened.opened_at,
                ));
            }
            Ok(vec![Event::SessionClosed(SessionClosed {
                session_id: c.session_id.clone(),
                directorate: s.opened.directorate.clone(),
                site: s.opened.site.clone(),
                opened_at: s.opened.opened_at,
                closed_at: c.closed_at,
                attendance: c.attendance,
            })])
        }
        Command::AnswerCoverageSurvey(c) => {
            known_directorate(ctx, &c.directorate)?;
            if c.residents_with_one_dose > c.residents {
                return Err(Rejection::SurveyCountsInconsistent(
                    "more residents with one dose than residents",
                ));
            }
            if c.residents_fully_vaccinated > c.residents_with_one_dose {
                return Err(Rejection::SurveyCountsInconsistent(
                    "more residents fully vaccinated than residents with at least one dose",
                ));
            }
            Ok(vec![Event::CoverageSurveyAnswered(
                CoverageSurveyAnswered {
                    survey_id: c.survey_id.clone(),
                    structure_id: c.structure_id.clone(),
                    structure_type: c.structure_type,
                    directorate: c.directorate.clone(),
                    as_of: c.as_of,
                    residents: c.residents,
                    residents_with_one_dose: c.residents_with_one_dose,
                    residents_fully_vaccinated: c.residents_fully_vaccinated,
                },
            )])
        }
    }
}

//! Decider specifications: given events / when command / then events or rejection code.

use super::*;
use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use uuid::Uuid;

struct Spec {
    policy: Policy,
    reference: Reference,
    now: DateTime<Utc>,
    given: StreamState,
    site: StreamState,
    session: StreamState,
    n: u128,
}

fn at(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).unwrap()
}

fn day(s: &str) -> chrono::NaiveDate {
    s.parse().unwrap()
}

impl Spec {
    fn new() -> Spec {
        let mut s = Spec {
            policy: Policy::default(),
            reference: Reference::builtin(),
            now: Utc.with_ymd_and_hms(2021, 12, 31, 12, 0, 0).unwrap(),
            given: StreamState::default(),
            site: StreamState::default(),
            session: StreamState::default(),
            n: 0,
        };
        let site = Event::SiteAuthorised(SiteAuthorised {
            directorate: "lyon".into(),
            site: "lyon-dt".into(),
            site_kind: SiteKind::DtPremises,
            authorised_on: day("2021-01-04"),
        });
        let o = s.origin();
        s.site.evolve(&site, o, &Policy::default());
        s
    }

    fn origin(&mut self) -> Origin {
        self.n += 1;
        Origin {
            event_id: Uuid::from_u128(self.n),
            command_id: Uuid::from_u128(1000 + self.n),
        }
    }

    /// Given: the command was accepted earlier (its events folded into the target stream).
    fn given(mut self, command: Command) -> Spec {
        let events = self.when(&command).expect("given command is accepted");
        for e in events {
            let o = self.origin();
            self.given.evolve(&e, o, &self.policy);
        }
        self
    }

    fn with_session(mut self, id: &str) -> Spec {
        let e = Event::SessionOpened(SessionOpened {
            session_id: id.into(),
            directorate: "lyon".into(),
            site: "lyon-dt".into(),
            opened_at: at("2021-10-01T09:00:00+02:00"),
        });
        let o = self.origin();
        self.session.evolve(&e, o, &self.policy);
        self
    }

    fn when(&self, command: &Command) -> Result<Vec<Event>, Rejection> {
        let ctx = Context {
            now: self.now,
            policy: &self.policy,
            reference: &self.reference,
            site: Some(&self.site),
            session: Some(&self.session),
        };
        decide(command, &self.given, &ctx)
    }

    fn then_rejected(&self, command: Command, code: &str) -> String {
        match self.when(&command) {
            Err(r) => {
                assert_eq!(r.code(), code, "{r}");
                r.to_string()
            }
            Ok(e) => panic!("expected {code}, got events {e:?}"),
        }
    }
}

fn dose(kind: DoseKind, product: Product, when: &str) -> AdministerDose {
    AdministerDose {
        person_ref: "p1".into(),
        age_band: AgeBand::A30to39,
        recipient: Recipient::User,
        directorate: "lyon".into(),
        site: "lyon-dt".into(),
        product,
        lot: "FF1234".into(),
        dose: kind,
        administered_at: at(when),
        session_id: None,
        prior_infection_counted: false,
    }
}

fn give(kind: DoseKind, product: Product, when: &str) -> Command {
    Command::AdministerDose(dose(kind, product, when))
}

use DoseKind::*;
use Product::*;

#[test]
fn a_first_dose_is_recorded_with_its_number() {
    let events = Spec::new()
        .when(&give(First, Comirnaty, "2021-09-14T10:00:00+02:00"))
        .unwrap();
    match &events[..] {
        [Event::DoseAdministered(d)] => {
            assert_eq!(d.dose_number, 1);
            assert_eq!(d.directorate, "lyon");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn site_not_authorised_for_unknown_site_or_before_its_date() {
    let s = Spec::new();
    let mut c = dose(First, Comirnaty, "2021-09-14T10:00:00+02:00");
    c.site = "elsewhere".into();
    let mut ctx_less = Spec::new();
    ctx_less.site = StreamState::default();
    ctx_less.then_rejected(Command::AdministerDose(c), "site_not_authorised");
    let msg = s.then_rejected(
        give(First, Comirnaty, "2021-01-03T10:00:00+01:00"),
        "site_not_authorised",
    );
    assert!(msg.contains("2021-01-04"), "{msg}");
}

#[test]
fn first_dose_already_recorded() {
    Spec::new()
        .given(give(First, Comirnaty, "2021-09-14T10:00:00+02:00"))
        .then_rejected(
            give(First, Comirnaty, "2021-10-14T10:00:00+02:00"),
            "first_dose_already_recorded",
        );
}

#[test]
fn no_first_dose_before_a_second() {
    Spec::new().then_rejected(
        give(Second, Comirnaty, "2021-10-14T10:00:00+02:00"),
        "no_first_dose",
    );
}

#[test]
fn second_dose_intervals_depend_on_the_first_product() {
    for (product, days, ok, early) in [
        (
            Comirnaty,
            21,
            "2021-10-05T09:00:00+02:00",
            "2021-10-04T23:00:00+02:00",
        ),
        (
            Spikevax,
            28,
            "2021-10-12T09:00:00+02:00",
            "2021-10-11T09:00:00+02:00",
        ),
        (
            Vaxzevria,
            63,
            "2021-11-16T09:00:00+01:00",
            "2021-11-15T09:00:00+01:00",
        ),
    ] {
        let mut first = dose(First, product, "2021-09-14T10:00:00+02:00");
        first.age_band = AgeBand::A55to64;
        let s = Spec::new().given(Command::AdministerDose(first));
        let mut second = dose(Second, Comirnaty, early);
        second.age_band = AgeBand::A55to64;
        let msg = s.then_rejected(
            Command::AdministerDose(second.clone()),
            "second_dose_too_early",
        );
        assert!(
            msg.contains(&format!("{days} days after the first")),
            "{msg}"
        );
        second.administered_at = at(ok);
        assert!(
            s.when(&Command::AdministerDose(second)).is_ok(),
            "{product:?}"
        );
    }
}

#[test]
fn the_message_reads_as_a_sentence_for_a_nurse() {
    let msg = Spec::new()
        .given(give(First, Comirnaty, "2021-09-10T10:00:00+02:00"))
        .then_rejected(
            give(Second, Comirnaty, "2021-09-20T10:00:00+02:00"),
            "second_dose_too_early",
        );
    assert_eq!(msg, "The second dose can be given from 2021-10-01, 21 days after the first (Comirnaty on 2021-09-10).");
}

#[test]
fn a_second_dose_after_a_complete_series_is_refused() {
    let mut janssen = dose(First, Jcovden, "2021-09-14T10:00:00+02:00");
    janssen.age_band = AgeBand::A55to64;
    Spec::new()
        .given(Command::AdministerDose(janssen))
        .then_rejected(
            give(Second, Comirnaty, "2021-10-14T10:00:00+02:00"),
            "primary_series_already_complete",
        );
}

#[test]
fn booster_needs_a_complete_series() {
    Spec::new()
        .given(give(First, Comirnaty, "2021-05-14T10:00:00+02:00"))
        .then_rejected(
            give(Booster, Comirnaty, "2021-12-01T10:00:00+01:00"),
            "primary_series_incomplete",
        );
}

#[test]
fn booster_opening_dates_by_age_band() {
    let s = Spec::new()
        .given(give(First, Comirnaty, "2021-03-01T10:00:00+01:00"))
        .given(give(Second, Comirnaty, "2021-03-29T10:00:00+02:00"));
    let msg = s.then_rejected(
        give(Booster, Comirnaty, "2021-11-26T10:00:00+01:00"),
        "booster_not_open",
    );
    assert!(msg.contains("2021-11-27"), "{msg}");
    assert!(s
        .when(&give(Booster, Comirnaty, "2021-11-27T10:00:00+01:00"))
        .is_ok());
    let mut old = dose(Booster, Comirnaty, "2021-09-02T10:00:00+02:00");
    old.age_band = AgeBand::A75plus;
    assert!(s.when(&Command::AdministerDose(old)).is_ok());
    let mut minor = dose(Booster, Comirnaty, "2021-12-02T10:00:00+01:00");
    minor.age_band = AgeBand::A12to17;
    s.then_rejected(Command::AdministerDose(minor), "booster_not_open");
}

#[test]
fn booster_too_early_counts_calendar_months_from_the_series_end() {
    let s = Spec::new()
        .given(give(First, Comirnaty, "2021-06-10T10:00:00+02:00"))
        .given(give(Second, Comirnaty, "2021-07-01T10:00:00+02:00"));
    let msg = s.then_rejected(
        give(Booster, Comirnaty, "2021-11-30T10:00:00+01:00"),
        "booster_too_early",
    );
    assert!(msg.contains("2021-12-01"), "{msg}");
    assert!(s
        .when(&give(Booster, Comirnaty, "2021-12-01T10:00:00+01:00"))
        .is_ok());
}

#[test]
fn booster_delay_shortens_to_three_months_from_28_december() {
    let s = Spec::new()
        .given(give(First, Comirnaty, "2021-08-20T10:00:00+02:00"))
        .given(give(Second, Comirnaty, "2021-09-20T10:00:00+02:00"));
    s.then_rejected(
        give(Booster, Comirnaty, "2021-12-27T10:00:00+01:00"),
        "booster_too_early",
    );
    assert!(s
        .when(&give(Booster, Comirnaty, "2021-12-28T10:00:00+01:00"))
        .is_ok());
}

#[test]
fn prior_infection_and_external_doses_complete_the_series() {
    let mut first = dose(First, Comirnaty, "2021-05-10T10:00:00+02:00");
    first.prior_infection_counted = true;
    let s = Spec::new().given(Command::AdministerDose(first));
    assert!(s
        .when(&give(Booster, Comirnaty, "2021-12-01T10:00:00+01:00"))
        .is_ok());

    let ext = |kind, when| {
        Command::RecordExternalDose(RecordExternalDose {
            person_ref: "p1".into(),
            product: Spikevax,
            dose: kind,
            administered_at: at(when),
            evidence: Evidence::EuDcc,
        })
    };
    let s = Spec::new()
        .given(ext(First, "2021-04-01T10:00:00+02:00"))
        .given(ext(Second, "2021-05-01T10:00:00+02:00"));
    let e = s
        .when(&give(Booster, Comirnaty, "2021-12-01T10:00:00+01:00"))
        .unwrap();
    let Event::DoseAdministered(d) = &e[0] else {
        panic!()
    };
    assert_eq!(d.dose_number, 3);
}

#[test]
fn booster_already_given() {
    Spec::new()
        .given(give(First, Comirnaty, "2021-03-01T10:00:00+01:00"))
        .given(give(Second, Comirnaty, "2021-03-29T10:00:00+02:00"))
        .given(give(Booster, Comirnaty, "2021-11-29T10:00:00+01:00"))
        .then_rejected(
            give(Booster, Comirnaty, "2021-12-10T10:00:00+01:00"),
            "booster_already_given",
        );
}

#[test]
fn product_not_allowed_for_age() {
    let mut minor = dose(First, Spikevax, "2021-10-01T10:00:00+02:00");
    minor.age_band = AgeBand::A12to17;
    Spec::new().then_rejected(
        Command::AdministerDose(minor),
        "product_not_allowed_for_age",
    );
    Spec::new().then_rejected(
        give(First, Vaxzevria, "2021-10-01T10:00:00+02:00"),
        "product_not_allowed_for_age",
    );
    Spec::new().then_rejected(
        give(First, Jcovden, "2021-10-01T10:00:00+02:00"),
        "product_not_allowed_for_age",
    );
}

#[test]
fn administered_in_future() {
    Spec::new().then_rejected(
        give(First, Comirnaty, "2022-01-10T10:00:00+01:00"),
        "administered_in_future",
    );
}

#[test]
fn reversal_carries_the_reversed_attributes_and_frees_the_dose_slot() {
    let s = Spec::new().given(give(First, Comirnaty, "2021-09-14T10:00:00+02:00"));
    let recorded_by = s.given.person.doses[0].origin.command_id;
    let reverse = Command::ReverseDoseEntry(ReverseDoseEntry {
        reverses: recorded_by,
        reason: ReversalReason::EnteredInError,
    });
    let events = s.when(&reverse).unwrap();
    let Event::DoseEntryReversed(r) = &events[0] else {
        panic!()
    };
    assert_eq!(
        (r.directorate.as_str(), r.dose, r.product),
        ("lyon", First, Comirnaty)
    );
    assert_eq!(r.administered_at, at("2021-09-14T10:00:00+02:00"));
    let s = s.given(reverse.clone());
    s.then_rejected(reverse, "already_reversed");
    assert!(s
        .when(&give(First, Comirnaty, "2021-09-20T10:00:00+02:00"))
        .is_ok());
}

#[test]
fn unknown_entry() {
    Spec::new().then_rejected(
        Command::ReverseDoseEntry(ReverseDoseEntry {
            reverses: Uuid::nil(),
            reason: ReversalReason::DuplicateEntry,
        }),
        "unknown_entry",
    );
}

fn issue(id: &str) -> Command {
    Command::IssueTicket(IssueTicket {
        ticket_id: id.into(),
        person_ref: "p1".into(),
        directorate: "lyon".into(),
        partner_centre: "cv-lyon-gerland".into(),
        issued_at: at("2021-10-01T10:00:00+02:00"),
        valid_until: day("2021-10-31"),
    })
}

fn redeem(id: &str, when: &str) -> Command {
    Command::RedeemTicket(RedeemTicket {
        ticket_id: id.into(),
        redeemed_at: at(when),
        dose: First,
        partner_centre: None,
    })
}

fn issue_for(centre: &str, when: &str) -> Command {
    Command::IssueTicket(IssueTicket {
        ticket_id: "t1".into(),
        person_ref: "p1".into(),
        directorate: "lyon".into(),
        partner_centre: centre.into(),
        issued_at: at(when),
        valid_until: day("2021-12-31"),
    })
}

#[test]
fn tickets_name_a_partner_centre_of_their_directorate_by_id() {
    let s = Spec::new();
    let msg = s.then_rejected(
        issue_for("cv-nowhere", "2021-10-01T10:00:00+02:00"),
        "unknown_partner_centre",
    );
    assert!(
        msg.contains("cv-lyon-gerland (Centre de vaccination Gerland)"),
        "{msg}"
    );
    let msg = s.then_rejected(
        issue_for("cv-marseille-timone", "2021-10-01T10:00:00+02:00"),
        "unknown_partner_centre",
    );
    assert!(
        msg.contains("belongs to directorate marseille, not lyon"),
        "{msg}"
    );
    let msg = s.then_rejected(
        issue_for("Centre de vaccination Gerland", "2021-10-01T10:00:00+02:00"),
        "unknown_partner_centre",
    );
    assert!(
        msg.contains("is a name; centres are named by id (cv-lyon-gerland)"),
        "{msg}"
    );
    let msg = s.then_rejected(
        issue_for("cv-lyon-part-dieu", "2021-10-01T10:00:00+02:00"),
        "unknown_partner_centre",
    );
    assert!(msg.contains("does not take tickets on 2021-10-01"), "{msg}");
    assert!(s
        .when(&issue_for("cv-lyon-part-dieu", "2021-09-30T10:00:00+02:00"))
        .is_ok());

    // Redeemed at another centre of the ticket's directorate; not at another directorate's.
    let s = s.given(issue_for("cv-lyon-gerland", "2021-10-01T10:00:00+02:00"));
    let at_centre = |centre: &str| {
        Command::RedeemTicket(RedeemTicket {
            ticket_id: "t1".into(),
            redeemed_at: at("2021-10-05T10:00:00+02:00"),
            dose: First,
            partner_centre: Some(centre.into()),
        })
    };
    s.then_rejected(at_centre("cv-marseille-timone"), "unknown_partner_centre");
    let Event::TicketRedeemed(r) = &s.when(&at_centre("cv-lyon-8e")).unwrap()[0] else {
        panic!()
    };
    assert_eq!(r.partner_centre, "cv-lyon-8e");
    let Event::TicketRedeemed(r) = &s.when(&redeem("t1", "2021-10-05T10:00:00+02:00")).unwrap()[0]
    else {
        panic!()
    };
    assert_eq!(
        r.partner_centre, "cv-lyon-gerland",
        "the ticket's own centre"
    );
}

#[test]
fn a_ticket_of_an_old_log_naming_its_centre_is_redeemed_under_the_centre_s_id() {
    let mut s = Spec::new();
    let old = Event::TicketIssued(TicketIssued {
        ticket_id: "t1".into(),
        person_ref: "p1".into(),
        directorate: "lyon".into(),
        partner_centre: "Centre de vaccination Gerland".into(),
        issued_at: at("2021-10-01T10:00:00+02:00"),
        valid_until: day("2021-10-31"),
    });
    let o = s.origin();
    s.given.evolve(&old, o, &s.policy);
    let Event::TicketRedeemed(r) = &s.when(&redeem("t1", "2021-10-05T10:00:00+02:00")).unwrap()[0]
    else {
        panic!()
    };
    assert_eq!(r.partner_centre, "cv-lyon-gerland");
}

fn expire(id: &str, when: &str) -> Command {
    Command::ExpireTicket(ExpireTicket {
        ticket_id: id.into(),
        at: at(when),
    })
}

#[test]
fn ticket_lifecycle() {
    Spec::new().then_rejected(redeem("t1", "2021-10-02T10:00:00+02:00"), "unknown_ticket");
    Spec::new().then_rejected(expire("t1", "2021-11-02T10:00:00+01:00"), "unknown_ticket");
    let s = Spec::new().given(issue("t1"));
    s.then_rejected(issue("t1"), "ticket_already_issued");
    s.then_rejected(redeem("t1", "2021-11-01T10:00:00+01:00"), "ticket_expired");
    s.then_rejected(
        expire("t1", "2021-10-20T10:00:00+02:00"),
        "ticket_still_valid",
    );
    let Event::TicketRedeemed(r) = &s.when(&redeem("t1", "2021-10-05T10:00:00+02:00")).unwrap()[0]
    else {
        panic!()
    };
    assert_eq!(r.directorate, "lyon");
    let redeemed = Spec::new()
        .given(issue("t1"))
        .given(redeem("t1", "2021-10-05T10:00:00+02:00"));
    redeemed.then_rejected(
        redeem("t1", "2021-10-06T10:00:00+02:00"),
        "ticket_already_redeemed",
    );
    redeemed.then_rejected(
        expire("t1", "2021-11-06T10:00:00+01:00"),
        "ticket_already_redeemed",
    );
    let expired = Spec::new()
        .given(issue("t1"))
        .given(expire("t1", "2021-11-01T10:00:00+01:00"));
    expired.then_rejected(redeem("t1", "2021-10-30T10:00:00+02:00"), "ticket_expired");
    expired.then_rejected(expire("t1", "2021-11-02T10:00:00+01:00"), "ticket_expired");
}

#[test]
fn sessions() {
    let open = Command::OpenSession(OpenSession {
        session_id: "s1".into(),
        directorate: "lyon".into(),
        site: "lyon-dt".into(),
        opened_at: at("2021-10-01T09:00:00+02:00"),
    });
    let close = |when: &str| {
        Command::CloseSession(CloseSession {
            session_id: "s1".into(),
            closed_at: at(when),
            attendance: 12,
        })
    };
    Spec::new().then_rejected(close("2021-10-01T17:00:00+02:00"), "unknown_session");
    let s = Spec::new().given(open.clone());
    s.then_rejected(open, "session_already_opened");
    s.then_rejected(
        close("2021-10-01T08:00:00+02:00"),
        "session_closed_before_opened",
    );
    s.given(close("2021-10-01T17:00:00+02:00"))
        .then_rejected(close("2021-10-01T18:00:00+02:00"), "session_already_closed");

    let mut in_session = dose(First, Comirnaty, "2021-10-01T10:00:00+02:00");
    in_session.session_id = Some("s1".into());
    Spec::new().then_rejected(
        Command::AdministerDose(in_session.clone()),
        "unknown_session",
    );
    assert!(Spec::new()
        .with_session("s1")
        .when(&Command::AdministerDose(in_session))
        .is_ok());
}

#[test]
fn site_authorisation_and_survey_checks() {
    let auth = |d: &str| {
        Command::AuthoriseSite(AuthoriseSite {
            directorate: d.into(),
            site: "x".into(),
            site_kind: SiteKind::Mobile,
            authorised_on: day("2021-09-01"),
        })
    };
    Spec::new().then_rejected(auth("atlantis"), "unknown_directorate");
    Spec::new()
        .given(auth("lyon"))
        .then_rejected(auth("lyon"), "site_already_authorised");
    let survey = |residents, one, full| {
        Command::AnswerCoverageSurvey(AnswerCoverageSurvey {
            survey_id: "summer-2021".into(),
            structure_id: "cada-1".into(),
            structure_type: StructureType::Cada,
            directorate: "lyon".into(),
            as_of: day("2021-07-15"),
            residents,
            residents_with_one_dose: one,
            residents_fully_vaccinated: full,
        })
    };
    Spec::new().then_rejected(survey(10, 11, 0), "survey_counts_inconsistent");
    Spec::new().then_rejected(survey(10, 5, 6), "survey_counts_inconsistent");
    assert!(Spec::new().when(&survey(10, 5, 4)).is_ok());
}

#[test]
fn every_rejection_code_is_snake_case() {
    let r = Rejection::CommandIdReused(Uuid::nil());
    assert_eq!(r.code(), "command_id_reused");
    assert!(r.to_string().contains("choose a new id"));
}

#[test]
fn other_times_in_the_future_are_refused_too() {
    let mut issue_late = issue("t9");
    if let Command::IssueTicket(t) = &mut issue_late {
        t.issued_at = at("2022-02-01T10:00:00+01:00");
        t.valid_until = day("2022-03-01");
    }
    let msg = Spec::new().then_rejected(issue_late, "dated_in_future");
    assert!(msg.contains("issue time"), "{msg}");
}

#[test]
fn ticket_dates_must_make_sense() {
    let mut backwards = issue("t2");
    if let Command::IssueTicket(t) = &mut backwards {
        t.valid_until = day("2021-09-30");
    }
    Spec::new().then_rejected(backwards, "ticket_validity_invalid");
    Spec::new().given(issue("t1")).then_rejected(
        redeem("t1", "2021-10-01T09:00:00+02:00"),
        "redeemed_before_issued",
    );
}

#[test]
fn a_dose_naming_a_session_of_another_site_is_refused() {
    let mut elsewhere = dose(First, Comirnaty, "2021-10-01T10:00:00+02:00");
    elsewhere.session_id = Some("s1".into());
    elsewhere.site = "lyon-dt".into();
    elsewhere.directorate = "paris".into();
    let mut s = Spec::new().with_session("s1");
    // the site stream consulted is the (authorised) Lyon one; the session belongs to Lyon
    s.site.site.as_mut().unwrap().directorate = "paris".into();
    s.then_rejected(Command::AdministerDose(elsewhere), "unknown_session");
}

fn reverse(id: Uuid) -> Command {
    Command::ReverseDoseEntry(ReverseDoseEntry {
        reverses: id,
        reason: ReversalReason::EnteredInError,
    })
}

fn ext(kind: DoseKind, when: &str) -> Command {
    Command::RecordExternalDose(RecordExternalDose {
        person_ref: "p1".into(),
        product: Comirnaty,
        dose: kind,
        administered_at: at(when),
        evidence: Evidence::EuDcc,
    })
}

fn open_findings(s: &Spec) -> Vec<(FindingKind, chrono::NaiveDate)> {
    findings(&s.given.person, &s.policy)
        .into_iter()
        .map(|f| (f.kind, f.date))
        .collect()
}

#[test]
fn a_first_dose_reversed_under_its_second_is_recorded_and_opens_a_finding() {
    let s = Spec::new()
        .given(give(First, Comirnaty, "2021-09-14T10:00:00+02:00"))
        .given(give(Second, Comirnaty, "2021-10-14T10:00:00+02:00"));
    assert!(
        open_findings(&s).is_empty(),
        "a whole series has no finding"
    );
    let first = s.given.person.doses[0].origin.command_id;
    let second = s.given.person.doses[1].origin.command_id;
    let events = s
        .when(&reverse(first))
        .expect("a correction is never refused");
    assert!(
        matches!(&events[0], Event::DoseEntryReversed(e) if e.reversed_command_id == first && e.dose == First)
    );
    let s = s.given(reverse(first));
    assert_eq!(
        open_findings(&s),
        vec![(FindingKind::SecondDoseWithoutFirst, day("2021-10-14"))]
    );
    let f = &findings(&s.given.person, &s.policy)[0];
    assert_eq!(f.directorate.as_deref(), Some("lyon"));
    assert_eq!(
        f.entries[0].command_id, second,
        "the entry that no longer holds comes first"
    );
    assert!(f.entries[1].command_id == first && f.entries[1].reversed);
    // The second dose stays recorded and valid: it was given.
    assert!(s.given.person.doses[1].given.is_some() && !s.given.person.doses[1].reversed);
    // The first dose the person really had, given elsewhere before the second: resolved.
    let s = s.given(ext(First, "2021-09-20T10:00:00+02:00"));
    assert!(open_findings(&s).is_empty(), "{:?}", open_findings(&s));
}

#[test]
fn a_first_dose_recorded_after_the_second_leaves_the_finding_open() {
    let s = Spec::new()
        .given(give(First, Comirnaty, "2021-09-14T10:00:00+02:00"))
        .given(give(Second, Comirnaty, "2021-10-14T10:00:00+02:00"));
    let first = s.given.person.doses[0].origin.command_id;
    let s = s
        .given(reverse(first))
        .given(ext(First, "2021-10-20T10:00:00+02:00"));
    assert_eq!(
        open_findings(&s),
        vec![(FindingKind::SecondDoseWithoutFirst, day("2021-10-14"))]
    );
}

#[test]
fn reversing_the_later_entry_too_resolves_the_finding() {
    let s = Spec::new()
        .given(give(First, Comirnaty, "2021-09-14T10:00:00+02:00"))
        .given(give(Second, Comirnaty, "2021-10-14T10:00:00+02:00"));
    let first = s.given.person.doses[0].origin.command_id;
    let second = s.given.person.doses[1].origin.command_id;
    let s = s.given(reverse(first));
    assert_eq!(open_findings(&s).len(), 1);
    let s = s.given(reverse(second));
    assert!(open_findings(&s).is_empty());
}

#[test]
fn a_reversed_entry_cannot_be_reversed_again() {
    let s = Spec::new()
        .given(give(First, Comirnaty, "2021-09-14T10:00:00+02:00"))
        .given(give(Second, Comirnaty, "2021-10-14T10:00:00+02:00"));
    let first = s.given.person.doses[0].origin.command_id;
    let s = s.given(reverse(first));
    s.then_rejected(reverse(first), "already_reversed");
}

#[test]
fn a_booster_after_a_reversed_primary_dose_is_judged_on_the_corrected_series() {
    let s = Spec::new()
        .given(give(First, Comirnaty, "2021-05-03T10:00:00+02:00"))
        .given(give(Second, Comirnaty, "2021-06-01T10:00:00+02:00"));
    let first = s.given.person.doses[0].origin.command_id;
    let s = s.given(reverse(first));
    s.then_rejected(
        give(Booster, Comirnaty, "2021-12-01T10:00:00+01:00"),
        "primary_series_incomplete",
    );
    // Made whole by the first dose given elsewhere: the booster is judged on that series.
    let s = s.given(ext(First, "2021-05-04T10:00:00+02:00"));
    assert!(s
        .when(&give(Booster, Comirnaty, "2021-12-01T10:00:00+01:00"))
        .is_ok());
}

#[test]
fn a_booster_left_without_its_series_and_a_second_too_close_are_findings() {
    let s = Spec::new()
        .given(give(First, Comirnaty, "2021-05-03T10:00:00+02:00"))
        .given(give(Second, Comirnaty, "2021-06-01T10:00:00+02:00"))
        .given(give(Booster, Comirnaty, "2021-12-01T10:00:00+01:00"));
    let first = s.given.person.doses[0].origin.command_id;
    let second = s.given.person.doses[1].origin.command_id;
    let s = s.given(reverse(second));
    assert_eq!(
        open_findings(&s),
        vec![(FindingKind::BoosterWithoutPrimarySeries, day("2021-12-01"))]
    );
    let s = s
        .given(reverse(first))
        .given(ext(First, "2021-05-20T10:00:00+02:00"));
    // The OFII's second (1 June) stays reversed; the booster still lacks a complete series.
    assert_eq!(open_findings(&s).len(), 1);
    let s = Spec::new()
        .given(give(First, Comirnaty, "2021-09-01T10:00:00+02:00"))
        .given(give(Second, Comirnaty, "2021-10-01T10:00:00+02:00"));
    let first = s.given.person.doses[0].origin.command_id;
    let s = s
        .given(reverse(first))
        .given(ext(First, "2021-09-20T10:00:00+02:00"));
    assert_eq!(
        open_findings(&s),
        vec![(FindingKind::DoseIntervalTooShort, day("2021-10-01"))],
        "11 days after the first really given"
    );
}

#[test]
fn an_external_dose_entered_in_error_can_be_reversed() {
    let ext = Command::RecordExternalDose(RecordExternalDose {
        person_ref: "p1".into(),
        product: Spikevax,
        dose: First,
        administered_at: at("2021-04-01T10:00:00+02:00"),
        evidence: Evidence::Declared,
    });
    let s = Spec::new().given(ext);
    let id = s.given.person.doses[0].origin.command_id;
    let reverse = Command::ReverseDoseEntry(ReverseDoseEntry {
        reverses: id,
        reason: ReversalReason::EnteredInError,
    });
    let events = s.when(&reverse).unwrap();
    assert!(
        matches!(&events[0], Event::ExternalDoseReversed(e) if e.dose == First && e.product == Spikevax)
    );
    let s = s.given(reverse);
    assert!(
        s.when(&give(First, Comirnaty, "2021-10-01T10:00:00+02:00"))
            .is_ok(),
        "the slot is free again"
    );
}

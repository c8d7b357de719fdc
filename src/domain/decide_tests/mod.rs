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

mod corrections;
mod tickets;

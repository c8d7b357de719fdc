//! Decider specifications: corrections (always recorded) and the findings they open and close.

use super::*;

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

//! Decider specifications: tickets and partner centres, sessions, sites and the survey, times.

use super::*;

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

//! Tickets at partner centres, the commands the rules refuse, and corrections made weeks later.

use super::*;

impl Build<'_> {
    /// Tickets for partner centres: issued, redeemed, expired.
    pub(super) fn tickets(&mut self) {
        let Build {
            p, g, last_ticket, ..
        } = self;
        let dts = &p.directorates;
        // Tickets (Lyon, Marseille): issued by the OFII, used at partner health-authority centres.
        for (i, dt) in dts.iter().enumerate().filter(|(_, x)| x.tickets > 0) {
            for n in 0..dt.tickets {
                let issue_day = {
                    let span = (d("2021-12-15") - d("2021-09-20")).num_days() as usize;
                    let mut day = d("2021-09-20") + Duration::days(g.rng.below(span) as i64);
                    while day.weekday().number_from_monday() > 5 {
                        day += Duration::days(1);
                    }
                    day
                };
                let ticket_id = format!("{}-t{:04}", dt.id, n + 1);
                let valid_until = issue_day + Duration::days(30);
                let centre =
                    dt.partner_centres[g.rng.below(dt.partner_centres.len().max(1))].clone();
                let issued_at = paris(issue_day, 10 + g.rng.below(6) as u32, 0);
                let person_ref = g.person();
                g.plan(
                    issued_at,
                    Command::IssueTicket(IssueTicket {
                        ticket_id: ticket_id.clone(),
                        person_ref,
                        directorate: dt.id.clone(),
                        partner_centre: centre,
                        issued_at,
                        valid_until,
                    }),
                );
                let r = g.rng.below(100);
                if r < 64 {
                    let on = issue_day + Duration::days(1 + g.rng.below(20) as i64);
                    if on <= p.ends {
                        let at = paris(on, 14, 0);
                        g.plan(
                            at + Duration::hours(4),
                            Command::RedeemTicket(RedeemTicket {
                                ticket_id: ticket_id.clone(),
                                redeemed_at: at,
                                dose: DoseKind::First,
                                partner_centre: None,
                            }),
                        );
                    }
                } else if r < 86 {
                    let on = valid_until + Duration::days(1);
                    if on <= p.ends {
                        g.plan(
                            paris(on, 7, 0),
                            Command::ExpireTicket(ExpireTicket {
                                ticket_id: ticket_id.clone(),
                                at: paris(on, 7, 0),
                            }),
                        );
                    }
                }
                let _ = i;
                *last_ticket = ticket_id;
            }
        }
    }

    /// Doses the rules refuse: a Limoges person's second dose too early and first dose twice.
    pub(super) fn refused_doses(&mut self) {
        let Build { p, g, firsts, .. } = self;
        let dts = &p.directorates;
        // What real use also brings: commands the rules refuse.
        let lim = dts.iter().position(|x| x.id == "limoges").unwrap_or(0);
        let early = firsts
            .iter()
            .find(|f| f.dt == lim && f.product == Product::Comirnaty && !f.prior)
            .map(|f| (f.person.clone(), f.band, f.day));
        if let Some((person, band, day)) = early {
            // second dose 14 days after the first
            let when = paris(day + Duration::days(14), 11, 0);
            g.plan(
                when,
                Command::AdministerDose(AdministerDose {
                    person_ref: person.clone(),
                    age_band: band,
                    recipient: Recipient::User,
                    directorate: "limoges".into(),
                    site: "limoges-dt".into(),
                    product: Product::Comirnaty,
                    lot: "FF2832".into(),
                    dose: DoseKind::Second,
                    administered_at: when,
                    session_id: None,
                    prior_infection_counted: false,
                }),
            );
            // the same first dose entered twice under a new command id
            let when = paris(day, 16, 50);
            g.plan(
                when,
                Command::AdministerDose(AdministerDose {
                    person_ref: person,
                    age_band: band,
                    recipient: Recipient::User,
                    directorate: "limoges".into(),
                    site: "limoges-dt".into(),
                    product: Product::Comirnaty,
                    lot: "FF2832".into(),
                    dose: DoseKind::First,
                    administered_at: when,
                    session_id: None,
                    prior_infection_counted: false,
                }),
            );
        }
    }

    /// Doses the rules refuse: one of each rule, on people of their own.
    pub(super) fn refused_by_rules(&mut self) {
        let Build { g, .. } = self;
        let at = |s: &str, h| paris(d(s), h, 15);
        let refused = |person: String, band, dt: &str, site: &str, product, dose, when| {
            Command::AdministerDose(AdministerDose {
                person_ref: person,
                age_band: band,
                recipient: Recipient::User,
                directorate: dt.into(),
                site: site.into(),
                product,
                lot: "FF2832".into(),
                dose,
                administered_at: when,
                session_id: None,
                prior_infection_counted: false,
            })
        };
        let c = refused(
            g.person(),
            AgeBand::A30to39,
            "nice",
            "nice-dt",
            Product::Vaxzevria,
            DoseKind::First,
            at("2021-11-08", 10),
        );
        g.plan(at("2021-11-08", 10), c);
        let c = refused(
            g.person(),
            AgeBand::A18to29,
            "lille",
            "lille-mobile",
            Product::Comirnaty,
            DoseKind::First,
            at("2021-11-17", 11),
        );
        g.plan(at("2021-11-17", 11), c);
        let c = refused(
            g.person(),
            AgeBand::A40to49,
            "paris",
            "paris-guda",
            Product::Comirnaty,
            DoseKind::Booster,
            at("2021-11-22", 14),
        );
        g.plan(at("2021-11-22", 14), c);
        let c = refused(
            g.person(),
            AgeBand::A30to39,
            "toulouse",
            "toulouse-dt",
            Product::Comirnaty,
            DoseKind::Second,
            at("2021-11-29", 15),
        );
        g.plan(at("2021-11-29", 15), c);
        // booster too early: an agent whose series ended in August
        let agent = g.person();
        for (kind, on) in [
            (DoseKind::First, "2021-07-20"),
            (DoseKind::Second, "2021-08-17"),
        ] {
            g.plan(
                at(on, 12),
                Command::RecordExternalDose(RecordExternalDose {
                    person_ref: agent.clone(),
                    product: Product::Comirnaty,
                    dose: kind,
                    administered_at: at(on, 12),
                    evidence: Evidence::EuDcc,
                }),
            );
        }
        let c = refused(
            agent,
            AgeBand::A40to49,
            "bordeaux",
            "bordeaux-dt",
            Product::Comirnaty,
            DoseKind::Booster,
            at("2021-12-02", 10),
        );
        g.plan(at("2021-12-02", 10), c);
    }

    /// Tickets the rules refuse, and redemptions reported too late.
    pub(super) fn refused_tickets(&mut self) {
        let Build {
            p, g, last_ticket, ..
        } = self;
        let at = |s: &str, h| paris(d(s), h, 15);
        // a Lyon ticket for a Marseille partner centre
        let person_ref = g.person();
        g.plan(
            at("2021-11-15", 10),
            Command::IssueTicket(IssueTicket {
                ticket_id: "lyon-t9998".into(),
                person_ref,
                directorate: "lyon".into(),
                partner_centre: "cv-marseille-timone".into(),
                issued_at: at("2021-11-15", 10),
                valid_until: d("2021-12-15"),
            }),
        );
        g.plan(
            at("2021-12-06", 15),
            Command::RedeemTicket(RedeemTicket {
                ticket_id: "lyon-t9999".into(),
                redeemed_at: at("2021-12-06", 15),
                dose: DoseKind::First,
                partner_centre: None,
            }),
        );
        if !last_ticket.is_empty() {
            // a redemption reported after the ticket's validity
            let c = planned_ticket(g, last_ticket);
            if let Some((issued, valid_until)) = c {
                let late_day = valid_until + Duration::days(2);
                let when = paris(late_day.min(p.ends), 15, 0);
                if late_day <= p.ends && issued < when {
                    g.plan(
                        when,
                        Command::RedeemTicket(RedeemTicket {
                            ticket_id: last_ticket.clone(),
                            redeemed_at: when,
                            dose: DoseKind::First,
                            partner_centre: None,
                        }),
                    );
                }
            }
        }
        let first_marseille = g.planned.iter().find_map(|(_, _, c)| match &c.command {
            Command::IssueTicket(t) if t.directorate == "marseille" => {
                Some((t.ticket_id.clone(), t.valid_until))
            }
            _ => None,
        });
        if let Some((id, until)) = first_marseille {
            let when = paris(until + Duration::days(3), 11, 0);
            g.plan(
                when,
                Command::RedeemTicket(RedeemTicket {
                    ticket_id: id,
                    redeemed_at: when,
                    dose: DoseKind::First,
                    partner_centre: None,
                }),
            );
        }
    }

    /// Corrections weeks later, and a finding a later entry resolves.
    pub(super) fn corrections(&mut self) {
        let Build {
            p,
            g,
            firsts,
            first_ids,
            seconds,
            sessions,
            ..
        } = self;
        let dts = &p.directorates;
        // Corrections weeks later (planned last, so that the draws above stay as they were): a
        // first dose entered under the wrong person, found after that person's second dose. The
        // entry is reversed (always accepted) and the dose recorded for the person who had it,
        // so every count stays; the series left with a second dose and no first is a finding.
        // For the first case the person's real first dose, given elsewhere, is recorded later and
        // resolves it; the second stays open for the directorate's supervisor.
        // The open one in Lyon (the demo's supervisor sees it), when a Lyon series fits.
        let fits = |idx: usize, second_day: NaiveDate| {
            let f = &firsts[idx];
            !dts[f.dt].sessions && !f.prior && second_day + Duration::days(28) <= p.as_of
        };
        let candidates: Vec<(usize, NaiveDate)> = seconds
            .iter()
            .filter(|&&(idx, day, _)| fits(idx, day))
            .map(|&(idx, day, _)| (idx, day))
            .collect();
        let is_lyon = |idx: usize| dts[firsts[idx].dt].id == "lyon";
        let resolved = candidates.iter().find(|c| !is_lyon(c.0)).copied();
        let open = candidates
            .iter()
            .find(|c| is_lyon(c.0))
            .or_else(|| {
                candidates.iter().find(|c| {
                    Some(**c) != resolved
                        && firsts[c.0].dt != resolved.map_or(usize::MAX, |r| firsts[r.0].dt)
                })
            })
            .copied();
        let planned = resolved.map(|(i, d)| (i, d, true)).into_iter();
        for (idx, second_day, resolve) in planned.chain(open.map(|(i, d)| (i, d, false))) {
            let f = &firsts[idx];
            let found_on = second_day + Duration::days(21);
            let found_at = paris(found_on, 11, 0);
            g.plan(
                found_at,
                Command::ReverseDoseEntry(ReverseDoseEntry {
                    reverses: first_ids[idx],
                    reason: ReversalReason::EnteredInError,
                }),
            );
            let who_had_it = Dose {
                person: g.person(),
                ..f.clone()
            };
            administer_dose(
                g,
                sessions,
                dts,
                &who_had_it,
                DoseKind::First,
                f.day,
                f.product,
                Some(paris(found_on, 11, 30)),
            );
            if resolve {
                let given = paris(f.day - Duration::days(7), 10, 0);
                g.plan(
                    paris(found_on + Duration::days(6), 15, 0),
                    Command::RecordExternalDose(RecordExternalDose {
                        person_ref: f.person.clone(),
                        product: f.product,
                        dose: DoseKind::First,
                        administered_at: given,
                        evidence: Evidence::EuDcc,
                    }),
                );
            }
        }
    }
}

fn planned_ticket(g: &Gen, id: &str) -> Option<(DateTime<FixedOffset>, NaiveDate)> {
    g.planned.iter().find_map(|(_, _, c)| match &c.command {
        Command::IssueTicket(t) if t.ticket_id == id => Some((t.issued_at, t.valid_until)),
        _ => None,
    })
}

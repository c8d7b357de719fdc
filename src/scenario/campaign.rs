//! The campaign's own doses, phase by phase: sites, the summer survey, first and second
//! injections, sessions, boosters, entries made in error.

use super::*;

impl Build<'_> {
    /// Vaccination days of each directorate, up to the end of the scenario.
    pub(super) fn days(&mut self) {
        let Build { p, days, .. } = self;
        let dts = &p.directorates;
        // Vaccination days of each directorate, up to the end of the scenario.
        *days = dts
            .iter()
            .map(|dt| {
                let mut v = Vec::new();
                let mut day = dt.start;
                while day <= p.ends {
                    if dt.days.contains(&day.weekday().number_from_monday()) {
                        v.push(day);
                    }
                    day += Duration::days(1);
                }
                v
            })
            .collect();
    }

    /// Sites, authorised after the circular of 3 August 2021, Limoges first.
    pub(super) fn sites(&mut self) {
        let Build { p, g, .. } = self;
        let dts = &p.directorates;
        // Sites, authorised after the circular of 3 August 2021, Limoges first.
        for dt in dts {
            let on = if dt.id == "limoges" {
                d("2021-08-23")
            } else {
                (dt.start - Duration::days(10)).max(d("2021-08-30"))
            };
            for s in &dt.sites {
                g.plan(
                    paris(on, 8, 0),
                    Command::AuthoriseSite(AuthoriseSite {
                        directorate: dt.id.clone(),
                        site: s.id.clone(),
                        site_kind: s.kind,
                        authorised_on: on,
                    }),
                );
            }
        }
    }

    /// The summer coverage survey of accommodation structures (a few answers corrected later).
    pub(super) fn survey(&mut self) {
        let Build { p, g, .. } = self;
        let dts = &p.directorates;
        // The summer coverage survey of accommodation structures (a few answers corrected later).
        let types = [
            StructureType::Cada,
            StructureType::Huda,
            StructureType::Caes,
            StructureType::Cph,
            StructureType::Prahda,
            StructureType::Ftm,
        ];
        for dt in dts {
            let n = 3 + g.rng.below(4);
            for k in 0..n {
                let st = types[g.rng.below(types.len())];
                let residents = 20 + g.rng.below(180) as u32;
                let one = residents * (25 + g.rng.below(35) as u32) / 100;
                let full = one * (55 + g.rng.below(35) as u32) / 100;
                let as_of = d("2021-07-12") + Duration::days(g.rng.below(45) as i64);
                let structure_id = format!("{}-{}-{}", st.as_str().to_lowercase(), dt.id, k + 1);
                let answer = |as_of, residents, one, full| {
                    Command::AnswerCoverageSurvey(AnswerCoverageSurvey {
                        survey_id: "dna-summer-2021".into(),
                        structure_id: structure_id.clone(),
                        structure_type: st,
                        directorate: dt.id.clone(),
                        as_of,
                        residents,
                        residents_with_one_dose: one,
                        residents_fully_vaccinated: full,
                    })
                };
                g.plan(paris(as_of, 18, 0), answer(as_of, residents, one, full));
                if g.rng.chance(0.15) {
                    let later = as_of + Duration::days(20);
                    g.plan(
                        paris(later, 18, 0),
                        answer(
                            later,
                            residents,
                            (one + 5).min(residents),
                            (full + 4).min(one + 5).min(residents),
                        ),
                    );
                }
            }
        }
    }

    /// Who gets a first injection, where and when (planned as doses by `primary`).
    pub(super) fn firsts(&mut self) {
        let Build {
            p,
            g,
            days,
            total_w,
            firsts,
            ..
        } = self;
        let dts = &p.directorates;
        // First injections: shared by weight (largest remainder), spread over each directorate's
        // days up to the as-of date, growing as the campaign becomes known.
        *total_w = dts.iter().map(|x| x.weight).sum();
        let mut quota: Vec<usize> = dts
            .iter()
            .map(|x| p.first_injections * x.weight as usize / *total_w as usize)
            .collect();
        let mut rest: Vec<(usize, usize)> = dts
            .iter()
            .enumerate()
            .map(|(i, x)| {
                (
                    p.first_injections * x.weight as usize % *total_w as usize,
                    i,
                )
            })
            .collect();
        rest.sort_by(|a, b| b.cmp(a));
        let short = p.first_injections - quota.iter().sum::<usize>();
        for &(_, i) in rest.iter().take(short) {
            quota[i] += 1;
        }
        for (i, dt) in dts.iter().enumerate() {
            let open: Vec<NaiveDate> = days[i].iter().copied().filter(|x| *x <= p.as_of).collect();
            let growth = if dt.sessions { 0.35 } else { 0.08 };
            let weights: Vec<f64> = (0..open.len()).map(|k| 1.0 + growth * k as f64).collect();
            let sum: f64 = weights.iter().sum();
            // Sessions grow steadily: their first injections are shared out in proportion.
            let mut steady: Vec<usize> = Vec::new();
            if dt.sessions {
                let mut acc = 0.0;
                for (k, w) in weights.iter().enumerate() {
                    acc += w / sum * quota[i] as f64;
                    while (steady.len() as f64) < acc.round() {
                        steady.push(k);
                    }
                }
                steady.resize(quota[i], open.len().saturating_sub(1));
            }
            for n in 0..quota[i] {
                let mut x = (g.rng.next() >> 11) as f64 / (1u64 << 53) as f64 * sum;
                let mut k = 0;
                while k + 1 < open.len() && x > weights[k] {
                    x -= weights[k];
                    k += 1;
                }
                if let Some(&fixed) = steady.get(n) {
                    k = fixed;
                }
                let band = g.age_band();
                let product = if band.is_55_plus() && g.rng.chance(0.3) {
                    Product::Jcovden
                } else if !band.is_minor() && g.rng.chance(0.12) {
                    Product::Spikevax
                } else {
                    Product::Comirnaty
                };
                let recipient = if !band.is_minor() && g.rng.chance(0.05) {
                    Recipient::Agent
                } else {
                    Recipient::User
                };
                let site = dt.sites[g.rng.below(dt.sites.len())].id.clone();
                let prior = g.rng.chance(0.06);
                let person = g.person();
                firsts.push(Dose {
                    person,
                    band,
                    recipient,
                    dt: i,
                    site,
                    product,
                    day: open[k],
                    prior,
                });
            }
        }
        firsts.sort_by(|a, b| a.day.cmp(&b.day).then(a.person.cmp(&b.person)));
    }

    /// Who gets a second injection, and when.
    pub(super) fn seconds(&mut self) -> Result<(), String> {
        let Build {
            p,
            g,
            days,
            firsts,
            seconds,
            ..
        } = self;
        let next_day = |i: usize, from: NaiveDate| days[i].iter().copied().find(|x| *x >= from);
        // Second injections: the earliest eligible people first, up to the quota by the as-of date;
        // a few more in the last days of the year.
        let mut extra_seconds = 0;
        for (idx, f) in firsts.iter().enumerate() {
            if f.product == Product::Jcovden || f.prior {
                continue;
            }
            let min = if f.product == Product::Spikevax {
                28
            } else {
                21
            };
            let Some(day) = next_day(f.dt, f.day + Duration::days(min + g.rng.below(8) as i64))
            else {
                continue;
            };
            if day <= p.as_of && seconds.len() < p.second_injections {
                seconds.push((idx, day, f.product));
            } else if day > p.as_of && extra_seconds < 30 {
                extra_seconds += 1;
                seconds.push((idx, day, f.product));
            }
        }
        let counted = seconds.iter().filter(|s| s.1 <= p.as_of).count();
        if counted < p.second_injections {
            return Err(format!(
                "only {counted} second injections fit before the as-of date; move starts earlier"
            ));
        }

        Ok(())
    }

    /// Sessions (Rennes): one per vaccination day.
    pub(super) fn sessions(&mut self) {
        let Build {
            p, days, sessions, ..
        } = self;
        let dts = &p.directorates;
        // Sessions (Rennes): one per vaccination day.
        for (i, dt) in dts.iter().enumerate().filter(|(_, x)| x.sessions) {
            for day in &days[i] {
                sessions.insert(
                    (i, *day),
                    (format!("{}-{}", dt.id, day.format("%Y%m%d")), 0),
                );
            }
        }
    }

    /// The first and second injections, as doses (a paper backlog entered late).
    pub(super) fn primary(&mut self) {
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
        let late_from = p.as_of - Duration::days(4);
        let mut late = 0;

        for f in firsts.iter() {
            // A paper backlog: a few of the last days' doses are entered only on the Monday after.
            let record = (f.day >= late_from && late < 10 && !dts[f.dt].sessions).then(|| {
                late += 1;
                paris(p.as_of + Duration::days(3), 9, 30)
            });
            first_ids.push(administer_dose(
                g,
                sessions,
                dts,
                f,
                DoseKind::First,
                f.day,
                f.product,
                record,
            ));
        }
        for &(idx, day, product) in seconds.iter() {
            administer_dose(
                g,
                sessions,
                dts,
                &firsts[idx],
                DoseKind::Second,
                day,
                product,
                None,
            );
        }
    }

    /// Boosters of people whose primary series was given elsewhere.
    pub(super) fn boosters(&mut self) {
        let Build {
            p,
            g,
            days,
            total_w,
            sessions,
            ..
        } = self;
        let dts = &p.directorates;
        // Boosters: people (agents and users) whose primary series was given elsewhere in spring,
        // boosted from 27 November (a few over-65s from September).
        let mut boosted = 0;
        let mut extra_boosters = 0;
        let mut k = 0;
        while boosted < p.boosters || extra_boosters < 20 {
            k += 1;
            let i = {
                let mut x = g.rng.below(*total_w as usize) as u32;
                let mut i = 0;
                while x >= dts[i].weight {
                    x -= dts[i].weight;
                    i += 1;
                }
                i
            };
            let senior = k % 16 == 0;
            let band = if senior {
                AgeBand::A65to74
            } else {
                g.adult_band()
            };
            let recipient = if g.rng.chance(0.4) {
                Recipient::Agent
            } else {
                Recipient::User
            };
            let person = g.person();
            let first = d("2021-03-01") + Duration::days(g.rng.below(60) as i64);
            let second = first + Duration::days(28 + g.rng.below(14) as i64);
            let window_start = if senior {
                (second
                    .checked_add_months(chrono::Months::new(5))
                    .expect("date"))
                .max(d("2021-09-01"))
            } else {
                (second
                    .checked_add_months(chrono::Months::new(5))
                    .expect("date"))
                .max(d("2021-11-29"))
            };
            let candidates: Vec<NaiveDate> = days[i]
                .iter()
                .copied()
                .filter(|x| *x >= window_start)
                .collect();
            if candidates.is_empty() {
                continue;
            }
            let day = candidates[g.rng.below(candidates.len())];
            if day <= p.as_of && boosted >= p.boosters || day > p.as_of && extra_boosters >= 20 {
                continue;
            }
            if day <= p.as_of {
                boosted += 1;
            } else {
                extra_boosters += 1;
            }
            for (kind, on) in [(DoseKind::First, first), (DoseKind::Second, second)] {
                let at = paris(on, 11, 0);
                g.plan(
                    paris(day, 8, 30).min(at + Duration::days(200)),
                    Command::RecordExternalDose(RecordExternalDose {
                        person_ref: person.clone(),
                        product: Product::Comirnaty,
                        dose: kind,
                        administered_at: at,
                        evidence: Evidence::EuDcc,
                    }),
                );
            }
            let f = Dose {
                person,
                band,
                recipient,
                dt: i,
                site: dts[i].sites[0].id.clone(),
                product: Product::Comirnaty,
                day,
                prior: false,
            };
            let product = if g.rng.chance(0.2) {
                Product::Spikevax
            } else {
                Product::Comirnaty
            };
            administer_dose(g, sessions, dts, &f, DoseKind::Booster, day, product, None);
        }
    }

    /// Entries made in error, and their reversals.
    pub(super) fn errors(&mut self) {
        let Build {
            p,
            g,
            days,
            sessions,
            ..
        } = self;
        let dts = &p.directorates;
        // Entries made in error, reversed the same day or, twice, the Monday after the as-of date.
        for n in 0..6 {
            let i = n * 3 % dts.len();
            let Some(&day) = days[i]
                .iter()
                .rev()
                .find(|x| **x <= p.as_of - Duration::days(7 * n as i64 + 3))
            else {
                continue;
            };
            let f = Dose {
                person: g.person(),
                band: AgeBand::A30to39,
                recipient: Recipient::User,
                dt: i,
                site: dts[i].sites[0].id.clone(),
                product: Product::Comirnaty,
                day,
                prior: false,
            };
            let wrong = administer_dose(
                g,
                sessions,
                dts,
                &f,
                DoseKind::First,
                day,
                Product::Comirnaty,
                None,
            );
            let reversed_at = if n < 2 {
                paris(p.as_of + Duration::days(3), 10, 0)
            } else {
                paris(day, 18, 30)
            };
            let reason = if n % 3 == 2 {
                ReversalReason::DuplicateEntry
            } else {
                ReversalReason::EnteredInError
            };
            g.plan(
                reversed_at,
                Command::ReverseDoseEntry(ReverseDoseEntry {
                    reverses: wrong,
                    reason,
                }),
            );
        }
    }

    /// Sessions opened and closed around their doses, with their attendance.
    pub(super) fn session_events(&mut self) {
        let Build { p, g, sessions, .. } = self;
        let dts = &p.directorates;
        // Sessions open and close around their doses; a few people are seen but not vaccinated.
        // Attendance (everyone seen, vaccinated or not) grows session after session, as in Rennes.
        let mut attendance_before: BTreeMap<usize, u32> = BTreeMap::new();
        for ((i, day), (id, doses)) in sessions.clone() {
            let dt = &dts[i];
            let site = dt.sites[0].id.clone();
            let opened_at = paris(day, 8, 45);
            g.plan(
                paris(day, 8, 40),
                Command::OpenSession(OpenSession {
                    session_id: id.clone(),
                    directorate: dt.id.clone(),
                    site: site.clone(),
                    opened_at,
                }),
            );
            let not_done = 1 + g.rng.below(3) as u32;
            for _ in 0..not_done {
                let reason = [
                    NotAdministeredReason::Deferred,
                    NotAdministeredReason::Refused,
                    NotAdministeredReason::Contraindicated,
                ][g.rng.below(3)];
                let person = g.person();
                let at = g.time_of_day(day);
                g.plan(
                    at,
                    Command::RecordDoseNotAdministered(RecordDoseNotAdministered {
                        person_ref: person,
                        directorate: dt.id.clone(),
                        site: site.clone(),
                        reason,
                        at,
                    }),
                );
            }
            let grow = 1 + g.rng.below(3) as u32;
            let prev = attendance_before.entry(i).or_insert(0);
            *prev = (doses + not_done).max(*prev + grow);
            let attendance = *prev;
            g.plan(
                paris(day, 17, 30),
                Command::CloseSession(CloseSession {
                    session_id: id,
                    closed_at: paris(day, 17, 30),
                    attendance,
                }),
            );
        }
    }
}

/// Plans an OFII dose of `f` (in the session of its directorate and day, when there is one),
/// recorded at `record` or a few minutes after it was given.
// Eight arguments: the generator, the sessions and the directorates a dose touches, and the dose.
#[allow(clippy::too_many_arguments)]
pub(super) fn administer_dose(
    g: &mut Gen,
    sessions: &mut Sessions,
    dts: &[DtParams],
    f: &Dose,
    kind: DoseKind,
    day: NaiveDate,
    product: Product,
    record: Option<DateTime<FixedOffset>>,
) -> Uuid {
    let at = g.time_of_day(day);
    let session_id = sessions.get_mut(&(f.dt, day)).map(|s| {
        s.1 += 1;
        s.0.clone()
    });
    let lot = g.lot(product);
    g.plan(
        record.unwrap_or(at),
        Command::AdministerDose(AdministerDose {
            person_ref: f.person.clone(),
            age_band: f.band,
            recipient: f.recipient,
            directorate: dts[f.dt].id.clone(),
            site: if session_id.is_some() {
                dts[f.dt].sites[0].id.clone()
            } else {
                f.site.clone()
            },
            product,
            lot,
            dose: kind,
            administered_at: at,
            session_id,
            prior_infection_counted: kind == DoseKind::First && f.prior,
        }),
    )
}

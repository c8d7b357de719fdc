//! Properties of corrections and findings, for any sequence of commands on one person:
//! - every `ReverseDoseEntry` of an unreversed entry is accepted, whatever came after it, and
//!   one of a reversed entry is refused as `already_reversed`;
//! - the findings of the folded series equal a naïve recomputation from the entries the test
//!   itself kept (not the fold's);
//! - the findings as of a day equal the findings of the series cut at the end of that day.

use super::*;
use chrono::{DateTime, Duration, FixedOffset, Months, NaiveDate, TimeZone, Utc};
use proptest::prelude::*;
use std::collections::BTreeSet;
use uuid::Uuid;

#[derive(Debug, Clone)]
enum Op {
    Give {
        kind: u8,
        product: u8,
        day: i64,
        prior: bool,
    },
    Elsewhere {
        kind: u8,
        product: u8,
        day: i64,
    },
    Reverse {
        pick: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..3, 0u8..4, 0i64..430, prop::bool::weighted(0.1))
            .prop_map(|(kind, product, day, prior)| Op::Give { kind, product, day, prior }),
        2 => (0u8..3, 0u8..4, 0i64..430).prop_map(|(kind, product, day)| Op::Elsewhere { kind, product, day }),
        3 => any::<usize>().prop_map(|pick| Op::Reverse { pick }),
    ]
}

/// An entry as the test keeps it, apart from the domain's fold.
#[derive(Debug, Clone)]
struct Kept {
    command_id: Uuid,
    kind: DoseKind,
    product: Product,
    at: DateTime<FixedOffset>,
    ofii: bool,
    prior: bool,
    reversed: bool,
}

const KINDS: [DoseKind; 3] = [DoseKind::First, DoseKind::Second, DoseKind::Booster];
const PRODUCTS: [Product; 4] = [
    Product::Comirnaty,
    Product::Spikevax,
    Product::Vaxzevria,
    Product::Jcovden,
];

fn at(day: i64) -> DateTime<FixedOffset> {
    let d = NaiveDate::from_ymd_opt(2021, 3, 1).unwrap() + Duration::days(day);
    chrono_tz::Europe::Paris
        .from_local_datetime(&d.and_hms_opt(10, 0, 0).unwrap())
        .unwrap()
        .fixed_offset()
}

/// The findings, recomputed naïvely: each valid entry against every other valid entry dated at
/// or before it.
fn naive(kept: &[Kept], policy: &Policy) -> BTreeSet<(FindingKind, NaiveDate, Uuid)> {
    let date = |k: &Kept| policy.local_date(k.at);
    let valid: Vec<&Kept> = kept.iter().filter(|k| !k.reversed).collect();
    let mut out = BTreeSet::new();
    for e in &valid {
        let earlier: Vec<&Kept> = valid
            .iter()
            .copied()
            .filter(|x| x.command_id != e.command_id && x.at <= e.at)
            .collect();
        match e.kind {
            DoseKind::First => {}
            DoseKind::Second => {
                let first = earlier
                    .iter()
                    .filter(|x| x.kind == DoseKind::First)
                    .max_by_key(|x| x.at);
                match first {
                    None => {
                        out.insert((FindingKind::SecondDoseWithoutFirst, date(e), e.command_id));
                    }
                    Some(f) if e.ofii => {
                        if let Some(days) = policy.second_dose_min_days.get(&f.product) {
                            if date(e) < date(f) + Duration::days(*days) {
                                out.insert((
                                    FindingKind::DoseIntervalTooShort,
                                    date(e),
                                    e.command_id,
                                ));
                            }
                        }
                    }
                    Some(_) => {}
                }
            }
            DoseKind::Booster => {
                let mut primary: Vec<&Kept> = earlier
                    .iter()
                    .copied()
                    .filter(|x| x.kind != DoseKind::Booster)
                    .collect();
                primary.sort_by_key(|x| x.at);
                let mut completed = None;
                for (n, p) in primary.iter().enumerate() {
                    if n + 1 >= 2 || p.product == Product::Jcovden || p.prior {
                        completed = Some(date(p));
                        break;
                    }
                }
                match completed {
                    None => {
                        out.insert((
                            FindingKind::BoosterWithoutPrimarySeries,
                            date(e),
                            e.command_id,
                        ));
                    }
                    Some(c) if e.ofii => {
                        let months = policy.booster_delay_months(date(e));
                        if date(e) < c.checked_add_months(Months::new(months)).unwrap() {
                            out.insert((FindingKind::DoseIntervalTooShort, date(e), e.command_id));
                        }
                    }
                    Some(_) => {}
                }
            }
        }
    }
    out
}

fn as_set(found: &[Finding]) -> BTreeSet<(FindingKind, NaiveDate, Uuid)> {
    found
        .iter()
        .map(|f| (f.kind, f.date, f.entries[0].command_id))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn reversals_are_always_recorded_and_findings_equal_a_naive_recomputation(
        ops in prop::collection::vec(op(), 1..30),
        cut in 0i64..430,
    ) {
        let policy = Policy::default();
        let reference = Reference::builtin();
        let now = Utc.with_ymd_and_hms(2022, 6, 1, 12, 0, 0).unwrap();
        let mut site = StreamState::default();
        site.evolve(
            &Event::SiteAuthorised(SiteAuthorised {
                directorate: "lyon".into(),
                site: "lyon-dt".into(),
                site_kind: SiteKind::DtPremises,
                authorised_on: NaiveDate::from_ymd_opt(2021, 1, 4).unwrap(),
            }),
            Origin { event_id: Uuid::from_u128(u128::MAX), command_id: Uuid::from_u128(u128::MAX) },
            &policy,
        );
        let ctx = Context { now, policy: &policy, reference: &reference, site: Some(&site), session: None };
        let mut state = StreamState::default();
        let mut kept: Vec<Kept> = Vec::new();
        for (n, op) in ops.iter().enumerate() {
            let command_id = Uuid::from_u128(n as u128 + 1);
            let command = match op {
                Op::Give { kind, product, day, prior } => Command::AdministerDose(AdministerDose {
                    person_ref: "p1".into(),
                    age_band: AgeBand::A55to64,
                    recipient: Recipient::User,
                    directorate: "lyon".into(),
                    site: "lyon-dt".into(),
                    product: PRODUCTS[*product as usize],
                    lot: "L1".into(),
                    dose: KINDS[*kind as usize],
                    administered_at: at(*day),
                    session_id: None,
                    prior_infection_counted: *prior && *kind == 0,
                }),
                Op::Elsewhere { kind, product, day } => Command::RecordExternalDose(RecordExternalDose {
                    person_ref: "p1".into(),
                    product: PRODUCTS[*product as usize],
                    dose: KINDS[*kind as usize],
                    administered_at: at(*day),
                    evidence: Evidence::EuDcc,
                }),
                Op::Reverse { pick } => {
                    if kept.is_empty() {
                        continue;
                    }
                    let target = &kept[pick % kept.len()];
                    let command = Command::ReverseDoseEntry(ReverseDoseEntry {
                        reverses: target.command_id,
                        reason: ReversalReason::EnteredInError,
                    });
                    let decided = decide(&command, &state, &ctx);
                    if target.reversed {
                        prop_assert_eq!(decided.map_err(|r| r.code()), Err("already_reversed"));
                        continue;
                    }
                    prop_assert!(decided.is_ok(), "a correction was refused: {:?}", decided);
                    command
                }
            };
            let Ok(events) = decide(&command, &state, &ctx) else { continue };
            for (i, e) in events.iter().enumerate() {
                let origin = Origin { event_id: Uuid::from_u128(((n as u128) << 8) + i as u128 + 1_000_000), command_id };
                state.evolve(e, origin, &policy);
            }
            match (&command, op) {
                (Command::ReverseDoseEntry(r), _) => {
                    kept.iter_mut().filter(|k| k.command_id == r.reverses).for_each(|k| k.reversed = true);
                }
                (Command::AdministerDose(c), _) => kept.push(Kept {
                    command_id, kind: c.dose, product: c.product, at: c.administered_at,
                    ofii: true, prior: c.prior_infection_counted, reversed: false,
                }),
                (Command::RecordExternalDose(c), _) => kept.push(Kept {
                    command_id, kind: c.dose, product: c.product, at: c.administered_at,
                    ofii: false, prior: false, reversed: false,
                }),
                _ => {}
            }
        }
        let found = findings(&state.person, &policy);
        prop_assert_eq!(as_set(&found), naive(&kept, &policy));
        // As of a day: the findings of the series as it stood at the end of that day.
        let day = policy.local_date(at(cut));
        let mut cut_state = state.person.clone();
        cut_state.doses.retain(|d| policy.local_date(d.at) <= day);
        prop_assert_eq!(as_set(&findings_as_of(&state.person, &policy, Some(day))), as_set(&findings(&cut_state, &policy)));
    }
}

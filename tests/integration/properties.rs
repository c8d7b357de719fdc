//! Invariants, for any order of independent commands:
//! - per-directorate rows sum to the totals, and equal what the commands say;
//! - replaying the log from position 1 equals the live projection, however often it caught up.

use crate::support;

use campaign_ledger::app::Outcome;
use campaign_ledger::domain::CommandEnvelope;
use campaign_ledger::store::Actor;
use proptest::prelude::*;
use std::collections::BTreeMap;

const DTS: [&str; 5] = ["lyon", "paris", "rennes", "limoges", "creteil"];

#[derive(Debug, Clone)]
struct Dose {
    dt: usize,
    day: u32,
    reversed: bool,
    catch_up_after: bool,
}

fn dose() -> impl Strategy<Value = Dose> {
    (
        0..DTS.len(),
        0u32..80,
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(dt, day, reversed, catch_up_after)| Dose {
            dt,
            day,
            reversed,
            catch_up_after,
        })
}

fn cmd(json: String) -> CommandEnvelope {
    CommandEnvelope::parse(&json).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn rows_sum_to_totals_and_replay_equals_live(doses in prop::collection::vec(dose(), 1..60), seed in any::<u64>()) {
        let dir = tempfile::tempdir().unwrap();
        let (store, ledger, engine) = support::ledger(dir.path());
        let actor = Actor { role: "test".into(), ..Default::default() };
        for (i, dt) in DTS.iter().enumerate() {
            let c = cmd(format!(r#"{{"type":"AuthoriseSite","command_id":"{}","directorate":"{dt}","site":"{dt}-dt","site_kind":"dt_premises","authorised_on":"2021-09-01"}}"#, support::id(i as u128)));
            prop_assert!(matches!(ledger.handle(&c, &actor).unwrap(), Outcome::Accepted(_)));
        }
        // A deterministic shuffle of the (independent) commands.
        let mut order: Vec<usize> = (0..doses.len()).collect();
        let mut s = seed | 1;
        for i in (1..order.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            order.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let mut expected: BTreeMap<&str, i64> = BTreeMap::new();
        for &k in &order {
            let d = &doses[k];
            let dt = DTS[d.dt];
            let when = chrono::NaiveDate::from_ymd_opt(2021, 9, 1).unwrap() + chrono::Duration::days(d.day as i64);
            let id = support::id(1000 + k as u128);
            let c = cmd(format!(r#"{{"type":"AdministerDose","command_id":"{id}","person_ref":"p{k}","age_band":"18-29","recipient":"user","directorate":"{dt}","site":"{dt}-dt","product":"comirnaty","lot":"L","dose":"first","administered_at":"{when}T10:00:00+02:00"}}"#));
            prop_assert!(matches!(ledger.handle(&c, &actor).unwrap(), Outcome::Accepted(_)));
            if d.reversed {
                let r = cmd(format!(r#"{{"type":"ReverseDoseEntry","command_id":"{}","reverses":"{id}","reason":"entered_in_error"}}"#, support::id(100_000 + k as u128)));
                prop_assert!(matches!(ledger.handle(&r, &actor).unwrap(), Outcome::Accepted(_)));
            } else {
                *expected.entry(dt).or_default() += 1;
            }
            if d.catch_up_after {
                engine.catch_up(store.as_ref()).unwrap();
            }
        }
        let r = engine.report(store.as_ref(), "doses_by_directorate", None, None).unwrap();
        let mut rows_sum = 0;
        for row in &r.rows {
            let dt = match row.get("directorate") { Some(campaign_ledger::projection::Val::Text(t)) => t.clone(), _ => unreachable!() };
            prop_assert_eq!(row.int("total"), expected.get(dt.as_str()).copied().unwrap_or(0));
            prop_assert_eq!(row.int("first") + row.int("second") + row.int("booster"), row.int("total"));
            rows_sum += row.int("total");
        }
        prop_assert_eq!(rows_sum, r.totals.int("total"));
        prop_assert_eq!(r.totals.int("total"), expected.values().sum::<i64>());
        for name in ["doses_by_directorate", "doses_by_day", "tickets_by_directorate"] {
            let (live, _) = engine.live_state(store.as_ref(), name).unwrap();
            let (replayed, _) = engine.replay_fresh(store.as_ref(), name).unwrap();
            prop_assert_eq!(live, replayed);
        }
        // as-of any day: the cumulative curve and the per-directorate report agree
        let day = chrono::NaiveDate::from_ymd_opt(2021, 10, 1).unwrap();
        let a = engine.report(store.as_ref(), "doses_by_directorate", Some(day), None).unwrap();
        let b = engine.report(store.as_ref(), "doses_by_day", Some(day), None).unwrap();
        prop_assert_eq!(a.totals.int("total"), b.rows.last().map(|r| r.int("total")).unwrap_or(0));
    }
}

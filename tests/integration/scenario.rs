//! The OFII 2021 scenario through the whole command path: the published figures come out of
//! the projections, corrections and late entries behave as an auditor expects.

use crate::support;

use campaign_ledger::app::submit_lines;
use campaign_ledger::domain::Reference;
use campaign_ledger::scenario;
use campaign_ledger::store::Actor;

#[test]
fn the_scenario_gives_the_published_totals_and_every_feature_of_the_campaign() {
    let dir = tempfile::tempdir().unwrap();
    let (store, ledger, engine) = support::ledger(dir.path());
    let s = scenario::ofii_2021(&Reference::builtin()).unwrap();
    let text = s.to_jsonl();
    let actor = Actor {
        role: "test".into(),
        ..Default::default()
    };
    let summary = submit_lines(
        &ledger,
        text.lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.as_bytes().to_vec())),
        &actor,
        |_| {},
        |_| {},
    )
    .unwrap();
    assert_eq!(summary.invalid, 0);
    assert!(
        (5..=15).contains(&summary.rejected),
        "a handful of rejections: {summary:?}"
    );
    for code in [
        "second_dose_too_early",
        "product_not_allowed_for_age",
        "site_not_authorised",
        "booster_not_open",
        "booster_too_early",
    ] {
        assert!(
            summary.by_code.contains_key(code),
            "{code} missing from {:?}",
            summary.by_code
        );
    }

    let day = "2021-12-17".parse().unwrap();
    let r = engine
        .report(store.as_ref(), "doses_by_directorate", Some(day), None)
        .unwrap();
    assert_eq!(r.totals.int("total"), 1428);
    assert_eq!(r.totals.int("first"), 880);
    assert_eq!(r.rows.len(), 19, "19 authorised directorates vaccinate");
    let sum: i64 = r
        .rows
        .iter()
        .map(|row| row.int("first") + row.int("second") + row.int("booster"))
        .sum();
    assert_eq!(sum, 1428);
    let limoges_first = |as_of: &str| {
        let r = engine
            .report(
                store.as_ref(),
                "doses_by_directorate",
                Some(as_of.parse().unwrap()),
                None,
            )
            .unwrap();
        (
            r.rows
                .iter()
                .find(|x| x.get("directorate").is_some())
                .cloned(),
            r.rows.len(),
        )
    };
    // Limoges launched first, in September.
    let (first_row, n) = limoges_first("2021-09-15");
    assert_eq!(n, 1);
    assert_eq!(
        first_row.unwrap().get("directorate"),
        Some(&campaign_ledger::projection::Val::Text("limoges".into()))
    );

    // After the as-of date the campaign goes on.
    let later = engine
        .report(
            store.as_ref(),
            "doses_by_directorate",
            Some("2021-12-31".parse().unwrap()),
            None,
        )
        .unwrap();
    assert!(later.totals.int("total") > 1428);
    // Boosters only from 27 November for adults under 65 (a few over-65s from September).
    let by_day = engine
        .report(
            store.as_ref(),
            "doses_by_day",
            Some("2021-11-26".parse().unwrap()),
            None,
        )
        .unwrap();
    let boosters_before = by_day.rows.last().unwrap().int("booster");
    assert!(
        boosters_before > 0 && boosters_before < 20,
        "{boosters_before}"
    );
    let by_day = engine
        .report(store.as_ref(), "doses_by_day", Some(day), None)
        .unwrap();
    assert_eq!(
        by_day.rows.last().unwrap().int("total"),
        1428,
        "the cumulative curve ends at the national total"
    );

    // Tickets in Lyon and Marseille only; the funnel adds up.
    let t = engine
        .report(store.as_ref(), "tickets_by_directorate", Some(day), None)
        .unwrap();
    assert_eq!(t.rows.len(), 2);
    for row in &t.rows {
        assert_eq!(
            row.int("issued"),
            row.int("redeemed") + row.int("expired") + row.int("outstanding")
        );
        assert!(row.int("redeemed") > 0 && row.int("expired") > 0);
    }
    // Rennes sessions grow.
    let sessions = engine
        .report(store.as_ref(), "session_attendance", Some(day), None)
        .unwrap();
    let attendance: Vec<i64> = sessions.rows.iter().map(|r| r.int("attendance")).collect();
    assert!(attendance.len() >= 8);
    assert!(attendance.windows(2).all(|w| w[1] > w[0]), "{attendance:?}");
    // Survey: every directorate answered; the rollup counts structures.
    let survey = engine
        .report(store.as_ref(), "survey_coverage", None, None)
        .unwrap();
    assert_eq!(survey.rows.len(), 19);
    assert!(survey
        .rows
        .iter()
        .all(|r| r.int("structures") >= 3 && r.int("with_one_dose") <= r.int("residents")));
}

#[test]
fn known_at_shows_what_the_ledger_said_then_and_reversals_take_effect_at_the_entry_date() {
    let dir = tempfile::tempdir().unwrap();
    let out = support::run(dir.path(), &["demo"]);
    assert!(out.status.success());
    let report = |args: &[&str]| -> serde_json::Value {
        let mut a = vec!["report", "doses_by_directorate", "--format", "json"];
        a.extend_from_slice(args);
        serde_json::from_str(&support::stdout(&support::run(dir.path(), &a))).unwrap()
    };
    let now = report(&["--as-of", "2021-12-17"]);
    let then = report(&[
        "--as-of",
        "2021-12-17",
        "--known-at",
        "2021-12-17T18:00:00+01:00",
    ]);
    assert_eq!(now["totals"]["total"], 1428);
    // Late paper entries were not known on the evening of 17 December; two entries later
    // reversed still were.
    let then_total = then["totals"]["total"].as_i64().unwrap();
    assert!(then_total < 1428 && then_total > 1400, "{then_total}");
    // Known at the end of the scenario, the answer is today's.
    let end = report(&[
        "--as-of",
        "2021-12-17",
        "--known-at",
        "2021-12-31T00:00:00+01:00",
    ]);
    assert_eq!(end["totals"], now["totals"]);
}

/// The scenario's corrections, as a supervisor and an auditor read them from the CLI: a first
/// dose entered under the wrong person in Limoges, found after that person's second dose and
/// resolved a week later by the first dose they had elsewhere; one in Lyon, still open.
#[test]
fn the_scenario_s_corrections_show_in_data_quality_as_of_and_known_at() {
    use support::{run, stderr, stdout};
    let d = support::scenario_dir();
    let json = |args: &[&str]| -> serde_json::Value {
        let o = run(d, args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        serde_json::from_str(&stdout(&o)).unwrap()
    };
    let open = |v: &serde_json::Value| -> Vec<(String, String)> {
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["directorate"].as_str().unwrap().to_string(),
                    r["kind"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let report = |extra: &[&str]| {
        let mut args = vec!["report", "data_quality", "--format", "json"];
        args.extend_from_slice(extra);
        json(&args)
    };
    let lyon = vec![("lyon".to_string(), "second_dose_without_first".to_string())];
    assert_eq!(open(&report(&["--as-of", "2021-12-17"])), lyon);
    // The Lyon second dose was given on 4 November: as of the day before, nothing is broken.
    assert!(open(&report(&["--as-of", "2021-11-03"])).is_empty());
    // What the ledger said on 3 November: the Limoges finding, open until the 7th.
    let limoges = vec![(
        "limoges".to_string(),
        "second_dose_without_first".to_string(),
    )];
    assert_eq!(
        open(&report(&[
            "--as-of",
            "2021-12-17",
            "--known-at",
            "2021-11-03T12:00:00+01:00"
        ])),
        limoges
    );
    assert!(open(&report(&["--known-at", "2021-11-10T12:00:00+01:00"])).is_empty());
    // The list a supervisor reads: pseudonym, entries, what to do; never the ref.
    let list = json(&[
        "findings",
        "--directorate",
        "lyon",
        "--as-of",
        "2021-12-17",
        "--format",
        "json",
    ]);
    let f = &list["findings"].as_array().unwrap()[0];
    assert_eq!(f["date"], "2021-11-04");
    assert_eq!(f["person_id"].as_str().unwrap().len(), 32, "{f}");
    assert_eq!(f["entries"][1]["reversed"], true);
    assert!(!list.to_string().contains("\"p-"), "{list}");
    let paris = json(&["findings", "--directorate", "paris", "--format", "json"]);
    assert!(paris["findings"].as_array().unwrap().is_empty());
    // The totals stay the published ones.
    let r = json(&[
        "report",
        "doses_by_directorate",
        "--as-of",
        "2021-12-17",
        "--format",
        "json",
    ]);
    assert_eq!(
        (r["totals"]["total"].clone(), r["totals"]["first"].clone()),
        (1428.into(), 880.into())
    );
}

//! Schema evolution: `DoseAdministered` v2 adds `series_doses`; stored v1 events are read
//! through an upcaster. The fixture is an export of the OFII 2021 scenario written by the
//! build before v2 (every event schema version 1, tests/fixtures/ofii-2021-v1.jsonl.gz): it
//! imports with its hashes intact, replays to the same totals as a store written today, the
//! domain and the projections see v1 doses as v2, and new doses are written as v2.

use crate::support;

use campaign_ledger::domain::Event;
use support::{run, stderr, stdout};

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}{}", stdout(o), stderr(o));
    stdout(o)
}

/// A store in `dir` imported from the v1 fixture; returns the fixture's lines.
fn v1_store(dir: &std::path::Path) -> Vec<String> {
    let text = support::v1_fixture();
    std::fs::write(dir.join("v1.jsonl"), &text).unwrap();
    ok(&run(dir, &["import", "v1.jsonl"]));
    text.lines().map(str::to_string).collect()
}

fn report(dir: &std::path::Path, name: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["report", name, "--as-of", "2021-12-17", "--format", "json"];
    args.extend_from_slice(extra);
    serde_json::from_str(&ok(&run(dir, &args))).unwrap()
}

#[test]
fn a_store_of_v1_events_replays_to_the_same_totals_as_one_written_today() {
    let dir = tempfile::tempdir().unwrap();
    let lines = v1_store(dir.path());
    let doses: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("\"ledgereventtype\":\"DoseAdministered\""))
        .collect();
    assert!(doses.len() > 1000);
    assert!(doses
        .iter()
        .all(|l| l.contains("\"ledgerschemaversion\":1") && !l.contains("series_doses")));
    ok(&run(dir.path(), &["audit", "verify"]));

    let old = report(dir.path(), "doses_by_directorate", &[]);
    assert_eq!(old["totals"]["total"], 1428, "{old}");
    assert_eq!(old["totals"]["first"], 880, "{old}");
    // Row for row what a store written by this build (v2 doses) gives.
    let today = support::store_file(support::scenario_dir());
    let today = format!("sqlite:{}", today.display());
    for name in [
        "doses_by_directorate",
        "doses_by_day",
        "tickets_by_directorate",
        // The v1 log names partner centres; read as their ids (the name-to-id map).
        "tickets_by_partner_centre",
        "session_attendance",
    ] {
        let new = report(dir.path(), name, &["--store", &today]);
        let old = report(dir.path(), name, &[]);
        assert_eq!(old["rows"], new["rows"], "{name}");
        assert_eq!(old["totals"], new["totals"], "{name}");
    }
}

#[test]
fn the_domain_and_the_projections_read_v1_doses_as_v2_and_new_doses_are_v2() {
    let dir = tempfile::tempdir().unwrap();
    v1_store(dir.path());
    // The domain: every stored v1 dose decodes as v2, its series from its product.
    let store = support::sqlite_store_at(&support::store_file(dir.path()));
    let mut seen = 0;
    for e in store.read_all(0, 100_000).unwrap() {
        if e.event_type != "DoseAdministered" {
            continue;
        }
        assert_eq!(e.schema_version, 1);
        let Event::DoseAdministered(d) =
            Event::decode(&e.event_type, e.schema_version, &e.data).unwrap()
        else {
            panic!("not a dose")
        };
        let expected = if d.product.as_str() == "jcovden" {
            1
        } else {
            2
        };
        assert_eq!(d.series_doses, expected, "{}", e.data);
        seen += 1;
    }
    assert!(seen > 1000);
    drop(store);

    // A projection that groups by the v2 field sees it on v1 events.
    let defs = dir.path().join("defs");
    std::fs::create_dir_all(&defs).unwrap();
    std::fs::write(
        defs.join("doses_by_series.toml"),
        r#"name = "doses_by_series"
description = "Doses by product and primary-series length"
group_by = ["product", "series_doses"]

[[source]]
event = "DoseAdministered"
time = "administered_at"

[[column]]
name = "doses"
agg = "count"
"#,
    )
    .unwrap();
    let r = report(dir.path(), "doses_by_series", &["--projections", "defs"]);
    let rows = r["rows"].as_array().unwrap();
    assert!(!rows.is_empty(), "{r}");
    for row in rows {
        let series = if row["product"] == "jcovden" {
            "1"
        } else {
            "2"
        };
        assert_eq!(
            row["series_doses"], series,
            "a v1 dose was not upcast: {row}"
        );
    }
    // Every dose given by 17 December (reversals are not folded here: they carry no series).
    let given: u64 = rows.iter().map(|r| r["doses"].as_u64().unwrap()).sum();
    assert_eq!(r["totals"]["doses"], given);
    assert!(given >= 1428, "{r}");

    // A dose recorded today is written as v2, beside the v1 ones.
    let command = r#"{"command_id":"0193aaaa-0000-7000-8000-000000000001","type":"AdministerDose","person_ref":"p-new-v2","age_band":"55-64","recipient":"user","directorate":"lyon","site":"lyon-dt","product":"jcovden","lot":"XD955","dose":"first","administered_at":"2021-12-18T10:00:00+01:00"}"#;
    std::fs::write(dir.path().join("one.jsonl"), format!("{command}\n")).unwrap();
    let out = ok(&run(
        dir.path(),
        &["submit", "one.jsonl", "--format", "json"],
    ));
    assert!(out.contains("\"accepted\""), "{out}");
    ok(&run(
        dir.path(),
        &["export", "--from", "2435", "-o", "new.jsonl"],
    ));
    let new = std::fs::read_to_string(dir.path().join("new.jsonl")).unwrap();
    assert!(
        new.contains("\"ledgerschemaversion\":2") && new.contains("\"series_doses\":1"),
        "{new}"
    );
    assert!(
        new.contains("fr.ofii.campaign-ledger.DoseAdministered.v2"),
        "{new}"
    );
    ok(&run(dir.path(), &["audit", "verify"]));
}

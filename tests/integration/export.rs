//! Export and import: `export` writes the log as JSON lines of CloudEvents; `import` rebuilds a
//! store from it with identical hashes (SQLite → SQLite, and SQLite → NATS → SQLite with
//! byte-identical exports); `audit verify --export` checks an export without the database,
//! alone or against a signed digest; a damaged export is caught, named, and imports nothing.

use crate::support;

use std::path::Path;
use support::{run, stderr, stdout};

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}{}", stdout(o), stderr(o));
    stdout(o)
}

/// The scenario's full export, written to `dir/all.jsonl`; returns its lines.
fn export_scenario(dir: &Path) -> Vec<String> {
    let out = dir.join("all.jsonl");
    let store = format!(
        "sqlite:{}",
        support::store_file(support::scenario_dir()).display()
    );
    ok(&run(
        dir,
        &["export", "--store", &store, "-o", out.to_str().unwrap()],
    ));
    std::fs::read_to_string(out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Runs the binary with the scenario store's key store and master key (a copy of a log is
/// written to with the keys its people's refs were sealed with).
fn with_original_keys(dir: &Path, args: &[&str]) -> std::process::Output {
    let data = support::scenario_dir().join("ledger-data");
    support::bin()
        .current_dir(dir)
        .args(args)
        .arg("--key-store")
        .arg(data.join("ledger.keys.db"))
        .env(
            "LEDGER_MASTER_KEY",
            std::fs::read_to_string(data.join("master.key"))
                .unwrap()
                .trim(),
        )
        .output()
        .unwrap()
}

fn field(line: &str, name: &str) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(line).unwrap()[name].clone()
}

fn broken_at(o: &std::process::Output, position: u64) -> String {
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(o), stderr(o));
    let out = stdout(o);
    assert!(
        out.contains(&format!("BROKEN at position {position}:")),
        "expected a break at {position}: {out}"
    );
    out
}

#[test]
fn export_import_export_is_byte_identical_and_keeps_hashes_totals_and_idempotency() {
    let dir = tempfile::tempdir().unwrap();
    let lines = export_scenario(dir.path());
    assert!(lines.len() > 2000, "{}", lines.len());
    // Every line is a CloudEvent with the envelope an auditor needs.
    for key in [
        "ledgerposition",
        "ledgerrecordedat",
        "ledgerprevhash",
        "ledgerhash",
        "ledgercommandhash",
    ] {
        assert!(
            !field(&lines[0], key).is_null(),
            "{key} missing: {}",
            lines[0]
        );
    }
    assert_eq!(field(&lines[0], "specversion"), "1.0");
    assert_eq!(field(&lines[0], "ledgerposition"), 1);

    let o = run(
        dir.path(),
        &["import", "all.jsonl", "--store", "sqlite:copy/ledger.db"],
    );
    let out = ok(&o);
    let head_hash = field(lines.last().unwrap(), "ledgerhash");
    assert!(
        out.contains(&format!("imported {} events", lines.len()))
            && out.contains(head_hash.as_str().unwrap()),
        "{out}"
    );
    ok(&run(
        dir.path(),
        &[
            "export",
            "--store",
            "sqlite:copy/ledger.db",
            "-o",
            "again.jsonl",
        ],
    ));
    assert!(
        std::fs::read(dir.path().join("all.jsonl")).unwrap()
            == std::fs::read(dir.path().join("again.jsonl")).unwrap(),
        "the export of the imported store differs from the original export"
    );
    let v = ok(&run(
        dir.path(),
        &["audit", "verify", "--store", "sqlite:copy/ledger.db"],
    ));
    assert!(v.contains(head_hash.as_str().unwrap()), "{v}");

    // The projections of the copy give the scenario's totals.
    let r = ok(&run(
        dir.path(),
        &[
            "report",
            "doses_by_directorate",
            "--as-of",
            "2021-12-17",
            "--format",
            "json",
            "--store",
            "sqlite:copy/ledger.db",
        ],
    ));
    let r: serde_json::Value = serde_json::from_str(&r).unwrap();
    assert_eq!(r["totals"]["total"], 1428, "{r}");
    assert_eq!(r["totals"]["first"], 880, "{r}");

    // Command ids stay idempotent in the copy: a command of the scenario is a duplicate there.
    let scenario = ok(&run(dir.path(), &["scenario", "ofii-2021"]));
    let first_command = scenario.lines().find(|l| l.starts_with('{')).unwrap();
    std::fs::write(dir.path().join("one.jsonl"), format!("{first_command}\n")).unwrap();
    // Writing to the copy needs the key store its people's refs were sealed with: without it
    // the ledger would record them again as new people, so it refuses and says so.
    let o = run(
        dir.path(),
        &["submit", "one.jsonl", "--store", "sqlite:copy/ledger.db"],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("give its path with --key-store"),
        "{}",
        stderr(&o)
    );
    let o = with_original_keys(
        dir.path(),
        &[
            "submit",
            "one.jsonl",
            "--format",
            "json",
            "--store",
            "sqlite:copy/ledger.db",
        ],
    );
    assert!(
        stdout(&o).contains("\"duplicate\""),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );

    // Importing again adds nothing; importing into a store holding another log is refused.
    let again = ok(&run(
        dir.path(),
        &["import", "all.jsonl", "--store", "sqlite:copy/ledger.db"],
    ));
    assert!(
        again.contains(&format!(
            "imported 0 events ({} already there)",
            lines.len()
        )),
        "{again}"
    );
    let other = tempfile::tempdir().unwrap();
    let store = support::sqlite_store_at(&other.path().join("ledger.db"));
    support::fill(store.as_ref(), 10);
    drop(store);
    let target = format!("sqlite:{}", other.path().join("ledger.db").display());
    let o = run(dir.path(), &["import", "all.jsonl", "--store", &target]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("already holds a different log"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_damaged_export_is_caught_and_named_alone_and_on_import_and_imports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lines = export_scenario(dir.path());
    let write = |name: &str, ls: &[String]| {
        std::fs::write(dir.path().join(name), ls.join("\n") + "\n").unwrap();
    };
    let out = ok(&run(
        dir.path(),
        &["audit", "verify", "--export", "all.jsonl"],
    ));
    assert!(
        out.contains(&format!("positions 1..{}", lines.len())),
        "{out}"
    );

    // A changed value in one event's data.
    let mut changed = lines.clone();
    changed[99] = changed[99].replacen("\"data\":{", "\"data\":{\"x\":1,", 1);
    write("changed.jsonl", &changed);
    let out = broken_at(
        &run(
            dir.path(),
            &["audit", "verify", "--export", "changed.jsonl"],
        ),
        100,
    );
    assert!(out.contains("altered"), "{out}");
    let o = run(
        dir.path(),
        &["import", "changed.jsonl", "--store", "sqlite:c/ledger.db"],
    );
    broken_at(&o, 100);
    assert!(
        !dir.path().join("c/ledger.db").exists(),
        "a broken export must not even create the target store"
    );

    // A reordered pair, a deleted event, a truncated last line.
    let mut swapped = lines.clone();
    swapped.swap(149, 150);
    write("swapped.jsonl", &swapped);
    broken_at(
        &run(
            dir.path(),
            &["audit", "verify", "--export", "swapped.jsonl"],
        ),
        150,
    );
    let mut deleted = lines.clone();
    deleted.remove(199);
    write("deleted.jsonl", &deleted);
    let out = broken_at(
        &run(
            dir.path(),
            &["audit", "verify", "--export", "deleted.jsonl"],
        ),
        200,
    );
    assert!(out.contains("missing"), "{out}");
    let mut truncated = lines.clone();
    let last = truncated.pop().unwrap();
    truncated.push(last[..last.len() / 2].to_string());
    write("truncated.jsonl", &truncated);
    let n = lines.len() as u64;
    let out = broken_at(
        &run(
            dir.path(),
            &["audit", "verify", "--export", "truncated.jsonl"],
        ),
        n,
    );
    assert!(out.contains("truncated"), "{out}");

    // Not an export at all: a usage error, not a break.
    std::fs::write(dir.path().join("notes.txt"), "hello\n").unwrap();
    let o = run(dir.path(), &["audit", "verify", "--export", "notes.txt"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not a ledger event"), "{}", stderr(&o));
}

#[test]
fn a_window_export_verifies_alone_and_against_a_signed_digest_taken_inside_it() {
    let dir = tempfile::tempdir().unwrap();
    let lines = export_scenario(dir.path());
    // A store that holds the first 1,500 events when its digest is taken, then the rest
    // (the second import goes on from where the first stopped).
    std::fs::write(
        dir.path().join("head.jsonl"),
        lines[..1500].join("\n") + "\n",
    )
    .unwrap();
    ok(&run(dir.path(), &["import", "head.jsonl"]));
    let public = ok(&run(dir.path(), &["audit", "keygen"]))
        .trim()
        .to_string();
    let digest = ok(&run(dir.path(), &["audit", "digest"]));
    std::fs::write(dir.path().join("digest.json"), &digest).unwrap();
    let out = ok(&run(dir.path(), &["import", "all.jsonl"]));
    assert!(
        out.contains(&format!(
            "imported {} events (1500 already there)",
            lines.len() - 1500
        )),
        "{out}"
    );

    ok(&run(
        dir.path(),
        &[
            "export",
            "--from",
            "1000",
            "--to",
            "2000",
            "-o",
            "window.jsonl",
        ],
    ));
    let window = std::fs::read_to_string(dir.path().join("window.jsonl")).unwrap();
    assert_eq!(window.lines().count(), 1001);
    let verify = |file: &str| {
        run(
            dir.path(),
            &[
                "audit",
                "verify",
                "--export",
                file,
                "--digest",
                "digest.json",
                "--public-key",
                &public,
                "--quorum",
                "0",
            ],
        )
    };
    let out = ok(&verify("window.jsonl"));
    assert!(
        out.contains("the export holds the log the checkpoint of position 1500 states"),
        "{out}"
    );
    assert!(out.contains("positions 1000..2000"), "{out}");

    // Changed before the digest's position: the chain inside the window breaks.
    let mut w: Vec<String> = window.lines().map(str::to_string).collect();
    w[200] = w[200].replacen("\"data\":{", "\"data\":{\"x\":1,", 1);
    std::fs::write(dir.path().join("w-changed.jsonl"), w.join("\n") + "\n").unwrap();
    broken_at(&verify("w-changed.jsonl"), 1200);

    // A window entirely after the digest cannot be checked against it, and says how to.
    ok(&run(
        dir.path(),
        &["export", "--from", "1600", "-o", "late.jsonl"],
    ));
    let o = verify("late.jsonl");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("before this export's first event (1600)"),
        "{}",
        stderr(&o)
    );

    // --since: the events recorded from an instant on, a window that verifies on its own.
    let since = field(&lines[2000], "ledgerrecordedat");
    let since = since.as_str().unwrap();
    ok(&run(
        dir.path(),
        &["export", "--since", since, "-o", "since.jsonl"],
    ));
    let s = std::fs::read_to_string(dir.path().join("since.jsonl")).unwrap();
    let first = s.lines().next().unwrap();
    assert!(field(first, "ledgerrecordedat").as_str().unwrap() >= since);
    assert!(field(first, "ledgerposition").as_u64().unwrap() <= 2001);
    assert_eq!(s.lines().last(), lines.last().map(String::as_str));
    ok(&run(
        dir.path(),
        &["audit", "verify", "--export", "since.jsonl"],
    ));
}

#[test]
fn sqlite_to_nats_to_sqlite_gives_byte_identical_exports() {
    let server = support::nats::NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let lines = export_scenario(dir.path());
    let nats = server.url();
    let out = ok(&run(dir.path(), &["import", "all.jsonl", "--store", &nats]));
    assert!(
        out.contains(&format!("imported {} events", lines.len())),
        "{out}"
    );
    ok(&run(dir.path(), &["audit", "verify", "--store", &nats]));
    ok(&run(
        dir.path(),
        &["export", "--store", &nats, "-o", "from-nats.jsonl"],
    ));
    ok(&run(
        dir.path(),
        &[
            "import",
            "from-nats.jsonl",
            "--store",
            "sqlite:back/ledger.db",
        ],
    ));
    ok(&run(
        dir.path(),
        &[
            "export",
            "--store",
            "sqlite:back/ledger.db",
            "-o",
            "back.jsonl",
        ],
    ));
    let original = std::fs::read(dir.path().join("all.jsonl")).unwrap();
    assert!(
        original == std::fs::read(dir.path().join("from-nats.jsonl")).unwrap(),
        "the NATS log's export differs"
    );
    assert!(
        original == std::fs::read(dir.path().join("back.jsonl")).unwrap(),
        "the round trip's export differs"
    );
    // The NATS log keeps command ids idempotent after an import too.
    let scenario = ok(&run(dir.path(), &["scenario", "ofii-2021"]));
    std::fs::write(
        dir.path().join("one.jsonl"),
        format!(
            "{}\n",
            scenario.lines().find(|l| l.starts_with('{')).unwrap()
        ),
    )
    .unwrap();
    let o = with_original_keys(
        dir.path(),
        &["submit", "one.jsonl", "--format", "json", "--store", &nats],
    );
    assert!(
        stdout(&o).contains("\"duplicate\""),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
}

/// A store's own import checks what it is given, whatever the caller verified: the next
/// position, the chain from its head, and command ids it already holds.
#[test]
fn a_store_refuses_events_that_do_not_continue_its_head() {
    use campaign_ledger::envelope::cloudevents::decode_export;
    use campaign_ledger::store::{ImportedEvent, StoreError};
    let dir = tempfile::tempdir().unwrap();
    let lines = export_scenario(dir.path());
    let events: Vec<ImportedEvent> = lines[..40]
        .iter()
        .map(|l| {
            let (event, hash) = decode_export(l.as_bytes()).unwrap();
            let hash = hash.unwrap();
            ImportedEvent {
                event,
                content_hash: hash.hash,
                hash_version: hash.version,
            }
        })
        .collect();
    let store = support::sqlite_store(dir.path());
    // Whole commands per call: cut where the next event starts another command.
    let cut = (10..40)
        .find(|&i| events[i].event.command_id != events[i - 1].event.command_id)
        .unwrap();
    assert_eq!(store.import(&events[..cut]).unwrap().position, cut as u64);
    let refused = |r: Result<_, StoreError>| match r {
        Err(StoreError::Invalid(m)) => m,
        other => panic!("{other:?}"),
    };
    let m = refused(store.import(&events[cut + 1..]));
    assert!(
        m.contains(&format!("position {} is missing", cut + 1)),
        "{m}"
    );
    let m = refused(store.import(&events[..cut]));
    assert!(m.contains("position 1 appears after"), "{m}");
    let mut changed = events[cut..].to_vec();
    changed[0].event.data.push(' ');
    let m = refused(store.import(&changed));
    assert!(m.contains("do not match its hash"), "{m}");
    assert_eq!(
        store.head().unwrap().position,
        cut as u64,
        "nothing was written"
    );
    assert_eq!(store.import(&events[cut..]).unwrap().position, 40);
}

/// A log exported and imported elsewhere (another SQLite file, the NATS log) goes on with the
/// key store it was written with: a person recorded before the export is found again on the
/// new log (the sealed ref, opened with their key, gives the ref back, and the new log's
/// person index is rebuilt from it), so their second dose is judged on their first.
#[test]
fn an_imported_log_finds_the_people_recorded_before_the_export() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let site = r#"{"type":"AuthoriseSite","command_id":"0193ffff-0000-7000-8000-00000000bb01","directorate":"lyon","site":"lyon-dt","site_kind":"dt_premises","authorised_on":"2021-09-01"}"#;
    let first = r#"{"type":"AdministerDose","command_id":"0193ffff-0000-7000-8000-00000000bb02","person_ref":"lyon-imp-1","age_band":"30-39","recipient":"user","directorate":"lyon","site":"lyon-dt","product":"comirnaty","lot":"L","dose":"first","administered_at":"2021-10-01T10:00:00+02:00"}"#;
    std::fs::write(d.join("first.jsonl"), format!("{site}\n{first}\n")).unwrap();
    ok(&run(d, &["submit", "first.jsonl"]));
    ok(&run(d, &["export", "-o", "all.jsonl"]));
    let keys = d.join("ledger-data/ledger.keys.db");
    let master = std::fs::read_to_string(d.join("ledger-data/master.key")).unwrap();
    let second = |n: u32| {
        format!(
            r#"{{"type":"AdministerDose","command_id":"0193ffff-0000-7000-8000-00000000bc{n:02}","person_ref":"lyon-imp-1","age_band":"30-39","recipient":"user","directorate":"lyon","site":"lyon-dt","product":"comirnaty","lot":"L","dose":"second","administered_at":"2021-11-01T10:00:00+01:00"}}"#
        )
    };
    let nats = support::nats::NatsServer::start();
    for (n, store) in [(1, "sqlite:copy/ledger.db".to_string()), (2, nats.url())] {
        ok(&run(d, &["import", "all.jsonl", "--store", &store]));
        std::fs::write(d.join("second.jsonl"), format!("{}\n", second(n))).unwrap();
        let o = support::bin()
            .current_dir(d)
            .args([
                "submit",
                "second.jsonl",
                "--format",
                "json",
                "--store",
                &store,
            ])
            .arg("--key-store")
            .arg(&keys)
            .env("LEDGER_MASTER_KEY", master.trim())
            .output()
            .unwrap();
        assert!(
            stdout(&o).contains("\"accepted\""),
            "{store}: {}{}",
            stdout(&o),
            stderr(&o)
        );
    }
}

//! The person index in the log's own database: a new person's entry is written with their
//! first events, and two writers recording the same new person at the same moment end with
//! one pseudonym.

use campaign_ledger::app::{Ledger, Outcome};
use campaign_ledger::domain::*;
use campaign_ledger::privacy::{KeyStore, MasterKey};
use campaign_ledger::store::{
    self, Actor, AppendResult, CommandRecord, EventStore, PersonLink, StoreError, SystemClock,
};
use std::sync::Arc;

fn ledger(store: Arc<dyn EventStore>, dir: &std::path::Path, master: &MasterKey) -> Ledger {
    let keys = KeyStore::open(&dir.join("ledger.keys.db"), master, true).unwrap();
    Ledger::new(
        store,
        Policy::default(),
        Reference::builtin(),
        Arc::new(SystemClock),
    )
    .with_keys(Arc::new(keys))
    .unwrap()
}

fn command(c: Command) -> CommandEnvelope {
    CommandEnvelope {
        command_id: uuid::Uuid::now_v7(),
        correlation_id: None,
        command: c,
    }
}

fn dose(dose: DoseKind, at: &str) -> CommandEnvelope {
    command(Command::AdministerDose(AdministerDose {
        person_ref: "lyon-7".into(),
        age_band: AgeBand::A30to39,
        recipient: Recipient::User,
        directorate: "lyon".into(),
        site: "lyon-dt".into(),
        product: Product::Comirnaty,
        lot: "FF2832".into(),
        dose,
        administered_at: chrono::DateTime::parse_from_rfc3339(at).unwrap(),
        session_id: None,
        prior_infection_counted: false,
    }))
}

fn accepted(o: Outcome) -> CommandRecord {
    match o {
        Outcome::Accepted(r) => r,
        other => panic!("not accepted: {other:?}"),
    }
}

/// Two ledgers (two processes) on one log and one key store, both open before the first
/// records a new person. The second does not know the person yet (its copy of the index was
/// loaded before), takes a new key, and its append is refused by the index (`PersonTaken`):
/// it looks again, finds the first's pseudonym, and the command is judged on the person's
/// real history.
#[test]
fn two_writers_recording_the_same_new_person_end_with_one_pseudonym() {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate().unwrap();
    let url = format!("sqlite:{}", dir.path().join("ledger.db").display());
    let first_store = store::open(&url, Arc::new(SystemClock)).unwrap();
    let first = ledger(first_store.clone(), dir.path(), &master);
    let second_store = store::open(&url, Arc::new(SystemClock)).unwrap();
    let second = ledger(second_store, dir.path(), &master);
    let actor = Actor {
        role: "test".into(),
        ..Default::default()
    };
    accepted(
        first
            .handle(
                &command(Command::AuthoriseSite(AuthoriseSite {
                    directorate: "lyon".into(),
                    site: "lyon-dt".into(),
                    site_kind: SiteKind::DtPremises,
                    authorised_on: chrono::NaiveDate::from_ymd_opt(2021, 8, 1).unwrap(),
                })),
                &actor,
            )
            .unwrap(),
    );
    let one = accepted(
        first
            .handle(&dose(DoseKind::First, "2021-10-01T10:00:00+02:00"), &actor)
            .unwrap(),
    );
    let head = first_store.head().unwrap();
    // The same first dose recorded again by the second writer (a resubmission under a new
    // command id): blind, it would start a second pseudonym with a second first dose.
    let outcome = second
        .handle(&dose(DoseKind::First, "2021-10-01T10:00:00+02:00"), &actor)
        .unwrap();
    assert!(
        matches!(outcome, Outcome::Rejected(_)),
        "judged on the person's real history: {outcome:?}"
    );
    assert_eq!(first_store.head().unwrap(), head, "nothing appended");
    // And a second dose through the second writer goes to the same stream.
    let two = accepted(
        second
            .handle(&dose(DoseKind::Second, "2021-11-01T10:00:00+01:00"), &actor)
            .unwrap(),
    );
    assert_eq!(two.stream_id, one.stream_id, "one pseudonym for the person");
    assert_eq!(first_store.read_stream(&one.stream_id).unwrap().len(), 2);
}

/// The store refuses a new person's entry the index holds already, and writes nothing of
/// the append.
#[test]
fn the_sqlite_log_refuses_a_second_entry_for_a_person_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = store::open(
        &format!("sqlite:{}", dir.path().join("l.db").display()),
        Arc::new(SystemClock),
    )
    .unwrap();
    let link = |id: &str| PersonLink {
        lookup: [9; 32],
        person_id: id.into(),
    };
    let request = |stream: &str, id: &str| {
        let mut r = support::contract::request(
            stream,
            store::ExpectedVersion::Exact(0),
            uuid::Uuid::now_v7(),
            vec![support::contract::event(1)],
        );
        r.person = Some(link(id));
        r
    };
    assert!(store.keeps_persons());
    assert!(matches!(
        store.append(request("person/a", "a")),
        Ok(AppendResult::Committed(_))
    ));
    assert_eq!(
        store.person_id(&[9; 32], true).unwrap().as_deref(),
        Some("a")
    );
    let head = store.head().unwrap();
    assert!(matches!(
        store.append(request("person/b", "b")),
        Err(StoreError::PersonTaken)
    ));
    assert_eq!(store.head().unwrap(), head, "nothing of the refused append");
    assert_eq!(
        store.person_id(&[9; 32], true).unwrap().as_deref(),
        Some("a")
    );
    store.forget_person(&[9; 32]).unwrap();
    assert_eq!(store.person_id(&[9; 32], true).unwrap(), None);
}

use crate::support;

fn dose_line(person: &str, kind: &str, at: &str) -> String {
    serde_json::json!({"type": "AdministerDose", "command_id": uuid::Uuid::now_v7(),
        "person_ref": person, "age_band": "30-39", "recipient": "user", "directorate": "lyon",
        "site": "lyon-dt", "product": "comirnaty", "lot": "FF1234", "dose": kind,
        "administered_at": at})
    .to_string()
}

fn submit_lines(dir: &std::path::Path, global: &[&str], lines: &[String]) -> String {
    std::fs::write(dir.join("in.jsonl"), lines.join("\n") + "\n").unwrap();
    let mut args = global.to_vec();
    args.extend(["submit", "in.jsonl", "--format", "json"]);
    let o = support::run(dir, &args);
    format!("{}{}", support::stdout(&o), support::stderr(&o))
}

/// `serve` and `submit` on one SQLite file, both ways: each process judges a command on the
/// people the other recorded a moment before (their second doses are accepted, their first
/// doses refused as recorded already), and first injections count each person once.
#[test]
fn serve_and_submit_on_one_file_are_judged_on_each_others_people() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_server, addr) = support::serve_new(d, &[]);
    let post = |body: String| {
        let (s, v) = support::plain(&addr, "POST", "/v1/commands", &body);
        assert_eq!(s, 200, "{v}");
        let v: serde_json::Value = serde_json::from_str(&v).unwrap();
        v["outcome"].as_str().unwrap().to_string() + v["error"]["code"].as_str().unwrap_or("")
    };
    assert_eq!(post(support::lyon_site()), "accepted");
    let (s, h) = (["S-1", "S-2", "S-3"], ["H-1", "H-2", "H-3"]);
    // submit records, the server goes on.
    let firsts: Vec<String> = s
        .iter()
        .map(|p| dose_line(p, "first", "2021-10-04T10:00:00+02:00"))
        .collect();
    let out = submit_lines(d, &[], &firsts);
    assert_eq!(out.matches("\"accepted\"").count(), 3, "{out}");
    for p in s {
        assert_eq!(
            post(dose_line(p, "second", "2021-11-04T10:00:00+01:00")),
            "accepted",
            "{p}"
        );
        assert_eq!(
            post(dose_line(p, "first", "2021-11-05T10:00:00+01:00")),
            "rejectedfirst_dose_already_recorded",
            "{p}"
        );
    }
    // The server records, submit goes on.
    for p in h {
        assert_eq!(
            post(dose_line(p, "first", "2021-10-04T10:00:00+02:00")),
            "accepted"
        );
    }
    let seconds: Vec<String> = h
        .iter()
        .flat_map(|p| {
            [
                dose_line(p, "second", "2021-11-04T10:00:00+01:00"),
                dose_line(p, "first", "2021-11-05T10:00:00+01:00"),
            ]
        })
        .collect();
    let out = submit_lines(d, &[], &seconds);
    assert_eq!(out.matches("\"accepted\"").count(), 3, "{out}");
    assert_eq!(
        out.matches("first_dose_already_recorded").count(),
        3,
        "{out}"
    );
    let o = support::run(
        d,
        &[
            "report",
            "doses_by_directorate",
            "--as-of",
            "2021-12-31",
            "--format",
            "json",
        ],
    );
    let report: serde_json::Value = serde_json::from_str(&support::ok_output(&o)).unwrap();
    assert_eq!(report["totals"]["first"], 6, "{report}");
    assert_eq!(report["totals"]["second"], 6, "{report}");
}

/// On the NATS log, until the keys live in the cluster, one key store writes persons: the log
/// records which, and a process with another key store (or a copy of it that missed people)
/// refuses to write persons, saying why; its reads and reports go on.
#[test]
fn a_second_key_store_on_one_nats_log_refuses_to_write_persons() {
    let nats = support::nats::NatsServer::start();
    let url = nats.url();
    let global = ["--store", url.as_str()];
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Both start before anyone is recorded; each makes its own key store.
    let out = submit_lines(one.path(), &global, &[support::lyon_site()]);
    assert!(out.contains("\"accepted\""), "{out}");
    let stale = tempfile::tempdir().unwrap();
    std::fs::create_dir(stale.path().join("ledger-data")).unwrap();
    for f in ["nats-log.keys.db", "master.key"] {
        std::fs::copy(
            one.path().join("ledger-data").join(f),
            stale.path().join("ledger-data").join(f),
        )
        .unwrap();
    }
    let out = submit_lines(two.path(), &global, &[]);
    assert!(!out.contains("error"), "{out}");
    let first = dose_line("N-1", "first", "2021-10-04T10:00:00+02:00");
    let out = submit_lines(one.path(), &global, &[first]);
    assert!(out.contains("\"accepted\""), "{out}");
    // Another key store, and a copy taken before N-1: both refuse to write persons.
    for (who, d) in [("another key store", &two), ("a stale copy", &stale)] {
        let out = submit_lines(
            d.path(),
            &global,
            &[dose_line("N-1", "second", "2021-11-04T10:00:00+01:00")],
        );
        assert!(
            !out.contains("\"accepted\"") && out.contains("key store"),
            "{who}: {out}"
        );
        let o = support::run(
            d.path(),
            &[
                "--store",
                &url,
                "report",
                "doses_by_directorate",
                "--as-of",
                "2021-12-31",
            ],
        );
        support::ok_output(&o);
    }
    // The key store that writes persons goes on.
    let out = submit_lines(
        one.path(),
        &global,
        &[dose_line("N-1", "second", "2021-11-04T10:00:00+01:00")],
    );
    assert!(out.contains("\"accepted\""), "{out}");
}

//! Erasure without rewriting history (crypto-shredding), through the real binary and server:
//! person refs are stored sealed under per-person keys kept in a separate key store; an admin
//! erases a person over HTTP; afterwards every projection is unchanged, reads of the person's
//! events say "erased", `audit verify` passes, the wrapped key's bytes are gone from the key
//! store file, the ref no longer leads to the person's history, and every person-level read
//! is in the access log an auditor can query.

use crate::support;

use serde_json::{json, Value};
use std::path::Path;
use support::{run, stderr, stdout};

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}{}", stdout(o), stderr(o));
    stdout(o)
}

fn reports(dir: &Path) -> Vec<Value> {
    [
        "doses_by_directorate",
        "doses_by_day",
        "tickets_by_directorate",
        "session_attendance",
        "survey_coverage",
    ]
    .iter()
    .map(|name| {
        let mut v: Value = serde_json::from_str(&ok(&run(
            dir,
            &["report", name, "--as-of", "2021-12-31", "--format", "json"],
        )))
        .unwrap();
        v.as_object_mut().unwrap().remove("position");
        v
    })
    .collect()
}

fn dose(id: u32, person: &str, kind: &str, at: &str) -> String {
    json!({"command_id": format!("0193eeee-0000-7000-8000-{id:012}"), "type": "AdministerDose",
           "person_ref": person, "age_band": "30-39", "recipient": "user", "directorate": "lyon",
           "site": "lyon-dt", "product": "comirnaty", "lot": "FF2832", "dose": kind,
           "administered_at": at})
    .to_string()
}

#[test]
fn erasing_a_person_keeps_every_count_and_the_chain_and_destroys_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&run(d, &["demo"]));
    // A person with two doses and a ticket, recorded today.
    let person = "p-erase-me-0001";
    let lines = [
        dose(1, person, "first", "2021-10-01T10:00:00+02:00"),
        dose(2, person, "second", "2021-11-05T10:00:00+01:00"),
        json!({"command_id": "0193eeee-0000-7000-8000-000000000003", "type": "IssueTicket",
               "ticket_id": "lyon-erase-1", "person_ref": person, "directorate": "lyon",
               "partner_centre": "cv-lyon-gerland",
               "issued_at": "2021-11-06T10:00:00+01:00", "valid_until": "2021-12-31"})
        .to_string(),
    ];
    std::fs::write(d.join("person.jsonl"), lines.join("\n") + "\n").unwrap();
    let out = ok(&run(d, &["submit", "person.jsonl", "--format", "json"]));
    assert_eq!(out.matches("\"accepted\"").count(), 3, "{out}");
    // The ref is nowhere in the log.
    let log = std::fs::read(support::store_file(d)).unwrap();
    assert!(
        !log.windows(person.len()).any(|w| w == person.as_bytes()),
        "the ref is in the log in clear"
    );
    let before = reports(d);

    let admin = support::token(d, "admin-1", "admin");
    let auditor = support::token(d, "auditor-1", "auditor");
    let (mut server, addr) = support::serve_with_tokens(d);

    // The auditor finds the person's events: refs revealed, the read logged.
    let (s, events) = support::http(
        &addr,
        "GET",
        "/v1/events?after=2434&limit=100",
        &auditor,
        None,
    );
    assert_eq!(s, 200, "{events}");
    let mine: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["person"]["person_ref"] == person)
        .collect();
    assert_eq!(mine.len(), 3, "{events}");
    let person_id = mine[0]["person"]["person_id"].as_str().unwrap().to_string();
    assert_eq!(mine[0]["stream_id"], format!("person/{person_id}"));
    assert!(mine.iter().all(|e| e["person"]["status"] == "revealed"));
    // `data` is the stored JSON object, the person's ref sealed in it.
    assert!(mine.iter().all(|e| e["data"]["person_ref"]
        .as_str()
        .unwrap()
        .starts_with(&format!("enc2:{person_id}:"))));

    // The wrapped key is in the key store file now.
    let keys_file = d.join("ledger-data/ledger.keys.db");
    let wrapped: Vec<u8> = rusqlite::Connection::open(&keys_file)
        .unwrap()
        .query_row(
            "SELECT wrapped_key FROM persons WHERE person_id = ?1",
            [&person_id],
            |r| r.get(0),
        )
        .unwrap();
    // Whether a SQLite file or its WAL holds these bytes.
    let holds = |file: &Path, bytes: &[u8]| {
        let mut all = std::fs::read(file).unwrap();
        let mut wal = file.as_os_str().to_owned();
        wal.push("-wal");
        all.extend(std::fs::read(wal).unwrap_or_default());
        all.windows(bytes.len()).any(|w| w == bytes)
    };
    // The key store file and its WAL (new keys land there first).
    let in_file = |bytes: &[u8]| holds(&keys_file, bytes);
    assert!(in_file(&wrapped));
    // The person index entry (lookup → pseudonym) is in the log's own file or its WAL.
    let log_file = d.join("ledger-data/ledger.db");
    let lookup: Vec<u8> = rusqlite::Connection::open(&log_file)
        .unwrap()
        .query_row(
            "SELECT lookup FROM persons WHERE person_id = ?1",
            [&person_id],
            |r| r.get(0),
        )
        .unwrap();
    let in_log = |bytes: &[u8]| holds(&log_file, bytes);
    assert!(in_log(&lookup));

    // Only admins erase.
    let body = json!({"person_ref": person});
    assert_eq!(
        support::http(&addr, "POST", "/v1/persons/erase", &auditor, Some(&body)).0,
        403
    );
    let (s, erased) = support::http(&addr, "POST", "/v1/persons/erase", &admin, Some(&body));
    assert_eq!(s, 200, "{erased}");
    assert_eq!(erased["person_id"], person_id.as_str());
    let (s, again) = support::http(&addr, "POST", "/v1/persons/erase", &admin, Some(&body));
    assert_eq!(s, 404, "{again}");

    // Reads now say erased; PersonErased names the admin and the pseudonym, not the ref.
    let (s, stream) = support::http(
        &addr,
        "GET",
        &format!("/v1/streams/person%2F{person_id}"),
        &auditor,
        None,
    );
    assert_eq!(s, 200, "{stream}");
    let stream = stream.as_array().unwrap();
    let last = stream.last().unwrap();
    assert_eq!(last["event_type"], "PersonErased");
    assert!(last["actor"]["agent_ref"] == "admin-1", "{last}");
    assert!(!last.to_string().contains(person));
    for e in &stream[..stream.len() - 1] {
        assert_eq!(e["person"]["status"], "erased", "{e}");
        assert!(e["person"].get("person_ref").is_none(), "{e}");
    }
    let (s, ticket) = support::http(
        &addr,
        "GET",
        "/v1/streams/ticket%2Flyon-erase-1",
        &auditor,
        None,
    );
    assert_eq!(
        (s, &ticket[0]["person"]["status"]),
        (200, &json!("erased")),
        "{ticket}"
    );

    // The access log: who read whose events, how many in clear.
    let (s, log) = support::http(
        &addr,
        "GET",
        &format!("/v1/audit/access-log?person={person_id}"),
        &auditor,
        None,
    );
    assert_eq!(s, 200, "{log}");
    let entries = log.as_array().unwrap();
    assert!(entries.len() >= 3, "{log}");
    assert_eq!(entries[0]["caller"], "auditor-1");
    assert!(entries[0]["revealed"].as_u64().unwrap() >= 3, "{log}");
    assert_eq!(
        entries.last().unwrap()["revealed"],
        0,
        "after erasure nothing is shown in clear: {log}"
    );
    assert_eq!(
        support::http(&addr, "GET", "/v1/audit/access-log", &admin, None).0,
        403
    );
    unsafe {
        libc::kill(server.0.id() as i32, libc::SIGTERM);
    }
    assert!(server.0.wait().unwrap().success());
    let cli_log = ok(&run(d, &["audit", "access-log", "--person", &person_id]));
    assert!(
        cli_log.contains("auditor-1") && cli_log.contains("/v1/events"),
        "{cli_log}"
    );

    // Every projection as before, the chain intact, the key's bytes gone from the file.
    assert_eq!(reports(d), before);
    ok(&run(d, &["audit", "verify"]));
    assert!(
        !in_file(&wrapped),
        "the wrapped key is still in {}",
        keys_file.display()
    );
    assert!(
        std::fs::metadata(d.join("ledger-data/ledger.keys.db-wal")).map_or(0, |m| m.len()) == 0,
        "the key store's WAL still holds frames after the erasure"
    );
    assert!(
        !in_log(&lookup),
        "the person's index entry is still in {} or its WAL",
        log_file.display()
    );

    // The ref no longer leads to the history: a third dose is judged on an empty history
    // (a booster needs a completed series), and a first dose starts a new pseudonym.
    std::fs::write(
        d.join("after.jsonl"),
        [
            dose(4, person, "booster", "2021-12-10T10:00:00+01:00"),
            dose(5, person, "first", "2021-12-10T11:00:00+01:00"),
        ]
        .join("\n")
            + "\n",
    )
    .unwrap();
    let out = ok(&run(d, &["submit", "after.jsonl", "--format", "json"]));
    let outcomes: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(outcomes[0]["outcome"], "rejected", "{out}");
    assert_eq!(outcomes[1]["outcome"], "accepted", "{out}");
    ok(&run(d, &["audit", "verify"]));
}

#[test]
fn erase_person_on_the_command_line_and_a_wrong_master_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("one.jsonl"),
        dose(1, "p-cli-1", "first", "2021-10-01T10:00:00+02:00") + "\n",
    )
    .unwrap();
    // The demo's sites first, then one dose.
    ok(&run(d, &["demo"]));
    ok(&run(d, &["submit", "one.jsonl"]));
    let out = ok(&run(d, &["erase-person", "p-cli-1"]));
    assert!(out.starts_with("erased: person "), "{out}");
    let o = run(d, &["erase-person", "p-cli-1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("holds no key"), "{}", stderr(&o));
    // Another master key does not open the key store: said, and nothing is written.
    let head = ok(&run(d, &["audit", "verify"]));
    let o = support::bin()
        .current_dir(d)
        .env("LEDGER_MASTER_KEY", "11".repeat(32))
        .args(["submit", "one.jsonl"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("master key does not open"),
        "{}",
        stderr(&o)
    );
    assert_eq!(ok(&run(d, &["audit", "verify"])), head);
    // The master key file lost: said, and no new key is made in its place.
    std::fs::rename(d.join("ledger-data/master.key"), d.join("master.key.saved")).unwrap();
    let o = run(d, &["submit", "one.jsonl"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("master key file"), "{}", stderr(&o));
    assert!(!d.join("ledger-data/master.key").exists());
}

//! A ledger written by the previous release (content hashes of version 1, `tests/fixtures/
//! release-0.1`) opens with today's build: its command table is rebuilt with version-2 hashes
//! (no SHA-256 of a command's canonical JSON, which holds the ref, stays in its files);
//! resubmissions stay `duplicate`, a reused id stays `command_id_reused`, an erased person's old
//! command is `command_id_reused` (the ref now leads to a new pseudonym), and the old export
//! imports and verifies.

use crate::support;

use serde_json::Value;
use std::io::Read as _;
use std::path::Path;
use support::needles::Needles;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/release-0.1");

fn gunzip(name: &str, to: &Path) {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(Path::new(FIXTURE).join(name)).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    std::fs::write(to, bytes).unwrap();
}

/// The fixture's ledger in `dir/ledger-data`.
fn previous_release(dir: &Path) {
    let data = dir.join("ledger-data");
    std::fs::create_dir(&data).unwrap();
    gunzip("ledger.db.gz", &data.join("ledger.db"));
    gunzip("ledger.keys.db.gz", &data.join("ledger.keys.db"));
    std::fs::copy(
        Path::new(FIXTURE).join("master.key"),
        data.join("master.key"),
    )
    .unwrap();
}

fn commands() -> Vec<String> {
    std::fs::read_to_string(Path::new(FIXTURE).join("commands.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The needles of the commands naming a person (their refs and version-1 hashes).
fn needles() -> Needles {
    let person: Vec<String> = commands()
        .into_iter()
        .filter(|c| c.contains("person_ref"))
        .collect();
    Needles::new(
        &["P-000001", "P-000002", "P-000003", "P-000004", "P-000005"],
        &person,
    )
}

#[test]
fn a_ledger_of_the_previous_release_opens_with_version_2_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    previous_release(d);
    let old = std::fs::read(d.join("ledger-data/ledger.db")).unwrap();
    assert!(
        !needles().find(&old).is_empty(),
        "the fixture holds no version-1 hash: it tests nothing"
    );
    support::ok_output(&support::run(d, &["audit", "verify"]));
    // Every command again: duplicates, except the erased person's.
    std::fs::write(d.join("again.jsonl"), commands().join("\n") + "\n").unwrap();
    let out = support::ok_output(&support::run(
        d,
        &["submit", "again.jsonl", "--format", "json"],
    ));
    let outcomes: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for o in &outcomes {
        let line = o["line"].as_u64().unwrap();
        if line == 5 {
            assert_eq!(o["error"]["code"], "command_id_reused", "{o}");
        } else {
            assert_eq!(o["outcome"], "duplicate", "{o}");
        }
    }
    // A reused id with other content.
    let mut reused: Value = serde_json::from_str(&commands()[1]).unwrap();
    reused["lot"] = "OTHER".into();
    std::fs::write(d.join("reused.jsonl"), reused.to_string() + "\n").unwrap();
    let out = support::ok_output(&support::run(
        d,
        &["submit", "reused.jsonl", "--format", "json"],
    ));
    assert!(out.contains("command_id_reused"), "{out}");
    // No version-1 hash left in the log's files.
    needles().assert_absent_in_dir(&d.join("ledger-data"), &[]);
}

#[test]
fn an_export_of_the_previous_release_imports_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let export = Path::new(FIXTURE).join("export.jsonl");
    let export = export.to_str().unwrap();
    support::ok_output(&support::run(d, &["audit", "verify", "--export", export]));
    support::ok_output(&support::run(
        d,
        &["--store", "sqlite:copy/ledger.db", "import", export],
    ));
    support::ok_output(&support::run(
        d,
        &["--store", "sqlite:copy/ledger.db", "audit", "verify"],
    ));
    needles().assert_absent_in_dir(&d.join("copy"), &[]);
    // Exported again: version-2 hashes, and the chain as before.
    let again = support::ok_output(&support::run(
        d,
        &["--store", "sqlite:copy/ledger.db", "export"],
    ));
    needles().assert_absent("the new export", again.as_bytes());
    assert_eq!(again.lines().count(), 11);
    for (old, new) in std::fs::read_to_string(export)
        .unwrap()
        .lines()
        .zip(again.lines())
    {
        let (old, new): (Value, Value) = (
            serde_json::from_str(old).unwrap(),
            serde_json::from_str(new).unwrap(),
        );
        assert_eq!(old["ledgerhash"], new["ledgerhash"]);
        assert_eq!(new["ledgercommandhashversion"], 2, "{new}");
    }
}

/// Every command of the OFII scenario that names a person is rebuilt from its event to the
/// very hash it was recorded with: rows set back to version 1 (and their hashes blanked) come
/// back, after the migration, with the hashes recorded at the time.
#[test]
fn the_migration_remakes_every_scenario_commands_hash_from_its_event() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    support::ok_output(&support::run(d, &["demo"]));
    let before = support::ok_output(&support::run(d, &["export"]));
    let conn = rusqlite::Connection::open(d.join("ledger-data/ledger.db")).unwrap();
    conn.execute_batch(
        "DROP TRIGGER commands_append_only_u;
         UPDATE commands SET content_hash = zeroblob(32), hash_version = 1;",
    )
    .unwrap();
    drop(conn);
    let after = support::ok_output(&support::run(d, &["export"]));
    assert_eq!(before.lines().count(), after.lines().count());
    const REBUILT: [&str; 4] = [
        "DoseAdministered",
        "ExternalDoseRecorded",
        "DoseNotAdministered",
        "TicketIssued",
    ];
    let mut checked = 0;
    for (b, a) in before.lines().zip(after.lines()) {
        let (b, a): (Value, Value) = (
            serde_json::from_str(b).unwrap(),
            serde_json::from_str(a).unwrap(),
        );
        // Commands naming no person cannot be rebuilt: their (blanked) hash stays.
        if REBUILT.iter().any(|t| b["ledgereventtype"] == *t) {
            assert_eq!(a["ledgercommandhash"], b["ledgercommandhash"], "{a}");
            checked += 1;
        }
        assert_eq!(a["ledgercommandhashversion"], 2);
    }
    assert!(checked > 2000, "{checked}");
}

/// A NATS log written by the previous release: its messages carry version-1 hashes in
/// `Ledger-Command-Hash` and cannot be rewritten. Today's build takes version 2 in its index
/// (resubmissions stay duplicates, exports carry version 2), and `copy-log` copies the log into
/// a new stream whose messages carry version 2 only; the ledger runs on the copy.
#[test]
fn a_nats_log_of_the_previous_release_is_copied_into_a_stream_with_version_2_headers() {
    use campaign_ledger::envelope::cloudevents;
    let nats = support::nats::NatsServer::start();
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("ledger-data");
    std::fs::create_dir(&data).unwrap();
    gunzip("ledger.keys.db.gz", &data.join("nats-log.keys.db"));
    std::fs::copy(
        Path::new(FIXTURE).join("master.key"),
        data.join("master.key"),
    )
    .unwrap();
    // The stream as the previous release made it, then its messages as it wrote them.
    support::ok_output(&support::run(d, &["--store", &url, "export"]));
    let export = std::fs::read_to_string(Path::new(FIXTURE).join("export.jsonl")).unwrap();
    support::nats::rt().block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
        for line in export.lines() {
            let (e, hash) = cloudevents::decode_export(line.as_bytes()).unwrap();
            let mut h = async_nats::HeaderMap::new();
            h.insert("Ledger-Position", e.position.to_string().as_str());
            h.insert(
                "Ledger-Command-Hash",
                hex::encode(hash.unwrap().hash).as_str(),
            );
            h.insert("Content-Type", cloudevents::CONTENT_TYPE);
            h.insert("Nats-Msg-Id", e.event_id.to_string().as_str());
            let payload = cloudevents::encode(&e.as_ref(), "/campaign-ledger/log");
            js.publish_with_headers(
                campaign_ledger::store::log_subject(&e.stream_id),
                h,
                payload.into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
    });
    let old_messages =
        |stream: &str| support::nats::rt().block_on(support::nats::stream_messages(&url, stream));
    let held = old_messages(campaign_ledger::store::LOG_STREAM);
    assert!(held.iter().any(|m| !needles().find(&m.payload).is_empty()
        || m.headers.iter().any(|(_, v)| v
            .iter()
            .any(|v| !needles().find(v.as_str().as_bytes()).is_empty()))));
    // Today's build: version 2 in the index.
    std::fs::write(d.join("again.jsonl"), commands().join("\n") + "\n").unwrap();
    let out = support::ok_output(&support::run(
        d,
        &["--store", &url, "submit", "again.jsonl", "--format", "json"],
    ));
    assert_eq!(out.matches("\"duplicate\"").count(), 9, "{out}");
    assert!(out.contains("command_id_reused"), "{out}");
    let exported = support::ok_output(&support::run(d, &["--store", &url, "export"]));
    needles().assert_absent("the export of the old NATS log", exported.as_bytes());
    // The copy.
    let copy = format!("{url}?stream=LEDGER_LOG_V2");
    let out = support::ok_output(&support::run(
        d,
        &["--store", &url, "copy-log", "--to", &copy],
    ));
    // The 11 events, and the key store named as the log's person writer (when the erased
    // person's command was sent again: a ref this key store does not know).
    assert!(out.contains("copied 12 events"), "{out}");
    let copied = old_messages("LEDGER_LOG_V2");
    assert_eq!(copied.len(), 12);
    for m in &copied {
        needles().assert_absent("a message of the copy", &m.payload);
        for (name, values) in m.headers.iter() {
            for v in values {
                needles().assert_absent(&format!("header {name}"), v.as_str().as_bytes());
            }
        }
        assert_eq!(
            m.headers
                .get("Ledger-Command-Hash-Version")
                .map(|v| v.as_str().to_string()),
            Some("2".to_string())
        );
    }
    support::ok_output(&support::run(d, &["--store", &copy, "audit", "verify"]));
    let report = |store: &str| {
        support::ok_output(&support::run(
            d,
            &[
                "--store",
                store,
                "report",
                "doses_by_directorate",
                "--as-of",
                "2021-12-31",
            ],
        ))
    };
    assert_eq!(report(&url), report(&copy));
}

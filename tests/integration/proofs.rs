//! The auditor's Merkle proofs through the real binary: `audit prove` (one event, one
//! person), `audit consistency`, and `audit check-proof` run in a fresh directory holding only
//! the proof and the public key; tampering with the proof, the log or the digest is named.

use crate::support;

use serde_json::{json, Value};
use std::path::Path;
use support::{run, stderr, stdout};

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}{}", stdout(o), stderr(o));
    stdout(o)
}

/// Checks `proof` with only it and the public key in a directory of its own.
fn check_alone(proof: &str, public: &str) -> std::process::Output {
    let alone = tempfile::tempdir().unwrap();
    std::fs::write(alone.path().join("proof.json"), proof).unwrap();
    run(
        alone.path(),
        &[
            "audit",
            "check-proof",
            "proof.json",
            "--public-key",
            public,
            "--quorum",
            "0",
        ],
    )
}

/// A valid Ed25519 key that is not the ledger's.
fn other_key() -> String {
    hex::encode(
        ed25519_dalek::SigningKey::from_bytes(&[0x11; 32])
            .verifying_key()
            .as_bytes(),
    )
}

fn failed(o: &std::process::Output, says: &str) {
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(o), stderr(o));
    assert!(stdout(o).contains(says), "{}", stdout(o));
}

fn dose(id: u32, person: &str, kind: &str, at: &str) -> String {
    json!({"command_id": format!("0193dddd-0000-7000-8000-{id:012}"), "type": "AdministerDose",
           "person_ref": person, "age_band": "30-39", "recipient": "user", "directorate": "lyon",
           "site": "lyon-dt", "product": "comirnaty", "lot": "FF2832", "dose": kind,
           "administered_at": at})
    .to_string()
}

/// The OFII demo, a signing key, a digest `d1.json`, then one person's two doses and a
/// second digest `d2.json`. Returns the public key.
fn setup(d: &Path) -> String {
    ok(&run(d, &["demo"]));
    let public = ok(&run(d, &["audit", "keygen"])).trim().to_string();
    std::fs::write(d.join("d1.json"), ok(&run(d, &["audit", "digest"]))).unwrap();
    let lines = [
        dose(1, "p-proof-0001", "first", "2021-10-01T10:00:00+02:00"),
        dose(2, "p-proof-0001", "second", "2021-11-05T10:00:00+01:00"),
    ];
    std::fs::write(d.join("person.jsonl"), lines.join("\n") + "\n").unwrap();
    ok(&run(d, &["submit", "person.jsonl"]));
    std::fs::write(d.join("d2.json"), ok(&run(d, &["audit", "digest"]))).unwrap();
    public
}

#[test]
fn an_event_and_a_prefix_are_proved_and_every_change_to_a_proof_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let public = setup(d);
    let d1: Value = serde_json::from_slice(&std::fs::read(d.join("d1.json")).unwrap()).unwrap();
    let size = d1["tree_size"].as_u64().unwrap();
    assert!(size > 2000, "{d1}");

    // One event against the older digest.
    let proof = ok(&run(d, &["audit", "prove", "42", "--digest", "d1.json"]));
    let v: Value = serde_json::from_str(&proof).unwrap();
    assert_eq!(v["format"], "campaign-ledger-inclusion-proof/1");
    assert_eq!(
        (v["leaf_index"].as_u64(), v["tree_size"].as_u64()),
        (Some(41), Some(size))
    );
    assert_eq!(
        v["audit_path"].as_array().unwrap().len(),
        12,
        "a tree of {size}"
    );
    let o = check_alone(&proof, &public);
    assert!(ok(&o).contains("ok: the event at position 42"));

    // Each part of the proof, changed, is caught by name.
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut p = v.clone();
        f(&mut p);
        p.to_string()
    };
    let event = v["event"].as_str().unwrap().to_string();
    let changed = event.replacen("\"data\":{", "\"data\":{\"x\":1,", 1);
    assert_ne!(changed, event);
    failed(
        &check_alone(&edit(&|p| p["event"] = json!(changed)), &public),
        "its hash is not the hash of its content",
    );
    failed(
        &check_alone(
            &edit(&|p| {
                let h = p["audit_path"][3].as_str().unwrap().replacen('0', "1", 1);
                p["audit_path"][3] = json!(h.replacen('a', "b", 1));
            }),
            &public,
        ),
        "does not lead to the digest's root",
    );
    failed(
        &check_alone(&edit(&|p| p["tree_size"] = json!(size - 1)), &public),
        "the digest states",
    );
    failed(
        &check_alone(
            &edit(&|p| p["digest"]["tree_size"] = json!(size - 1)),
            &public,
        ),
        "the document was changed after it was signed",
    );
    failed(
        &check_alone(
            &edit(&|p| p["digest"]["root_hash"] = json!("00".repeat(32))),
            &public,
        ),
        "the document was changed after it was signed",
    );
    failed(
        &check_alone(&proof, &other_key()),
        "not signed by a key you trust",
    );

    // A prefix: the newer log extends the older one.
    let c = ok(&run(
        d,
        &[
            "audit",
            "consistency",
            "--from",
            "d1.json",
            "--to",
            "d2.json",
        ],
    ));
    let cv: Value = serde_json::from_str(&c).unwrap();
    assert_eq!(cv["first"].as_u64(), Some(size));
    assert_eq!(cv["second"].as_u64(), Some(size + 2));
    assert!(ok(&check_alone(&c, &public)).contains("extends the tree of"));
    let mut bad = cv.clone();
    bad["consistency_path"][0] = json!("11".repeat(32));
    failed(&check_alone(&bad.to_string(), &public), "does not prove");

    // Not a proof: exit 2, saying what it expects.
    let o = check_alone("{\"format\":\"x\"}", &public);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("is not a proof of this ledger"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_persons_record_is_provable_alone_and_erasure_keeps_every_proof() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let public = setup(d);
    let bundle = ok(&run(
        d,
        &[
            "audit",
            "prove",
            "--person",
            "p-proof-0001",
            "--digest",
            "d2.json",
        ],
    ));
    let v: Value = serde_json::from_str(&bundle).unwrap();
    assert_eq!(v["format"], "campaign-ledger-person-proof/1");
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{bundle}");
    // Only this person's events, and never the ref in clear.
    let pseudonym = v["person"].as_str().unwrap();
    for e in events {
        let line: Value = serde_json::from_str(e["event"].as_str().unwrap()).unwrap();
        assert!(line["data"]["person_ref"]
            .as_str()
            .unwrap()
            .contains(pseudonym));
    }
    assert!(!bundle.contains("p-proof-0001"));
    let o = ok(&check_alone(&bundle, &public));
    assert!(o.contains("2 events of person"), "{o}");

    // After erasure, the record can no longer be gathered, and every proof still checks.
    ok(&run(d, &["erase-person", "p-proof-0001"]));
    let o = run(
        d,
        &[
            "audit",
            "prove",
            "--person",
            "p-proof-0001",
            "--digest",
            "d2.json",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no key for this person_ref"),
        "{}",
        stderr(&o)
    );
    ok(&check_alone(&bundle, &public));
    let c = ok(&run(d, &["audit", "consistency", "--from", "d1.json"]));
    ok(&check_alone(&c, &public));
    ok(&run(d, &["audit", "verify"]));
}

#[test]
fn a_changed_log_cannot_be_proved_against_an_older_digest_and_another_ledgers_digest_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let public = setup(d);
    let old_proof = ok(&run(d, &["audit", "prove", "5", "--digest", "d2.json"]));
    // Change event 10 and recompute the chain after it, then drop the tree so that it is
    // rebuilt from the changed events (every trigger dropped): the log is self-consistent,
    // but it is not the log the digests state.
    let store = support::sqlite_store_at(&support::store_file(d));
    let mut events = store.read_all(0, 100_000).unwrap();
    drop(store);
    events[9].data.push(' ');
    let mut prev = campaign_ledger::store::GENESIS_HASH;
    for e in &mut events {
        e.prev_hash = prev;
        e.hash = campaign_ledger::store::chain_hash(&prev, &e.as_ref());
        prev = e.hash;
    }
    let c = rusqlite::Connection::open(support::store_file(d)).unwrap();
    c.execute_batch(
        "DROP TRIGGER events_append_only_u; DROP TRIGGER merkle_append_only_d;
         DELETE FROM merkle; DELETE FROM meta WHERE key = 'merkle_size';",
    )
    .unwrap();
    for e in &events[9..] {
        c.execute(
            "UPDATE events SET data = ?1, prev_hash = ?2, hash = ?3 WHERE position = ?4",
            rusqlite::params![
                e.data,
                e.prev_hash.to_vec(),
                e.hash.to_vec(),
                e.position as i64
            ],
        )
        .unwrap();
    }
    drop(c);
    ok(&run(d, &["audit", "verify"]));
    // An old proof no longer checks against the changed log's new root.
    let new_digest: Value = serde_json::from_str(&ok(&run(d, &["audit", "digest"]))).unwrap();
    let mut moved: Value = serde_json::from_str(&old_proof).unwrap();
    assert_eq!(moved["tree_size"], new_digest["tree_size"]);
    moved["digest"] = new_digest;
    failed(
        &check_alone(&moved.to_string(), &public),
        "does not lead to the digest's root",
    );
    let o = run(d, &["audit", "prove", "500", "--digest", "d1.json"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("the log was changed at or before position"),
        "{}",
        stdout(&o)
    );
    let o = run(
        d,
        &[
            "audit",
            "consistency",
            "--from",
            "d1.json",
            "--to",
            "d2.json",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));

    // Another ledger's digest is not evidence of tampering: it is the wrong file.
    let other = tempfile::tempdir().unwrap();
    setup(other.path());
    std::fs::copy(other.path().join("d1.json"), d.join("other.json")).unwrap();
    let o = run(d, &["audit", "prove", "5", "--digest", "other.json"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stderr(&o).contains("another ledger"), "{}", stderr(&o));
}

#[test]
fn the_http_api_serves_proofs_and_looks_a_person_up_by_ref_logging_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let public = setup(d);
    let auditor = support::token(d, "auditor-1", "auditor");
    let supervisor = ok(&run(
        d,
        &[
            "auth",
            "token",
            "--file",
            "tokens.json",
            "--id",
            "sup-1",
            "--role",
            "supervisor",
            "--directorate",
            "lyon",
        ],
    ))
    .trim()
    .to_string();
    let (_server, addr) = support::serve_with_tokens(d);
    let get = |path: &str, token: &str| support::http(&addr, "GET", path, token, None);
    // The person routes take the ref in the body, never in the URL.
    let person = |path: &str, person_ref: &str, token: &str| {
        let body = serde_json::json!({ "person_ref": person_ref });
        support::http(&addr, "POST", path, token, Some(&body))
    };

    // An inclusion proof at an older tree size, checked offline.
    let (s, p) = get(
        "/v1/audit/proofs/inclusion?position=42&tree_size=1000",
        &auditor,
    );
    assert_eq!(s, 200, "{p}");
    assert_eq!(
        (p["tree_size"].as_u64(), p["digest"]["tree_size"].as_u64()),
        (Some(1000), Some(1000))
    );
    assert!(ok(&check_alone(&p.to_string(), &public)).contains("tree of 1000 events"));
    let (s, c) = get("/v1/audit/proofs/consistency?first=1000", &auditor);
    assert_eq!(s, 200, "{c}");
    ok(&check_alone(&c.to_string(), &public));
    // Malformed: 400; sizes and positions the log does not have: 404 (no such proof), saying why.
    for (q, status, says) in [
        ("inclusion?position=1&tree_size=0", 400, "at least 1"),
        (
            "inclusion?position=1&tree_size=99999999",
            404,
            "beyond the log's head",
        ),
        (
            "inclusion?position=1001&tree_size=1000",
            404,
            "outside the tree",
        ),
        ("inclusion?position=x", 400, "bad_query"),
        ("consistency?first=0", 400, "at least 1"),
        ("consistency?first=20&second=10", 404, "larger than second"),
    ] {
        let (s, e) = get(&format!("/v1/audit/proofs/{q}"), &auditor);
        assert_eq!(s, status, "{q}: {e}");
        assert!(e.to_string().contains(says), "{q}: {e}");
    }
    assert_eq!(
        get("/v1/audit/proofs/inclusion?position=1", &supervisor).0,
        403
    );

    // A person by ref: pseudonym, events and the reads of them; the lookup is logged.
    let (s, rec) = person("/v1/persons/record", "p-proof-0001", &auditor);
    assert_eq!(s, 200, "{rec}");
    let pseudonym = rec["person_id"].as_str().unwrap().to_string();
    assert_eq!(rec["events"].as_array().unwrap().len(), 2, "{rec}");
    let logged = rec["access_log"].as_array().unwrap();
    assert_eq!(logged.len(), 1, "{rec}");
    assert_eq!(logged[0]["route"], "POST /v1/persons/record");
    assert_eq!(logged[0]["disclosed"], "person_record");
    assert_eq!(logged[0]["revealed"], 1);
    let (s, bundle) = person("/v1/persons/proof", "p-proof-0001", &auditor);
    assert_eq!(s, 200, "{bundle}");
    assert_eq!(bundle["person"], pseudonym.as_str());
    ok(&check_alone(&bundle.to_string(), &public));
    assert_eq!(person("/v1/persons/proof", "nobody-known", &auditor).0, 404);
    assert_eq!(
        person("/v1/persons/record", "p-proof-0001", &supervisor).0,
        403
    );
    // The access log by ref says to look the person up; by pseudonym, it has both reads.
    let (s, e) = get("/v1/audit/access-log?person=p-proof-0001", &auditor);
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (400, Some("person_ref_not_pseudonym")),
        "{e}"
    );
    let (s, entries) = get(
        &format!("/v1/audit/access-log?person={pseudonym}"),
        &auditor,
    );
    assert_eq!(s, 200);
    assert_eq!(entries.as_array().unwrap().len(), 2, "{entries}");
    assert!(
        !entries.to_string().contains("p-proof-0001"),
        "the ref is never logged"
    );

    // The access log is chained and covered by digests: a digest states its head, `audit
    // verify` recomputes it, and a changed entry is named.
    let (s, all) = get("/v1/audit/access-log?limit=1000", &auditor);
    assert_eq!(s, 200);
    let size = all.as_array().unwrap().len();
    assert!(size >= 2, "{all}");
    let (s, digest) = get("/v1/audit/digest", &auditor);
    assert_eq!(s, 200);
    assert_eq!(
        digest["access_log_size"].as_u64(),
        Some(size as u64),
        "{digest}"
    );
    std::fs::write(d.join("d3.json"), digest.to_string()).unwrap();
    let o = ok(&run(
        d,
        &[
            "audit",
            "verify",
            "--digest",
            "d3.json",
            "--public-key",
            &public,
            "--quorum",
            "0",
        ],
    ));
    assert!(
        o.contains(&format!("ok: access log of {size} entries, chain intact")),
        "{o}"
    );
    let c = rusqlite::Connection::open(d.join("ledger-data/ledger.access.db")).unwrap();
    c.execute_batch(
        "DROP TRIGGER access_append_only_u; UPDATE access SET caller = 'someone-else' WHERE id = 2;",
    )
    .unwrap();
    drop(c);
    let o = run(d, &["audit", "verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("BROKEN in the access log at entry 2"),
        "{}",
        stdout(&o)
    );
    // A digest of another ledger is named as such.
    let other = tempfile::tempdir().unwrap();
    let other_key = setup(other.path());
    std::fs::copy(other.path().join("d1.json"), d.join("other.json")).unwrap();
    let o = run(
        d,
        &[
            "audit",
            "verify",
            "--digest",
            "other.json",
            "--public-key",
            &other_key,
            "--quorum",
            "0",
        ],
    );
    // Another first event: broken at position 1, whether rewritten or another ledger's.
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("BROKEN at position 1") && stdout(&o).contains("another ledger"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
}

/// `examples/verify.py` (Python standard library only) on `args`, from `dir`.
fn python_verify(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/verify.py"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("python3 runs")
}

#[test]
fn a_verifier_outside_rust_checks_the_export_the_proofs_and_the_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let public = setup(d);
    let vectors = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/test-vectors.json");
    ok(&python_verify(d, &["vectors", vectors]));
    let export = ok(&run(d, &["export"]));
    std::fs::write(d.join("all.jsonl"), &export).unwrap();
    let o = ok(&python_verify(
        d,
        &[
            "export",
            "all.jsonl",
            "--digest",
            "d2.json",
            "--public-key",
            &public,
            "--quorum",
            "0",
        ],
    ));
    assert!(
        o.contains("the export holds the log the checkpoint of position"),
        "{o}"
    );
    std::fs::write(
        d.join("p.json"),
        ok(&run(d, &["audit", "prove", "1234", "--digest", "d1.json"])),
    )
    .unwrap();
    std::fs::write(
        d.join("c.json"),
        ok(&run(
            d,
            &[
                "audit",
                "consistency",
                "--from",
                "d1.json",
                "--to",
                "d2.json",
            ],
        )),
    )
    .unwrap();
    std::fs::write(
        d.join("b.json"),
        ok(&run(d, &["audit", "prove", "--person", "p-proof-0001"])),
    )
    .unwrap();
    for f in ["p.json", "c.json", "b.json"] {
        ok(&python_verify(
            d,
            &["proof", f, "--public-key", &public, "--quorum", "0"],
        ));
    }
    // What the Rust checker catches, the Python one catches too.
    let tampered = export.replacen("\"dose\":\"first\"", "\"dose\":\"second\"", 1);
    assert_ne!(tampered, export);
    std::fs::write(d.join("bad.jsonl"), tampered).unwrap();
    let o = python_verify(d, &["export", "bad.jsonl"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("its hash is not the hash of its content"),
        "{}",
        stdout(&o)
    );
    let o = python_verify(
        d,
        &[
            "proof",
            "p.json",
            "--public-key",
            &other_key(),
            "--quorum",
            "0",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
}

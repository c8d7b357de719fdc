//! The dishonest operator against the auditor's own state: `audit follow` refuses a fork and a
//! rollback and keeps both checkpoints; an entry backdated after a witnessed checkpoint fails
//! verification (and `--clock business` is refused once a checkpoint exists); a wiped Merkle
//! table is named until `audit rebuild-tree`; a cut tail passes `audit verify` alone and is
//! caught against a checkpoint. Checkpoints and consistency proofs verify with Cloudflare's
//! independent crates.

use crate::support;

use base64::Engine as _;
use serde_json::Value;
use std::path::Path;

fn ok(dir: &Path, args: &[&str]) -> String {
    support::ok_output(&support::run(dir, args))
}

fn submit(dir: &Path, lines: &[String], extra: &[&str]) -> std::process::Output {
    std::fs::write(dir.join("in.jsonl"), lines.join("\n") + "\n").unwrap();
    let mut args = vec!["submit"];
    args.extend(extra);
    args.push("in.jsonl");
    support::run(dir, &args)
}

/// A ledger of a site and `n` first doses, with a signing key and the auditor's key set
/// (`keys.txt`).
fn ledger(dir: &Path, n: usize) {
    let mut lines = vec![support::lyon_site()];
    for i in 0..n {
        lines.push(support::lyon_first_dose(
            uuid::Uuid::now_v7(),
            &format!("C-{i}"),
        ));
    }
    support::ok_output(&submit(dir, &lines, &[]));
    ok(dir, &["audit", "keygen"]);
    let vkey = ok(dir, &["audit", "public-key"]);
    std::fs::write(dir.join("keys.txt"), vkey).unwrap();
}

/// A note of `origin` signed with the ledger's key by Cloudflare's `signed_note`.
fn signed_by_the_ledger(dir: &Path, origin: &str, size: u64, root: [u8; 32]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let seed = hex::decode(
        std::fs::read_to_string(dir.join("ledger-data/signing.key"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let sk = ed25519_dalek::SigningKey::from_bytes(seed.as_slice().try_into().unwrap());
    let id = signed_note::key_id(
        origin,
        &[&[1u8][..], &sk.verifying_key().to_bytes()].concat(),
    );
    let signer = signed_note::StandardSigner::new(&format!(
        "PRIVATE+KEY+{origin}+{id:08x}+{}",
        b64.encode([&[1u8][..], &seed].concat())
    ))
    .unwrap();
    let text = format!("{origin}\n{size}\n{}\n", b64.encode(root));
    let mut note = signed_note::Note::new(text.as_bytes(), &[]).unwrap();
    note.add_sigs(&[&signer]).unwrap();
    String::from_utf8(note.to_bytes()).unwrap()
}

#[test]
fn audit_follow_keeps_the_last_checkpoint_and_refuses_a_fork_and_a_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ledger(d, 4);
    let auditor = support::token(d, "aud", "auditor");
    let agent = support::ok_output(&support::run(
        d,
        &[
            "auth",
            "token",
            "--file",
            "tokens.json",
            "--id",
            "ag",
            "--role",
            "agent",
            "--directorate",
            "lyon",
        ],
    ))
    .trim()
    .to_string();
    let (_server, addr) = support::serve_with_tokens(d);
    let url = format!("http://{addr}");
    let follow = |extra: &[&str]| {
        let mut args = vec![
            "audit",
            "follow",
            "--state",
            "auditor-state",
            "--keys",
            "keys.txt",
            "--quorum",
            "0",
        ];
        args.extend(extra);
        support::run(d, &args)
    };
    let o = follow(&["--url", &url, "--token", &auditor]);
    assert!(
        support::stdout(&o).contains("first checkpoint"),
        "{}{}",
        support::stdout(&o),
        support::stderr(&o)
    );
    let dose: Value =
        serde_json::from_str(&support::lyon_first_dose(uuid::Uuid::now_v7(), "C-late")).unwrap();
    assert_eq!(
        support::http(&addr, "POST", "/v1/commands", &agent, Some(&dose)).0,
        200
    );
    // The server signs a checkpoint at most once a second: follow until it states the dose.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let o = follow(&["--url", &url, "--token", &auditor]);
        assert!(
            o.status.success(),
            "{}{}",
            support::stdout(&o),
            support::stderr(&o)
        );
        if support::stdout(&o).contains("grew from 5 to 6") {
            break;
        }
        assert!(
            support::stdout(&o).contains("still at 5"),
            "{}",
            support::stdout(&o)
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint after the dose"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The checkpoint and a consistency proof check with Cloudflare's crates too.
    let note = std::fs::read_to_string(d.join("ledger-data/checkpoint.txt")).unwrap_or_default();
    if !note.is_empty() {
        let n = signed_note::Note::from_bytes(note.as_bytes()).unwrap();
        let v = signed_note::StandardVerifier::new(
            std::fs::read_to_string(d.join("keys.txt")).unwrap().trim(),
        )
        .unwrap();
        n.verify(&signed_note::VerifierList::new(vec![Box::new(v)]))
            .unwrap();
    }
    let kept = std::fs::read_dir(d.join("auditor-state"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "checkpoint"))
        .unwrap();
    let kept_note = std::fs::read_to_string(&kept).unwrap();
    let n = signed_note::Note::from_bytes(kept_note.as_bytes()).unwrap();
    let cp = tlog_tiles::Checkpoint::from_bytes(n.text()).unwrap();
    assert_eq!(cp.size(), 6);
    // A fork: the same size, another root, signed by the ledger's key.
    let fork = signed_by_the_ledger(d, cp.origin(), 6, [7; 32]);
    std::fs::write(d.join("fork.txt"), &fork).unwrap();
    let o = follow(&["--checkpoint", "fork.txt"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        support::stdout(&o).contains("a fork"),
        "{}",
        support::stdout(&o)
    );
    let evidence = std::fs::read_dir(d.join("auditor-state"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .find(|t| t.contains("contradicts"))
        .unwrap();
    assert!(
        evidence.contains(&fork) && evidence.contains(&kept_note),
        "{evidence}"
    );
    // A rollback.
    let rollback = signed_by_the_ledger(d, cp.origin(), 5, [1; 32]);
    std::fs::write(d.join("rollback.txt"), &rollback).unwrap();
    let o = follow(&["--checkpoint", "rollback.txt"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        support::stdout(&o).contains("a rollback"),
        "{}",
        support::stdout(&o)
    );
    // The kept checkpoint did not move.
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), kept_note);
    // A bigger tree with a proof that does not hold: a fork too.
    let bigger = signed_by_the_ledger(d, cp.origin(), 9, [3; 32]);
    std::fs::write(d.join("bigger.txt"), &bigger).unwrap();
    std::fs::write(d.join("proof.json"), r#"{"consistency_path": []}"#).unwrap();
    let o = follow(&["--checkpoint", "bigger.txt", "--proof", "proof.json"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        support::stdout(&o).contains("does not prove"),
        "{}",
        support::stdout(&o)
    );
    // tlog_tiles checks the ledger's own consistency proof between two of its checkpoints.
    std::fs::write(d.join("old.txt"), &kept_note).unwrap();
    let doc: Value =
        serde_json::from_str(&ok(d, &["audit", "consistency", "--from", "old.txt"])).unwrap();
    let path: Vec<tlog_tiles::Hash> = doc["consistency_path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            tlog_tiles::Hash(
                hex::decode(h.as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap(),
            )
        })
        .collect();
    let to: [u8; 32] = hex::decode(doc["to"]["root_hash"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    tlog_tiles::check_tree(
        &path,
        doc["second"].as_u64().unwrap(),
        tlog_tiles::Hash(to),
        6,
        *cp.hash(),
    )
    .unwrap();
}

#[test]
fn an_entry_backdated_after_a_witnessed_checkpoint_fails_verification() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // History loaded with business times (2021), then a checkpoint witnessed now.
    let mut lines = vec![support::lyon_site()];
    lines.push(support::lyon_first_dose(uuid::Uuid::now_v7(), "B-1"));
    support::ok_output(&submit(d, &lines, &["--clock", "business"]));
    ok(d, &["audit", "keygen"]);
    std::fs::write(d.join("keys.txt"), ok(d, &["audit", "public-key"])).unwrap();
    let log_vkey = std::fs::read_to_string(d.join("keys.txt"))
        .unwrap()
        .trim()
        .to_string();
    let witness = support::other_witness::start("witness.test/t", [8; 32], &log_vkey);
    std::fs::write(d.join("witnesses.txt"), format!("{}\n", witness.vkey)).unwrap();
    let w = format!("http://{}={}", witness.addr, witness.vkey);
    let (server, addr) = support::spawn_serve(
        d,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--digest-every",
            "0",
            "--witness",
            &w,
        ],
        std::process::Stdio::null(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let note = loop {
        let (s, body) = support::plain(&addr, "GET", "/v1/audit/checkpoint", "");
        if s == 200 && support::other_witness::verify_cosignature(&witness.vkey, &body).is_some() {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no cosigned checkpoint: {body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    drop(server);
    std::fs::write(d.join("cp.txt"), &note).unwrap();
    // The ledger's guard: --clock business is refused once a checkpoint exists.
    let later = vec![support::lyon_first_dose(uuid::Uuid::now_v7(), "B-2")];
    let o = submit(d, &later, &["--clock", "business"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        support::stderr(&o).contains("has signed checkpoints"),
        "{}",
        support::stderr(&o)
    );
    // The operator removes what the guard reads, and backdates anyway (the log's time follows
    // its last event's, in 2021).
    std::fs::remove_file(d.join("ledger-data/checkpoint.txt")).unwrap();
    support::ok_output(&submit(d, &later, &["--clock", "business"]));
    let verify = |extra: &[&str]| {
        let mut args = vec![
            "audit",
            "verify",
            "--digest",
            "cp.txt",
            "--keys",
            "keys.txt",
            "--witness-keys",
            "witnesses.txt",
        ];
        args.extend(extra);
        support::run(d, &args)
    };
    let o = verify(&[]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}{}",
        support::stdout(&o),
        support::stderr(&o)
    );
    assert!(
        support::stdout(&o).contains("BROKEN at position 3")
            && support::stdout(&o).contains("backdated"),
        "{}",
        support::stdout(&o)
    );
    // The export says the same to the Python verifier.
    std::fs::write(d.join("all.jsonl"), ok(d, &["export"])).unwrap();
    let py = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/verify.py"))
        .args([
            "export",
            "all.jsonl",
            "--digest",
            "cp.txt",
            "--keys",
            "keys.txt",
            "--witness-keys",
            "witnesses.txt",
        ])
        .current_dir(d)
        .output()
        .unwrap();
    assert_eq!(py.status.code(), Some(1), "{}", support::stdout(&py));
    assert!(
        support::stdout(&py).contains("BROKEN at position 3"),
        "{}",
        support::stdout(&py)
    );
    // What changed since the checkpoint: the backdated entry, whatever time it claims.
    let o = support::run(
        d,
        &[
            "audit",
            "changes",
            "--since-checkpoint",
            "cp.txt",
            "--keys",
            "keys.txt",
            "--witness-keys",
            "witnesses.txt",
            "--format",
            "json",
        ],
    );
    // The log does not extend the checkpoint honestly: refused, naming the backdated entry.
    assert!(!o.status.success());
    assert!(
        support::stderr(&o).contains("backdated"),
        "{}",
        support::stderr(&o)
    );
}

#[test]
fn a_wiped_tree_is_named_until_rebuilt_and_a_cut_tail_needs_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ledger(d, 20);
    std::fs::write(d.join("cp.txt"), ok(d, &["audit", "checkpoint"])).unwrap();
    let raw = || rusqlite::Connection::open(d.join("ledger-data/ledger.db")).unwrap();
    raw()
        .execute_batch("DROP TRIGGER merkle_append_only_d; DELETE FROM merkle;")
        .unwrap();
    for _ in 0..2 {
        // Opening again never rebuilds it silently.
        let o = support::run(d, &["audit", "verify"]);
        assert_eq!(o.status.code(), Some(1), "{}", support::stdout(&o));
        assert!(
            support::stdout(&o).contains("audit rebuild-tree"),
            "{}",
            support::stdout(&o)
        );
    }
    // Nothing is appended on a damaged tree.
    let o = submit(
        d,
        &[support::lyon_first_dose(uuid::Uuid::now_v7(), "C-x")],
        &[],
    );
    assert!(!o.status.success(), "{}", support::stdout(&o));
    ok(d, &["audit", "rebuild-tree"]);
    ok(d, &["audit", "verify"]);
    // A cut tail: the log alone cannot say (README), a checkpoint does.
    raw()
        .execute_batch(
            "DROP TRIGGER IF EXISTS events_append_only_d; DROP TRIGGER IF EXISTS commands_append_only_d;
             DELETE FROM events WHERE position > 19; DELETE FROM commands WHERE first_position > 19;",
        )
        .unwrap();
    ok(d, &["audit", "rebuild-tree"]);
    ok(d, &["audit", "verify"]);
    let o = support::run(
        d,
        &[
            "audit", "verify", "--digest", "cp.txt", "--keys", "keys.txt", "--quorum", "0",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", support::stdout(&o));
    assert!(
        support::stdout(&o).contains("were removed"),
        "{}",
        support::stdout(&o)
    );
}

//! Signed digests: `audit keygen`, `audit digest`, and `audit verify --digest FILE` proving that
//! today's log extends the log the digest was taken from. A digest taken before more events
//! were appended still verifies; an old event changed, a reordered pair, a deleted tail, a
//! rewritten history (chain recomputed), a truncated file, an edited digest and a digest
//! signed by another key are each caught, and named.

use crate::support;

use campaign_ledger::store::{chain_hash, GENESIS_HASH};
use rusqlite::{params, Connection};
use std::path::Path;
use support::{run, stderr, stdout};

/// The store the CLI uses by default in `dir`.
fn store(dir: &Path) -> std::sync::Arc<dyn campaign_ledger::store::EventStore> {
    std::fs::create_dir_all(dir.join("ledger-data")).unwrap();
    support::sqlite_store_at(&support::store_file(dir))
}

/// A store of `n` events, a signing key, and a signed digest of it in `digest.json`.
fn setup(n: u64) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    support::fill(store.as_ref(), n);
    drop(store);
    let o = run(dir.path(), &["audit", "keygen"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let public = stdout(&o).trim().to_string();
    assert_eq!(public.len(), 64, "{public}");
    let o = run(dir.path(), &["audit", "digest"]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(dir.path().join("digest.json"), stdout(&o)).unwrap();
    // The auditor's key set: the ledger's verifier key, obtained apart from the documents.
    let o = run(dir.path(), &["audit", "public-key"]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(dir.path().join("keys.txt"), stdout(&o)).unwrap();
    (dir, public)
}

/// `audit verify --digest digest.json`, trusting the auditor's key set (no witness:
/// `--quorum 0`) unless `extra` names a key itself.
fn verify_digest(dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["audit", "verify", "--digest", "digest.json"];
    if !extra.iter().any(|a| *a == "--public-key" || *a == "--keys") {
        args.extend(["--keys", "keys.txt", "--quorum", "0"]);
    }
    args.extend_from_slice(extra);
    run(dir, &args)
}

/// The SQLite file opened raw, with the append-only triggers dropped (what an attacker with
/// write access to the file can do).
fn raw(dir: &Path) -> Connection {
    let c = Connection::open(support::store_file(dir)).unwrap();
    for t in [
        "events_append_only_u",
        "events_append_only_d",
        "commands_append_only_u",
        "commands_append_only_d",
    ] {
        c.execute_batch(&format!("DROP TRIGGER IF EXISTS {t}"))
            .unwrap();
    }
    c
}

fn broken_at(o: &std::process::Output, position: u64) {
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(o), stderr(o));
    assert!(
        stdout(o).contains(&format!("BROKEN at position {position}")),
        "{}",
        stdout(o)
    );
}

#[test]
fn a_digest_still_verifies_after_more_events_and_keygen_keeps_its_key() {
    let (dir, public) = setup(300);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("digest.json")).unwrap())
            .unwrap();
    assert_eq!(doc["position"], 300);
    // A view of a signed checkpoint: origin, size, root, the chain's hash.
    let note = doc["checkpoint"].as_str().unwrap();
    assert!(note.starts_with("campaign-ledger/"), "{note}");
    assert!(note.contains("\n300\n"), "{note}");
    assert!(doc.get("public_key").is_none(), "{doc}");
    support::fill(store(dir.path()).as_ref(), 200);
    let o = verify_digest(dir.path(), &[]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("extends the checkpoint of position 300"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("unwitnessed"), "{}", stdout(&o));
    let o = verify_digest(dir.path(), &["--public-key", &public, "--quorum", "0"]);
    assert!(o.status.success());
    // The verifier key names the ledger's origin and holds the same public key.
    let vkey = std::fs::read_to_string(dir.path().join("keys.txt")).unwrap();
    let k = campaign_ledger::envelope::note::VerifierKey::parse(&vkey).unwrap();
    assert_eq!(hex::encode(k.key.as_bytes()), public);
    assert!(k.name.starts_with("campaign-ledger/"), "{vkey}");
    // A second keygen would orphan every digest signed so far: refused.
    let o = run(dir.path(), &["audit", "keygen"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("exists already"), "{}", stderr(&o));
}

#[test]
fn an_old_event_changed_is_named() {
    let (dir, _) = setup(300);
    raw(dir.path())
        .execute(
            "UPDATE events SET data = data || ' ' WHERE position = 120",
            [],
        )
        .unwrap();
    broken_at(&verify_digest(dir.path(), &[]), 120);
}

#[test]
fn a_reordered_pair_is_named() {
    let (dir, _) = setup(300);
    let c = raw(dir.path());
    c.execute_batch(
        "UPDATE events SET position = -1 WHERE position = 150;
         UPDATE events SET position = 150 WHERE position = 151;
         UPDATE events SET position = 151 WHERE position = -1;",
    )
    .unwrap();
    broken_at(&verify_digest(dir.path(), &[]), 150);
}

#[test]
fn a_changed_node_of_the_merkle_tree_is_named() {
    let (dir, _) = setup(300);
    let c = raw(dir.path());
    // Node at level 3, index 5: leaves 40..=47, positions 41 to 48; its row id is its last
    // leaf × 64 + its level.
    c.execute_batch(&format!(
        "DROP TRIGGER merkle_append_only_u; UPDATE merkle SET hash = zeroblob(32) WHERE id = {};",
        47 * 64 + 3
    ))
    .unwrap();
    drop(c);
    let o = run(dir.path(), &["audit", "verify"]);
    broken_at(&o, 41);
    assert!(
        stdout(&o).contains("node at level 3 index 5 (positions 41 to 48)"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_deleted_tail_is_named() {
    let (dir, _) = setup(300);
    raw(dir.path())
        .execute("DELETE FROM events WHERE position > 290", [])
        .unwrap();
    // The shorter log is a valid chain on its own, but the Merkle tree still covers the
    // removed events: `audit verify` alone names the first one.
    let alone = run(dir.path(), &["audit", "verify"]);
    broken_at(&alone, 291);
    assert!(
        stdout(&alone).contains("were removed"),
        "{}",
        stdout(&alone)
    );
    let o = verify_digest(dir.path(), &[]);
    broken_at(&o, 291);
    assert!(stdout(&o).contains("were removed"), "{}", stdout(&o));
}

#[test]
fn a_history_rewritten_with_its_chain_recomputed_is_caught_at_the_digest() {
    let (dir, _) = setup(300);
    // Change event 100 and recompute every hash after it: the chain alone verifies again.
    let store = store(dir.path());
    let mut events = store.read_all(0, 1000).unwrap();
    drop(store);
    events[99].data.push(' ');
    let mut prev = GENESIS_HASH;
    for e in &mut events {
        e.prev_hash = prev;
        e.hash = chain_hash(&prev, &e.as_ref());
        prev = e.hash;
    }
    let c = raw(dir.path());
    for e in &events[99..] {
        c.execute(
            "UPDATE events SET data = ?1, prev_hash = ?2, hash = ?3 WHERE position = ?4",
            params![
                e.data,
                e.prev_hash.to_vec(),
                e.hash.to_vec(),
                e.position as i64
            ],
        )
        .unwrap();
    }
    drop(c);
    // The rewritten chain is self-consistent, but the stored Merkle tree is not its tree.
    let alone = run(dir.path(), &["audit", "verify"]);
    assert!(!alone.status.success(), "{}", stdout(&alone));
    assert!(
        stdout(&alone).contains("Merkle tree's node at level 3 index 12 (positions 97 to 104)"),
        "{}",
        stdout(&alone)
    );
    // Rewriting the tree too (its triggers dropped) leaves only the digest to catch it.
    let c = raw(dir.path());
    c.execute_batch("DROP TRIGGER merkle_append_only_d; DELETE FROM merkle; DELETE FROM meta WHERE key = 'merkle_size';")
        .unwrap();
    drop(c);
    assert!(
        run(dir.path(), &["audit", "verify"]).status.success(),
        "the tree rebuilt at open from the rewritten chain is self-consistent"
    );
    let o = verify_digest(dir.path(), &[]);
    broken_at(&o, 300);
    assert!(
        stdout(&o).contains("rewritten at or before"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_truncated_file_is_refused_with_a_clear_error() {
    let (dir, _) = setup(3000);
    let file = support::store_file(dir.path());
    let len = std::fs::metadata(&file).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.set_len(len / 2).unwrap();
    let o = verify_digest(dir.path(), &[]);
    assert!(!o.status.success());
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        said.contains("BROKEN at position")
            || said.contains("malformed")
            || said.contains("cannot"),
        "{said}"
    );
}

#[test]
fn an_edited_digest_or_one_signed_by_another_key_is_refused() {
    let (dir, _) = setup(100);
    let path = dir.path().join("digest.json");
    let original = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        original.replace("\"position\": 100", "\"position\": 90"),
    )
    .unwrap();
    let o = verify_digest(dir.path(), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("FAILED") && stdout(&o).contains("changed after it was signed"),
        "{}",
        stdout(&o)
    );
    std::fs::write(&path, &original).unwrap();
    let other = hex::encode(
        ed25519_dalek::SigningKey::from_bytes(&[0x11; 32])
            .verifying_key()
            .as_bytes(),
    );
    let o = verify_digest(dir.path(), &["--public-key", &other, "--quorum", "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("not signed by a key you trust"),
        "{}",
        stdout(&o)
    );
    std::fs::write(&path, "{\"position\": 3}").unwrap();
    let o = verify_digest(dir.path(), &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is not a digest"), "{}", stderr(&o));
}

#[test]
fn serve_publishes_a_signed_digest_when_the_log_moved_to_a_file_and_to_nats() {
    use std::time::{Duration, Instant};
    let server = support::nats::NatsServer::start();
    let (dir, public) = setup(100);
    let mut child = support::bin()
        .current_dir(dir.path())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--digest-every",
            "1s",
            "--nats",
        ])
        .arg(server.url())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let file = dir.path().join("ledger-data/digests.jsonl");
    let positions = || -> Vec<u64> {
        std::fs::read_to_string(&file)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["position"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    let wait_for = |p: u64| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !positions().contains(&p) {
            assert!(
                Instant::now() < deadline,
                "no digest at {p}: {:?}",
                positions()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for(100);
    support::fill(store(dir.path()).as_ref(), 50);
    wait_for(150);
    // Nothing moved: no new digest.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(positions(), vec![100, 150]);
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    assert!(child.wait().unwrap().success());

    // Each digest in the file is signed by the ledger's key, and the log extends it.
    for (i, line) in std::fs::read_to_string(&file).unwrap().lines().enumerate() {
        let name = format!("d{i}.json");
        std::fs::write(dir.path().join(&name), line).unwrap();
        let o = run(
            dir.path(),
            &[
                "audit",
                "verify",
                "--digest",
                &name,
                "--public-key",
                &public,
                "--quorum",
                "0",
            ],
        );
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    }
    // The same digests are on NATS, on ledger.v1.digests, signed.
    let messages = support::nats::rt().block_on(support::nats::stream_messages(
        &server.url(),
        "LEDGER_DIGESTS",
    ));
    let on_nats: Vec<u64> = messages
        .iter()
        .map(|m| {
            assert_eq!(m.subject.as_str(), "ledger.v1.digests");
            let d: campaign_ledger::audit::SignedDigest =
                serde_json::from_slice(&m.payload).unwrap();
            d.check(&campaign_ledger::audit::Trust::keys_only(
                campaign_ledger::audit::KeySet::one_given(&public).unwrap(),
            ))
            .unwrap();
            d.position
        })
        .collect();
    assert_eq!(on_nats, vec![100, 150]);
}

#[test]
fn a_digest_is_trusted_only_against_a_key_the_auditor_gives_or_holds() {
    let (dir, public) = setup(20);
    std::fs::remove_file(dir.path().join("ledger-data/signing.key")).unwrap();
    // The key named inside the digest proves nothing by itself.
    let o = run(dir.path(), &["audit", "verify", "--digest", "digest.json"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no trusted key"), "{}", stderr(&o));
    let o = verify_digest(dir.path(), &["--public-key", "00ff"]);
    assert!(stderr(&o).contains("not a verifier key"), "{}", stderr(&o));
    // Without witnesses, a checkpoint is accepted only when the auditor says so.
    let o = verify_digest(dir.path(), &["--public-key", &public]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("--quorum 0"), "{}", stdout(&o));
    let o = verify_digest(dir.path(), &["--public-key", &public, "--quorum", "0"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}

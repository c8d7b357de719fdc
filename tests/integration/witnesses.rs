//! Witnesses between real processes (C2SP `tlog-witness`): `serve --witness` has each checkpoint
//! cosigned by `campaign-ledger witness` and by a witness written from the specs by other hands
//! (`support::other_witness`); and the dishonest operator, who holds the ledger's key, shows a
//! witness a fork, a rollback, a bad proof, a checkpoint of an unknown log or signed by an
//! unknown key: each is refused with the spec's status, and the contradicting checkpoints are
//! kept as evidence.

use crate::support;

use base64::Engine as _;
use serde_json::Value;
use std::io::{BufRead as _, Read as _, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};
use support::other_witness;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn ok(dir: &Path, args: &[&str]) -> String {
    support::ok_output(&support::run(dir, args))
}

/// A ledger of `n` first doses (and a site), with its signing key; returns its verifier key.
fn ledger(dir: &Path, n: usize) -> String {
    let mut lines = vec![support::lyon_site()];
    for i in 0..n {
        lines.push(support::lyon_first_dose(
            uuid::Uuid::now_v7(),
            &format!("W-{i}"),
        ));
    }
    std::fs::write(dir.join("in.jsonl"), lines.join("\n") + "\n").unwrap();
    ok(dir, &["submit", "in.jsonl"]);
    ok(dir, &["audit", "keygen"]);
    ok(dir, &["audit", "public-key"]).trim().to_string()
}

/// `campaign-ledger witness serve` watching `log_vkey`: the process, its address, its cosigner
/// key, its state file.
fn our_witness(
    dir: &Path,
    log_vkey: &str,
) -> (support::Running, String, String, std::path::PathBuf) {
    let key = ok(
        dir,
        &[
            "witness",
            "keygen",
            "--key",
            "w.key",
            "--name",
            "witness.test/ours",
        ],
    )
    .trim()
    .to_string();
    std::fs::write(dir.join("logs.txt"), format!("{log_vkey}\n")).unwrap();
    let mut child = support::bin()
        .current_dir(dir)
        .args([
            "witness",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--key",
            "w.key",
            "--name",
            "witness.test/ours",
            "--logs",
            "logs.txt",
            "--state",
            "witness.db",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .rsplit_once("http://")
        .unwrap_or_else(|| panic!("witness said {line:?}"))
        .1
        .to_string();
    (support::Running(child), addr, key, dir.join("witness.db"))
}

/// `POST /add-checkpoint`: status, content type, body.
fn add(addr: &str, body: &str) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /add-checkpoint HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    (head[9..12].parse().unwrap(), ctype, body.to_string())
}

/// A checkpoint note signed with the ledger's own key (read from its file) by Cloudflare's
/// `signed_note`: what the operator can make.
fn forged(dir: &Path, origin: &str, size: u64, root: &[u8; 32], seed_file: &str) -> String {
    let seed = hex::decode(std::fs::read_to_string(dir.join(seed_file)).unwrap().trim()).unwrap();
    let sk = ed25519_dalek::SigningKey::from_bytes(seed.as_slice().try_into().unwrap());
    let pk = sk.verifying_key().to_bytes();
    let id = signed_note::key_id(origin, &[&[0x01u8][..], &pk].concat());
    let skey = format!(
        "PRIVATE+KEY+{origin}+{id:08x}+{}",
        B64.encode([&[0x01u8][..], &seed].concat())
    );
    let signer = signed_note::StandardSigner::new(&skey).unwrap();
    let text = format!("{origin}\n{size}\n{}\n", B64.encode(root));
    let mut note = signed_note::Note::new(text.as_bytes(), &[]).unwrap();
    note.add_sigs(&[&signer]).unwrap();
    String::from_utf8(note.to_bytes()).unwrap()
}

fn checkpoint_of(note: &str) -> (String, u64, [u8; 32]) {
    let n = signed_note::Note::from_bytes(note.as_bytes()).unwrap();
    let cp = tlog_tiles::Checkpoint::from_bytes(n.text()).unwrap();
    (cp.origin().to_string(), cp.size(), cp.hash().0)
}

#[test]
fn a_witness_refuses_forks_rollbacks_bad_proofs_and_unknown_keys_and_keeps_the_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let log_vkey = ledger(d, 5);
    let (_w, addr, wkey, state) = our_witness(d, &log_vkey);
    let cp1 = ok(d, &["audit", "checkpoint"]);
    let (origin, n1, root1) = checkpoint_of(&cp1);
    assert_eq!(n1, 6);
    std::fs::copy(d.join("ledger-data/checkpoint.txt"), d.join("cp1.txt")).unwrap();
    // The first submission: cosigned, and the cosignature verifies by the spec.
    let (s, _, body) = add(&addr, &format!("old 0\n\n{cp1}"));
    assert_eq!(s, 200, "{body}");
    let ts = other_witness::verify_cosignature(&wkey, &format!("{cp1}{body}"))
        .expect("a cosignature of the witness's key over the checkpoint");
    assert!(ts > 1_700_000_000);
    // The same again with a stale old size: 409 and the witness's size.
    let (s, ctype, body) = add(&addr, &format!("old 0\n\n{cp1}"));
    assert_eq!(
        (s, ctype.as_str(), body.as_str()),
        (409, "text/x.tlog.size", "6\n")
    );
    // A fork: the same size, another root, signed by the ledger's key (the operator's).
    let fork = forged(d, &origin, n1, &[7; 32], "ledger-data/signing.key");
    let (s, _, _) = add(&addr, &format!("old 0\n\n{fork}"));
    assert_eq!(s, 409);
    let (s, _, _) = add(&addr, &format!("old 6\n\n{fork}"));
    assert_eq!(s, 422);
    // A rollback.
    let rollback = forged(d, &origin, n1 - 2, &root1, "ledger-data/signing.key");
    let (s, _, _) = add(&addr, &format!("old 6\n\n{rollback}"));
    assert_eq!(s, 400);
    // More events; a bad proof, then the right one.
    let more = [support::lyon_first_dose(uuid::Uuid::now_v7(), "W-more")].join("\n") + "\n";
    std::fs::write(d.join("more.jsonl"), more).unwrap();
    ok(d, &["submit", "more.jsonl"]);
    let cp2 = ok(d, &["audit", "checkpoint"]);
    let bad = B64.encode([9u8; 32]);
    let (s, _, _) = add(&addr, &format!("old 6\n{bad}\n{bad}\n\n{cp2}"));
    assert_eq!(s, 422);
    std::fs::copy(d.join("ledger-data/checkpoint.txt"), d.join("cp2.txt")).unwrap();
    let proof: Value = serde_json::from_str(&ok(
        d,
        &[
            "audit",
            "consistency",
            "--from",
            "cp1.txt",
            "--to",
            "cp2.txt",
        ],
    ))
    .unwrap();
    let lines: String = proof["consistency_path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| B64.encode(hex::decode(h.as_str().unwrap()).unwrap()) + "\n")
        .collect();
    let (s, _, body) = add(&addr, &format!("old 6\n{lines}\n{cp2}"));
    assert_eq!(s, 200, "{body}");
    // An unknown log, and the known log signed by another key.
    let other = d.join("other.key");
    std::fs::write(&other, "33".repeat(32)).unwrap();
    let unknown = forged(d, "campaign-ledger/ffff", 3, &[1; 32], "other.key");
    assert_eq!(add(&addr, &format!("old 0\n\n{unknown}")).0, 404);
    let impostor = forged(d, &origin, 9, &[1; 32], "other.key");
    assert_eq!(add(&addr, &format!("old 7\n\n{impostor}")).0, 403);
    assert_eq!(add(&addr, "not a request").0, 400);
    // The evidence: both checkpoints of each contradiction, signed by the ledger.
    let out = ok(
        d,
        &["witness", "evidence", "--state", state.to_str().unwrap()],
    );
    let kinds: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds, ["fork", "fork", "rollback", "bad_proof"], "{out}");
    let first: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["received"], fork.as_str());
    assert!(first["held"]
        .as_str()
        .unwrap()
        .starts_with(&cp1[..cp1.len() - 1]));
}

/// The newest checkpoint the server serves (text), with an auditor's token.
fn served_checkpoint(addr: &str, token: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /v1/audit/checkpoint HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n").unwrap().1.to_string()
}

#[test]
fn serve_has_each_checkpoint_cosigned_by_its_witnesses_one_of_them_written_by_others() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let log_vkey = ledger(d, 3);
    let (_w, addr1, key1, _) = our_witness(d, &log_vkey);
    let other = other_witness::start("witness.test/other", [5; 32], &log_vkey);
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
    let w1 = format!("http://{addr1}={key1}");
    let w2 = format!("http://{}={}", other.addr, other.vkey);
    let (_server, addr) = support::spawn_serve(
        d,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--auth",
            "tokens.json",
            "--digest-every",
            "0",
            "--witness",
            &w1,
            "--witness",
            &w2,
        ],
        std::process::Stdio::null(),
    );
    let cosigned_by_both = |size: u64| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let note = served_checkpoint(&addr, &auditor);
            let fresh = note.lines().nth(1) == Some(size.to_string().as_str());
            if fresh
                && other_witness::verify_cosignature(&key1, &note).is_some()
                && other_witness::verify_cosignature(&other.vkey, &note).is_some()
            {
                return note;
            }
            assert!(
                Instant::now() < deadline,
                "not cosigned by both at {size}: {note}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    cosigned_by_both(4);
    // A command: the next checkpoint is cosigned again (the witnesses checked the proof from 4).
    let (s, v) = support::http(
        &addr,
        "POST",
        "/v1/commands",
        &agent,
        Some(
            &serde_json::from_str(&support::lyon_first_dose(uuid::Uuid::now_v7(), "W-late"))
                .unwrap(),
        ),
    );
    assert_eq!((s, v["outcome"].as_str()), (200, Some("accepted")), "{v}");
    let note = cosigned_by_both(5);
    // The auditor checks it with the two witnesses' keys (all of them required by default).
    std::fs::write(d.join("cp.txt"), &note).unwrap();
    std::fs::write(d.join("keys.txt"), format!("{log_vkey}\n")).unwrap();
    std::fs::write(d.join("witnesses.txt"), format!("{key1}\n{}\n", other.vkey)).unwrap();
    let out = ok(
        d,
        &[
            "audit",
            "verify",
            "--digest",
            "cp.txt",
            "--keys",
            "keys.txt",
            "--witness-keys",
            "witnesses.txt",
        ],
    );
    assert!(out.contains("cosigned by 2"), "{out}");
    let py = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/verify.py"))
        .args([
            "checkpoint",
            "cp.txt",
            "--keys",
            "keys.txt",
            "--witness-keys",
            "witnesses.txt",
        ])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}{}",
        support::stdout(&py),
        support::stderr(&py)
    );
    // Cloudflare's signed_note verifies the log's signature in the same note.
    let n = signed_note::Note::from_bytes(note.as_bytes()).unwrap();
    let v = signed_note::StandardVerifier::new(&log_vkey).unwrap();
    n.verify(&signed_note::VerifierList::new(vec![Box::new(v)]))
        .unwrap();
}

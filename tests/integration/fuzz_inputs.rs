//! Bad input, generated: random bytes and mutated valid documents (bytes deleted, inserted,
//! replaced, repeated, cut off) into everything that reads outside input: the command parser
//! (directly and through `POST /v1/commands`), `import`, the token file, the projection
//! definitions, signed digests, proof documents and query strings. Nothing may panic; every
//! refusal says what was wrong; the store is untouched by what it refused.
//!
//! How many inputs each tried is printed (`cargo test --test fuzz_inputs -- --nocapture`);
//! `FUZZ_CASES` multiplies them (for a longer run by hand).

use crate::support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use campaign_ledger::audit::{self, SignedDigest};
use campaign_ledger::domain::{CommandEnvelope, Reference};
use campaign_ledger::store::EventStore;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::sync::Arc;

/// Cases for a test: `base` times FUZZ_CASES (default 1).
fn cases(base: u32) -> u32 {
    let k: u32 = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    base * k.max(1)
}

/// One edit of a document.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, Vec<u8>),
    Replace(usize, u8),
    Repeat(usize, usize),
    Cut(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    // Bytes that matter to JSON and TOML, as well as any.
    let byte = prop_oneof![
        any::<u8>(),
        prop::sample::select(b"{}[]\",:=.-+0123456789eE \n\\tnulfrs#'".to_vec()),
    ];
    prop_oneof![
        (any::<usize>(), 1usize..16).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<usize>(), prop::collection::vec(byte.clone(), 1..8))
            .prop_map(|(a, b)| Edit::Insert(a, b)),
        (any::<usize>(), byte).prop_map(|(a, b)| Edit::Replace(a, b)),
        (any::<usize>(), 1usize..32).prop_map(|(a, n)| Edit::Repeat(a, n)),
        any::<usize>().prop_map(Edit::Cut),
    ]
}

fn apply(doc: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut d = doc.to_vec();
    for e in edits {
        let len = d.len().max(1);
        match e {
            Edit::Delete(a, n) => {
                let a = a % len;
                let b = (a + n).min(d.len());
                if a < b {
                    d.drain(a..b);
                }
            }
            Edit::Insert(a, bytes) => {
                let a = a % (d.len() + 1);
                d.splice(a..a, bytes.iter().copied());
            }
            Edit::Replace(a, b) => {
                if !d.is_empty() {
                    let a = a % d.len();
                    d[a] = *b;
                }
            }
            Edit::Repeat(a, n) => {
                let a = a % len;
                let b = (a + n).min(d.len());
                let piece: Vec<u8> = d.get(a..b).unwrap_or(&[]).to_vec();
                d.splice(b..b, piece);
            }
            Edit::Cut(a) => {
                let a = a % len;
                d.truncate(a);
            }
        }
    }
    d
}

/// A valid document mutated by 1 to 6 edits, or random bytes (one case in eight).
fn mutated(valid: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        7 => (prop::sample::select(valid), prop::collection::vec(edit(), 1..6))
            .prop_map(|(doc, edits)| apply(&doc, &edits)),
        1 => prop::collection::vec(any::<u8>(), 0..300),
    ]
}

/// Runs `check` on `n` generated inputs; prints how many were tried.
fn run(what: &str, n: u32, strategy: impl Strategy<Value = Vec<u8>>, check: impl Fn(&[u8])) {
    let mut runner = TestRunner::new(Config {
        cases: n,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy, |input| {
            check(&input);
            Ok(())
        })
        .unwrap();
    eprintln!("{what}: {n} inputs, no panic, every refusal explained");
}

const COMMANDS: [&str; 5] = [
    r#"{"type":"AdministerDose","command_id":"0193a1e2-7c4b-7d2e-9f00-2b1c3d4e5f60","person_ref":"p1","age_band":"30-39","recipient":"user","directorate":"lyon","site":"lyon-dt","product":"comirnaty","lot":"FF1234","dose":"first","administered_at":"2021-09-14T10:00:00+02:00"}"#,
    r#"{"type":"AuthoriseSite","command_id":"0193a1e2-7c4b-7d2e-9f00-2b1c3d4e5f61","directorate":"lyon","site":"lyon-dt","site_kind":"dt_premises","authorised_on":"2021-08-01"}"#,
    r#"{"type":"IssueTicket","command_id":"0193a1e2-7c4b-7d2e-9f00-2b1c3d4e5f62","ticket_id":"T-1","person_ref":"p2","directorate":"lyon","partner_centre":"cv-lyon-gerland","issued_at":"2021-09-14T10:00:00+02:00","valid_until":"2021-10-14"}"#,
    r#"{"type":"CloseSession","command_id":"0193a1e2-7c4b-7d2e-9f00-2b1c3d4e5f63","session_id":"s1","closed_at":"2021-09-14T18:00:00+02:00","attendance":12}"#,
    r#"{"type":"AnswerCoverageSurvey","command_id":"0193a1e2-7c4b-7d2e-9f00-2b1c3d4e5f64","survey_id":"s","structure_id":"x","structure_type":"cada","directorate":"lyon","as_of":"2021-12-01","residents":10,"residents_with_one_dose":5,"residents_fully_vaccinated":3}"#,
];

fn valid_commands() -> Vec<Vec<u8>> {
    COMMANDS.iter().map(|c| c.as_bytes().to_vec()).collect()
}

#[test]
fn the_command_parser_refuses_any_bad_command_saying_why() {
    run(
        "command parser",
        cases(3000),
        mutated(valid_commands()),
        |input| {
            let text = String::from_utf8_lossy(input);
            if let Err(e) = CommandEnvelope::parse(&text) {
                assert!(!e.message.trim().is_empty(), "{input:?}");
                assert!(!e.code.is_empty());
            }
        },
    );
}

#[test]
fn post_commands_never_fails_inside_and_stores_nothing_it_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, ledger, engine) = support::ledger(dir.path());
    let state = campaign_ledger::http::AppState::new(Arc::new(ledger), Arc::new(engine));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut bodies = valid_commands();
    bodies.push(format!("[{},{}]", COMMANDS[1], COMMANDS[0]).into_bytes());
    run("POST /v1/commands", cases(400), mutated(bodies), |input| {
        let before = store.head_position().unwrap();
        let req = Request::post("/v1/commands")
            .header("content-type", "application/json")
            .body(Body::from(input.to_vec()))
            .unwrap();
        let (status, text) =
            support::oneshot_text(&rt, campaign_ledger::http::router(state.clone()), req);
        assert!(
            [200, 400, 413, 422].contains(&status.as_u16()),
            "{status} {text} for {:?}",
            String::from_utf8_lossy(input)
        );
        assert!(
            text.contains("\"code\"") || text.contains("\"outcome\""),
            "{text}"
        );
        if status != StatusCode::OK {
            assert_eq!(store.head_position().unwrap(), before, "{status} {text}");
        }
    });
}

#[test]
fn query_strings_are_answered_never_with_a_server_error() {
    let state = support::scenario_state();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let paths = [
        "/v1/events",
        "/v1/projections/doses_by_directorate",
        "/v1/findings",
        "/v1/audit/proofs/inclusion",
        "/v1/audit/proofs/consistency",
        "/v1/audit/changes",
        "/v1/audit/access-log",
    ];
    let valid: Vec<Vec<u8>> = [
        "after=10&limit=5",
        "as_of=2021-12-17&known_at=2021-12-18T00:00:00Z",
        "position=3&tree_size=10",
        "first=2&second=9",
        "directorate=lyon&format=json",
    ]
    .iter()
    .map(|q| q.as_bytes().to_vec())
    .collect();
    let strategy = (prop::sample::select(paths.to_vec()), mutated(valid))
        .prop_map(|(p, q)| [p.as_bytes(), b"?", &q].concat());
    run("query strings", cases(600), strategy, |input| {
        // Bytes a URI cannot hold are sent percent-encoded, as a client library would.
        let uri: String = input
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() && b != b'#' && b != b'%' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let Ok(req) = Request::get(uri.as_str()).body(Body::empty()) else {
            return;
        };
        let (status, text) =
            support::oneshot_text(&rt, campaign_ledger::http::router(state.clone()), req);
        assert!(
            [200, 400, 404].contains(&status.as_u16()),
            "{status} {text} for {uri}"
        );
        if status != StatusCode::OK {
            assert!(text.contains("\"message\""), "{text}");
        }
    });
}

/// A small log: its export, a signed digest of it, and an inclusion proof.
fn documents(dir: &std::path::Path) -> (Arc<dyn EventStore>, String, String, String) {
    let store = support::sqlite_store_at(&dir.join("ledger.db"));
    support::fill(store.as_ref(), 30);
    let mut export = Vec::new();
    audit::export(
        store.as_ref(),
        &audit::ExportOptions::default(),
        &mut export,
    )
    .unwrap();
    let key = audit::LedgerKey::generate(&dir.join("signing.key")).unwrap();
    let digest = key.sign(audit::digest(store.as_ref()).unwrap());
    let proof = audit::proofs::inclusion_at(store.as_ref(), 7, 30, |d| key.sign(d)).unwrap();
    (
        store,
        String::from_utf8(export).unwrap(),
        serde_json::to_string(&digest).unwrap(),
        serde_json::to_string(&proof).unwrap(),
    )
}

#[test]
fn import_refuses_a_damaged_export_and_writes_nothing_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_, export, _, _) = documents(dir.path());
    let n = cases(300);
    let imported = std::sync::atomic::AtomicUsize::new(0);
    run(
        "import",
        n,
        mutated(vec![export.clone().into_bytes()]),
        |input| {
            // As `import FILE` does: the whole file is verified before anything is written.
            match audit::verify_export(&mut &input[..], None, None) {
                Err(e) => assert!(!e.to_string().trim().is_empty()),
                Ok(_) => {
                    // A mutation the chain does not see (white space between lines, say): the
                    // import must then give a log that verifies.
                    let d = tempfile::tempdir().unwrap();
                    let store = support::sqlite_store_at(&d.path().join("x.db"));
                    if let Err(e) = audit::import(&mut &input[..], store.as_ref(), &mut |_| {}) {
                        let changed: Vec<String> = String::from_utf8_lossy(input)
                            .lines()
                            .filter(|l| !export.contains(*l))
                            .map(|l| l.chars().take(400).collect())
                            .collect();
                        panic!("verified, then the import failed: {e}; changed lines: {changed:?}");
                    }
                    audit::verify(store.as_ref(), &mut |_| {}).unwrap();
                    imported.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        },
    );
    eprintln!(
        "import: {} of {n} mutated exports still verified (and imported whole)",
        imported.into_inner()
    );
}

#[test]
fn digests_and_proof_documents_are_checked_never_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, digest, proof) = documents(dir.path());
    // The ledger's own key, as an auditor brings it (no witness: --quorum 0).
    let key = audit::LedgerKey::load(&dir.path().join("signing.key")).unwrap();
    let trust = audit::Trust::keys_only(audit::KeySet::one_given(&key.public_hex()).unwrap());
    run(
        "signed digests",
        cases(300),
        mutated(vec![digest.clone().into_bytes()]),
        |input| {
            let text = String::from_utf8_lossy(input);
            let Ok(d) = serde_json::from_str::<SignedDigest>(&text) else {
                return;
            };
            let signed = d.check(&trust);
            let extends = audit::verify_extends(store.as_ref(), &d, None);
            // A digest the log accepts as its own, signed, is the digest written (or one with the
            // same meaning: key order, spacing).
            if signed.is_ok() && extends.is_ok() {
                let original: SignedDigest = serde_json::from_str(&digest).unwrap();
                assert_eq!(d, original, "a changed digest passed: {text}");
            }
        },
    );
    run(
        "proof documents",
        cases(500),
        mutated(vec![proof.clone().into_bytes()]),
        |input| {
            let text = String::from_utf8_lossy(input);
            match audit::proofs::check(&text, &trust, None) {
                Err(e) => assert!(!e.to_string().trim().is_empty()),
                Ok(_) => {
                    // Same meaning: the event line's attributes (its `source` names where it
                    // was written and is not evidence), the rest as JSON.
                    let a = meaning(&text);
                    let b = meaning(&proof);
                    assert!(
                        a == b,
                        "a changed proof passed: {}",
                        differences(&a, &b, "")
                    );
                }
            }
        },
    );
}

#[test]
fn token_files_and_projection_definitions_refuse_what_they_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = serde_json::json!({"tokens": [
        {"id": "a-1", "role": "agent", "directorates": ["lyon"], "sha256": "0".repeat(64)},
        {"id": "p-1", "role": "partner", "partner_centres": ["cv-lyon-gerland"], "sha256": "1".repeat(64)},
        {"id": "au-1", "role": "auditor", "sha256": "2".repeat(64), "expires_at": "2099-01-01T00:00:00Z"}
    ]})
    .to_string();
    let reference = Reference::builtin();
    let path = dir.path().join("tokens.json");
    std::fs::write(&path, &tokens).unwrap();
    campaign_ledger::access::Auth::load(&path, &reference).expect("the valid token file loads");
    run(
        "token files",
        cases(500),
        mutated(vec![tokens.into_bytes()]),
        |input| {
            std::fs::write(&path, input).unwrap();
            if let Err(e) = campaign_ledger::access::Auth::load(&path, &reference) {
                assert!(!e.trim().is_empty());
            }
        },
    );
    let defs: Vec<Vec<u8>> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/projections"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    run(
        "projection definitions",
        cases(1500),
        mutated(defs),
        |input| {
            let text = String::from_utf8_lossy(input);
            if let Err(e) =
                campaign_ledger::projection::Definition::parse(&text, "fuzzed", "fuzzed.toml")
            {
                assert!(!e.to_string().trim().is_empty());
            }
        },
    );
}

/// Where two JSON values differ (paths and both values), for failure messages.
fn differences(a: &serde_json::Value, b: &serde_json::Value, at: &str) -> String {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter()
                .map(|k| match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => differences(p, q, &format!("{at}/{k}")),
                    (p, q) => format!("{at}/{k}: {p:?} vs {q:?}; "),
                })
                .collect()
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .map(|(i, (p, q))| differences(p, q, &format!("{at}/{i}")))
            .collect(),
        (p, q) if p == q => String::new(),
        (p, q) => format!("{at}: {p} vs {q}; "),
    }
}

/// A proof document as JSON, its event line read as JSON too, with only the attributes the
/// proof stands for: those the event's hash covers and those derived from them. `source` (where
/// the line was written), `ledgercommandhash` (an import's idempotency check, outside the
/// chain) and extension attributes a CloudEvents reader ignores are not evidence.
fn meaning(text: &str) -> serde_json::Value {
    const EVIDENCE: [&str; 17] = [
        "specversion",
        "id",
        "type",
        "subject",
        "time",
        "datacontenttype",
        "data",
        "ledgerposition",
        "ledgerstreamversion",
        "ledgereventtype",
        "ledgerschemaversion",
        "ledgerrecordedat",
        "ledgercommandid",
        "ledgercorrelationid",
        "ledgeractor",
        "ledgerprevhash",
        "ledgerhash",
    ];
    let mut v: serde_json::Value = serde_json::from_str(text).unwrap();
    if let Some(line) = v.get("event").and_then(|e| e.as_str()).map(str::to_string) {
        let mut e: serde_json::Value = serde_json::from_str(&line).unwrap();
        e.as_object_mut()
            .unwrap()
            .retain(|k, _| EVIDENCE.contains(&k.as_str()));
        v["event"] = e;
    }
    v
}

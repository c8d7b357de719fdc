//! One set of cases, valid and invalid, each with its verdict, that both verifiers must agree
//! on: `campaign-ledger audit` (the Rust one, through the real binary) and `examples/verify.py`
//! (Python's standard library alone). `schemas/verifier-cases.json` holds them: an export of a
//! small ledger, checkpoints signed with a TEST key and cosigned by a TEST witness (their seeds
//! are public), and what changes each case makes. `WRITE_VECTORS=1` writes the file again.

use crate::support;

use campaign_ledger::audit::tree::digest_at;
use campaign_ledger::audit::{ExportOptions, LedgerKey, SignedDigest};
use campaign_ledger::envelope::chain::chain_hash;
use campaign_ledger::envelope::cloudevents::{decode_export, encode_export, CommandHash};
use campaign_ledger::envelope::note::{cosign, Note, VerifierKey, TYPE_COSIGNATURE};
use serde_json::{json, Value};
use std::path::Path;

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/verifier-cases.json");
/// Test keys (their seeds are public: they prove nothing about a real ledger).
const LOG_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const WITNESS_SEED: [u8; 32] = [0x22; 32];
const WITNESS: &str = "witness.test/w1";

fn commands() -> Vec<Value> {
    let c = |n: u32| format!("0193c000-0000-7000-8000-{n:012}");
    let dose = |n: u32, person: &str, kind: &str, at: &str| {
        json!({"command_id": c(n), "type": "AdministerDose", "person_ref": person, "age_band": "30-39",
               "recipient": "user", "directorate": "lyon", "site": "lyon-dt", "product": "comirnaty",
               "lot": "FF2832", "dose": kind, "administered_at": at})
    };
    vec![
        json!({"command_id": c(1), "type": "AuthoriseSite", "directorate": "lyon", "site": "lyon-dt", "site_kind": "dt_premises", "authorised_on": "2021-08-23"}),
        dose(2, "p-case-1", "first", "2021-09-08T10:00:00+02:00"),
        dose(3, "p-case-2", "first", "2021-09-09T10:00:00+02:00"),
        dose(4, "p-case-3", "first", "2021-09-10T10:00:00+02:00"),
        dose(5, "p-case-1", "second", "2021-10-08T10:00:00+02:00"),
        dose(6, "p-case-2", "second", "2021-10-12T10:00:00+02:00"),
        dose(7, "p-case-3", "second", "2021-10-13T10:00:00+02:00"),
        dose(8, "p-case-4", "first", "2021-10-14T10:00:00+02:00"),
    ]
}

/// The export lines with `change` made to the events (rechained from `from` when given).
fn changed(
    lines: &[String],
    change: &dyn Fn(&mut Vec<campaign_ledger::store::RecordedEvent>),
    rechain_from: Option<usize>,
) -> String {
    let mut events: Vec<_> = lines
        .iter()
        .map(|l| decode_export(l.as_bytes()).unwrap())
        .collect();
    let hashes: Vec<CommandHash> = events.iter().map(|(_, h)| h.unwrap()).collect();
    let mut es: Vec<_> = events.drain(..).map(|(e, _)| e).collect();
    change(&mut es);
    if let Some(from) = rechain_from {
        for i in from..es.len() {
            let prev = if i == 0 { [0; 32] } else { es[i - 1].hash };
            es[i].prev_hash = prev;
            es[i].hash = chain_hash(&prev, &es[i].as_ref());
        }
    }
    es.iter()
        .zip(&hashes)
        .map(|(e, h)| String::from_utf8(encode_export(&e.as_ref(), h)).unwrap() + "\n")
        .collect()
}

fn write_cases() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text: String = commands().iter().map(|c| c.to_string() + "\n").collect();
    std::fs::write(d.join("cases.jsonl"), text).unwrap();
    support::ok_output(&support::run(
        d,
        &[
            "submit",
            "--clock",
            "business",
            "cases.jsonl",
            "--format",
            "json",
        ],
    ));
    std::fs::write(d.join("test.key"), LOG_SEED).unwrap();
    let key = LedgerKey::load(&d.join("test.key")).unwrap();
    let store = support::sqlite_store_at(&support::store_file(d));
    let s = store.as_ref();
    let mut out = Vec::new();
    campaign_ledger::audit::export(s, &ExportOptions::default(), &mut out).unwrap();
    let lines: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 8);
    let events = s.read_all(0, 8).unwrap();
    let ledger = hex::encode(events[0].hash);
    let witness = ed25519_dalek::SigningKey::from_bytes(&WITNESS_SEED);
    let wkey = VerifierKey::new(WITNESS, TYPE_COSIGNATURE, witness.verifying_key());
    let log_vkey = key.verifier(&ledger).to_string();
    // Witnessed a minute after the fifth event was recorded.
    let t5 = chrono::DateTime::parse_from_rfc3339(&events[4].recorded_at)
        .unwrap()
        .timestamp() as u64;
    let signed = |n: u64| key.sign(digest_at(s, n).unwrap());
    let cosigned = |n: u64, ts: u64| {
        let mut d = signed(n);
        let mut note = Note::parse(d.checkpoint.as_ref().unwrap()).unwrap();
        note.add([cosign(&note.text.clone(), WITNESS, &witness, ts)]);
        d.checkpoint = Some(note.to_text());
        d
    };
    let c5 = cosigned(5, t5 + 60);
    let c5_note = c5.checkpoint.clone().unwrap();
    let c5_plain = signed(5).checkpoint.unwrap();
    // C5's body with C4's cosignature: it does not verify.
    let c4 = cosigned(4, t5 + 60);
    let c4_cosig = Note::parse(c4.checkpoint.as_ref().unwrap())
        .unwrap()
        .signatures[1]
        .clone();
    let mut wrong = Note::parse(&c5_plain).unwrap();
    wrong
        .signatures
        .push(campaign_ledger::envelope::note::NoteSignature {
            name: c4_cosig.name.clone(),
            key_id: c4_cosig.key_id,
            bytes: c4_cosig.bytes.clone(),
        });
    let other_key = LedgerKey::load(&{
        let p = d.join("other.key");
        std::fs::write(&p, "11".repeat(32)).unwrap();
        p
    })
    .unwrap();
    let other_vkey = other_key.verifier(&ledger).to_string();
    let all: String = lines.iter().map(|l| l.clone() + "\n").collect();
    let window: String = lines[2..].iter().map(|l| l.clone() + "\n").collect();
    let witnessed = json!({"keys": [log_vkey], "witness_keys": [wkey.to_string()], "quorum": 1});
    let unwitnessed = json!({"keys": [log_vkey], "witness_keys": [], "quorum": 0});
    let proof = campaign_ledger::audit::proofs::inclusion_document(s, 3, c5.clone()).unwrap();
    let proof = serde_json::to_string(&proof).unwrap();
    let mut c5_view = c5.clone();
    c5_view.position = 4;
    let other_root = {
        let mut x = c5.clone();
        x.root_hash = Some("00".repeat(32));
        x
    };
    let case = |name: &str, check: &str, files: Value, trust: &Value, expect: &str| json!({"name": name, "check": check, "files": files, "trust": trust, "expect": expect});
    let cases = vec![
        case(
            "a whole export, alone",
            "export",
            json!({"export": all}),
            &unwitnessed,
            "ok",
        ),
        case(
            "a window (3..8) against a witnessed checkpoint of 5",
            "export",
            json!({"export": window, "checkpoint": c5_note}),
            &witnessed,
            "ok",
        ),
        case(
            "the same window against the digest view of that checkpoint",
            "export",
            json!({"export": window, "checkpoint": serde_json::to_string(&c5).unwrap()}),
            &witnessed,
            "ok",
        ),
        case(
            "an unwitnessed checkpoint accepted with quorum 0",
            "export",
            json!({"export": all, "checkpoint": c5_plain}),
            &unwitnessed,
            "ok",
        ),
        case(
            "an unwitnessed checkpoint where a witness is required",
            "export",
            json!({"export": all, "checkpoint": c5_plain}),
            &witnessed,
            "failed",
        ),
        case(
            "a checkpoint signed by another key than the one trusted",
            "export",
            json!({"export": all, "checkpoint": c5_note}),
            &json!({"keys": [other_vkey], "witness_keys": [wkey.to_string()], "quorum": 1}),
            "failed",
        ),
        case(
            "a cosignature of another checkpoint",
            "checkpoint",
            json!({"checkpoint": wrong.to_text()}),
            &witnessed,
            "failed",
        ),
        case(
            "the log's key outside its validity window",
            "checkpoint",
            json!({"checkpoint": c5_note}),
            &json!({"keys": [format!("{log_vkey} 2000-01-01T00:00:00Z 2001-01-01T00:00:00Z")], "witness_keys": [wkey.to_string()], "quorum": 1}),
            "failed",
        ),
        case(
            "a witnessed checkpoint alone",
            "checkpoint",
            json!({"checkpoint": c5_note}),
            &witnessed,
            "ok",
        ),
        case(
            "a digest view whose position is not its checkpoint's",
            "export",
            json!({"export": all, "checkpoint": serde_json::to_string(&c5_view).unwrap()}),
            &witnessed,
            "failed",
        ),
        case(
            "the type attribute changed at 4",
            "export",
            json!({"export": lines.iter().enumerate().map(|(i, l)| {
                let l = if i == 3 { l.replacen("DoseAdministered.v2\"", "DoseAdministered.v1\"", 1) } else { l.clone() };
                l + "\n"
            }).collect::<String>()}),
            &unwitnessed,
            "broken at 4",
        ),
        case(
            "the first event's data changed, its hash kept",
            "export",
            json!({"export": changed(&lines, &|e| e[0].data = e[0].data.replace("lyon-dt", "lyon-du"), None)}),
            &unwitnessed,
            "broken at 1",
        ),
        case(
            "the first event rewritten and the chain recomputed, against a checkpoint",
            "export",
            json!({"export": changed(&lines, &|e| e[0].data = e[0].data.replace("lyon-dt", "lyon-du"), Some(0)), "checkpoint": c5_note}),
            &witnessed,
            "broken at 1",
        ),
        case(
            "event 5 rewritten and the chain recomputed, against the checkpoint of 5",
            "export",
            json!({"export": changed(&lines, &|e| e[4].data = e[4].data.replace("FF2832", "FF2833"), Some(4)), "checkpoint": c5_note}),
            &witnessed,
            "broken at 5",
        ),
        case(
            "a commit time set back at 6, the chain recomputed",
            "export",
            json!({"export": changed(&lines, &|e| e[5].recorded_at = e[4].recorded_at.replace("2021", "2020"), Some(5))}),
            &unwitnessed,
            "broken at 6",
        ),
        case(
            "event 6 backdated before the checkpoint of 5 was witnessed",
            "export",
            json!({"export": changed(&lines, &|e| { let t = e[4].recorded_at.clone(); for x in &mut e[5..] { x.recorded_at = t.clone(); } }, Some(5)), "checkpoint": c5_note}),
            &witnessed,
            "broken at 6",
        ),
        case(
            "an inclusion proof against a witnessed checkpoint",
            "proof",
            json!({"proof": proof}),
            &witnessed,
            "ok",
        ),
        case(
            "an inclusion proof on the auditor's own checkpoint",
            "proof",
            json!({"proof": proof, "trusted": c5_note}),
            &witnessed,
            "ok",
        ),
        case(
            "an inclusion proof on another tree than the auditor's checkpoint",
            "proof",
            json!({"proof": proof, "trusted": serde_json::to_string(&signed(4)).unwrap()}),
            &unwitnessed,
            "failed",
        ),
        case(
            "an inclusion proof whose checkpoint's root is not the auditor's",
            "proof",
            json!({"proof": proof, "trusted": serde_json::to_string(&other_root).unwrap()}),
            &unwitnessed,
            "failed",
        ),
    ];
    let v = json!({
        "description": "Cases both verifiers (campaign-ledger audit, examples/verify.py) must agree on: each gives the files checked (an export, a checkpoint as a signed note or a digest view, a proof, the auditor's own checkpoint), what is trusted (verifier keys, optionally with a validity window; witnesses' cosigner keys; a quorum), and the verdict: ok, failed, or broken at a position. Signed with TEST keys whose seeds are public.",
        "cases": cases,
    });
    std::fs::write(FILE, serde_json::to_string_pretty(&v).unwrap() + "\n").unwrap();
}

/// The Rust verifier's verdict on a case (through the binary): `ok`, `failed`, `broken at N`
/// or `error`.
fn rust_verdict(case: &Value, dir: &Path) -> (String, String) {
    let files = &case["files"];
    let put = |name: &str, key: &str| -> Option<String> {
        files.get(key).map(|t| {
            std::fs::write(dir.join(name), t.as_str().unwrap()).unwrap();
            name.to_string()
        })
    };
    let t = &case["trust"];
    let lines = |v: &Value| {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|k| k.as_str().unwrap().to_string() + "\n")
                    .collect::<String>()
            })
            .unwrap_or_default()
    };
    std::fs::write(dir.join("keys.txt"), lines(&t["keys"])).unwrap();
    std::fs::write(dir.join("witnesses.txt"), lines(&t["witness_keys"])).unwrap();
    let mut trust = vec![
        "--keys".to_string(),
        "keys.txt".into(),
        "--witness-keys".into(),
        "witnesses.txt".into(),
    ];
    if let Some(q) = t["quorum"].as_u64() {
        trust.extend(["--quorum".into(), q.to_string()]);
    }
    let mut args: Vec<String> = Vec::new();
    match case["check"].as_str().unwrap() {
        "export" => {
            args.extend([
                "audit".into(),
                "verify".into(),
                "--export".into(),
                put("export.jsonl", "export").unwrap(),
            ]);
            if let Some(c) = put("checkpoint.txt", "checkpoint") {
                args.extend(["--digest".into(), c]);
                args.extend(trust);
            }
        }
        "proof" => {
            args.extend([
                "audit".into(),
                "check-proof".into(),
                put("proof.json", "proof").unwrap(),
            ]);
            if let Some(t) = put("trusted.txt", "trusted") {
                args.extend(["--trusted".into(), t]);
            }
            args.extend(trust);
        }
        _ => {
            let _ = std::fs::remove_dir_all(dir.join("state"));
            args.extend([
                "audit".into(),
                "follow".into(),
                "--checkpoint".into(),
                put("checkpoint.txt", "checkpoint").unwrap(),
                "--state".into(),
                "state".into(),
            ]);
            args.extend(trust);
        }
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = support::run(dir, &refs);
    let out = format!("{}{}", support::stdout(&o), support::stderr(&o));
    let verdict = match o.status.code() {
        Some(0) => "ok".to_string(),
        Some(1) => match support::stdout(&o).split("BROKEN at position ").nth(1) {
            Some(rest) => format!("broken at {}", rest.split(':').next().unwrap()),
            None => "failed".into(),
        },
        _ => "error".into(),
    };
    (verdict, out)
}

#[test]
fn both_verifiers_give_every_case_its_verdict() {
    if std::env::var_os("WRITE_VECTORS").is_some() {
        write_cases();
    }
    let v: Value = serde_json::from_str(&std::fs::read_to_string(FILE).unwrap()).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 20, "{}", cases.len());
    assert!(cases.iter().any(|c| c["expect"] == "ok") && cases.iter().any(|c| c["expect"] != "ok"));
    let dir = tempfile::tempdir().unwrap();
    let mut wrong = Vec::new();
    for case in cases {
        let (got, out) = rust_verdict(case, dir.path());
        if got != case["expect"].as_str().unwrap() {
            wrong.push(format!(
                "{}: expected {}, got {got}: {out}",
                case["name"], case["expect"]
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "the Rust verifier disagrees:\n{}",
        wrong.join("\n")
    );
    let o = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/verify.py"))
        .args(["cases", FILE])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "the Python verifier disagrees: {}{}",
        support::stdout(&o),
        support::stderr(&o)
    );
    assert_eq!(support::stdout(&o).lines().count(), cases.len());
    let _ = SignedDigest::from_checkpoint;
}

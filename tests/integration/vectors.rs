//! The test vectors in `schemas/test-vectors.json`, for verifiers written in other languages:
//! a small ledger of seven commands (a site, doses with sealed person refs, a survey answer, a
//! ticket issued and redeemed, a reversal) as export lines, their chain hashes, their Merkle leaves,
//! the tree heads of every size, inclusion and consistency paths, a signed digest and two proof
//! documents. This test recomputes all of it from the lines with the library's own functions.
//!
//! `WRITE_VECTORS=1 cargo test --test vectors` writes the file again (from a fresh ledger, signed
//! with the fixed test key below); the committed file is what verifiers rely on.

use crate::support;

use campaign_ledger::audit::proofs;
use campaign_ledger::audit::tree::{digest_at, prove_consistency, prove_inclusion};
use campaign_ledger::audit::{ExportOptions, LedgerKey, SignedDigest};
use campaign_ledger::envelope::chain::chain_hash;
use campaign_ledger::envelope::cloudevents::decode_export;
use campaign_ledger::envelope::merkle::{self, leaf_hash, MemoryTree};
use campaign_ledger::store::GENESIS_HASH;
use serde_json::{json, Value};

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/test-vectors.json");
/// A key for test vectors only (its seed is public: it proves nothing about a real ledger).
const TEST_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const EVENTS: u64 = 7;

fn hex32(v: &Value) -> [u8; 32] {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

fn write_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // One command of most kinds, with a correlation id, sealed person refs and a reversal.
    let c = |n: u32| format!("0193a000-0000-7000-8000-{n:012}");
    let commands = [
        json!({"command_id": c(1), "correlation_id": "test-vectors", "type": "AuthoriseSite", "directorate": "limoges", "site": "limoges-dt", "site_kind": "dt_premises", "authorised_on": "2021-08-23"}),
        json!({"command_id": c(2), "type": "AdministerDose", "person_ref": "p-vector-0001", "age_band": "18-29", "recipient": "user", "directorate": "limoges", "site": "limoges-dt", "product": "comirnaty", "lot": "FF2832", "dose": "first", "administered_at": "2021-09-08T16:25:00+02:00"}),
        json!({"command_id": c(3), "type": "AnswerCoverageSurvey", "survey_id": "dna-summer-2021", "structure_id": "cada-dijon-2", "structure_type": "CADA", "directorate": "dijon", "as_of": "2021-09-10", "residents": 88, "residents_with_one_dose": 26, "residents_fully_vaccinated": 21}),
        json!({"command_id": c(4), "type": "IssueTicket", "ticket_id": "lyon-t9001", "person_ref": "p-vector-0002", "directorate": "lyon", "partner_centre": "cv-lyon-gerland", "issued_at": "2021-09-20T11:00:00+02:00", "valid_until": "2021-10-20"}),
        json!({"command_id": c(5), "type": "RedeemTicket", "ticket_id": "lyon-t9001", "redeemed_at": "2021-09-29T14:00:00+02:00", "dose": "first"}),
        json!({"command_id": c(6), "type": "AdministerDose", "person_ref": "p-vector-0001", "age_band": "18-29", "recipient": "user", "directorate": "limoges", "site": "limoges-dt", "product": "comirnaty", "lot": "FF2832", "dose": "second", "administered_at": "2021-10-13T10:05:00+02:00"}),
        json!({"command_id": c(7), "type": "ReverseDoseEntry", "reverses": c(6), "reason": "entered_in_error"}),
    ];
    let text: String = commands.iter().map(|c| c.to_string() + "\n").collect();
    std::fs::write(d.join("vectors.jsonl"), text).unwrap();
    let o = support::run(
        d,
        &[
            "submit",
            "--clock",
            "business",
            "vectors.jsonl",
            "--format",
            "json",
        ],
    );
    assert!(
        o.status.success(),
        "{}{}",
        support::stdout(&o),
        support::stderr(&o)
    );
    assert_eq!(
        support::stdout(&o).matches("\"accepted\"").count(),
        7,
        "{}",
        support::stdout(&o)
    );
    std::fs::write(d.join("test.key"), TEST_SEED).unwrap();
    let key = LedgerKey::load(&d.join("test.key")).unwrap();
    let store = support::sqlite_store_at(&support::store_file(d));
    let s = store.as_ref();
    let mut out = Vec::new();
    let opts = ExportOptions {
        from: Some(1),
        to: Some(EVENTS),
        since: None,
    };
    campaign_ledger::audit::export(s, &opts, &mut out).unwrap();
    let lines: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let events = s.read_all(0, EVENTS as usize).unwrap();
    let mut tree = MemoryTree::default();
    let mut roots = serde_json::Map::new();
    for e in &events {
        tree.push(&e.hash);
        roots.insert(e.position.to_string(), json!(hex::encode(tree.root())));
    }
    let inclusion: Vec<Value> = [(0, 1), (2, 5), (4, 7), (6, 7)]
        .iter()
        .map(|&(i, n)| {
            let p = prove_inclusion(s, i + 1, n).unwrap();
            json!({"leaf_index": i, "tree_size": n, "audit_path": p.audit_path})
        })
        .collect();
    let consistency: Vec<Value> = [(1, 7), (3, 7), (4, 7), (6, 7)]
        .iter()
        .map(|&(m, n)| {
            let p = prove_consistency(s, m, n).unwrap();
            json!({"first": m, "second": n, "consistency_path": p.consistency_path})
        })
        .collect();
    let digest = |n| key.sign(digest_at(s, n).unwrap());
    let inclusion_proof = proofs::inclusion_document(s, 5, digest(EVENTS)).unwrap();
    let consistency_proof = proofs::consistency_document(s, digest(3), digest(EVENTS)).unwrap();
    let ledger_id = hex::encode(events[0].hash);
    let v = json!({
        "description": "campaign-ledger test vectors: a ledger of seven commands (a site, doses with sealed person refs, a survey answer, a ticket issued and redeemed, a reversal) as export lines, with their chain hashes (prev_hash, hash), Merkle leaf hashes, the RFC 9162 tree head of every size, inclusion and consistency paths, the head as a checkpoint (C2SP tlog-checkpoint signed note) signed with a TEST key (its seed is public; test_verifier_key is its verifier key, test_public_key the raw key), the same as a digest of format 2 (a view of the checkpoint) and of format 1 (older files), and two proof documents that `campaign-ledger audit check-proof` and examples/verify.py accept. The README's 'What exactly is hashed' section defines every byte.",
        "test_public_key": key.public_hex(),
        "test_verifier_key": key.verifier(&ledger_id).to_string(),
        "checkpoint": digest(EVENTS).checkpoint,
        "digest_v1": key.sign_v1(digest_at(s, EVENTS).unwrap()),
        "events": lines,
        "chain": events.iter().map(|e| json!({"position": e.position, "prev_hash": hex::encode(e.prev_hash), "hash": hex::encode(e.hash)})).collect::<Vec<_>>(),
        "leaf_hashes": events.iter().map(|e| hex::encode(leaf_hash(&e.hash))).collect::<Vec<_>>(),
        "roots": roots,
        "empty_root": hex::encode(merkle::empty_root()),
        "inclusion": inclusion,
        "consistency": consistency,
        "digest": digest(EVENTS),
        "inclusion_proof": inclusion_proof,
        "consistency_proof": consistency_proof,
    });
    std::fs::write(FILE, serde_json::to_string_pretty(&v).unwrap() + "\n").unwrap();
}

#[test]
fn the_committed_vectors_are_what_the_ledger_computes() {
    if std::env::var_os("WRITE_VECTORS").is_some() {
        write_vectors();
    }
    let v: Value = serde_json::from_str(&std::fs::read_to_string(FILE).unwrap()).unwrap();
    // The chain, from the lines alone.
    let mut prev = GENESIS_HASH;
    let mut tree = MemoryTree::default();
    for (i, line) in v["events"].as_array().unwrap().iter().enumerate() {
        let (e, _) = decode_export(line.as_str().unwrap().as_bytes()).unwrap();
        let c = &v["chain"][i];
        assert_eq!(e.position, c["position"].as_u64().unwrap());
        assert_eq!(e.prev_hash, prev, "position {}", e.position);
        assert_eq!(e.prev_hash, hex32(&c["prev_hash"]));
        assert_eq!(
            chain_hash(&prev, &e.as_ref()),
            e.hash,
            "position {}",
            e.position
        );
        assert_eq!(e.hash, hex32(&c["hash"]));
        assert_eq!(leaf_hash(&e.hash), hex32(&v["leaf_hashes"][i]));
        prev = e.hash;
        tree.push(&e.hash);
        assert_eq!(tree.root(), hex32(&v["roots"][e.position.to_string()]));
    }
    assert_eq!(tree.size(), EVENTS);
    assert_eq!(merkle::empty_root(), hex32(&v["empty_root"]));
    // The paths, against the roots of their sizes.
    let root = |n: u64| hex32(&v["roots"][n.to_string()]);
    let lookup = |ids: &[merkle::NodeId]| -> Result<Vec<[u8; 32]>, ()> {
        Ok(ids.iter().map(|id| tree.node(*id).unwrap()).collect())
    };
    for p in v["inclusion"].as_array().unwrap() {
        let (i, n) = (
            p["leaf_index"].as_u64().unwrap(),
            p["tree_size"].as_u64().unwrap(),
        );
        let path: Vec<[u8; 32]> = p["audit_path"]
            .as_array()
            .unwrap()
            .iter()
            .map(hex32)
            .collect();
        assert_eq!(
            path,
            merkle::prove(&merkle::inclusion_plan(i, n), lookup).unwrap()
        );
        let leaf = hex32(&v["leaf_hashes"][i as usize]);
        assert!(
            merkle::verify_inclusion(i, n, &leaf, &path, &root(n)),
            "{p}"
        );
    }
    for p in v["consistency"].as_array().unwrap() {
        let (m, n) = (p["first"].as_u64().unwrap(), p["second"].as_u64().unwrap());
        let path: Vec<[u8; 32]> = p["consistency_path"]
            .as_array()
            .unwrap()
            .iter()
            .map(hex32)
            .collect();
        assert_eq!(
            path,
            merkle::prove(&merkle::consistency_plan(m, n), lookup).unwrap()
        );
        assert!(
            merkle::verify_consistency(m, n, &root(m), &root(n), &path),
            "{p}"
        );
    }
    // The checkpoint and both digests: signed by the test key, stating the tree of every
    // event above, checked against the verifier key and against the raw key.
    let ledger = v["chain"][0]["hash"].as_str().unwrap();
    let verifier = v["test_verifier_key"].as_str().unwrap();
    assert!(
        verifier.starts_with(&format!("campaign-ledger/{ledger}+")),
        "{verifier}"
    );
    let trust = campaign_ledger::audit::Trust::keys_only(
        campaign_ledger::audit::KeySet::one_given(verifier).unwrap(),
    );
    let raw = campaign_ledger::audit::Trust::keys_only(
        campaign_ledger::audit::KeySet::one_given(v["test_public_key"].as_str().unwrap()).unwrap(),
    );
    let note = v["checkpoint"].as_str().unwrap();
    campaign_ledger::audit::check_checkpoint(note, &trust).unwrap();
    for (name, t) in [("digest", &trust), ("digest", &raw), ("digest_v1", &raw)] {
        let d: SignedDigest = serde_json::from_value(v[name].clone()).unwrap();
        d.check(t).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(d.tree_size, Some(EVENTS));
        assert_eq!(
            d.root_hash.as_deref(),
            Some(hex::encode(tree.root()).as_str())
        );
        assert_eq!(d.ledger.as_deref(), Some(ledger));
    }
    assert_eq!(v["digest"]["checkpoint"].as_str(), Some(note));
    assert_eq!(v["digest"]["format"], "campaign-ledger-digest/2");
    assert_eq!(v["digest_v1"]["format"], "campaign-ledger-digest/1");
    // The proof documents check.
    for doc in ["inclusion_proof", "consistency_proof"] {
        proofs::check(&v[doc].to_string(), &trust, None).unwrap_or_else(|e| panic!("{doc}: {e}"));
    }
}

//! The audit endpoints as an auditor reads them: the served digest, signed with the ledger's
//! key, and what changed since the evening of 17 December 2021.

use crate::support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use campaign_ledger::http::router;
use serde_json::Value;
use support::{rt, scenario_get as get};
use tower::ServiceExt;

fn state() -> campaign_ledger::http::AppState {
    support::scenario_state()
}

#[test]
fn the_served_digest_is_signed_with_the_ledgers_key_and_checks_out() {
    let dir = tempfile::tempdir().unwrap();
    let key = campaign_ledger::audit::LedgerKey::generate(&dir.path().join("signing.key")).unwrap();
    let public = key.public_hex();
    let app = router(state().with_signing_key(key));
    let res = rt()
        .block_on(
            app.oneshot(
                Request::get("/v1/audit/digest")
                    .body(Body::empty())
                    .unwrap(),
            ),
        )
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let bytes = rt()
        .block_on(axum::body::to_bytes(res.into_body(), usize::MAX))
        .unwrap();
    let d: campaign_ledger::audit::SignedDigest = serde_json::from_slice(&bytes).unwrap();
    // A view of a signed checkpoint, which the ledger's key checks (unwitnessed: --quorum 0).
    assert!(d.checkpoint.is_some(), "{d:?}");
    let trust = campaign_ledger::audit::Trust::keys_only(
        campaign_ledger::audit::KeySet::one_given(&public).unwrap(),
    );
    d.check(&trust).unwrap();
    let mut forged = d.clone();
    forged.position -= 1;
    assert!(forged.check(&trust).is_err());
}

#[test]
fn what_changed_since_the_evening_of_17_december_is_the_late_records_and_reversals() {
    // The published line was read that evening: 1,420 doses known, 1,428 counted later.
    // The window ends before the tests' own commands (recorded today, in the shared store).
    let (s, c) = get(
        "/v1/audit/changes?known_since=2021-12-17T18:00:00%2B01:00&known_until=2023-01-01T00:00:00%2B01:00",
    );
    assert_eq!(s, StatusCode::OK, "{c}");
    let entries = c["entries"].as_array().unwrap();
    assert!(!entries.is_empty(), "{c}");
    assert!(entries.iter().any(|e| e["kind"] == "reversal"), "{c}");
    assert!(entries
        .iter()
        .all(|e| e["business_date"].as_str().unwrap() < "2021-12-18"));
    // Summed over the dates they touch, the figures moved by what the reports say: the
    // national line known that evening and the one known now.
    let delta: i64 = c["figures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["directorate"].is_string())
        .map(|f| {
            f["after"]["total"].as_i64().unwrap_or(0) - f["before"]["total"].as_i64().unwrap_or(0)
        })
        .sum();
    let total = |q: &str| {
        let (_, r) = get(&format!(
            "/v1/projections/doses_by_directorate?as_of=2021-12-17{q}"
        ));
        r["totals"]["total"].as_i64().unwrap()
    };
    assert_eq!(
        total("&known_at=2023-01-01T00:00:00%2B01:00")
            - total("&known_at=2021-12-17T18:00:00%2B01:00"),
        delta + changes_after_the_17th(&c),
        "{c}"
    );
    let (s, e) = get("/v1/audit/changes");
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    let (s, e) = get("/v1/audit/changes?known_since=yesterday");
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_known_at"))
    );
    // The command line says the same.
    let o = support::run(
        support::scenario_dir(),
        &[
            "audit",
            "changes",
            "--known-since",
            "2021-12-17T18:00:00+01:00",
            "--known-until",
            "2023-01-01T00:00:00+01:00",
            "--format",
            "json",
        ],
    );
    let cli: Value = serde_json::from_str(&support::stdout(&o)).unwrap();
    assert_eq!(cli["entries"], c["entries"]);
}

/// Figures of dates after 17 December moved too (corrections recorded in January), but they
/// are outside the 17 December report: only dates up to the 17th count here.
fn changes_after_the_17th(c: &Value) -> i64 {
    -c["figures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["directorate"].is_string() && f["as_of"].as_str().unwrap() > "2021-12-17")
        .map(|f| {
            f["after"]["total"].as_i64().unwrap_or(0) - f["before"]["total"].as_i64().unwrap_or(0)
        })
        .sum::<i64>()
}

//! Strict inputs: a query parameter a route does not take is a 400 naming it and the accepted
//! ones (never silently ignored), `erase-person` checks the ref as commands do and says what to
//! do for a person recorded before encryption, and `GET /v1/projections` shows no server path.

use crate::support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use campaign_ledger::http::router;
use serde_json::Value;
use support::{run, stderr, stdout};

fn get(state: campaign_ledger::http::AppState, uri: &str) -> (StatusCode, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
    support::oneshot(&rt, router(state), req)
}

#[test]
fn an_unknown_query_parameter_is_refused_naming_it_and_the_accepted_ones() {
    for (uri, bad, accepted) in [
        ("/v1/events?aftr=5", "aftr", "after, limit"),
        (
            "/v1/audit/access-log?person_ref=p-1",
            "person_ref",
            "after, limit, person",
        ),
        (
            "/v1/projections/doses_by_directorate?asof=2021-12-17",
            "asof",
            "as_of, known_at",
        ),
        ("/v1/findings?dt=lyon", "dt", "directorate, as_of, known_at"),
        ("/v1/whoami?x=1", "x", "takes no query parameters"),
        ("/healthz?verbose", "verbose", "takes no query parameters"),
    ] {
        let (s, v) = get(support::scenario_state(), uri);
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}: {v}");
        assert_eq!(v["error"]["code"], "unknown_query_parameter", "{uri}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(&format!("\"{bad}\"")) && msg.contains(accepted),
            "{uri}: {msg}"
        );
    }
    // What the document lists still works, and the dashboard's page keeps its own query.
    for uri in [
        "/v1/events?after=5&limit=2",
        "/v1/projections/doses_by_directorate?as_of=2021-12-17",
        "/v1/findings?directorate=lyon&as_of=2021-12-17",
    ] {
        let (s, v) = get(support::scenario_state(), uri);
        assert_eq!(s, StatusCode::OK, "{uri}: {v}");
    }
    let (s, _) = get(
        support::scenario_state(),
        "/dashboard/?as_of=2021-12-17&lang=en",
    );
    assert_eq!(s, StatusCode::OK);
    // The document says so for every API operation.
    let doc = campaign_ledger::http::openapi::document();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/v1/") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let d = op["responses"]["400"]["description"].as_str().unwrap_or("");
            assert!(
                d.contains("unknown_query_parameter"),
                "{method} {path}: {d}"
            );
        }
    }
}

#[test]
fn projections_are_listed_without_server_paths() {
    let dir = tempfile::tempdir().unwrap();
    let defs = dir.path().join("my-projections");
    std::fs::create_dir_all(&defs).unwrap();
    std::fs::write(
        defs.join("firsts.toml"),
        "name = \"firsts\"\n[[source]]\nevent = \"DoseAdministered\"\n[[column]]\nname = \"n\"\nagg = \"count\"\n",
    )
    .unwrap();
    let d = support::scenario_dir();
    let store = support::store_file(d);
    let o = run(
        dir.path(),
        &[
            "--store",
            &format!("sqlite:{}", store.display()),
            "--projections",
            defs.to_str().unwrap(),
            "projections",
            "list",
            "--format",
            "json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let list: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let origins: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["origin"].as_str().unwrap())
        .collect();
    assert!(origins.contains(&"firsts.toml"), "{origins:?}");
    assert!(
        origins
            .iter()
            .all(|o| !o.contains(dir.path().to_str().unwrap())),
        "{origins:?}"
    );
}

#[test]
fn erase_person_checks_the_ref_and_explains_what_to_do_for_a_ref_written_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["erase-person", "p 1; DROP"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("\"person_ref\" must be 1 to 128 characters"),
        "{}",
        stderr(&o)
    );
    // A log written before encryption (the v1 fixture names people in clear).
    let text = support::v1_fixture();
    let person = text
        .lines()
        .find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            v["data"]["person_ref"].as_str().map(str::to_string)
        })
        .unwrap();
    std::fs::write(dir.path().join("v1.jsonl"), &text).unwrap();
    assert!(run(dir.path(), &["import", "v1.jsonl"]).status.success());
    let o = run(dir.path(), &["erase-person", &person]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("What to do instead"), "{}", stderr(&o));
}

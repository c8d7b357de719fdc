//! Who may do what over HTTP: the whole role × endpoint matrix through the router (`oneshot`),
//! on a real SQLite store holding the OFII 2021 scenario, with tokens loaded as `serve --auth`
//! loads them: missing, malformed, unknown and expired tokens, each role, another
//! directorate's data, small-count suppression, and the actor recorded in the envelope.

use crate::support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use campaign_ledger::access::{hash_token, TokenEntry, TokenFile};
use campaign_ledger::domain::Reference;
use campaign_ledger::http::{router, AppState, Auth, Role};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::OnceLock;

const AGENT: &str = "t-agent-lyon";
const PARTNER: &str = "t-partner-gerland";
const SUPERVISOR: &str = "t-supervisor-lyon-rennes";
const AUDITOR: &str = "t-auditor";
const ADMIN: &str = "t-admin";
const EXPIRED: &str = "t-expired-auditor";

fn auth() -> Auth {
    let entry = |id: &str, role, dirs: &[&str], centres: &[&str], token: &str| TokenEntry {
        id: id.into(),
        role,
        directorates: dirs.iter().map(|s| s.to_string()).collect(),
        partner_centres: centres.iter().map(|s| s.to_string()).collect(),
        sha256: hash_token(token),
        expires_at: None,
        revoked_at: None,
        previous: vec![],
    };
    let mut expired = entry("old-auditor", Role::Auditor, &[], &[], EXPIRED);
    expired.expires_at = Some("2021-12-31T23:59:59+01:00".parse().unwrap());
    let directorates = Reference::builtin();
    Auth::from_file(
        TokenFile {
            tokens: vec![
                entry("agent-lyon", Role::Agent, &["lyon"], &[], AGENT),
                entry(
                    "partner-gerland",
                    Role::Partner,
                    &[],
                    &["cv-lyon-gerland"],
                    PARTNER,
                ),
                entry(
                    "supervisor-lyon-rennes",
                    Role::Supervisor,
                    &["lyon", "rennes"],
                    &[],
                    SUPERVISOR,
                ),
                entry("auditor", Role::Auditor, &[], &[], AUDITOR),
                entry("admin", Role::Admin, &[], &[], ADMIN),
                expired,
            ],
        },
        &directorates,
    )
    .unwrap()
}

fn state() -> AppState {
    support::scenario_state().with_auth(auth())
}

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// One request with an optional raw Authorization header; (status, JSON or text body).
fn call_with(
    method: &str,
    uri: &str,
    authorization: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let req = req.body(Body::from(body.to_string())).unwrap();
    let app = router(state());
    support::oneshot(rt(), app, req)
}

fn call(method: &str, uri: &str, token: Option<&str>, body: &str) -> (StatusCode, Value) {
    call_with(
        method,
        uri,
        token.map(|t| format!("Bearer {t}")).as_deref(),
        body,
    )
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// An event of the scenario matching `pred` (read as the auditor).
fn find_event(pred: impl Fn(&Value, &Value) -> bool) -> (Value, Value) {
    let mut after = 0;
    loop {
        let (s, v) = call(
            "GET",
            &format!("/v1/events?after={after}&limit=1000"),
            Some(AUDITOR),
            "",
        );
        assert_eq!(s, StatusCode::OK, "{v}");
        let events = v.as_array().unwrap();
        assert!(!events.is_empty(), "no matching event in the scenario");
        for e in events {
            let data = e["data"].clone();
            if pred(e, &data) {
                return (e.clone(), data);
            }
        }
        after = events.last().unwrap()["position"].as_u64().unwrap();
    }
}

fn uuid() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn open_session(directorate: &str, site: &str) -> String {
    json!({"type": "OpenSession", "command_id": uuid(), "session_id": format!("S-roles-{}", uuid()),
           "directorate": directorate, "site": site, "opened_at": "2021-12-20T09:00:00+01:00"})
    .to_string()
}

#[test]
fn requests_without_a_valid_token_get_401_naming_the_reason() {
    for uri in [
        "/v1/projections/doses_by_directorate",
        "/v1/events",
        "/v1/audit/digest",
        "/metrics",
        "/v1/whoami",
    ] {
        for (header, expected) in [
            (None, "missing_token"),
            (Some("Basic dXNlcjpwYXNz"), "malformed_token"),
            (Some("Bearer not-a-token"), "unknown_token"),
            (Some(&*format!("Bearer {EXPIRED}")), "expired_token"),
        ] {
            let (s, v) = call_with("GET", uri, header, "");
            assert_eq!(
                (s, code(&v)),
                (StatusCode::UNAUTHORIZED, expected),
                "{uri} {header:?}: {v}"
            );
        }
    }
    let (s, v) = call(
        "POST",
        "/v1/commands",
        None,
        &open_session("lyon", "lyon-dt"),
    );
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "missing_token"));
    // What needs no token: health, the API's description, the dashboard's page.
    for uri in ["/healthz", "/readyz", "/v1/openapi.json", "/dashboard/"] {
        assert_eq!(call("GET", uri, None, "").0, StatusCode::OK, "{uri}");
    }
}

#[test]
fn the_role_endpoint_matrix() {
    use StatusCode as S;
    const OK: S = S::OK;
    const NO: S = S::FORBIDDEN;
    const NF: S = S::NOT_FOUND; // another directorate's stream: the same answer as no stream
    let (_, lyon_ticket) = find_event(|e, d| {
        e["event_type"] == "TicketIssued" && d["partner_centre"] == "cv-lyon-gerland"
    });
    let (_, marseille_ticket) =
        find_event(|e, d| e["event_type"] == "TicketIssued" && d["directorate"] == "marseille");
    let (lyon_dose, _) =
        find_event(|e, d| e["event_type"] == "DoseAdministered" && d["directorate"] == "lyon");
    let (marseille_dose, _) =
        find_event(|e, d| e["event_type"] == "DoseAdministered" && d["directorate"] == "marseille");
    let stream_uri = |e: &Value| {
        format!(
            "/v1/streams/{}",
            e["stream_id"].as_str().unwrap().replace('/', "%2F")
        )
    };
    let redeem = |ticket: &Value| {
        json!({"type": "RedeemTicket", "command_id": uuid(), "ticket_id": ticket["ticket_id"],
               "redeemed_at": "2021-12-20T10:00:00+01:00", "dose": "first"})
        .to_string()
    };
    let authorise = || {
        json!({"type": "AuthoriseSite", "command_id": uuid(), "directorate": "lyon",
               "site": format!("lyon-roles-{}", uuid()), "site_kind": "mobile", "authorised_on": "2021-12-01"})
        .to_string()
    };
    let known_at = "/v1/projections/doses_by_directorate?as_of=2021-12-17&known_at=2021-12-17T18:00:00%2B01:00";
    let no_ticket = json!({"ticket_id": "no-such-ticket"});
    // (method, uri, body, [agent, partner, supervisor, auditor, admin])
    type Row = (&'static str, String, Box<dyn Fn() -> String>, [S; 5]);
    let rows: Vec<Row> = vec![
        (
            "GET",
            "/v1/projections/doses_by_directorate?as_of=2021-12-17".into(),
            Box::new(String::new),
            [NO, NO, OK, OK, NO],
        ),
        (
            "GET",
            "/v1/projections/doses_by_day".into(),
            Box::new(String::new),
            [NO, NO, NO, OK, NO],
        ),
        (
            "GET",
            known_at.into(),
            Box::new(String::new),
            [NO, NO, NO, OK, NO],
        ),
        (
            "GET",
            "/v1/projections".into(),
            Box::new(String::new),
            [NO, NO, OK, OK, NO],
        ),
        (
            "GET",
            "/v1/projections/doses_by_directorate/live".into(),
            Box::new(String::new),
            [NO, NO, OK, OK, NO],
        ),
        (
            "GET",
            "/v1/projections/doses_by_day/live".into(),
            Box::new(String::new),
            [NO, NO, NO, OK, NO],
        ),
        (
            "GET",
            "/v1/events?limit=10".into(),
            Box::new(String::new),
            [NO, NO, OK, OK, NO],
        ),
        (
            "GET",
            "/v1/events/live".into(),
            Box::new(String::new),
            [NO, NO, OK, OK, NO],
        ),
        (
            "GET",
            stream_uri(&lyon_dose),
            Box::new(String::new),
            [NO, NO, OK, OK, NO],
        ),
        (
            "GET",
            stream_uri(&marseille_dose),
            Box::new(String::new),
            [NO, NO, NF, OK, NO],
        ),
        (
            "GET",
            "/v1/audit/digest".into(),
            Box::new(String::new),
            [NO, NO, NO, OK, NO],
        ),
        (
            "GET",
            "/metrics".into(),
            Box::new(String::new),
            [NO, NO, NO, OK, OK],
        ),
        (
            "GET",
            "/v1/whoami".into(),
            Box::new(String::new),
            [OK, OK, OK, OK, OK],
        ),
        (
            "GET",
            "/v1/reference".into(),
            Box::new(String::new),
            [OK, OK, OK, OK, OK],
        ),
        (
            "POST",
            "/v1/projections/doses_by_day/rebuild".into(),
            Box::new(String::new),
            [NO, NO, NO, NO, OK],
        ),
        (
            "POST",
            "/v1/commands".into(),
            Box::new(|| open_session("lyon", "lyon-dt")),
            [OK, NO, NO, NO, NO],
        ),
        (
            "POST",
            "/v1/commands".into(),
            Box::new(|| open_session("marseille", "marseille-dt")),
            [NO, NO, NO, NO, NO],
        ),
        (
            "POST",
            "/v1/commands".into(),
            Box::new(authorise),
            [NO, NO, NO, NO, OK],
        ),
        (
            "POST",
            "/v1/commands".into(),
            Box::new({
                let t = lyon_ticket.clone();
                move || redeem(&t)
            }),
            [OK, OK, NO, NO, NO],
        ),
        (
            "POST",
            "/v1/commands".into(),
            Box::new({
                let t = marseille_ticket.clone();
                move || redeem(&t)
            }),
            [NO, NO, NO, NO, NO],
        ),
        // Not yours and not there get the same answer: nothing learnt about other scopes.
        (
            "POST",
            "/v1/commands".into(),
            Box::new({
                let t = no_ticket.clone();
                move || redeem(&t)
            }),
            [NO, NO, NO, NO, NO],
        ),
    ];
    let tokens = [AGENT, PARTNER, SUPERVISOR, AUDITOR, ADMIN];
    let mut failures = Vec::new();
    for (method, uri, body, expected) in &rows {
        for (token, want) in tokens.iter().zip(expected) {
            let (got, v) = call(method, uri, Some(token), &body());
            if got != *want {
                failures.push(format!(
                    "{method} {uri} as {token}: {got}, expected {want}: {v}"
                ));
            } else if got == S::FORBIDDEN && code(&v) != "forbidden" {
                failures.push(format!("{method} {uri} as {token}: code {:?}", code(&v)));
            } else if *method == "POST" && uri == "/v1/commands" && got == OK {
                // Allowed commands are handled by the rules (accepted, or rejected as a
                // ticket already redeemed): never refused for the token.
                assert!(
                    v["outcome"] == "accepted" || v["outcome"] == "rejected",
                    "{v}"
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_supervisor_reads_its_directorates_only_and_sees_small_counts_suppressed() {
    let (s, all) = call(
        "GET",
        "/v1/projections/doses_by_directorate?as_of=2021-12-17",
        Some(AUDITOR),
        "",
    );
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        all["totals"]["total"], 1428,
        "the auditor sees the national figure"
    );
    let (s, mine) = call(
        "GET",
        "/v1/projections/doses_by_directorate?as_of=2021-12-17",
        Some(SUPERVISOR),
        "",
    );
    assert_eq!(s, StatusCode::OK, "{mine}");
    let dirs: BTreeSet<&str> = mine["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["directorate"].as_str().unwrap())
        .collect();
    assert_eq!(dirs, BTreeSet::from(["lyon", "rennes"]));
    let expected: i64 = all["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["directorate"] == "lyon" || r["directorate"] == "rennes")
        .map(|r| r["total"].as_i64().unwrap())
        .sum();
    assert_eq!(
        mine["totals"]["total"], expected,
        "totals are summed over the visible rows"
    );
    // Rennes' first sessions had fewer than five people: "<5" for the supervisor, the
    // figure for the auditor.
    let (_, sup) = call(
        "GET",
        "/v1/projections/session_attendance?as_of=2021-12-17",
        Some(SUPERVISOR),
        "",
    );
    let (_, aud) = call(
        "GET",
        "/v1/projections/session_attendance?as_of=2021-12-17",
        Some(AUDITOR),
        "",
    );
    assert_eq!(sup["suppressed"], true);
    let small: Vec<&Value> = aud["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["directorate"] == "rennes" && r["attendance"].as_i64().is_some_and(|n| n < 5))
        .collect();
    assert!(!small.is_empty(), "the scenario has a small Rennes session");
    for r in small {
        let shown = sup["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["session_id"] == r["session_id"])
            .expect("the supervisor sees Rennes sessions");
        assert_eq!(shown["attendance"], "<5", "{shown}");
    }
    assert!(aud.get("suppressed").is_none());
    // A total less the shown values would give the hidden one back: it is withheld too.
    assert!(sup["totals"]["attendance"].is_null(), "{}", sup["totals"]);
    assert!(aud["totals"]["attendance"].is_i64());
    // Events: only those naming Lyon or Rennes.
    let (s, events) = call("GET", "/v1/events?limit=200", Some(SUPERVISOR), "");
    assert_eq!(s, StatusCode::OK);
    let events = events.as_array().unwrap();
    assert_eq!(
        events.len(),
        200,
        "the filter scans on until the page is full"
    );
    for e in events {
        let d = &e["data"];
        assert!(
            d["directorate"] == "lyon" || d["directorate"] == "rennes",
            "{d}"
        );
    }
}

#[test]
fn the_actor_of_an_accepted_command_is_recorded_in_its_envelope() {
    let session_id = format!("S-actor-{}", uuid());
    let body = json!({"type": "OpenSession", "command_id": uuid(), "session_id": session_id,
        "directorate": "lyon", "site": "lyon-dt", "opened_at": "2021-12-21T09:00:00+01:00"});
    let (s, v) = call("POST", "/v1/commands", Some(AGENT), &body.to_string());
    assert_eq!(
        (s, v["outcome"].as_str()),
        (StatusCode::OK, Some("accepted")),
        "{v}"
    );
    let (s, events) = call(
        "GET",
        &format!("/v1/streams/session%2F{session_id}"),
        Some(AUDITOR),
        "",
    );
    assert_eq!(s, StatusCode::OK, "{events}");
    // The actor is an object, as the data is (not a string holding JSON).
    assert_eq!(
        events[0]["actor"],
        json!({"role": "agent", "directorate": "lyon", "agent_ref": "agent-lyon"})
    );
    // A request with one command the token may not send records nothing of it.
    let ok = open_session("lyon", "lyon-dt");
    let bad = open_session("marseille", "marseille-dt");
    let batch = format!("[{ok},{bad}]");
    let (s, v) = call("POST", "/v1/commands", Some(AGENT), &batch);
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("command 2"),
        "{v}"
    );
    let first: Value = serde_json::from_str(&ok).unwrap();
    let (_, again) = call("POST", "/v1/commands", Some(AGENT), &ok);
    assert_eq!(
        again["outcome"], "accepted",
        "the refused request recorded nothing: {again}"
    );
    assert_eq!(again["command_id"], first["command_id"]);
}

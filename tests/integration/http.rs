//! The HTTP API: every route and error through the router (`oneshot`), on a real SQLite store
//! holding the OFII 2021 scenario; and `serve` as a process on port 0.

use crate::support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use campaign_ledger::http::{router, AppState};
use serde_json::{json, Value};
use support::{error_code, rt, scenario_call as call, scenario_get as get};
use tower::ServiceExt;

fn state() -> AppState {
    support::scenario_state()
}

#[test]
fn projections_answer_as_of_and_known_at_and_name_what_is_wrong() {
    let (s, v) = get("/v1/projections/doses_by_directorate?as_of=2021-12-17");
    assert_eq!(s, StatusCode::OK, "{v}");
    let totals = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .fold((0, 0), |(t, f), r| {
            (
                t + r["total"].as_i64().unwrap(),
                f + r["first"].as_i64().unwrap(),
            )
        });
    assert_eq!(totals, (1428, 880));
    let (s, v) = get(
        "/v1/projections/doses_by_directorate?as_of=2021-12-17&known_at=2021-12-17T18:00:00%2B01:00",
    );
    assert_eq!(s, StatusCode::OK, "{v}");
    let known: i64 = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["total"].as_i64().unwrap())
        .sum();
    assert_eq!(known, 1420);
    let (s, v) = get("/v1/projections/nothing_of_that_name");
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::NOT_FOUND, "unknown_projection")
    );
    let (s, v) = get("/v1/projections/doses_by_directorate?as_of=17/12/2021");
    assert_eq!((s, error_code(&v)), (StatusCode::BAD_REQUEST, "bad_as_of"));
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("YYYY-MM-DD"));
    let (s, v) = get("/v1/projections/doses_by_directorate?known_at=yesterday");
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::BAD_REQUEST, "bad_known_at")
    );
}

fn session(id: &str, command_id: &str) -> Value {
    json!({"type": "OpenSession", "command_id": command_id, "session_id": id,
           "directorate": "lyon", "site": "lyon-dt", "opened_at": "2021-12-20T09:00:00+01:00"})
}

#[test]
fn commands_take_one_object_or_an_array_and_answer_with_the_submit_contract() {
    let id = uuid::Uuid::now_v7().to_string();
    let one = session(&format!("S-http-{id}"), &id);
    let (s, v) = call("POST", "/v1/commands", one.to_string());
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["outcome"], "accepted");
    assert_eq!(v["command_id"], id.as_str());
    // the same command again: a duplicate, nothing appended
    let (s, v) = call("POST", "/v1/commands", one.to_string());
    assert_eq!(
        (s, v["outcome"].as_str()),
        (StatusCode::OK, Some("duplicate"))
    );
    // an array: outcomes in order, rejections and invalid entries are outcomes too
    let second_dose_first = json!({"type": "AdministerDose", "command_id": uuid::Uuid::now_v7(),
        "person_ref": format!("p-http-{id}"), "age_band": "30-39", "recipient": "user",
        "directorate": "lyon", "site": "lyon-dt", "product": "comirnaty", "lot": "FF2832",
        "dose": "second", "administered_at": "2021-12-20T10:00:00+01:00"});
    let batch = json!([second_dose_first, {"type": "Nonsense"}, session(&format!("S-http2-{id}"), &uuid::Uuid::now_v7().to_string())]);
    let (s, v) = call("POST", "/v1/commands", batch.to_string());
    assert_eq!(s, StatusCode::OK, "{v}");
    let outcomes: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["rejected", "invalid", "accepted"]);
    assert_eq!(v[0]["error"]["code"], "no_first_dose");
    assert_eq!(v[2]["line"], 3);
}

#[test]
fn command_bodies_that_are_not_commands_or_too_many_get_400_and_oversized_ones_413() {
    let (s, v) = call("POST", "/v1/commands", "{not json");
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::BAD_REQUEST, "malformed_json")
    );
    let (s, v) = call("POST", "/v1/commands", "42");
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::BAD_REQUEST, "not_a_command")
    );
    // Every command invalid: 422, with the same outcomes saying what was wrong.
    let (s, v) = call("POST", "/v1/commands", "{}");
    assert_eq!(
        (s, v["outcome"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid")),
        "{v}"
    );
    let (s, v) = call("POST", "/v1/commands", "[{}, {\"type\": \"Nope\"}]");
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v.as_array().map(Vec::len), Some(2), "{v}");
    let big = format!("[{}]", vec!["{}"; 600_000].join(","));
    let (s, v) = call("POST", "/v1/commands", big);
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
    );
    let many = format!("[{}]", vec!["{}"; 1001].join(","));
    let (s, v) = call("POST", "/v1/commands", many);
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::BAD_REQUEST, "too_many_commands")
    );
}

#[test]
fn streams_events_digest_and_health_read_the_log() {
    let (s, v) = get("/v1/events?after=0&limit=3");
    assert_eq!(s, StatusCode::OK, "{v}");
    let events = v.as_array().unwrap();
    assert_eq!(
        events
            .iter()
            .map(|e| e["position"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let stream = events[0]["stream_id"].as_str().unwrap().to_string();
    let (s, v) = get(&format!("/v1/streams/{}", stream.replace('/', "%2F")));
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v[0]["stream_version"], 1);
    let (s, v) = get("/v1/streams/no-such-stream");
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::NOT_FOUND, "unknown_stream")
    );
    let (s, v) = get("/v1/events?after=minus-one");
    assert_eq!((s, error_code(&v)), (StatusCode::BAD_REQUEST, "bad_query"));
    let (s, v) = get("/v1/events?after=0&limit=1000");
    assert_eq!(
        (s, v.as_array().map(Vec::len)),
        (StatusCode::OK, Some(1000))
    );
    // Out of the documented range: refused, not clamped.
    let (s, v) = get("/v1/events?after=0&limit=1001");
    assert_eq!((s, error_code(&v)), (StatusCode::BAD_REQUEST, "bad_query"));
    let (s, v) = get("/v1/audit/digest");
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["position"].as_u64().unwrap() >= 2434);
    assert_eq!(v["hash"].as_str().unwrap().len(), 64);
    assert_eq!(get("/healthz").0, StatusCode::OK);
    let (s, v) = get("/readyz");
    assert_eq!((s, v["ready"].as_bool()), (StatusCode::OK, Some(true)));
    let (s, v) = get("/v2/anything");
    assert_eq!((s, error_code(&v)), (StatusCode::NOT_FOUND, "not_found"));
}

/// Starts the binary with `args` in `dir` (a `serve`); returns it and the address it printed.
fn sse(
    rt: &tokio::runtime::Runtime,
    uri: &str,
    last_event_id: Option<&str>,
) -> (
    StatusCode,
    tokio::sync::mpsc::UnboundedReceiver<(String, String, String)>,
) {
    use futures_util::StreamExt;
    let app = router(state());
    let mut req = Request::builder().method("GET").uri(uri);
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let req = req.body(Body::empty()).unwrap();
    let res = rt.block_on(app.oneshot(req)).unwrap();
    let status = res.status();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut body = res.into_body().into_data_stream();
    rt.spawn(async move {
        let mut buf = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                let field = |name: &str| {
                    frame
                        .lines()
                        .filter_map(|l| l.strip_prefix(&format!("{name}:")))
                        .map(str::trim_start)
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                if tx
                    .send((field("id"), field("event"), field("data")))
                    .is_err()
                {
                    return;
                }
            }
        }
    });
    (status, rx)
}

fn next_frame(
    rt: &tokio::runtime::Runtime,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, String, String)>,
) -> (String, String, String) {
    rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .expect("a frame within 10 s")
            .expect("the stream is open")
    })
}

#[test]
fn live_events_catch_up_then_follow_and_resume_from_last_event_id() {
    let rt = rt();
    let (s, mut rx) = sse(&rt, "/v1/events/live?after=2430", None);
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<u64> = (0..4)
        .map(|_| next_frame(&rt, &mut rx))
        .map(|(id, event, _)| {
            assert_eq!(event, "ledger-event");
            id.parse().unwrap()
        })
        .collect();
    assert_eq!(ids, [2431, 2432, 2433, 2434]);
    // a command accepted now arrives on the open stream, in order, without a gap
    let id = uuid::Uuid::now_v7().to_string();
    let (s, v) = call(
        "POST",
        "/v1/commands",
        session(&format!("S-live-{id}"), &id).to_string(),
    );
    assert_eq!(
        (s, v["outcome"].as_str()),
        (StatusCode::OK, Some("accepted"))
    );
    let mut expected = 2435;
    loop {
        let (pos, _, data) = next_frame(&rt, &mut rx);
        assert_eq!(pos.parse::<u64>().unwrap(), expected);
        expected += 1;
        let e: Value = serde_json::from_str(&data).unwrap();
        if e["command_id"] == id.as_str() {
            break;
        }
    }
    // a reconnecting browser sends Last-Event-ID: the stream resumes right after it
    let (_, mut again) = sse(&rt, "/v1/events/live?after=0", Some("2432"));
    assert_eq!(next_frame(&rt, &mut again).0, "2433");
    let (s, _) = sse(&rt, "/v1/events/live", Some("yesterday"));
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[test]
fn a_live_projection_sends_a_snapshot_then_one_after_a_change() {
    let rt = rt();
    let (s, mut rx) = sse(&rt, "/v1/projections/doses_by_directorate/live", None);
    assert_eq!(s, StatusCode::OK);
    let (first, event, data) = next_frame(&rt, &mut rx);
    assert_eq!(event, "snapshot");
    let report: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(report["projection"], "doses_by_directorate");
    let id = uuid::Uuid::now_v7().to_string();
    call(
        "POST",
        "/v1/commands",
        session(&format!("S-snap-{id}"), &id).to_string(),
    );
    let (next, _, _) = next_frame(&rt, &mut rx);
    assert!(next.parse::<u64>().unwrap() > first.parse::<u64>().unwrap());
    let (s, _) = sse(&rt, "/v1/projections/no_such_thing/live", None);
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[test]
fn the_served_openapi_document_is_the_committed_one_and_every_path_in_it_is_routed() {
    let (s, served) = get("/v1/openapi.json");
    assert_eq!(s, StatusCode::OK);
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/openapi.json"))
            .unwrap(),
    )
    .unwrap();
    assert!(
        served == committed,
        "schemas/openapi.json differs from the document the server serves; regenerate it with \
         `cargo run -- openapi > schemas/openapi.json` and review the diff"
    );
    assert_eq!(served["openapi"], "3.1.0");
    // Every documented operation reaches a handler (not the fallback's not_found).
    for (path, ops) in served["paths"].as_object().unwrap() {
        let uri = path
            .replace("{name}", "doses_by_day")
            .replace("{id}", "no-such-stream");
        for method in ops.as_object().unwrap().keys() {
            if uri.ends_with("/live") {
                continue; // streams; routed (see the SSE tests)
            }
            let (_, v) = call(&method.to_uppercase(), &uri, Body::empty());
            assert_ne!(
                error_code(&v),
                "not_found",
                "{method} {path} is documented but not routed"
            );
        }
    }
}

#[test]
fn metrics_count_commands_by_outcome_and_show_lags() {
    let state = state();
    let app = router(state.clone());
    let rt = rt();
    let send = |req: Request<Body>| support::oneshot_text(&rt, app.clone(), req);
    let id = uuid::Uuid::now_v7().to_string();
    let body = json!([session(&format!("S-metrics-{id}"), &id), {"type": "Nonsense"}]).to_string();
    let (s, _) = send(
        Request::post("/v1/commands")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap(),
    );
    assert_eq!(s, StatusCode::OK);
    // Requests are counted by matched route and status class; a path no route takes and a
    // method nobody uses do not make new series of their own.
    for (method, path) in [
        ("GET", "/no/such/path/1"),
        ("GET", "/no/such/2"),
        ("BREW", "/v1/events"),
    ] {
        let (s, _) = send(
            Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap(),
        );
        assert!(s.is_client_error(), "{method} {path}: {s}");
    }
    let (s, text) = send(Request::get("/metrics").body(Body::empty()).unwrap());
    assert_eq!(s, StatusCode::OK);
    assert!(
        !text.contains("/no/such") && !text.contains("BREW"),
        "{text}"
    );
    for line in [
        "ledger_http_requests_total{method=\"POST\",route=\"/v1/commands\",status=\"2xx\"} 1",
        "ledger_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"4xx\"} 2",
        "ledger_http_requests_total{method=\"other\",route=\"/v1/events\",status=\"4xx\"} 1",
        "ledger_commands_total{outcome=\"accepted\"} 1",
        "ledger_commands_total{outcome=\"invalid\"} 1",
        "ledger_append_duration_seconds_count 1",
        "# TYPE ledger_append_duration_seconds histogram",
        "ledger_projection_lag_events{projection=\"doses_by_directorate\"}",
        "ledger_log_head_position ",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

#[test]
fn a_rebuild_swaps_in_a_state_equal_to_the_live_one() {
    let (s, v) = get("/v1/projections/doses_by_directorate?as_of=2021-12-17");
    assert_eq!(s, StatusCode::OK);
    let (s, r) = call(
        "POST",
        "/v1/projections/doses_by_directorate/rebuild",
        Body::empty(),
    );
    assert_eq!(s, StatusCode::OK, "{r}");
    assert!(r["events"].as_u64().unwrap() >= 2434);
    let (_, after) = get("/v1/projections/doses_by_directorate?as_of=2021-12-17");
    assert_eq!(after["totals"], v["totals"]);
    let (s, e) = call("POST", "/v1/projections/nope/rebuild", Body::empty());
    assert_eq!(
        (s, error_code(&e)),
        (StatusCode::NOT_FOUND, "unknown_projection")
    );
}

#[test]
fn the_dashboard_is_served_from_the_binary_with_a_strict_content_policy() {
    let app = router(state());
    let rt = rt();
    for (uri, kind) in [
        ("/dashboard/", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/app.css", "text/css"),
    ] {
        let res = rt
            .block_on(
                app.clone()
                    .oneshot(Request::get(uri).body(Body::empty()).unwrap()),
            )
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{uri}");
        let h = res.headers();
        assert!(
            h["content-type"].to_str().unwrap().starts_with(kind),
            "{uri}"
        );
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'self'"), "{csp}");
    }
    let res = rt
        .block_on(app.oneshot(Request::get("/").body(Body::empty()).unwrap()))
        .unwrap();
    assert!(res.status().is_redirection());
    assert_eq!(res.headers()["location"], "/dashboard/");
    // Nothing is fetched from elsewhere.
    let page = concat!(
        include_str!("../../src/http/dashboard/index.html"),
        include_str!("../../src/http/dashboard/app.js"),
        include_str!("../../src/http/dashboard/app.css")
    );
    assert!(
        !page.contains("https://") && !page.contains("//cdn"),
        "the dashboard must not load from elsewhere"
    );
}

#[test]
fn requests_a_web_page_could_forge_and_odd_queries_get_clear_json_errors() {
    let app = router(state());
    let rt = rt();
    let send = |req: Request<Body>| {
        let (status, text) = support::oneshot_text(&rt, app.clone(), req);
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, error_code(&v).to_string())
    };
    let id = uuid::Uuid::now_v7().to_string();
    let body = session(&format!("S-csrf-{id}"), &id).to_string();
    // A cross-site form post (text/plain) is refused: no command from a web page.
    assert_eq!(
        send(
            Request::post("/v1/commands")
                .header("content-type", "text/plain")
                .body(Body::from(body.clone()))
                .unwrap()
        ),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not_json_content_type".into()
        )
    );
    // Without tokens, a request addressed to another host (DNS rebinding) is refused.
    assert_eq!(
        send(
            Request::get("/v1/events")
                .header("host", "evil.example")
                .body(Body::empty())
                .unwrap()
        ),
        (StatusCode::FORBIDDEN, "forbidden".into())
    );
    for host in ["127.0.0.1:8080", "localhost:8080", "[::1]:8080"] {
        assert_eq!(
            send(
                Request::get("/v1/events?limit=1")
                    .header("host", host)
                    .body(Body::empty())
                    .unwrap()
            )
            .0,
            StatusCode::OK,
            "{host}"
        );
    }
    for (method, uri, status, code) in [
        (
            "DELETE",
            "/v1/commands",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "GET",
            "/v1/projections/doses_by_day?as_of=2021-12-17&as_of=2021-12-18",
            StatusCode::BAD_REQUEST,
            "bad_query",
        ),
        (
            "GET",
            "/v1/events?limit=0",
            StatusCode::BAD_REQUEST,
            "bad_query",
        ),
        (
            "GET",
            "/v1/audit/access-log?limit=0",
            StatusCode::BAD_REQUEST,
            "bad_query",
        ),
        (
            "GET",
            "/v1/audit/access-log?limit=1001",
            StatusCode::BAD_REQUEST,
            "bad_query",
        ),
        (
            "GET",
            "/v1/projections/doses_by_directorate?known_at=",
            StatusCode::BAD_REQUEST,
            "bad_known_at",
        ),
        (
            "GET",
            "/v1/projections/doses_by_directorate?as_of=",
            StatusCode::BAD_REQUEST,
            "bad_as_of",
        ),
        (
            "GET",
            "/v1/events?after=9223372036854775808",
            StatusCode::BAD_REQUEST,
            "bad_query",
        ),
        (
            "GET",
            "/v1/events/live?after=18446744073709551615",
            StatusCode::BAD_REQUEST,
            "bad_query",
        ),
        (
            "GET",
            "/v1/projections/doses_by_day/live?known_at=2021-12-17T18:00:00Z",
            StatusCode::BAD_REQUEST,
            "unknown_query_parameter",
        ),
    ] {
        assert_eq!(
            send(
                Request::builder()
                    .method(method)
                    .uri(uri)
                    .body(Body::empty())
                    .unwrap()
            ),
            (status, code.to_string()),
            "{method} {uri}"
        );
    }
}

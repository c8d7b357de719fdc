//! A token's lifecycle against a running server: `auth list`, `revoke`, `rotate` with an
//! overlap, a new token and a broken file, all taken without a restart (the server follows the
//! token file, and reads it again on SIGHUP).

use crate::support;

use std::time::{Duration, Instant};

/// The answer to `GET /v1/projections` with `token` once it is (`refused`) or is not a 401
/// (within 5 s): a 403 (an admin does not read projections) is a token that works.
fn becomes(addr: &str, token: &str, refused: bool) -> (u16, serde_json::Value) {
    let start = Instant::now();
    loop {
        let (status, body) = support::http(addr, "GET", "/v1/projections", token, None);
        if (status == 401) == refused || start.elapsed() > Duration::from_secs(5) {
            return (status, body);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn works(addr: &str, token: &str) -> bool {
    let (status, body) = becomes(addr, token, false);
    assert_ne!(status, 401, "{body}");
    true
}

#[test]
fn revoked_rotated_and_new_tokens_take_effect_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let auditor = support::token(d, "auditor-1", "auditor");
    let log = std::fs::File::create(d.join("serve.log")).unwrap();
    // The server's own default log level (info): the reloads are logged.
    let (server, addr) = support::spawn_serve_with(
        support::bin_default_log(),
        d,
        &support::SERVE_WITH_TOKENS,
        log.into(),
    );
    assert!(works(&addr, &auditor));

    // A token created while the server runs works within seconds.
    let admin = support::token(d, "admin-1", "admin");
    assert!(works(&addr, &admin));

    // `auth list` shows both, their role, scope and expiry, never a secret or hash.
    let list = support::ok_output(&support::run(d, &["auth", "list", "--file", "tokens.json"]));
    assert!(
        list.contains("auditor-1") && list.contains("admin-1"),
        "{list}"
    );
    assert!(list.contains("never") && list.contains("active"), "{list}");
    assert!(
        !list.contains(&auditor) && !list.contains(&admin[4..20]),
        "{list}"
    );

    // Revoked: refused within seconds, saying so.
    support::ok_output(&support::run(
        d,
        &["auth", "revoke", "--file", "tokens.json", "admin-1"],
    ));
    let start = Instant::now();
    let (status, body) = becomes(&addr, &admin, true);
    assert_eq!(status, 401, "{body}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(body["error"]["code"], "revoked_token", "{body}");
    let list = support::ok_output(&support::run(
        d,
        &["auth", "list", "--file", "tokens.json", "--format", "json"],
    ));
    let revoked = list
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|t| t["id"] == "admin-1")
        .unwrap();
    assert_eq!(revoked["status"], "revoked", "{list}");

    // Rotated with an overlap: the old and the new secret both work, under the same id.
    let rotated = support::ok_output(&support::run(
        d,
        &[
            "auth",
            "rotate",
            "--file",
            "tokens.json",
            "auditor-1",
            "--overlap",
            "1h",
        ],
    ))
    .trim()
    .to_string();
    assert_ne!(rotated, auditor);
    assert!(works(&addr, &rotated));
    assert!(works(&addr, &auditor));
    let list = support::ok_output(&support::run(d, &["auth", "list", "--file", "tokens.json"]));
    assert!(list.contains("old secret accepted until"), "{list}");
    // Rotated again without an overlap: the second secret is refused at once.
    let third = support::ok_output(&support::run(
        d,
        &["auth", "rotate", "--file", "tokens.json", "auditor-1"],
    ))
    .trim()
    .to_string();
    assert!(works(&addr, &third));
    let (status, body) = becomes(&addr, &rotated, true);
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &"rotated_token".into()),
        "{body}"
    );

    // A file broken by hand is not taken: the tokens in force stay, and the log says why.
    let good = std::fs::read_to_string(d.join("tokens.json")).unwrap();
    std::fs::write(d.join("tokens.json"), "{\"tokens\": [").unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(works(&addr, &third));
    // SIGHUP reads the file again at once (the server goes on).
    std::fs::write(d.join("tokens.json"), &good).unwrap();
    unsafe {
        libc::kill(server.0.id() as i32, libc::SIGHUP);
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert!(works(&addr, &third));
    // The refusals are counted by reason, the requests by route and status class.
    let (status, _) = support::http(&addr, "GET", "/metrics", &third, None);
    assert_eq!(status, 200);
    let metrics = {
        use std::io::{Read as _, Write as _};
        let mut conn = std::net::TcpStream::connect(&addr).unwrap();
        write!(conn, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {third}\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        conn.read_to_string(&mut text).unwrap();
        text
    };
    for line in [
        "ledger_auth_refusals_total{reason=\"revoked_token\"} 1",
        "ledger_auth_refusals_total{reason=\"rotated_token\"} 1",
        "ledger_http_requests_total{method=\"GET\",route=\"/v1/projections\",status=\"2xx\"}",
        "ledger_http_requests_total{method=\"GET\",route=\"/v1/projections\",status=\"4xx\"}",
        "# TYPE ledger_http_request_duration_seconds histogram",
    ] {
        assert!(metrics.contains(line), "{line} not in {metrics}");
    }
    drop(server);
    let log = std::fs::read_to_string(d.join("serve.log")).unwrap();
    // One access line per request, naming the token by id, and each refusal with its reason.
    assert!(
        log.contains("request{method=GET route=\"/v1/projections\" token=\"auditor-1\"}")
            && log.contains("finished processing request")
            && log.contains("status=200"),
        "{log}"
    );
    assert!(
        log.contains("refused=\"revoked_token\"") && log.contains("authentication refused"),
        "{log}"
    );
    assert!(
        log.contains("token file not reloaded") && log.contains("not a token file"),
        "{log}"
    );
    assert!(log.contains("sighup=true"), "{log}");
    // Only ids in the log, never a secret.
    for t in [&auditor, &admin, &rotated, &third] {
        assert!(!log.contains(t.as_str()), "a secret is in the log");
    }
}

#[test]
fn lifecycle_commands_refuse_what_cannot_be_done() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = support::run(d, &["auth", "revoke", "--file", "tokens.json", "x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        support::stderr(&o).contains("there is no token file"),
        "{}",
        support::stderr(&o)
    );
    support::token(d, "a", "auditor");
    for (args, says) in [
        (
            vec!["auth", "revoke", "--file", "tokens.json", "b"],
            "has no token \"b\"",
        ),
        (
            vec![
                "auth",
                "token",
                "--file",
                "tokens.json",
                "--id",
                "a",
                "--role",
                "admin",
            ],
            "never reused",
        ),
        (
            vec![
                "auth",
                "rotate",
                "--file",
                "tokens.json",
                "a",
                "--overlap",
                "soon",
            ],
            "not a duration",
        ),
        (
            vec![
                "auth",
                "rotate",
                "--file",
                "tokens.json",
                "a",
                "--overlap",
                "9000h",
            ],
            "at most a year",
        ),
    ] {
        let before = std::fs::read(d.join("tokens.json")).unwrap();
        let o = support::run(d, &args);
        assert!(!o.status.success(), "{args:?}");
        assert!(
            support::stderr(&o).contains(says),
            "{args:?}: {}",
            support::stderr(&o)
        );
        assert_eq!(
            std::fs::read(d.join("tokens.json")).unwrap(),
            before,
            "{args:?} changed the file"
        );
    }
}

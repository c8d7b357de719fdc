//! The adversary who holds part of the data — an export, the store's files, the NATS streams,
//! the server's debug log — with refs from a small space (`P-000000`…`P-999999`): none of it may
//! hold the ref, its SHA-256, or the SHA-256 of a command's canonical JSON (the content hash of
//! version 1, which gave the ref back by trying every candidate), before or after erasure.

use crate::support;

use serde_json::{json, Value};
use std::path::Path;
use std::process::Stdio;
use support::nats::{rt, stream_messages, NatsServer};
use support::needles::Needles;

const REFS: [&str; 6] = [
    "P-000001", "P-000002", "P-000003", "P-000004", "P-000005", "P-000006",
];

fn id(n: u32) -> String {
    format!("0193dddd-0000-7000-8000-{n:012}")
}

fn site() -> String {
    json!({"type": "AuthoriseSite", "command_id": id(1), "directorate": "lyon", "site": "lyon-dt",
           "site_kind": "dt_premises", "authorised_on": "2021-08-01"})
    .to_string()
}

fn dose(n: u32, person: &str, kind: &str, at: &str) -> String {
    json!({"type": "AdministerDose", "command_id": id(n), "person_ref": person,
           "age_band": "30-39", "recipient": "user", "directorate": "lyon", "site": "lyon-dt",
           "product": "comirnaty", "lot": "FF1234", "dose": kind, "administered_at": at})
    .to_string()
}

/// The commands sent over HTTP (the first four people) and through `submit` (the last two):
/// every command type that names a person, and a refusal.
fn commands() -> (Vec<String>, Vec<String>) {
    let http = vec![
        dose(2, REFS[0], "first", "2021-10-04T10:00:00+02:00"),
        // Refused: too early after the first.
        dose(3, REFS[0], "second", "2021-10-05T10:00:00+02:00"),
        dose(4, REFS[1], "first", "2021-10-04T11:00:00+02:00"),
        json!({"type": "IssueTicket", "command_id": id(5), "ticket_id": "T-lyon-1",
               "person_ref": REFS[2], "directorate": "lyon", "partner_centre": "cv-lyon-gerland",
               "issued_at": "2021-10-06T10:00:00+02:00", "valid_until": "2021-12-31"})
        .to_string(),
        json!({"type": "RecordDoseNotAdministered", "command_id": id(6), "person_ref": REFS[3],
               "directorate": "lyon", "site": "lyon-dt", "reason": "refused",
               "at": "2021-10-07T10:00:00+02:00"})
        .to_string(),
    ];
    let submitted = vec![
        json!({"type": "RecordExternalDose", "command_id": id(7), "person_ref": REFS[4],
               "product": "comirnaty", "dose": "first", "administered_at": "2021-09-01T10:00:00+02:00",
               "evidence": "eu_dcc"})
        .to_string(),
        dose(8, REFS[4], "second", "2021-10-08T10:00:00+02:00"),
        dose(9, REFS[5], "first", "2021-10-08T11:00:00+02:00"),
    ];
    (http, submitted)
}

/// The binary logging everything at debug level, its standard error to `log`.
fn debug_bin(log: &Path) -> (std::process::Command, Stdio) {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_campaign-ledger"));
    c.env_remove("LEDGER_STORE")
        .env_remove("LEDGER_PROJECTIONS")
        .env("RUST_LOG", "debug");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    (c, Stdio::from(file))
}

/// Runs the binary in `dir` at debug level, appending its standard error to `log`.
fn run_logged(dir: &Path, log: &Path, args: &[&str]) -> String {
    let (mut c, err) = debug_bin(log);
    let o = c.current_dir(dir).args(args).stderr(err).output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}\n(log in {})",
        support::stdout(&o),
        log.display()
    );
    support::stdout(&o)
}

fn post(addr: &str, token: &str, path: &str, body: &str) -> (u16, Value) {
    let v: Value = serde_json::from_str(body).unwrap();
    support::http(addr, "POST", path, token, Some(&v))
}

/// Every message of every stream on the server, headers and payload, as bytes to search.
fn nats_bytes(url: &str, streams: &[&str]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for s in streams {
        for m in rt().block_on(stream_messages(url, s)) {
            let mut bytes = format!("{:?}", m.headers).into_bytes();
            for (name, values) in m.headers.iter() {
                for v in values {
                    bytes.extend(format!("\n{name}: {}", v.as_str()).into_bytes());
                }
            }
            bytes.extend_from_slice(&m.payload);
            out.push((format!("{s} message {}", m.sequence), bytes));
        }
    }
    out
}

/// Checks what the adversary holds: the ledger's files, the exports, the logs, the NATS
/// messages and the NATS server's own files.
fn assert_nothing_to_guess(
    needles: &Needles,
    dir: &Path,
    nats: &NatsServer,
    streams: &[&str],
    when: &str,
) {
    let files = needles.assert_absent_in_dir(&dir.join("ledger-data"), &[]);
    assert!(files >= 4, "{when}: only {files} files in ledger-data");
    for f in ["export.jsonl", "serve.log", "cli.log"] {
        let bytes = std::fs::read(dir.join(f)).unwrap();
        assert!(!bytes.is_empty(), "{when}: {f} is empty");
        needles.assert_absent(&format!("{when}: {f}"), &bytes);
    }
    let messages = nats_bytes(&nats.url(), streams);
    assert!(!messages.is_empty(), "{when}: no NATS message");
    for (what, bytes) in &messages {
        needles.assert_absent(&format!("{when}: {what}"), bytes);
    }
    needles.assert_absent_in_dir(&nats.dir, &[]);
}

/// Waits until the stream holds `n` messages.
fn wait_for(nats: &NatsServer, stream: &str, n: u64) {
    support::nats::wait_for_stream(
        &nats.url(),
        stream,
        n,
        std::time::Duration::from_secs(30),
        "the relay",
    );
}

/// The common run: commands over HTTP and through `submit`, person reads and proofs, an export;
/// then an erasure of one person over HTTP and one on the command line, and another export.
fn attack(global: &[&str], nats: &NatsServer, streams: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (serve_log, cli_log) = (d.join("serve.log"), d.join("cli.log"));
    let admin = support::token(d, "admin-1", "admin");
    let auditor = support::token(d, "auditor-1", "auditor");
    let o = support::run(
        d,
        &[
            "auth",
            "token",
            "--file",
            "tokens.json",
            "--id",
            "agent-1",
            "--role",
            "agent",
            "--directorate",
            "lyon",
        ],
    );
    let agent = support::ok_output(&o).trim().to_string();
    let (cmd, err) = debug_bin(&serve_log);
    let mut args = global.to_vec();
    args.extend(support::SERVE_WITH_TOKENS);
    let nats_url = nats.url();
    args.extend(["--nats", &nats_url]);
    let (server, addr) = support::spawn_serve_with(cmd, d, &args, err);

    let (http, submitted) = commands();
    let (s, v) = post(&addr, &admin, "/v1/commands", &site());
    assert_eq!((s, v["outcome"].as_str()), (200, Some("accepted")), "{v}");
    let mut outcomes = Vec::new();
    for c in &http {
        let (s, v) = post(&addr, &agent, "/v1/commands", c);
        assert_eq!(s, 200, "{v}");
        outcomes.push(v["outcome"].as_str().unwrap().to_string());
    }
    assert_eq!(
        outcomes,
        ["accepted", "rejected", "accepted", "accepted", "accepted"]
    );
    // A second process on the same ledger.
    std::fs::write(d.join("more.jsonl"), submitted.join("\n") + "\n").unwrap();
    let mut cli = global.to_vec();
    cli.extend(["submit", "more.jsonl", "--format", "json"]);
    let out = run_logged(d, &cli_log, &cli);
    assert_eq!(out.matches("\"accepted\"").count(), 3, "{out}");
    // An auditor reads people by ref, their proofs, and one event's proof.
    for r in &REFS[..2] {
        let body = json!({ "person_ref": r }).to_string();
        let (s, v) = post(&addr, &auditor, "/v1/persons/record", &body);
        assert_eq!(s, 200, "{v}");
        let (s, v) = post(&addr, &auditor, "/v1/persons/proof", &body);
        assert_eq!(s, 200, "{v}");
    }
    let (s, v) = support::http(
        &addr,
        "GET",
        "/v1/audit/proofs/inclusion?position=2",
        &auditor,
        None,
    );
    assert_eq!(s, 200, "{v}");
    let mut export = global.to_vec();
    export.extend(["export", "-o", "export.jsonl"]);
    run_logged(d, &cli_log, &export);
    let head = 8;
    for s in streams {
        wait_for(nats, s, head);
    }
    // The commands that name a person (a site authorisation names nobody).
    let all: Vec<String> = [http, submitted].concat();
    let needles = Needles::new(&REFS, &all);
    assert_nothing_to_guess(&needles, d, nats, streams, "before erasure");

    let (s, v) = post(
        &addr,
        &admin,
        "/v1/persons/erase",
        &json!({"person_ref": REFS[0]}).to_string(),
    );
    assert_eq!(s, 200, "{v}");
    drop(server);
    let mut erase = global.to_vec();
    erase.extend(["erase-person", REFS[4]]);
    run_logged(d, &cli_log, &erase);
    run_logged(d, &cli_log, &export);
    // The relay of a server started again carries the erasures too.
    let (cmd, err) = debug_bin(&serve_log);
    let (_server, _) = support::spawn_serve_with(cmd, d, &args, err);
    for s in streams {
        wait_for(nats, s, head + 2);
    }
    assert_nothing_to_guess(&needles, d, nats, streams, "after erasure");
}

#[test]
fn no_guessable_function_of_a_ref_is_kept_exported_published_or_logged_on_sqlite() {
    let nats = NatsServer::start();
    attack(&[], &nats, &[campaign_ledger::bus::STREAM]);
}

#[test]
fn no_guessable_function_of_a_ref_is_kept_exported_published_or_logged_on_the_nats_log() {
    let nats = NatsServer::start();
    let url = nats.url();
    attack(
        &["--store", &url],
        &nats,
        &[
            campaign_ledger::store::LOG_STREAM,
            campaign_ledger::bus::STREAM,
        ],
    );
}

/// One request; the status and the response's head (its header lines).
fn head_of(addr: &str, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let head = out.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    (out[9..12].parse().unwrap(), head)
}

/// Refs never travel in URLs (proxies log them): the person routes take the ref in a JSON body,
/// the old `GET /v1/persons/{ref}` routes are gone, and every answer that carries person data
/// says `Cache-Control: no-store`.
#[test]
fn person_answers_are_never_cached_and_refs_never_in_urls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let auditor = support::token(d, "auditor-1", "auditor");
    let admin = support::token(d, "admin-1", "admin");
    std::fs::write(
        d.join("in.jsonl"),
        [
            site(),
            dose(2, REFS[0], "first", "2021-10-04T10:00:00+02:00"),
        ]
        .join("\n")
            + "\n",
    )
    .unwrap();
    support::ok_output(&support::run(d, &["submit", "in.jsonl"]));
    let (_server, addr) = support::serve_with_tokens(d);
    let body = json!({"person_ref": REFS[0]}).to_string();
    let (s, v) = post(&addr, &auditor, "/v1/persons/record", &body);
    assert_eq!(s, 200, "{v}");
    let stream = format!("/v1/streams/person%2F{}", v["person_id"].as_str().unwrap());
    for (method, path, body) in [
        ("POST", "/v1/persons/record", body.as_str()),
        ("POST", "/v1/persons/proof", body.as_str()),
        ("GET", "/v1/events?after=0&limit=10", ""),
        ("GET", stream.as_str(), ""),
        ("GET", "/v1/findings", ""),
        ("GET", "/v1/audit/proofs/inclusion?position=2", ""),
        ("GET", "/v1/audit/access-log", ""),
    ] {
        let (s, head) = head_of(&addr, method, path, &auditor, body);
        assert_eq!(s, 200, "{method} {path}: {head}");
        assert!(
            head.contains("\r\ncache-control: no-store"),
            "{method} {path}: {head}"
        );
    }
    for path in [
        format!("/v1/persons/{}", REFS[0]),
        format!("/v1/persons/{}/proof", REFS[0]),
    ] {
        let (s, head) = head_of(&addr, "GET", &path, &auditor, "");
        assert_eq!(s, 404, "{path}: {head}");
    }
    let (s, head) = head_of(&addr, "POST", "/v1/persons/erase", &admin, &body);
    assert_eq!(s, 200, "{head}");
    assert!(head.contains("\r\ncache-control: no-store"), "{head}");
}

/// Whatever the umask, everything the ledger writes is its owner's only: 0600 files, 0700
/// directories; and `serve` warns about an existing file others can read.
#[test]
fn the_ledgers_files_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let umask = |args: &[&str]| {
        let o = std::process::Command::new("sh")
            .arg("-c")
            .arg("umask 022 && exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_campaign-ledger"))
            .args(args)
            .current_dir(d)
            .env("RUST_LOG", "warn")
            .env_remove("LEDGER_STORE")
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", support::stderr(&o));
        o
    };
    std::fs::write(
        d.join("in.jsonl"),
        [
            site(),
            dose(2, REFS[0], "first", "2021-10-04T10:00:00+02:00"),
        ]
        .join("\n")
            + "\n",
    )
    .unwrap();
    umask(&["submit", "in.jsonl"]);
    umask(&["audit", "keygen"]);
    umask(&["audit", "digest"]);
    umask(&[
        "auth",
        "token",
        "--file",
        "ledger-data/tokens.json",
        "--id",
        "a",
        "--role",
        "auditor",
    ]);
    umask(&["audit", "prove", "--person", REFS[0]]);
    umask(&["erase-person", REFS[0]]);
    std::fs::create_dir(d.join("out")).unwrap();
    std::fs::set_permissions(d.join("out"), std::fs::Permissions::from_mode(0o700)).unwrap();
    umask(&["export", "-o", "out/export.jsonl"]);
    umask(&["backup", "--to", "bk"]);
    // serve publishes a digest at start when the log moved (digests.jsonl).
    let mut serve = std::process::Command::new("sh");
    serve
        .arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_campaign-ledger"))
        .args(["serve", "--listen", "127.0.0.1:0", "--digest-every", "1s"])
        .env("RUST_LOG", "warn");
    let (server, addr) = support::spawn_serve_with(serve, d, &[], std::process::Stdio::null());
    let (s, _) = support::plain(&addr, "GET", "/v1/events?limit=5", "");
    assert_eq!(s, 200);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    drop(server);
    let mut checked = Vec::new();
    for top in ["ledger-data", "bk", "out"] {
        let mut stack = vec![d.join(top)];
        while let Some(p) = stack.pop() {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            if p.is_dir() {
                assert_eq!(mode, 0o700, "{} is {mode:o}", p.display());
                stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            } else {
                assert_eq!(mode, 0o600, "{} is {mode:o}", p.display());
                checked.push(p.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    for f in [
        "ledger.db",
        "ledger.keys.db",
        "ledger.access.db",
        "ledger.projections.db",
        "ledger.erasures.jsonl",
        "digests.jsonl",
        "signing.key",
        "master.key",
        "tokens.json",
        "manifest.json",
        "export.jsonl",
    ] {
        assert!(checked.iter().any(|c| c == f), "{f} not among {checked:?}");
    }
    // A file others can read (copied in by hand, say): serve warns at start.
    let log = d.join("ledger-data/ledger.db");
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = d.join("serve.err");
    let (server, _) = support::spawn_serve(
        d,
        &["serve", "--listen", "127.0.0.1:0", "--digest-every", "0"],
        std::process::Stdio::from(std::fs::File::create(&err).unwrap()),
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(server);
    let text = std::fs::read_to_string(&err).unwrap();
    assert!(
        text.contains("ledger.db") && text.contains("others can read"),
        "{text}"
    );
}

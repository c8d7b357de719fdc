//! Shared test harness: temporary stores, running the real binary, building commands.
#![allow(dead_code)]

pub mod contract;
pub mod nats;
pub mod needles;
pub mod other_witness;
pub mod pki;

use campaign_ledger::store::{self, EventStore, SystemClock};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

/// The binary under test, logging warnings only (a server's info lines, one per request,
/// would fill a pipe the test does not read).
pub fn bin() -> Command {
    let mut c = bin_default_log();
    c.env("RUST_LOG", "warn");
    c
}

/// The binary under test, logging as it does by default (no `RUST_LOG`).
pub fn bin_default_log() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_campaign-ledger"));
    c.env_remove("LEDGER_STORE")
        .env_remove("LEDGER_PROJECTIONS")
        .env_remove("RUST_LOG");
    c
}

/// Runs the binary in `dir` with `args`.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    bin()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the binary runs")
}

/// A child process killed (SIGKILL) and reaped when dropped, also when a test panics.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary started in `dir` with `args`, its output discarded, killed when dropped.
pub fn spawn(dir: &Path, args: &[&str]) -> Running {
    Running(
        bin()
            .current_dir(dir)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the binary starts"),
    )
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh SQLite store in a temporary directory.
pub fn sqlite_store(dir: &Path) -> Arc<dyn EventStore> {
    store::open(
        &format!("sqlite:{}", dir.join("ledger.db").display()),
        Arc::new(SystemClock),
    )
    .expect("store opens")
}

pub fn store_file(dir: &Path) -> PathBuf {
    dir.join("ledger-data").join("ledger.db")
}

/// A deterministic UUID for tests.
pub fn id(n: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 | n)
}

use campaign_ledger::app::Ledger;
use campaign_ledger::domain::{Policy, Reference};
use campaign_ledger::projection::{load_definitions, Engine};

/// A ledger and a projection engine over a SQLite store in `dir`.
pub fn ledger(dir: &Path) -> (Arc<dyn EventStore>, Ledger, Engine) {
    let store = sqlite_store(dir);
    let engine = Engine::open(
        &dir.join("ledger.projections.db"),
        load_definitions(None).unwrap(),
        chrono_tz::Europe::Paris,
    )
    .unwrap();
    let ledger = Ledger::new(
        store.clone(),
        Policy::default(),
        Reference::builtin(),
        Arc::new(SystemClock),
    );
    (store, ledger, engine)
}

/// Opens an existing store file.
pub fn sqlite_store_at(path: &Path) -> Arc<dyn EventStore> {
    store::open(&format!("sqlite:{}", path.display()), Arc::new(SystemClock)).expect("store opens")
}

/// Appends `n` events (100 per append, in streams of their own) straight to a store: a quick
/// way to a big log for bus tests.
pub fn fill(store: &dyn EventStore, n: u64) {
    use campaign_ledger::store::{Actor, AppendRequest, CommandMeta, ExpectedVersion, NewEvent};
    let dts = ["lyon", "paris", "rennes", "limoges"];
    let mut k = store.head().unwrap().position;
    let end = k + n;
    while k < end {
        let events: Vec<NewEvent> = (k..(k + 100).min(end))
            .map(|i| NewEvent {
                event_type: "DoseAdministered".into(),
                schema_version: 1,
                occurred_at: chrono::DateTime::parse_from_rfc3339("2021-10-04T10:00:00+02:00")
                    .unwrap(),
                data: format!(
                    r#"{{"directorate":"{}","dose":"first","administered_at":"2021-10-{:02}T10:00:00+02:00","n":{i}}}"#,
                    dts[(i % 4) as usize],
                    1 + i % 28
                ),
            })
            .collect();
        k += events.len() as u64;
        store
            .append(AppendRequest {
                stream_id: format!("fill/{}/{k}", uuid::Uuid::now_v7()),
                expected: ExpectedVersion::Exact(0),
                command: CommandMeta {
                    command_id: uuid::Uuid::now_v7(),
                    content_hash: [0; 32],
                    correlation_id: None,
                    actor: Actor {
                        role: "test".into(),
                        ..Default::default()
                    },
                },
                events,
                person: None,
            })
            .unwrap();
    }
}

/// The directory of a store holding the OFII 2021 scenario, loaded once per test binary by
/// `demo` (tests that write to it use command ids of their own).
pub fn scenario_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let o = run(dir.path(), &["demo"]);
        assert!(o.status.success(), "{}", stderr(&o));
        dir
    })
    .path()
}

/// The HTTP server's state over the scenario store, without tokens.
pub fn scenario_state() -> campaign_ledger::http::AppState {
    use campaign_ledger::domain::{Policy, Reference};
    use campaign_ledger::projection::{db_path_for, load_definitions, Engine};
    let path = store_file(scenario_dir());
    let engine = Engine::open(
        &db_path_for(&path),
        load_definitions(None).unwrap(),
        Policy::default().time_zone,
    )
    .unwrap();
    campaign_ledger::http::AppState::new(
        Arc::new(campaign_ledger::app::Ledger::new(
            sqlite_store_at(&path),
            Policy::default(),
            Reference::builtin(),
            Arc::new(SystemClock),
        )),
        Arc::new(engine),
    )
}

/// One request through the router, without a server: its status and its body as text
/// (`event-stream` for a live stream, which never ends).
pub fn oneshot_text(
    rt: &tokio::runtime::Runtime,
    app: axum::Router,
    req: axum::http::Request<axum::body::Body>,
) -> (axum::http::StatusCode, String) {
    use tower::ServiceExt;
    rt.block_on(async move {
        let res = app.oneshot(req).await.unwrap();
        let status = res.status();
        // Live streams never end: read their head only.
        if res
            .headers()
            .get("content-type")
            .is_some_and(|c| c.to_str().unwrap().starts_with("text/event-stream"))
        {
            return (status, "event-stream".to_string());
        }
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    })
}

/// One request through the router: its status and its body as JSON (a string when the body is
/// not JSON).
pub fn oneshot(
    rt: &tokio::runtime::Runtime,
    app: axum::Router,
    req: axum::http::Request<axum::body::Body>,
) -> (axum::http::StatusCode, serde_json::Value) {
    let (status, text) = oneshot_text(rt, app, req);
    let v = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, v)
}

/// A runtime for a test's in-process requests.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Sends one request through the router on the scenario's state; returns the status and the
/// body as JSON (or text).
pub fn scenario_call(
    method: &str,
    uri: &str,
    body: impl Into<axum::body::Body>,
) -> (axum::http::StatusCode, serde_json::Value) {
    let app = campaign_ledger::http::router(scenario_state());
    let req = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap();
    oneshot(&rt(), app, req)
}

/// `scenario_call` of a GET.
pub fn scenario_get(uri: &str) -> (axum::http::StatusCode, serde_json::Value) {
    scenario_call("GET", uri, axum::body::Body::empty())
}

/// The `code` of a JSON error answer.
pub fn error_code(v: &serde_json::Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// The log written before DoseAdministered v2 and partner-centre ids (an export), as text.
pub fn v1_fixture() -> String {
    use std::io::Read as _;
    let mut text = String::new();
    flate2::read::GzDecoder::new(
        std::fs::File::open(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/ofii-2021-v1.jsonl.gz"
        ))
        .unwrap(),
    )
    .read_to_string(&mut text)
    .unwrap();
    text
}

/// Its standard output, after checking that it succeeded.
pub fn ok_output(o: &Output) -> String {
    assert!(o.status.success(), "{}{}", stdout(o), stderr(o));
    stdout(o)
}

/// One HTTP/1.1 request to the server; returns the status and the JSON body.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    use serde_json::Value;
    use std::io::{Read as _, Write as _};
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    let status: u16 = answer[9..12].parse().unwrap();
    let (_, payload) = answer.split_once("\r\n\r\n").unwrap();
    // Chunked or not: the JSON is the part between the first '[' or '{' and the last ']' or '}'.
    let start = payload.find(['[', '{']).unwrap_or(0);
    let end = payload.rfind([']', '}']).map_or(payload.len(), |i| i + 1);
    (
        status,
        serde_json::from_str(&payload[start..end]).unwrap_or(Value::Null),
    )
}

pub fn token(dir: &Path, id: &str, role: &str) -> String {
    ok_output(&run(
        dir,
        &[
            "auth",
            "token",
            "--file",
            "tokens.json",
            "--id",
            id,
            "--role",
            role,
        ],
    ))
    .trim()
    .to_string()
}

/// `serve` on a free port of 127.0.0.1 in `dir`, with the token file `tokens.json` and no
/// periodic digests: the running server (killed when dropped) and its address.
pub fn serve_with_tokens(dir: &Path) -> (Running, String) {
    serve_with_tokens_on(dir, &[])
}

/// `serve` of a new ledger on a free port of 127.0.0.1 with the token file `tokens.json` and
/// no periodic digests.
pub const SERVE_WITH_TOKENS: [&str; 8] = [
    "serve",
    "--listen",
    "127.0.0.1:0",
    "--auth",
    "tokens.json",
    "--digest-every",
    "0",
    "--create",
];

/// `serve_with_tokens` with global options before the subcommand (`--store nats://…`).
pub fn serve_with_tokens_on(dir: &Path, global: &[&str]) -> (Running, String) {
    let mut args = global.to_vec();
    args.extend(SERVE_WITH_TOKENS);
    spawn_serve(dir, &args, std::process::Stdio::null())
}

/// `serve --create` (a new ledger, no token file, no periodic digests) on a free port of
/// 127.0.0.1 in `dir`, with `global` options before the subcommand: the running server and its
/// address.
pub fn serve_new(dir: &Path, global: &[&str]) -> (Running, String) {
    let mut args = global.to_vec();
    args.extend([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--digest-every",
        "0",
        "--create",
    ]);
    spawn_serve(dir, &args, std::process::Stdio::null())
}

/// The binary with `args` (a `serve` on port 0) in `dir`, its standard error sent to `stderr`:
/// the running server (killed when dropped) and the address it printed.
pub fn spawn_serve(dir: &Path, args: &[&str], stderr: std::process::Stdio) -> (Running, String) {
    spawn_serve_with(bin(), dir, args, stderr)
}

/// `spawn_serve` of `cmd` (the binary with its environment).
pub fn spawn_serve_with(
    mut cmd: Command,
    dir: &Path,
    args: &[&str],
    stderr: std::process::Stdio,
) -> (Running, String) {
    use std::io::BufRead as _;
    let mut server = cmd
        .current_dir(dir)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .or_else(|| line.trim().strip_prefix("listening on https://"))
        .unwrap_or_else(|| panic!("serve said {line:?}"))
        .to_string();
    (Running(server), addr)
}

/// One request without a token over a fresh connection (`serve` without `--auth`, loopback):
/// the status and the body, or `None` when the server is gone or silent for 30 s.
pub fn try_plain(addr: &str, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.get(9..12)?.parse().ok()?;
    Some((
        code,
        out.split_once("\r\n\r\n").map_or("", |x| x.1).to_string(),
    ))
}

/// `try_plain`, which must be answered.
pub fn plain(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    try_plain(addr, method, path, body)
        .unwrap_or_else(|| panic!("{method} {path}: no answer from {addr}"))
}

/// `AuthoriseSite` for lyon-dt (from 2021-08-01), as a request body.
pub fn lyon_site() -> String {
    serde_json::json!({"type": "AuthoriseSite", "command_id": uuid::Uuid::now_v7(),
        "directorate": "lyon", "site": "lyon-dt", "site_kind": "dt_premises", "authorised_on": "2021-08-01"})
    .to_string()
}

/// A first dose at lyon-dt for `person`, with the command id `id`, as a request body.
pub fn lyon_first_dose(id: uuid::Uuid, person: &str) -> String {
    serde_json::json!({"type": "AdministerDose", "command_id": id,
        "person_ref": person, "age_band": "30-39", "recipient": "user", "directorate": "lyon",
        "site": "lyon-dt", "product": "comirnaty", "lot": "FF1234", "dose": "first",
        "administered_at": "2021-10-04T10:00:00+02:00"})
    .to_string()
}

/// A session opened at lyon-dt, its id made from the command id `id`, as a request body.
pub fn lyon_session(id: uuid::Uuid) -> String {
    serde_json::json!({"type": "OpenSession", "command_id": id,
        "session_id": format!("S-{id}"), "directorate": "lyon", "site": "lyon-dt",
        "opened_at": "2021-12-20T09:00:00+01:00"})
    .to_string()
}

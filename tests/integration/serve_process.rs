//! `serve` as a process: it binds port 0 and says where, refuses addresses other machines can
//! reach without tokens, refuses bad token files, and loses no acknowledged command when
//! SIGTERM comes under load.

use crate::support;

use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};

fn spawn_serve(dir: &std::path::Path, args: &[&str]) -> (std::process::Child, String) {
    let mut child = support::bin()
        .current_dir(dir)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_string();
    (child, addr)
}

#[test]
fn serve_binds_port_0_prints_its_address_answers_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn_serve(
        dir.path(),
        &["serve", "--listen", "127.0.0.1:0", "--create"],
    );
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        conn,
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A live stream is open when the server is asked to stop: it ends, and the server stops.
    let mut live = std::net::TcpStream::connect(&addr).unwrap();
    write!(live, "GET /v1/events/live HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut head = [0u8; 12];
    live.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not stop within 10 s of SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{err}");
    assert!(err.contains("server stopped"), "{err}");
}

#[test]
fn serve_refuses_an_address_other_machines_can_reach() {
    let dir = tempfile::tempdir().unwrap();
    let o = support::run(dir.path(), &["serve", "--listen", "0.0.0.0:0"]);
    assert!(!o.status.success());
    assert!(
        support::stderr(&o).contains("refusing to listen on 0.0.0.0"),
        "{}",
        support::stderr(&o)
    );
    let o = support::run(dir.path(), &["serve", "--listen", "localhost"]);
    assert!(!o.status.success());
    assert!(
        support::stderr(&o).contains("is not ADDR:PORT"),
        "{}",
        support::stderr(&o)
    );
}

/// Opens an SSE route and returns a reader of its `(id, event, data)` frames.

#[test]
fn auth_token_writes_only_hashes_and_serve_refuses_bad_token_files() {
    let dir = tempfile::tempdir().unwrap();
    let o = support::run(
        dir.path(),
        &[
            "auth",
            "token",
            "--file",
            "tokens.json",
            "--id",
            "lyon-1",
            "--role",
            "agent",
            "--directorate",
            "lyon",
        ],
    );
    assert!(o.status.success(), "{}", support::stderr(&o));
    let token = support::stdout(&o).trim().to_string();
    assert!(token.starts_with("clt_"), "{token}");
    let file = std::fs::read_to_string(dir.path().join("tokens.json")).unwrap();
    assert!(
        !file.contains(&token) && file.contains("\"role\": \"agent\""),
        "{file}"
    );
    let o = support::run(
        dir.path(),
        &[
            "auth",
            "token",
            "--file",
            "tokens.json",
            "--id",
            "x",
            "--role",
            "supervisor",
            "--directorate",
            "atlantis",
        ],
    );
    assert!(!o.status.success());
    assert!(
        support::stderr(&o).contains("\"atlantis\" is not a directorate id"),
        "{}",
        support::stderr(&o)
    );
    std::fs::write(dir.path().join("bad.json"), "{\"tokens\": 3}").unwrap();
    let o = support::run(
        dir.path(),
        &["serve", "--listen", "127.0.0.1:0", "--auth", "bad.json"],
    );
    assert!(!o.status.success());
    assert!(
        support::stderr(&o).contains("is not a token file"),
        "{}",
        support::stderr(&o)
    );
    let o = support::run(
        dir.path(),
        &["serve", "--listen", "127.0.0.1:0", "--auth", "missing.json"],
    );
    assert!(!o.status.success());
    assert!(
        support::stderr(&o).contains("cannot read the token file"),
        "{}",
        support::stderr(&o)
    );
}

/// One POST over a fresh connection; `None` when the server is gone or closed the connection.
fn post_raw(addr: &str, body: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(
        s,
        "POST /v1/commands HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.starts_with("HTTP/1.1 200").then_some(out)
}

#[test]
fn sigterm_under_load_loses_no_acknowledged_command() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn_serve(
        dir.path(),
        &[
            "--store",
            "sqlite:./ledger.db",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--create",
        ],
    );
    let site = json!({"type": "AuthoriseSite", "command_id": uuid::Uuid::now_v7(), "directorate": "lyon",
        "site": "lyon-dt", "site_kind": "dt_premises", "authorised_on": "2021-08-01"});
    assert!(post_raw(&addr, &site.to_string())
        .unwrap()
        .contains("accepted"));
    let stop = std::sync::atomic::AtomicBool::new(false);
    let acknowledged: Vec<uuid::Uuid> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let mut acked = Vec::new();
                    loop {
                        let id = uuid::Uuid::now_v7();
                        match post_raw(&addr, &support::lyon_session(id)) {
                            Some(answer) => {
                                assert!(answer.contains("\"accepted\""), "{answer}");
                                acked.push(id);
                            }
                            None if stop.load(std::sync::atomic::Ordering::SeqCst) => return acked,
                            None => {}
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(700));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(
        acknowledged.len() > 10,
        "only {} commands went through",
        acknowledged.len()
    );
    let store = support::sqlite_store_at(&dir.path().join("ledger.db"));
    for id in &acknowledged {
        assert!(
            store.command(*id).unwrap().is_some(),
            "acknowledged command {id} is missing"
        );
    }
    let o = support::run(
        dir.path(),
        &["--store", "sqlite:./ledger.db", "audit", "verify"],
    );
    assert!(o.status.success(), "{}", support::stdout(&o));
}

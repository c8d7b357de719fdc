//! Live clients (server-sent events) against a real `serve` process: a client that does not
//! read never slows the others, the limit on live clients answers 503 with Retry-After and
//! frees its places when clients go, and a stop ends the server even with a client that
//! stopped reading.

use crate::support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::Running;

/// `serve` on the ledger in `dir` with at most `max` live clients: the process and its address.
fn serve(dir: &std::path::Path, max: u32) -> (Running, String) {
    let max = max.to_string();
    support::spawn_serve(
        dir,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--digest-every",
            "0",
            "--max-live-clients",
            &max,
        ],
        std::process::Stdio::null(),
    )
}

/// Opens a live request; returns the connection once the response head has been read, with
/// the status line and the head.
fn open_live(addr: &str, path: &str) -> (BufReader<TcpStream>, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        head.push_str(&line);
    }
    (r, head)
}

/// Reads SSE lines until an `id:` of at least `position`; panics after `within`.
fn read_until(r: &mut BufReader<TcpStream>, position: u64, within: Duration) {
    let deadline = Instant::now() + within;
    let mut line = String::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "position {position} not seen in {within:?}"
        );
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "the stream ended");
        if let Some(id) = line.strip_prefix("id:") {
            if id.trim().parse::<u64>().unwrap() >= position {
                return;
            }
        }
    }
}

fn head_position(dir: &std::path::Path) -> u64 {
    let o = support::run(dir, &["audit", "verify"]);
    assert!(o.status.success(), "{}", support::stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    // "ok: N events, …"
    out.split_whitespace()
        .find_map(|w| w.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no position in {out:?}"))
}

#[test]
fn a_client_that_does_not_read_slows_no_one_and_the_limit_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let o = support::run(dir.path(), &["demo"]);
    assert!(o.status.success(), "{}", support::stderr(&o));
    let head = head_position(dir.path());
    assert!(head > 2000, "the demo's log: {head}");
    let (mut server, addr) = serve(dir.path(), 2);

    // A client that asks for the whole log and never reads it.
    let (_stalled, h) = open_live(&addr, "/v1/events/live?after=0");
    assert!(h.starts_with("HTTP/1.1 200"), "{h}");
    // Another one reads everything, at once.
    let (mut reader, h) = open_live(&addr, "/v1/events/live?after=0");
    assert!(h.starts_with("HTTP/1.1 200"), "{h}");
    read_until(&mut reader, head, Duration::from_secs(20));

    // The limit: a third live client is refused, and told when to come back.
    let (_, h) = open_live(&addr, "/v1/projections/doses_by_directorate/live");
    assert!(h.starts_with("HTTP/1.1 503"), "{h}");
    assert!(h.to_ascii_lowercase().contains("retry-after: 5"), "{h}");
    // Other requests are still served.
    let mut s = TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A client that goes frees its place.
    drop(reader);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (mut r, h) = open_live(&addr, "/v1/projections/doses_by_directorate/live");
        if h.starts_with("HTTP/1.1 200") {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            break;
        }
        assert!(Instant::now() < deadline, "the place was not freed: {h}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A stop ends the server, the client that does not read notwithstanding.
    let pid = server.0.id() as i32;
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "serve did not stop within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

//! Faults while serving, against real processes: a relay that cannot go on inside `serve` is
//! said at once (a log line while the server runs), `/readyz` answers 503 with the reason, and
//! `/metrics` counts it.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::nats::NatsServer;
use support::Running;

/// One GET over a fresh connection: the status code and the body.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (code, body.to_string())
}

#[test]
fn a_relay_refused_inside_serve_is_said_at_once_and_readyz_gives_the_reason() {
    let nats = NatsServer::start();
    // Ledger A fills the stream LEDGER_EVENTS.
    let a = tempfile::tempdir().unwrap();
    let a_store = support::sqlite_store_at(&a.path().join("a.db"));
    support::fill(a_store.as_ref(), 100);
    let url = format!("sqlite:{}", a.path().join("a.db").display());
    let o = support::bin()
        .args(["--store", &url, "relay", "--nats", &nats.url(), "--once"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Ledger B is served with --nats on the same server: its relay must refuse that stream.
    let b = tempfile::tempdir().unwrap();
    support::fill(
        support::sqlite_store_at(&b.path().join("b.db")).as_ref(),
        150,
    );
    let mut child = support::bin()
        .current_dir(b.path())
        .args([
            "--store",
            "sqlite:./b.db",
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--digest-every", "0", "--nats", &nats.url()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    {
        let (log, err) = (log.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                log.lock().unwrap().push_str(&(line + "\n"));
            }
        });
    }
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let server = Running(child);
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("serve said {line:?}"))
        .to_string();

    let deadline = Instant::now() + Duration::from_secs(30);
    let (code, body) = loop {
        let (code, body) = get(&addr, "/readyz");
        if body.contains("belongs to another ledger") {
            break (code, body);
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never gave the relay's reason: {code} {body}\nlog:\n{}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(code, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], false, "{body}");
    assert!(
        v["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("relay: stopped"),
        "{body}"
    );
    // Said in the log while the server runs, not at its shutdown.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log.lock().unwrap().contains("belongs to another ledger") {
        assert!(
            Instant::now() < deadline,
            "not logged: {}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, metrics) = get(&addr, "/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("ledger_component_up{component=\"relay\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ledger_component_up{component=\"projections\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ledger_component_errors_total{component=\"relay\"} 1"),
        "{metrics}"
    );
    drop(server);
}

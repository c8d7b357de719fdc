//! Faults while serving, against real processes: a relay that cannot go on inside `serve` is
//! said at once (a log line while the server runs), `/readyz` answers 503 with the reason, and
//! `/metrics` counts it.

use crate::support;

use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::lyon_session as session;
use support::nats::NatsServer;
use support::Running;

/// One GET over a fresh connection: the status code and the body.
fn get(addr: &str, path: &str) -> (u16, String) {
    support::plain(addr, "GET", path, "")
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
    let nats_url = nats.url();
    let (mut server, addr) = support::spawn_serve(
        b.path(),
        &[
            "--store",
            "sqlite:./b.db",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--digest-every",
            "0",
            "--nats",
            &nats_url,
        ],
        std::process::Stdio::piped(),
    );
    let log = Arc::new(Mutex::new(String::new()));
    {
        let (log, err) = (log.clone(), server.0.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                log.lock().unwrap().push_str(&(line + "\n"));
            }
        });
    }

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

/// One POST of `body` over a fresh connection: the answer, or `None` when the server is gone.
fn post(addr: &str, body: &str) -> Option<(u16, String)> {
    support::try_plain(addr, "POST", "/v1/commands", body)
}

/// `serve --create` in `dir`: the process and its address.
fn serve(dir: &std::path::Path) -> (Running, String) {
    support::serve_new(dir, &[])
}

#[test]
fn kill_9_under_64_http_clients_loses_no_acknowledged_command_and_stores_none_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = serve(dir.path());
    let site = support::lyon_site();
    assert_eq!(post(&addr, &site).unwrap().0, 200);
    let stop = std::sync::atomic::AtomicBool::new(false);
    // Each client: (command id, whether it was answered 200 accepted).
    let sent: Vec<(uuid::Uuid, bool)> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..64)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        let id = uuid::Uuid::now_v7();
                        match post(&addr, &session(id)) {
                            Some((200, body)) => {
                                assert!(body.contains("\"accepted\""), "{body}");
                                mine.push((id, true));
                            }
                            // Sent, answer lost in the kill: it may or may not be stored.
                            _ => mine.push((id, false)),
                        }
                    }
                    mine
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1500));
        let pid = server.0.id() as i32;
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        clients
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect()
    });
    drop(server);
    let acked = sent.iter().filter(|s| s.1).count();
    assert!(
        acked > 50,
        "only {acked} commands were answered before the kill"
    );
    eprintln!(
        "{acked} commands answered before the kill, {} sent without an answer",
        sent.len() - acked
    );

    // Restarted: every command answered 200 is there (a retry is a duplicate); a retry of one
    // whose answer was lost is accepted or a duplicate, never stored twice.
    let (_server, addr) = serve(dir.path());
    let mut seen = std::collections::HashSet::new();
    for (id, answered) in &sent {
        let (code, body) = post(&addr, &session(*id)).expect("the restarted server answers");
        assert_eq!(code, 200, "{body}");
        let outcome = serde_json::from_str::<serde_json::Value>(&body).unwrap()["outcome"]
            .as_str()
            .unwrap()
            .to_string();
        if *answered {
            assert_eq!(outcome, "duplicate", "acknowledged command {id}: {body}");
        } else {
            assert!(
                ["accepted", "duplicate"].contains(&outcome.as_str()),
                "{body}"
            );
        }
        seen.insert(*id);
    }
    let o = support::run(dir.path(), &["audit", "verify"]);
    assert!(o.status.success(), "{}", support::stdout(&o));
    // One SessionOpened per command, the site's event, nothing twice: the log holds exactly
    // the distinct commands sent (plus the site).
    let verify = support::stdout(&o);
    let events: usize = verify
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("{verify}"));
    assert_eq!(events, seen.len() + 1, "{verify}");
    // The projections, kept by the server across the kill, equal a rebuild from the log.
    let o = support::run(
        dir.path(),
        &["projections", "rebuild", "session_attendance"],
    );
    let out = support::stdout(&o) + &support::stderr(&o);
    assert!(out.contains("identical to the live state"), "{out}");
}

#[test]
fn a_nats_outage_under_serve_loses_nothing_and_the_digests_kept_meanwhile_are_published() {
    use campaign_ledger::bus::{DIGEST_STREAM, STREAM};
    use support::nats::{last_sequence, rt, stream_messages};
    let mut nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = nats.url();
    // A signing key, so that serve takes and publishes digests.
    support::ok_output(&support::run(dir.path(), &["audit", "keygen"]));
    let (server, addr) = support::spawn_serve(
        dir.path(),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--create",
            "--nats",
            &url,
            "--digest-every",
            "1s",
        ],
        std::process::Stdio::null(),
    );
    let site = support::lyon_site();
    assert_eq!(post(&addr, &site).unwrap().0, 200);

    // Eight clients send commands before, during and after the outage: the log is SQLite, so
    // every one is answered 200 whether NATS is there or not.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let during_outage = std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let (code, body) = post(&addr, &session(uuid::Uuid::now_v7())).unwrap();
                    assert_eq!(code, 200, "{body}");
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
        }
        std::thread::sleep(Duration::from_millis(1500));
        nats.kill();
        // While NATS is down, /readyz says so, with the relay's reason.
        let deadline = Instant::now() + Duration::from_secs(20);
        let body = loop {
            let (code, body) = get(&addr, "/readyz");
            if code == 503 && body.contains("relay") {
                break body;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz stayed {code} {body} during the outage"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        std::thread::sleep(Duration::from_millis(2000));
        nats.restart();
        std::thread::sleep(Duration::from_millis(1500));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        body
    });
    eprintln!("readyz during the outage: {during_outage}");

    // The relay resumes: the stream is positions 1..N exactly once, N the log's head.
    let o = support::run(dir.path(), &["audit", "verify"]);
    let head: u64 = support::stdout(&o)
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while rt().block_on(last_sequence(&url, STREAM)) < head {
        assert!(
            Instant::now() < deadline,
            "the relay did not catch up after the outage"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let messages = rt().block_on(stream_messages(&url, STREAM));
    let positions: Vec<u64> = messages
        .iter()
        .map(|m| {
            m.headers
                .get("Ledger-Position")
                .unwrap()
                .as_str()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(
        positions,
        (1..=head).collect::<Vec<_>>(),
        "positions 1..{head}, each once"
    );
    let ids: std::collections::HashSet<_> = messages
        .iter()
        .map(|m| m.headers.get("Nats-Msg-Id").unwrap().as_str().to_string())
        .collect();
    assert_eq!(ids.len() as u64, head);

    // The digests taken while NATS was away were kept and published when it came back: every
    // digest of the file is on the stream, in order, the last one at the head.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let file: Vec<u64> = std::fs::read_to_string(dir.path().join("ledger-data/digests.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["position"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        let published: Vec<u64> = rt()
            .block_on(stream_messages(&url, DIGEST_STREAM))
            .iter()
            .map(|m| {
                serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap()["position"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        if published == file && file.last() == Some(&head) {
            eprintln!("{} digests, all published, the last at {head}", file.len());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "digests in the file {file:?}, on the stream {published:?}, head {head}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let (code, body) = get(&addr, "/readyz");
    assert_eq!(code, 200, "ready again after the outage: {body}");
    drop(server);
}

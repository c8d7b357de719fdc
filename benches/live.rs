//! Live dashboards under write load: the real `campaign-ledger serve` process (tokens checked,
//! SQLite log) takes `POST /v1/commands` from 64 keep-alive clients while 1,000 live clients
//! follow `GET /v1/projections/doses_by_directorate/live` (SSE), against the same run without
//! live clients, in alternating rounds on fresh ledgers (`BENCH_ROUNDS`, default 3). Every live
//! client must end with the snapshot of the final head; the server's resident memory (VmHWM)
//! is reported for both.
//!
//! `cargo bench --bench live` (`BENCH_LIVE=N` live clients, default 1,000; `BENCH_CLIENTS`,
//! default 64; `BENCH_PER_CLIENT`, default 300). Loopback only; the server is stopped by its
//! process id.

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::load::load;
use common::{dose_command as dose, median_round, DTS};

const BIN: &str = env!("CARGO_BIN_EXE_campaign-ledger");

/// A server on a fresh ledger: the process, its address, the agent's and the auditor's tokens.
struct Server {
    child: Child,
    addr: String,
    agent: String,
    auditor: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn token(dir: &Path, id: &str, role: &str, scope: &[&str]) -> String {
    let mut args = vec![
        "auth",
        "token",
        "--file",
        "tokens.json",
        "--id",
        id,
        "--role",
        role,
    ];
    for d in scope {
        args.extend(["--directorate", d]);
    }
    let o = Command::new(BIN)
        .current_dir(dir)
        .args(&args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

fn start(dir: &Path) -> Server {
    let agent = token(dir, "bench-agent", "agent", &DTS);
    let auditor = token(dir, "bench-auditor", "auditor", &[]);
    let admin = token(dir, "bench-admin", "admin", &[]);
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .args(["serve", "--listen", "127.0.0.1:0", "--auth", "tokens.json"])
        .args([
            "--digest-every",
            "0",
            "--create",
            "--max-live-clients",
            "5000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap()
        .to_string();
    // Every directorate's site authorised by the admin.
    let sites: Vec<String> = DTS
        .iter()
        .map(|d| {
            serde_json::json!({"type": "AuthoriseSite", "command_id": uuid::Uuid::now_v7(),
                "directorate": d, "site": format!("{d}-dt"), "site_kind": "dt_premises",
                "authorised_on": "2021-01-01"})
            .to_string()
        })
        .collect();
    load(&addr, &admin, 1, sites.len() as u64, &sites);
    Server {
        child,
        addr,
        agent,
        auditor,
    }
}

/// The server's peak resident memory, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// `n` live clients on one thread of their own: each connects, reads its first snapshot, then
/// follows until it has seen the snapshot of position `until` (sent on the channel when known).
/// Returns once all are connected; the handle gives (clients that saw the final head, slowest
/// time from the head being reached to the last client seeing it).
fn live_clients(
    addr: &str,
    token: &str,
    n: usize,
    until: tokio::sync::watch::Receiver<u64>,
) -> std::thread::JoinHandle<(usize, Duration)> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (addr, token) = (addr.to_string(), token.to_string());
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let connected = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
            let mut tasks = Vec::new();
            for _ in 0..n {
                let (addr, token, connected, mut until) =
                    (addr.clone(), token.clone(), connected.clone(), until.clone());
                tasks.push(tokio::spawn(async move {
                    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
                    let req = format!("GET /v1/projections/doses_by_directorate/live HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n");
                    s.write_all(req.as_bytes()).await.unwrap();
                    let mut buf = Vec::new();
                    let mut last_id = 0u64;
                    let mut told = false;
                    let mut chunk = [0u8; 16 * 1024];
                    loop {
                        let target = *until.borrow();
                        if target > 0 && last_id >= target {
                            return (true, Instant::now());
                        }
                        tokio::select! {
                            read = s.read(&mut chunk) => {
                                let got = read.unwrap_or(0);
                                if got == 0 {
                                    return (false, Instant::now());
                                }
                                buf.extend_from_slice(&chunk[..got]);
                                // The id of the last whole event received.
                                while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
                                    let event = String::from_utf8_lossy(&buf[..end]).to_string();
                                    buf.drain(..end + 2);
                                    if let Some(id) = event.lines().find_map(|l| l.strip_prefix("id: ")) {
                                        last_id = id.trim().parse().unwrap_or(last_id);
                                        if !told {
                                            told = true;
                                            connected.add_permits(1);
                                        }
                                    }
                                }
                            }
                            _ = until.changed() => {}
                        }
                    }
                }));
            }
            let _ = connected.acquire_many(n as u32).await.unwrap();
            ready_tx.send(()).unwrap();
            let mut ok = 0;
            let mut last = None::<Instant>;
            for t in tasks {
                if let Ok(Ok((done, at))) =
                    tokio::time::timeout(Duration::from_secs(120), t).await
                {
                    ok += usize::from(done);
                    last = Some(last.map_or(at, |l: Instant| l.max(at)));
                }
            }
            (ok, last.map_or(Duration::ZERO, |l| l.elapsed()))
        })
    });
    ready_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the live clients connected");
    handle
}

/// One scenario on a fresh ledger: (commands/s, p50 ms, p99 ms, server peak RSS MiB, live
/// clients that saw the final head, time from the last command to the last of them seeing it).
fn scenario(
    live: usize,
    clients: u64,
    per: u64,
    bodies: &[String],
) -> (f64, f64, f64, f64, usize, f64) {
    let d = tempfile::tempdir().unwrap();
    let server = start(d.path());
    let (until_tx, until_rx) = tokio::sync::watch::channel(0u64);
    let followers = (live > 0).then(|| live_clients(&server.addr, &server.auditor, live, until_rx));
    let (rate, p50, p99) = load(&server.addr, &server.agent, clients, per, bodies);
    let finished = Instant::now();
    // The head: the sites and every dose.
    let head = DTS.len() as u64 + clients * per;
    until_tx.send_replace(head);
    let (saw, _) = followers.map_or((0, Duration::ZERO), |f| f.join().unwrap());
    let lag = finished.elapsed().as_secs_f64();
    let rss = peak_rss_mib(server.child.id());
    (rate, p50, p99, rss, saw, lag)
}

fn main() {
    let quick =
        std::env::args().any(|a| a == "--test") || std::env::var_os("BENCH_QUICK").is_some();
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let live = env("BENCH_LIVE", if quick { 20 } else { 1000 }) as usize;
    let clients = env("BENCH_CLIENTS", if quick { 4 } else { 64 });
    let per = env("BENCH_PER_CLIENT", if quick { 20 } else { 300 });
    let rounds = env("BENCH_ROUNDS", if quick { 1 } else { 3 }).max(1);
    let bodies: Vec<String> = (0..clients * per)
        .map(|n| serde_json::to_string(&dose(n)).unwrap())
        .collect();
    let mut measured = Vec::new();
    for round in 0..rounds {
        let base = scenario(0, clients, per, &bodies);
        let with = scenario(live, clients, per, &bodies);
        eprintln!(
            "round {round}: without live clients {:.0} commands/s p99 {:.2} ms (server {:.0} MiB); with {live}: {:.0} commands/s p99 {:.2} ms (server {:.0} MiB), {} of {live} saw the final head, the last {:.2} s after the last command: throughput {:.2}×, p99 {:.2}×",
            base.0, base.2, base.3, with.0, with.2, with.3, with.4, with.5, with.0 / base.0, with.2 / base.2
        );
        assert_eq!(with.4, live, "every live client ends with the final totals");
        measured.push((with.0 / base.0, (base, with)));
    }
    let ((base, with), every_round) = median_round(measured);
    let table = [
        "| what | result | baseline (same run) | ratio |".to_string(),
        "|---|---|---|---|".to_string(),
        format!(
            "| `serve` (tokens, SQLite log): {clients} clients × {per} `POST /v1/commands` while {live} live clients follow `/v1/projections/doses_by_directorate/live`; median of {rounds} alternating rounds (throughput ratios {every_round}) | {:.0} commands/s; p50 {:.2} ms, p99 {:.2} ms; server peak RSS {:.0} MiB; {} of {live} live clients saw the final head, the last {:.2} s after the last command | the same without live clients: {:.0} commands/s; p50 {:.2} ms, p99 {:.2} ms; server peak RSS {:.0} MiB | throughput **{:.2}×**, p99 **{:.2}×** |",
            with.0, with.1, with.2, with.3, with.4, with.5, base.0, base.1, base.2, base.3, with.0 / base.0, with.2 / base.2
        ),
    ]
    .join("\n");
    println!("{table}");
    std::fs::create_dir_all("target").ok();
    std::fs::write("target/bench-live.md", format!("{table}\n")).ok();
}

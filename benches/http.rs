//! HTTP load benchmark: sustained commands/s and latency through `POST /v1/commands` (the real
//! axum server on a loopback port, bearer-token checked, keep-alive connections), against the
//! in-process command rate (`Ledger::handle`, same commands, same concurrency) measured in the
//! same run on a fresh store each.
//!
//! `cargo bench --bench http` (`BENCH_CLIENTS=N` concurrent clients, default 64;
//! `BENCH_PER_CLIENT=N` commands each, default 300). Bounded, loopback only.

use campaign_ledger::access::{hash_token, TokenEntry, TokenFile};
use campaign_ledger::app::{Ledger, Outcome};
use campaign_ledger::domain::*;
use campaign_ledger::http::{router, AppState, Auth, Role};
use campaign_ledger::projection::{load_definitions, Engine};
use campaign_ledger::store::Actor;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

mod common;
use common::{authorise_all, dose_command as dose, open_ledger, percentile, DTS};

const TOKEN: &str = "clt_bench_agent_token";

fn open(dir: &Path) -> (Arc<Ledger>, Arc<Engine>) {
    let (_, ledger) = open_ledger(dir);
    authorise_all(&ledger);
    let engine = Engine::open(
        &dir.join("ledger.projections.db"),
        load_definitions(None).unwrap(),
        Policy::default().time_zone,
    )
    .unwrap();
    (Arc::new(ledger), Arc::new(engine))
}

/// (commands/s, p50 ms, p99 ms) of `clients` threads each running `per` commands through `f`.
fn run(clients: u64, per: u64, f: impl Fn(u64, u64) -> f64 + Sync) -> (f64, f64, f64) {
    let start = Instant::now();
    let mut lat: Vec<f64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let f = &f;
                s.spawn(move || (0..per).map(|i| f(c, c * per + i)).collect::<Vec<f64>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let secs = start.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (
        (clients * per) as f64 / secs,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
    )
}

/// An event-driven load generator (like wrk): one thread, `clients` keep-alive HTTP/1.1
/// connections, each sending its commands one after the other. Returns (commands/s, p50 ms,
/// p99 ms).
fn load(addr: &str, clients: u64, per: u64, bodies: &[String]) -> (f64, f64, f64) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..clients {
            let addr = addr.to_string();
            let mine: Vec<String> = bodies[(c * per) as usize..((c + 1) * per) as usize].to_vec();
            tasks.push(tokio::spawn(async move {
                let s = tokio::net::TcpStream::connect(&addr).await.unwrap();
                s.set_nodelay(true).unwrap();
                let (r, mut w) = s.into_split();
                let mut r = tokio::io::BufReader::new(r);
                let mut lat = Vec::with_capacity(mine.len());
                for body in mine {
                    let t = Instant::now();
                    let req = format!(
                        "POST /v1/commands HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    w.write_all(req.as_bytes()).await.unwrap();
                    let mut status = String::new();
                    r.read_line(&mut status).await.unwrap();
                    assert!(status.contains(" 200 "), "{status}");
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        r.read_line(&mut line).await.unwrap();
                        if line.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                length = v.trim().parse().unwrap();
                            }
                        }
                    }
                    let mut b = vec![0; length];
                    r.read_exact(&mut b).await.unwrap();
                    lat.push(t.elapsed().as_secs_f64() * 1e3);
                    let answer = String::from_utf8(b).unwrap();
                    assert!(answer.contains("\"accepted\""), "{answer}");
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.unwrap());
        }
        let secs = start.elapsed().as_secs_f64();
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        (
            (clients * per) as f64 / secs,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
        )
    })
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
    let clients = env("BENCH_CLIENTS", if quick { 4 } else { 64 });
    let per = env("BENCH_PER_CLIENT", if quick { 20 } else { 300 });

    // In process: Ledger::handle, the same commands and concurrency.
    let d1 = tempfile::tempdir().unwrap();
    let (ledger, _) = open(d1.path());
    let actor = Actor {
        role: "agent".into(),
        ..Default::default()
    };
    let base = run(clients, per, |_, n| {
        let c = dose(n);
        let t = Instant::now();
        assert!(matches!(
            ledger.handle(&c, &actor).unwrap(),
            Outcome::Accepted(_)
        ));
        t.elapsed().as_secs_f64() * 1e3
    });
    drop(ledger);

    // Over HTTP: the real server (axum, 2 worker threads as `serve` runs it) on loopback,
    // token checked on every request; the clients are one event-driven load generator.
    let d2 = tempfile::tempdir().unwrap();
    let (ledger, engine) = open(d2.path());
    let auth = Auth::from_file(
        TokenFile {
            tokens: vec![TokenEntry {
                id: "bench-agent".into(),
                role: Role::Agent,
                directorates: DTS.iter().map(|s| s.to_string()).collect(),
                partner_centres: vec![],
                sha256: hash_token(TOKEN),
                expires_at: None,
            }],
        },
        &Reference::builtin(),
    )
    .unwrap();
    let state = AppState::new(ledger, engine).with_auth(auth);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    rt.spawn(async move {
        use axum::serve::ListenerExt as _;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, router(state)).await
    });
    let bodies: Vec<String> = (0..clients * per)
        .map(|n| serde_json::to_string(&dose(n)).unwrap())
        .collect();
    let http = load(&addr, clients, per, &bodies);
    let table = [
        "| what | result | baseline (same run) | ratio |".to_string(),
        "|---|---|---|---|".to_string(),
        format!(
            "| `POST /v1/commands` over loopback HTTP, {clients} keep-alive clients × {per} commands (one AdministerDose each, bearer token checked) | {:.0} commands/s; p50 {:.2} ms, p99 {:.2} ms | in process (`Ledger::handle`), same commands and concurrency: {:.0} commands/s; p50 {:.2} ms, p99 {:.2} ms | **{:.2}×** |",
            http.0, http.1, http.2, base.0, base.1, base.2, http.0 / base.0
        ),
    ]
    .join("\n");
    println!("{table}");
    std::fs::create_dir_all("target").ok();
    std::fs::write("target/bench-http.md", format!("{table}\n")).ok();
}

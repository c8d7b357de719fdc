//! HTTP load benchmark: sustained commands/s and latency through `POST /v1/commands` (the real
//! axum server on a loopback port, bearer-token checked, keep-alive connections), against the
//! in-process command rate (`Ledger::handle`, same commands, same concurrency) measured in the
//! same run on a fresh store each, in alternating rounds (`BENCH_ROUNDS`, default 3).
//!
//! `cargo bench --bench http` (`BENCH_CLIENTS=N` concurrent clients, default 64;
//! `BENCH_PER_CLIENT=N` commands each, default 300; `BENCH_ONLY=http` runs the HTTP side alone,
//! for `perf`). Bounded, loopback only.

use campaign_ledger::app::{Ledger, Outcome};
use campaign_ledger::domain::*;
use campaign_ledger::http::AppState;
use campaign_ledger::projection::{load_definitions, Engine};
use campaign_ledger::store::Actor;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

mod common;
use common::load::load;
use common::{
    authorise_all, bench_auth, cpu_secs, dose_command as dose, median_round, open_ledger,
    percentile, spawn_server,
};

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

/// In process: `Ledger::handle`, the same commands and concurrency, on a fresh store.
fn in_process(clients: u64, per: u64) -> (f64, f64, f64) {
    let d = tempfile::tempdir().unwrap();
    let (ledger, _) = open(d.path());
    let actor = Actor {
        role: "agent".into(),
        ..Default::default()
    };
    run(clients, per, |_, n| {
        let c = dose(n);
        let t = Instant::now();
        assert!(matches!(
            ledger.handle(&c, &actor).unwrap(),
            Outcome::Accepted(_)
        ));
        t.elapsed().as_secs_f64() * 1e3
    })
}

/// Over HTTP: the real server (axum, 2 worker threads as `serve` runs it) on loopback, on a
/// fresh store, token checked on every request; the clients are one event-driven load
/// generator.
fn over_http(clients: u64, per: u64, bodies: &[String]) -> (f64, f64, f64) {
    let d = tempfile::tempdir().unwrap();
    let (ledger, engine) = open(d.path());
    let state = AppState::new(ledger, engine).with_auth(bench_auth(TOKEN));
    let (rt, addr) = spawn_server(state);
    let result = load(&addr, TOKEN, clients, per, bodies);
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    result
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

    // Alternating rounds (BENCH_ROUNDS, default 3; 1 when quick), each on fresh stores: in
    // process, then over HTTP. Each ratio is of two neighbours in time; the row gives the
    // median round (by ratio) and every round's ratio.
    let rounds = env("BENCH_ROUNDS", if quick { 1 } else { 3 }).max(1);
    let bodies: Vec<String> = (0..clients * per)
        .map(|n| serde_json::to_string(&dose(n)).unwrap())
        .collect();
    let mut measured = Vec::new();
    for round in 0..rounds {
        let cpu = || {
            let (user, system) = cpu_secs();
            user + system
        };
        let c0 = cpu();
        // BENCH_ONLY=http runs the HTTP side alone (for `perf`).
        let base = if std::env::var("BENCH_ONLY").as_deref() == Ok("http") {
            (f64::NAN, f64::NAN, f64::NAN)
        } else {
            in_process(clients, per)
        };
        let c1 = cpu();
        let http = over_http(clients, per, &bodies);
        let c2 = cpu();
        let per_command = |secs: f64| secs * 1e6 / (clients * per) as f64;
        eprintln!(
            "round {round}: in process {:.0} commands/s ({:.0} µs CPU each), HTTP {:.0} commands/s ({:.0} µs CPU each, server and load generator): {:.2}×",
            base.0,
            per_command(c1 - c0),
            http.0,
            per_command(c2 - c1),
            http.0 / base.0
        );
        measured.push((http.0 / base.0, (base, http)));
    }
    let ((base, http), every_round) = median_round(measured);
    let table = [
        "| what | result | baseline (same run) | ratio |".to_string(),
        "|---|---|---|---|".to_string(),
        format!(
            "| `POST /v1/commands` over loopback HTTP, {clients} keep-alive clients × {per} commands (one AdministerDose each, bearer token checked); median of {rounds} alternating rounds, each: {every_round} | {:.0} commands/s; p50 {:.2} ms, p99 {:.2} ms | in process (`Ledger::handle`), same commands and concurrency, the round's neighbour: {:.0} commands/s; p50 {:.2} ms, p99 {:.2} ms | **{:.2}×** |",
            http.0, http.1, http.2, base.0, base.1, base.2, http.0 / base.0
        ),
    ]
    .join("\n");
    println!("{table}");
    std::fs::create_dir_all("target").ok();
    std::fs::write("target/bench-http.md", format!("{table}\n")).ok();
}

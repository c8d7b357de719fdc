//! Checkpoints and a witness on the command path: the append rate through `POST /v1/commands`
//! with the checkpointer running (a checkpoint signed at most once a second while the head
//! moves, each submitted to a local witness, `campaign-ledger witness serve`, a separate
//! process) against the same server without them, in alternating rounds on fresh stores; and
//! how long after the head moves a checkpoint cosigned by the witness states it.
//!
//! `cargo bench --bench checkpoints` (`BENCH_CLIENTS`, default 64; `BENCH_PER_CLIENT`, default
//! 500; `BENCH_ROUNDS`, default 3; `BENCH_MOVES`, head moves from rest timed per round, default
//! 5). Bounded, loopback only.

use campaign_ledger::app::{Ledger, Outcome};
use campaign_ledger::audit::{LatestCheckpoint, LedgerKey};
use campaign_ledger::bus::witnesses::WitnessTarget;
use campaign_ledger::domain::Policy;
use campaign_ledger::envelope::note::Note;
use campaign_ledger::http::AppState;
use campaign_ledger::projection::{load_definitions, Engine};
use campaign_ledger::store::{Actor, EventStore};
use std::io::BufRead as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::load::load;
use common::{
    authorise_all, bench_auth, dose_command as dose, open_ledger, percentile, spawn_server,
};

const TOKEN: &str = "clt_bench_agent_token";
const WITNESS: &str = "witness.bench/w1";

/// A witness process (killed when dropped) and its `URL=KEY` for `WitnessTarget::parse`.
struct WitnessProcess(std::process::Child, String);

impl Drop for WitnessProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `campaign-ledger witness serve` in `dir`, watching the log whose verifier key is `log_key`.
fn start_witness(dir: &Path, log_key: &str) -> WitnessProcess {
    let bin = env!("CARGO_BIN_EXE_campaign-ledger");
    let key = dir.join("witness.key");
    let out = std::process::Command::new(bin)
        .args(["witness", "keygen", "--name", WITNESS, "--key"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vkey = String::from_utf8(out.stdout).unwrap().trim().to_string();
    std::fs::write(dir.join("logs.txt"), format!("{log_key}\n")).unwrap();
    let mut child = std::process::Command::new(bin)
        .args([
            "witness",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--name",
            WITNESS,
            "--key",
        ])
        .arg(&key)
        .arg("--logs")
        .arg(dir.join("logs.txt"))
        .arg("--state")
        .arg(dir.join("witness.db"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("http://"), "witness said {line:?}");
    WitnessProcess(child, format!("{url}={vkey}"))
}

/// The size of the newest checkpoint the witness cosigned (0 when none yet).
fn cosigned_size(latest: &LatestCheckpoint) -> u64 {
    latest
        .get()
        .and_then(|d| Some((d.position, Note::parse(d.checkpoint.as_deref()?).ok()?)))
        .filter(|(_, n)| n.signatures.iter().any(|s| s.name == WITNESS))
        .map_or(0, |(p, _)| p)
}

/// What one round with checkpoints measured.
struct Lags {
    /// Under load: for each sample of the head, the time until a cosigned checkpoint stated it
    /// (ms).
    under_load: Vec<f64>,
    /// From rest: one command, then the time until a cosigned checkpoint stated it (ms).
    from_rest: Vec<f64>,
}

/// One round on a fresh store: commands/s, and with `checkpoints` the lags.
fn round(
    clients: u64,
    per: u64,
    bodies: &[String],
    checkpoints: bool,
    moves: u64,
) -> (f64, Option<Lags>) {
    let d = tempfile::tempdir().unwrap();
    let (store, ledger) = open_ledger(d.path());
    authorise_all(&ledger);
    let ledger = Arc::new(ledger);
    let engine = Engine::open(
        &d.path().join("ledger.projections.db"),
        load_definitions(None).unwrap(),
        Policy::default().time_zone,
    )
    .unwrap();
    let mut state = AppState::new(ledger.clone(), Arc::new(engine)).with_auth(bench_auth(TOKEN));
    let latest = Arc::new(LatestCheckpoint::default());
    let mut witness = None;
    if checkpoints {
        let key = LedgerKey::generate(&d.path().join("signing.key")).unwrap();
        let id = campaign_ledger::audit::tree::ledger_id(store.as_ref())
            .unwrap()
            .unwrap();
        witness = Some(start_witness(d.path(), &key.verifier(&id).to_string()));
        state = state.with_signing_key(key);
        state.checkpoints = Some(latest.clone());
    }
    let signing = state.signing.clone();
    let (rt, addr) = spawn_server(state);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    if let (Some(key), Some(w)) = (signing, &witness) {
        rt.spawn(campaign_ledger::bus::publish_checkpoints(
            store.clone(),
            key,
            campaign_ledger::bus::CheckpointOptions {
                witnesses: vec![WitnessTarget::parse(&w.1).unwrap()],
                access_log: None,
                file: d.path().join("checkpoint.txt"),
                nats_url: None,
                health: Default::default(),
            },
            latest.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
    }
    let done = AtomicBool::new(false);
    let (rate, samples) = std::thread::scope(|s| {
        // Every 20 ms: the head, and the newest cosigned checkpoint's size.
        let sampler = s.spawn(|| {
            let mut samples = Vec::new();
            while !done.load(Ordering::Relaxed) {
                samples.push((
                    Instant::now(),
                    store.head_position().unwrap(),
                    cosigned_size(&latest),
                ));
                std::thread::sleep(Duration::from_millis(20));
            }
            samples
        });
        let rate = load(&addr, TOKEN, clients, per, bodies).0;
        if checkpoints {
            // Until a checkpoint states the last command.
            let last = store.head_position().unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while cosigned_size(&latest) < last && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        done.store(true, Ordering::Relaxed);
        (rate, sampler.join().unwrap())
    });
    let lags = checkpoints.then(|| Lags {
        under_load: lags_of(&samples),
        from_rest: (0..moves)
            .map(|n| from_rest(&ledger, store.as_ref(), &latest, n))
            .collect(),
    });
    let _ = stop.send(());
    rt.shutdown_timeout(Duration::from_secs(5));
    drop(witness);
    (rate, lags)
}

/// For each sample where the head moved, the time until the first sample whose cosigned
/// checkpoint stated that head (ms).
fn lags_of(samples: &[(Instant, u64, u64)]) -> Vec<f64> {
    let mut lags = Vec::new();
    for (i, (t, head, _)) in samples.iter().enumerate() {
        if i > 0 && samples[i - 1].1 == *head {
            continue;
        }
        if let Some((t2, _, _)) = samples[i..].iter().find(|(_, _, cp)| cp >= head) {
            lags.push(t2.duration_since(*t).as_secs_f64() * 1e3);
        }
    }
    lags
}

/// After a rest longer than a checkpoint's period, one command, then the time until a checkpoint
/// cosigned by the witness states it (ms).
fn from_rest(ledger: &Ledger, store: &dyn EventStore, latest: &LatestCheckpoint, n: u64) -> f64 {
    std::thread::sleep(Duration::from_millis(1200));
    let actor = Actor {
        role: "agent".into(),
        ..Default::default()
    };
    let t = Instant::now();
    let c = dose(10_000_000 + n);
    assert!(matches!(
        ledger.handle(&c, &actor).unwrap(),
        Outcome::Accepted(_)
    ));
    let head = store.head_position().unwrap();
    while cosigned_size(latest) < head {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no cosigned checkpoint in 10 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    t.elapsed().as_secs_f64() * 1e3
}

fn stats(mut v: Vec<f64>) -> String {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    format!(
        "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} samples)",
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        v[v.len() - 1],
        v.len()
    )
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
    let per = env("BENCH_PER_CLIENT", if quick { 20 } else { 500 });
    let rounds = env("BENCH_ROUNDS", if quick { 1 } else { 3 }).max(1);
    let moves = env("BENCH_MOVES", if quick { 1 } else { 5 });
    let bodies: Vec<String> = (0..clients * per)
        .map(|n| serde_json::to_string(&dose(n)).unwrap())
        .collect();
    // Alternating: without, with; each ratio is of two neighbours in time.
    let mut ratios = Vec::new();
    let (mut under_load, mut from_rest) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let (without, _) = round(clients, per, &bodies, false, 0);
        let (with, lags) = round(clients, per, &bodies, true, moves);
        let lags = lags.unwrap();
        eprintln!(
            "round {r}: without {without:.0} commands/s, with checkpoints and a witness {with:.0} commands/s: {:.3}×; cosigned checkpoint after the head moved: under load {}, from rest {}",
            with / without,
            stats(lags.under_load.clone()),
            stats(lags.from_rest.clone()),
        );
        ratios.push((with / without, (without, with)));
        under_load.extend(lags.under_load);
        from_rest.extend(lags.from_rest);
    }
    let ((without, with), every) = common::median_round(ratios);
    let table = [
        "| what | result | baseline (same run) | ratio |".to_string(),
        "|---|---|---|---|".to_string(),
        format!(
            "| `POST /v1/commands`, {clients} keep-alive clients × {per} commands, with the checkpointer and a local witness process (a checkpoint at most once a second, each cosigned); median of {rounds} alternating rounds, each: {every} | {with:.0} commands/s | the same server without a signing key or witness, the round's neighbour: {without:.0} commands/s | **{:.3}×** |",
            with / without
        ),
        format!(
            "| a checkpoint cosigned by the witness states the head, after the head moved from rest (one command after {} ms quiet) | {} | the period between two checkpoints: 1000 ms | — |",
            1200,
            stats(from_rest)
        ),
        format!(
            "| the same under the load above (head sampled every 20 ms) | {} | the period: 1000 ms | — |",
            stats(under_load)
        ),
    ]
    .join("\n");
    println!("{table}");
    std::fs::create_dir_all("target").ok();
    std::fs::write("target/bench-checkpoints.md", format!("{table}\n")).ok();
}

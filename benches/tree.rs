//! The Merkle tree's costs, each against a baseline measured in the same run.
//! Run: `cargo bench --bench tree` (BENCH_TREE_EVENTS=N for the proof log, default 10,000,000;
//! BENCH_BUILD_EVENTS=N for the build, default 1,000,000). Prints a Markdown table.
//!
//! - building the tree of a log written before it existed (what the first open after the
//!   upgrade does), against reading the events' hashes alone;
//! - the tree's storage, bytes per event;
//! - inclusion and consistency proofs on a long log, p50 / p99, against `audit verify` of that
//!   log for scale.
//!
//! The append rate with and without the tree is `cargo bench --bench ledger` run on this
//! commit and on the one before the tree (BENCHMARKS.md says which).

mod common;
use campaign_ledger::audit::tree::{prove_consistency, prove_inclusion};
use campaign_ledger::store::{
    self, Actor, AppendRequest, CommandMeta, EventStore, ExpectedVersion, NewEvent, SystemClock,
};
use common::percentile;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

fn open(path: &Path) -> Arc<dyn EventStore> {
    store::open(&format!("sqlite:{}", path.display()), Arc::new(SystemClock)).unwrap()
}

/// A log of `n` events (100 per append, so that filling it is quick), tree included.
fn fill(path: &Path, n: u64) {
    let s = open(path);
    let occurred = chrono::DateTime::parse_from_rfc3339("2021-12-17T10:00:00+01:00").unwrap();
    let mut k = 0u64;
    while k < n {
        let events: Vec<NewEvent> = (k..(k + 100).min(n))
            .map(|i| NewEvent {
                event_type: "DoseAdministered".into(),
                schema_version: 2,
                occurred_at: occurred,
                data: format!(
                    "{{\"person_ref\":\"p-{i:012x}\",\"directorate\":\"lyon\",\"site\":\"lyon-dt\",\"dose\":\"first\"}}"
                ),
            })
            .collect();
        k += events.len() as u64;
        s.append(AppendRequest {
            stream_id: format!("bench/{k}"),
            expected: ExpectedVersion::Exact(0),
            command: CommandMeta {
                command_id: Uuid::now_v7(),
                content_hash: [0; 32],
                correlation_id: None,
                actor: Actor {
                    role: "bench".into(),
                    ..Default::default()
                },
            },
            events,
            person: None,
        })
        .unwrap();
    }
}

fn pages(c: &rusqlite::Connection) -> i64 {
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    let count: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
    let size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    count * size
}

/// Removes the tree, as a log written before it would be; returns the bytes it took.
fn strip_tree(path: &Path) -> i64 {
    let c = rusqlite::Connection::open(path).unwrap();
    let with = pages(&c);
    c.execute_batch(
        "DROP TRIGGER merkle_append_only_d; DELETE FROM merkle; DELETE FROM meta WHERE key = 'merkle_size'; VACUUM;",
    )
    .unwrap();
    with - pages(&c)
}

/// A small deterministic generator (xorshift), so that runs ask for the same proofs.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

fn main() {
    let quick =
        std::env::args().any(|a| a == "--test") || std::env::var_os("BENCH_QUICK").is_some();
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(if quick { 20_000 } else { default })
    };
    let (build_n, proof_n) = (
        env("BENCH_BUILD_EVENTS", 1_000_000),
        env("BENCH_TREE_EVENTS", 10_000_000),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut out = vec![
        "| what | result | baseline (same run) | ratio |".to_string(),
        "|---|---|---|---|".to_string(),
    ];

    // Building the tree of an older log, and what the tree takes on disk.
    let path = dir.path().join("build.db");
    fill(&path, build_n);
    let bytes = strip_tree(&path);
    let c = rusqlite::Connection::open(&path).unwrap();
    let t = Instant::now();
    let mut read = 0u64;
    let mut st = c
        .prepare("SELECT hash FROM events ORDER BY position")
        .unwrap();
    let mut rows = st.query([]).unwrap();
    while let Some(r) = rows.next().unwrap() {
        read += r.get_ref(0).unwrap().as_blob().unwrap().len() as u64 / 32;
    }
    let read_rate = read as f64 / t.elapsed().as_secs_f64();
    drop(rows);
    drop(st);
    drop(c);
    let t = Instant::now();
    let s = open(&path);
    let build_rate = build_n as f64 / t.elapsed().as_secs_f64();
    assert_eq!(s.tree_size().unwrap(), build_n);
    drop(s);
    out.push(format!(
        "| building the tree of an existing {build_n}-event log (first open after the upgrade; every node written) | {build_rate:.0} events/s | reading the events' hashes alone: {read_rate:.0} events/s | **{:.2}×** |",
        build_rate / read_rate
    ));
    out.push(format!(
        "| the tree's storage (table `merkle`, SQLite pages) | {:.1} bytes per event | the target: 64 bytes per event | **{:.2}×** |",
        bytes as f64 / build_n as f64,
        bytes as f64 / build_n as f64 / 64.0
    ));

    // Proofs on a long log, against `audit verify` of it.
    let path = dir.path().join("proofs.db");
    let t = Instant::now();
    fill(&path, proof_n);
    let fill_secs = t.elapsed().as_secs_f64();
    let s = open(&path);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut timed = |f: &mut dyn FnMut(&mut u64)| {
        let mut ms: Vec<f64> = (0..if quick { 200 } else { 10_000 })
            .map(|_| {
                let t = Instant::now();
                f(&mut x);
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        (percentile(&ms, 0.5), percentile(&ms, 0.99))
    };
    let inclusion = timed(&mut |x| {
        let p = 1 + next(x) % proof_n;
        prove_inclusion(s.as_ref(), p, proof_n).unwrap();
    });
    let consistency = timed(&mut |x| {
        let first = 1 + next(x) % proof_n;
        prove_consistency(s.as_ref(), first, proof_n).unwrap();
    });
    let t = Instant::now();
    campaign_ledger::audit::verify(s.as_ref(), &mut |_| {}).unwrap();
    let verify_ms = t.elapsed().as_secs_f64() * 1e3;
    for (what, (p50, p99)) in [("inclusion", inclusion), ("consistency", consistency)] {
        out.push(format!(
            "| {what} proof on a {proof_n}-event log (a random event / older size, against the head; with the root) | p50 {p50:.3} ms, p99 {p99:.3} ms | `audit verify` of the same log: {verify_ms:.0} ms | p99 **{:.6}×** |",
            p99 / verify_ms
        ));
    }
    eprintln!("(filling the {proof_n}-event log took {fill_secs:.0} s)");
    let table = out.join("\n");
    println!("{table}");
    std::fs::create_dir_all("target").ok();
    std::fs::write("target/bench-tree.md", format!("{table}\n")).ok();
}

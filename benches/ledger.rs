//! Benchmarks of the ledger core, each against a baseline measured in the same run.
//! Run: `cargo bench --bench ledger` (BENCH_EVENTS=N to change the replay store size, default 1,000,000).
//! Prints a Markdown table; BENCHMARKS.md records the results.

use campaign_ledger::app::Outcome;
use campaign_ledger::domain::*;
use campaign_ledger::projection::{load_definitions, Engine};
use campaign_ledger::store::{
    self, Actor, AppendRequest, CommandMeta, EventStore, ExpectedVersion, NewEvent, SystemClock,
};
use chrono::{Duration, NaiveDate};
use rusqlite::params;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

mod common;
use common::*;

/// Raw SQLite: the same schema and bytes, inserted in durable batched transactions.
fn raw_inserts(dir: &Path, rows: &[(String, String)], batch: usize) -> f64 {
    std::fs::create_dir_all(dir).unwrap();
    let conn = rusqlite::Connection::open(dir.join("raw.db")).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE events (position INTEGER PRIMARY KEY, event_id TEXT NOT NULL, stream_id TEXT NOT NULL,
           stream_version INTEGER NOT NULL, event_type TEXT NOT NULL, schema_version INTEGER NOT NULL,
           occurred_at TEXT NOT NULL, recorded_at TEXT NOT NULL, command_id TEXT NOT NULL, correlation_id TEXT,
           actor TEXT NOT NULL, data TEXT NOT NULL, prev_hash BLOB NOT NULL, hash BLOB NOT NULL);
         CREATE UNIQUE INDEX events_stream ON events(stream_id, stream_version);",
    )
    .unwrap();
    let t = Instant::now();
    let mut pos = 0i64;
    for chunk in rows.chunks(batch) {
        let tx = conn.unchecked_transaction().unwrap();
        {
            let mut st = tx.prepare_cached("INSERT INTO events VALUES (?1,?2,?3,1,'DoseAdministered',1,'2021-10-01T10:00:00+02:00','2026-01-01T00:00:00.000000Z',?4,'bench','{\"role\":\"bench\"}',?5,?6,?7)").unwrap();
            for (stream, data) in chunk {
                pos += 1;
                st.execute(params![
                    pos,
                    Uuid::now_v7().to_string(),
                    stream,
                    Uuid::now_v7().to_string(),
                    data,
                    &[0u8; 32][..],
                    &[1u8; 32][..]
                ])
                .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    rows.len() as f64 / t.elapsed().as_secs_f64()
}

/// What one run of the 64 writers gave.
struct AppendRun {
    rate: f64,
    /// CPU per command, µs (user, system).
    cpu: (f64, f64),
    /// Appends per group commit, on average.
    group: f64,
    /// The rows appended (stream id, data), for the raw baselines.
    rows: Vec<(String, String)>,
}

/// 64 writers, each sending 500 `AdministerDose` commands through the whole command path, on a
/// fresh store, with or without person keys.
fn run_appends(keys: bool) -> AppendRun {
    let writers = 64;
    let per = 500u64;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(
        store::SqliteStore::open(dir.path().join("ledger.db"), Arc::new(SystemClock)).unwrap(),
    );
    let store: Arc<dyn EventStore> = sqlite.clone();
    let ledger = keyed_ledger(store.clone(), dir.path(), keys);
    authorise_all(&ledger);
    let ledger = Arc::new(ledger);
    // People who will come back for their second dose (recorded before the timed run).
    let returning = writers * per / 3;
    let actor = Actor {
        role: "bench".into(),
        ..Default::default()
    };
    for i in 0..returning {
        assert!(matches!(
            ledger
                .handle(&dose_command(10_000_000 + i), &actor)
                .unwrap(),
            Outcome::Accepted(_)
        ));
    }
    let stats0 = sqlite.commit_stats();
    let cpu0 = cpu_secs();
    let t = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let ledger = ledger.clone();
            std::thread::spawn(move || {
                let actor = Actor {
                    role: "bench".into(),
                    ..Default::default()
                };
                for i in 0..per {
                    // Two new people for one returning for a second dose (which reads their stream).
                    let k = w * per + i;
                    let c = if k % 3 == 2 {
                        second_command(10_000_000 + k / 3)
                    } else {
                        dose_command(k)
                    };
                    assert!(matches!(
                        ledger.handle(&c, &actor).unwrap(),
                        Outcome::Accepted(_)
                    ));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let n = writers * per;
    let rate = n as f64 / t.elapsed().as_secs_f64();
    let cpu1 = cpu_secs();
    let stats1 = sqlite.commit_stats();
    let (commits, appends) = (stats1.0 - stats0.0, stats1.1 - stats0.1);
    let events = store.read_all(19 + returning, n as usize).unwrap();
    AppendRun {
        rate,
        cpu: (
            (cpu1.0 - cpu0.0) / n as f64 * 1e6,
            (cpu1.1 - cpu0.1) / n as f64 * 1e6,
        ),
        group: appends as f64 / commits as f64,
        rows: events.into_iter().map(|e| (e.stream_id, e.data)).collect(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn bench_appends(out: &mut Vec<String>) {
    // With and without person keys, alternating (BENCH_ROUNDS rounds of each, default 3):
    // the machine's drift falls on both alike; medians are reported.
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    // BENCH_KEYS=with (or without) runs one side alone, for a profiler.
    let side = std::env::var("BENCH_KEYS").unwrap_or_default();
    if side == "with" || side == "without" {
        let r = run_appends(side == "with");
        eprintln!(
            "person keys {side}: {:.0} commands/s ({:.1} + {:.1} µs CPU, groups of {:.1})",
            r.rate, r.cpu.0, r.cpu.1, r.group
        );
        return;
    }
    let (mut keyed, mut clear) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let k = run_appends(true);
        let c = run_appends(false);
        eprintln!(
            "round {round}: with person keys {:.0} commands/s ({:.1} + {:.1} µs CPU, groups of {:.1}); without {:.0} commands/s ({:.1} + {:.1} µs, groups of {:.1})",
            k.rate, k.cpu.0, k.cpu.1, k.group, c.rate, c.cpu.0, c.cpu.1, c.group
        );
        keyed.push(k);
        clear.push(c);
    }
    let rate = median(keyed.iter().map(|r| r.rate).collect());
    let clear_rate = median(clear.iter().map(|r| r.rate).collect());
    let cpu = |rs: &[AppendRun]| {
        (
            median(rs.iter().map(|r| r.cpu.0).collect()),
            median(rs.iter().map(|r| r.cpu.1).collect()),
        )
    };
    let (kc, cc) = (cpu(&keyed), cpu(&clear));
    let group = median(keyed.iter().map(|r| r.group).collect());
    // The same bytes, raw (the keyed run's rows: sealed refs, pseudonymous streams).
    let rows = &keyed[0].rows;
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_inserts(dir.path(), rows, 256);
    let raw_same_groups = raw_inserts(
        &dir.path().join("same"),
        rows,
        group.round().max(1.0) as usize,
    );
    out.push(format!(
        "| durable commands, 64 concurrent writers, whole command path with person keys (group commit; ⅔ first doses of new people, ⅓ second doses that read the person's stream; median of {rounds}) | {rate:.0} commands/s; CPU per command {:.1} µs user + {:.1} µs system | raw batched SQLite inserts of the same rows (256/transaction, WAL, synchronous=FULL, same unique index): {raw:.0} rows/s | **{:.2}×** |",
        kc.0, kc.1, rate / raw
    ));
    out.push(format!(
        "| the same benchmark without person keys (refs in clear), alternating with it | {clear_rate:.0} commands/s; CPU per command {:.1} µs user + {:.1} µs system | with person keys: {rate:.0} commands/s | keys/none **{:.2}×** |",
        cc.0, cc.1, rate / clear_rate
    ));
    out.push(format!(
        "| the same run, against raw inserts in transactions of the ledger's own average group ({group:.0} rows) | {rate:.0} commands/s | {raw_same_groups:.0} rows/s | **{:.2}×** |",
        rate / raw_same_groups
    ));
    // Single writer latency.
    let dir = tempfile::tempdir().unwrap();
    let (_store, ledger) = open_ledger(dir.path());
    authorise_all(&ledger);
    let actor = Actor {
        role: "bench".into(),
        ..Default::default()
    };
    // Interleaved, one command then one raw insert, so that the disk's slow moments fall on
    // both alike.
    let conn = rusqlite::Connection::open(dir.path().join("one.db")).unwrap();
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);").unwrap();
    let (mut lat, mut raw) = (Vec::new(), Vec::new());
    for i in 0..2000 {
        let c = dose_command(1_000_000 + i);
        let t = Instant::now();
        assert!(matches!(
            ledger.handle(&c, &actor).unwrap(),
            Outcome::Accepted(_)
        ));
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        conn.execute("INSERT INTO t(v) VALUES (?1)", [format!("row {i}")])
            .unwrap();
        raw.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    raw.sort_by(|a, b| a.partial_cmp(b).unwrap());
    out.push(format!(
        "| single writer, command → durable acknowledgement, with person keys (interleaved with the baseline) | p50 {:.3} ms, p99 {:.3} ms | one durable single-row SQLite insert+commit: p50 {:.3} ms, p99 {:.3} ms | p99 {:.2}× |",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&raw, 0.5),
        percentile(&raw, 0.99),
        percentile(&lat, 0.99) / percentile(&raw, 0.99)
    ));
}

/// Builds a store of `n` events of the campaign's event mix, appended through the store API in
/// multi-event appends (the command path is measured above).
fn build_big_store(dir: &Path, n: u64) -> Arc<dyn EventStore> {
    let store = store::open(
        &format!("sqlite:{}", dir.join("ledger.db").display()),
        Arc::new(SystemClock),
    )
    .unwrap();
    let per_append = 100u64;
    let mut k = 0u64;
    while k < n {
        let mut events = Vec::new();
        for j in 0..per_append.min(n - k) {
            let i = k + j;
            let dt = DTS[(i % 19) as usize].to_string();
            let day = ((i / 2_000) % 120) as i64;
            let ev = match i % 100 {
                0..=84 => Event::DoseAdministered(DoseAdministered {
                    person_ref: format!("p-{i:012x}"),
                    age_band: AgeBand::A30to39,
                    recipient: if i.is_multiple_of(20) {
                        Recipient::Agent
                    } else {
                        Recipient::User
                    },
                    site: format!("{dt}-dt"),
                    directorate: dt,
                    session_id: i.is_multiple_of(7).then(|| format!("s-{}", i / 5_000)),
                    product: Product::Comirnaty,
                    lot: "FF2832".into(),
                    dose: [DoseKind::First, DoseKind::Second, DoseKind::Booster][(i % 3) as usize],
                    dose_number: 1 + (i % 3) as u32,
                    series_doses: 2,
                    administered_at: at(day, (i % 480) as i64),
                    prior_infection_counted: false,
                }),
                85..=87 => Event::DoseEntryReversed(DoseEntryReversed {
                    reversed_event_id: Uuid::nil(),
                    reversed_command_id: Uuid::nil(),
                    reason: ReversalReason::EnteredInError,
                    person_ref: format!("p-{i:012x}"),
                    age_band: AgeBand::A30to39,
                    recipient: Recipient::User,
                    site: format!("{dt}-dt"),
                    directorate: dt,
                    session_id: None,
                    product: Product::Comirnaty,
                    dose: DoseKind::First,
                    administered_at: at(day, 30),
                }),
                88..=93 => Event::TicketIssued(TicketIssued {
                    ticket_id: format!("t-{i}"),
                    person_ref: format!("p-{i:012x}"),
                    directorate: dt,
                    partner_centre: "Centre".into(),
                    issued_at: at(day, 60),
                    valid_until: NaiveDate::from_ymd_opt(2022, 1, 1).unwrap(),
                }),
                94..=97 => Event::TicketRedeemed(TicketRedeemed {
                    ticket_id: format!("t-{i}"),
                    directorate: dt,
                    partner_centre: "Centre".into(),
                    redeemed_at: at(day, 90),
                    dose: DoseKind::First,
                }),
                98 => Event::SessionOpened(SessionOpened {
                    session_id: format!("s-{}", i / 5_000),
                    directorate: dt,
                    site: "x".into(),
                    opened_at: at(day, 0),
                }),
                _ => Event::SessionClosed(SessionClosed {
                    session_id: format!("s-{}", i / 5_000),
                    directorate: dt,
                    site: "x".into(),
                    opened_at: at(day, 0),
                    closed_at: at(day, 400),
                    attendance: (i % 50) as u32,
                }),
            };
            events.push(NewEvent {
                event_type: ev.event_type().into(),
                schema_version: ev.schema_version(),
                occurred_at: ev.occurred_at(),
                data: ev.data_json(),
            });
        }
        k += events.len() as u64;
        store
            .append(AppendRequest {
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
    store
}

fn bench_replay(out: &mut Vec<String>, n: u64) {
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let store = build_big_store(dir.path(), n);
    eprintln!(
        "built a {n}-event store in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let mut seen = 0u64;
    store
        .scan(0, u64::MAX, &mut |e| {
            seen += (!e.data.is_empty()) as u64;
            true
        })
        .unwrap();
    let scan_rate = n as f64 / t.elapsed().as_secs_f64();
    eprintln!("scan only: {scan_rate:.0} events/s");

    // audit verify: the whole chain recomputed, against the bare scan of the same rows.
    let t = Instant::now();
    let v = campaign_ledger::audit::verify(store.as_ref(), &mut |_| {}).unwrap();
    let verify_rate = v.events as f64 / t.elapsed().as_secs_f64();
    assert_eq!(v.events, n);
    out.push(format!(
        "| `audit verify` of a {n}-event store (every hash recomputed, positions, versions, times) | {verify_rate:.0} events/s | the same rows scanned without any check: {scan_rate:.0} events/s | **{:.2}×** |",
        verify_rate / scan_rate
    ));
    // ... and from an export file alone, against reading and parsing that file.
    let export = dir.path().join("export.jsonl");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&export).unwrap());
        campaign_ledger::audit::export(store.as_ref(), &Default::default(), &mut f).unwrap();
    }
    let t = Instant::now();
    let mut parsed = 0u64;
    let mut r = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&export).unwrap());
    let mut line = Vec::new();
    while {
        line.clear();
        std::io::BufRead::read_until(&mut r, b'\n', &mut line).unwrap() > 0
    } {
        parsed += campaign_ledger::envelope::cloudevents::decode_export(&line).is_ok() as u64;
    }
    let parse_rate = parsed as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut r = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&export).unwrap());
    let v = campaign_ledger::audit::verify_export(&mut r, None, None).unwrap();
    let export_rate = v.events as f64 / t.elapsed().as_secs_f64();
    out.push(format!(
        "| `audit verify --export` of the same log as a {:.0} MB export file | {export_rate:.0} events/s | reading and decoding the same lines without any check: {parse_rate:.0} events/s | **{:.2}×** |",
        std::fs::metadata(&export).unwrap().len() as f64 / 1e6,
        export_rate / parse_rate
    ));
    std::fs::remove_file(&export).ok();
    let t = Instant::now();
    let mut c = 0usize;
    store
        .scan(0, u64::MAX, &mut |e| {
            c += e.data.to_string().len();
            true
        })
        .unwrap();
    eprintln!(
        "scan + copy: {:.0} events/s",
        n as f64 / t.elapsed().as_secs_f64()
    );
    // Baseline: plain read + serde decode on one thread.
    let t = Instant::now();
    let mut decoded = 0u64;
    store
        .scan(0, u64::MAX, &mut |e| {
            let v: serde_json::Value = serde_json::from_str(e.data).unwrap();
            decoded += v.is_object() as u64;
            true
        })
        .unwrap();
    let base = decoded as f64 / t.elapsed().as_secs_f64();

    let defs = load_definitions(None).unwrap();
    let names: Vec<String> = defs.iter().map(|d| d.name.clone()).collect();
    let engine = Engine::open(&dir.path().join("p.db"), defs, chrono_tz::Europe::Paris).unwrap();
    let t = Instant::now();
    let head = engine.catch_up(store.as_ref()).unwrap();
    let rate = head as f64 / t.elapsed().as_secs_f64();
    out.push(format!(
        "| replay of a {n}-event store through all {} shipped projections (state saved at the end) | {:.0} events/s | plain read + serde_json decode, one thread: {:.0} events/s | **{:.2}×** |",
        names.len(), rate, base, rate / base
    ));

    // Report as of arbitrary dates, from stored state (a fresh engine loads it from disk).
    let engine = Engine::open(
        &dir.path().join("p.db"),
        load_definitions(None).unwrap(),
        chrono_tz::Europe::Paris,
    )
    .unwrap();
    let mut times = Vec::new();
    for (i, name) in [
        "doses_by_directorate",
        "doses_by_day",
        "tickets_by_directorate",
        "session_attendance",
    ]
    .iter()
    .cycle()
    .take(40)
    .enumerate()
    {
        let day =
            NaiveDate::from_ymd_opt(2021, 9, 1).unwrap() + Duration::days((i * 7 % 120) as i64);
        let t = Instant::now();
        let r = engine
            .report(store.as_ref(), name, Some(day), None)
            .unwrap();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(r.position == head);
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let t = Instant::now();
    let known = chrono::Utc::now().fixed_offset();
    engine
        .report(
            store.as_ref(),
            "doses_by_directorate",
            Some(NaiveDate::from_ymd_opt(2021, 11, 1).unwrap()),
            Some(known),
        )
        .unwrap();
    let replay_ms = t.elapsed().as_secs_f64() * 1000.0;
    out.push(format!(
        "| `report --as-of` an arbitrary date, {n}-event store (40 reads of 4 projections, from stored state) | median {:.2} ms, max {:.2} ms | the same report with `--known-at` (replays the log): {:.0} ms | max {:.4}× |",
        percentile(&times, 0.5), times[times.len() - 1], replay_ms, times[times.len() - 1] / replay_ms
    ));

    // Peak memory of a rebuild in a separate process.
    let bin = env!("CARGO_BIN_EXE_campaign-ledger");
    let rss = |args: &[&str], cwd: &Path| -> String {
        let o = std::process::Command::new(bin)
            .current_dir(cwd)
            .args(args)
            .env("LEDGER_REPORT_RSS", "1")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .find(|l| l.starts_with("peak RSS"))
            .unwrap_or("peak RSS ?")
            .trim_start_matches("peak RSS ")
            .to_string()
    };
    std::fs::remove_file(dir.path().join("ledger.projections.db")).ok();
    let store_url = format!("sqlite:{}", dir.path().join("ledger.db").display());
    drop(store);
    let rebuild = rss(
        &[
            "--store",
            &store_url,
            "projections",
            "rebuild",
            "doses_by_directorate",
        ],
        dir.path(),
    );
    let demo_dir = tempfile::tempdir().unwrap();
    let demo = rss(&["demo"], demo_dir.path());
    let verify = rss(&["--store", &store_url, "audit", "verify"], dir.path());
    out.push(format!(
        "| peak RSS | `demo`: {demo}; `projections rebuild` on the {n}-event store (all projections built first): {rebuild} | `audit verify` of the same store: {verify} | — |"
    ));
}

fn main() {
    // `cargo test --benches` runs this file as a test: keep that quick.
    let quick =
        std::env::args().any(|a| a == "--test") || std::env::var_os("BENCH_QUICK").is_some();
    let n: u64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if quick { 20_000 } else { 1_000_000 });
    let mut out = vec![
        "| what | result | baseline (same run) | ratio |".to_string(),
        "|---|---|---|---|".to_string(),
    ];
    // BENCH_ONLY=appends or BENCH_ONLY=replay runs one half.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if !quick && only != "replay" {
        bench_appends(&mut out);
    }
    if only != "appends" {
        bench_replay(&mut out, n);
    }
    let table = out.join("\n");
    println!("{table}");
    std::fs::create_dir_all("target").ok();
    std::fs::write("target/bench-ledger.md", format!("{table}\n")).ok();
}

//! JetStream as the log (`--store nats://…`): the scenario through it, and a 3-node cluster
//! with replicas 3 losing its stream leader to kill -9 under concurrent commands.

use crate::support;

use campaign_ledger::app::{Ledger, Outcome};
use campaign_ledger::domain::{CommandEnvelope, Policy, Reference};
use campaign_ledger::projection::{load_definitions, Engine};
use campaign_ledger::store::{Actor, EventStore, JetStreamStore, SystemClock, LOG_STREAM};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::nats::{rt, NatsCluster, NatsServer};
use support::{run, stderr, stdout};

const PROJECTIONS: [&str; 5] = [
    "doses_by_directorate",
    "doses_by_day",
    "tickets_by_directorate",
    "session_attendance",
    "survey_coverage",
];

fn report(dir: &std::path::Path, pre: &[&str], name: &str, extra: &[&str]) -> serde_json::Value {
    let mut args: Vec<&str> = pre.to_vec();
    args.extend(["report", name, "--format", "json"]);
    args.extend_from_slice(extra);
    let o = run(dir, &args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

/// `POST /v1/commands` on a server whose log is JetStream (its commands run on a blocking
/// thread; on the SQLite log they are awaited): accepted once, then a duplicate.
#[test]
fn commands_over_http_on_the_nats_log_are_recorded_once() {
    let nats = NatsServer::start();
    let store = format!("nats://127.0.0.1:{}", nats.port);
    let dir = tempfile::tempdir().unwrap();
    let site = r#"{"type":"AuthoriseSite","command_id":"0193ffff-0000-7000-8000-00000000aa01","directorate":"lyon","site":"lyon-dt","site_kind":"dt_premises","authorised_on":"2021-09-01"}"#;
    std::fs::write(dir.path().join("site.jsonl"), format!("{site}\n")).unwrap();
    let o = run(dir.path(), &["--store", &store, "submit", "site.jsonl"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(
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
    assert!(o.status.success(), "{}", stderr(&o));
    let token = stdout(&o).trim().to_string();
    let (_server, addr) = support::serve_with_tokens_on(dir.path(), &["--store", &store]);
    let dose: serde_json::Value = serde_json::from_str(r#"{"type":"AdministerDose","command_id":"0193ffff-0000-7000-8000-00000000aa02","person_ref":"lyon-1","age_band":"30-39","recipient":"user","directorate":"lyon","site":"lyon-dt","product":"comirnaty","lot":"L","dose":"first","administered_at":"2021-10-01T10:00:00+02:00"}"#).unwrap();
    let (s, first) = support::http(&addr, "POST", "/v1/commands", &token, Some(&dose));
    assert_eq!(
        (s, first["outcome"].as_str()),
        (200, Some("accepted")),
        "{first}"
    );
    let (s, again) = support::http(&addr, "POST", "/v1/commands", &token, Some(&dose));
    assert_eq!(
        (s, again["outcome"].as_str()),
        (200, Some("duplicate")),
        "{again}"
    );
    // Each message of the log says it is a CloudEvent in structured mode: the site, the key
    // store named as the log's person writer (before the first person), the dose.
    let messages = rt().block_on(support::nats::stream_messages(&nats.url(), LOG_STREAM));
    assert_eq!(messages.len(), 3);
    for m in &messages {
        assert_eq!(
            m.headers
                .get("Content-Type")
                .map(|v| v.as_str().to_string()),
            Some("application/cloudevents+json".to_string())
        );
    }
}

#[test]
fn the_scenario_on_the_nats_log_reports_what_the_sqlite_store_reports() {
    let nats = NatsServer::start();
    let store = format!("nats://127.0.0.1:{}", nats.port);
    let (embedded, on_nats) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let o = run(embedded.path(), &["demo"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(on_nats.path(), &["--store", &store, "demo"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("1,428 doses administered by the OFII in its directorates, 880 of them first injections"),
        "{}",
        stdout(&o)
    );
    let nats_store = ["--store", store.as_str()];
    for name in PROJECTIONS {
        for extra in [
            vec![],
            vec!["--as-of", "2021-11-30"],
            vec![
                "--as-of",
                "2021-12-17",
                "--known-at",
                "2021-12-17T18:00:00+01:00",
            ],
        ] {
            // The NATS log holds one event more, before its first person: `KeyStoreBound`.
            let (mut on, mut em) = (
                report(on_nats.path(), &nats_store, name, &extra),
                report(embedded.path(), &[], name, &extra),
            );
            let position = |v: &mut serde_json::Value| {
                v.as_object_mut()
                    .unwrap()
                    .remove("position")
                    .unwrap()
                    .as_u64()
            };
            assert_eq!(position(&mut on), position(&mut em).map(|p| p + 1));
            assert_eq!(on, em, "{name} {extra:?}");
        }
    }
    let o = run(on_nats.path(), &["--store", &store, "audit", "verify"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("2440 events, chain intact"),
        "{}",
        stdout(&o)
    );
    // Loading it again appends nothing: every command id is already in the log.
    let o = run(on_nats.path(), &["--store", &store, "demo"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(on_nats.path(), &["--store", &store, "audit", "verify"]);
    assert!(stdout(&o).contains("2440 events"), "{}", stdout(&o));
    // The relay runs from the NATS log as from SQLite, and the NATS-fed projections agree.
    let o = run(
        on_nats.path(),
        &["--store", &store, "--nats", &store, "relay", "--once"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(on_nats.path(), &["--nats", &store, "project", "--once"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let fed = report(
        on_nats.path(),
        &["--nats", &store],
        "doses_by_directorate",
        &["--as-of", "2021-12-17"],
    );
    assert_eq!(fed["totals"]["total"], 1428);
    assert_eq!(fed["totals"]["first"], 880);
}

/// The name of the server leading LEDGER_LOG.
fn leader(url: &str) -> Option<String> {
    rt().block_on(async {
        let c = async_nats::connect(url).await.ok()?;
        let js = async_nats::jetstream::new(c);
        let mut s = js.get_stream(LOG_STREAM).await.ok()?;
        s.info().await.ok()?.cluster.as_ref()?.leader.clone()
    })
}

#[test]
fn a_three_node_cluster_loses_its_leader_to_kill_9_under_concurrent_commands_and_nothing_acknowledged_is_lost(
) {
    let mut cluster = NatsCluster::start();
    let url = format!("{}?replicas=3", cluster.url());
    let store: Arc<dyn EventStore> =
        Arc::new(JetStreamStore::open(&url, Arc::new(SystemClock)).unwrap());
    let ledger = Arc::new(Ledger::new(
        store.clone(),
        Policy::default(),
        Reference::builtin(),
        Arc::new(SystemClock),
    ));
    let scenario = campaign_ledger::scenario::ofii_2021(&Reference::builtin()).unwrap();
    let lines: Vec<String> = scenario
        .to_jsonl()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let total = lines.len();
    let next = Arc::new(Mutex::new(lines.into_iter()));
    let done = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(AtomicUsize::new(0));
    let actor = Actor {
        role: "cli".into(),
        ..Default::default()
    };
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (ledger, next, done, acked, failed, actor) = (
                ledger.clone(),
                next.clone(),
                done.clone(),
                acked.clone(),
                failed.clone(),
                actor.clone(),
            );
            std::thread::spawn(move || loop {
                let Some(line) = next.lock().unwrap().next() else {
                    return;
                };
                let envelope = CommandEnvelope::parse(&line).unwrap();
                match ledger.handle(&envelope, &actor) {
                    Ok(Outcome::Accepted(rec)) => acked.lock().unwrap().push(rec),
                    Ok(_) => {}
                    // Not acknowledged (the outage outlasted the retries): allowed, not counted.
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            })
        })
        .collect();
    // Kill -9 the stream's leader a third of the way through.
    let deadline = Instant::now() + Duration::from_secs(120);
    while done.load(Ordering::Relaxed) < total / 3 {
        assert!(Instant::now() < deadline, "the load did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    let leader = leader(&cluster.nodes[0].url()).expect("the log has a leader");
    let victim = leader.trim_start_matches("node").parse::<usize>().unwrap();
    cluster.kill(victim);
    let killed_at = done.load(Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let acked = Arc::try_unwrap(acked).unwrap().into_inner().unwrap();
    assert!(killed_at < total, "the kill came after the load");
    assert!(
        acked.len() > total / 2,
        "only {} of {total} commands were accepted",
        acked.len()
    );
    cluster.restart(victim);

    // A fresh handle rebuilds its index from the replicated log, verifying the chain as it goes.
    // (On a loaded machine the restarted node may still be catching up: a request of the
    // opening can time out; it is tried again for up to 30 s, as an operator would.)
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let fresh = loop {
        match JetStreamStore::open(&cluster.url(), Arc::new(SystemClock)) {
            Ok(s) => break s,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("opening after the restart: {e}; trying again");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("the log cannot be opened 30 s after the restart: {e}"),
        }
    };
    for rec in &acked {
        assert_eq!(
            fresh.command(rec.command_id).unwrap().as_ref(),
            Some(rec),
            "acknowledged, then lost"
        );
    }
    // None twice: each command's events are one contiguous run, counted once.
    let mut runs: HashMap<uuid::Uuid, (u64, u64)> = HashMap::new();
    let mut seen_after: HashSet<uuid::Uuid> = HashSet::new();
    let mut last: Option<uuid::Uuid> = None;
    fresh
        .scan(0, u64::MAX, &mut |e| {
            if last != Some(e.command_id) {
                assert!(
                    seen_after.insert(e.command_id),
                    "command {} appears twice",
                    e.command_id
                );
            }
            last = Some(e.command_id);
            let r = runs.entry(e.command_id).or_insert((e.position, e.position));
            r.1 = e.position;
            true
        })
        .unwrap();
    for rec in &acked {
        assert_eq!(
            runs[&rec.command_id],
            (rec.first_position, rec.last_position)
        );
    }
    let report = campaign_ledger::audit::verify(&fresh, &mut |_| {}).expect("the chain verifies");
    let _ = report;
    // Projections folded live during the load equal a rebuild from the log.
    let defs = load_definitions(None).unwrap();
    let tz = Policy::default().time_zone;
    let dir = tempfile::tempdir().unwrap();
    let live = Engine::open(&dir.path().join("live.db"), defs.clone(), tz).unwrap();
    live.catch_up(store.as_ref()).unwrap();
    for name in PROJECTIONS {
        let rebuilt =
            Engine::open(&dir.path().join(format!("{name}.db")), defs.clone(), tz).unwrap();
        let a = serde_json::to_value(live.report(&fresh, name, None, None).unwrap()).unwrap();
        let b = serde_json::to_value(rebuilt.report(&fresh, name, None, None).unwrap()).unwrap();
        assert_eq!(a, b, "{name}");
    }
    eprintln!(
        "{} of {total} commands accepted, {} not acknowledged; leader {leader} killed after {killed_at}",
        acked.len(),
        failed.load(Ordering::Relaxed)
    );
}

/// Readers of the log that stop reading (a slow consumer of `scan`, a stuck client) hold
/// nothing the writer needs: appends go on at once while more readers than the store's runtime
/// has threads sit on full buffers.
#[test]
fn stalled_readers_of_the_nats_log_do_not_stall_appends() {
    let nats = NatsServer::start();
    let url = format!("nats://127.0.0.1:{}", nats.port);
    let store: Arc<dyn EventStore> =
        Arc::new(JetStreamStore::open(&url, Arc::new(SystemClock)).unwrap());
    support::fill(store.as_ref(), 12_000);
    let head = store.head_position().unwrap();
    let release = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (store, release) = (store.clone(), release.clone());
            std::thread::spawn(move || {
                let mut first = true;
                store
                    .scan(0, head, &mut |_| {
                        if std::mem::take(&mut first) {
                            // Stalls on its first event until released.
                            let (lock, cv) = &*release;
                            let mut go = lock.lock().unwrap();
                            while !*go {
                                go = cv.wait(go).unwrap();
                            }
                        }
                        true
                    })
                    .unwrap()
            })
        })
        .collect();
    // Long enough for every reader's buffer to fill.
    std::thread::sleep(Duration::from_secs(2));
    // The appends run on their own thread, so that a stall fails the test instead of hanging it.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    {
        let store = store.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            for _ in 0..5 {
                support::fill(store.as_ref(), 10);
            }
            let _ = done_tx.send(started.elapsed());
        });
    }
    let took = done_rx.recv_timeout(Duration::from_secs(30));
    {
        let (lock, cv) = &*release;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }
    let took = took.expect("50 appends did not finish within 30 s while readers were stalled");
    for r in readers {
        assert_eq!(
            r.join().unwrap(),
            head,
            "each reader read the whole log once released"
        );
    }
    assert!(
        took < Duration::from_secs(10),
        "50 appends took {took:?} while readers were stalled"
    );
    assert_eq!(store.head_position().unwrap(), head + 50);
}

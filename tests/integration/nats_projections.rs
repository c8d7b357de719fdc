//! NATS-fed projections: a worker folds LEDGER_EVENTS into the same projections as the
//! embedded engine; they must equal the in-process ones and a rebuild, also after kill -9.

use crate::support;

use campaign_ledger::store::EventStore;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use support::nats::NatsServer;
use support::{run, stderr, stdout};

fn report(
    dir: &std::path::Path,
    nats: Option<&str>,
    name: &str,
    extra: &[&str],
) -> serde_json::Value {
    let mut args: Vec<&str> = Vec::new();
    if let Some(url) = nats {
        args.extend(["--nats", url]);
    }
    args.extend(["report", name, "--format", "json"]);
    args.extend_from_slice(extra);
    let o = run(dir, &args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    let mut v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    v.as_object_mut().unwrap().remove("position");
    v
}

/// A SQLite ledger in `dir`, where the binary run there finds it, filled with `n` events.
fn filled_ledger(dir: &std::path::Path, n: u64) -> Arc<dyn EventStore> {
    let store = support::sqlite_store_at(&support::store_file(dir));
    support::fill(store.as_ref(), n);
    store
}

/// `filled_ledger`, then published to `nats` by `relay --once`.
fn published_ledger(nats: &NatsServer, dir: &std::path::Path, n: u64) -> Arc<dyn EventStore> {
    let store = filled_ledger(dir, n);
    let o = run(dir, &["--nats", &nats.url(), "relay", "--once"]);
    assert!(o.status.success(), "{}", stderr(&o));
    store
}

/// What `project` run in `dir` saved for doses_by_directorate: its checkpoint and the hash
/// there ((0, empty) before the first save).
fn saved_checkpoint(dir: &std::path::Path) -> (u64, Vec<u8>) {
    let db = dir.join("ledger-data").join("nats-projections.db");
    rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| {
            c.query_row(
                "SELECT checkpoint, checkpoint_hash FROM projections WHERE name = 'doses_by_directorate'",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
            )
        })
        .unwrap_or((0, Vec::new()))
}

const PROJECTIONS: [&str; 5] = [
    "doses_by_directorate",
    "doses_by_day",
    "tickets_by_directorate",
    "session_attendance",
    "survey_coverage",
];

#[test]
fn the_scenario_through_nats_reports_what_the_embedded_engine_reports() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    // demo --nats loads the scenario and relays it.
    let o = run(dir.path(), &["--nats", &nats.url(), "demo"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Relayed to"), "{}", stdout(&o));
    let o = run(dir.path(), &["--nats", &nats.url(), "project", "--once"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The text report says on standard error which side it comes from.
    let o = run(
        dir.path(),
        &["--nats", &nats.url(), "report", "doses_by_directorate"],
    );
    assert!(
        stderr(&o).contains("NATS-fed: folded from") && stderr(&o).contains("LEDGER_EVENTS"),
        "{}",
        stderr(&o)
    );
    let fed = report(
        dir.path(),
        Some(&nats.url()),
        "doses_by_directorate",
        &["--as-of", "2021-12-17"],
    );
    assert_eq!(fed["totals"]["total"], 1428);
    assert_eq!(fed["totals"]["first"], 880);
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
            assert_eq!(
                report(dir.path(), Some(&nats.url()), name, &extra),
                report(dir.path(), None, name, &extra),
                "{name} {extra:?}"
            );
        }
        let o = run(
            dir.path(),
            &["--nats", &nats.url(), "projections", "rebuild", name],
        );
        assert!(
            stdout(&o).contains("identical to the live state"),
            "{name}: {}",
            stdout(&o)
        );
    }
}

#[test]
fn a_worker_killed_mid_fold_resumes_and_equals_a_rebuild() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    published_ledger(&nats, dir.path(), 120_000);
    for delay in [150u64, 400, 900] {
        let mut worker = support::bin()
            .current_dir(dir.path())
            .args(["--nats", &nats.url(), "project"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        worker.kill().unwrap(); // SIGKILL
        worker.wait().unwrap();
    }
    // Two workers on one projection database: the later save never goes backwards.
    let a = support::bin()
        .current_dir(dir.path())
        .args(["--nats", &nats.url(), "project", "--once"])
        .spawn()
        .unwrap();
    let o = run(dir.path(), &["--nats", &nats.url(), "project", "--once"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(a.wait_with_output().unwrap().status.success());
    for name in ["doses_by_directorate", "doses_by_day"] {
        let fed = report(dir.path(), Some(&nats.url()), name, &[]);
        assert_eq!(fed, report(dir.path(), None, name, &[]), "{name}");
        let o = run(
            dir.path(),
            &["--nats", &nats.url(), "projections", "rebuild", name],
        );
        assert!(
            stdout(&o).contains("identical to the live state"),
            "{name}: {}",
            stdout(&o)
        );
    }
    let fed = report(dir.path(), Some(&nats.url()), "doses_by_directorate", &[]);
    assert_eq!(fed["totals"]["total"], 120_000);
}

/// A NATS server, a SQLite ledger of `n` events in a temporary directory and `relay`
/// following it (killed when dropped), once the stream holds those events.
fn relayed_ledger(
    n: u64,
) -> (
    NatsServer,
    tempfile::TempDir,
    Arc<dyn EventStore>,
    support::Running,
) {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let store = filled_ledger(dir.path(), n);
    let relay = support::spawn(dir.path(), &["--nats", &nats.url(), "relay"]);
    support::nats::wait_for_stream(
        &nats.url(),
        campaign_ledger::bus::STREAM,
        n,
        Duration::from_secs(30),
        "the relay did not publish",
    );
    (nats, dir, store, relay)
}

/// A worker following the stream (as `project` does: catch up, wait for more, again) folds
/// every event: a burst far beyond what its tail keeps while it is paused, a NATS server
/// killed and restarted while commands go on, then single commands; its state equals the
/// embedded engine's on the SQLite log.
#[test]
fn a_follower_folds_every_event_through_a_burst_and_a_server_restart() {
    use campaign_ledger::bus::{JetStreamSource, STREAM};
    use campaign_ledger::domain::Policy;
    use campaign_ledger::projection::{load_definitions, Engine};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::Instant;

    let (mut nats, dir, store, relay) = relayed_ledger(1_000);

    let defs = load_definitions(None).unwrap();
    let tz = Policy::default().time_zone;
    let source = Arc::new(JetStreamSource::connect(&nats.url()).unwrap());
    let fed = Engine::open(&dir.path().join("fed.db"), defs.clone(), tz).unwrap();
    let (reached, paused, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let worker = {
        let (reached, paused, stop) = (reached.clone(), paused.clone(), stop.clone());
        let source = source.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if paused.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                // Errors are expected while the server is down: try again, as `project` does.
                match fed.catch_up(source.as_ref()) {
                    Ok(p) => reached.store(p, Ordering::SeqCst),
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
                if source
                    .wait_beyond(reached.load(Ordering::SeqCst), Duration::from_millis(200))
                    .is_err()
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            fed
        })
    };
    let wait_for = |n: u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while reached.load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "the follower stopped at {} of {n}",
                reached.load(Ordering::SeqCst)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for(1_000);

    // A burst while the worker is paused: its tail keeps receiving and drops the oldest.
    paused.store(true, Ordering::SeqCst);
    support::fill(store.as_ref(), 30_000);
    support::nats::wait_for_stream(
        &nats.url(),
        STREAM,
        31_000,
        Duration::from_secs(30),
        "the relay did not publish the burst",
    );
    // The tail receives the burst too (a slow debug build on a loaded machine takes a while):
    // only then is the worker let go, so that what it reads is what the tail could not keep.
    let deadline = Instant::now() + Duration::from_secs(60);
    while source.tail_received() < 31_000 {
        assert!(
            Instant::now() < deadline,
            "the tail received {} of 31,000",
            source.tail_received()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let from_stream = source.read_from_stream();
    paused.store(false, Ordering::SeqCst);
    wait_for(31_000);
    // Only what the tail no longer kept (about 30,000 - 16,384) came from the stream again.
    let again = source.read_from_stream() - from_stream;
    assert!(
        again < 20_000,
        "{again} of the burst's 30,000 events read from the stream"
    );

    // The server killed and restarted while commands go on.
    nats.kill();
    support::fill(store.as_ref(), 500);
    std::thread::sleep(Duration::from_millis(300));
    nats.restart();
    support::fill(store.as_ref(), 500);
    wait_for(32_000);

    // Then one command at a time.
    for i in 1..=10 {
        support::fill(store.as_ref(), 1);
        wait_for(32_000 + i);
    }
    stop.store(true, Ordering::SeqCst);
    let fed = worker.join().unwrap();
    drop(relay);

    let local = Engine::open(&dir.path().join("local.db"), defs, tz).unwrap();
    for name in PROJECTIONS {
        let (a, pa) = fed.live_state(source.as_ref(), name).unwrap();
        let (b, pb) = local.live_state(store.as_ref(), name).unwrap();
        assert_eq!((pa, pb), (32_010, 32_010), "{name}");
        assert_eq!(a, b, "{name}");
    }
}

/// `project` (following) keeps running through a NATS server killed and restarted, and folds
/// what was committed meanwhile.
#[test]
fn the_project_worker_rides_out_a_server_restart() {
    use std::time::Instant;
    let (mut nats, dir, store, _relay) = relayed_ledger(1_000);
    let mut worker = support::spawn(dir.path(), &["--nats", &nats.url(), "project"]);
    let checkpoint = || saved_checkpoint(dir.path()).0;
    let mut wait_for = |n: u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while checkpoint() < n {
            assert!(
                worker.0.try_wait().unwrap().is_none(),
                "the worker exited at {}",
                checkpoint()
            );
            assert!(
                Instant::now() < deadline,
                "the worker stopped at {}",
                checkpoint()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for(1_000);
    nats.kill();
    support::fill(store.as_ref(), 500);
    // Longer than a request's timeout (5 s): the worker's reads fail meanwhile.
    std::thread::sleep(Duration::from_secs(8));
    nats.restart();
    wait_for(1_500);
}

/// A message put into LEDGER_EVENTS by another publisher (here a copy of the last event, at the
/// next position, with its data changed, or with a hash of its own over another prev_hash) is
/// not folded: `project` and `report --nats` stop on it, naming the position and why, and
/// nothing of it is saved.
#[test]
fn a_forged_message_in_the_stream_is_refused_by_the_nats_fed_worker() {
    use campaign_ledger::envelope::cloudevents;
    use campaign_ledger::store::chain_hash;
    for (relinked, says) in [
        (false, "its hash does not match its content"),
        (true, "its prev_hash is not the hash of the event before it"),
    ] {
        let nats = NatsServer::start();
        let dir = tempfile::tempdir().unwrap();
        published_ledger(&nats, dir.path(), 300);
        let o = run(dir.path(), &["--nats", &nats.url(), "project", "--once"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let before = report(dir.path(), Some(&nats.url()), "doses_by_directorate", &[]);

        support::nats::rt().block_on(async {
            let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
            let stream = js.get_stream(campaign_ledger::bus::STREAM).await.unwrap();
            let last = stream.direct_get(300).await.unwrap();
            let forged = if relinked {
                // Self-consistent (its hash is right for its content), but not linked to 300.
                let mut e = cloudevents::decode(&last.payload).unwrap();
                e.position = 301;
                e.event_id = uuid::Uuid::now_v7();
                e.prev_hash = [7; 32];
                e.hash = chain_hash(&e.prev_hash, &e.as_ref());
                cloudevents::encode(&e.as_ref(), "/forged")
            } else {
                let mut v: serde_json::Value = serde_json::from_slice(&last.payload).unwrap();
                v["ledgerprevhash"] = v["ledgerhash"].clone();
                v["ledgerposition"] = 301.into();
                v["data"]["dose_number"] = 2.into();
                serde_json::to_vec(&v).unwrap()
            };
            js.publish(last.subject.to_string(), forged.into())
                .await
                .unwrap()
                .await
                .unwrap();
        });
        for args in [
            vec!["project", "--once"],
            vec!["report", "doses_by_directorate"],
        ] {
            let o = run(dir.path(), &[&["--nats", &nats.url()][..], &args].concat());
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
            assert!(
                err.contains("position 301") && err.contains(says),
                "{args:?}: {err}"
            );
        }
        // What was folded before stays, and the embedded engine never saw the forgery.
        assert_eq!(
            report(dir.path(), None, "doses_by_directorate", &[]),
            before
        );
    }
}

/// A following `project` whose stream is deleted and published afresh from another, shorter
/// ledger notices that the stream is shorter than what it folded, and rebuilds from the new
/// one: its saved state ends at the new ledger's head, with its hash, and reports as that
/// ledger's embedded engine does.
#[test]
fn a_following_worker_rebuilds_when_its_stream_is_replaced() {
    use std::time::Instant;
    let nats = NatsServer::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    published_ledger(&nats, a.path(), 2_000);
    let _worker = support::spawn(a.path(), &["--nats", &nats.url(), "project"]);
    let saved = || saved_checkpoint(a.path());
    let wait_for = |what: &dyn Fn((u64, Vec<u8>)) -> bool, said: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !what(saved()) {
            assert!(Instant::now() < deadline, "{said}: saved {:?}", saved().0);
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for(
        &|(cp, _)| cp == 2_000,
        "the worker did not fold the first ledger",
    );

    support::nats::rt().block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
        js.delete_stream(campaign_ledger::bus::STREAM)
            .await
            .unwrap();
    });
    let b_store = published_ledger(&nats, b.path(), 1_000);
    let b_hash = b_store.head().unwrap().hash;
    wait_for(
        &|(cp, h)| cp == 1_000 && h[..] == b_hash[..],
        "the worker did not rebuild from the new stream",
    );
    for name in PROJECTIONS {
        let fed = report(a.path(), Some(&nats.url()), name, &[]);
        let embedded = report(b.path(), None, name, &[]);
        assert_eq!(fed, embedded, "{name}");
    }
}

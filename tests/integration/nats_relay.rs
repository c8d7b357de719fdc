//! The relay against a real nats-server: the stream holds positions 1..N exactly once, in
//! order, after kill -9 of the relay and after the server itself is killed and restarted.

use crate::support;

use campaign_ledger::bus::STREAM;
use campaign_ledger::envelope::cloudevents;
use campaign_ledger::store::{chain_hash, EventStore, GENESIS_HASH};
use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::nats::{last_sequence, rt, stream_messages, NatsServer};

/// The stream is exactly the log: sequence = position, same bytes, chain verifies.
fn assert_stream_is_the_log(url: &str, store: &dyn EventStore) {
    let head = store.head().unwrap().position;
    let messages = rt().block_on(stream_messages(url, STREAM));
    assert_eq!(messages.len() as u64, head, "one message per position");
    let events = store.read_all(0, head as usize).unwrap();
    let mut prev = GENESIS_HASH;
    for (m, e) in messages.iter().zip(&events) {
        assert_eq!(m.sequence, e.position);
        assert_eq!(
            m.headers
                .get("Ledger-Position")
                .map(|v| v.as_str().to_string()),
            Some(e.position.to_string())
        );
        assert_eq!(
            m.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_string()),
            Some(e.event_id.to_string())
        );
        assert_eq!(
            m.headers
                .get("Content-Type")
                .map(|v| v.as_str().to_string()),
            Some("application/cloudevents+json".to_string()),
            "structured mode of the CloudEvents NATS binding"
        );
        let decoded = cloudevents::decode(&m.payload).unwrap();
        assert_eq!(&decoded, e, "position {}", e.position);
        // The same source for every event of this ledger, however its store was named.
        let ce: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(
            ce["source"].as_str(),
            Some(campaign_ledger::bus::ledger_source(&events[0].hash).as_str()),
            "position {}",
            e.position
        );
        assert_eq!(decoded.prev_hash, prev);
        assert_eq!(
            chain_hash(&prev, &decoded.as_ref()),
            decoded.hash,
            "chain at {}",
            e.position
        );
        prev = decoded.hash;
    }
}

#[test]
fn the_relay_publishes_the_whole_log_once_and_a_consumer_can_verify_it() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    assert!(support::run(dir.path(), &["demo"]).status.success());
    let o = support::run(dir.path(), &["relay", "--nats", &nats.url(), "--once"]);
    assert!(o.status.success(), "{}", support::stderr(&o));
    let store = support::sqlite_store_at(&support::store_file(dir.path()));
    assert_stream_is_the_log(&nats.url(), store.as_ref());
    // Subjects carry the directorate and the type.
    let messages = rt().block_on(stream_messages(&nats.url(), STREAM));
    assert!(messages
        .iter()
        .any(|m| m.subject.as_str() == "ledger.v1.events.lyon.TicketIssued"));
    // The example consumer verifies every event of one directorate, then of all.
    let example = std::path::Path::new(env!("CARGO_BIN_EXE_campaign-ledger"))
        .with_file_name("examples")
        .join("consumer");
    let lyon = store
        .read_all(0, 100_000)
        .unwrap()
        .iter()
        .filter(|e| cloudevents::subject_directorate(&e.as_ref()) == "lyon")
        .count();
    let o = std::process::Command::new(&example)
        .args(["lyon", "--nats", &nats.url(), "--idle-exit", "2"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", support::stderr(&o));
    assert!(
        support::stdout(&o).contains(&format!("{lyon} events verified")),
        "{}",
        support::stdout(&o)
    );
    // A directorate without events is said so (a typo would read nothing); wrong usage and an
    // unreachable server end with exit code 2 and a sentence.
    let o = std::process::Command::new(&example)
        .args(["lyonn", "--nats", &nats.url(), "--idle-exit", "1"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", support::stderr(&o));
    let warned = support::stderr(&o);
    assert!(
        warned.contains("no event of directorate \"lyonn\"") && warned.contains("lyon, "),
        "{warned}"
    );
    assert!(support::stdout(&o).contains("0 events verified"));
    for (args, says) in [
        (
            vec!["lyon", "--stop-after", "many"],
            "--stop-after takes a whole number",
        ),
        (vec!["lyon", "--frobnicate"], "unknown flag --frobnicate"),
        (
            vec!["lyon", "--nats", "nats://127.0.0.1:9"],
            "cannot reach NATS at nats://127.0.0.1:9",
        ),
    ] {
        let o = std::process::Command::new(&example)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            support::stderr(&o).contains(says),
            "{args:?}: {}",
            support::stderr(&o)
        );
    }
    let o = std::process::Command::new(&example)
        .args(["_all", "--nats", &nats.url(), "--idle-exit", "2"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", support::stderr(&o));
    assert!(
        support::stdout(&o).contains(&format!("{} events verified", messages.len())),
        "{}",
        support::stdout(&o)
    );
    // Running it again publishes nothing.
    let o = support::run(dir.path(), &["relay", "--nats", &nats.url(), "--once"]);
    assert!(
        support::stderr(&o).contains("0 events published"),
        "{}",
        support::stderr(&o)
    );
    assert_stream_is_the_log(&nats.url(), store.as_ref());
}

#[test]
fn relay_killed_mid_stream_resumes_without_gap_or_duplicate() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let store = support::sqlite_store_at(&path);
    support::fill(store.as_ref(), 60_000);
    let url = format!("sqlite:{}", path.display());
    for round in 0..2 {
        let mut relay = support::bin()
            .args(["--store", &url, "relay", "--nats", &nats.url()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill it once it is well into the log.
        let target = 5_000 + round * 20_000;
        let deadline = Instant::now() + Duration::from_secs(60);
        while rt().block_on(last_sequence(&nats.url(), STREAM)) < target {
            assert!(Instant::now() < deadline, "the relay made no progress");
            std::thread::sleep(Duration::from_millis(5));
        }
        relay.kill().unwrap(); // SIGKILL
        relay.wait().unwrap();
    }
    let o = support::bin()
        .args(["--store", &url, "relay", "--nats", &nats.url(), "--once"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_stream_is_the_log(&nats.url(), store.as_ref());
}

#[test]
fn a_nats_server_killed_and_restarted_under_load_loses_nothing() {
    let mut nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let store = support::sqlite_store_at(&path);
    support::fill(store.as_ref(), 2_000);
    let url = format!("sqlite:{}", path.display());
    let mut relay = support::bin()
        .args(["--store", &url, "relay", "--nats", &nats.url()])
        .env("RUST_LOG", "warn,campaign_ledger=debug")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its log is read as it comes (a full pipe would stall the relay) and kept for the end.
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let (log, stderr) = (log.clone(), relay.stderr.take().unwrap());
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        })
    };
    // Commits keep coming while the server goes away and comes back.
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for _ in 0..30 {
                support::fill(store.as_ref(), 500);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(400));
    nats.kill();
    std::thread::sleep(Duration::from_millis(700));
    nats.restart();
    writer.join().unwrap();
    let head = store.head().unwrap().position;
    let deadline = Instant::now() + Duration::from_secs(60);
    while rt().block_on(last_sequence(&nats.url(), STREAM)) < head {
        if Instant::now() >= deadline {
            if let Ok(dir) = std::env::var("RELAY_STACKS") {
                // Diagnosis: where every thread of the stuck relay is.
                let out = std::process::Command::new("gdb")
                    .args([
                        "-batch",
                        "-ex",
                        "thread apply all bt 25",
                        "-p",
                        &relay.id().to_string(),
                    ])
                    .output();
                let mut text = String::new();
                if let Ok(o) = out {
                    text.push_str(&String::from_utf8_lossy(&o.stdout));
                    text.push_str(&String::from_utf8_lossy(&o.stderr));
                }
                let pid = relay.id();
                if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
                    for t in tasks.flatten() {
                        let p = t.path();
                        let read = |f: &str| std::fs::read_to_string(p.join(f)).unwrap_or_default();
                        text.push_str(&format!(
                            "task {:?} comm={} wchan={} stat={}\n",
                            t.file_name(),
                            read("comm").trim(),
                            read("wchan").trim(),
                            read("stat").split(' ').nth(2).unwrap_or("")
                        ));
                    }
                }
                let _ = std::fs::write(format!("{dir}/relay-stacks.txt"), text);
            }
            let _ = relay.kill();
            let _ = relay.wait();
            let _ = reader.join();
            panic!(
                "the relay did not catch up after the restart: the stream ends at {} of {head}; relay log:\n{}",
                rt().block_on(last_sequence(&nats.url(), STREAM)),
                log.lock().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGTERM: the relay stops cleanly and says so.
    let pid = relay.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = relay.wait().unwrap();
    reader.join().unwrap();
    let log = log.lock().unwrap().clone();
    assert!(status.success(), "{log}");
    assert_eq!(
        log.matches("NATS unavailable").count(),
        1,
        "one log line per outage: {log}"
    );
    // Its end is said once, with the count of failures, and the catching up after it.
    assert_eq!(
        log.matches("NATS reachable again after").count(),
        1,
        "{log}"
    );
    assert!(log.contains("relay caught up after the outage"), "{log}");
    assert_stream_is_the_log(&nats.url(), store.as_ref());
}

#[test]
fn a_three_node_cluster_with_replicas_3_survives_kill_9_of_a_node_during_the_relay() {
    let mut cluster = support::nats::NatsCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let store = support::sqlite_store_at(&path);
    support::fill(store.as_ref(), 5_000);
    let url = format!("sqlite:{}", path.display());
    // Wait for the cluster to elect its JetStream leader: the first relay run creates the
    // replicated stream (it retries while the cluster forms).
    let o = support::bin()
        .args([
            "--store",
            &url,
            "--nats",
            &cluster.url(),
            "relay",
            "--once",
            "--replicas",
            "3",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The following relay runs without --replicas, as `serve --nats` does: it keeps the
    // stream's 3 replicas rather than scaling it down to its own default.
    let relay = support::bin()
        .args(["--store", &url, "--nats", &cluster.url(), "relay"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for _ in 0..20 {
                support::fill(store.as_ref(), 500);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    cluster.kill(1); // SIGKILL one node in the middle of the load
    writer.join().unwrap();
    let head = store.head().unwrap().position;
    let first = cluster.nodes[0].url();
    let deadline = Instant::now() + Duration::from_secs(90);
    while rt().block_on(last_sequence(&first, STREAM)) < head {
        assert!(
            Instant::now() < deadline,
            "the relay did not catch up with one node down"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.restart(1);
    let mut relay = relay;
    relay.kill().unwrap();
    relay.wait().unwrap();
    assert_stream_is_the_log(&first, store.as_ref());
    let replicas = rt().block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(&first).await.unwrap());
        let mut s = js.get_stream(STREAM).await.unwrap();
        s.info().await.unwrap().config.num_replicas
    });
    assert_eq!(
        replicas, 3,
        "a relay without --replicas scaled the stream down"
    );
}

#[test]
fn two_relays_racing_on_one_stream_both_keep_running_and_publish_each_position_once() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let store = support::sqlite_store_at(&path);
    support::fill(store.as_ref(), 1_000);
    let url = format!("sqlite:{}", path.display());
    // Two relays (a deployment mistake, or a restart that overlaps the old process): each
    // finds positions the other already stored, while idle as well as while publishing, and
    // must resync from the stream's end rather than stop.
    let mut relays: Vec<_> = (0..2)
        .map(|_| {
            support::bin()
                .args(["--store", &url, "relay", "--nats", &nats.url()])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for _ in 0..40 {
        support::fill(store.as_ref(), 200);
        std::thread::sleep(Duration::from_millis(30));
    }
    let head = store.head().unwrap().position;
    let deadline = Instant::now() + Duration::from_secs(60);
    while rt().block_on(last_sequence(&nats.url(), STREAM)) < head {
        assert!(
            Instant::now() < deadline,
            "the relays did not publish the whole log"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for r in &mut relays {
        if let Some(status) = r.try_wait().unwrap() {
            let mut log = String::new();
            r.stderr.take().unwrap().read_to_string(&mut log).unwrap();
            panic!("a relay stopped ({status}) while the other ran:\n{log}");
        }
    }
    for r in relays {
        std::process::Command::new("kill")
            .args(["-TERM", &r.id().to_string()])
            .status()
            .unwrap();
        let out = r.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_stream_is_the_log(&nats.url(), store.as_ref());
}

#[test]
fn a_message_the_server_keeps_refusing_is_reported_and_retried_with_backoff_not_in_a_loop() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let store = support::sqlite_store_at(&path);
    support::fill(store.as_ref(), 600);
    // An operator limited the stream to one message, discarding new ones (the relay keeps the
    // stream's configuration): position 1 is stored, position 2 is refused, and so is every
    // later one, for a wrong last sequence. A relay that asked for acknowledgements only at
    // checkpoints would hear only the latter and resync for ever without saying why.
    rt().block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
        js.create_stream(async_nats::jetstream::stream::Config {
            name: STREAM.to_string(),
            subjects: vec!["ledger.v1.events.>".into()],
            max_messages: 1,
            discard: async_nats::jetstream::stream::DiscardPolicy::New,
            ..Default::default()
        })
        .await
        .unwrap();
    });
    let url = format!("sqlite:{}", path.display());
    let relay = support::bin()
        .args(["--store", &url, "relay", "--nats", &nats.url()])
        .env("RUST_LOG", "campaign_ledger=debug")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    std::process::Command::new("kill")
        .args(["-TERM", &relay.id().to_string()])
        .status()
        .unwrap();
    let out = relay.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(rt().block_on(last_sequence(&nats.url(), STREAM)), 1);
    // The server's own reason is in the log (not only a wrong sequence at the next
    // checkpoint, which would resync for ever)...
    assert!(
        log.to_lowercase().contains("maximum"),
        "the refusal's reason is not reported:\n{log}"
    );
    // ...as a refusal, once, not as an outage.
    assert_eq!(log.matches("refused position 2").count(), 1, "{log}");
    assert!(!log.contains("NATS unavailable"), "{log}");
    // ...and the relay backs off: a handful of attempts in 4 s, not thousands.
    let attempts = log.matches("resyncing").count() + log.matches("refused").count();
    assert!(attempts < 60, "{attempts} attempts in 4 s:\n{log}");
}

#[test]
fn relay_once_waits_for_a_server_that_comes_back_and_ends_with_an_error_when_none_does() {
    let mut nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let store = support::sqlite_store_at(&path);
    support::fill(store.as_ref(), 2_000);
    let head = store.head().unwrap();
    let url = format!("sqlite:{}", path.display());
    let nats_url = nats.url();
    let once = |retry_for: &str| {
        support::bin()
            .args(["--store", &url, "relay", "--nats", &nats_url, "--once"])
            .args(["--retry-for", retry_for])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // The server is down when the run starts and back within the run's retry window.
    nats.kill();
    let relay = once("30s");
    std::thread::sleep(Duration::from_millis(1_500));
    nats.restart();
    let o = ended_within(relay, Duration::from_secs(60));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_stream_is_the_log(&nats.url(), store.as_ref());

    // Down for longer than the window: the run ends, exit code 2, saying what to do.
    nats.kill();
    let o = ended_within(once("2s"), Duration::from_secs(20));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("unreachable for 2s") && err.contains("run the relay again"),
        "{err}"
    );
    assert_eq!(store.head().unwrap(), head, "the ledger is untouched");
}

/// The output of `child` once it has exited; it is killed, and the test fails, if it is still
/// running after `within`.
fn ended_within(mut child: std::process::Child, within: Duration) -> std::process::Output {
    let deadline = Instant::now() + within;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!(
                "still running after {within:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_stream_of_another_ledger_is_refused_by_name_and_left_as_it_is() {
    let nats = NatsServer::start();
    let ledger = |name: &str, n: u64| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        let store = support::sqlite_store_at(&path);
        support::fill(store.as_ref(), n);
        (dir, format!("sqlite:{}", path.display()), store)
    };
    let relay_once = |url: &str| {
        support::bin()
            .args(["--store", url, "relay", "--nats", &nats.url(), "--once"])
            .output()
            .unwrap()
    };
    let (_a, a_url, a) = ledger("a.db", 100);
    let o = relay_once(&a_url);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (name, n, says) in [
        ("shorter.db", 50, "it holds 100 events and this ledger"),
        (
            "longer.db",
            150,
            "its message 100 is not this ledger's event at position 100",
        ),
    ] {
        let (_d, url, _store) = ledger(name, n);
        let o = relay_once(&url);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains("belongs to another ledger") && err.contains(says) && err.contains(name),
            "{err}"
        );
        // The remedy it names is a command of this tool, not one the user may not have.
        assert!(
            err.contains("campaign-ledger relay --delete-stream"),
            "{err}"
        );
    }
    assert_stream_is_the_log(&nats.url(), a.as_ref());
    // Following that advice: the stream is deleted (saying what it held) and this ledger
    // relayed from position 1.
    let (_b, b_url, b) = ledger("b.db", 40);
    let o = support::bin()
        .args([
            "--store",
            &b_url,
            "relay",
            "--nats",
            &nats.url(),
            "--once",
            "--delete-stream",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("deleted the stream LEDGER_EVENTS (100 messages)"),
        "{err}"
    );
    assert_stream_is_the_log(&nats.url(), b.as_ref());
}

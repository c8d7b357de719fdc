//! The example consumers a downstream team starts from (`examples/consumer/`, Rust, and
//! `examples/consumer.py`, nats-py), run against a real nats-server: a durable consumer of one
//! directorate that crashes between processing an event and acknowledging it, resumes, skips
//! the redelivered event by its position, verifies every hash, and later reads only what is new.

use crate::support;

use campaign_ledger::envelope::cloudevents;
use std::path::Path;
use std::process::{Command, Output};
use support::nats::NatsServer;

fn rust_consumer() -> Command {
    let example = Path::new(env!("CARGO_BIN_EXE_campaign-ledger"))
        .with_file_name("examples")
        .join("consumer");
    assert!(
        example.exists(),
        "{} is missing: cargo test builds the examples (cargo build --examples)",
        example.display()
    );
    Command::new(example)
}

fn python_consumer() -> Command {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let check = Command::new(&python)
        .args(["-c", "import nats"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        check.status.success(),
        "nats-py is not installed for {python}: pip install nats-py (scripts/test.sh does)"
    );
    let mut c = Command::new(python);
    c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/consumer.py"));
    c
}

fn lyon_events(ledger: &Path) -> usize {
    support::sqlite_store_at(ledger)
        .read_all(0, 1_000_000)
        .unwrap()
        .iter()
        .filter(|e| cloudevents::subject_directorate(&e.as_ref()) == "lyon")
        .count()
}

fn relay(ledger: &Path, url: &str) {
    let store = format!("sqlite:{}", ledger.display());
    support::ok_output(&support::run(
        ledger.parent().unwrap(),
        &["--store", &store, "relay", "--once", "--nats", url],
    ));
}

fn consume(mut c: Command, name: &str, state: &Path, url: &str, extra: &[&str]) -> Output {
    c.args(["lyon", "--nats", url, "--durable", name, "--state"])
        .arg(state)
        .args(["--ack-wait", "1"])
        .args(extra)
        .output()
        .unwrap()
}

fn crash_resume_and_follow(consumer: fn() -> Command, name: &str) {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    support::fill(support::sqlite_store_at(&ledger).as_ref(), 400);
    relay(&ledger, &nats.url());
    let lyon = lyon_events(&ledger);
    assert_eq!(lyon, 100);
    let state = dir.path().join(format!("{name}.json"));

    // A crash after processing the 25th event, before acknowledging it.
    let o = consume(
        consumer(),
        name,
        &state,
        &nats.url(),
        &["--exit-before-ack-after", "25"],
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}{}",
        support::stdout(&o),
        support::stderr(&o)
    );
    // Resumed: the 25th comes again (it was never acknowledged; nor, maybe, some before it
    // whose acknowledgements had not left the process), is known by its position and skipped;
    // every other event is processed exactly once.
    let o = consume(consumer(), name, &state, &nats.url(), &["--idle-exit", "3"]);
    let out = support::stdout(&o);
    assert!(o.status.success(), "{out}{}", support::stderr(&o));
    assert!(
        out.contains("resuming after position 97 (25 events processed so far)"),
        "{out}"
    );
    let summary =
        format!("{lyon} events processed and verified, up to position 397 (75 this run, ");
    let skipped: u64 = out
        .split_once(&summary)
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {summary:?} in {out}"));
    assert!((1..=25).contains(&skipped), "{out}");
    // New events: only those are read.
    support::fill(support::sqlite_store_at(&ledger).as_ref(), 40);
    relay(&ledger, &nats.url());
    let o = consume(consumer(), name, &state, &nats.url(), &["--idle-exit", "2"]);
    let out = support::stdout(&o);
    assert!(o.status.success(), "{out}{}", support::stderr(&o));
    assert!(
        out.contains(&format!("{} events processed and verified", lyon + 10))
            && out.contains("(10 this run"),
        "{out}"
    );
}

#[test]
fn the_rust_durable_consumer_resumes_after_a_crash_without_duplicates() {
    crash_resume_and_follow(rust_consumer, "rust-lyon");
}

#[test]
fn the_python_durable_consumer_resumes_after_a_crash_without_duplicates() {
    crash_resume_and_follow(python_consumer, "python-lyon");
}

#[test]
fn a_changed_event_stops_the_python_consumer() {
    // The same verification as the Rust side: one byte of data changed in the stream (a
    // message published there by someone else) is refused by its hash.
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    support::fill(support::sqlite_store_at(&ledger).as_ref(), 8);
    let forged = {
        let events = support::sqlite_store_at(&ledger).read_all(0, 10).unwrap();
        let mut e = events[0].clone();
        e.data = e.data.replace("\"n\":0", "\"n\":9");
        e.position = 9;
        String::from_utf8(cloudevents::encode(&e.as_ref(), "/forger")).unwrap()
    };
    relay(&ledger, &nats.url());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = async_nats::connect(nats.url()).await.unwrap();
        let js = async_nats::jetstream::new(c);
        js.publish("ledger.v1.events.lyon.DoseAdministered", forged.into())
            .await
            .unwrap()
            .await
            .unwrap();
    });
    let state = dir.path().join("py.json");
    let o = consume(
        python_consumer(),
        "py-forged",
        &state,
        &nats.url(),
        &["--idle-exit", "2"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", support::stdout(&o));
    assert!(
        support::stderr(&o).contains("its hash is not the hash of its content"),
        "{}",
        support::stderr(&o)
    );
}

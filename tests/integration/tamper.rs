//! Tamper evidence: change one byte of a stored event in the SQLite file itself, and
//! `audit verify` fails naming that position.

use crate::support;

use support::{run, stdout};

fn position_of_data(dir: &std::path::Path, position: u64) -> String {
    let store = support::sqlite_store_at(&support::store_file(dir));
    let e = store.read_all(position - 1, 1).unwrap().remove(0);
    assert_eq!(e.position, position);
    e.data
}

#[test]
fn changing_one_byte_of_a_stored_event_is_caught_at_its_position() {
    let dir = tempfile::tempdir().unwrap();
    assert!(run(dir.path(), &["demo"]).status.success());
    assert!(run(dir.path(), &["audit", "verify"]).status.success());
    let target = 1234;
    let data = position_of_data(dir.path(), target);
    let file = support::store_file(dir.path());
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes
        .windows(data.len())
        .position(|w| w == data.as_bytes())
        .expect("the event's bytes are in the file");
    assert!(
        bytes[at + data.len()..]
            .windows(data.len())
            .all(|w| w != data.as_bytes()),
        "unique"
    );
    // Change one digit inside the data (a lot number, a date: still valid JSON, still plausible).
    let offset = data.find(|c: char| c.is_ascii_digit()).unwrap();
    bytes[at + offset] = if bytes[at + offset] == b'1' {
        b'2'
    } else {
        b'1'
    };
    std::fs::write(&file, &bytes).unwrap();

    let o = run(dir.path(), &["audit", "verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stdout(&o).contains(&format!("BROKEN at position {target}")),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("altered"), "{}", stdout(&o));
    let o = run(dir.path(), &["audit", "verify", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["position"], target);
}

/// `audit verify` cuts a long log into segments checked in parallel and joined in order. For
/// every kind of damage, at segment boundaries and inside segments, it must name the same
/// first bad position and reason as a single pass does.
#[test]
fn verifying_in_parallel_segments_finds_the_same_first_break_as_one_pass() {
    use campaign_ledger::audit::{verify_in_parts, VerifyError};
    use campaign_ledger::store::{chain_hash, RecordedEvent, GENESIS_HASH};
    let base = tempfile::tempdir().unwrap();
    let store = support::sqlite_store_at(&base.path().join("ledger.db"));
    support::fill(store.as_ref(), 1000);
    let events = store.read_all(0, 10_000).unwrap();
    drop(store);
    assert_eq!(events.len(), 1000);

    fn rechain(events: &mut [RecordedEvent], from: usize) {
        for i in from..events.len() {
            let prev = if i == 0 {
                GENESIS_HASH
            } else {
                events[i - 1].hash
            };
            events[i].prev_hash = prev;
            events[i].hash = chain_hash(&prev, &events[i].as_ref());
        }
    }
    type Damage = Box<dyn Fn(&mut Vec<RecordedEvent>)>;
    let mut cases: Vec<(String, Damage)> = Vec::new();
    for p in [1usize, 250, 251, 334, 500, 501, 999, 1000] {
        cases.push((
            format!("data changed at {p}"),
            Box::new(move |e| e[p - 1].data.push(' ')),
        ));
        // Removing the last event leaves a shorter, intact log: only a digest shows it
        // (tests/digest.rs).
        cases.push((
            if p == 1000 {
                "intact: the tail removed".to_string()
            } else {
                format!("event {p} removed")
            },
            Box::new(move |e| {
                e.remove(p - 1);
            }),
        ));
        cases.push((
            format!("event {p} moved to another stream, chain recomputed"),
            Box::new(move |e| {
                e[p - 1].stream_id = "moved/elsewhere".into();
                rechain(e, p - 1);
            }),
        ));
        if p % 100 == 0 {
            // The last event of its stream (fill writes streams of 100).
            cases.push((
                format!("version bumped at {p}, chain recomputed"),
                Box::new(move |e| {
                    e[p - 1].stream_version += 1;
                    rechain(e, p - 1);
                }),
            ));
        }
        // (The first event may have any time.)
        cases.push((
            format!("time set back at {p}, chain recomputed"),
            Box::new(move |e| {
                let at = p.max(2) - 1;
                e[at].recorded_at = "2000-01-01T00:00:00.000000Z".into();
                rechain(e, at);
            }),
        ));
    }
    for p in [250usize, 500, 700] {
        cases.push((
            format!("events {p} and {} trade positions", p + 1),
            Box::new(move |e| {
                e.swap(p - 1, p);
                let (a, b) = (e[p - 1].position, e[p].position);
                e[p - 1].position = b;
                e[p].position = a;
            }),
        ));
        cases.push((
            format!("events {p} and {} trade positions, chain recomputed", p + 1),
            Box::new(move |e| {
                e.swap(p - 1, p);
                let (a, b) = (e[p - 1].position, e[p].position);
                e[p - 1].position = b;
                e[p].position = a;
                rechain(e, p - 1);
            }),
        ));
    }
    cases.push(("intact".into(), Box::new(|_| {})));

    for (name, damage) in &cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let mut damaged = events.clone();
        damage(&mut damaged);
        {
            let s = support::sqlite_store_at(&path);
            drop(s);
            let c = rusqlite::Connection::open(&path).unwrap();
            let tx = c.unchecked_transaction().unwrap();
            for e in &damaged {
                tx.execute(
                    "INSERT INTO events VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                    rusqlite::params![
                        e.position as i64, e.event_id.to_string(), e.stream_id, e.stream_version as i64,
                        e.event_type, e.schema_version as i64, e.occurred_at, e.recorded_at,
                        e.command_id.to_string(), e.correlation_id, e.actor, e.data,
                        &e.prev_hash[..], &e.hash[..]
                    ],
                )
                .unwrap();
            }
            // As a log of a build before the tree: its tree is built when it opens (a tree
            // that followed the log and lost nodes is never rebuilt silently).
            tx.execute("DELETE FROM meta WHERE key = 'merkle_size'", [])
                .unwrap();
            tx.commit().unwrap();
        }
        let store = support::sqlite_store_at(&path);
        let outcome = |parts| match verify_in_parts(store.as_ref(), parts, &mut |_| {}) {
            Ok(v) => Ok(v.hash),
            Err(VerifyError::Broken { position, reason }) => Err((position, reason)),
            Err(e) => panic!("{name}: {e}"),
        };
        let one = outcome(1);
        assert_eq!(one.is_ok(), name.starts_with("intact"), "{name}: {one:?}");
        for parts in [2, 3, 4, 7] {
            assert_eq!(outcome(parts), one, "{name}, {parts} parts");
        }
    }
}

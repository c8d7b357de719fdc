//! Tamper evidence: change one byte of a stored event in the SQLite file itself, and
//! `audit verify` fails naming that position.

mod support;

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

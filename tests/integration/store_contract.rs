//! The store contract suite, run against the SQLite backend (real files).

use crate::support;

use campaign_ledger::store::{AppendResult, EventStore, ExpectedVersion, SqliteStore, SystemClock};
use std::sync::Arc;
use support::contract::{event, request, two_handles_go_on_after_the_conflict};

fn sqlite() -> (Arc<dyn EventStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (support::sqlite_store(dir.path()), dir)
}

crate::store_contract!(sqlite);

#[test]
fn sqlite_command_ids_and_the_chain_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    let id = uuid::Uuid::now_v7();
    let head = {
        let s = SqliteStore::open(&path, Arc::new(SystemClock)).unwrap();
        s.append(request("a", ExpectedVersion::Exact(0), id, vec![event(1)]))
            .unwrap();
        s.head().unwrap()
    };
    let s = SqliteStore::open(&path, Arc::new(SystemClock)).unwrap();
    assert_eq!(s.head().unwrap(), head);
    assert!(matches!(
        s.append(request("a", ExpectedVersion::Any, id, vec![event(2)]))
            .unwrap(),
        AppendResult::Duplicate(_)
    ));
    let r = s
        .append(request(
            "a",
            ExpectedVersion::Exact(1),
            uuid::Uuid::now_v7(),
            vec![event(3)],
        ))
        .unwrap();
    let AppendResult::Committed(rec) = r else {
        panic!()
    };
    assert_eq!(rec.first_position, 2);
    assert_eq!(s.read_all(1, 1).unwrap()[0].prev_hash, head.hash);
}

#[test]
fn sqlite_two_processes_writing_one_file_cannot_take_the_same_version() {
    // Two store handles on one file behave as two processes: each has its own writer and cache.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    let a = SqliteStore::open(&path, Arc::new(SystemClock)).unwrap();
    let b = SqliteStore::open(&path, Arc::new(SystemClock)).unwrap();
    a.append(request(
        "s",
        ExpectedVersion::Exact(0),
        uuid::Uuid::now_v7(),
        vec![event(1)],
    ))
    .unwrap();
    // b has never seen stream s; its expectation is stale
    assert!(b
        .append(request(
            "s",
            ExpectedVersion::Exact(0),
            uuid::Uuid::now_v7(),
            vec![event(2)]
        ))
        .is_err());
    two_handles_go_on_after_the_conflict(&a, &b);
}

#[test]
fn sqlite_refuses_a_file_that_is_not_a_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "these are my notes, not a database").unwrap();
    let err = SqliteStore::open(&path, Arc::new(SystemClock))
        .err()
        .expect("refused");
    assert!(err.to_string().contains("notes.txt"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "these are my notes, not a database"
    );
}

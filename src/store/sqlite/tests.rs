//! Unit tests of the SQLite backend's opening.

use super::*;

#[test]
fn an_unusable_file_is_refused_with_its_cause_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.db");
    std::fs::write(&path, "not a database, only notes about one").unwrap();
    let err = SqliteStore::open(&path, Arc::new(crate::store::SystemClock))
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("not a usable SQLite database"),
        "{err}"
    );
    let cause = err.cause().expect("the SQLite error is kept");
    assert!(
        cause.to_string().contains("not a usable SQLite database"),
        "{cause}"
    );
}

#[test]
fn an_older_logs_tree_is_built_at_open_and_an_interrupted_build_resumes() {
    use crate::envelope::merkle::MemoryTree;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let clock = Arc::new(crate::store::SystemClock);
    let store = SqliteStore::open(&path, clock.clone()).unwrap();
    for i in 0..100u64 {
        let event = crate::store::NewEvent {
            event_type: "TestHappened".into(),
            schema_version: 1,
            occurred_at: chrono::DateTime::parse_from_rfc3339("2021-12-17T10:00:00+01:00").unwrap(),
            data: format!("{{\"n\":{i}}}"),
        };
        store
            .append(AppendRequest {
                stream_id: format!("s{}", i % 7),
                expected: crate::store::ExpectedVersion::Any,
                command: crate::store::CommandMeta {
                    command_id: Uuid::now_v7(),
                    content_hash: [0; 32],
                    correlation_id: None,
                    actor: crate::store::Actor::default(),
                },
                events: vec![event],
                person: None,
            })
            .unwrap();
    }
    let root = crate::audit::tree::root_at(&store, 100).unwrap();
    store.close();
    let mut tree = MemoryTree::default();
    // Written before the tree existed: no nodes, no size. Then a build stopped after 40 events.
    let c = Connection::open(&path).unwrap();
    c.execute_batch(
        "DROP TRIGGER merkle_append_only_d; DELETE FROM merkle; DELETE FROM meta WHERE key = 'merkle_size';",
    )
    .unwrap();
    tree::extend(&c, 0, 40).unwrap();
    c.execute(
        "INSERT INTO meta (key, value) VALUES ('merkle_size', '40')",
        [],
    )
    .unwrap();
    let kept: i64 = c
        .query_row("SELECT COUNT(*) FROM merkle", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        kept,
        5 + 2 + 1,
        "the nodes of the first 40 events (levels 3 to 5)"
    );
    drop(c);
    // Opening builds the rest and then follows the log.
    let store = SqliteStore::open(&path, clock).unwrap();
    assert_eq!(store.tree_size().unwrap(), 100);
    for e in store.read_all(0, 1000).unwrap() {
        tree.push(&e.hash);
    }
    assert_eq!(crate::audit::tree::root_at(&store, 100).unwrap(), root);
    assert_eq!(tree.root(), root);
    crate::audit::verify(&store, &mut |_| {}).unwrap();
}

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

//! Crash safety: kill -9 writers in the middle of a load. Every acknowledged command is in the
//! log, nothing else is, the chain verifies, and projections equal a rebuild.

use crate::support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use uuid::Uuid;

fn command_file(
    dir: &std::path::Path,
    name: &str,
    directorate: &str,
    n: usize,
) -> (std::path::PathBuf, HashSet<Uuid>) {
    let path = dir.join(name);
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut ids = HashSet::new();
    let site_id = Uuid::now_v7();
    ids.insert(site_id);
    writeln!(f, r#"{{"type":"AuthoriseSite","command_id":"{site_id}","directorate":"{directorate}","site":"{directorate}-dt","site_kind":"dt_premises","authorised_on":"2021-09-01"}}"#).unwrap();
    for i in 0..n {
        let id = Uuid::now_v7();
        ids.insert(id);
        writeln!(
            f,
            r#"{{"type":"AdministerDose","command_id":"{id}","person_ref":"{directorate}-{i}","age_band":"30-39","recipient":"user","directorate":"{directorate}","site":"{directorate}-dt","product":"comirnaty","lot":"L{i}","dose":"first","administered_at":"2021-10-{:02}T10:00:00+02:00"}}"#,
            1 + i % 28
        )
        .unwrap();
    }
    (path, ids)
}

#[test]
fn kill_9_during_a_load_loses_no_acknowledged_command_and_adds_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        command_file(dir.path(), "a.jsonl", "lyon", 50_000),
        command_file(dir.path(), "b.jsonl", "paris", 50_000),
    ];
    let mut children: Vec<_> = files
        .iter()
        .map(|(path, _)| {
            support::bin()
                .current_dir(dir.path())
                .args(["submit", "--format", "json"])
                .arg(path)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Read acknowledgements until each writer has had a good number accepted, then kill -9.
    let mut acknowledged: HashSet<Uuid> = HashSet::new();
    for (i, child) in children.iter_mut().enumerate() {
        let reader = BufReader::new(child.stdout.take().unwrap());
        let mut lines = reader.lines();
        let mut accepted = 0;
        while accepted < 400 + 300 * i {
            let Some(line) = lines.next() else {
                let mut err = String::new();
                let _ = std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err);
                panic!("writer {i} stopped after {accepted} acknowledgements: {err}");
            };
            let line = line.unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v["outcome"], "accepted", "{line}");
            acknowledged.insert(v["command_id"].as_str().unwrap().parse().unwrap());
            accepted += 1;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Outcomes already written to the pipe before the kill are acknowledgements too.
        for line in lines.map_while(Result::ok) {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            acknowledged.insert(v["command_id"].as_str().unwrap().parse().unwrap());
        }
    }

    let (store, _ledger, engine) = support::ledger(&dir.path().join("ledger-data"));
    let submitted: HashSet<Uuid> = files
        .iter()
        .flat_map(|(_, ids)| ids.iter().copied())
        .collect();
    for id in &acknowledged {
        assert!(
            store.command(*id).unwrap().is_some(),
            "acknowledged command {id} is missing"
        );
    }
    let events = store.read_all(0, 1_000_000).unwrap();
    assert!(events.len() >= acknowledged.len());
    let mut seen = HashSet::new();
    for e in &events {
        assert!(
            submitted.contains(&e.command_id),
            "event {} comes from no submitted command",
            e.position
        );
        assert!(
            seen.insert(e.command_id),
            "command {} appended twice",
            e.command_id
        );
        assert!(store.command(e.command_id).unwrap().is_some());
    }
    // The chain, and the Merkle tree (written in the transactions of the events it covers):
    // its root is the root recomputed from the events, and every stored node is checked.
    campaign_ledger::audit::verify(store.as_ref(), &mut |_| {}).expect("the chain verifies");
    let mut tree = campaign_ledger::envelope::merkle::MemoryTree::default();
    events.iter().for_each(|e| tree.push(&e.hash));
    assert_eq!(
        campaign_ledger::audit::tree::root_at(store.as_ref(), events.len() as u64).unwrap(),
        tree.root(),
        "the stored tree's root after kill -9"
    );
    // No event outlived the key its person ref was sealed with (keys are made durable before
    // the group that uses them commits), and each ref opens to what was submitted.
    let master = std::fs::read_to_string(dir.path().join("ledger-data/master.key")).unwrap();
    let keys = campaign_ledger::privacy::KeyStore::open(
        &dir.path().join("ledger-data/ledger.keys.db"),
        &campaign_ledger::privacy::MasterKey::from_hex(&master).unwrap(),
        false,
    )
    .unwrap();
    let mut opened = 0;
    for e in &events {
        let data: serde_json::Value = serde_json::from_str(&e.data).unwrap();
        let Some(sealed) = data["person_ref"].as_str() else {
            continue;
        };
        let person_id = campaign_ledger::privacy::sealed_person_id(sealed)
            .unwrap_or_else(|| panic!("position {}: person_ref in clear", e.position));
        let campaign_ledger::privacy::KeyState::Present(k) = keys.state(person_id).unwrap() else {
            panic!("position {}: the key of {person_id} is missing", e.position)
        };
        let clear = campaign_ledger::privacy::open_sealed(&k, sealed).unwrap();
        assert!(
            clear.starts_with(data["directorate"].as_str().unwrap()),
            "{clear}"
        );
        opened += 1;
    }
    assert_eq!(opened, events.len() - 2);
    for name in ["doses_by_directorate", "doses_by_day", "session_attendance"] {
        let (live, _) = engine.live_state(store.as_ref(), name).unwrap();
        let (rebuilt, _) = engine.replay_fresh(store.as_ref(), name).unwrap();
        assert_eq!(live, rebuilt, "{name}");
    }
    let r = engine
        .report(store.as_ref(), "doses_by_directorate", None, None)
        .unwrap();
    assert_eq!(
        r.totals.int("total") as usize,
        events.len() - 2,
        "every dose counted once (two site events)"
    );
}

#[test]
fn kill_9_while_projections_are_saved_never_double_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = command_file(dir.path(), "a.jsonl", "lyon", 3_000);
    assert!(
        support::run(dir.path(), &["submit", path.to_str().unwrap()])
            .status
            .success()
    );
    // Readers catch up and save; kill them at arbitrary moments.
    for delay_ms in [0u64, 5, 20, 60] {
        std::fs::remove_file(dir.path().join("ledger-data/ledger.projections.db")).ok();
        let mut child = support::bin()
            .current_dir(dir.path())
            .args(["report", "doses_by_day"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().ok();
        child.wait().unwrap();
        let o = support::run(
            dir.path(),
            &["report", "doses_by_directorate", "--format", "json"],
        );
        let r: serde_json::Value = serde_json::from_str(&support::stdout(&o)).unwrap();
        assert_eq!(r["totals"]["total"], 3_000, "after a kill at {delay_ms} ms");
    }
}

#[test]
fn processes_creating_the_same_new_store_at_once_all_open_it() {
    // Switching a new file to WAL can answer "busy" without waiting; opening retries it.
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    for round in 0..30 {
        let sub = dir.path().join(format!("r{round}"));
        std::fs::create_dir(&sub).unwrap();
        let children: Vec<_> = (0..3)
            .map(|_| {
                support::bin()
                    .current_dir(&sub)
                    .arg("submit")
                    .arg(&empty)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let o = c.wait_with_output().unwrap();
            assert!(
                o.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}

/// A log and key store left by an older build, which recorded each person's assignment (ref
/// lookup → key) in the key store after the log's group commit and made it durable lazily: a
/// power cut could take some back. The first run of this build hands the assignments over to
/// the log's person index, after finding the lost ones again in the log (the key their events'
/// sealed field opens with is assigned to the ref it opens to), so every person's history is
/// still theirs.
#[test]
fn an_older_key_store_is_handed_over_to_the_log_with_the_assignments_a_crash_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = command_file(dir.path(), "a.jsonl", "lyon", 20);
    assert!(
        support::run(dir.path(), &["submit", path.to_str().unwrap()])
            .status
            .success()
    );
    // The state an older build leaves: the assignments in the key store, none in the log;
    // a power cut took back those of 10 people, and the record of how far they were durable.
    // The log's person index: (lookup, person_id), in order.
    let index = || {
        let log = rusqlite::Connection::open(dir.path().join("ledger-data/ledger.db")).unwrap();
        let mut links: Vec<(Vec<u8>, String)> = log
            .prepare("SELECT lookup, person_id FROM persons")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        links.sort();
        links
    };
    let links = index();
    assert_eq!(links.len(), 20);
    rusqlite::Connection::open(dir.path().join("ledger-data/ledger.db"))
        .unwrap()
        .execute("DELETE FROM persons", [])
        .unwrap();
    let keys = rusqlite::Connection::open(dir.path().join("ledger-data/ledger.keys.db")).unwrap();
    for (lookup, id) in &links[..10] {
        keys.execute(
            "UPDATE persons SET lookup = ?1 WHERE person_id = ?2",
            rusqlite::params![lookup, id],
        )
        .unwrap();
    }
    keys.execute(
        "DELETE FROM meta WHERE key IN ('assigned_upto', 'persons_in_log')",
        [],
    )
    .unwrap();
    drop(keys);
    // A second dose for each: accepted only if their first dose is found.
    let seconds: String = (0..20)
        .map(|i| format!(r#"{{"type":"AdministerDose","command_id":"0193ffff-0000-7000-8000-{i:012}","person_ref":"lyon-{i}","age_band":"30-39","recipient":"user","directorate":"lyon","site":"lyon-dt","product":"comirnaty","lot":"L","dose":"second","administered_at":"2021-11-20T10:00:00+01:00"}}"#) + "\n")
        .collect();
    std::fs::write(dir.path().join("second.jsonl"), seconds).unwrap();
    let o = support::run(dir.path(), &["submit", "second.jsonl", "--format", "json"]);
    let out = support::stdout(&o);
    assert_eq!(
        out.matches("\"accepted\"").count(),
        20,
        "{out}{}",
        support::stderr(&o)
    );
    assert_eq!(
        index(),
        links,
        "every person is in the log's index, as before"
    );
}

/// A log read that fails part-way through a catch-up (a NATS outage, a failed fsync) must not
/// cost the projections what they had already folded: the retry on the same engine equals a
/// rebuild.
#[test]
fn a_read_failing_part_way_through_a_catch_up_loses_nothing_on_the_retry() {
    use campaign_ledger::domain::Policy;
    use campaign_ledger::projection::{load_definitions, Engine};
    use campaign_ledger::store::{
        AppendRequest, AppendResult, CommandRecord, DataRef, EventRef, EventStore, Head,
        RecordedEvent, StoreError,
    };
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// The SQLite log, whose `scan_data` fails after `fail_after` events (0: never).
    struct Flaky {
        inner: Arc<dyn EventStore>,
        fail_after: AtomicU64,
    }
    impl EventStore for Flaky {
        fn append(&self, r: AppendRequest) -> Result<AppendResult, StoreError> {
            self.inner.append(r)
        }
        fn read_stream(&self, s: &str) -> Result<Vec<RecordedEvent>, StoreError> {
            self.inner.read_stream(s)
        }
        fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
            self.inner.read_all(after, limit)
        }
        fn scan(
            &self,
            after: u64,
            to: u64,
            f: &mut dyn FnMut(EventRef<'_>) -> bool,
        ) -> Result<u64, StoreError> {
            self.inner.scan(after, to, f)
        }
        fn scan_data(
            &self,
            after: u64,
            to: u64,
            f: &mut dyn FnMut(DataRef<'_>) -> bool,
        ) -> Result<u64, StoreError> {
            let limit = self.fail_after.load(Ordering::SeqCst);
            let mut seen = 0;
            let mut cut = false;
            let n = self.inner.scan_data(after, to, &mut |e| {
                seen += 1;
                if limit > 0 && seen > limit {
                    cut = true;
                    return false;
                }
                f(e)
            })?;
            if cut {
                return Err(StoreError::Unavailable("the read broke off (test)".into()));
            }
            Ok(n)
        }
        fn command(&self, id: Uuid) -> Result<Option<CommandRecord>, StoreError> {
            self.inner.command(id)
        }
        fn head(&self) -> Result<Head, StoreError> {
            self.inner.head()
        }
        fn wait_beyond(&self, p: u64, t: std::time::Duration) -> Result<u64, StoreError> {
            self.inner.wait_beyond(p, t)
        }
        fn describe(&self) -> String {
            self.inner.describe()
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let store = Flaky {
        inner: support::sqlite_store(dir.path()),
        fail_after: AtomicU64::new(0),
    };
    let defs = load_definitions(None).unwrap();
    let tz = Policy::default().time_zone;
    let live = Engine::open(&dir.path().join("live.db"), defs.clone(), tz).unwrap();
    support::fill(&store, 3_000);
    assert_eq!(live.catch_up(&store).unwrap(), 3_000);
    support::fill(&store, 6_000);
    // Far enough into the second read that a part of it has been folded already.
    store.fail_after.store(5_000, Ordering::SeqCst);
    assert!(live.catch_up(&store).is_err());
    store.fail_after.store(0, Ordering::SeqCst);
    assert_eq!(live.catch_up(&store).unwrap(), 9_000);
    let rebuilt = Engine::open(&dir.path().join("rebuilt.db"), defs, tz).unwrap();
    for name in ["doses_by_directorate", "doses_by_day"] {
        let (a, pa) = live.live_state(&store, name).unwrap();
        let (b, pb) = rebuilt.live_state(&store, name).unwrap();
        assert_eq!((pa, pb), (9_000, 9_000));
        assert_eq!(a, b, "{name}");
    }
}

#[test]
fn a_projections_file_from_another_log_is_reported_rebuilt_and_replaced() {
    use campaign_ledger::domain::Policy;
    use campaign_ledger::projection::{load_definitions, Engine};
    let dir = tempfile::tempdir().unwrap();
    let (other, this) = (
        support::sqlite_store_at(&dir.path().join("other.db")),
        support::sqlite_store_at(&dir.path().join("this.db")),
    );
    // The file was built from a longer log; this one is shorter and different.
    support::fill(other.as_ref(), 3_000);
    support::fill(this.as_ref(), 2_000);
    let (defs, tz) = (load_definitions(None).unwrap(), Policy::default().time_zone);
    let file = dir.path().join("projections.db");
    Engine::open(&file, defs.clone(), tz)
        .unwrap()
        .catch_up(other.as_ref())
        .unwrap();

    let engine = Engine::open(&file, defs.clone(), tz).unwrap();
    // Saved states only: a fold kept in memory (data_quality) has no file state to mistake.
    let saved = |name: &str| defs.iter().any(|d| d.name == name && d.fold.is_none());
    for s in engine.status(this.as_ref()).unwrap() {
        if !saved(&s.name) {
            assert!(s.status.starts_with("up to date"), "{s:?}");
            continue;
        }
        assert!(s.status.contains("built from another log"), "{s:?}");
    }
    assert_eq!(engine.catch_up(this.as_ref()).unwrap(), 2_000);
    // Saved: a new engine on the same file finds this log's state, at this log's head.
    let reopened = Engine::open(&file, defs.clone(), tz).unwrap();
    for s in reopened.status(this.as_ref()).unwrap() {
        let status = if saved(&s.name) {
            s.status.as_str()
        } else {
            "up to date"
        };
        assert_eq!((s.checkpoint, status), (2_000, "up to date"), "{s:?}");
    }
    let rebuilt = Engine::open(&dir.path().join("rebuilt.db"), defs.clone(), tz).unwrap();
    for d in &defs {
        assert_eq!(
            reopened.live_state(this.as_ref(), &d.name).unwrap(),
            rebuilt.live_state(this.as_ref(), &d.name).unwrap(),
            "{}",
            d.name
        );
    }
}

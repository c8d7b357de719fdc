//! `backup` while `serve` writes, `backup --check`, and `restore` into a new directory: the
//! restored log exports byte for byte as the original up to the backup's head.

use crate::support;

use support::plain as request;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn run_ok(dir: &Path, args: &[&str]) -> String {
    let o = support::run(dir, args);
    assert!(
        o.status.success(),
        "{args:?}: {}{}",
        support::stdout(&o),
        support::stderr(&o)
    );
    support::stdout(&o)
}

fn run_err(dir: &Path, args: &[&str]) -> String {
    let o = support::run(dir, args);
    assert!(
        !o.status.success(),
        "{args:?} succeeded: {}",
        support::stdout(&o)
    );
    support::stderr(&o)
}

#[test]
fn a_backup_taken_while_serving_restores_to_the_same_log_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = support::serve_new(dir.path(), &[]);
    let site = support::lyon_site();
    assert_eq!(request(&addr, "POST", "/v1/commands", &site).0, 200);

    // Eight clients record new people (new keys) and one reads events naming them (access log
    // entries) while the backup runs.
    let stop = AtomicBool::new(false);
    let bk = dir.path().join("backups/one");
    let backed_up = std::thread::scope(|s| {
        for c in 0..8 {
            let (addr, stop) = (&addr, &stop);
            s.spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let (code, body) = request(
                        addr,
                        "POST",
                        "/v1/commands",
                        &support::lyon_first_dose(uuid::Uuid::now_v7(), &format!("p-{c}-{i}")),
                    );
                    assert_eq!(code, 200, "{body}");
                    i += 1;
                }
            });
        }
        s.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                assert_eq!(request(&addr, "GET", "/v1/events?limit=5", "").0, 200);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        std::thread::sleep(Duration::from_millis(1500));
        let out = run_ok(dir.path(), &["backup", "--to", bk.to_str().unwrap()]);
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::SeqCst);
        out
    });
    assert!(backed_up.contains("checked"), "{backed_up}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bk.join("manifest.json")).unwrap()).unwrap();
    let position = manifest["position"].as_u64().unwrap();
    assert!(position > 20, "{manifest}");
    assert!(
        manifest["persons_with_keys"].as_u64().unwrap() > 10,
        "{manifest}"
    );
    assert!(
        manifest["access_log_size"].as_u64().unwrap() > 0,
        "{manifest}"
    );
    // The master key is not in the backup.
    let names: Vec<String> = std::fs::read_dir(&bk)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains("master") || n.contains("signing")),
        "{names:?}"
    );
    // The server went on after the backup: its log is longer than the copy.
    let head: u64 = support::stdout(&support::run(dir.path(), &["audit", "verify"]))
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap();
    assert!(
        head > position,
        "the writes went on after the backup: {head} > {position}"
    );
    drop(server);

    let checked = run_ok(dir.path(), &["backup", "--check", bk.to_str().unwrap()]);
    assert!(
        checked.contains(&format!("up to position {position}")),
        "{checked}"
    );

    // Restored into a new directory, with the master key kept apart.
    let fresh = tempfile::tempdir().unwrap();
    let master = dir.path().join("ledger-data/master.key");
    let restore = [
        "--store",
        "sqlite:./restored/ledger.db",
        "--master-key",
        master.to_str().unwrap(),
    ];
    let refused = run_err(
        fresh.path(),
        &[
            "--store",
            "sqlite:./restored/ledger.db",
            "restore",
            "--from",
            bk.to_str().unwrap(),
        ],
    );
    assert!(refused.contains("never holds it"), "{refused}");
    let journal = dir.path().join("ledger-data/ledger.erasures.jsonl");
    let mut args = restore.to_vec();
    args.extend(["--erasure-journal", journal.to_str().unwrap()]);
    args.extend(["restore", "--from", bk.to_str().unwrap()]);
    run_ok(fresh.path(), &args);
    let again = run_err(fresh.path(), &args);
    assert!(again.contains("already exists"), "{again}");

    let to = position.to_string();
    let original = run_ok(dir.path(), &["export", "--to", &to]);
    let restored = run_ok(
        fresh.path(),
        &["--store", "sqlite:./restored/ledger.db", "export"],
    );
    assert_eq!(original.len(), restored.len());
    assert!(
        original == restored,
        "the restored log differs from the original up to {position}"
    );
    run_ok(
        fresh.path(),
        &["--store", "sqlite:./restored/ledger.db", "audit", "verify"],
    );
    // Its projections, copied before the log, catch up to the same state as a rebuild.
    let mut rebuild = restore.to_vec();
    rebuild.extend(["projections", "rebuild", "doses_by_directorate"]);
    let o = support::run(fresh.path(), &rebuild);
    let out = support::stdout(&o) + &support::stderr(&o);
    assert!(out.contains("identical to the live state"), "{out}");
}

#[test]
fn a_changed_backup_file_is_caught_by_the_check() {
    let dir = tempfile::tempdir().unwrap();
    run_ok(dir.path(), &["demo"]);
    run_ok(dir.path(), &["backup", "--to", "bk"]);
    run_ok(dir.path(), &["backup", "--check", "bk"]);
    // One byte of the copied log changed.
    let log = dir.path().join("bk/ledger.db");
    let mut bytes = std::fs::read(&log).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&log, &bytes).unwrap();
    let err = run_err(dir.path(), &["backup", "--check", "bk"]);
    assert!(
        err.contains("ledger.db is not the file the manifest describes"),
        "{err}"
    );
    // A manifest that is not one.
    std::fs::write(dir.path().join("bk/manifest.json"), "{\"format\": 3}").unwrap();
    let err = run_err(dir.path(), &["backup", "--check", "bk"]);
    assert!(err.contains("is not a backup manifest"), "{err}");
}

#[test]
fn backup_refuses_what_it_cannot_do_safely() {
    let dir = tempfile::tempdir().unwrap();
    let err = run_err(dir.path(), &["backup", "--to", "bk"]);
    assert!(err.contains("there is no ledger at"), "{err}");
    run_ok(dir.path(), &["demo"]);
    std::fs::create_dir(dir.path().join("full")).unwrap();
    std::fs::write(dir.path().join("full/x"), "x").unwrap();
    let err = run_err(dir.path(), &["backup", "--to", "full"]);
    assert!(err.contains("is not empty"), "{err}");
    let err = run_err(dir.path(), &["backup", "--check", "ledger-data"]);
    assert!(err.contains("written by `campaign-ledger backup`"), "{err}");
    let err = run_err(
        dir.path(),
        &["--store", "nats://127.0.0.1:1", "backup", "--to", "bk"],
    );
    assert!(err.contains("is not one"), "{err}");
    let err = run_err(dir.path(), &["backup"]);
    assert!(err.contains("--to"), "{err}");
}

/// The operator restoring a backup taken before an erasure: the erasure journal (kept apart
/// from the backups) is applied before the ledger opens, so the person stays erased — their
/// key destroyed again in the restored key store, a `PersonErased` appended. Without the
/// journal, restore refuses unless told what it means.
#[test]
fn an_erasure_survives_the_restore_of_an_older_backup() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lines = [
        support::lyon_site(),
        support::lyon_first_dose(uuid::Uuid::now_v7(), "P-000001"),
        support::lyon_first_dose(uuid::Uuid::now_v7(), "P-000002"),
    ];
    std::fs::write(d.join("in.jsonl"), lines.join("\n") + "\n").unwrap();
    run_ok(d, &["submit", "in.jsonl"]);
    run_ok(d, &["backup", "--to", "bk"]);
    let erased = run_ok(d, &["erase-person", "P-000001"]);
    let person_id = erased
        .split_whitespace()
        .find(|w| w.len() == 32 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("{erased}"))
        .to_string();
    let wrapped: Vec<u8> = rusqlite::Connection::open(d.join("bk/ledger.keys.db"))
        .unwrap()
        .query_row(
            "SELECT wrapped_key FROM persons WHERE person_id = ?1",
            [&person_id],
            |r| r.get(0),
        )
        .unwrap();
    let journal = d.join("ledger-data/ledger.erasures.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(text.contains(&person_id), "{text}");
    assert!(
        !text.contains("P-000001"),
        "the journal holds the ref: {text}"
    );

    // The machine's disk is lost; the journal and the master key were kept elsewhere.
    let kept = tempfile::tempdir().unwrap();
    std::fs::copy(&journal, kept.path().join("erasures.jsonl")).unwrap();
    std::fs::copy(
        d.join("ledger-data/master.key"),
        kept.path().join("master.key"),
    )
    .unwrap();
    std::fs::remove_dir_all(d.join("ledger-data")).unwrap();
    let master = kept.path().join("master.key");
    let journal = kept.path().join("erasures.jsonl");
    let with_key = |args: &[&str]| {
        let mut all = vec!["--master-key", master.to_str().unwrap()];
        all.extend(args);
        all.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let args = |a: &[&str]| with_key(a);
    let refused = run_err(d, &strs(&args(&["restore", "--from", "bk"])));
    assert!(
        refused.contains("erasure journal") && refused.contains("--without-erasure-journal"),
        "{refused}"
    );
    assert!(
        !d.join("ledger-data/ledger.db").exists(),
        "refused, yet restored"
    );
    let out = run_ok(
        d,
        &strs(&args(&[
            "--erasure-journal",
            journal.to_str().unwrap(),
            "restore",
            "--from",
            "bk",
        ])),
    );
    assert!(out.contains("1 erasure"), "{out}");
    // The person stays erased: no key, no index entry, a PersonErased in the log.
    let keys = std::fs::read(d.join("ledger-data/ledger.keys.db")).unwrap();
    assert!(!keys.windows(wrapped.len()).any(|w| w == wrapped.as_slice()));
    run_ok(d, &["audit", "keygen"]);
    let p = run_err(d, &strs(&args(&["audit", "prove", "--person", "P-000001"])));
    assert!(p.contains("erased") || p.contains("no key"), "{p}");
    run_ok(d, &strs(&args(&["audit", "prove", "--person", "P-000002"])));
    let export = run_ok(d, &["export"]);
    assert_eq!(export.matches("\"PersonErased\"").count(), 1, "{export}");
    run_ok(d, &["audit", "verify"]);
    // The ref starts afresh: a new pseudonym.
    std::fs::write(
        d.join("again.jsonl"),
        support::lyon_first_dose(uuid::Uuid::now_v7(), "P-000001") + "\n",
    )
    .unwrap();
    let mut again = args(&["--erasure-journal", journal.to_str().unwrap()]);
    again.extend([
        "submit".into(),
        "again.jsonl".into(),
        "--format".into(),
        "json".into(),
    ]);
    let out = run_ok(d, &strs(&again));
    assert!(out.contains("accepted"), "{out}");

    // Told explicitly, restore goes on without a journal, and says what that means.
    let other = tempfile::tempdir().unwrap();
    let bk = d.join("bk");
    let out = support::run(
        other.path(),
        &strs(&args(&[
            "restore",
            "--from",
            bk.to_str().unwrap(),
            "--without-erasure-journal",
        ])),
    );
    assert!(out.status.success(), "{}", support::stderr(&out));
    assert!(
        support::stderr(&out).contains("erased since the backup"),
        "{}",
        support::stderr(&out)
    );
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

//! Where a ledger comes from: `serve` never creates one silently (it refuses a missing store,
//! naming the path it looked at, unless told `--create`); the commands that write from a file
//! may create one, and say so on standard error with where the keys went.

use crate::support;

use support::{run, stderr};

#[test]
fn serve_refuses_a_missing_store_naming_the_path_it_looked_at() {
    let dir = tempfile::tempdir().unwrap();
    // Spawned, not run: a server that wrongly starts must fail the test, not hang it.
    let mut child = support::bin()
        .current_dir(dir.path())
        .args([
            "--store",
            "sqlite:./ledgr.db",
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("serve started on a missing store instead of refusing");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    let looked = dir.path().canonicalize().unwrap().join("ledgr.db");
    assert!(
        err.contains(&looked.display().to_string()),
        "the message names the absolute path: {err}"
    );
    assert!(err.contains("--create"), "{err}");
    // Nothing was made: no ledger, no key store, no master key.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "serve left files behind: {left:?}");
}

#[test]
fn serve_create_starts_a_new_ledger_and_says_where_it_and_its_keys_are() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, _addr) = support::spawn_serve(
        dir.path(),
        &["serve", "--listen", "127.0.0.1:0", "--create"],
        std::process::Stdio::piped(),
    );
    server.0.kill().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut server.0.stderr.take().unwrap(), &mut err).unwrap();
    let root = dir.path().canonicalize().unwrap();
    assert!(
        err.contains(&format!(
            "created a new ledger at {}",
            root.join("ledger-data/ledger.db").display()
        )),
        "{err}"
    );
    assert!(
        err.contains(
            &root
                .join("ledger-data/ledger.keys.db")
                .display()
                .to_string()
        ),
        "{err}"
    );
    assert!(
        err.contains("keep the master key apart from the log"),
        "{err}"
    );
}

#[test]
fn submit_creates_a_ledger_and_says_so_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("site.json"),
        r#"{"type":"AuthoriseSite","command_id":"0190c0de-0000-7000-8000-000000000001","directorate":"lyon","site":"lyon-dt","site_kind":"dt_premises","authorised_on":"2021-08-01"}"#,
    )
    .unwrap();
    let o = run(dir.path(), &["submit", "site.json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("created a new ledger at"),
        "{}",
        stderr(&o)
    );
    // The second time the ledger exists: nothing is said about creating it.
    let o = run(dir.path(), &["submit", "site.json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !stderr(&o).contains("created a new ledger"),
        "{}",
        stderr(&o)
    );
    // And the commands that only read open it.
    let o = run(dir.path(), &["audit", "verify"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

//! NATS-fed projections: a worker folds LEDGER_EVENTS into the same projections as the
//! embedded engine; they must equal the in-process ones and a rebuild, also after kill -9.

mod support;

use std::process::Stdio;
use std::time::Duration;
use support::nats::NatsServer;
use support::{run, stderr, stdout};

fn report(
    dir: &std::path::Path,
    nats: Option<&str>,
    name: &str,
    extra: &[&str],
) -> serde_json::Value {
    let mut args: Vec<&str> = Vec::new();
    if let Some(url) = nats {
        args.extend(["--nats", url]);
    }
    args.extend(["report", name, "--format", "json"]);
    args.extend_from_slice(extra);
    let o = run(dir, &args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    let mut v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    v.as_object_mut().unwrap().remove("position");
    v
}

const PROJECTIONS: [&str; 5] = [
    "doses_by_directorate",
    "doses_by_day",
    "tickets_by_directorate",
    "session_attendance",
    "survey_coverage",
];

#[test]
fn the_scenario_through_nats_reports_what_the_embedded_engine_reports() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    // demo --nats loads the scenario and relays it.
    let o = run(dir.path(), &["--nats", &nats.url(), "demo"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Relayed to"), "{}", stdout(&o));
    let o = run(dir.path(), &["--nats", &nats.url(), "project", "--once"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let fed = report(
        dir.path(),
        Some(&nats.url()),
        "doses_by_directorate",
        &["--as-of", "2021-12-17"],
    );
    assert_eq!(fed["totals"]["total"], 1428);
    assert_eq!(fed["totals"]["first"], 880);
    for name in PROJECTIONS {
        for extra in [
            vec![],
            vec!["--as-of", "2021-11-30"],
            vec![
                "--as-of",
                "2021-12-17",
                "--known-at",
                "2021-12-17T18:00:00+01:00",
            ],
        ] {
            assert_eq!(
                report(dir.path(), Some(&nats.url()), name, &extra),
                report(dir.path(), None, name, &extra),
                "{name} {extra:?}"
            );
        }
        let o = run(
            dir.path(),
            &["--nats", &nats.url(), "projections", "rebuild", name],
        );
        assert!(
            stdout(&o).contains("identical to the live state"),
            "{name}: {}",
            stdout(&o)
        );
    }
}

#[test]
fn a_worker_killed_mid_fold_resumes_and_equals_a_rebuild() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = support::store_file(dir.path());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let store = support::sqlite_store_at(&path);
    support::fill(store.as_ref(), 120_000);
    assert!(run(dir.path(), &["--nats", &nats.url(), "relay", "--once"])
        .status
        .success());
    for delay in [150u64, 400, 900] {
        let mut worker = support::bin()
            .current_dir(dir.path())
            .args(["--nats", &nats.url(), "project"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        worker.kill().unwrap(); // SIGKILL
        worker.wait().unwrap();
    }
    // Two workers on one projection database: the later save never goes backwards.
    let a = support::bin()
        .current_dir(dir.path())
        .args(["--nats", &nats.url(), "project", "--once"])
        .spawn()
        .unwrap();
    let o = run(dir.path(), &["--nats", &nats.url(), "project", "--once"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(a.wait_with_output().unwrap().status.success());
    for name in ["doses_by_directorate", "doses_by_day"] {
        let fed = report(dir.path(), Some(&nats.url()), name, &[]);
        assert_eq!(fed, report(dir.path(), None, name, &[]), "{name}");
        let o = run(
            dir.path(),
            &["--nats", &nats.url(), "projections", "rebuild", name],
        );
        assert!(
            stdout(&o).contains("identical to the live state"),
            "{name}: {}",
            stdout(&o)
        );
    }
    let fed = report(dir.path(), Some(&nats.url()), "doses_by_directorate", &[]);
    assert_eq!(fed["totals"]["total"], 120_000);
}

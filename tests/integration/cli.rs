//! The CLI as a user runs it: every command, bad flags, unreadable files.

use crate::support;

use sha2::{Digest, Sha256};
use std::path::Path;
use support::{run, stderr, stdout};

const DOSE: &str = r#"{"type":"AdministerDose","command_id":"ID","person_ref":"p-cli-1","age_band":"30-39","recipient":"user","directorate":"lyon","site":"lyon-dt","product":"comirnaty","lot":"FF1234","dose":"first","administered_at":"2021-10-04T10:00:00+02:00"}"#;
const SITE: &str = r#"{"type":"AuthoriseSite","command_id":"00000000-0000-4000-8000-000000000001","directorate":"lyon","site":"lyon-dt","site_kind":"dt_premises","authorised_on":"2021-09-01"}"#;

fn dose(id: &str) -> String {
    DOSE.replace("ID", id)
}

fn file_hash(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap_or_default()))
}

fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn submit_reports_one_outcome_per_line_and_is_idempotent_forever() {
    let dir = tempfile::tempdir().unwrap();
    let input = [
        SITE.to_string(),
        dose("00000000-0000-4000-8000-000000000002"),
        "{not json".to_string(),
        String::new(),
        "# a comment".to_string(),
        dose("00000000-0000-4000-8000-000000000002"),
        dose("00000000-0000-4000-8000-000000000003"),
        dose("00000000-0000-4000-8000-000000000002").replace("FF1234", "OTHER"),
    ]
    .join("\n");
    std::fs::write(dir.path().join("cmds.jsonl"), &input).unwrap();
    let o = run(dir.path(), &["submit", "cmds.jsonl", "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = json_lines(&stdout(&o));
    let outcomes: Vec<(u64, &str)> = lines
        .iter()
        .map(|l| (l["line"].as_u64().unwrap(), l["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (1, "accepted"),
            (2, "accepted"),
            (3, "invalid"),
            (6, "duplicate"),
            (7, "rejected"),
            (8, "rejected")
        ]
    );
    assert_eq!(lines[2]["error"]["code"], "malformed_json");
    assert_eq!(lines[4]["error"]["code"], "first_dose_already_recorded");
    assert_eq!(lines[5]["error"]["code"], "command_id_reused");
    assert!(lines[0].get("error").is_none());
    assert_eq!(
        lines[1]["command_id"],
        "00000000-0000-4000-8000-000000000002"
    );

    // again: everything accepted before is a duplicate, nothing is appended
    assert!(run(dir.path(), &["audit", "keygen"]).status.success());
    let before = run(dir.path(), &["audit", "digest"]);
    let o = run(dir.path(), &["submit", "cmds.jsonl", "--format", "json"]);
    let again: Vec<String> = json_lines(&stdout(&o))
        .iter()
        .map(|l| l["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        again,
        [
            "duplicate",
            "duplicate",
            "invalid",
            "duplicate",
            "rejected",
            "rejected"
        ]
    );
    // The head is where it was (a digest also says when it was taken: compare the head).
    let head = |o: &std::process::Output| {
        let v: serde_json::Value = serde_json::from_str(&stdout(o)).unwrap();
        (v["position"].clone(), v["hash"].clone())
    };
    assert_eq!(head(&run(dir.path(), &["audit", "digest"])), head(&before));

    // table format, from standard input
    let mut child = support::bin()
        .current_dir(dir.path())
        .args(["submit", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dose("00000000-0000-4000-8000-000000000002").as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        stdout(&o).starts_with("line 1      duplicate"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn reports_in_three_formats_with_as_of_and_known_at() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.jsonl"),
        format!("{SITE}\n{}\n", dose("00000000-0000-4000-8000-000000000002")),
    )
    .unwrap();
    assert!(run(dir.path(), &["submit", "c.jsonl"]).status.success());
    let o = run(
        dir.path(),
        &[
            "report",
            "doses_by_directorate",
            "--as-of",
            "2021-12-17",
            "--format",
            "json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(r["projection"], "doses_by_directorate");
    assert_eq!(r["as_of"], "2021-12-17");
    assert_eq!(r["known_at"], serde_json::Value::Null);
    assert_eq!(r["rows"][0]["directorate"], "lyon");
    assert_eq!(r["rows"][0]["first"], 1);
    assert_eq!(r["totals"]["total"], 1);
    // before the dose: nothing
    let o = run(
        dir.path(),
        &[
            "report",
            "doses_by_directorate",
            "--as-of",
            "2021-10-03",
            "--format",
            "json",
        ],
    );
    let r: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(r["totals"]["total"], 0);
    // known before it was recorded: nothing
    let o = run(
        dir.path(),
        &[
            "report",
            "doses_by_directorate",
            "--known-at",
            "2021-12-17T18:00:00+01:00",
            "--format",
            "json",
        ],
    );
    let r: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(r["totals"]["total"], 0, "{r}");
    assert_eq!(r["known_at"], "2021-12-17T18:00:00+01:00");
    let o = run(
        dir.path(),
        &["report", "doses_by_directorate", "--format", "csv"],
    );
    assert_eq!(
        stdout(&o).lines().next().unwrap(),
        "directorate,first,second,booster,total,agents"
    );
    assert_eq!(stdout(&o).lines().nth(1).unwrap(), "lyon,1,0,0,1,0");
    let o = run(
        dir.path(),
        &["report", "tickets_by_directorate", "--as-of", "2021-11-30"],
    );
    assert!(o.status.success());
    assert!(stdout(&o).contains("issued"));
}

#[test]
fn scenario_writes_labelled_synthetic_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["scenario", "ofii-2021"]);
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(out.lines().next().unwrap().starts_with('#'));
    assert!(out.lines().next().unwrap().contains("synthetic"));
    let n = out.lines().filter(|l| l.starts_with('{')).count();
    assert!(n > 2000, "{n}");
    assert_eq!(
        out,
        stdout(&run(dir.path(), &["scenario", "ofii-2021"])),
        "deterministic"
    );
    assert!(
        !dir.path().join("ledger-data").exists(),
        "scenario touches no store"
    );
}

#[test]
fn demo_then_audit_and_projections() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["demo"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("1,428 doses administered by the OFII in its directorates, 880 of them first injections"), "{out}");
    assert!(out.contains("rejected by the rules"));
    let o = run(dir.path(), &["audit", "verify"]);
    assert!(o.status.success());
    assert!(stdout(&o).starts_with("ok: "), "{}", stdout(&o));
    let o = run(dir.path(), &["audit", "verify", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ok"], true);
    // A digest is made signed or not at all: without a key, the command says how to make one.
    let o = run(dir.path(), &["audit", "digest"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("create one with `campaign-ledger audit keygen`"),
        "{}",
        stderr(&o)
    );
    assert!(run(dir.path(), &["audit", "keygen"]).status.success());
    let d: serde_json::Value =
        serde_json::from_str(&stdout(&run(dir.path(), &["audit", "digest"]))).unwrap();
    assert_eq!(d["position"], v["position"]);
    assert_eq!(d["tree_size"], v["position"]);
    assert_eq!(d["root_hash"].as_str().map(str::len), Some(64));
    assert_eq!(d["hash"], v["hash"]);
    let o = run(dir.path(), &["projections", "list"]);
    assert_eq!(stdout(&o).lines().count(), 8);
    assert!(
        stdout(&o).lines().all(|l| l.contains("up to date")),
        "{}",
        stdout(&o)
    );
    let o = run(
        dir.path(),
        &["projections", "rebuild", "doses_by_directorate"],
    );
    assert!(o.status.success());
    assert!(
        stdout(&o).contains("identical to the live state"),
        "{}",
        stdout(&o)
    );
    // the demo again loads nothing
    let o = run(dir.path(), &["demo"]);
    assert!(stdout(&o).contains("0 accepted now"), "{}", stdout(&o));
    let d2: serde_json::Value =
        serde_json::from_str(&stdout(&run(dir.path(), &["audit", "digest"]))).unwrap();
    assert_eq!((&d["position"], &d["hash"]), (&d2["position"], &d2["hash"]));
}

#[test]
fn a_new_projection_file_is_a_new_read_model_without_recompiling() {
    let dir = tempfile::tempdir().unwrap();
    assert!(run(dir.path(), &["demo"]).status.success());
    std::fs::create_dir(dir.path().join("projections")).unwrap();
    std::fs::write(
        dir.path().join("projections/doses_by_product.toml"),
        "name = \"doses_by_product\"\ngroup_by = [\"product\"]\n[[source]]\nevent = \"DoseAdministered\"\ntime = \"administered_at\"\n[[source]]\nevent = \"DoseEntryReversed\"\ntime = \"administered_at\"\nsign = -1\n[[column]]\nname = \"doses\"\nagg = \"count\"\n",
    )
    .unwrap();
    let o = run(dir.path(), &["projections", "rebuild", "doses_by_product"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("no earlier state to compare with"),
        "{}",
        stdout(&o)
    );
    let o = run(dir.path(), &["projections", "rebuild", "doses_by_product"]);
    assert!(
        stdout(&o).contains("identical to the live state"),
        "{}",
        stdout(&o)
    );
    let o = run(
        dir.path(),
        &[
            "report",
            "doses_by_product",
            "--as-of",
            "2021-12-17",
            "--format",
            "json",
        ],
    );
    let r: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(r["totals"]["doses"], 1428);
    // a broken definition names its file and the problem
    std::fs::write(
        dir.path().join("projections/broken.toml"),
        "name = \"broken\"\n[[source]]\nevent = \"Nope\"\n",
    )
    .unwrap();
    let o = run(dir.path(), &["projections", "list"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("broken.toml") && stderr(&o).contains("Nope"),
        "{}",
        stderr(&o)
    );
    // …but only the commands that read projections stop: the log stays usable.
    assert!(run(dir.path(), &["audit", "verify"]).status.success());
    std::fs::write(
        dir.path().join("one.jsonl"),
        format!("{SITE}\n").replace("lyon-dt", "lyon-annex"),
    )
    .unwrap();
    let o = run(dir.path(), &["submit", "one.jsonl", "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("\"accepted\""), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("projections were not updated"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_input_gets_a_clear_message_a_non_zero_exit_and_leaves_the_store_untouched() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.jsonl"), format!("{SITE}\n")).unwrap();
    assert!(run(dir.path(), &["submit", "c.jsonl"]).status.success());
    let store = support::store_file(dir.path());
    let before = file_hash(&store);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["submit", "missing.jsonl"],
            "cannot read the command file missing.jsonl",
        ),
        (vec!["submit", "."], "is a directory"),
        (
            vec!["report", "doses_by_directorate", "--as-of", "17/12/2021"],
            "write YYYY-MM-DD",
        ),
        (
            vec!["report", "doses_by_directorate", "--known-at", "yesterday"],
            "RFC 3339",
        ),
        (
            vec!["report", "doses_by_directorate", "--format", "xml"],
            "possible values",
        ),
        (vec!["report", "no_such_projection"], "projections list"),
        (
            vec!["projections", "rebuild", "no_such_projection"],
            "no projection named",
        ),
        (
            vec!["--store", "postgres://x", "audit", "verify"],
            "not understood",
        ),
        (
            vec!["--store", "sqlite:", "audit", "verify"],
            "names no file",
        ),
        (vec!["scenario", "ofii-2020"], "possible values"),
        (vec!["frobnicate"], "unrecognized subcommand"),
        (vec!["submit", "c.jsonl", "--format"], "a value is required"),
    ];
    for (args, message) in cases {
        let o = run(dir.path(), &args);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{args:?}");
    }
    // an unreadable file (no permission) as a non-root user would see it; as root, a directory path is used above
    let o = run(
        dir.path(),
        &["--store", "sqlite:c.jsonl", "audit", "verify"],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("c.jsonl"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("c.jsonl")).unwrap(),
        format!("{SITE}\n")
    );
    assert_eq!(file_hash(&store), before, "the store is untouched");
}

#[test]
fn help_lists_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["--help"]);
    for c in [
        "demo",
        "submit",
        "report",
        "scenario",
        "audit",
        "projections",
    ] {
        assert!(stdout(&o).contains(c), "{c}");
    }
}

#[test]
fn read_commands_refuse_a_store_that_is_not_there_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["report", "doses_by_directorate"],
        vec!["audit", "verify"],
        vec!["audit", "digest"],
        vec!["projections", "list"],
    ] {
        let o = run(dir.path(), &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&o).contains("there is no ledger at ./ledger-data/ledger.db"),
            "{}",
            stderr(&o)
        );
    }
    assert!(!dir.path().join("ledger-data").exists());
}

#[test]
fn a_line_that_is_not_utf8_is_invalid_and_the_rest_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = SITE.as_bytes().to_vec();
    bytes.extend_from_slice(b"\n{\"type\":\"ExpireTicket\",\"ticket_id\":\"\xff\xfe\"}\r\n");
    bytes.extend_from_slice(dose("00000000-0000-4000-8000-000000000002").as_bytes());
    std::fs::write(dir.path().join("c.jsonl"), bytes).unwrap();
    let o = run(dir.path(), &["submit", "c.jsonl", "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = json_lines(&stdout(&o));
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["outcome"], "invalid");
    assert_eq!(lines[1]["error"]["code"], "not_utf8");
    assert_eq!(lines[2]["outcome"], "accepted");
}

#[test]
fn demo_explains_a_scenario_loaded_on_the_system_clock() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["scenario", "ofii-2021"]);
    std::fs::write(dir.path().join("s.jsonl"), o.stdout).unwrap();
    assert!(run(dir.path(), &["submit", "s.jsonl"]).status.success());
    let o = run(dir.path(), &["demo"]);
    assert!(
        stdout(&o).contains("received the scenario on the system clock"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("1,428 doses administered"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn submit_to_an_output_that_cannot_be_written_stops_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["scenario", "ofii-2021"]);
    std::fs::write(dir.path().join("s.jsonl"), stdout(&o)).unwrap();
    // Standard output is a full device: every write fails (ENOSPC). (A closed pipe ends the
    // process by SIGPIPE, as `| head` expects, before anything more is run.)
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let o = support::bin()
        .current_dir(dir.path())
        .args(["submit", "s.jsonl"])
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot write the outcomes to standard output"),
        "{}",
        stderr(&o)
    );
    // It stopped at the first outcome it could not write: the rest of the file was not run.
    let verify = stdout(&run(dir.path(), &["audit", "verify"]));
    let events: u64 = verify
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("{verify}"));
    assert!(events < 10, "{verify}");
}

//! The agent probing refs. A refused command about a new ref leaves nothing behind — no key,
//! no pseudonym, no index entry — on either backend. A refusal about a person the ledger knows
//! states facts of their history ("a first dose on 4 October, Comirnaty"), so it is a
//! disclosure and lands in the access log, for every rejection code that can concern a person,
//! over HTTP and through `submit`; so do the command line's person reads and the proof
//! endpoints.

use crate::support;

use serde_json::{json, Value};
use std::path::Path;
use support::nats::NatsServer;

fn id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn dose(person: &str, kind: &str, at: &str) -> Value {
    json!({"type": "AdministerDose", "command_id": id(), "person_ref": person,
           "age_band": "30-39", "recipient": "user", "directorate": "lyon", "site": "lyon-dt",
           "product": "comirnaty", "lot": "FF1234", "dose": kind, "administered_at": at})
}

fn site() -> Value {
    json!({"type": "AuthoriseSite", "command_id": id(), "directorate": "lyon",
           "site": "lyon-dt", "site_kind": "dt_premises", "authorised_on": "2021-08-01"})
}

fn rows(file: &Path, table: &str) -> i64 {
    rusqlite::Connection::open(file)
        .unwrap()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

fn submit(dir: &Path, global: &[&str], lines: &[Value]) -> String {
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(dir.join("in.jsonl"), text.join("\n") + "\n").unwrap();
    let mut args = global.to_vec();
    args.extend(["submit", "in.jsonl", "--format", "json"]);
    support::ok_output(&support::run(dir, &args))
}

/// 1,100 refused probes about new refs (more than the SQLite key store makes in advance at a
/// time), then the key store, the person index and the ref's lookup are as before.
fn probes_leave_nothing(global: &[&str], keys: &str, probes: usize) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = submit(
        d,
        global,
        &[
            site(),
            dose("P-000001", "first", "2021-10-04T10:00:00+02:00"),
        ],
    );
    assert_eq!(out.matches("\"accepted\"").count(), 2, "{out}");
    let mut keygen = global.to_vec();
    keygen.extend(["audit", "keygen"]);
    support::ok_output(&support::run(d, &keygen));
    let keys = d.join("ledger-data").join(keys);
    let log = d.join("ledger-data/ledger.db");
    let (keys_before, index_before) = (
        rows(&keys, "persons"),
        log.exists().then(|| rows(&log, "persons")),
    );
    let probes: Vec<Value> = (0..probes)
        .map(|i| {
            dose(
                &format!("P-{:06}", 100_000 + i),
                "second",
                "2021-11-04T10:00:00+01:00",
            )
        })
        .collect();
    let out = submit(d, global, &probes);
    assert_eq!(
        out.matches("\"no_first_dose\"").count(),
        probes.len(),
        "{out}"
    );
    assert_eq!(
        rows(&keys, "persons"),
        keys_before,
        "refused probes left keys in the key store"
    );
    if let Some(before) = index_before {
        assert_eq!(rows(&log, "persons"), before, "index entries for probes");
    }
    for r in ["P-100000", &format!("P-{:06}", 100_000 + probes.len() - 1)] {
        let mut args = global.to_vec();
        args.extend(["audit", "prove", "--person", r]);
        let o = support::run(d, &args);
        assert!(
            !o.status.success(),
            "{r} is known after a refused probe: {}",
            support::stdout(&o)
        );
    }
    // The person recorded before is still found.
    let mut args = global.to_vec();
    args.extend(["audit", "prove", "--person", "P-000001"]);
    support::ok_output(&support::run(d, &args));
}

#[test]
fn refused_probes_about_new_refs_leave_nothing_behind_on_sqlite() {
    probes_leave_nothing(&[], "ledger.keys.db", 1100);
}

#[test]
fn refused_probes_about_new_refs_leave_nothing_behind_on_the_nats_log() {
    let nats = NatsServer::start();
    let url = nats.url();
    probes_leave_nothing(&["--store", &url], "nats-log.keys.db", 200);
}

/// A server with an admin, a Lyon agent, a partner of cv-lyon-gerland and an auditor.
struct Desk {
    dir: tempfile::TempDir,
    _server: support::Running,
    addr: String,
    admin: String,
    agent: String,
    partner: String,
    auditor: String,
}

impl Desk {
    fn open() -> Desk {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let admin = support::token(d, "admin-1", "admin");
        let auditor = support::token(d, "auditor-1", "auditor");
        let token = |args: &[&str]| {
            let mut all = vec!["auth", "token", "--file", "tokens.json"];
            all.extend(args);
            support::ok_output(&support::run(d, &all))
                .trim()
                .to_string()
        };
        let agent = token(&[
            "--id",
            "agent-1",
            "--role",
            "agent",
            "--directorate",
            "lyon",
        ]);
        let partner = token(&[
            "--id",
            "partner-1",
            "--role",
            "partner",
            "--partner-centre",
            "cv-lyon-gerland",
        ]);
        let (server, addr) = support::serve_with_tokens(d);
        Desk {
            dir,
            _server: server,
            addr,
            admin,
            agent,
            partner,
            auditor,
        }
    }

    fn send(&self, token: &str, command: &Value) -> Value {
        let (s, v) = support::http(&self.addr, "POST", "/v1/commands", token, Some(command));
        assert_eq!(s, 200, "{command}: {v}");
        v
    }

    fn accepted(&self, token: &str, command: &Value) {
        let v = self.send(token, command);
        assert_eq!(v["outcome"], "accepted", "{command}: {v}");
    }

    /// The person's pseudonym, looked up by ref (an auditor's reveal).
    fn pseudonym(&self, person_ref: &str) -> String {
        let body = json!({ "person_ref": person_ref });
        let (s, v) = support::http(
            &self.addr,
            "POST",
            "/v1/persons/record",
            &self.auditor,
            Some(&body),
        );
        assert_eq!(s, 200, "{v}");
        v["person_id"].as_str().unwrap().to_string()
    }

    fn access_log(&self, person_id: &str) -> Vec<Value> {
        let (s, v) = support::http(
            &self.addr,
            "GET",
            &format!("/v1/audit/access-log?person={person_id}"),
            &self.auditor,
            None,
        );
        assert_eq!(s, 200, "{v}");
        v.as_array().cloned().unwrap()
    }
}

fn ticket(ticket_id: &str, person: &str, issued: &str, until: &str) -> Value {
    json!({"type": "IssueTicket", "command_id": id(), "ticket_id": ticket_id, "person_ref": person,
           "directorate": "lyon", "partner_centre": "cv-lyon-gerland", "issued_at": issued,
           "valid_until": until})
}

fn with(mut v: Value, field: &str, value: Value) -> Value {
    v[field] = value;
    v
}

#[test]
fn every_refusal_about_a_known_person_is_in_the_access_log() {
    let desk = Desk::open();
    desk.accepted(&desk.admin, &site());
    let (a, b, c, e) = ("P-0000A1", "P-0000B1", "P-0000C1", "P-0000E1");
    let agent = desk.agent.clone();
    for cmd in [
        dose(a, "first", "2021-10-04T10:00:00+02:00"),
        dose(a, "second", "2021-11-04T10:00:00+01:00"),
        dose(a, "booster", "2022-04-10T10:00:00+02:00"),
        dose(b, "first", "2021-10-04T10:00:00+02:00"),
        json!({"type": "RecordDoseNotAdministered", "command_id": id(), "person_ref": c,
               "directorate": "lyon", "site": "lyon-dt", "reason": "refused",
               "at": "2021-10-07T10:00:00+02:00"}),
        ticket("T-1", b, "2021-10-06T10:00:00+02:00", "2021-10-31"),
        ticket("T-2", c, "2021-10-06T10:00:00+02:00", "2021-12-31"),
        ticket("T-3", c, "2021-10-06T10:00:00+02:00", "2099-12-31"),
    ] {
        desk.accepted(&agent, &cmd);
    }
    let first_e = dose(e, "first", "2021-10-04T10:00:00+02:00");
    desk.accepted(&agent, &first_e);
    let reversal = json!({"type": "ReverseDoseEntry", "command_id": id(),
                          "reverses": first_e["command_id"], "reason": "entered_in_error"});
    desk.accepted(&agent, &reversal);
    let redeem = |t: &str, at: &str| {
        json!({"type": "RedeemTicket", "command_id": id(), "ticket_id": t, "redeemed_at": at,
               "dose": "first", "partner_centre": "cv-lyon-gerland"})
    };
    desk.accepted(&desk.partner, &redeem("T-2", "2021-10-08T10:00:00+02:00"));
    let reused = with(
        dose(a, "first", "2021-10-04T10:00:00+02:00"),
        "command_id",
        json!(id()),
    );
    desk.accepted(
        &agent,
        &with(reused.clone(), "person_ref", json!("P-0000F1")),
    );

    // (person, command, the code it is refused with)
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            a,
            dose(a, "first", "2021-12-01T10:00:00+01:00"),
            "first_dose_already_recorded",
        ),
        (
            c,
            dose(c, "second", "2021-12-01T10:00:00+01:00"),
            "no_first_dose",
        ),
        (
            b,
            dose(b, "second", "2021-10-05T10:00:00+02:00"),
            "second_dose_too_early",
        ),
        (
            a,
            dose(a, "second", "2021-12-01T10:00:00+01:00"),
            "primary_series_already_complete",
        ),
        (
            b,
            dose(b, "booster", "2022-01-10T10:00:00+01:00"),
            "primary_series_incomplete",
        ),
        (
            a,
            dose(a, "booster", "2021-11-20T10:00:00+01:00"),
            "booster_not_open",
        ),
        (
            a,
            dose(a, "booster", "2022-06-01T10:00:00+02:00"),
            "booster_already_given",
        ),
        (
            c,
            with(
                with(
                    dose(c, "first", "2021-12-01T10:00:00+01:00"),
                    "age_band",
                    json!("12-17"),
                ),
                "product",
                json!("spikevax"),
            ),
            "product_not_allowed_for_age",
        ),
        (
            c,
            dose(c, "first", "2099-12-01T10:00:00+01:00"),
            "administered_in_future",
        ),
        (
            c,
            with(
                dose(c, "first", "2021-12-01T10:00:00+01:00"),
                "site",
                json!("lyon-nowhere"),
            ),
            "site_not_authorised",
        ),
        (
            c,
            with(
                dose(c, "first", "2021-12-01T10:00:00+01:00"),
                "session_id",
                json!("S-none"),
            ),
            "unknown_session",
        ),
        (
            c,
            json!({"type": "RecordDoseNotAdministered", "command_id": id(), "person_ref": c,
                   "directorate": "lyon", "site": "lyon-dt", "reason": "refused",
                   "at": "2099-10-07T10:00:00+02:00"}),
            "dated_in_future",
        ),
        (
            e,
            with(reversal.clone(), "command_id", json!(id())),
            "already_reversed",
        ),
        (
            b,
            ticket("T-1", b, "2021-10-06T10:00:00+02:00", "2021-10-31"),
            "ticket_already_issued",
        ),
        (
            b,
            with(
                ticket("T-9", b, "2021-10-06T10:00:00+02:00", "2021-10-31"),
                "partner_centre",
                json!("cv-nowhere"),
            ),
            "unknown_partner_centre",
        ),
        (
            b,
            ticket("T-8", b, "2021-10-06T10:00:00+02:00", "2021-10-01"),
            "ticket_validity_invalid",
        ),
        (
            c,
            redeem("T-2", "2021-10-09T10:00:00+02:00"),
            "ticket_already_redeemed",
        ),
        (
            b,
            redeem("T-1", "2021-11-05T10:00:00+01:00"),
            "ticket_expired",
        ),
        (
            c,
            redeem("T-3", "2021-10-05T10:00:00+02:00"),
            "redeemed_before_issued",
        ),
        (
            c,
            json!({"type": "ExpireTicket", "command_id": id(), "ticket_id": "T-3",
                   "at": "2021-11-01T10:00:00+01:00"}),
            "ticket_still_valid",
        ),
        (a, reused, "command_id_reused"),
    ];
    for (person, cmd, code) in cases {
        let pid = desk.pseudonym(person);
        let before = desk.access_log(&pid).len();
        let token = if cmd["type"] == "RedeemTicket" {
            desk.partner.clone()
        } else {
            agent.clone()
        };
        let v = desk.send(&token, &cmd);
        assert_eq!(v["error"]["code"], code, "{cmd}: {v}");
        let entries = desk.access_log(&pid);
        assert_eq!(entries.len(), before + 1, "{code}: {entries:#?}");
        let refusal = &entries[before];
        assert_eq!(refusal["disclosed"], format!("refusal:{code}"), "{refusal}");
        assert_eq!(refusal["route"], "POST /v1/commands", "{refusal}");
        assert_eq!(refusal["persons"], json!([pid]), "{refusal}");
        let caller = if token == desk.partner {
            "partner-1"
        } else {
            "agent-1"
        };
        assert_eq!(refusal["caller"], caller, "{refusal}");
    }

    // Through `submit`, on the same ledger while the server runs.
    let pid = desk.pseudonym(b);
    let before = desk.access_log(&pid).len();
    let out = submit(
        desk.dir.path(),
        &[],
        &[with(
            ticket("T-7", b, "2021-10-06T10:00:00+02:00", "2021-10-31"),
            "directorate",
            json!("atlantis"),
        )],
    );
    assert!(out.contains("unknown_directorate"), "{out}");
    let entries = desk.access_log(&pid);
    assert_eq!(entries.len(), before + 1, "{entries:#?}");
    assert_eq!(entries[before]["disclosed"], "refusal:unknown_directorate");
    assert_eq!(entries[before]["route"], "submit");
    assert_eq!(entries[before]["role"], "cli");
}

#[test]
fn person_reads_on_the_command_line_and_proofs_are_in_the_access_log() {
    let desk = Desk::open();
    let d = desk.dir.path();
    desk.accepted(&desk.admin, &site());
    let g = "P-0000G1";
    let first = dose(g, "first", "2021-10-04T10:00:00+02:00");
    desk.accepted(&desk.agent, &first);
    desk.accepted(&desk.agent, &dose(g, "second", "2021-11-04T10:00:00+01:00"));
    // The first dose reversed: a second dose with no first, a finding of Lyon.
    desk.accepted(
        &desk.agent,
        &json!({"type": "ReverseDoseEntry", "command_id": id(),
                "reverses": first["command_id"], "reason": "entered_in_error"}),
    );
    let pid = desk.pseudonym(g);
    let count = |disclosed: &str, route: &str| {
        desk.access_log(&pid)
            .iter()
            .filter(|e| {
                e["disclosed"] == disclosed && e["route"].as_str().unwrap().starts_with(route)
            })
            .count()
    };
    assert_eq!(count("person_record", "POST /v1/persons/record"), 1);

    support::ok_output(&support::run(d, &["audit", "keygen"]));
    support::ok_output(&support::run(d, &["audit", "prove", "--person", g]));
    assert_eq!(count("person_proof", "audit prove --person"), 1);
    let out = support::ok_output(&support::run(d, &["findings", "--format", "json"]));
    assert!(out.contains(&pid), "{out}");
    assert_eq!(count("findings", "findings"), 1);

    let body = json!({ "person_ref": g });
    let (s, v) = support::http(
        &desk.addr,
        "POST",
        "/v1/persons/proof",
        &desk.auditor,
        Some(&body),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(count("person_proof", "POST /v1/persons/proof"), 1);
    // One event's proof: its export line shows the person's event.
    let (s, v) = support::http(
        &desk.addr,
        "GET",
        "/v1/audit/proofs/inclusion?position=2",
        &desk.auditor,
        None,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(count("event_proof", "GET /v1/audit/proofs/inclusion"), 1);
    // A site's event names nobody: nothing to log.
    let all = desk.access_log(&pid).len();
    let (s, _) = support::http(
        &desk.addr,
        "GET",
        "/v1/audit/proofs/inclusion?position=1",
        &desk.auditor,
        None,
    );
    assert_eq!(s, 200);
    assert_eq!(desk.access_log(&pid).len(), all);
}

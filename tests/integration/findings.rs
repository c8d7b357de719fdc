//! Corrections and data-quality findings through the real command path, a real SQLite store
//! with person keys, the projection engine and the HTTP router: a first dose reversed weeks
//! after the person's second dose is recorded (never refused), `data_quality` reports the
//! finding as of a date and known at a time, the list is read per role (a Lyon supervisor never
//! sees Marseille's findings; persons by pseudonym only, the read in the access log), a later
//! `RecordExternalDose` closes it, and partner centres are checked against the reference list.

use crate::support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use campaign_ledger::access::{hash_token, TokenEntry, TokenFile};
use campaign_ledger::app::{Ledger, Outcome};
use campaign_ledger::audit::AccessLog;
use campaign_ledger::domain::{CommandEnvelope, Policy, Reference};
use campaign_ledger::http::{router, AppState, Auth, Role};
use campaign_ledger::privacy::{KeyStore, MasterKey};
use campaign_ledger::projection::{load_definitions, Engine};
use campaign_ledger::store::{self, Actor, SystemClock};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;

struct World {
    _dir: tempfile::TempDir,
    ledger: Arc<Ledger>,
    engine: Arc<Engine>,
    access: std::path::PathBuf,
    n: u128,
}

fn open(dir: &Path) -> (Arc<Ledger>, Arc<Engine>) {
    let store = store::open(
        &format!("sqlite:{}", dir.join("ledger.db").display()),
        Arc::new(SystemClock),
    )
    .unwrap();
    let keys = KeyStore::open(
        &dir.join("ledger.keys.db"),
        &MasterKey::from_hex(&"ab".repeat(32)).unwrap(),
        true,
    )
    .unwrap();
    let ledger = Ledger::new(
        store,
        Policy::default(),
        Reference::builtin(),
        Arc::new(SystemClock),
    )
    .with_keys(Arc::new(keys))
    .unwrap();
    let engine = Engine::open(
        &dir.join("ledger.projections.db"),
        load_definitions(None).unwrap(),
        chrono_tz::Europe::Paris,
    )
    .unwrap();
    (Arc::new(ledger), Arc::new(engine))
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, engine) = open(dir.path());
        let access = dir.path().join("ledger.access.db");
        let mut w = World {
            _dir: dir,
            ledger,
            engine,
            access,
            n: 0,
        };
        for dt in ["lyon", "marseille"] {
            w.accept(
                json!({"type": "AuthoriseSite", "directorate": dt, "site": format!("{dt}-dt"),
                "site_kind": "dt_premises", "authorised_on": "2021-01-04"}),
            );
        }
        w
    }

    fn send(&mut self, mut command: Value) -> (uuid::Uuid, Outcome) {
        self.n += 1;
        let id = support::id(self.n);
        command["command_id"] = json!(id);
        let envelope = CommandEnvelope::parse(&command.to_string()).unwrap();
        let actor = Actor {
            role: "test".into(),
            ..Default::default()
        };
        (id, self.ledger.handle(&envelope, &actor).unwrap())
    }

    fn accept(&mut self, command: Value) -> uuid::Uuid {
        let (id, outcome) = self.send(command.clone());
        assert!(
            matches!(outcome, Outcome::Accepted(_)),
            "{command}: {outcome:?}"
        );
        id
    }

    fn dose(&mut self, person: &str, dt: &str, dose: &str, at: &str) -> uuid::Uuid {
        self.accept(
            json!({"type": "AdministerDose", "person_ref": person, "age_band": "30-39",
            "recipient": "user", "directorate": dt, "site": format!("{dt}-dt"),
            "product": "comirnaty", "lot": "FF1234", "dose": dose, "administered_at": at}),
        )
    }

    fn reverse(&mut self, entry: uuid::Uuid) -> uuid::Uuid {
        self.accept(
            json!({"type": "ReverseDoseEntry", "reverses": entry, "reason": "entered_in_error"}),
        )
    }

    /// `data_quality` rows as (directorate, kind, open).
    fn quality(&self, as_of: Option<&str>, known_at: Option<&str>) -> Vec<(String, String, i64)> {
        let r = self
            .engine
            .report(
                self.ledger.store().as_ref(),
                "data_quality",
                as_of.map(|d| d.parse().unwrap()),
                known_at.map(|k| chrono::DateTime::parse_from_rfc3339(k).unwrap()),
            )
            .unwrap();
        r.rows
            .iter()
            .map(|row| {
                let text = |k: &str| match row.get(k) {
                    Some(campaign_ledger::projection::Val::Text(t)) => t.clone(),
                    other => panic!("{k}: {other:?}"),
                };
                (text("directorate"), text("kind"), row.int("open"))
            })
            .collect()
    }

    fn state(&self) -> AppState {
        let entry = |id: &str, role, dirs: &[&str], token: &str| TokenEntry {
            id: id.into(),
            role,
            directorates: dirs.iter().map(|s| s.to_string()).collect(),
            partner_centres: vec![],
            sha256: hash_token(token),
            expires_at: None,
            revoked_at: None,
            previous: vec![],
        };
        let auth = Auth::from_file(
            TokenFile {
                tokens: vec![
                    entry("sup-lyon", Role::Supervisor, &["lyon"], "t-sup-lyon"),
                    entry("auditor", Role::Auditor, &[], "t-auditor"),
                    entry("admin", Role::Admin, &[], "t-admin"),
                    entry("agent", Role::Agent, &["lyon"], "t-agent"),
                ],
            },
            &Reference::builtin(),
        )
        .unwrap();
        AppState::new(self.ledger.clone(), self.engine.clone())
            .with_auth(auth)
            .with_access_log(AccessLog::open(&self.access).unwrap())
    }

    fn get(&self, uri: &str, token: &str) -> (StatusCode, Value) {
        let req = Request::builder()
            .uri(uri)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let app = router(self.state());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        support::oneshot(&rt, app, req)
    }
}

fn now() -> String {
    std::thread::sleep(std::time::Duration::from_millis(5));
    let t = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    std::thread::sleep(std::time::Duration::from_millis(5));
    t
}

#[test]
fn a_correction_weeks_later_is_recorded_reported_as_of_and_known_at_and_closed_by_a_later_entry() {
    let mut w = World::new();
    let first = w.dose("p-lyon-1", "lyon", "first", "2021-09-14T10:00:00+02:00");
    w.dose("p-lyon-1", "lyon", "second", "2021-10-14T10:00:00+02:00");
    let before = now();
    assert!(w.quality(None, None).is_empty());

    // Weeks later: the first dose was someone else's. Recorded, never refused.
    w.reverse(first);
    let after = now();
    let open = vec![(
        "lyon".to_string(),
        "second_dose_without_first".to_string(),
        1,
    )];
    assert_eq!(w.quality(None, None), open);
    assert_eq!(w.quality(Some("2021-12-17"), None), open);
    // As of a day before the second dose: that dose did not exist yet, nothing is broken.
    assert!(w.quality(Some("2021-10-13"), None).is_empty());
    // Known at a time before the correction: what the ledger said then.
    assert!(w.quality(Some("2021-12-17"), Some(&before)).is_empty());
    assert_eq!(w.quality(Some("2021-12-17"), Some(&after)), open);
    // The doses projections no longer count the reversed first dose.
    let doses = w
        .engine
        .report(
            w.ledger.store().as_ref(),
            "doses_by_directorate",
            None,
            None,
        )
        .unwrap();
    assert_eq!(
        (doses.totals.int("first"), doses.totals.int("second")),
        (0, 1)
    );

    // A reversed entry cannot be reversed again; the rules judge the corrected series.
    let (_, again) = w
        .send(json!({"type": "ReverseDoseEntry", "reverses": first, "reason": "entered_in_error"}));
    assert!(
        matches!(&again, Outcome::Rejected(e) if e.code() == "already_reversed"),
        "{again:?}"
    );

    // The first dose the person really had, elsewhere, before the second: closed.
    w.accept(
        json!({"type": "RecordExternalDose", "person_ref": "p-lyon-1", "product": "comirnaty",
        "dose": "first", "administered_at": "2021-09-10T10:00:00+02:00", "evidence": "eu_dcc"}),
    );
    assert!(w.quality(None, None).is_empty());
    // …and as known between the correction and the record, it was open.
    assert_eq!(w.quality(None, Some(&after)), open);
    // A fresh engine (another process) folds the same from the log.
    let fresh = Engine::open(
        &w._dir.path().join("other.projections.db"),
        load_definitions(None).unwrap(),
        chrono_tz::Europe::Paris,
    )
    .unwrap();
    let (state, _) = fresh
        .live_state(w.ledger.store().as_ref(), "data_quality")
        .unwrap();
    let (live, _) = w
        .engine
        .live_state(w.ledger.store().as_ref(), "data_quality")
        .unwrap();
    assert_eq!(state, live);
}

#[test]
fn the_list_of_findings_is_read_per_role_by_pseudonym_and_logged() {
    let mut w = World::new();
    let lyon_first = w.dose("p-lyon-2", "lyon", "first", "2021-09-14T10:00:00+02:00");
    w.dose("p-lyon-2", "lyon", "second", "2021-10-14T10:00:00+02:00");
    let mrs_first = w.dose("p-mrs-2", "marseille", "first", "2021-09-15T10:00:00+02:00");
    w.dose(
        "p-mrs-2",
        "marseille",
        "second",
        "2021-10-20T10:00:00+02:00",
    );
    w.reverse(lyon_first);
    w.reverse(mrs_first);

    let (s, v) = w.get("/v1/findings?as_of=2021-12-17", "t-sup-lyon");
    assert_eq!(s, StatusCode::OK, "{v}");
    let list = v["findings"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{v}");
    assert_eq!(list[0]["directorate"], "lyon");
    assert_eq!(list[0]["kind"], "second_dose_without_first");
    assert_eq!(list[0]["date"], "2021-10-14");
    assert_eq!(list[0]["entries"][1]["command_id"], json!(lyon_first));
    assert_eq!(list[0]["entries"][1]["reversed"], true);
    assert!(list[0]["action"]
        .as_str()
        .unwrap()
        .contains("RecordExternalDose"));
    let pseudonym = list[0]["person_id"].as_str().unwrap().to_string();
    assert_eq!(pseudonym.len(), 32, "{v}");
    assert!(!v.to_string().contains("p-lyon-2"), "the ref in clear: {v}");

    // Another directorate's findings: refused by name, never shown in the list.
    let (s, v) = w.get("/v1/findings?directorate=marseille", "t-sup-lyon");
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    for token in ["t-auditor", "t-admin"] {
        let (s, v) = w.get("/v1/findings", token);
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["findings"].as_array().unwrap().len(), 2, "{token}: {v}");
    }
    let (s, v) = w.get("/v1/findings?directorate=marseille", "t-auditor");
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["findings"][0]["directorate"], "marseille");
    let (s, _) = w.get("/v1/findings", "t-agent");
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = w.get("/v1/findings?directorate=atlantis", "t-auditor");
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unknown_directorate"))
    );
    // Known at is for auditors; a supervisor reads business dates only.
    let (s, _) = w.get(
        "/v1/findings?known_at=2030-01-01T00:00:00%2B01:00",
        "t-sup-lyon",
    );
    assert_eq!(s, StatusCode::FORBIDDEN);

    // The per-directorate counts, through the projections endpoint, scoped the same way.
    let (s, v) = w.get("/v1/projections/data_quality", "t-sup-lyon");
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["rows"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["totals"]["open"], 1);

    // Every read of the list is in the access log, by pseudonym.
    let (s, log) = w.get("/v1/audit/access-log", "t-auditor");
    assert_eq!(s, StatusCode::OK);
    let reads: Vec<&Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["route"].as_str().unwrap().starts_with("GET /v1/findings"))
        .collect();
    assert!(reads.len() >= 4, "{log}");
    assert!(reads[0]["persons"]
        .as_array()
        .unwrap()
        .contains(&json!(pseudonym)));
}

#[test]
fn a_reversal_is_accepted_whatever_came_after_it_and_only_unknown_or_reversed_entries_are_refused()
{
    let mut w = World::new();
    let first = w.dose("p-lyon-3", "lyon", "first", "2021-05-03T10:00:00+02:00");
    let second = w.dose("p-lyon-3", "lyon", "second", "2021-06-01T10:00:00+02:00");
    w.dose("p-lyon-3", "lyon", "booster", "2021-12-01T10:00:00+01:00");
    // The second dose, under the booster: accepted; the booster has no complete series left.
    w.reverse(second);
    assert_eq!(
        w.quality(None, None),
        vec![(
            "lyon".to_string(),
            "booster_without_primary_series".to_string(),
            1
        )]
    );
    w.reverse(first);
    let (_, unknown) = w.send(json!({"type": "ReverseDoseEntry",
        "reverses": "0193eeee-0000-7000-8000-00000000abcd", "reason": "entered_in_error"}));
    assert!(
        matches!(&unknown, Outcome::Rejected(e) if e.code() == "unknown_entry"),
        "{unknown:?}"
    );
}

#[test]
fn partner_centres_come_from_the_reference_list() {
    let mut w = World::new();
    let ticket = |id: &str, centre: &str| {
        json!({"type": "IssueTicket", "ticket_id": id, "person_ref": "p-t-1", "directorate": "lyon",
            "partner_centre": centre, "issued_at": "2021-10-01T10:00:00+02:00", "valid_until": "2021-10-31"})
    };
    for (centre, says) in [
        ("cv-atlantis", "not in the reference list"),
        ("cv-marseille-timone", "belongs to directorate marseille"),
        ("Centre de vaccination Gerland", "is a name"),
        ("cv-lyon-part-dieu", "does not take tickets on 2021-10-01"),
    ] {
        let (_, o) = w.send(ticket("t-bad", centre));
        match o {
            Outcome::Rejected(e) => {
                assert_eq!(e.code(), "unknown_partner_centre");
                assert!(e.to_string().contains(says), "{e}");
            }
            other => panic!("{centre}: {other:?}"),
        }
    }
    w.accept(ticket("t-ok", "cv-lyon-gerland"));
    let (_, o) = w.send(json!({"type": "RedeemTicket", "ticket_id": "t-ok",
        "redeemed_at": "2021-10-05T10:00:00+02:00", "dose": "first", "partner_centre": "cv-marseille-timone"}));
    assert!(
        matches!(&o, Outcome::Rejected(e) if e.code() == "unknown_partner_centre"),
        "{o:?}"
    );
    w.accept(json!({"type": "RedeemTicket", "ticket_id": "t-ok",
        "redeemed_at": "2021-10-05T10:00:00+02:00", "dose": "first", "partner_centre": "cv-lyon-8e"}));
    let r = w
        .engine
        .report(
            w.ledger.store().as_ref(),
            "tickets_by_partner_centre",
            None,
            None,
        )
        .unwrap();
    let rows: Vec<(String, String, i64, i64)> = r
        .rows
        .iter()
        .map(|row| {
            let text = |k: &str| match row.get(k) {
                Some(campaign_ledger::projection::Val::Text(t)) => t.clone(),
                other => panic!("{k}: {other:?}"),
            };
            (
                text("partner_centre"),
                text("partner_centre_name"),
                row.int("issued"),
                row.int("redeemed"),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                "cv-lyon-8e".into(),
                "Centre de vaccination Lyon 8e".into(),
                0,
                1
            ),
            (
                "cv-lyon-gerland".into(),
                "Centre de vaccination Gerland".into(),
                1,
                0
            ),
        ]
    );
    // Partner tokens name known centres by id.
    let entry = |centre: &str| TokenEntry {
        id: "p".into(),
        role: Role::Partner,
        directorates: vec![],
        partner_centres: vec![centre.into()],
        sha256: hash_token("x"),
        expires_at: None,
        revoked_at: None,
        previous: vec![],
    };
    let e = Auth::from_file(
        TokenFile {
            tokens: vec![entry("Centre de vaccination Gerland")],
        },
        &Reference::builtin(),
    )
    .err()
    .unwrap();
    assert!(
        e.contains("tokens name it by id: \"cv-lyon-gerland\""),
        "{e}"
    );
    let e = Auth::from_file(
        TokenFile {
            tokens: vec![entry("cv-atlantis")],
        },
        &Reference::builtin(),
    )
    .err()
    .unwrap();
    assert!(
        e.contains("not in the reference list of partner centres"),
        "{e}"
    );
}

//! The person index in the log's own database: a new person's entry is written with their
//! first events, and two writers recording the same new person at the same moment end with
//! one pseudonym.

use campaign_ledger::app::{Ledger, Outcome};
use campaign_ledger::domain::*;
use campaign_ledger::privacy::{KeyStore, MasterKey};
use campaign_ledger::store::{
    self, Actor, AppendResult, CommandRecord, EventStore, PersonLink, StoreError, SystemClock,
};
use std::sync::Arc;

fn ledger(store: Arc<dyn EventStore>, dir: &std::path::Path, master: &MasterKey) -> Ledger {
    let keys = KeyStore::open(&dir.join("ledger.keys.db"), master, true).unwrap();
    Ledger::new(
        store,
        Policy::default(),
        Reference::builtin(),
        Arc::new(SystemClock),
    )
    .with_keys(Arc::new(keys))
    .unwrap()
}

fn command(c: Command) -> CommandEnvelope {
    CommandEnvelope {
        command_id: uuid::Uuid::now_v7(),
        correlation_id: None,
        command: c,
    }
}

fn dose(dose: DoseKind, at: &str) -> CommandEnvelope {
    command(Command::AdministerDose(AdministerDose {
        person_ref: "lyon-7".into(),
        age_band: AgeBand::A30to39,
        recipient: Recipient::User,
        directorate: "lyon".into(),
        site: "lyon-dt".into(),
        product: Product::Comirnaty,
        lot: "FF2832".into(),
        dose,
        administered_at: chrono::DateTime::parse_from_rfc3339(at).unwrap(),
        session_id: None,
        prior_infection_counted: false,
    }))
}

fn accepted(o: Outcome) -> CommandRecord {
    match o {
        Outcome::Accepted(r) => r,
        other => panic!("not accepted: {other:?}"),
    }
}

/// Two ledgers (two processes) on one log and one key store, both open before the first
/// records a new person. The second does not know the person yet (its copy of the index was
/// loaded before), takes a new key, and its append is refused by the index (`PersonTaken`):
/// it looks again, finds the first's pseudonym, and the command is judged on the person's
/// real history.
#[test]
fn two_writers_recording_the_same_new_person_end_with_one_pseudonym() {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate().unwrap();
    let url = format!("sqlite:{}", dir.path().join("ledger.db").display());
    let first_store = store::open(&url, Arc::new(SystemClock)).unwrap();
    let first = ledger(first_store.clone(), dir.path(), &master);
    let second_store = store::open(&url, Arc::new(SystemClock)).unwrap();
    let second = ledger(second_store, dir.path(), &master);
    let actor = Actor {
        role: "test".into(),
        ..Default::default()
    };
    accepted(
        first
            .handle(
                &command(Command::AuthoriseSite(AuthoriseSite {
                    directorate: "lyon".into(),
                    site: "lyon-dt".into(),
                    site_kind: SiteKind::DtPremises,
                    authorised_on: chrono::NaiveDate::from_ymd_opt(2021, 8, 1).unwrap(),
                })),
                &actor,
            )
            .unwrap(),
    );
    let one = accepted(
        first
            .handle(&dose(DoseKind::First, "2021-10-01T10:00:00+02:00"), &actor)
            .unwrap(),
    );
    let head = first_store.head().unwrap();
    // The same first dose recorded again by the second writer (a resubmission under a new
    // command id): blind, it would start a second pseudonym with a second first dose.
    let outcome = second
        .handle(&dose(DoseKind::First, "2021-10-01T10:00:00+02:00"), &actor)
        .unwrap();
    assert!(
        matches!(outcome, Outcome::Rejected(_)),
        "judged on the person's real history: {outcome:?}"
    );
    assert_eq!(first_store.head().unwrap(), head, "nothing appended");
    // And a second dose through the second writer goes to the same stream.
    let two = accepted(
        second
            .handle(&dose(DoseKind::Second, "2021-11-01T10:00:00+01:00"), &actor)
            .unwrap(),
    );
    assert_eq!(two.stream_id, one.stream_id, "one pseudonym for the person");
    assert_eq!(first_store.read_stream(&one.stream_id).unwrap().len(), 2);
}

/// The store refuses a new person's entry the index holds already, and writes nothing of
/// the append.
#[test]
fn the_sqlite_log_refuses_a_second_entry_for_a_person_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = store::open(
        &format!("sqlite:{}", dir.path().join("l.db").display()),
        Arc::new(SystemClock),
    )
    .unwrap();
    let link = |id: &str| PersonLink {
        lookup: [9; 32],
        person_id: id.into(),
    };
    let request = |stream: &str, id: &str| {
        let mut r = support::contract::request(
            stream,
            store::ExpectedVersion::Exact(0),
            uuid::Uuid::now_v7(),
            vec![support::contract::event(1)],
        );
        r.person = Some(link(id));
        r
    };
    assert!(store.keeps_persons());
    assert!(matches!(
        store.append(request("person/a", "a")),
        Ok(AppendResult::Committed(_))
    ));
    assert_eq!(
        store.person_id(&[9; 32], true).unwrap().as_deref(),
        Some("a")
    );
    let head = store.head().unwrap();
    assert!(matches!(
        store.append(request("person/b", "b")),
        Err(StoreError::PersonTaken)
    ));
    assert_eq!(store.head().unwrap(), head, "nothing of the refused append");
    assert_eq!(
        store.person_id(&[9; 32], true).unwrap().as_deref(),
        Some("a")
    );
    store.forget_person(&[9; 32]).unwrap();
    assert_eq!(store.person_id(&[9; 32], true).unwrap(), None);
}

use crate::support;

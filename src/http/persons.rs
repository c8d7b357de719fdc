//! A person by ref: `POST /v1/persons/record` (their pseudonym, events and access-log entries;
//! auditors), `POST /v1/persons/proof` (their record provable alone; auditors) and
//! `POST /v1/persons/erase` (crypto-shredding; admins). The ref travels in the JSON body, never
//! in a URL (proxies and access logs keep URLs); each lookup is logged in the access log before
//! the answer leaves, which no cache keeps (`Cache-Control: no-store`, as every answer carrying
//! person data).

use super::blocking;
use super::caller::Caller;
use super::error::ApiError;
use super::events::ShownEvent;
use super::proofs::signer;
use super::state::AppState;
use crate::access::Role;
use crate::app::AppError;
use crate::audit::AccessEntry;
use crate::envelope::Actor;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

/// The body of every person route.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PersonBody {
    person_ref: String,
}

type Body = Result<Json<PersonBody>, axum::extract::rejection::JsonRejection>;

/// The ref of a person route's body, or a 400/415 saying what to send.
fn person_ref(body: Body) -> Result<String, ApiError> {
    let Json(body) = body.map_err(|e| {
        let (status, code) = match e {
            axum::extract::rejection::JsonRejection::MissingJsonContentType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "not_json_content_type")
            }
            _ => (StatusCode::BAD_REQUEST, "bad_body"),
        };
        ApiError::new(
            status,
            code,
            format!("send {{\"person_ref\": \"…\"}} with Content-Type: application/json ({e})"),
        )
    })?;
    crate::domain::check_person_ref(&body.person_ref).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_person_ref",
            format!("{e} Give the ref exactly as the commands gave it."),
        )
    })?;
    Ok(body.person_ref)
}

/// `POST /v1/persons/erase` `{"person_ref": "…"}`: crypto-shredding (admins only): records
/// `PersonErased` and destroys the person's key.
pub(super) async fn erase_person(
    State(state): State<AppState>,
    caller: Caller,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin], "erase a person")?;
    let person_ref = person_ref(body)?;
    let actor = match &caller {
        Caller::Open => Actor {
            role: "admin".into(),
            directorate: None,
            agent_ref: Some("http".into()),
        },
        Caller::Token(p) => Actor {
            role: p.role.as_str().into(),
            directorate: None,
            agent_ref: Some(p.token_id.clone()),
        },
    };
    let ledger = state.ledger.clone();
    let done = blocking(move || Ok(ledger.erase_person(&person_ref, &actor)?)).await?;
    match done {
        Some(e) => Ok(Json(e).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_person",
            "the key store holds no key for this person_ref: never recorded, or erased already",
        )),
    }
}

/// The person a ref names, found in the key store, and the lookup written to the access log.
fn look_up(
    state: &AppState,
    caller: &Caller,
    route: &str,
    disclosed: &str,
    person_ref: &str,
) -> Result<(String, Vec<u64>), ApiError> {
    let Some(log) = &state.access_log else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_access_log",
            "this server keeps no access log, so it reveals no person: start it with its key store",
        ));
    };
    let Some((person, positions)) = state.ledger.person_events(person_ref)? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_person",
            "the key store holds no key for this person_ref: never recorded, or erased (an erased person's record can no longer be gathered)",
        ));
    };
    log.record(&crate::audit::Disclosure {
        persons: vec![person.clone()],
        events: positions.len() as u64,
        revealed: 1,
        ..caller.disclosure(route, disclosed)
    })
    .map_err(AppError::from)?;
    Ok((person, positions))
}

/// `POST /v1/persons/proof` `{"person_ref": "…"}`: the person's record, every event with its
/// inclusion proof against one digest of the head (auditors; logged in the access log).
pub(super) async fn person_proof(
    State(state): State<AppState>,
    caller: Caller,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Auditor], "prove a person's record")?;
    let person_ref = person_ref(body)?;
    let doc = blocking(move || {
        let route = "POST /v1/persons/proof";
        let (person, positions) = look_up(&state, &caller, route, "person_proof", &person_ref)?;
        Ok(state
            .reader()
            .person_proof(&person, &positions, signer(&state))?)
    })
    .await?;
    Ok(Json(doc).into_response())
}

/// A person looked up by ref.
#[derive(Serialize)]
pub(super) struct PersonRecord {
    /// Their pseudonym, as events and the access log show it.
    person_id: String,
    /// Their events, as `GET /v1/events` shows them.
    events: Vec<ShownEvent>,
    /// The disclosures of their data (this lookup included).
    access_log: Vec<AccessEntry>,
}

/// `POST /v1/persons/record` `{"person_ref": "…"}`: a person's pseudonym, events and
/// access-log entries, found by their ref (auditors; the lookup is logged as a reveal).
pub(super) async fn person(
    State(state): State<AppState>,
    caller: Caller,
    body: Body,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Auditor], "look up a person")?;
    let person_ref = person_ref(body)?;
    let record = blocking(move || {
        let route = "POST /v1/persons/record";
        let (person, positions) = look_up(&state, &caller, route, "person_record", &person_ref)?;
        let reader = state.reader();
        let mut events = Vec::with_capacity(positions.len());
        for p in positions {
            events.extend(reader.events_after(p - 1, 1)?);
        }
        // The events are shown as to any auditor (the lookup above is their access-log entry).
        let events = events
            .into_iter()
            .map(|event| {
                let person = state.ledger.reveal(&event)?;
                Ok(ShownEvent { event, person })
            })
            .collect::<Result<Vec<_>, AppError>>()?;
        let log = state.access_log.as_ref().expect("looked up above");
        let mut access_log = Vec::new();
        let mut after = 0;
        loop {
            let page = log
                .entries(after, 1000, Some(&person))
                .map_err(AppError::from)?;
            let Some(last) = page.last() else { break };
            after = last.id;
            access_log.extend(page);
        }
        Ok(PersonRecord {
            person_id: person,
            events,
            access_log,
        })
    })
    .await?;
    Ok(Json(record).into_response())
}

//! `GET /v1/audit/proofs/inclusion`, `GET /v1/audit/proofs/consistency`: Merkle proofs with
//! digests of the log at the sizes asked (signed when the server has the ledger's key), and
//! `GET /v1/persons/{ref}`, `GET /v1/persons/{ref}/proof`: one person looked up by ref (the
//! lookup logged as a reveal in the access log), and their record provable alone.

use super::blocking;
use super::caller::Caller;
use super::error::ApiError;
use super::events::ShownEvent;
use super::query::query_with;
use super::state::AppState;
use crate::access::Role;
use crate::app::AppError;
use crate::audit::{AccessEntry, Digest, SignedDigest};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

/// Signs with the server's key, or leaves the digest unsigned (a proof against an unsigned
/// digest is checked by `audit check-proof` as "not signed").
fn signer(state: &AppState) -> impl Fn(Digest) -> SignedDigest + Clone {
    let key = state.signing.clone();
    move |d| match &key {
        Some(k) => k.sign(d),
        None => SignedDigest::unsigned(d),
    }
}

#[derive(Deserialize)]
pub(super) struct InclusionQuery {
    position: u64,
    tree_size: Option<u64>,
}

/// `GET /v1/audit/proofs/inclusion?position=P&tree_size=N`: the event at `P` is in the tree of
/// `N` events (default: the head).
pub(super) async fn inclusion(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<InclusionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Auditor], "read Merkle proofs")?;
    let q = query_with(
        q,
        "position is an event's position and tree_size a number of events, for example ?position=42&tree_size=2439",
    )?;
    let reader = state.reader();
    let sign = signer(&state);
    let doc = blocking(move || Ok(reader.inclusion_proof(q.position, q.tree_size, sign)?)).await?;
    Ok(Json(doc).into_response())
}

#[derive(Deserialize)]
pub(super) struct ConsistencyQuery {
    first: u64,
    second: Option<u64>,
}

/// `GET /v1/audit/proofs/consistency?first=M&second=N`: the tree of `N` events (default: the
/// head) extends the tree of `M`.
pub(super) async fn consistency(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<ConsistencyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Auditor], "read Merkle proofs")?;
    let q = query_with(
        q,
        "first and second are numbers of events, for example ?first=1000&second=2439",
    )?;
    let reader = state.reader();
    let sign = signer(&state);
    let doc = blocking(move || Ok(reader.consistency_proof(q.first, q.second, sign)?)).await?;
    Ok(Json(doc).into_response())
}

/// The person a ref names, found in the key store, and the lookup written to the access log.
fn look_up(
    state: &AppState,
    caller: &Caller,
    route: &str,
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
    let (id, role) = match caller {
        Caller::Open => ("-".to_string(), "open".to_string()),
        Caller::Token(p) => (p.token_id.clone(), p.role.as_str().to_string()),
    };
    log.record(
        &id,
        &role,
        route,
        std::slice::from_ref(&person),
        positions.len() as u64,
        1,
    )
    .map_err(AppError::from)?;
    Ok((person, positions))
}

/// `GET /v1/persons/{ref}/proof`: the person's record, every event with its inclusion proof
/// against one digest of the head (auditors; logged in the access log).
pub(super) async fn person_proof(
    State(state): State<AppState>,
    caller: Caller,
    Path(person_ref): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Auditor], "prove a person's record")?;
    // The route as logged never holds the ref.
    let route = "GET /v1/persons/{ref}/proof".to_string();
    let doc = blocking(move || {
        let (person, positions) = look_up(&state, &caller, &route, &person_ref)?;
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
    /// The reads of their events (this lookup included).
    access_log: Vec<AccessEntry>,
}

/// `GET /v1/persons/{ref}`: a person's pseudonym, events and access-log entries, found by
/// their ref (auditors; the lookup is logged as a reveal).
pub(super) async fn person(
    State(state): State<AppState>,
    caller: Caller,
    Path(person_ref): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Auditor], "look up a person")?;
    // The route as logged never holds the ref.
    let route = "GET /v1/persons/{ref}".to_string();
    let record = blocking(move || {
        let (person, positions) = look_up(&state, &caller, &route, &person_ref)?;
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

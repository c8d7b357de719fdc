//! `GET /v1/audit/proofs/inclusion`, `GET /v1/audit/proofs/consistency`: Merkle proofs with
//! digests of the log at the sizes asked (signed when the server has the ledger's key). An
//! inclusion proof carries its event's export line: one naming a person is logged in the
//! access log (`event_proof`). A person's record and its proof are `persons.rs`'s.

use super::blocking;
use super::caller::Caller;
use super::error::ApiError;
use super::query::query_with;
use super::state::AppState;
use crate::access::Role;
use crate::app::AppError;
use crate::audit::{Digest, SignedDigest};
use axum::extract::{Query, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

/// Signs with the server's key, or leaves the digest unsigned (a proof against an unsigned
/// digest is checked by `audit check-proof` as "not signed").
pub(super) fn signer(state: &AppState) -> impl Fn(Digest) -> SignedDigest + Clone {
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
    uri: Uri,
    q: Result<Query<InclusionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Auditor], "read Merkle proofs")?;
    let q = query_with(
        q,
        "position is an event's position and tree_size a number of events, for example ?position=42&tree_size=2439",
    )?;
    let reader = state.reader();
    let sign = signer(&state);
    let route = format!("GET {uri}");
    let doc = blocking(move || {
        let doc = reader.inclusion_proof(q.position, q.tree_size, sign)?;
        // The export line shows the event: one naming a person is a disclosure.
        if let (Some(log), Some(event)) = (
            &state.access_log,
            reader.events_after(q.position - 1, 1)?.into_iter().next(),
        ) {
            if let Some(person) = crate::privacy::person_named(&event.data) {
                log.record(&crate::audit::Disclosure {
                    persons: vec![person],
                    events: 1,
                    ..caller.disclosure(&route, "event_proof")
                })
                .map_err(AppError::from)?;
            }
        }
        Ok(doc)
    })
    .await?;
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

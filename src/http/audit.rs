//! `GET /v1/audit/digest`, `GET /v1/audit/access-log`.

use super::caller::Caller;
use super::error::ApiError;
use super::query::{check_after, check_limit, query_with};
use super::state::AppState;
use super::{blocking, MAX_EVENTS};
use crate::access::Role;
use crate::app::AppError;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

#[derive(Deserialize)]
pub(super) struct AccessQuery {
    after: Option<u64>,
    limit: Option<usize>,
    person: Option<String>,
}

/// `GET /v1/audit/access-log?after=ID&limit=N&person=PERSON_ID`: the person-level reads, oldest
/// first (at most 1,000 per page), optionally those of one person (by pseudonym).
pub(super) async fn access_log(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<AccessQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Auditor], "read the access log")?;
    let q = query_with(
        q,
        "after and limit are whole numbers and person a person_id, for example ?after=0&limit=100",
    )?;
    let (after, limit) = (check_after(q.after)?, check_limit(q.limit, MAX_EVENTS)?);
    let Some(log) = state.access_log.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_access_log",
            "this server keeps no access log (it reveals no person-level data)",
        ));
    };
    let ledger = state.ledger.clone();
    let entries = blocking(move || {
        // A ref where a pseudonym is expected would find nothing: say so instead of `[]`.
        if let (Some(p), Some(keys)) = (q.person.as_deref(), ledger.keys()) {
            let pseudonym = p.len() == 32 && p.bytes().all(|b| b.is_ascii_hexdigit());
            if !pseudonym && keys.find(p).map_err(AppError::from)?.is_some() {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "person_ref_not_pseudonym",
                    "person= takes a pseudonym (the person_id events and this log show), and this is a person_ref: look the person up with POST /v1/persons/record {\"person_ref\": …}, which gives their pseudonym and these entries (and is itself logged)",
                ));
            }
        }
        Ok(log
            .entries(after, limit, q.person.as_deref())
            .map_err(AppError::from)?)
    })
    .await?;
    Ok(Json(entries).into_response())
}

/// `GET /v1/audit/digest`: the head of the log (position, hash, time), signed with the
/// ledger's key when the server has one (`audit verify --digest` checks it).
pub(super) async fn digest(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Auditor], "read the audit digest")?;
    let reader = state.reader();
    let log = state.access_log.clone();
    let d = blocking(move || {
        Ok(reader
            .digest()?
            .with_access_log(log.as_deref())
            .map_err(AppError::from)?)
    })
    .await?;
    // The newest cosigned checkpoint, when it states this head.
    let latest = state
        .checkpoints
        .as_ref()
        .and_then(|l| l.get())
        .filter(|l| {
            l.position == d.position && l.access_log_size == d.access_log.as_ref().map(|a| a.size)
        });
    Ok(Json(match (latest, &state.signing) {
        (Some(l), _) => l,
        (None, Some(k)) => k.sign(d),
        (None, None) => crate::audit::SignedDigest::unsigned(d),
    })
    .into_response())
}

/// `GET /v1/audit/checkpoint`: the newest checkpoint of the log, a C2SP signed note
/// (`text/plain`) with the cosignatures of the server's witnesses; signed now when the server
/// runs no checkpointer (auditors).
pub(super) async fn checkpoint(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Auditor], "read the checkpoint")?;
    let note = match state.checkpoints.as_ref().and_then(|l| l.get()) {
        Some(l) => l.checkpoint,
        None => {
            let Some(key) = state.signing.clone() else {
                return Err(ApiError::new(
                    axum::http::StatusCode::NOT_FOUND,
                    "no_signing_key",
                    "this server has no signing key, so it signs no checkpoint: create one with `campaign-ledger audit keygen` and restart it",
                ));
            };
            let reader = state.reader();
            let log = state.access_log.clone();
            let d = blocking(move || {
                Ok(reader
                    .digest()?
                    .with_access_log(log.as_deref())
                    .map_err(AppError::from)?)
            })
            .await?;
            key.sign(d).checkpoint
        }
    };
    let Some(note) = note else {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "empty_log",
            "the log holds no event yet: its first checkpoint comes with its first event",
        ));
    };
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        note,
    )
        .into_response())
}

#[derive(Deserialize)]
pub(super) struct ChangesQuery {
    known_since: String,
    known_until: Option<String>,
    projection: Option<String>,
}

/// `GET /v1/audit/changes?known_since=T&known_until=T&projection=NAME`: the entries recorded in
/// that window for earlier business dates, and the projection's figures (default
/// `doses_by_directorate`) for each date they touch, before and after (auditors).
pub(super) async fn changes(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<ChangesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Auditor], "read what changed")?;
    let q = query_with(
        q,
        "known_since (and known_until) are times with an offset, for example ?known_since=2021-12-17T18:00:00%2B01:00",
    )?;
    let Some(since) = super::query::parse_known_at(Some(&q.known_since))? else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_known_at",
            "known_since is required: a time with an offset, for example 2021-12-17T18:00:00+01:00",
        ));
    };
    let until = super::query::parse_known_at(q.known_until.as_deref())?;
    let projection = q
        .projection
        .unwrap_or_else(|| "doses_by_directorate".to_string());
    let reader = state.reader();
    let c = blocking(move || Ok(reader.changes(since, until, &projection, None)?)).await?;
    Ok(Json(c).into_response())
}

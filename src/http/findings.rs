//! `GET /v1/findings`: the open data-quality findings (people whose recorded series no longer
//! holds after a correction), for supervisors (their directorates), auditors and admins. Each
//! names the person by pseudonym only, never the ref; the read is logged in the access log
//! like every person-level read.

use super::blocking;
use super::caller::{forbidden, Caller, ReadScope};
use super::error::ApiError;
use super::query::{known_at_for, parse_as_of, query};
use super::state::AppState;
use crate::access::Role;
use crate::app::AppError;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use serde::Deserialize;

#[derive(Deserialize)]
pub(super) struct FindingsQuery {
    directorate: Option<String>,
    as_of: Option<String>,
    known_at: Option<String>,
}

/// The list, newest business date last.
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    uri: axum::http::Uri,
    q: Result<Query<FindingsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let scope = match caller.role() {
        Some(Role::Admin) => ReadScope::All,
        Some(Role::Auditor | Role::Supervisor) | None => caller.read_scope()?,
        Some(_) => {
            return Err(forbidden(format!(
                "{} may not read data-quality findings; that needs a supervisor, auditor or admin token",
                caller.describe()
            )))
        }
    };
    let q = query(q)?;
    let as_of = parse_as_of(q.as_of.as_deref())?;
    let known_at = known_at_for(&caller, q.known_at.as_deref())?;
    let wanted = q.directorate.filter(|d| !d.is_empty());
    if let Some(d) = &wanted {
        if !state.ledger.reference().directorates.contains_key(d) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "unknown_directorate",
                format!("directorate={d:?} is not in the reference list of directorates; check its id (for example lyon)"),
            ));
        }
        if !scope.allows(Some(d)) {
            return Err(forbidden(format!(
                "{} reads the findings of its own directorates only, not {d}",
                caller.describe()
            )));
        }
    }
    let reader = state.reader();
    let (found, position) = blocking(move || Ok(reader.findings(as_of, known_at)?)).await?;
    let shown: Vec<_> = found
        .iter()
        .filter(|f| scope.allows(Some(f.directorate())))
        .filter(|f| wanted.as_deref().is_none_or(|d| f.directorate() == d))
        .collect();
    if let Some(log) = state.access_log.clone() {
        if !shown.is_empty() {
            let mut persons: Vec<String> = shown
                .iter()
                .filter_map(|f| f.person_id().map(str::to_string))
                .collect();
            persons.sort();
            persons.dedup();
            let d = crate::audit::Disclosure {
                persons,
                events: shown.len() as u64,
                ..caller.disclosure(&format!("GET {uri}"), "findings")
            };
            blocking(move || Ok(log.record(&d).map_err(AppError::from)?)).await?;
        }
    }
    let rows: Vec<_> = shown.iter().map(|f| f.view()).collect();
    Ok(Json(serde_json::json!({
        "directorate": wanted,
        "as_of": as_of,
        "known_at": known_at.map(|k| k.to_rfc3339()),
        "position": position,
        "findings": rows,
    }))
    .into_response())
}

//! Query-string extraction shared by the routes: dates, times, positions, with errors that say
//! what to write.

use super::error::ApiError;
use axum::extract::Query;
use axum::http::StatusCode;
use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::Deserialize;

#[derive(Deserialize)]
pub(super) struct ReportQuery {
    pub(super) as_of: Option<String>,
    pub(super) known_at: Option<String>,
}

/// A parameter given empty (`?known_at=`): refused, not read as absent, so that a client
/// whose value went missing learns it instead of getting an answer to another question.
fn not_empty<'a>(
    name: &str,
    code: &'static str,
    s: Option<&'a str>,
) -> Result<Option<&'a str>, ApiError> {
    match s {
        Some("") => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            code,
            format!("{name}= is empty; leave {name} out, or give a value"),
        )),
        s => Ok(s),
    }
}

pub(super) fn parse_known_at(s: Option<&str>) -> Result<Option<DateTime<FixedOffset>>, ApiError> {
    not_empty("known_at", "bad_known_at", s)?
        .map(|s| {
            DateTime::<FixedOffset>::parse_from_rfc3339(s).map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_known_at",
                    format!(
                        "known_at={s:?} is not a time with an offset; write it as 2021-12-17T18:00:00+01:00 (in a URL, + is written %2B)"
                    ),
                )
            })
        })
        .transpose()
}

pub(super) fn parse_as_of(s: Option<&str>) -> Result<Option<NaiveDate>, ApiError> {
    not_empty("as_of", "bad_as_of", s)?
        .map(|s| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_as_of",
                    format!("as_of={s:?} is not a date; write YYYY-MM-DD, for example 2021-12-17"),
                )
            })
        })
        .transpose()
}

/// `GET /v1/projections/{name}?as_of=YYYY-MM-DD&known_at=RFC3339`: the report JSON.
/// A query string that does not parse: 400 `bad_query`, with `hint` on what to write.
pub(super) fn query_with<T>(
    q: Result<Query<T>, axum::extract::rejection::QueryRejection>,
    hint: &str,
) -> Result<T, ApiError> {
    q.map(|Query(q)| q).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("{}; {hint}", e.body_text()),
        )
    })
}

pub(super) fn query<T>(
    q: Result<Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, ApiError> {
    query_with(q, "see /v1/openapi.json for this route's parameters")
}

/// A `limit` given by a client: from 1 to `max` (400 `bad_query` outside), 100 when absent.
pub(super) fn check_limit(limit: Option<usize>, max: usize) -> Result<usize, ApiError> {
    match limit {
        None => Ok(100.min(max)),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("limit={n} is out of range; give a number from 1 to {max}"),
        )),
    }
}

/// A position given by a client: at most the largest a log can hold.
pub(super) fn check_after(after: Option<u64>) -> Result<u64, ApiError> {
    match after {
        Some(a) if a > i64::MAX as u64 => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!(
                "after={a} is beyond any log position (at most {})",
                i64::MAX
            ),
        )),
        a => Ok(a.unwrap_or(0)),
    }
}

/// A `known_at` query (what the ledger said at a past time): auditors only.
pub(super) fn known_at_for(
    caller: &super::caller::Caller,
    q: Option<&str>,
) -> Result<Option<DateTime<FixedOffset>>, ApiError> {
    let known_at = parse_known_at(q)?;
    if known_at.is_some() {
        caller.require(
            &[crate::access::Role::Auditor],
            "read the ledger as known at a past time (known_at)",
        )?;
    }
    Ok(known_at)
}

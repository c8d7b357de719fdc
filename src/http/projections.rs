//! `GET /v1/projections`, `GET /v1/projections/{name}` (and `/live`), `POST …/rebuild`.

use super::blocking;
use super::caller::{forbidden, Caller, ReadScope};
use super::error::ApiError;
use super::live_hub::SnapshotKey;
use super::query::{known_at_for, parse_as_of, query, ReportQuery};
use super::sse::{admit, error_event, feed, head_watch};
use super::state::AppState;
use crate::access::Role;
use crate::projection::{ProjectionError, Report};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::sync::Arc;

/// The report as its reader may see it: a supervisor's rows are its directorates' (totals
/// summed again over them), and a projection without a directorate column is national, so
/// refused to supervisors; counts from 1 to 4 of a single site are `"<5"` for all but
/// auditors (and servers without tokens).
pub(super) fn shape_report(
    report: &Report,
    caller: &Caller,
) -> Result<serde_json::Value, ApiError> {
    let scope = caller.read_scope()?;
    let mut v = serde_json::to_value(report).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the report could not be written as JSON ({e})"),
        )
    })?;
    let has = |c: &str| report.columns.iter().any(|x| x == c);
    if let ReadScope::Directorates(dirs) = &scope {
        if !has("directorate") {
            return Err(forbidden(format!(
                "{} is national (it has no directorate column); {} reads only the rows of {}",
                report.projection,
                caller.describe(),
                dirs.iter().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        let rows = v["rows"].as_array_mut().expect("rows");
        rows.retain(|r| scope.allows(r["directorate"].as_str()));
        let sums: Vec<(String, i64)> = v["totals"]
            .as_object()
            .map(|t| {
                t.keys()
                    .map(|k| {
                        let sum = v["rows"]
                            .as_array()
                            .expect("rows")
                            .iter()
                            .filter_map(|r| r[k].as_i64())
                            .sum();
                        (k.clone(), sum)
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (k, sum) in sums {
            v["totals"][&k] = sum.into();
        }
    }
    if caller.suppresses_small_counts() && has("site") {
        // Replaces counts from 1 to 4 by "<5"; adds the names of the columns it hid.
        let hide = |x: &mut serde_json::Value, hidden: &mut BTreeSet<String>| {
            if let Some(obj) = x.as_object_mut() {
                for (k, val) in obj.iter_mut() {
                    if val.as_i64().is_some_and(|n| (1..5).contains(&n)) {
                        *val = "<5".into();
                        hidden.insert(k.clone());
                    }
                }
            }
        };
        let mut hidden_columns = BTreeSet::new();
        for r in v["rows"].as_array_mut().expect("rows") {
            hide(r, &mut hidden_columns);
        }
        hide(&mut v["totals"], &mut BTreeSet::new());
        // A total less the shown values would give a hidden one back: such totals go too.
        if let Some(t) = v["totals"].as_object_mut() {
            for c in &hidden_columns {
                if let Some(x) = t.get_mut(c) {
                    *x = serde_json::Value::Null;
                }
            }
        }
        v["suppressed"] = true.into();
    }
    Ok(v)
}

/// `GET /v1/projections`: the projections and their state.
pub(super) async fn projections_list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.read_scope()?;
    let reader = state.reader();
    let status = blocking(move || Ok(reader.projections()?)).await?;
    Ok(Json(status).into_response())
}

pub(super) async fn projection(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    q: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    caller.read_scope()?;
    let q = query(q)?;
    let as_of = parse_as_of(q.as_of.as_deref())?;
    let known_at = known_at_for(&caller, q.known_at.as_deref())?;
    let reader = state.reader();
    let report = blocking(move || Ok(reader.report(&name, as_of, known_at)?)).await?;
    Ok(Json(shape_report(&report, &caller)?).into_response())
}

/// `POST /v1/projections/{name}/rebuild`: replays the log into a new state beside the live
/// one and swaps it in (readers never see partial counts); says whether it equals the live one.
pub(super) async fn rebuild(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin], "rebuild projections")?;
    let reader = state.reader();
    let rebuilt = blocking(move || Ok(reader.rebuild(&name)?)).await?;
    Ok(Json(rebuilt).into_response())
}

#[derive(Deserialize)]
pub(super) struct LiveQuery {
    as_of: Option<String>,
    known_at: Option<String>,
}

/// `GET /v1/projections/{name}/live[?as_of=DATE]`: a snapshot (the report JSON, SSE `event`
/// `snapshot`, `id` the log position) at once and after every change, coalesced: a burst of
/// commits gives one snapshot of where it ended (at most ten a second). Shaped for the
/// caller as `GET /v1/projections/{name}` is.
pub(super) async fn projection_live(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    q: Result<Query<LiveQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    caller.read_scope()?;
    let q = query(q)?;
    if q.known_at.is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "known_at_not_live",
            "a live projection follows what the ledger knows now; read a past state with GET /v1/projections/{name}?known_at=…",
        ));
    }
    if !state.engine.definitions().any(|d| d.name == name) {
        return Err(ProjectionError::Unknown(name).into());
    }
    let as_of = parse_as_of(q.as_of.as_deref())?;
    let reader = state.reader();
    // Refused at once (not as an SSE error) when the caller may not see this projection.
    let first = {
        let (reader, name) = (reader.clone(), name.clone());
        blocking(move || Ok(reader.report(&name, as_of, None)?)).await?
    };
    let first_json: Arc<str> = shape_report(&first, &caller)?.to_string().into();
    let permit = match admit(&state) {
        Ok(p) => p,
        Err(refused) => return Ok(*refused),
    };
    let key: SnapshotKey = (name.clone(), as_of, format!("{:?}", caller.read_scope()?));
    let hub = state.live.clone();
    hub.keep_snapshot(&key, first.position, first_json.clone());
    let mut head = head_watch(&state);
    let feed = feed(&state, permit, 4, move |out| async move {
        let (mut shown, mut json) = (first.position, first_json);
        loop {
            let event = axum::response::sse::Event::default()
                .id(shown.to_string())
                .event("snapshot")
                .data(&*json);
            if !out.send(event).await {
                return;
            }
            // The next snapshot: after the log moves, coalescing a burst (at most ten a
            // second), and only when the projection moved. Clients of the same projection,
            // as_of and scope share one read per move (`LiveHub::snapshot`).
            let mut seen = shown;
            loop {
                if !out.beyond(&mut head, seen).await {
                    return;
                }
                seen = *head.borrow();
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                let _reading = hub.reading.lock().await;
                if let Some((p, j)) = hub.snapshot(&key) {
                    if p != shown && p >= seen {
                        (shown, json) = (p, j);
                        break;
                    }
                }
                let read = {
                    let (reader, name) = (reader.clone(), name.clone());
                    tokio::task::spawn_blocking(move || reader.report(&name, as_of, None)).await
                };
                match read {
                    Ok(Ok(r)) => {
                        let Ok(v) = shape_report(&r, &caller) else {
                            return;
                        };
                        let j: Arc<str> = v.to_string().into();
                        hub.keep_snapshot(&key, r.position, j.clone());
                        if r.position != shown {
                            (shown, json) = (r.position, j);
                            break;
                        }
                        // Not folded that far yet: look again after the next pause.
                        if r.position < seen {
                            seen = r.position;
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "live projection stopped");
                        let _ = out
                            .send(error_event(&format!(
                                "the projection cannot be read now ({e}); reconnect"
                            )))
                            .await;
                        return;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "a live read failed");
                        return;
                    }
                }
            }
        }
    });
    Ok(feed.into_response())
}

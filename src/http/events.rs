//! `GET /v1/streams/{id}`, `GET /v1/events`, `GET /v1/events/live`: events as the API shows
//! them, people revealed to the roles that read them and each such read logged.

use super::caller::Caller;
use super::error::ApiError;
use super::query::{check_after, check_limit, query_with};
use super::sse::{admit, error_event, feed, head_watch};
use super::state::AppState;
use super::{blocking, MAX_EVENTS, MAX_SCAN};
use crate::app::AppError;
use crate::envelope::RecordedEvent;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

/// An event as the API shows it: the envelope exactly as stored (`data` holds person refs
/// sealed; the hash covers these bytes) and, for an event naming a person, what the reader
/// may see of them.
#[derive(serde::Serialize)]
pub(super) struct ShownEvent {
    #[serde(flatten)]
    pub(super) event: RecordedEvent,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) person: Option<crate::app::PersonView>,
}

/// Adds what may be seen of each event's person, and records the read in the access log
/// (durably, before the answer leaves). Without an access log or a key store, events are
/// shown as stored.
pub(super) fn reveal_all(
    state: &AppState,
    caller: &Caller,
    route: &str,
    events: Vec<RecordedEvent>,
) -> Result<Vec<ShownEvent>, ApiError> {
    let (Some(log), Some(_)) = (&state.access_log, state.ledger.keys()) else {
        return Ok(events
            .into_iter()
            .map(|event| ShownEvent {
                event,
                person: None,
            })
            .collect());
    };
    let mut shown = Vec::with_capacity(events.len());
    let mut persons: Vec<String> = Vec::new();
    let (mut named, mut revealed) = (0u64, 0u64);
    for event in events {
        let person = state.ledger.reveal(&event)?;
        if let Some(p) = &person {
            named += 1;
            revealed += u64::from(p.person_ref.is_some());
            let id = p
                .person_id
                .clone()
                .or_else(|| p.person_ref.clone())
                .unwrap_or_default();
            if !persons.contains(&id) {
                persons.push(id);
            }
        }
        shown.push(ShownEvent { event, person });
    }
    if named > 0 {
        log.record(&crate::audit::Disclosure {
            persons,
            events: named,
            revealed,
            ..caller.disclosure(route, "events")
        })
        .map_err(AppError::from)?;
    }
    Ok(shown)
}

pub(super) fn event_directorate(e: &RecordedEvent) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(&e.data)
        .ok()?
        .get("directorate")?
        .as_str()
        .map(str::to_string)
}

/// `GET /v1/streams/{id}`: every event of one stream, in version order (for a supervisor,
/// those of its directorates).
pub(super) async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    uri: axum::http::Uri,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let scope = caller.read_scope()?;
    let reader = state.reader();
    let shown = id.clone();
    let events = blocking(move || Ok(reader.stream(&id)?)).await?;
    if events.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_stream",
            format!("no stream {shown:?} in the log"),
        ));
    }
    let visible: Vec<RecordedEvent> = events
        .into_iter()
        .filter(|e| scope.allows(event_directorate(e).as_deref()))
        .collect();
    if visible.is_empty() {
        // The same answer as for a stream that does not exist: a supervisor learns nothing
        // about other directorates' streams.
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_stream",
            format!(
                "no stream {shown:?} among the events {} may read",
                caller.describe()
            ),
        ));
    }
    let route = format!("GET {uri}");
    let shown = blocking(move || reveal_all(&state, &caller, &route, visible)).await?;
    Ok(Json(shown).into_response())
}

#[derive(Deserialize)]
pub(super) struct EventsQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

pub(super) fn events_query(
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<EventsQuery, ApiError> {
    query_with(
        q,
        "after and limit are whole numbers, for example ?after=0&limit=100",
    )
}

/// `GET /v1/events?after=POS&limit=N`: events after a position, in order (at most 1,000).
/// For a supervisor, only the events naming one of its directorates; the header
/// `Ledger-Next-After` always says where to continue (the last position looked at).
pub(super) async fn events(
    State(state): State<AppState>,
    caller: Caller,
    uri: axum::http::Uri,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let scope = caller.read_scope()?;
    let q = events_query(q)?;
    let (after, limit) = (check_after(q.after)?, check_limit(q.limit, MAX_EVENTS)?);
    let reader = state.reader();
    let (events, next) = blocking(move || {
        let mut out = Vec::new();
        let mut at = after;
        let mut scanned = 0;
        loop {
            let page = reader.events_after(at, limit)?;
            let Some(last) = page.last() else { break };
            at = last.position;
            scanned += page.len();
            let full = page.len() == limit;
            for e in page {
                if out.len() < limit && scope.allows(event_directorate(&e).as_deref()) {
                    out.push(e);
                } else if out.len() == limit {
                    break;
                }
            }
            if let Some(l) = out.last() {
                if out.len() == limit {
                    at = l.position;
                }
            }
            if out.len() == limit || !full || scanned >= MAX_SCAN {
                break;
            }
        }
        Ok((out, at))
    })
    .await?;
    let route = format!("GET {uri}");
    let shown = blocking(move || reveal_all(&state, &caller, &route, events)).await?;
    let mut r = Json(shown).into_response();
    r.headers_mut().insert(
        "ledger-next-after",
        HeaderValue::from_str(&next.to_string()).expect("digits"),
    );
    Ok(r)
}

/// `GET /v1/events/live?after=POS`: every event after `POS` (or after the `Last-Event-ID`
/// header, which a reconnecting browser sends), then each new one as it is committed; the SSE
/// `id` is the position, the `event` is `ledger-event`, the data the event as JSON. No gap,
/// no duplicate: it is the store's catch-up-then-live subscription (for a supervisor, the
/// events of its directorates).
pub(super) async fn events_live(
    State(state): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let scope = caller.read_scope()?;
    let q = events_query(q)?;
    let resume = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "bad_last_event_id",
                        "Last-Event-ID must be a position (a whole number) sent by this stream",
                    )
                })?,
        ),
        None => None,
    };
    // Both are checked, also when the header wins: a bad query is refused, not ignored.
    let after = check_after(q.after)?;
    let after = match resume {
        Some(r) => check_after(Some(r))?,
        None => after,
    };
    let permit = match admit(&state) {
        Ok(p) => p,
        Err(refused) => return Ok(*refused),
    };
    let mut head = head_watch(&state);
    let reader = state.reader();
    let feed = feed(&state, permit, 256, move |out| async move {
        let mut at = after;
        loop {
            let read = {
                let reader = reader.clone();
                tokio::task::spawn_blocking(move || reader.events_after(at, 256)).await
            };
            let batch = match read {
                Ok(Ok(batch)) => batch,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "live events stopped");
                    let _ = out
                        .send(error_event(&format!(
                            "the log cannot be read now ({e}); reconnect to resume"
                        )))
                        .await;
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "a live read failed");
                    return;
                }
            };
            if batch.is_empty() {
                if !out.beyond(&mut head, at).await {
                    return;
                }
                continue;
            }
            for e in batch {
                // No gap, no duplicate: each event must follow the last one sent.
                if e.position != at + 1 {
                    tracing::error!(
                        expected = at + 1,
                        read = e.position,
                        "live events: positions do not follow"
                    );
                    let _ = out
                        .send(error_event(&format!(
                            "expected position {} after {at}, read {}; reconnect to resume",
                            at + 1,
                            e.position
                        )))
                        .await;
                    return;
                }
                at = e.position;
                if !scope.allows(event_directorate(&e).as_deref()) {
                    continue;
                }
                let Ok(event) = axum::response::sse::Event::default()
                    .id(e.position.to_string())
                    .event("ledger-event")
                    .json_data(&e)
                else {
                    continue;
                };
                if !out.send(event).await {
                    return;
                }
            }
        }
    });
    Ok(feed.into_response())
}

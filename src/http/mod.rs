//! The HTTP API (axum): commands in; projections, streams, events and the digest out.
//!
//! This is the first slice of the HTTP work: the routes below (with server-sent events for
//! the log and for projections), their errors, and `campaign-ledger serve`, which binds to
//! loopback only. Tokens and roles, metrics, the OpenAPI document and the dashboard are not
//! here yet; until tokens exist, `serve` refuses any address that is not loopback.
//!
//! Errors are one JSON shape, `{"error": {"code": "...", "message": "..."}}`, with the
//! status saying who must act: 400 a request to fix, 404 nothing of that name, 409 a
//! concurrency conflict that survived the retries, 413 a body over 1 MiB, 503 the store
//! cannot be reached now (retry), 500 anything else (the details go to the log, not the body).

use crate::app::{handle_text, AppError, Ledger, LineOutcome};
use crate::projection::{Engine, ProjectionError};
use crate::store::{Actor, EventStore, RecordedEvent, StoreError};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::Deserialize;
use std::sync::Arc;

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 1 << 20;
/// The most commands in one request.
pub const MAX_COMMANDS: usize = 1000;
/// The most events one `GET /v1/events` returns.
pub const MAX_EVENTS: usize = 1000;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Command handling (and, through it, the store).
    pub ledger: Arc<Ledger>,
    /// The projection engine.
    pub engine: Arc<Engine>,
    /// Set to `true` when the server stops: live streams end so that the graceful shutdown
    /// does not wait for them forever.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

impl AppState {
    /// State for a server that is never asked to stop (tests, embedding).
    pub fn new(ledger: Arc<Ledger>, engine: Arc<Engine>) -> AppState {
        // The sender is dropped at once: the receiver keeps reading `false`.
        let (_never, stopping) = tokio::sync::watch::channel(false);
        AppState {
            ledger,
            engine,
            stopping,
        }
    }

    fn store(&self) -> Arc<dyn EventStore> {
        self.ledger.store().clone()
    }
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Conflict { .. } => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{e}; send the command again"),
            ),
            StoreError::Invalid(m) => ApiError::new(StatusCode::BAD_REQUEST, "invalid", m),
            StoreError::Unavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                format!("{e}; retry in a moment"),
            ),
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the ledger could not read or write its log; an operator should run `campaign-ledger audit verify`",
                )
            }
        }
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> ApiError {
        match e {
            AppError::Store(s) => s.into(),
            other => {
                tracing::error!(error = %other, "command handling failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "a stored event could not be read back; an operator should run `campaign-ledger audit verify`",
                )
            }
        }
    }
}

impl From<ProjectionError> for ApiError {
    fn from(e: ProjectionError) -> ApiError {
        match e {
            ProjectionError::Unknown(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_projection", e.to_string())
            }
            ProjectionError::Store(s) => s.into(),
            other => {
                tracing::error!(error = %other, "projection failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the projection database failed; an operator can rebuild it with `campaign-ledger projections rebuild NAME`",
                )
            }
        }
    }
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "a blocking task failed");
        Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request could not be completed",
        ))
    })
}

/// The router with every route of this slice.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/commands", post(commands))
        .route("/v1/projections/{name}", get(projection))
        .route("/v1/streams/{id}", get(stream))
        .route("/v1/events", get(events))
        .route("/v1/events/live", get(events_live))
        .route("/v1/projections/{name}/live", get(projection_live))
        .route("/v1/audit/digest", get(digest))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route; the API lives under /v1 (commands, projections, streams, events, audit/digest)",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// `POST /v1/commands`: one command object, or an array of them, with the `submit` contract;
/// the answer is one outcome object, or an array in the same order. Rejections are outcomes
/// (HTTP 200); `line` is the command's 1-based place in the request.
async fn commands(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body is over {BODY_LIMIT} bytes; send fewer commands per request"),
            )
        } else {
            ApiError::new(r.status(), "bad_body", r.body_text())
        }
    })?;
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not JSON ({e}); send one command object or an array of them"),
        )
    })?;
    let (items, single) = match value {
        serde_json::Value::Array(items) => (items, false),
        v @ serde_json::Value::Object(_) => (vec![v], true),
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "not_a_command",
                "send one command object or an array of them",
            ))
        }
    };
    if items.len() > MAX_COMMANDS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_commands",
            format!(
                "{} commands in one request; send at most {MAX_COMMANDS}",
                items.len()
            ),
        ));
    }
    let ledger = state.ledger.clone();
    let outcomes: Vec<LineOutcome> = blocking(move || {
        let actor = Actor {
            role: "api".into(),
            ..Default::default()
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let text = item.to_string();
            match handle_text(&ledger, i + 1, &text, &actor, |_| {}) {
                Ok(o) => out.push(o),
                Err(e) if i > 0 => {
                    let mut api: ApiError = e.into();
                    api.message = format!(
                        "{} (the first {i} commands of the request were handled; send the request again: they come back as duplicates)",
                        api.message
                    );
                    return Err(api);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    })
    .await?;
    Ok(if single {
        Json(&outcomes[0]).into_response()
    } else {
        Json(&outcomes).into_response()
    })
}

#[derive(Deserialize)]
struct ReportQuery {
    as_of: Option<String>,
    known_at: Option<String>,
}

/// `GET /v1/projections/{name}?as_of=YYYY-MM-DD&known_at=RFC3339`: the report JSON.
async fn projection(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let as_of = q
        .as_of
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_as_of",
                    format!("as_of={s:?} is not a date; write YYYY-MM-DD, for example 2021-12-17"),
                )
            })
        })
        .transpose()?;
    let known_at = q
        .known_at
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            DateTime::<FixedOffset>::parse_from_rfc3339(s).map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_known_at",
                    format!(
                        "known_at={s:?} is not a time with an offset; write it as 2021-12-17T18:00:00+01:00"
                    ),
                )
            })
        })
        .transpose()?;
    let (engine, store) = (state.engine.clone(), state.store());
    let report =
        blocking(move || Ok(engine.report(store.as_ref(), &name, as_of, known_at)?)).await?;
    Ok(Json(report).into_response())
}

/// `GET /v1/streams/{id}`: every event of one stream, in version order.
async fn stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<RecordedEvent>>, ApiError> {
    let store = state.store();
    let shown = id.clone();
    let events = blocking(move || Ok(store.read_stream(&id)?)).await?;
    if events.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_stream",
            format!("no stream {shown:?} in the log"),
        ));
    }
    Ok(Json(events))
}

#[derive(Deserialize)]
struct EventsQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

/// `GET /v1/events?after=POS&limit=N`: events after a position, in order (at most 1,000).
async fn events(
    State(state): State<AppState>,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<RecordedEvent>>, ApiError> {
    let Query(q) = q.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!(
                "{}; after and limit are whole numbers, for example ?after=0&limit=100",
                e.body_text()
            ),
        )
    })?;
    let (after, limit) = (
        q.after.unwrap_or(0),
        q.limit.unwrap_or(100).clamp(1, MAX_EVENTS),
    );
    let store = state.store();
    Ok(Json(
        blocking(move || Ok(store.read_all(after, limit)?)).await?,
    ))
}

/// `GET /v1/audit/digest`: the head of the log (position, hash, time).
async fn digest(State(state): State<AppState>) -> Result<Response, ApiError> {
    let store = state.store();
    let d = blocking(move || Ok(crate::audit::digest(store.as_ref())?)).await?;
    Ok(Json(d).into_response())
}

/// `GET /readyz`: 200 when the store answers and every projection is caught up with it.
async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    let (engine, store) = (state.engine.clone(), state.store());
    blocking(move || {
        let head = store.head()?.position;
        let caught_up = engine.catch_up(store.as_ref())?;
        Ok(if caught_up >= head {
            (StatusCode::OK, Json(serde_json::json!({"ready": true, "position": head})))
                .into_response()
        } else {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"ready": false, "position": head, "projections_at": caught_up})),
            )
                .into_response()
        })
    })
    .await
}

/// Events for an SSE stream, fed by a blocking task; the stream ends when the client goes.
fn sse_from(
    rx: tokio::sync::mpsc::Receiver<axum::response::sse::Event>,
) -> axum::response::Sse<
    impl futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
> {
    let stream =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
        );
    axum::response::Sse::new(stream).keep_alive(
        axum::response::sse::KeepAlive::new().interval(std::time::Duration::from_secs(15)),
    )
}

/// `GET /v1/events/live?after=POS`: every event after `POS` (or after the `Last-Event-ID`
/// header, which a reconnecting browser sends), then each new one as it is committed; the SSE
/// `id` is the position, the `event` is `ledger-event`, the data the event as JSON. No gap,
/// no duplicate: it is the store's catch-up-then-live subscription.
async fn events_live(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!(
                "{}; after is a whole number, for example ?after=0",
                e.body_text()
            ),
        )
    })?;
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
    let after = resume.or(q.after).unwrap_or(0);
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let store = state.store();
    let stopping = state.stopping.clone();
    tokio::task::spawn_blocking(move || {
        let mut sub = crate::store::subscribe(store, after);
        loop {
            if *stopping.borrow() {
                return;
            }
            match sub.next_timeout(std::time::Duration::from_secs(1)) {
                Ok(Some(e)) => {
                    let event = axum::response::sse::Event::default()
                        .id(e.position.to_string())
                        .event("ledger-event")
                        .json_data(&e);
                    let Ok(event) = event else { continue };
                    if tx.blocking_send(event).is_err() {
                        return; // the client went away
                    }
                }
                Ok(None) if tx.is_closed() => return,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "live events stopped");
                    let _ = tx.blocking_send(
                        axum::response::sse::Event::default()
                            .event("error")
                            .data(format!(
                                "the log cannot be read now ({e}); reconnect to resume"
                            )),
                    );
                    return;
                }
            }
        }
    });
    Ok(sse_from(rx).into_response())
}

#[derive(Deserialize)]
struct LiveQuery {
    as_of: Option<String>,
}

/// `GET /v1/projections/{name}/live[?as_of=DATE]`: a snapshot (the report JSON, SSE `event`
/// `snapshot`, `id` the log position) at once and after every change, coalesced: a burst of
/// commits gives one snapshot of where it ended (at most ten a second).
async fn projection_live(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<LiveQuery>,
) -> Result<Response, ApiError> {
    if !state.engine.definitions().any(|d| d.name == name) {
        return Err(ProjectionError::Unknown(name).into());
    }
    let as_of = q
        .as_of
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_as_of",
                    format!("as_of={s:?} is not a date; write YYYY-MM-DD, for example 2021-12-17"),
                )
            })
        })
        .transpose()?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let (engine, store) = (state.engine.clone(), state.store());
    let stopping = state.stopping.clone();
    tokio::task::spawn_blocking(move || {
        let mut shown = None;
        loop {
            if *stopping.borrow() {
                return;
            }
            match engine.report(store.as_ref(), &name, as_of, None) {
                Ok(r) if shown != Some(r.position) => {
                    shown = Some(r.position);
                    let Ok(event) = axum::response::sse::Event::default()
                        .id(r.position.to_string())
                        .event("snapshot")
                        .json_data(&r)
                    else {
                        return;
                    };
                    if tx.blocking_send(event).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "live projection stopped");
                    let _ = tx.blocking_send(
                        axum::response::sse::Event::default()
                            .event("error")
                            .data(format!(
                                "the projection cannot be read now ({e}); reconnect"
                            )),
                    );
                    return;
                }
            }
            if tx.is_closed() {
                return;
            }
            let at = shown.unwrap_or(0);
            if store
                .wait_beyond(at, std::time::Duration::from_secs(1))
                .is_err()
            {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
            std::thread::sleep(std::time::Duration::from_millis(100)); // coalesce a burst
        }
    });
    Ok(sse_from(rx).into_response())
}

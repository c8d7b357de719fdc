//! The witness's HTTP server: `POST /add-checkpoint` (C2SP `tlog-witness`) and
//! `GET /<hex SHA-256 of the origin>/checkpoint` (the last checkpoint cosigned for a log). It
//! takes an injected listener and a shutdown future, as the ledger's server does.

use super::Witness;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

/// The most bytes a request body may have (a checkpoint with many signatures and 63 hashes
/// is a few kilobytes).
const BODY_LIMIT: usize = 64 * 1024;

/// The witness's routes.
pub fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route(
            crate::envelope::witness::ADD_CHECKPOINT,
            post(add_checkpoint),
        )
        .route("/{origin}/checkpoint", get(latest))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(witness)
}

async fn add_checkpoint(State(w): State<Arc<Witness>>, body: Bytes) -> Response {
    let Ok(text) = String::from_utf8(body.to_vec()) else {
        return (StatusCode::BAD_REQUEST, "the body is not UTF-8\n").into_response();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let done = tokio::task::spawn_blocking(move || w.add_checkpoint(&text, now)).await;
    match done {
        Ok(Ok(lines)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            lines,
        )
            .into_response(),
        Ok(Err(r)) => (
            StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [(header::CONTENT_TYPE, r.content_type)],
            r.body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn latest(State(w): State<Arc<Witness>>, Path(origin): Path<String>) -> Response {
    match tokio::task::spawn_blocking(move || w.latest(&origin)).await {
        Ok(Some(note)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            note,
        )
            .into_response(),
        _ => (
            StatusCode::NOT_FOUND,
            "no checkpoint cosigned for this log\n",
        )
            .into_response(),
    }
}

/// Serves the witness on `listener` until `shutdown` completes.
pub async fn run(
    listener: tokio::net::TcpListener,
    witness: Arc<Witness>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(witness))
        .with_graceful_shutdown(shutdown)
        .await
}

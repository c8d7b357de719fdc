//! The HTTP API (axum): commands in; projections, streams, events, the digest and metrics
//! out; the dashboard; tokens and roles.
//!
//! Errors are one JSON shape, `{"error": {"code": "...", "message": "..."}}`, with the
//! status saying who must act: 400 a request to fix, 401 no valid token, 403 a token whose role
//! or directorates do not allow this, 404 nothing of that name, 409 a concurrency conflict that
//! survived the retries, 413 a body over 1 MiB (over 1,000 commands: 400), 503 the store cannot be reached now (retry),
//! 500 anything else (the details go to the log, not the body).
//!
//! Without a token file (`serve` without `--auth`) every request acts with full rights as
//! role `api`, and `serve` refuses any address that is not loopback. With one, each request
//! needs `Authorization: Bearer TOKEN`; what each role may do is in [`Caller`] and in the
//! README's role × endpoint table.

mod access;
mod audit;
mod caller;
mod commands;
pub mod dashboard;
mod error;
mod events;
mod findings;
mod health;
mod live_hub;
pub mod metrics;
pub mod openapi;
mod persons;
mod projections;
mod proofs;
mod query;
mod sse;
mod state;
mod strict;
mod tls;

pub use crate::access::{Auth, Principal, Role};
pub use crate::audit::{AccessEntry, AccessLog};
pub use caller::{Caller, ReadScope};
pub use error::ApiError;
pub use live_hub::{LiveHub, DEFAULT_MAX_LIVE, SLOW_CLIENT};
pub use metrics::Metrics;
pub use state::AppState;
pub use tls::TlsConfig;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 1 << 20;
/// The most commands in one request.
pub const MAX_COMMANDS: usize = 1000;
/// The most events one `GET /v1/events` returns.
pub const MAX_EVENTS: usize = 1000;
/// The most events one filtered `GET /v1/events` scans for a supervisor.
const MAX_SCAN: usize = 100_000;

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

/// Serves the API on `listener` (bound by the caller: a test binds port 0) until `shutdown`
/// completes; requests in flight finish first. Answers go out at once (no Nagle delay behind
/// a small response).
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    serve_on(listener, state, shutdown).await
}

/// [`run`] over HTTPS: each connection's TLS handshake first (see [`TlsConfig`]).
pub async fn run_tls(
    listener: tokio::net::TcpListener,
    tls: &TlsConfig,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_on(tls::TlsListener::new(listener, tls)?, state, shutdown).await
}

async fn serve_on<L>(
    listener: L,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    // Graceful, within bounds: once asked to stop, connections get SHUTDOWN_GRACE to finish
    // (live streams end at once); a client that does not read its last bytes is not waited
    // for beyond that.
    let (asked, stop_asked) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, router(state)).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = asked.send(());
    });
    let server = std::future::IntoFuture::into_future(server);
    tokio::pin!(server);
    tokio::select! {
        done = &mut server => done,
        _ = async {
            if stop_asked.await.is_ok() {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::warn!(
                "connections still open {}s after the stop was asked; closing them",
                SHUTDOWN_GRACE.as_secs()
            );
            Ok(())
        }
    }
}

/// How long a stopping server waits for its open connections.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// The router with every route.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/commands", post(commands::commands))
        .route("/v1/projections", get(projections::projections_list))
        .route("/v1/projections/{name}", get(projections::projection))
        .route("/v1/projections/{name}/live", get(projections::projection_live))
        .route("/v1/projections/{name}/rebuild", post(projections::rebuild))
        .route("/v1/findings", get(findings::list))
        .route("/v1/streams/{id}", get(events::stream))
        .route("/v1/events", get(events::events))
        .route("/v1/events/live", get(events::events_live))
        .route("/v1/audit/digest", get(audit::digest))
        .route("/v1/audit/checkpoint", get(audit::checkpoint))
        .route("/v1/audit/access-log", get(audit::access_log))
        .route("/v1/audit/changes", get(audit::changes))
        .route("/v1/audit/proofs/inclusion", get(proofs::inclusion))
        .route("/v1/audit/proofs/consistency", get(proofs::consistency))
        .route("/v1/persons/erase", post(persons::erase_person))
        .route("/v1/persons/record", post(persons::person))
        .route("/v1/persons/proof", post(persons::person_proof))
        .route("/v1/whoami", get(health::whoami))
        .route("/v1/openapi.json", get(|| async { Json(openapi::document()) }))
        .route("/metrics", get(health::metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(health::readyz))
        .merge(dashboard::routes())
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route; the API lives under /v1 (see /v1/openapi.json), the dashboard at /dashboard/",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method; see /v1/openapi.json",
            )
        })
        .route_layer(axum::middleware::from_fn(strict::strict_query))
        .layer(axum::middleware::from_fn(access::no_store))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::count,
        ))
        .layer(access::trace_layer())
        .with_state(state)
}

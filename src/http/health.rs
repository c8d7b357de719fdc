//! `GET /v1/whoami`, `/metrics`, `/readyz` (and `/healthz` in the router).

use super::blocking;
use super::caller::Caller;
use super::error::ApiError;
use super::state::AppState;
use crate::access::Role;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// `GET /v1/whoami`: the token's role and scope (the dashboard adapts to it).
pub(super) async fn whoami(caller: Caller) -> Json<serde_json::Value> {
    Json(match &caller {
        Caller::Open => serde_json::json!({"role": "api", "auth": false,
            "directorates": [], "partner_centres": [], "suppressed": false}),
        Caller::Token(p) => serde_json::json!({
            "token_id": p.token_id, "role": p.role.as_str(), "auth": true,
            "directorates": &*p.directorates, "partner_centres": &*p.partner_centres,
            "suppressed": caller.suppresses_small_counts(),
        }),
    })
}

/// `GET /readyz`: 200 when the store answers and every background part the server runs (the
/// projection follower, the relay with `--nats`, the digest publisher) is running; else 503
/// with the reasons. It reads what the parts said of themselves: it runs no catch-up.
pub(super) async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    let reader = state.reader();
    let head = match blocking(move || Ok(reader.head()?.position)).await {
        Ok(head) => head,
        Err(e) => return Ok((
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"ready": false, "reasons": [format!("store: {}", e.message)]})),
        )
            .into_response()),
    };
    let reasons = state.health.not_ready();
    let ready = reasons.is_empty();
    let body = serde_json::json!({"ready": ready, "position": head, "reasons": reasons});
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, Json(body)).into_response())
}

/// `GET /metrics`: Prometheus text (auditors and admins, or anyone without tokens).
pub(super) async fn metrics(
    State(state): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Auditor, Role::Admin], "read the metrics")?;
    let reader = state.reader();
    let (head, projections) = blocking(move || {
        let status = reader.projections()?;
        let head = status
            .first()
            .map(|s| s.head)
            .map_or_else(|| reader.head().map(|h| h.position), Ok)?;
        Ok((
            head,
            status
                .into_iter()
                .map(|s| (s.name, s.checkpoint))
                .collect::<Vec<_>>(),
        ))
    })
    .await?;
    let text = state.metrics.render(&super::metrics::Snapshot {
        head,
        projections,
        relay: state.relay.as_ref().map(|p| p.get()),
        parts: state.health.parts(),
    });
    // A scraper that asks for OpenMetrics gets it; any other the Prometheus text format.
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    Ok(if openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            super::metrics::to_prometheus_text(&text),
        )
            .into_response()
    })
}

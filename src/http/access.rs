//! What each request leaves behind: one access log line through `tower-http`'s trace layer
//! (method, matched route, status, latency, the caller's token id — never the token — or why
//! its token was refused) and its count and latency in `/metrics`.
//!
//! The route is the matched pattern (`/v1/streams/{id}`), never the path as sent, so neither
//! the log nor the metrics carry a person's ref or grow with every distinct URL; a path no route
//! takes is `unmatched`.

use super::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tower_http::LatencyUnit;

/// The matched route of a request, or `unmatched`.
fn route_of(req: &Request) -> &str {
    req.extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
}

/// The request's span: the access log line's fields; `token` and `refused` are filled in when
/// the caller is known (see `Caller`), and the command spans below it add the command id.
fn request_span(req: &Request) -> tracing::Span {
    tracing::info_span!(
        "request",
        method = %req.method(),
        route = route_of(req),
        token = tracing::field::Empty,
        refused = tracing::field::Empty,
    )
}

/// The trace layer that writes the access log.
pub(super) type AccessLog = TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    fn(&Request) -> tracing::Span,
    (),
    DefaultOnResponse,
>;

/// The access log: one INFO line per answered request (`finished processing request`, with
/// its status and latency in microseconds) inside the request's span; a 5xx is also an ERROR.
pub(super) fn trace_layer() -> AccessLog {
    TraceLayer::new_for_http()
        .make_span_with(request_span as fn(&Request) -> tracing::Span)
        .on_request(())
        .on_response(
            DefaultOnResponse::new()
                .level(tracing::Level::INFO)
                .latency_unit(LatencyUnit::Micros),
        )
}

/// `Cache-Control: no-store` on every answer that says nothing of its own caching (all but the
/// dashboard's files): the API's answers carry person data, counts small enough to single a
/// person out, or tokens' scopes, none of which a browser or proxy cache may keep.
pub(super) async fn no_store(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    response
        .headers_mut()
        .entry(axum::http::header::CACHE_CONTROL)
        .or_insert(axum::http::HeaderValue::from_static("no-store"));
    response
}

/// Counts the request in `/metrics`, by method, matched route and status class.
pub(super) async fn count(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    // A method no route takes is `other`: the label's values stay few whatever a client sends.
    let method = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        _ => "other",
    };
    let route = route_of(&req).to_string();
    let response = next.run(req).await;
    state.metrics.request(
        method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

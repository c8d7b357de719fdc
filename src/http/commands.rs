//! `POST /v1/commands`.

use super::caller::{forbidden, Caller};
use super::error::ApiError;
use super::metrics::Metrics;
use super::state::AppState;
use super::{blocking, BODY_LIMIT, MAX_COMMANDS};
use crate::access::Role;
use crate::app::{invalid_outcome, line_outcome, CommandScope, Ledger, LineOutcome};
use crate::domain::CommandEnvelope;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// `POST /v1/commands`: one command object, or an array of them, with the `submit` contract;
/// the answer is one outcome object, or an array in the same order. Rejections are outcomes
/// (HTTP 200); `line` is the command's 1-based place in the request. With tokens, every
/// command of the request is checked against the token before any runs: one that the token
/// may not send refuses the whole request (403, naming it), and nothing is recorded.
pub(super) async fn commands(
    State(state): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    if let Caller::Token(p) = &caller {
        if matches!(p.role, Role::Supervisor | Role::Auditor) {
            return Err(forbidden(format!(
                "{} reads; it never sends commands",
                caller.describe()
            )));
        }
    }
    let (items, single) = read_commands(&headers, body)?;
    let (ledger, metrics) = (state.ledger.clone(), state.metrics.clone());
    // On a store that queues appends (SQLite), the request waits for its group commit
    // without holding a thread; its reads are short reads of the local file. Elsewhere (the
    // NATS log blocks on its own runtime) the commands run on a blocking thread.
    let outcomes = if ledger.store().appends_async() {
        run_commands(&ledger, &metrics, &caller, items).await?
    } else {
        blocking(move || {
            use futures_util::FutureExt as _;
            run_commands(&ledger, &metrics, &caller, items)
                .now_or_never()
                .expect("with a store that does not queue appends, every await is ready")
        })
        .await?
    };
    // A request whose every command is invalid (not a command of the contract) did nothing:
    // 422, with the same outcomes saying what was wrong with each. Any other mix is 200.
    let status = if !outcomes.is_empty() && outcomes.iter().all(|o| o.outcome == "invalid") {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(if single {
        (status, Json(&outcomes[0])).into_response()
    } else {
        (status, Json(&outcomes)).into_response()
    })
}

/// The commands of a request body (a JSON object or an array of them), and whether it was a
/// single object. JSON only: a browser cannot send that across origins without asking first
/// (CORS), so a web page cannot slip a command in.
fn read_commands(
    headers: &axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Vec<serde_json::Value>, bool), ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.trim_start().to_ascii_lowercase();
            v.starts_with("application/json")
                || (v.starts_with("application/") && v.contains("+json"))
        });
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not_json_content_type",
            "send the commands with the header Content-Type: application/json",
        ));
    }
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
            StatusCode::BAD_REQUEST,
            "too_many_commands",
            format!(
                "{} commands in one request; send at most {MAX_COMMANDS}",
                items.len()
            ),
        ));
    }
    Ok((items, single))
}

/// Authorises every command of the request before running any, then runs them in order.
async fn run_commands(
    ledger: &Ledger,
    metrics: &Metrics,
    caller: &Caller,
    items: Vec<serde_json::Value>,
) -> Result<Vec<LineOutcome>, ApiError> {
    let parsed: Vec<_> = items.into_iter().map(CommandEnvelope::from_value).collect();
    // Authorise every command before running any.
    let mut scopes = Vec::with_capacity(parsed.len());
    for (i, p) in parsed.iter().enumerate() {
        let Ok(envelope) = p else {
            scopes.push(CommandScope::default());
            continue;
        };
        let scope = ledger.command_scope(&envelope.command)?;
        if let Err(why) = caller.may_send(&envelope.command, &scope, true) {
            metrics.outcome("forbidden");
            return Err(forbidden(format!(
                "command {} ({}, {}): {why}; nothing in this request was recorded",
                i + 1,
                envelope.command.type_name(),
                envelope.command_id
            )));
        }
        scopes.push(scope);
    }
    let mut out = Vec::with_capacity(parsed.len());
    for (i, (p, scope)) in parsed.into_iter().zip(scopes).enumerate() {
        let envelope = match p {
            Err(invalid) => {
                metrics.outcome("invalid");
                out.push(invalid_outcome(i + 1, invalid));
                continue;
            }
            Ok(e) => e,
        };
        // A target that was unknown at the check may exist now: check it again.
        let scope = if scope.looked_up && !scope.found {
            let now = ledger.command_scope(&envelope.command)?;
            if let Err(why) = caller.may_send(&envelope.command, &now, false) {
                metrics.outcome("forbidden");
                return Err(forbidden(format!(
                    "command {} ({}): {why}; the first {i} commands of the request were handled (send them again: they come back as duplicates)",
                    i + 1,
                    envelope.command.type_name()
                )));
            }
            now
        } else {
            scope
        };
        let started = std::time::Instant::now();
        let handled = ledger
            .handle_async(&envelope, &caller.actor(&scope))
            .await
            .map(|o| line_outcome(i + 1, &envelope, o));
        match handled {
            Ok(o) => {
                if o.outcome == "accepted" {
                    metrics.append_latency(started.elapsed());
                }
                metrics.outcome(o.outcome);
                out.push(o)
            }
            Err(e) => {
                metrics.outcome("error");
                let mut api: ApiError = e.into();
                if i > 0 {
                    api.message = format!(
                        "{} (the first {i} commands of the request were handled; send the request again: they come back as duplicates)",
                        api.message
                    );
                }
                return Err(api);
            }
        }
    }
    Ok(out)
}

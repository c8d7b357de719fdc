//! The HTTP API (axum): commands in; projections, streams, events, the digest and metrics
//! out; the dashboard; tokens and roles.
//!
//! Errors are one JSON shape, `{"error": {"code": "...", "message": "..."}}`, with the
//! status saying who must act: 400 a request to fix, 401 no valid token, 403 a token whose role
//! or directorates do not allow this, 404 nothing of that name, 409 a concurrency conflict that
//! survived the retries, 413 a body over 1 MiB, 503 the store cannot be reached now (retry),
//! 500 anything else (the details go to the log, not the body).
//!
//! Without a token file (`serve` without `--auth`) every request acts with full rights as
//! role `api`, and `serve` refuses any address that is not loopback. With one, each request
//! needs `Authorization: Bearer TOKEN`; what each role may do is in [`Caller`] and in the
//! README's role × endpoint table.

pub mod dashboard;
mod findings;
pub mod metrics;
pub mod openapi;
mod strict;

pub use crate::access::{Auth, Principal, Role};
pub use crate::audit::{AccessEntry, AccessLog};
pub use metrics::Metrics;

use crate::app::{handle_envelope, invalid_outcome, AppError, CommandScope, Ledger, LineOutcome};
use crate::domain::{Command, CommandEnvelope};
use crate::projection::{Engine, ProjectionError, Report};
use crate::store::{Actor, EventStore, RecordedEvent, StoreError};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::sync::Arc;

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 1 << 20;
/// The most commands in one request.
pub const MAX_COMMANDS: usize = 1000;
/// The most events one `GET /v1/events` returns.
pub const MAX_EVENTS: usize = 1000;
/// The most events one filtered `GET /v1/events` scans for a supervisor.
const MAX_SCAN: usize = 100_000;

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
    /// The tokens; `None`: no authentication (loopback only).
    pub auth: Option<Arc<Auth>>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The relay's progress, when `serve` runs one.
    pub relay: Option<crate::bus::Progress>,
    /// The ledger's signing key: `/v1/audit/digest` is signed with it.
    pub signing: Option<Arc<crate::audit::LedgerKey>>,
    /// The log of person-level reads. Without it (and without the ledger's key store) reads
    /// show person refs only as stored (sealed).
    pub access_log: Option<Arc<AccessLog>>,
}

impl AppState {
    /// State for a server without tokens that is never asked to stop (tests, embedding).
    pub fn new(ledger: Arc<Ledger>, engine: Arc<Engine>) -> AppState {
        // The sender is dropped at once: the receiver keeps reading `false`.
        let (_never, stopping) = tokio::sync::watch::channel(false);
        AppState {
            ledger,
            engine,
            stopping,
            auth: None,
            metrics: Arc::new(Metrics::default()),
            relay: None,
            signing: None,
            access_log: None,
        }
    }

    /// Reveals person refs to the roles that read events, recording each such read here.
    pub fn with_access_log(mut self, log: AccessLog) -> AppState {
        self.access_log = Some(Arc::new(log));
        self
    }

    /// Signs `/v1/audit/digest` with the ledger's key.
    pub fn with_signing_key(mut self, key: crate::audit::LedgerKey) -> AppState {
        self.signing = Some(Arc::new(key));
        self
    }

    /// Requires a token on every API request.
    pub fn with_auth(mut self, auth: Auth) -> AppState {
        self.auth = Some(Arc::new(auth));
        self
    }

    /// Live streams end when `stopping` turns `true`.
    pub fn with_stopping(mut self, stopping: tokio::sync::watch::Receiver<bool>) -> AppState {
        self.stopping = stopping;
        self
    }

    /// Reports the relay's lag in `/metrics`.
    pub fn with_relay(mut self, progress: crate::bus::Progress) -> AppState {
        self.relay = Some(progress);
        self
    }

    fn store(&self) -> Arc<dyn EventStore> {
        self.ledger.store().clone()
    }
}

/// Who is calling: no authentication configured, or a checked token.
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    /// The server runs without tokens (loopback only): full rights.
    Open,
    /// A valid token.
    Token(Principal),
}

/// What a caller may read.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadScope {
    /// Everything.
    All,
    /// The data of these directorates only.
    Directorates(BTreeSet<String>),
}

impl ReadScope {
    fn allows(&self, directorate: Option<&str>) -> bool {
        match self {
            ReadScope::All => true,
            ReadScope::Directorates(d) => directorate.is_some_and(|x| d.contains(x)),
        }
    }
}

fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

impl Caller {
    fn role(&self) -> Option<Role> {
        match self {
            Caller::Open => None,
            Caller::Token(p) => Some(p.role),
        }
    }

    fn describe(&self) -> String {
        match self {
            Caller::Open => "this caller".into(),
            Caller::Token(p) => format!("token {:?} (role {})", p.token_id, p.role.as_str()),
        }
    }

    /// Reads: auditors everything; supervisors their directorates; other roles nothing.
    pub fn read_scope(&self) -> Result<ReadScope, ApiError> {
        match self {
            Caller::Open => Ok(ReadScope::All),
            Caller::Token(p) => match p.role {
                Role::Auditor => Ok(ReadScope::All),
                Role::Supervisor => Ok(ReadScope::Directorates(p.directorates.clone())),
                r => Err(forbidden(format!(
                    "{} cannot read the ledger's data: reads need a supervisor or auditor token (the {} role sends {})",
                    self.describe(),
                    r.as_str(),
                    match r {
                        Role::Agent => "commands for its directorates",
                        Role::Partner => "ticket redemptions",
                        _ => "site authorisations and projection rebuilds",
                    }
                ))),
            },
        }
    }

    /// Whether counts under 5 for a single site are shown as `<5`: for everyone but auditors.
    pub fn suppresses_small_counts(&self) -> bool {
        !matches!(self.role(), None | Some(Role::Auditor))
    }

    /// Requires one of `roles` (any caller passes when there are no tokens).
    pub fn require(&self, roles: &[Role], what: &str) -> Result<(), ApiError> {
        match self.role() {
            None => Ok(()),
            Some(r) if roles.contains(&r) => Ok(()),
            Some(_) => Err(forbidden(format!(
                "{} may not {what}; that needs a token of role {}",
                self.describe(),
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ))),
        }
    }

    /// May this caller send `command`, whose scope is `scope`? The reason when not.
    ///
    /// A command that acts on a ticket, session or entry takes its scope from it. When that
    /// target is not (yet) in the log, `deferred` lets it through (an earlier command of the
    /// same request may create it; the check runs again just before the command does), and
    /// the final check refuses it: a scoped token learns nothing about what exists outside its
    /// scope, since "not yours" and "not there" get the same answer.
    pub fn may_send(
        &self,
        command: &Command,
        scope: &CommandScope,
        deferred: bool,
    ) -> Result<(), String> {
        let Caller::Token(p) = self else {
            return Ok(());
        };
        let kind = command.type_name();
        let role = p.role.as_str();
        let target = match command {
            Command::RedeemTicket(_) | Command::ExpireTicket(_) => "ticket",
            Command::CloseSession(_) => "session",
            _ => "entry",
        };
        let list = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join(", ");
        // Scoped roles: does the command fall within `set` (by `value`)? "Not yours" and "not
        // there" are one answer.
        let within =
            |set: &BTreeSet<String>, value: &Option<String>, what: &str| -> Result<(), String> {
                let not_found = || {
                    Err(format!(
                        "no {target} of the {what} of token {:?} ({}) has this id; check the id",
                        p.token_id,
                        list(set)
                    ))
                };
                if scope.looked_up && !scope.found {
                    return if deferred { Ok(()) } else { not_found() };
                }
                match value {
                    None => Ok(()), // concerns no directorate: an external dose, or its reversal
                    Some(v) if set.contains(v) => Ok(()),
                    Some(_) if scope.looked_up => not_found(),
                    Some(v) => Err(format!(
                        "this {kind} is for {what} {v:?}; token {:?} acts for {}",
                        p.token_id,
                        list(set)
                    )),
                }
            };
        match (p.role, command) {
            (Role::Admin, Command::AuthoriseSite(_)) => Ok(()),
            (Role::Admin, _) => Err(format!(
                "an admin token authorises sites and rebuilds projections; {kind} is sent by an agent"
            )),
            (Role::Agent, Command::AuthoriseSite(_)) => {
                Err("sites are authorised by an admin token, not an agent's".into())
            }
            (Role::Agent, _) => within(&p.directorates, &scope.directorate, "directorates"),
            (Role::Partner, Command::RedeemTicket(_)) => {
                within(&p.partner_centres, &scope.partner_centre, "partner centres")
            }
            (Role::Partner, _) => Err(format!(
                "a partner token only reports ticket redemptions (RedeemTicket), not {kind}"
            )),
            (Role::Supervisor | Role::Auditor, _) => {
                Err(format!("the {role} role reads; it never sends commands"))
            }
        }
    }

    /// The actor recorded in the envelope of what this caller's command appends.
    pub fn actor(&self, scope: &CommandScope) -> Actor {
        match self {
            Caller::Open => Actor {
                role: "api".into(),
                ..Default::default()
            },
            Caller::Token(p) => Actor {
                role: p.role.as_str().into(),
                directorate: scope
                    .directorate
                    .clone()
                    .filter(|d| p.directorates.contains(d)),
                agent_ref: Some(p.token_id.clone()),
            },
        }
    }
}

/// Whether a Host header names this machine (no Host at all: a test or a raw client).
fn host_is_loopback(host: &str) -> bool {
    if host.is_empty() {
        return true;
    }
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        state.metrics.request();
        let Some(auth) = &state.auth else {
            // Without tokens, only this machine may call: a request naming another host (a web
            // page's DNS-rebinding trick) is refused.
            let host = parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            if !host_is_loopback(host) {
                return Err(forbidden(format!(
                    "this server runs without tokens and answers only requests addressed to this machine (Host: 127.0.0.1, localhost or [::1]), not {host:?}; give it a token file (serve --auth) to serve other hosts"
                )));
            }
            return Ok(Caller::Open);
        };
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or(""));
        auth.check(header, Utc::now())
            .map(Caller::Token)
            .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, e.code(), e.to_string()))
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
        let mut r = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"campaign-ledger\""),
            );
        }
        r
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
            ProjectionError::Unknown(name) => ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_projection",
                format!("there is no projection named {name:?}; GET /v1/projections lists them"),
            ),
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

/// The router with every route.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/commands", post(commands))
        .route("/v1/projections", get(projections_list))
        .route("/v1/projections/{name}", get(projection))
        .route("/v1/projections/{name}/live", get(projection_live))
        .route("/v1/projections/{name}/rebuild", post(rebuild))
        .route("/v1/findings", get(findings::list))
        .route("/v1/streams/{id}", get(stream))
        .route("/v1/events", get(events))
        .route("/v1/events/live", get(events_live))
        .route("/v1/audit/digest", get(digest))
        .route("/v1/audit/access-log", get(access_log))
        .route("/v1/persons/erase", post(erase_person))
        .route("/v1/whoami", get(whoami))
        .route("/v1/openapi.json", get(|| async { Json(openapi::document()) }))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
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
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// `POST /v1/commands`: one command object, or an array of them, with the `submit` contract;
/// the answer is one outcome object, or an array in the same order. Rejections are outcomes
/// (HTTP 200); `line` is the command's 1-based place in the request. With tokens, every
/// command of the request is checked against the token before any runs: one that the token
/// may not send refuses the whole request (403, naming it), and nothing is recorded.
async fn commands(
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
    // JSON only: a browser cannot send that across origins without asking first (CORS), so a
    // web page cannot slip a command in.
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
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_commands",
            format!(
                "{} commands in one request; send at most {MAX_COMMANDS}",
                items.len()
            ),
        ));
    }
    let ledger = state.ledger.clone();
    let metrics = state.metrics.clone();
    let outcomes: Vec<LineOutcome> = blocking(move || {
        let parsed: Vec<_> = items
            .into_iter()
            .map(CommandEnvelope::from_value)
            .collect();
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
            match handle_envelope(&ledger, i + 1, &envelope, &caller.actor(&scope)) {
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

fn parse_known_at(s: Option<&str>) -> Result<Option<DateTime<FixedOffset>>, ApiError> {
    s.filter(|s| !s.is_empty())
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

fn parse_as_of(s: Option<&str>) -> Result<Option<NaiveDate>, ApiError> {
    s.filter(|s| !s.is_empty())
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

/// The report as its reader may see it: a supervisor's rows are its directorates' (totals
/// summed again over them), and a projection without a directorate column is national, so
/// refused to supervisors; counts from 1 to 4 of a single site are `"<5"` for all but
/// auditors (and servers without tokens).
fn shape_report(report: &Report, caller: &Caller) -> Result<serde_json::Value, ApiError> {
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
async fn projections_list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.read_scope()?;
    let (engine, store) = (state.engine.clone(), state.store());
    let status = blocking(move || Ok(engine.status(store.as_ref())?)).await?;
    Ok(Json(status).into_response())
}

/// `GET /v1/projections/{name}?as_of=YYYY-MM-DD&known_at=RFC3339`: the report JSON.
/// A query string that does not parse: 400 `bad_query`, with `hint` on what to write.
fn query_with<T>(
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

fn query<T>(q: Result<Query<T>, axum::extract::rejection::QueryRejection>) -> Result<T, ApiError> {
    query_with(q, "see /v1/openapi.json for this route's parameters")
}

async fn projection(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    q: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    caller.read_scope()?;
    let q = query(q)?;
    let as_of = parse_as_of(q.as_of.as_deref())?;
    let known_at = parse_known_at(q.known_at.as_deref())?;
    if known_at.is_some() {
        caller.require(
            &[Role::Auditor],
            "read the ledger as known at a past time (known_at)",
        )?;
    }
    let (engine, store) = (state.engine.clone(), state.store());
    let report =
        blocking(move || Ok(engine.report(store.as_ref(), &name, as_of, known_at)?)).await?;
    Ok(Json(shape_report(&report, &caller)?).into_response())
}

/// `POST /v1/projections/{name}/rebuild`: replays the log into a new state beside the live
/// one and swaps it in (readers never see partial counts); says whether it equals the live one.
async fn rebuild(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin], "rebuild projections")?;
    let (engine, store) = (state.engine.clone(), state.store());
    let rebuilt = blocking(move || Ok(engine.rebuild(store.as_ref(), &name)?)).await?;
    Ok(Json(rebuilt).into_response())
}

/// An event as the API shows it: the envelope exactly as stored (`data` holds person refs
/// sealed; the hash covers these bytes) and, for an event naming a person, what the reader
/// may see of them.
#[derive(serde::Serialize)]
struct ShownEvent {
    #[serde(flatten)]
    event: RecordedEvent,
    #[serde(skip_serializing_if = "Option::is_none")]
    person: Option<crate::app::PersonView>,
}

/// Adds what may be seen of each event's person, and records the read in the access log
/// (durably, before the answer leaves). Without an access log or a key store, events are
/// shown as stored.
fn reveal_all(
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
        let (id, role) = match caller {
            Caller::Open => ("-".to_string(), "open".to_string()),
            Caller::Token(p) => (p.token_id.clone(), p.role.as_str().to_string()),
        };
        log.record(&id, &role, route, &persons, named, revealed)?;
    }
    Ok(shown)
}

fn event_directorate(e: &RecordedEvent) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(&e.data)
        .ok()?
        .get("directorate")?
        .as_str()
        .map(str::to_string)
}

/// `GET /v1/streams/{id}`: every event of one stream, in version order (for a supervisor,
/// those of its directorates).
async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    uri: axum::http::Uri,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let scope = caller.read_scope()?;
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
struct EventsQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

fn events_query(
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<EventsQuery, ApiError> {
    query_with(
        q,
        "after and limit are whole numbers, for example ?after=0&limit=100",
    )
}

/// A position given by a client: at most the largest a log can hold.
fn check_after(after: Option<u64>) -> Result<u64, ApiError> {
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

/// `GET /v1/events?after=POS&limit=N`: events after a position, in order (at most 1,000).
/// For a supervisor, only the events naming one of its directorates; the header
/// `Ledger-Next-After` always says where to continue (the last position looked at).
async fn events(
    State(state): State<AppState>,
    caller: Caller,
    uri: axum::http::Uri,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let scope = caller.read_scope()?;
    let q = events_query(q)?;
    if q.limit == Some(0) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("limit must be from 1 to {MAX_EVENTS}"),
        ));
    }
    let (after, limit) = (
        check_after(q.after)?,
        q.limit.unwrap_or(100).clamp(1, MAX_EVENTS),
    );
    let store = state.store();
    let (events, next) = blocking(move || {
        let mut out = Vec::new();
        let mut at = after;
        let mut scanned = 0;
        loop {
            let page = store.read_all(at, limit)?;
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

#[derive(Deserialize)]
struct AccessQuery {
    after: Option<u64>,
    limit: Option<usize>,
    person: Option<String>,
}

/// `GET /v1/audit/access-log?after=ID&limit=N&person=PERSON_ID`: the person-level reads, oldest
/// first (at most 1,000 per page), optionally those of one person (by pseudonym).
async fn access_log(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<AccessQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Auditor], "read the access log")?;
    let q = query_with(
        q,
        "after and limit are whole numbers and person a person_id, for example ?after=0&limit=100",
    )?;
    let Some(log) = state.access_log.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_access_log",
            "this server keeps no access log (it reveals no person-level data)",
        ));
    };
    let (after, limit) = (
        check_after(q.after)?,
        q.limit.unwrap_or(100).clamp(1, MAX_EVENTS),
    );
    let entries = blocking(move || Ok(log.entries(after, limit, q.person.as_deref())?)).await?;
    Ok(Json(entries).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EraseBody {
    person_ref: String,
}

/// `POST /v1/persons/erase` `{"person_ref": "…"}`: crypto-shredding (admins only): records
/// `PersonErased` and destroys the person's key.
async fn erase_person(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<EraseBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin], "erase a person")?;
    let Json(body) = body.map_err(|e| {
        let (status, code) = match e {
            axum::extract::rejection::JsonRejection::MissingJsonContentType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "not_json_content_type")
            }
            _ => (StatusCode::BAD_REQUEST, "bad_body"),
        };
        ApiError::new(
            status,
            code,
            format!("send {{\"person_ref\": \"…\"}} with Content-Type: application/json ({e})"),
        )
    })?;
    let actor = match &caller {
        Caller::Open => Actor {
            role: "admin".into(),
            directorate: None,
            agent_ref: Some("http".into()),
        },
        Caller::Token(p) => Actor {
            role: p.role.as_str().into(),
            directorate: None,
            agent_ref: Some(p.token_id.clone()),
        },
    };
    let ledger = state.ledger.clone();
    let done = blocking(move || Ok(ledger.erase_person(&body.person_ref, &actor)?)).await?;
    match done {
        Some(e) => Ok(Json(e).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_person",
            "the key store holds no key for this person_ref: never recorded, or erased already",
        )),
    }
}

/// `GET /v1/audit/digest`: the head of the log (position, hash, time), signed with the
/// ledger's key when the server has one (`audit verify --digest` checks it).
async fn digest(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(&[Role::Auditor], "read the audit digest")?;
    let store = state.store();
    let d = blocking(move || Ok(crate::audit::digest(store.as_ref())?)).await?;
    Ok(Json(match &state.signing {
        Some(k) => k.sign(d),
        None => crate::audit::SignedDigest::unsigned(d),
    })
    .into_response())
}

/// `GET /v1/whoami`: the token's role and scope (the dashboard adapts to it).
async fn whoami(caller: Caller) -> Json<serde_json::Value> {
    Json(match &caller {
        Caller::Open => serde_json::json!({"role": "api", "auth": false,
            "directorates": [], "partner_centres": [], "suppressed": false}),
        Caller::Token(p) => serde_json::json!({
            "token_id": p.token_id, "role": p.role.as_str(), "auth": true,
            "directorates": p.directorates, "partner_centres": p.partner_centres,
            "suppressed": caller.suppresses_small_counts(),
        }),
    })
}

/// `GET /metrics`: Prometheus text (auditors and admins, or anyone without tokens).
async fn metrics(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(&[Role::Auditor, Role::Admin], "read the metrics")?;
    let (engine, store) = (state.engine.clone(), state.store());
    let (head, projections) = blocking(move || {
        let status = engine.status(store.as_ref())?;
        let head = status
            .first()
            .map(|s| s.head)
            .map_or_else(|| store.head_position(), Ok)?;
        Ok((
            head,
            status
                .into_iter()
                .map(|s| (s.name, s.checkpoint))
                .collect::<Vec<_>>(),
        ))
    })
    .await?;
    let text = state
        .metrics
        .render(head, &projections, state.relay.as_ref().map(|p| p.get()));
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
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
/// no duplicate: it is the store's catch-up-then-live subscription (for a supervisor, the
/// events of its directorates).
async fn events_live(
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
    let after = check_after(resume.or(q.after))?;
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
                    if !scope.allows(event_directorate(&e).as_deref()) {
                        continue;
                    }
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
    known_at: Option<String>,
}

/// `GET /v1/projections/{name}/live[?as_of=DATE]`: a snapshot (the report JSON, SSE `event`
/// `snapshot`, `id` the log position) at once and after every change, coalesced: a burst of
/// commits gives one snapshot of where it ended (at most ten a second). Shaped for the
/// caller as `GET /v1/projections/{name}` is.
async fn projection_live(
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
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let (engine, store) = (state.engine.clone(), state.store());
    // Refused at once (not as an SSE error) when the caller may not see this projection.
    let first = {
        let (engine, store, name) = (engine.clone(), store.clone(), name.clone());
        blocking(move || Ok(engine.report(store.as_ref(), &name, as_of, None)?)).await?
    };
    shape_report(&first, &caller)?;
    let stopping = state.stopping.clone();
    tokio::task::spawn_blocking(move || {
        let mut shown = None;
        let mut next = Some(Ok(first));
        loop {
            if *stopping.borrow() {
                return;
            }
            let report = next
                .take()
                .unwrap_or_else(|| engine.report(store.as_ref(), &name, as_of, None));
            match report {
                Ok(r) if shown != Some(r.position) => {
                    shown = Some(r.position);
                    let Ok(v) = shape_report(&r, &caller) else {
                        return;
                    };
                    let Ok(event) = axum::response::sse::Event::default()
                        .id(r.position.to_string())
                        .event("snapshot")
                        .json_data(&v)
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

//! Who is calling: the token check as an axum extractor, the read scope, and what each role
//! may send (the roles themselves are `access`'s, transport-free).

use super::error::ApiError;
use super::state::AppState;
use crate::access::{Principal, Role};
use crate::app::CommandScope;
use crate::domain::Command;
use crate::envelope::Actor;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use chrono::Utc;
use std::collections::BTreeSet;

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
    pub(super) fn allows(&self, directorate: Option<&str>) -> bool {
        match self {
            ReadScope::All => true,
            ReadScope::Directorates(d) => directorate.is_some_and(|x| d.contains(x)),
        }
    }
}

pub(super) fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

impl Caller {
    /// A disclosure by this caller, as the access log records it (token id and role; `-` and
    /// `open` without tokens).
    pub(super) fn disclosure(&self, route: &str, disclosed: &str) -> crate::audit::Disclosure {
        let (caller, role) = match self {
            Caller::Open => ("-".to_string(), "open".to_string()),
            Caller::Token(p) => (p.token_id.clone(), p.role.as_str().to_string()),
        };
        crate::audit::Disclosure {
            caller,
            role,
            route: route.to_string(),
            disclosed: disclosed.to_string(),
            ..Default::default()
        }
    }

    pub(super) fn role(&self) -> Option<Role> {
        match self {
            Caller::Open => None,
            Caller::Token(p) => Some(p.role),
        }
    }

    pub(super) fn describe(&self) -> String {
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
                Role::Supervisor => Ok(ReadScope::Directorates((*p.directorates).clone())),
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
pub(super) fn host_is_loopback(host: &str) -> bool {
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
        // The request's span (the access log line) names the token by id, never the token.
        let span = tracing::Span::current();
        match auth.current().check(header, Utc::now()) {
            Ok(p) => {
                span.record("token", p.token_id.as_str());
                Ok(Caller::Token(p))
            }
            Err(e) => {
                state.metrics.refused(e.code());
                span.record("refused", e.code());
                tracing::warn!(reason = e.code(), "authentication refused: {e}");
                Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    e.code(),
                    e.to_string(),
                ))
            }
        }
    }
}

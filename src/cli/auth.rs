//! `auth token | list | revoke | rotate`: a token file and its tokens' lifecycle.

use super::args::*;
use anyhow::{anyhow, Result};
use campaign_ledger::access::{self, Role, TokenEntry, TokenFile};
use campaign_ledger::domain::Reference;
use chrono::{DateTime, Utc};
use std::process::ExitCode;

/// Runs `auth`.
pub(super) fn run(cli: &Cli) -> Result<ExitCode> {
    let Cmd::Auth { action } = &cli.command else {
        unreachable!("dispatched on its own subcommand")
    };
    let reference = Reference::builtin();
    match action {
        AuthCmd::Token {
            file,
            id,
            role,
            directorates,
            partner_centres,
            expires_at,
        } => {
            let expires_at = expires_at
            .as_deref()
            .map(|s| {
                DateTime::parse_from_rfc3339(s).map_err(|_| {
                    anyhow!("--expires-at {s:?} is not a time with an offset; write it as 2022-06-30T00:00:00+02:00")
                })
            })
            .transpose()?;
            let entry = TokenEntry {
                id: id.clone(),
                role: Role::from(*role),
                directorates: directorates.clone(),
                partner_centres: partner_centres.clone(),
                sha256: String::new(),
                expires_at,
                revoked_at: None,
                previous: vec![],
            };
            let token = access::add_token(file, entry, &reference).map_err(|e| anyhow!("{e}"))?;
            eprintln!(
                "token {id:?} ({}) added to {}; it is shown only now:",
                Role::from(*role).as_str(),
                file.display()
            );
            println!("{token}");
        }
        AuthCmd::List { file, format } => {
            let tokens = TokenFile::read(file)
                .map_err(|e| anyhow!("{e}"))?
                .ok_or_else(|| anyhow!("there is no token file {}", file.display()))?;
            list(&tokens, *format, Utc::now());
        }
        AuthCmd::Revoke { file, id } => {
            let at = access::revoke_token(file, id, Utc::now(), &reference)
                .map_err(|e| anyhow!("{e}"))?;
            eprintln!(
                "token {id:?} revoked at {}; a server following {} refuses it within a second",
                at.to_rfc3339(),
                file.display()
            );
        }
        AuthCmd::Rotate { file, id, overlap } => {
            let token = access::rotate_token(file, id, *overlap, Utc::now(), &reference)
                .map_err(|e| anyhow!("{e}"))?;
            let old = if overlap.is_zero() {
                "the old secret is refused from now on".to_string()
            } else {
                format!(
                    "the old secret still works until {}",
                    (Utc::now() + chrono::Duration::from_std(*overlap)?)
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )
            };
            eprintln!("token {id:?} has a new secret ({old}); it is shown only now:");
            println!("{token}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the tokens (never their secrets or hashes).
fn list(file: &TokenFile, format: SubmitFormat, now: DateTime<Utc>) {
    let scope = |t: &TokenEntry| {
        let s = [t.directorates.as_slice(), t.partner_centres.as_slice()].concat();
        if s.is_empty() {
            "all".to_string()
        } else {
            s.join(",")
        }
    };
    match format {
        SubmitFormat::Json => {
            for t in &file.tokens {
                let overlap: Vec<String> = t
                    .overlapping(now)
                    .map(|p| p.valid_until.to_rfc3339())
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({
                        "id": t.id,
                        "role": t.role.as_str(),
                        "directorates": t.directorates,
                        "partner_centres": t.partner_centres,
                        "status": t.status(now).as_str(),
                        "expires_at": t.expires_at.map(|a| a.to_rfc3339()),
                        "revoked_at": t.revoked_at.map(|a| a.to_rfc3339()),
                        "old_secrets_valid_until": overlap,
                    })
                );
            }
        }
        SubmitFormat::Table => {
            println!(
                "{:<24} {:<10} {:<20} {:<8} {:<26} NOTE",
                "ID", "ROLE", "SCOPE", "STATUS", "EXPIRES"
            );
            for t in &file.tokens {
                let note = match (t.revoked_at, t.overlapping(now).last()) {
                    (Some(at), _) => format!("revoked {}", at.to_rfc3339()),
                    (None, Some(p)) => {
                        format!("old secret accepted until {}", p.valid_until.to_rfc3339())
                    }
                    (None, None) => String::new(),
                };
                println!(
                    "{:<24} {:<10} {:<20} {:<8} {:<26} {note}",
                    t.id,
                    t.role.as_str(),
                    scope(t),
                    t.status(now).as_str(),
                    t.expires_at
                        .map(|a| a.to_rfc3339())
                        .unwrap_or_else(|| "never".into()),
                );
            }
        }
    }
}

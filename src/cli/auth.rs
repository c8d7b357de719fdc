//! `auth token`: add a token to a token file.

use super::args::*;
use anyhow::{anyhow, Result};
use campaign_ledger::domain::Reference;
use chrono::DateTime;
use std::process::ExitCode;

/// Runs `auth`.
pub(super) fn run(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Cmd::Auth {
            action:
                AuthCmd::Token {
                    file,
                    id,
                    role,
                    directorates,
                    partner_centres,
                    expires_at,
                },
        } => {
            let expires_at = expires_at
            .as_deref()
            .map(|s| {
                DateTime::parse_from_rfc3339(s).map_err(|_| {
                    anyhow!("--expires-at {s:?} is not a time with an offset; write it as 2022-06-30T00:00:00+02:00")
                })
            })
            .transpose()?;
            let entry = campaign_ledger::access::TokenEntry {
                id: id.clone(),
                role: campaign_ledger::access::Role::from(*role),
                directorates: directorates.clone(),
                partner_centres: partner_centres.clone(),
                sha256: String::new(),
                expires_at,
            };
            let token = campaign_ledger::access::add_token(file, entry, &Reference::builtin())
                .map_err(|e| anyhow!("{e}"))?;
            eprintln!(
                "token {id:?} ({}) added to {}; it is shown only now:",
                campaign_ledger::access::Role::from(*role).as_str(),
                file.display()
            );
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        _ => unreachable!("dispatched on its own subcommand"),
    }
}

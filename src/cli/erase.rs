//! `erase-person`: crypto-shredding of one person.

use super::args::*;
use anyhow::{anyhow, bail, Result};
use campaign_ledger::store::Actor;
use std::process::ExitCode;

/// Runs `erase-person`.
pub(super) fn run(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Cmd::ErasePerson { person_ref } => {
            campaign_ledger::domain::check_person_ref(person_ref)
                .map_err(|e| anyhow!("{e} Give the ref exactly as the commands gave it."))?;
            let env = cli.open(false, false)?;
            let actor = Actor {
                role: "admin".into(),
                directorate: None,
                agent_ref: Some(format!(
                    "cli:{}",
                    std::env::var("USER").unwrap_or_else(|_| "unknown".into())
                )),
            };
            match env
            .ledger
            .erase_person(person_ref, &actor)
            .map_err(|e| anyhow!("{e}"))?
        {
            Some(e) => {
                println!(
                    "erased: person {} (PersonErased at position {}); their key is destroyed",
                    e.person_id, e.position
                );
                Ok(ExitCode::SUCCESS)
            }
            None => bail!(
                "the key store {} holds no key for {person_ref:?}: never recorded, or erased already",
                cli.key_store_path().display()
            ),
        }
        }
        _ => unreachable!("dispatched on its own subcommand"),
    }
}

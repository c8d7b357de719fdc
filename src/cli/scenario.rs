//! `scenario`: a generated scenario as JSON lines on standard output.

use super::args::*;
use anyhow::{anyhow, Result};
use campaign_ledger::domain::Reference;
use campaign_ledger::scenario;
use std::io::Write;
use std::process::ExitCode;

/// Runs `scenario`.
pub(super) fn run(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Cmd::Scenario {
            name: ScenarioName::Ofii2021,
        } => {
            let s = scenario::ofii_2021(&Reference::builtin()).map_err(|e| anyhow!(e))?;
            std::io::stdout()
                .lock()
                .write_all(s.to_jsonl().as_bytes())?;
            eprintln!(
                "{} commands written; synthetic data (no real person).",
                s.commands.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        _ => unreachable!("dispatched on its own subcommand"),
    }
}

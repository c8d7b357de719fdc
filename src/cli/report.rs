//! `report`: print a projection as of a date and known at a time.

use super::args::*;
use super::output::*;
use anyhow::{anyhow, Result};
use std::process::ExitCode;

/// Runs `report`.
pub(super) fn run(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Cmd::Report {
            name,
            as_of,
            known_at,
            format,
        } => {
            let (store, engine) = cli.read_side()?;
            let r = engine
                .report(store.as_ref(), name, *as_of, *known_at)
                .map_err(|e| anyhow!("{e}"))?;
            if cli.nats.is_some() {
                // On standard error: the report itself is the same whichever side folded it.
                eprintln!(
                    "NATS-fed: folded from {} into {}",
                    store.describe(),
                    cli.nats_projections_path().display()
                );
            }
            print_report(&r, *format)?;
            Ok(ExitCode::SUCCESS)
        }
        _ => unreachable!("dispatched on its own subcommand"),
    }
}

//! `projections list` and `projections rebuild`.

use super::args::*;
use anyhow::{anyhow, Result};
use std::process::ExitCode;

/// Runs `projections`.
pub(super) fn run(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Cmd::Projections {
            action: ProjectionsCmd::List { format },
        } => {
            let (store, engine) = cli.read_side()?;
            let list = engine.status(store.as_ref()).map_err(|e| anyhow!("{e}"))?;
            match format {
                SubmitFormat::Json => println!("{}", serde_json::to_string(&list)?),
                SubmitFormat::Table => {
                    for s in list {
                        println!(
                            "{:<24} {:>9}/{:<9} {:<40} {}",
                            s.name, s.checkpoint, s.head, s.status, s.origin
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Projections {
            action: ProjectionsCmd::Rebuild { name },
        } => {
            let (store, engine) = cli.read_side()?;
            let r = engine
                .rebuild(store.as_ref(), name)
                .map_err(|e| anyhow!("{e}"))?;
            let cmp = match r.identical_to_live {
                Some(true) => "identical to the live state",
                Some(false) => "DIFFERENT from the live state (the rebuilt one is now live)",
                None => "no earlier state to compare with",
            };
            println!("rebuilt {} from {} events: {cmp}", r.name, r.events);
            Ok(ExitCode::SUCCESS)
        }
        _ => unreachable!("dispatched on its own subcommand"),
    }
}

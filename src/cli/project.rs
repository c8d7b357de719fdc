//! `project`: the NATS-fed projection worker.

use super::args::*;
use super::env::*;
use anyhow::{anyhow, bail, Result};
use std::process::ExitCode;

/// Runs `project`.
pub(super) fn run(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Cmd::Project { once } => {
            if cli.nats.is_none() {
                bail!("project needs --nats URL (or LEDGER_NATS): it folds the events the relay published there");
            }
            let (source, engine) = cli.read_side()?;
            if *once {
                let pos = engine
                    .catch_up(source.as_ref())
                    .map_err(|e| anyhow!("{e}"))?;
                eprintln!("projections folded up to position {pos}");
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!(
                "folding {} into {} and following it; Ctrl-C or SIGTERM stops",
                source.describe(),
                cli.nats_projections_path().display()
            );
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
            std::thread::spawn(move || {
                runtime.block_on(shutdown_signal());
                let _ = stop_tx.send(());
            });
            let pos =
                follow_projections(&engine, source.as_ref(), &Default::default(), &mut |wait| {
                    stop_rx.recv_timeout(wait).is_ok()
                });
            eprintln!("projections folded up to position {pos}");
            Ok(ExitCode::SUCCESS)
        }
        _ => unreachable!("dispatched on its own subcommand"),
    }
}

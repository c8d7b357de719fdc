//! `relay`: publish the log to NATS JetStream.

use super::args::*;
use super::env::*;
use anyhow::{anyhow, bail, Result};
use std::process::ExitCode;

/// Runs `relay`.
pub(super) fn run(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Cmd::Relay {
            replicas,
            once,
            retry_for,
            delete_stream,
        } => {
            let Some(nats) = &cli.nats else {
                bail!("relay needs --nats URL (or LEDGER_NATS), for example --nats nats://127.0.0.1:4222");
            };
            let env = cli.open(false, false)?;
            let mut options = campaign_ledger::bus::RelayOptions::new(nats.clone());
            options.replicas = replicas.map(usize::from);
            options.follow = !*once;
            options.give_up_after = once.then_some(*retry_for);
            eprintln!(
                "relaying {} to {nats}, stream {}: {}",
                env.store.describe(),
                campaign_ledger::bus::STREAM,
                if *once {
                    "until the stream holds the whole log"
                } else {
                    "following new commits; Ctrl-C or SIGTERM stops"
                }
            );
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            // The signal handlers are installed now, by a task of their own: a SIGTERM that
            // comes while the relay is busy publishing still stops it cleanly.
            if *delete_stream {
                let stream = campaign_ledger::bus::STREAM;
                match runtime
                    .block_on(campaign_ledger::bus::delete_stream(nats))
                    .map_err(|e| anyhow!("cannot delete the stream {stream}: {e}"))?
                {
                    Some(n) => eprintln!("deleted the stream {stream} ({n} messages); its consumers must start again from position 1"),
                    None => eprintln!("there was no stream {stream} to delete"),
                }
            }
            let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
            runtime.spawn(async move {
                shutdown_signal().await;
                let _ = stop_tx.send(true);
            });
            let report = runtime
                .block_on(campaign_ledger::bus::relay(
                    env.store.clone(),
                    options,
                    async move {
                        let _ = stop_rx.wait_for(|s| *s).await;
                    },
                ))
                .map_err(|e| anyhow!("{e}"))?;
            eprintln!(
                "relay stopped: {} events published by this run; the stream holds positions 1..{}",
                report.published, report.position
            );
            Ok(ExitCode::SUCCESS)
        }
        _ => unreachable!("dispatched on its own subcommand"),
    }
}

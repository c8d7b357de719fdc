//! `export`: the log as CloudEvents JSON lines.

use super::args::*;
use anyhow::{anyhow, bail, Context as _, Result};
use campaign_ledger::audit;
use campaign_ledger::store::{self};
use chrono::Utc;
use std::process::ExitCode;

/// Runs `export`.
pub(super) fn run(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Cmd::Export {
            from,
            to,
            since,
            output,
        } => {
            if let (Some(f), Some(t)) = (from, to) {
                if t < f {
                    bail!("--to {t} is before --from {f}: give a range whose end is at or after its start");
                }
            }
            let env = cli.open(false, false)?;
            let options = audit::ExportOptions {
                from: *from,
                to: *to,
                since: since.map(|t| store::format_recorded_at(t.with_timezone(&Utc))),
            };
            let written = match output {
                Some(path) => {
                    let file = campaign_ledger::support::files::private_options()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .open(path)
                        .with_context(|| {
                            format!("cannot create {}; check the path", path.display())
                        })?;
                    let mut out = std::io::BufWriter::new(file);
                    let w = audit::export(env.store.as_ref(), &options, &mut out)
                        .map_err(|e| anyhow!("{e}"))?;
                    out.into_inner()
                        .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))?
                        .sync_all()?;
                    w
                }
                None => {
                    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                    audit::export(env.store.as_ref(), &options, &mut out)
                        .map_err(|e| anyhow!("{e}"))?
                }
            };
            match (written.first, written.last) {
                (Some(f), Some(l)) => {
                    eprintln!("exported {} events, positions {f}..{l}", written.events)
                }
                _ => eprintln!("exported nothing: no event in that range"),
            }
            Ok(ExitCode::SUCCESS)
        }
        _ => unreachable!("dispatched on its own subcommand"),
    }
}

//! `copy-log --to URL`: the log of --store, copied into another store through the export and
//! import formats (a pipe between two threads: no file on disk), so that the copy is verified
//! as an import is and carries the content hashes the source's index holds (version 2, also
//! for a NATS log whose messages an older build wrote with version 1).

use super::args::*;
use anyhow::{anyhow, bail, Result};
use campaign_ledger::audit;
use campaign_ledger::store::{self, SystemClock};
use std::process::ExitCode;
use std::sync::Arc;

/// Runs `copy-log`.
pub(super) fn run(cli: &Cli, to: &str) -> Result<ExitCode> {
    if to == cli.store {
        bail!("--to names the store --store names ({to}): give another store, for example nats://HOST:PORT?stream=LEDGER_LOG_V2");
    }
    let source = cli.open(false, false)?;
    let target = store::open(to, Arc::new(SystemClock)).map_err(|e| anyhow!("{to}: {e}"))?;
    let (reader, writer) = std::io::pipe()?;
    let from = source.store.clone();
    let exporter = std::thread::spawn(move || {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, writer);
        let options = audit::ExportOptions {
            from: None,
            to: None,
            since: None,
        };
        audit::export(from.as_ref(), &options, &mut out).map_err(|e| e.to_string())?;
        std::io::Write::flush(&mut out).map_err(|e| e.to_string())
    });
    let mut input = std::io::BufReader::with_capacity(1 << 20, reader);
    let imported = audit::import(&mut input, target.as_ref(), &mut |_| {});
    // Unblocks the exporter should the import stop early.
    drop(input);
    let exported = exporter
        .join()
        .map_err(|_| anyhow!("the export thread failed"))?;
    let i = match imported {
        Ok(i) => i,
        Err(audit::VerifyError::Broken { position, reason }) => {
            println!("BROKEN at position {position}: {reason}");
            eprintln!("the log does not verify: nothing from position {position} on was copied");
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(anyhow!("{e}")),
    };
    exported.map_err(|e| anyhow!("the export of {} failed: {e}", cli.store))?;
    campaign_ledger::app::migrate_content_hashes(target.as_ref()).map_err(|e| anyhow!("{e}"))?;
    println!(
        "copied {} events into {} ({} already there); head {} {}",
        i.imported,
        target.describe(),
        i.skipped,
        i.position,
        i.hash
    );
    eprintln!(
        "next: stop the processes that write to {}, copy again (it goes on from the copy's head), run them with --store {to}; \
         the old stream's owner can then remove it",
        cli.store
    );
    Ok(ExitCode::SUCCESS)
}

//! `import`: rebuild a store from an export, verifying the chain first.

use super::args::*;
use super::output::*;
use anyhow::{anyhow, bail, Context as _, Result};
use campaign_ledger::audit;
use std::path::Path;
use std::process::ExitCode;

/// Runs `import`.
pub(super) fn run(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Cmd::Import { file } => {
            let pb = progress(None, "importing");
            let result = if file.as_os_str() == "-" {
                let env = cli.open(false, true)?;
                let r = audit::import(&mut std::io::stdin().lock(), env.store.as_ref(), &mut |n| {
                    pb.set_position(n)
                });
                migrated(env.store.as_ref())?;
                r
            } else {
                let open = || {
                    std::fs::File::open(file)
                        .map(|f| std::io::BufReader::with_capacity(1 << 20, f))
                        .with_context(|| {
                            format!("cannot read the export {}; check the path", file.display())
                        })
                };
                // A file is verified whole before anything is written: a broken export
                // imports nothing. (From standard input, batches before a break are kept.)
                let checked = audit::verify_export(&mut open()?, None, None);
                if let Ok(v) = &checked {
                    let new_file = cli
                        .store
                        .strip_prefix("sqlite:")
                        .is_some_and(|p| !Path::new(p).exists());
                    if v.first > 1 && new_file {
                        bail!(
                        "the export starts at position {}, and the store {} does not exist yet: import a whole export (from position 1) first",
                        v.first,
                        cli.store
                    );
                    }
                }
                if let Err(e) = checked {
                    pb.finish_and_clear();
                    return match e {
                        audit::VerifyError::Broken { position, reason } => {
                            println!("BROKEN at position {position}: {reason}");
                            eprintln!("the export does not verify: nothing was imported");
                            Ok(ExitCode::from(1))
                        }
                        e => Err(anyhow!("{}: {e}", file.display())),
                    };
                }
                let env = cli.open(false, true)?;
                let r = audit::import(&mut open()?, env.store.as_ref(), &mut |n| {
                    pb.set_position(n)
                });
                migrated(env.store.as_ref())?;
                r
            };
            pb.finish_and_clear();
            match result {
                Ok(i) => {
                    println!(
                        "imported {} events ({} already there); head {} {}",
                        i.imported, i.skipped, i.position, i.hash
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(audit::VerifyError::Broken { position, reason }) => {
                    println!("BROKEN at position {position}: {reason}");
                    eprintln!("the export does not verify: nothing from position {position} on was imported");
                    Ok(ExitCode::from(1))
                }
                Err(e) => Err(anyhow!("{e}")),
            }
        }
        _ => unreachable!("dispatched on its own subcommand"),
    }
}

/// An export of an older build carries content hashes of version 1: once imported, they are
/// rewritten as version 2 (see `app::migrate_content_hashes`).
fn migrated(store: &dyn campaign_ledger::store::EventStore) -> Result<()> {
    campaign_ledger::app::migrate_content_hashes(store).map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

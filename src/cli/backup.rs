//! `backup` and `restore`: an online copy of a SQLite ledger, checked, and a new ledger made
//! from one (`audit::backup`).

use super::args::*;
use super::env::absolute;
use super::output::*;
use anyhow::{anyhow, bail, Result};
use campaign_ledger::audit::backup::{self, KeptApart, LedgerFiles};
use campaign_ledger::privacy::MasterKey;
use campaign_ledger::projection::db_path_for;
use std::path::PathBuf;
use std::process::ExitCode;

/// Runs `backup` or `restore`.
pub(super) fn run(cli: &Cli) -> Result<ExitCode> {
    let files = files(cli)?;
    match &cli.command {
        Cmd::Backup {
            check: Some(dir), ..
        } => {
            let manifest = backup::read_manifest(dir).map_err(|e| anyhow!("{e}"))?;
            let master = master_for(cli, manifest.files.iter().any(|f| f.role == "keys"))?;
            let pb = progress(Some(manifest.position), "checking the chain");
            let checked = backup::check(dir, master.as_ref(), &mut |n| pb.set_position(n));
            pb.finish_and_clear();
            let m = checked.map_err(|e| anyhow!("{}: {e}", dir.display()))?;
            println!(
                "backup {} checks: log up to position {} ({}), access log {} entries, {} people with keys, {} erased",
                dir.display(),
                m.position,
                m.hash,
                m.access_log_size,
                m.persons_with_keys,
                m.persons_erased
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Backup { to: Some(to), .. } => {
            let master = master_for(cli, files.keys.exists())?;
            let pb = progress(None, "copying");
            let mut role_now = String::new();
            let result = backup::backup(
                &files,
                to,
                master.as_ref(),
                kept_apart(cli),
                &mut |role, done, total| {
                    if role != role_now {
                        role_now = role.to_string();
                        pb.set_message(format!("copying {role} (pages)"));
                        pb.set_position(0);
                    }
                    pb.set_length(total);
                    pb.set_position(done);
                },
            );
            pb.finish_and_clear();
            let m = result.map_err(|e| anyhow!("{e}"))?;
            println!(
                "backed up to {}: log up to position {} ({}), access log {} entries, {} people with keys, {} erased; checked",
                to.display(),
                m.position,
                m.hash,
                m.access_log_size,
                m.persons_with_keys,
                m.persons_erased
            );
            for k in &m.kept_apart {
                eprintln!(
                    "not copied: {} ({}); keep it apart from the log and its backups",
                    k.what, k.at
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Restore {
            from,
            without_erasure_journal,
        } => {
            let manifest = backup::read_manifest(from).map_err(|e| anyhow!("{e}"))?;
            let keys = manifest.files.iter().any(|f| f.role == "keys");
            let default_key = cli.master_key_path();
            let given = cli.master_key.is_some() || std::env::var_os("LEDGER_MASTER_KEY").is_some();
            if keys && !given && !default_key.exists() {
                let was = manifest
                    .kept_apart
                    .iter()
                    .find(|k| k.what.starts_with("master key"))
                    .map_or_else(String::new, |k| {
                        format!(" (the backed-up ledger read it from {})", k.at)
                    });
                bail!(
                    "the backup's key store opens only with the master key it was made with, and a backup never holds it{was}: \
                     put that key at {} (where this ledger will look for it), or give it with --master-key FILE or LEDGER_MASTER_KEY",
                    absolute(&default_key).display()
                );
            }
            // Refused before anything is copied: without the journal, the people erased since
            // the backup was taken would be readable again.
            let journal_path = cli.erasure_journal_path();
            let journal = campaign_ledger::privacy::ErasureJournal::existing(&journal_path);
            if journal.is_none() && !without_erasure_journal {
                bail!(
                    "there is no erasure journal at {}: a backup taken before an erasure still holds the erased person's key, \
                     and restoring it without the journal brings that person back. Give the journal kept apart from the backups \
                     (--erasure-journal PATH or LEDGER_ERASURE_JOURNAL); or, if you accept that everyone erased since the backup \
                     ({}) becomes readable again until erased anew, add --without-erasure-journal",
                    absolute(&journal_path).display(),
                    manifest.created_at
                );
            }
            let master = master_for(cli, keys)?;
            let pb = progress(None, "restoring");
            let result =
                backup::restore(from, &files, master.as_ref(), &mut |role, done, total| {
                    pb.set_message(format!("restoring {role} (bytes)"));
                    pb.set_length(total);
                    pb.set_position(done);
                });
            pb.finish_and_clear();
            let m = result.map_err(|e| anyhow!("{e}"))?;
            let applied = match (&journal, master.as_ref()) {
                (Some(j), Some(master)) => apply_journal(&files, master, j)?,
                _ => 0,
            };
            println!(
                "restored {} to {}: log up to position {} ({}), {} people with keys, {} erased; {applied} erasure(s) since the backup applied from the journal",
                from.display(),
                files.log.display(),
                m.position,
                m.hash,
                m.persons_with_keys,
                m.persons_erased
            );
            if journal.is_none() {
                eprintln!(
                    "warning: restored without an erasure journal: anyone erased since the backup was taken ({}) is readable again in this ledger; \
                     erase them again (erase-person REF) from your register of erasure requests",
                    m.created_at
                );
            }
            eprintln!(
                "the projections catch up when the ledger is next opened; the signing key is not part of a backup: \
                 put it back at {} (or a new one is made, and digests signed before are checked with the old public key)",
                cli.key_path(None).display()
            );
            Ok(ExitCode::SUCCESS)
        }
        _ => unreachable!("dispatched on its own subcommand"),
    }
}

/// Applies the erasure journal to the restored ledger before anything else opens it: each
/// erasure the backup's log lacks is recorded again and its key and index entry destroyed.
fn apply_journal(
    files: &LedgerFiles,
    master: &MasterKey,
    journal: &campaign_ledger::privacy::ErasureJournal,
) -> Result<usize> {
    use campaign_ledger::store::{self, SystemClock};
    use std::sync::Arc;
    let url = format!("sqlite:{}", files.log.display());
    let log = store::open(&url, Arc::new(SystemClock)).map_err(|e| anyhow!("{e}"))?;
    let keys = campaign_ledger::privacy::KeyStore::open(&files.keys, master, false)
        .map_err(|e| anyhow!("{e}"))?;
    let ledger = campaign_ledger::app::Ledger::new(
        log,
        campaign_ledger::domain::Policy::default(),
        campaign_ledger::domain::Reference::builtin(),
        Arc::new(SystemClock),
    )
    .with_keys(Arc::new(keys))
    .map_err(|e| anyhow!("{e}"))?;
    let actor = campaign_ledger::store::Actor {
        role: "admin".into(),
        directorate: None,
        agent_ref: Some(format!(
            "cli:{} (restore)",
            std::env::var("USER").unwrap_or_else(|_| "unknown".into())
        )),
    };
    ledger
        .apply_erasure_journal(journal, &actor)
        .map_err(|e| anyhow!("{e}"))
}

/// The ledger's four files, as the other subcommands find them.
fn files(cli: &Cli) -> Result<LedgerFiles> {
    let Some(log) = cli.store.strip_prefix("sqlite:").filter(|p| !p.is_empty()) else {
        bail!(
            "backup and restore copy a SQLite ledger's files; {} is not one. A JetStream log is kept by its replicas \
             (a 3-node cluster, see the README); its key store ({}) and access log are SQLite files to copy while the server is stopped",
            cli.store,
            cli.key_store_path().display()
        );
    };
    let log = PathBuf::from(log);
    Ok(LedgerFiles {
        projections: db_path_for(&log),
        keys: cli.key_store_path(),
        access_log: cli.access_log_path(),
        log,
    })
}

/// The master key, when a key store is to be checked.
fn master_for(cli: &Cli, keys: bool) -> Result<Option<MasterKey>> {
    if !keys {
        return Ok(None);
    }
    cli.master_key(false).map(Some)
}

/// The secrets a backup leaves out, and where they are.
fn kept_apart(cli: &Cli) -> Vec<KeptApart> {
    let master = match std::env::var_os("LEDGER_MASTER_KEY") {
        Some(_) => "the environment variable LEDGER_MASTER_KEY".to_string(),
        None => cli.master_key_source(),
    };
    vec![
        KeptApart {
            what: "master key (opens the key store)".into(),
            at: master,
        },
        KeptApart {
            what: "signing key (signs digests)".into(),
            at: absolute(&cli.key_path(None)).display().to_string(),
        },
        KeptApart {
            what: "erasure journal (restore applies it again: people erased after this backup stay erased)".into(),
            at: absolute(&cli.erasure_journal_path()).display().to_string(),
        },
    ]
}

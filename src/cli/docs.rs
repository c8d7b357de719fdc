//! `openapi` and `schemas`: the documents the code generates.

use super::args::*;
use anyhow::{Context as _, Result};
use std::process::ExitCode;

/// Runs `openapi`.
pub(super) fn run_openapi(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Cmd::Openapi => {
            print!("{}", campaign_ledger::http::openapi::document_text());
            Ok(ExitCode::SUCCESS)
        }
        _ => unreachable!("dispatched on its own subcommand"),
    }
}

/// Runs `schemas`.
pub(super) fn run_schemas(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Cmd::Schemas { write } => {
            use campaign_ledger::domain::schema::{document_text, documents};
            let docs = documents();
            let Some(dir) = write else {
                for (path, _) in &docs {
                    println!("{path}");
                }
                return Ok(ExitCode::SUCCESS);
            };
            for sub in ["commands", "events"] {
                let d = dir.join(sub);
                std::fs::create_dir_all(&d)
                    .with_context(|| format!("cannot create {}", d.display()))?;
                for entry in std::fs::read_dir(&d)? {
                    let entry = entry?;
                    let name = format!("{sub}/{}", entry.file_name().to_string_lossy());
                    if !docs.iter().any(|(p, _)| *p == name) {
                        std::fs::remove_file(entry.path())?;
                        eprintln!("removed {}", entry.path().display());
                    }
                }
            }
            for (path, doc) in &docs {
                let file = dir.join(path);
                std::fs::write(&file, document_text(doc))
                    .with_context(|| format!("cannot write {}", file.display()))?;
            }
            eprintln!("{} schemas written under {}", docs.len(), dir.display());
            Ok(ExitCode::SUCCESS)
        }
        _ => unreachable!("dispatched on its own subcommand"),
    }
}

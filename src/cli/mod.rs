//! The command-line interface: clap parsing (`args`) and dispatch, one file per subcommand.
//! No business logic here.

mod args;
mod audit;
mod auth;
mod backup;
mod changes;
mod copy_log;
mod demo;
mod docs;
mod env;
mod erase;
mod export;
mod findings;
mod follow;
mod import;
mod output;
mod project;
mod projections;
mod proofs;
mod relay;
mod report;
mod scenario;
mod serve;
mod submit;
mod trust;
mod witness;

pub use args::*;

use anyhow::Result;
use std::io::IsTerminal;
use std::process::ExitCode;

/// Runs the CLI; returns the process exit code.
pub fn run(cli: Cli) -> Result<ExitCode> {
    // Every NATS connection of this process carries the identity and TLS settings given.
    campaign_ledger::nats::security::set(cli.nats_security())?;
    match &cli.command {
        Cmd::Scenario { .. } => scenario::run(&cli),
        Cmd::Demo { .. } => demo::run(&cli),
        Cmd::Openapi => docs::run_openapi(&cli),
        Cmd::Schemas { .. } => docs::run_schemas(&cli),
        Cmd::Auth { .. } => auth::run(&cli),
        Cmd::Witness { action } => witness::run(action),
        Cmd::Submit { .. } => submit::run(&cli),
        Cmd::Report { .. } => report::run(&cli),
        Cmd::Findings {
            directorate,
            as_of,
            known_at,
            format,
        } => findings::run(&cli, directorate.as_deref(), *as_of, *known_at, *format),
        Cmd::Audit { .. } => audit::run(&cli),
        Cmd::ErasePerson { .. } => erase::run(&cli),
        Cmd::Export { .. } => export::run(&cli),
        Cmd::Backup { .. } | Cmd::Restore { .. } => backup::run(&cli),
        Cmd::Import { .. } => import::run(&cli),
        Cmd::CopyLog { to } => copy_log::run(&cli, to),
        Cmd::Relay { .. } => relay::run(&cli),
        Cmd::Serve { .. } => serve::run(&cli),
        Cmd::Project { .. } => project::run(&cli),
        Cmd::Projections { .. } => projections::run(&cli),
    }
}

/// Logs to standard error, filtered by `RUST_LOG` (default: `default`, see
/// [`Cli::default_log_filter`]).
pub fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// With `LEDGER_REPORT_RSS=1`, writes the process's peak resident memory to standard error
/// (the benchmarks read it).
pub fn report_peak_rss() {
    if std::env::var_os("LEDGER_REPORT_RSS").is_some() {
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            if let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:")) {
                eprintln!("peak RSS {}", line.trim_start_matches("VmHWM:").trim());
            }
        }
    }
}

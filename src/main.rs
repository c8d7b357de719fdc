use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    campaign_ledger::cli::init_tracing();
    let result = campaign_ledger::cli::run(campaign_ledger::cli::Cli::parse());
    campaign_ledger::cli::report_peak_rss();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
